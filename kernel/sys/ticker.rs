// SPDX-License-Identifier: GPL-2.0

//! A periodic work item (include/linux/workqueue.h: `delayed_work`, `mod_delayed_work`,
//! `cancel_delayed_work_sync`; the C half is `core_iscsi_c_ticker_*` in kernel/tables.c): the
//! session's keepalive, window watch, recovery and rescans run from it. Unlike a work item
//! parked in a loop, it holds a worker only while it runs, so any number of sessions share a
//! workqueue; and unlike a timer it runs in process context.
//!
//! A queued run holds a reference to its owner (`Arc::into_raw`), which the run takes over:
//! the owner, and the ticker inside it, cannot be freed while a run is queued. [`Ticker::close`]
//! refuses every later arming, cancels a queued run (releasing its reference) and waits for a
//! running one; after it, nothing of the ticker runs. The 6.12 `kernel` crate has workqueue
//! items but no delayed ones.

use super::bindings;
use super::workqueue::OwnedQueue;
use core::ffi::c_void;
use core::marker::PhantomData;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

/// What a ticker's owner does on each run.
pub(crate) trait Tick: Send + Sync + 'static {
    /// One run, with the reference the queued run held.
    fn tick(this: Arc<Self>);
}

/// A ticker that belongs to an owner of type `T`.
///
/// # Safety
///
/// `ticker` must return a field of `self` (not something `self` merely points to): a queued run
/// keeps the owner alive, and so the ticker.
pub(crate) unsafe trait HasTicker: Tick + Sized {
    /// The owner's ticker.
    fn ticker(&self) -> &Ticker<Self>;
}

/// Implements [`HasTicker`] for a type whose field `$field` is its [`Ticker`].
macro_rules! impl_has_ticker {
    ($owner:ty, $field:ident) => {
        // SAFETY: the ticker returned is a field of the owner.
        unsafe impl $crate::sys::ticker::HasTicker for $owner {
            fn ticker(&self) -> &$crate::sys::ticker::Ticker<Self> {
                &self.$field
            }
        }
    };
}
pub(crate) use impl_has_ticker;

/// A delayed work item that runs [`Tick::tick`] of its owner.
///
/// # Invariants
///
/// `inner` was initialised by `core_iscsi_c_ticker_init` with `run::<T>`; its `data`, when not
/// null, is a reference to an owner `T` from `Arc::into_raw`, owned by the queued run.
#[pin_data]
pub(crate) struct Ticker<T> {
    #[pin]
    inner: Opaque<bindings::core_iscsi_ticker>,
    _owner: PhantomData<fn(T)>,
}

// SAFETY: the C side serialises arming, running and closing with its spinlock; the data it
// holds is an `Arc<T>` reference, which may move between threads when `T: Send + Sync`.
unsafe impl<T: Tick> Send for Ticker<T> {}
// SAFETY: as above: every method goes through the C side's locking.
unsafe impl<T: Tick> Sync for Ticker<T> {}

impl<T: HasTicker> Ticker<T> {
    /// A closed-to-nobody, idle ticker.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes of a `core_iscsi_ticker`; the helper
            // initialises it fully.
            inner <- Opaque::ffi_init(|slot: *mut bindings::core_iscsi_ticker| unsafe {
                bindings::core_iscsi_c_ticker_init(slot, Some(run::<T>))
            }),
            _owner: PhantomData,
        })
    }

    fn queue(owner: &Arc<T>, queue: &OwnedQueue, delay_ms: u32, now: bool) {
        let data = Arc::into_raw(owner.clone()).cast_mut().cast::<c_void>();
        // SAFETY: `owner.ticker()` is initialised (type invariant) and lives as long as the
        // owner (HasTicker's contract), which the reference handed over keeps alive while the
        // run is queued; `queue` is a live workqueue.
        let taken = unsafe {
            bindings::core_iscsi_c_ticker_arm(
                owner.ticker().inner.get(),
                queue.as_raw(),
                data,
                delay_ms,
                now,
            )
        };
        if !taken {
            // SAFETY: the C side did not keep `data`, which came from `Arc::into_raw` above.
            drop(unsafe { Arc::<T>::from_raw(data.cast::<T>()) });
        }
    }

    /// Queues a run of `owner`'s ticker in `delay_ms`, unless one is queued already (or the
    /// ticker is closed).
    pub(crate) fn arm(owner: &Arc<T>, queue: &OwnedQueue, delay_ms: u32) {
        Self::queue(owner, queue, delay_ms, false);
    }

    /// Runs `owner`'s ticker as soon as possible (a run queued for later comes forward).
    pub(crate) fn kick(owner: &Arc<T>, queue: &OwnedQueue) {
        Self::queue(owner, queue, 0, true);
    }

    /// Refuses every later arming, cancels a queued run and waits for a running one. Not from
    /// the ticker's own run (it would wait for itself).
    pub(crate) fn close(&self) {
        // SAFETY: `inner` is initialised (type invariant).
        let data = unsafe { bindings::core_iscsi_c_ticker_close(self.inner.get()) };
        if !data.is_null() {
            // SAFETY: a cancelled run's `data` is the owner reference it held (type
            // invariant); the run will not happen, so the reference is released here.
            drop(unsafe { Arc::<T>::from_raw(data.cast::<T>()) });
        }
    }
}

/// The run: takes over the reference the queued run held.
///
/// # Safety
///
/// `data` must be the `Arc<T>` reference a queued run of a `Ticker<T>` held.
unsafe extern "C" fn run<T: HasTicker>(data: *mut c_void) {
    // SAFETY: guaranteed by the caller (the C side passes the `data` `queue` stored).
    T::tick(unsafe { Arc::<T>::from_raw(data.cast::<T>()) });
}
