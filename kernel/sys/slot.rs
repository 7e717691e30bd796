// SPDX-License-Identifier: GPL-2.0

//! A global slot holding at most one boxed value (include/linux/atomic.h semantics through
//! `core::sync::atomic`): for state that configfs callbacks of the static root group reach
//! without a context pointer (the SCSI selftest host).

use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::alloc::KBox;

/// Holds zero or one `KBox<T>`. A `static` never drops its content: whoever fills it takes it
/// out again (module exit at the latest).
pub(crate) struct Slot<T> {
    ptr: AtomicPtr<T>,
    /// Owns a `KBox<T>`: `Send`/`Sync` follow `T`'s.
    _owns: PhantomData<KBox<T>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub(crate) const fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Stores `value` if the slot is empty; gives it back otherwise.
    pub(crate) fn put(&self, value: KBox<T>) -> Result<(), KBox<T>> {
        let raw = KBox::into_raw(value);
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            // SAFETY: `raw` came from `KBox::into_raw` just above and was not stored.
            Err(_) => Err(unsafe { KBox::from_raw(raw) }),
        }
    }

    /// Takes the value out, leaving the slot empty.
    pub(crate) fn take(&self) -> Option<KBox<T>> {
        let raw = self.ptr.swap(ptr::null_mut(), Ordering::AcqRel);
        if raw.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer in the slot came from `KBox::into_raw` in `put`, and the
        // swap made us its only owner.
        Some(unsafe { KBox::from_raw(raw) })
    }
}
