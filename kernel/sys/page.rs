// SPDX-License-Identifier: GPL-2.0

//! A range of bytes inside one page (include/linux/mm_types.h `struct page`): the unit the SCSI
//! command's scatterlist is cut into (kernel/sys/scsi.rs) for zero-copy send and receive on a
//! socket (kernel/sys/socket.rs).

use super::bindings;

/// `len` bytes at `offset` in `page`; `offset + len` never exceeds the page size.
///
/// A `PageRange` is a plain description, not a reference: whoever produced it says how long the
/// page stays valid (for a SCSI command: until the command is completed or forgotten).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageRange {
    page: *mut bindings::page,
    offset: u32,
    len: u32,
}

impl Default for PageRange {
    fn default() -> Self {
        Self {
            page: core::ptr::null_mut(),
            offset: 0,
            len: 0,
        }
    }
}

// SAFETY: a `PageRange` only names a page; every access to the memory goes through an unsafe
// function whose caller guarantees the page is alive, from whichever thread.
unsafe impl Send for PageRange {}
// SAFETY: as for `Send`: shared references give no access to the page's memory.
unsafe impl Sync for PageRange {}

impl PageRange {
    /// Describes `len` bytes at `offset` in `page`.
    ///
    /// # Safety
    ///
    /// `page` must point to a valid `struct page` and `offset + len` must not exceed
    /// `PAGE_SIZE`; the users of the range rely on both.
    pub(crate) unsafe fn from_raw(page: *mut bindings::page, offset: u32, len: u32) -> Self {
        Self { page, offset, len }
    }

    /// The page.
    pub(crate) fn page(&self) -> *mut bindings::page {
        self.page
    }

    /// Offset of the first byte within the page.
    pub(crate) fn offset(&self) -> u32 {
        self.offset
    }

    /// Number of bytes.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Whether the range covers no byte.
    #[allow(dead_code)] // for the socket wrappers (kernel/sys/socket.rs)
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}
