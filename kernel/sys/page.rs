// SPDX-License-Identifier: GPL-2.0

//! Safe byte access to a [`Page`] this code owns: the raw accessors of the kernel crate's
//! rust/kernel/page.rs (kmap_local_page, include/linux/highmem.h) with the borrow checker
//! standing in for their "no concurrent access" rule.

use kernel::error::Result;
use kernel::page::Page;

/// Copies `data` into `page` at `offset`; `EINVAL` past the page's end.
pub(crate) fn write(page: &mut Page, offset: usize, data: &[u8]) -> Result {
    // SAFETY: `data` is valid for reads of its length; `&mut Page` excludes every other access
    // to the page's contents through this code for the call (bounds are checked by write_raw).
    unsafe { page.write_raw(data.as_ptr(), offset, data.len()) }
}

/// Copies from `page` at `offset` into `out`; `EINVAL` past the page's end.
pub(crate) fn read(page: &Page, offset: usize, out: &mut [u8]) -> Result {
    // SAFETY: `out` is valid for writes of its length; a write to the page needs `&mut Page`
    // (or a `PageRange` borrowed from it), which cannot coexist with this shared borrow.
    unsafe { page.read_raw(out.as_mut_ptr(), offset, out.len()) }
}
