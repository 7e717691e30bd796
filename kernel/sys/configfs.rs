// SPDX-License-Identifier: GPL-2.0

//! configfs (include/linux/configfs.h): the subsystem registration and attribute buffers.
//!
//! The attribute and item-type tables are static C data in kernel/tables.c; their callbacks
//! are the `extern "C"` functions that the macros here generate around safe Rust functions.

use super::bindings;
use core::fmt;
use kernel::error::{to_result, Result};

/// configfs hands `show` a zeroed buffer of one page (fs/configfs/file.c).
const PAGE_LEN: usize = kernel::page::PAGE_SIZE;

/// The output buffer of a configfs `show` callback; writing past its end fails.
pub(crate) struct Page<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Page<'_> {
    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl fmt::Write for Page<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Runs `show` on the configfs page buffer `page` and returns what configfs expects: the
/// length written, or `-EFBIG` when the text does not fit in a page.
///
/// # Safety
///
/// `page` must be the buffer configfs passed to a `show` callback: valid for writes of
/// `PAGE_SIZE` bytes and not otherwise accessed during the call.
pub(crate) unsafe fn show_into(
    page: *mut kernel::ffi::c_char,
    show: impl FnOnce(&mut Page<'_>) -> fmt::Result,
) -> isize {
    // SAFETY: guaranteed by the caller (see above).
    let buf = unsafe { core::slice::from_raw_parts_mut(page.cast::<u8>(), PAGE_LEN) };
    let mut page = Page { buf, len: 0 };
    match show(&mut page) {
        // A page length always fits in isize.
        Ok(()) => page.len() as isize,
        Err(fmt::Error) => kernel::error::code::EFBIG.to_errno() as isize,
    }
}

/// Defines the C entry point `$c_name` of a read-only attribute of the root group (declared in
/// kernel/tables.c), calling the safe `$show: fn(&mut Page<'_>) -> fmt::Result`.
macro_rules! root_show {
    ($c_name:ident, $show:path) => {
        /// configfs `show` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $c_name(
            _item: *mut $crate::sys::bindings::config_item,
            page: *mut kernel::ffi::c_char,
        ) -> isize {
            // SAFETY: configfs calls `show` with its page buffer (fs/configfs/file.c).
            unsafe { $crate::sys::configfs::show_into(page, $show) }
        }
    };
}
pub(crate) use root_show;

/// Runs `store` on the bytes configfs passed to a `store` callback and returns what configfs
/// expects: all `count` bytes consumed, or the negative errno of `store`'s error.
///
/// # Safety
///
/// `page` must be valid for reads of `count` bytes during the call (configfs's buffer).
pub(crate) unsafe fn store_from(
    page: *const kernel::ffi::c_char,
    count: usize,
    store: impl FnOnce(&[u8]) -> Result,
) -> isize {
    let buf = if count == 0 || page.is_null() {
        &[][..]
    } else {
        // SAFETY: guaranteed by the caller (see above).
        unsafe { core::slice::from_raw_parts(page.cast::<u8>(), count) }
    };
    match store(buf) {
        // configfs limits a write to one page, so `count` fits in isize.
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Defines the C entry point `$c_name` of a write-only attribute of the root group (declared
/// in kernel/tables.c), calling the safe `$store: fn(&[u8]) -> Result` with the bytes written.
macro_rules! root_store {
    ($c_name:ident, $store:path) => {
        /// configfs `store` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $c_name(
            _item: *mut $crate::sys::bindings::config_item,
            page: *const kernel::ffi::c_char,
            count: usize,
        ) -> isize {
            // SAFETY: configfs calls `store` with its buffer of `count` bytes
            // (fs/configfs/file.c).
            unsafe { $crate::sys::configfs::store_from(page, count, $store) }
        }
    };
}
pub(crate) use root_store;

/// The registered `core_iscsi` configfs subsystem (static in kernel/tables.c); unregistered on
/// drop, which configfs allows only once every child group is gone.
pub(crate) struct Subsystem(());

impl Subsystem {
    /// Registers `/sys/kernel/config/core_iscsi`. Only one `Subsystem` may exist at a time;
    /// the module creates it once, at load.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: the subsystem is static data that nothing else touches before it is
        // registered; the module registers it once, from its init function.
        unsafe {
            bindings::core_iscsi_c_subsys_init();
            to_result(bindings::configfs_register_subsystem(
                core::ptr::addr_of_mut!(bindings::core_iscsi_subsys),
            ))?;
        }
        Ok(Self(()))
    }
}

impl Drop for Subsystem {
    fn drop(&mut self) {
        // SAFETY: `self` exists only if registration succeeded; this is the one unregister.
        unsafe {
            bindings::configfs_unregister_subsystem(core::ptr::addr_of_mut!(
                bindings::core_iscsi_subsys
            ))
        };
    }
}
