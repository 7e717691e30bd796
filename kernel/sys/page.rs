// SPDX-License-Identifier: GPL-2.0

//! Pages (include/linux/mm_types.h, highmem.h): [`PageRange`], a range of bytes in a page, the
//! unit a SCSI command's scatterlist is cut into (kernel/sys/scsi.rs) for sending and receiving
//! on a socket without a copy (kernel/sys/socket.rs); and safe byte access to a [`Page`] this
//! code owns (the raw accessors of rust/kernel/page.rs with the borrow checker standing in for
//! their "no concurrent access" rule).

use super::bindings;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::error::{code::EINVAL, Result};
use kernel::page::{Page, PAGE_SIZE};

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

/// A range of one page: what a scatterlist entry (or part of one) describes.
///
/// The range may run past the end of `page` into the physically contiguous pages that follow
/// it, as a scatterlist entry may. The lifetime ties a range built from a borrowed [`Page`]
/// to that borrow.
#[derive(Clone, Copy)]
pub(crate) struct PageRange<'a> {
    page: NonNull<bindings::page>,
    offset: u32,
    len: u32,
    _page: PhantomData<&'a mut Page>,
}

impl<'a> PageRange<'a> {
    /// A range of `len` bytes at `offset` in `page`.
    ///
    /// # Safety
    ///
    /// `page` must be a valid, non-null `struct page` that stays alive (referenced) and mapped
    /// for as long as the range is used, and `offset .. offset + len` must lie within it (or
    /// within it and the physically contiguous pages following it). While the range is passed
    /// to a receive, nothing else may access those bytes; while it is passed to a send, nothing
    /// may write them. (A spliced send takes its own page reference, so the page may be freed
    /// after the send returns; what the target reads on a retransmission is what the page then
    /// holds.)
    pub(crate) unsafe fn from_raw(page: *mut bindings::page, offset: u32, len: u32) -> Self {
        Self {
            // SAFETY: the caller guarantees `page` is not null (see above).
            page: unsafe { NonNull::new_unchecked(page) },
            offset,
            len,
            _page: PhantomData,
        }
    }

    /// The range `offset .. offset + len` of a page this code owns; `EINVAL` past its end.
    pub(crate) fn from_page(page: &'a mut Page, offset: usize, len: usize) -> Result<Self> {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > PAGE_SIZE {
            return Err(EINVAL);
        }
        Ok(Self {
            // `Page::as_ptr` is never null: the page was allocated.
            page: NonNull::new(page.as_ptr()).ok_or(EINVAL)?,
            offset: u32::try_from(offset).map_err(|_| EINVAL)?,
            len: u32::try_from(len).map_err(|_| EINVAL)?,
            _page: PhantomData,
        })
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The first page.
    pub(crate) fn page(&self) -> *mut bindings::page {
        self.page.as_ptr()
    }

    /// Offset of the first byte in the first page.
    pub(crate) fn offset(&self) -> u32 {
        self.offset
    }

    /// The range as the block layer describes it, for an iov_iter.
    pub(crate) fn bio_vec(&self) -> bindings::bio_vec {
        bindings::bio_vec {
            bv_page: self.page.as_ptr(),
            bv_len: self.len,
            bv_offset: self.offset,
        }
    }
}
