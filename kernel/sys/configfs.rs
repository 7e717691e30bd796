// SPDX-License-Identifier: GPL-2.0

//! configfs (include/linux/configfs.h): the subsystem registration and attribute buffers.
//!
//! The attribute and item-type tables are static C data in kernel/tables.c; their callbacks
//! are the `extern "C"` functions that the macros here generate around safe Rust functions.

use super::bindings;
use core::fmt;
use core::pin::Pin;
use kernel::error::{to_result, Result};
use kernel::prelude::*;

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
/// in kernel/tables.c), calling the safe `$store: fn(&[u8]) -> Result`.
macro_rules! root_store {
    ($c_name:ident, $store:path) => {
        /// configfs `store` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $c_name(
            _item: *mut $crate::sys::bindings::config_item,
            page: *const kernel::ffi::c_char,
            count: usize,
        ) -> isize {
            // SAFETY: configfs calls `store` with the written bytes (fs/configfs/file.c).
            unsafe { $crate::sys::configfs::store_from(page, count, $store) }
        }
    };
}
pub(crate) use root_store;

/// The registered `core_iscsi` configfs subsystem, holding `T`: what every group made under the
/// root can reach (see [`group_type!`]). Unregistered on drop, which configfs allows only once
/// every child group is gone (each one pins the module, so that holds at module exit).
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct Subsystem<T> {
    // First field: the root group pointer configfs hands to make_group is a pointer to `Self`.
    #[pin]
    subsys: kernel::types::Opaque<bindings::configfs_subsystem>,
    data: T,
    registered: bool,
}

// SAFETY: the C structure is only handed to configfs, which serialises its own use of it with
// `su_mutex`; `T` is shared across threads (every callback may reach it), hence its bounds.
unsafe impl<T: Send + Sync> Send for Subsystem<T> {}
// SAFETY: as for `Send`: `&Subsystem` gives access to `T` only through `&T`.
unsafe impl<T: Send + Sync> Sync for Subsystem<T> {}

impl<T> Subsystem<T> {
    /// Registers `/sys/kernel/config/core_iscsi` holding `data`. Only one may exist at a time
    /// (configfs refuses a second subsystem of the same name).
    pub(crate) fn register(data: T) -> Result<Pin<kernel::alloc::KBox<Self>>> {
        let mut this = kernel::alloc::KBox::pin_init(
            pin_init!(Self {
                subsys <- kernel::types::Opaque::ffi_init(|s: *mut bindings::configfs_subsystem| {
                    // SAFETY: `s` is valid for writes and pinned; the helper initialises the
                    // group (name, item type) and the mutex, as configfs requires.
                    unsafe { bindings::core_iscsi_c_subsys_init(s) }
                }),
                data,
                registered: false,
            }),
            kernel::alloc::flags::GFP_KERNEL,
        )?;
        // SAFETY: the subsystem is initialised and pinned for as long as it is registered
        // (unregistered in drop).
        to_result(unsafe { bindings::configfs_register_subsystem(this.subsys.get()) })?;
        // SAFETY: `registered` is not structurally pinned.
        unsafe { this.as_mut().get_unchecked_mut().registered = true };
        Ok(this)
    }

    /// The data of the subsystem whose root group is `group`.
    ///
    /// # Safety
    ///
    /// `group` must be the root group of a registered `Subsystem<T>` (what configfs passes to
    /// the root's make_group), which outlives every callback on it.
    pub(crate) unsafe fn data_of_root<'a>(group: *mut bindings::config_group) -> &'a T {
        // SAFETY: `su_group` is the first field of `configfs_subsystem`, itself the first field
        // of the `repr(C)` `Self`: the pointers coincide.
        unsafe { &(*group.cast::<Self>()).data }
    }
}

#[pinned_drop]
impl<T> PinnedDrop for Subsystem<T> {
    fn drop(self: Pin<&mut Self>) {
        if self.registered {
            // SAFETY: registered above; this is the one unregister.
            unsafe { bindings::configfs_unregister_subsystem(self.subsys.get()) };
        }
    }
}

/// A configfs group embedded next to the Rust object `T` it stands for: the directory an
/// administrator made with `mkdir`. configfs holds the reference; the object is freed by the
/// item type's `release` callback (see [`Group::release`]).
#[repr(C)]
pub(crate) struct Group<T> {
    // First field: a `config_item` pointer is a pointer to the whole `Group<T>`.
    group: kernel::types::Opaque<bindings::config_group>,
    data: T,
}

impl<T> Group<T> {
    /// Allocates a group named `name` of the static item type `item_type` holding `data`, for
    /// returning from a `make_group` callback. configfs owns it from then on.
    pub(crate) fn create(
        name: &kernel::str::CStr,
        item_type: *const bindings::config_item_type,
        data: T,
    ) -> Result<*mut bindings::config_group> {
        let boxed = kernel::alloc::KBox::new(
            Self {
                group: kernel::types::Opaque::uninit(),
                data,
            },
            kernel::alloc::flags::GFP_KERNEL,
        )?;
        let this = kernel::alloc::KBox::into_raw(boxed);
        // SAFETY: `this` is a valid, exclusively owned allocation. The group starts zeroed, as
        // config_group_init_type_name expects (it frees a previous name if there is one); it
        // then initialises every field and copies `name`. `item_type` is a static table.
        unsafe {
            let group = kernel::types::Opaque::raw_get(core::ptr::addr_of!((*this).group));
            core::ptr::write_bytes(group, 0, 1);
            bindings::config_group_init_type_name(group, name.as_char_ptr(), item_type);
            Ok(group)
        }
    }

