// SPDX-License-Identifier: GPL-2.0

//! A mutex that can also be tried (include/linux/mutex.h: `mutex_lock`, `mutex_trylock`,
//! `mutex_unlock`): nvme-tcp's `send_mutex` shape, where a submitter sends inline only if no
//! one else is sending and otherwise leaves the send to the transmit work. The 6.12 `kernel`
//! crate's `Mutex` has no `try_lock`, and its guard cannot be built outside the crate, so this
//! is a small lock of its own; when the crate gains `Lock::try_lock`, it replaces this file.

use kernel::prelude::*;
use kernel::sync::LockClassKey;
use kernel::types::Opaque;
use core::cell::UnsafeCell;
use core::marker::{PhantomData, PhantomPinned};

/// A `struct mutex` and the data it protects.
///
/// # Invariants
///
/// `state` was initialised by `__mutex_init`; `data` is only reached through a [`TryGuard`],
/// which exists only while its thread owns `state`.
#[pin_data]
pub(crate) struct TryMutex<T> {
    #[pin]
    state: Opaque<kernel::bindings::mutex>,
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: the lock owns its `T`, which may move to another thread (`T: Send`); an unlocked
// `struct mutex` may be used and freed from any thread.
unsafe impl<T: Send> Send for TryMutex<T> {}
// SAFETY: the mutex serialises every access to `data` through a shared `TryMutex`, so no two
// threads reach the `T` at once; `T: Send` lets it be used from whichever thread holds it.
unsafe impl<T: Send> Sync for TryMutex<T> {}

// The key's cast in `new` relies on this layout (a private detail of the `kernel` crate): a
// kernel whose crate changes it fails the build here instead of handing lockdep a bad key.
const _: () = assert!(
    core::mem::size_of::<LockClassKey>() == core::mem::size_of::<kernel::bindings::lock_class_key>()
        && core::mem::align_of::<LockClassKey>()
            == core::mem::align_of::<kernel::bindings::lock_class_key>()
);

/// Creates a [`TryMutex`] with a lock class for this call site (as `new_mutex!` does).
macro_rules! new_try_mutex {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::sys::try_mutex::TryMutex::new(
            $inner,
            kernel::optional_name!($($name)?),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_try_mutex;

impl<T> TryMutex<T> {
    /// A new, unlocked mutex holding `t`.
    pub(crate) fn new(
        t: T,
        name: &'static CStr,
        key: &'static LockClassKey,
    ) -> impl PinInit<Self> {
        // `LockClassKey` is `#[repr(transparent)]` over an `Opaque<lock_class_key>`, whose
        // address is the C key (its `as_ptr` is private to the crate).
        let key = core::ptr::from_ref(key)
            .cast::<kernel::bindings::lock_class_key>()
            .cast_mut();
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes while the closure runs; `name` and `key` are
            // static, as the lock class needs, and lockdep writes the key only through its
            // interior mutability (`Opaque`).
            state <- Opaque::ffi_init(|slot| unsafe {
                kernel::bindings::__mutex_init(slot, name.as_char_ptr(), key)
            }),
            _pin: PhantomPinned,
            data: UnsafeCell::new(t),
        })
    }

    /// Waits for the mutex (sleeping) and holds it until the guard drops.
    pub(crate) fn lock(&self) -> TryGuard<'_, T> {
        // SAFETY: `state` is initialised (type invariant).
        unsafe { kernel::bindings::mutex_lock(self.state.get()) };
        TryGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the mutex if no one holds it, without waiting.
    pub(crate) fn try_lock(&self) -> Option<TryGuard<'_, T>> {
        // SAFETY: `state` is initialised (type invariant).
        let taken = unsafe { kernel::bindings::mutex_trylock(self.state.get()) } != 0;
        taken.then(|| TryGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }
}

/// Ownership of a [`TryMutex`]; unlocks it when dropped.
///
/// # Invariants
///
/// The current thread owns `lock.state`, taken by `lock` or `try_lock`.
#[must_use = "the mutex unlocks at once when the guard is unused"]
pub(crate) struct TryGuard<'a, T> {
    lock: &'a TryMutex<T>,
    // A mutex is released by the thread that took it.
    _not_send: PhantomData<*mut ()>,
}

impl<T> core::ops::Deref for TryGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard's thread owns the mutex (type invariant), so no one else reaches
        // `data`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> core::ops::DerefMut for TryGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for TryGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard's thread owns the mutex (type invariant).
        unsafe { kernel::bindings::mutex_unlock(self.lock.state.get()) };
    }
}
