// SPDX-License-Identifier: GPL-2.0

//! The answer to one request the session waits for (a task management request, its logout),
//! handed from the receive path, which runs in softirq context where `ctl` (a mutex) cannot be
//! taken, to the waiter that sent the request. The request's ITT and its answer are one value,
//! so that only the answer to this request is ever taken: a late answer to an earlier request
//! (whose wait timed out), or to another request of the same kind (a connection's own logout
//! beside the session's), names another ITT and changes nothing.

use core::sync::atomic::{AtomicU64, Ordering};

/// The low half while no answer has come.
const PENDING: u32 = u32::MAX;

/// The ITT of the request waited for in the high half, its answer or [`PENDING`] in the low.
pub(super) struct Awaited(AtomicU64);

fn pack(itt: u32, answer: u32) -> u64 {
    u64::from(itt) << 32 | u64::from(answer)
}

impl Awaited {
    /// Waiting for nothing: the session's own ITTs are never 0 (they carry `OWN_ITT`).
    pub(super) fn new() -> Self {
        Self(AtomicU64::new(pack(0, PENDING)))
    }

    /// Waits for the answer to `itt` from now on: called before the request can leave, so
    /// that its answer always finds it.
    pub(super) fn arm(&self, itt: u32) {
        self.0.store(pack(itt, PENDING), Ordering::Release);
    }

    /// Receive path: `answer` (below `PENDING`) to request `itt`, taken only if that is the
    /// request waited for and it has no answer yet.
    pub(super) fn answer(&self, itt: u32, answer: u32) {
        let _ = self.0.compare_exchange(
            pack(itt, PENDING),
            pack(itt, answer),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The answer to request `itt`, once it has come.
    pub(super) fn get(&self, itt: u32) -> Option<u32> {
        let v = self.0.load(Ordering::Acquire);
        let (high, low) = (v >> 32, v & u64::from(u32::MAX));
        (high == u64::from(itt) && low != u64::from(PENDING))
            .then(|| u32::try_from(low).ok())
            .flatten()
    }
}
