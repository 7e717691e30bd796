// SPDX-License-Identifier: GPL-2.0

//! A spinlock that also keeps softirqs off its CPU while held (include/linux/spinlock.h:
//! `spin_lock_bh` / `spin_unlock_bh`), for state shared between process context and the
//! socket's data-ready callback, which runs in softirq context. A plain spinlock taken there
//! and in process context deadlocks when the softirq interrupts the holder on its own CPU; the
//! 6.12 `kernel` crate has no such lock, so this is its lock backend (rust/kernel/sync/lock).

use super::bindings;
use kernel::sync::lock::{Backend, Lock};

/// A lock whose guard disables softirqs on the local CPU.
pub(crate) type SpinLockBh<T> = Lock<T, SpinLockBhBackend>;

/// Creates a [`SpinLockBh`] with a lock class for this call site (as `new_spinlock!` does).
macro_rules! new_spinlock_bh {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        kernel::sync::lock::Lock::<_, $crate::sys::bh_lock::SpinLockBhBackend>::new(
            $inner,
            kernel::optional_name!($($name)?),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_spinlock_bh;

/// The backend of [`SpinLockBh`].
pub(crate) struct SpinLockBhBackend;

// SAFETY: `spinlock_t` gives mutual exclusion; lock and unlock are the matching `_bh` pair, and
// `relock` keeps the default (the same locking method).
unsafe impl Backend for SpinLockBhBackend {
    type State = kernel::bindings::spinlock_t;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut kernel::bindings::lock_class_key,
    ) {
        // SAFETY: the caller guarantees `ptr` is valid for writes and `name`/`key` live forever.
        unsafe { kernel::bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: the caller guarantees `ptr` is an initialised lock.
        unsafe { bindings::core_iscsi_c_spin_lock_bh(ptr) }
    }

    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: the caller owns the lock, taken by `lock` above.
        unsafe { bindings::core_iscsi_c_spin_unlock_bh(ptr) }
    }
}
