// SPDX-License-Identifier: GPL-2.0

//! The module's workqueues, shared by every channel.

use crate::sys::workqueue::{flags, OwnedQueue};
use kernel::prelude::*;

/// What every channel shares: the module's workqueues. Each has a rescuer (`MEM_RECLAIM`): the
/// disks they serve may be what memory reclaim is writing to.
pub(crate) struct Queues {
    /// A connection's receive work: what the socket callback cannot do in softirq context, and
    /// the receive under load (unbound: it runs where the scheduler finds room).
    pub(crate) io: OwnedQueue,
    /// Session work: the ticker (keepalive, window watch, recovery) and scans.
    pub(crate) ctl: OwnedQueue,
    /// `stop`'s grace work, on a queue of its own: the ticker and scan work on `ctl` may wait
    /// for the `op` lock that `stop` holds while the grace work must run, and under memory
    /// pressure `ctl`'s one rescuer could be busy with one of them.
    pub(crate) stop: OwnedQueue,
    /// Transmit work of every connection. Unbound, so a worker on another CPU sends while the
    /// submitter goes on submitting; not high priority, because a nice -20 worker woken on the
    /// submitter's CPU preempts it there (measured: Documentation/benchmarks.md).
    pub(crate) xmit: OwnedQueue,
}

impl Queues {
    /// Allocates the queues.
    pub(crate) fn new() -> Result<Self> {
        let queue = |name| OwnedQueue::new(name, flags::MEM_RECLAIM | flags::UNBOUND);
        Ok(Self {
            io: queue(kernel::c_str!("core_iscsi_io"))?,
            ctl: queue(kernel::c_str!("core_iscsi_ctl"))?,
            stop: queue(kernel::c_str!("core_iscsi_stop"))?,
            xmit: queue(kernel::c_str!("core_iscsi_xmit"))?,
        })
    }
}
