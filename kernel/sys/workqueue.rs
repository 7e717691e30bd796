// SPDX-License-Identifier: GPL-2.0

//! A workqueue the module owns (include/linux/workqueue.h: alloc_workqueue, flush_workqueue,
//! destroy_workqueue). The kernel crate of 6.12 only wraps the system queues; the module needs
//! its own so that stopping a session can wait for its work (flushing a system queue is not
//! allowed) and so that nothing of the module's runs once the queue is destroyed at unload.

use super::bindings;
use core::ptr::NonNull;
use kernel::error::{code::ENOMEM, Result};
use kernel::str::CStr;
use kernel::sync::Arc;
use kernel::workqueue::{HasWork, Queue, Work, WorkItem};

/// Flags of alloc_workqueue (include/linux/workqueue.h).
pub(crate) mod flags {
    /// Work may run on any CPU of the queuer's cache domain (the default affinity scope), where
    /// the scheduler finds room, rather than on the queuing CPU itself.
    pub(crate) const UNBOUND: u32 = kernel::bindings::wq_flags_WQ_UNBOUND;
    /// Guarantees forward progress under memory pressure: storage I/O completes through it.
    pub(crate) const MEM_RECLAIM: u32 = kernel::bindings::wq_flags_WQ_MEM_RECLAIM;
}

/// An owned workqueue; destroyed (after draining it) on drop.
pub(crate) struct OwnedQueue(NonNull<kernel::bindings::workqueue_struct>);

// SAFETY: workqueues are made to be used from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: as above.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates a workqueue named `name` (shown in ps as kworker names) with `flags`.
    pub(crate) fn new(name: &'static CStr, flags: u32) -> Result<Self> {
        // SAFETY: `name` is a static NUL-terminated string; the helper passes it as "%s".
        let wq = unsafe { bindings::core_iscsi_c_alloc_workqueue(name.as_char_ptr(), flags) };
        NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }

    /// The `workqueue_struct`, for the C side of [`super::ticker`].
    pub(crate) fn as_raw(&self) -> *mut kernel::bindings::workqueue_struct {
        self.0.as_ptr()
    }
}

/// Cancels `this`'s work item `ID` (`cancel_work_sync`): a queued run is taken off its queue
/// and the reference it held dropped, a running one is waited for. Unlike flushing the queue,
/// it waits for nothing of anyone else's (a stalled work of another channel on the same queue
/// cannot hold it up). Not from that work item itself.
pub(crate) fn cancel_sync<T, const ID: u64>(this: &Arc<T>)
where
    T: HasWork<T, ID> + WorkItem<ID, Pointer = Arc<T>>,
{
    let ptr: *mut T = core::ptr::from_ref::<T>(this).cast_mut();
    // SAFETY: `ptr` points to a live `T` (we hold a reference), so its work field is valid.
    let work = unsafe { Work::raw_get(T::raw_get_work(ptr)) };
    // SAFETY: `work` is the initialised work_struct of a live item.
    if unsafe { bindings::core_iscsi_c_cancel_work_sync(work) } {
        // SAFETY: the kernel crate queues an `Arc<T>` work item with the reference of
        // `Arc::into_raw` (its `WorkItemPointer for Arc<T>`), which the run would have taken
        // back with `Arc::from_raw`; the run was cancelled, so that reference is released here.
        drop(unsafe { Arc::from_raw(ptr) });
    }
}

impl core::ops::Deref for OwnedQueue {
    type Target = Queue;

    fn deref(&self) -> &Queue {
        // SAFETY: the pointer is a live workqueue until `self` is dropped.
        unsafe { Queue::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: we own the queue; destroy_workqueue drains it first, so no work of ours runs
        // after this returns.
        unsafe { kernel::bindings::destroy_workqueue(self.0.as_ptr()) };
    }
}