    /// The object behind a configfs item of this group type.
    ///
    /// # Safety
    ///
    /// `item` must be the item of a live group created by [`Group::create`] with this `T`, and
    /// the returned reference must not outlive configfs' reference to it (true within any
    /// callback configfs makes on that item).
    pub(crate) unsafe fn data<'a>(item: *mut bindings::config_item) -> &'a T {
        // SAFETY: `cg_item` is the first field of `config_group`, itself the first field of the
        // `repr(C)` `Group<T>`, so the pointers coincide; liveness is the caller's guarantee.
        unsafe { &(*item.cast::<Self>()).data }
    }

    /// Frees the group: the item type's `release` callback, called by configfs when the last
    /// reference goes.
    ///
    /// # Safety
    ///
    /// `item` must come from [`Group::create`] with this `T`, and nothing may use it afterwards.
    pub(crate) unsafe fn release(item: *mut bindings::config_item) {
        // SAFETY: as in `data`, `item` points at the `Group<T>` that `create` leaked from a KBox.
        drop(unsafe { kernel::alloc::KBox::from_raw(item.cast::<Self>()) });
    }
}

/// Defines the C entry points of a group type (declared in kernel/tables.c): `make_group` on the
/// subsystem's root (`$make: fn(&P, &CStr) -> Result<T>`, `P` the subsystem's data), `drop_item` (`$drop: fn(&T)`, called on rmdir
/// before configfs lets go of the item) and `release` (frees the `Group<T>`).
macro_rules! group_type {
    ($parent:ty => $ty:ty, $make_c:ident => $make:path, $drop_c:ident => $drop:path,
     $release_c:ident, $item_type:ident) => {
        /// configfs `make_group` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $make_c(
            parent: *mut $crate::sys::bindings::config_group,
            name: *const kernel::ffi::c_char,
        ) -> *mut $crate::sys::bindings::config_group {
            // SAFETY: the C table gives this make_group to the subsystem's root only, and
            // configfs passes the new directory's NUL-terminated name.
            let (parent, name) = unsafe {
                (
                    $crate::sys::configfs::Subsystem::<$parent>::data_of_root(parent),
                    kernel::str::CStr::from_char_ptr(name),
                )
            };
            let created = $make(parent, name).and_then(|data| {
                $crate::sys::configfs::Group::<$ty>::create(
                    name,
                    core::ptr::addr_of!($crate::sys::bindings::$item_type),
                    data,
                )
            });
            match created {
                Ok(group) => group,
                Err(e) => e.to_ptr(),
            }
        }

        /// configfs `drop_item` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $drop_c(
            _parent: *mut $crate::sys::bindings::config_group,
            item: *mut $crate::sys::bindings::config_item,
        ) {
            // SAFETY: configfs calls drop_item on a live item of this type, before its put.
            $drop(unsafe { $crate::sys::configfs::Group::<$ty>::data(item) });
            // SAFETY: drop_item must release the reference make_group returned.
            unsafe { $crate::sys::bindings::config_item_put(item) };
        }

        /// configfs `release` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $release_c(item: *mut $crate::sys::bindings::config_item) {
            // SAFETY: configfs calls release once, when the item's last reference is gone.
            unsafe { $crate::sys::configfs::Group::<$ty>::release(item) };
        }
    };
}
pub(crate) use group_type;

/// Defines the C entry point `$c_name` of a readable attribute of group type `$ty`, calling
/// `$show: fn(&T, &mut Page<'_>) -> fmt::Result`.
macro_rules! attr_show {
    ($ty:ty, $c_name:ident => $show:expr) => {
        /// configfs `show` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $c_name(
            item: *mut $crate::sys::bindings::config_item,
            page: *mut kernel::ffi::c_char,
        ) -> isize {
            // SAFETY: the C table attaches this attribute to items of this group type only, and
            // configfs holds a reference to the item during show.
            let data = unsafe { $crate::sys::configfs::Group::<$ty>::data(item) };
            // SAFETY: configfs calls `show` with its page buffer (fs/configfs/file.c).
            unsafe { $crate::sys::configfs::show_into(page, |p| ($show)(data, p)) }
        }
    };
}
pub(crate) use attr_show;

/// Defines the C entry point `$c_name` of a writable attribute of group type `$ty`, calling
/// `$store: fn(&T, &[u8]) -> Result` with the bytes written (a trailing newline removed).
macro_rules! attr_store {
    ($ty:ty, $c_name:ident => $store:expr) => {
        /// configfs `store` entry point (kernel/tables.c).
        #[no_mangle]
        unsafe extern "C" fn $c_name(
            item: *mut $crate::sys::bindings::config_item,
            page: *const kernel::ffi::c_char,
            count: usize,
        ) -> isize {
            // SAFETY: as for show.
            let data = unsafe { $crate::sys::configfs::Group::<$ty>::data(item) };
            // SAFETY: configfs calls `store` with the written bytes (fs/configfs/file.c).
            unsafe {
                $crate::sys::configfs::store_from(page, count, |buf| {
                    ($store)(data, buf.strip_suffix(b"\n").unwrap_or(buf))
                })
            }
        }
    };
}
pub(crate) use attr_store;
