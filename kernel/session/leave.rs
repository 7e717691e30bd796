// SPDX-License-Identifier: GPL-2.0

//! A connection the target asks to log out (Async Message event 1, RFC 7143 section 11.9.1)
//! leaves the session on its own when the session has other live connections: no new command
//! goes out on it, those in flight get half the target's time to end, then it logs out with
//! "close the connection" and is unlisted while the others carry the I/O; the grow work adds
//! a connection back through its portal later, as for any connection a login left out. The
//! target terminates what is still in flight on it at the logout (section 11.14): those
//! commands are requeued, the midlayer sends them again on the other connections. No new
//! request follows the logout on it: no ping, no task management (`Connection::tick`,
//! `task_mgmt`).
//!
//! The leading connection, or one with no other live connection that is not itself leaving,
//! is failed instead: the session is reinstated (ErrorRecoveryLevel 0), as after any loss. So
//! is a connection whose logout goes unanswered, is rejected or is answered with an error: the
//! target may still hold its commands. Once it is logged out, its end is no loss (`failed` and
//! the ticker pass a `LoggedOut` connection by) until the work unlists it.
//!
//! The wait for commands to end runs without `op` (a loss or a recovery, which move `epoch`,
//! or a stop end it at once, a pause at its `detach`); the logout and the unlisting run under
//! `op`, so that no other control operation changes the connections meanwhile. A request that
//! comes while a login of the session is under way waits for the ticker (`maybe_leave`).

use super::{Session, LEADING_CID, LOGOUT_TIMEOUT_MS, PAUSE_DRAIN_MS};
use crate::connection::{Connection, Leave};
use crate::login::Failure;
use crate::sys::mem::Deadline;
use crate::sys::scsi::{CommandResult, HostByte};
use crate::tasks::Ending;
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{system_unbound, WorkItem};

impl Session {
    /// Receive path: a connection was asked to log out. The leave work decides how.
    pub(super) fn leave_later(self: Arc<Self>) {
        // Stopped with the connections: `stop` retires them (no receive path is left to
        // queue it) before it cancels the work. Already queued is fine: it looks at every
        // connection.
        let _ = system_unbound().enqueue::<Arc<Self>, 3>(self);
    }

    /// Ticker context, the session running: a request the leave work set aside (it came
    /// while a login or recovery was under way) is taken up now.
    pub(super) fn maybe_leave(self: &Arc<Self>) {
        let asked = self
            .conns
            .lock()
            .iter()
            .flatten()
            .any(|c| !c.is_dead() && c.leave_asked().is_some());
        if asked {
            self.clone().leave_later();
        }
    }

    /// The leave work: every connection the target asked to log out, one at a time.
    fn leave_all(self: &Arc<Self>) {
        for conn in self.conns().iter().flatten() {
            if let Some(within_s) = conn.leave_asked() {
                self.leave_one(conn, within_s);
            }
        }
    }

    /// Logs `conn` out alone if the session can do without it, or fails it (the session is
    /// reinstated) otherwise.
    fn leave_one(self: &Arc<Self>, conn: &Arc<Connection>, within_s: u16) {
        if conn.is_dead() || !self.still_running() {
            // A loss, a recovery, a pause or a stop deals with it; or a login of the session
            // is still under way, and the ticker queues this work again once it runs.
            return;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let others = self
            .conns
            .lock()
            .iter()
            .flatten()
            .any(|c| !Arc::ptr_eq(c, conn) && !c.is_dead() && !c.is_leaving());
        if conn.cid() == LEADING_CID || !others {
            conn.fail(Failure::ConnectionReset);
            return;
        }
        conn.set_leave(Leave::Draining);
        // Half the target's time for what is in flight to end, the rest for the logout.
        let drain_ms = (u64::from(within_s) * 500).min(PAUSE_DRAIN_MS);
        let _ = self.wait_until(Deadline::after_ms(drain_ms), |_| {
            (conn.in_flight() == 0
                || conn.is_dead()
                || self.stopping.load(Ordering::Acquire)
                || self.epoch.load(Ordering::Acquire) != epoch)
                .then_some(())
        });
        let _op = self.op.lock();
        if self.epoch.load(Ordering::Acquire) != epoch || !self.still_running() || conn.is_dead() {
            // A loss, a recovery, a pause or a stop came first: it dealt with this connection.
            return;
        }
        let Ok(itt) = conn.logout_alone() else {
            conn.fail(Failure::ConnectionReset);
            return;
        };
        let _ = self.wait_until(Deadline::after_ms(LOGOUT_TIMEOUT_MS), |_| {
            let settled = conn.leave() != Leave::LoggingOut
                || conn.is_dead()
                || self.stopping.load(Ordering::Acquire)
                || self.epoch.load(Ordering::Acquire) != epoch;
            settled.then_some(())
        });
        // An answer that comes from now on finds the leave given up, and names no request
        // (it must not end a session logout's wait).
        if conn.leave_from(Leave::LoggingOut, Leave::GivenUp) {
            self.io.lock().ffp.forget_request(itt);
        }
        if conn.leave() != Leave::LoggedOut {
            // Refused, rejected or unanswered: the target may still hold what was in flight on
            // it, so it is a lost connection and the session is reinstated. Lost before its
            // answer, or overtaken by a stop or another loss: that has dealt with it.
            let overtaken = self.stopping.load(Ordering::Acquire)
                || self.epoch.load(Ordering::Acquire) != epoch;
            if !overtaken && !conn.is_dead() {
                pr_warn!(
                    "core-iscsi: channel {}: connection {}: logout not answered or refused\n",
                    self.name.as_str(),
                    conn.cid()
                );
                conn.fail(Failure::ConnectionReset);
            }
            return;
        }
        // The grow work tries again only after the wait in force, and attaches nothing logged
        // in across this change. Both before the slot is free, so that no try comes sooner;
        // the wait first, so that a ticker that sees the new `epoch` (`maybe_grow` reads it
        // first) sees the new wait too.
        self.grow_again_later();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // Retired while still listed, as in `detach`: the error handler finds its commands
        // until they have ended.
        let requeued = conn.in_flight();
        self.retire(
            conn,
            Ending::result(CommandResult::HostError(HostByte::Requeue)),
        );
        let old = self
            .conns
            .lock()
            .get_mut(usize::from(conn.cid()))
            .filter(|slot| slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)))
            .and_then(Option::take);
        self.reroute();
        // Not under a spinlock: the list's reference may be the socket's last but ours.
        drop(old);
        let open = self.conns.lock().iter().flatten().count();
        pr_info!(
            "core-iscsi: channel {}: connection {} logged out at the target's request ({} commands requeued); {} left\n",
            self.name.as_str(),
            conn.cid(),
            requeued,
            open
        );
    }
}

impl WorkItem<3> for Session {
    type Pointer = Arc<Session>;

    fn run(this: Arc<Session>) {
        this.leave_all();
    }
}
