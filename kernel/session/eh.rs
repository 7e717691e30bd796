// SPDX-License-Identifier: GPL-2.0

//! The SCSI error handler's side of a session: ABORT TASK, LUN and target resets (task
//! management requests, each under an ITT of its own, on the task's connection), and the last
//! resort, dropping the connection so the session is reinstated.

use super::{Phase, Session};
use crate::connection::Connection;
use crate::login::Failure;
use crate::proto::pdu::{tmf, RESERVED_TAG};
use crate::sys::mem::Deadline;
use crate::sys::scsi::{CommandRef, EhOutcome};
use crate::tasks::{Ending, Slot};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;

/// Added to the bound on the recovery a target reset falls back on (`reset_session`).
const RECOVERY_SLACK_S: u32 = 10;

/// The session's task management slot, taken ([`Session::tmf_slot`]) until this drops.
#[must_use]
struct TmfSlot<'a>(&'a Session);

impl Drop for TmfSlot<'_> {
    fn drop(&mut self) {
        self.0.tmf_busy.store(false, Ordering::Release);
        // A waiter looks at the flag under `ctl` and then sleeps on `changed`: taking `ctl`
        // here orders the wake-up after its look, so none is lost. (A waiter with a signal
        // pending sleeps a slice without `ctl` and sees the flag at its next look, 50 ms at
        // most.)
        drop(self.0.ctl.lock());
        self.0.changed.notify_all();
    }
}

impl Session {
    /// Sends a task management request on `conn` and waits (`tmf_timeout` at most, and
    /// no longer once `conn` is lost: nothing answers on a dead connection, even while the
    /// session's others are up) for its response code; `None` if none came (the request is
    /// then forgotten: a late answer names nothing).
    fn task_mgmt(&self, conn: &Arc<Connection>, function: u8, lun: u64, ref_itt: u32) -> Option<u8> {
        let tmf_ms = u64::from(self.settings.tmf_timeout_s) * 1000;
        // A request in progress ends within its own wait: this one waits that long, twice
        // over (one request ahead, with room to spare), then gives up unsent and the error
        // handler goes on to its next step. Rare: the error handler thread and the
        // midlayer's abort work each send one request at a time, and only they and a reset
        // ioctl at the same moment make a queue here.
        let _one = self.tmf_slot(tmf_ms * 2)?;
        let answer = &self.answers.tmf;
        // Armed before the request can leave (under the engine's lock, which sending takes),
        // so its answer always finds it.
        let itt = conn
            .task_mgmt(function, lun, ref_itt, |itt| answer.arm(itt))
            .ok()?;
        self.wait_for(tmf_ms, || answer.get(itt).is_some() || conn.is_dead());
        let response = answer.get(itt);
        if response.is_none() {
            self.io.lock().ffp.forget_request(itt);
        }
        response.and_then(|r| u8::try_from(r).ok())
    }

    /// Takes the session's one task management slot, waiting up to `ms` for the request in
    /// progress to give it back. In `wait_until`'s slices, not on a mutex: a holder may wait
    /// `tmf_timeout` for its answer, which an uninterruptible wait must not (the hung-task
    /// check); `None` when the time is up.
    fn tmf_slot(&self, ms: u64) -> Option<TmfSlot<'_>> {
        self.wait_until(Deadline::after_ms(ms), |_| {
            self.tmf_busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()
        })?;
        Some(TmfSlot(self))
    }

    /// Waits for every connection's receive pass in progress: it holds `rx` from taking a
    /// finished command out of the table until it has completed it, and the midlayer must not
    /// get back a command that is still being completed.
    fn wait_receivers(&self) {
        for conn in self.conns().iter().flatten() {
            conn.wait_receive();
        }
    }

    /// ABORT TASK for the command `cmd` names.
    pub(super) fn eh_abort(&self, cmd: &CommandRef<'_>) -> EhOutcome {
        self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        // The connection the command went out on (its allegiance: a target looks the task up
        // there), which keeps it until it ends; a connection being retired is still listed.
        let found = self
            .conns()
            .into_iter()
            .flatten()
            .find_map(|c| c.itt_of_tag(cmd.slot()).map(|itt| (itt, c)));
        let Some((itt, conn)) = found else {
            // Completed meanwhile, or being completed: the receive path completes outside
            // the connection's lock. Wait for it to let go of the command before the midlayer
            // retries or reuses it.
            self.wait_receivers();
            return EhOutcome::Success;
        };
        // On a connection logging out alone no request may follow the logout: `task_mgmt`
        // refuses to send, and the midlayer's next step, a LUN reset, goes on another one.
        match self.task_mgmt(&conn, tmf::ABORT_TASK, cmd.lun(), itt) {
            // Function complete, or the task did not exist (it completed before the abort):
            // the midlayer gets it back the way a reset's commands come back.
            Some(0) | Some(1) => self.forget_covered("abort", |slot| slot.itt == itt),
            _ => EhOutcome::Failed,
        }
    }

    /// LOGICAL UNIT RESET.
    pub(super) fn eh_device_reset(&self, lun: u64) -> EhOutcome {
        let Some(conn) = self.live_conn() else {
            return EhOutcome::Failed;
        };
        match self.task_mgmt(&conn, tmf::LOGICAL_UNIT_RESET, lun, RESERVED_TAG) {
            // The target dropped the LUN's tasks: so do we (the midlayer owns them now).
            Some(0) => self.forget_covered("reset", |slot| slot.lun == lun),
            _ => EhOutcome::Failed,
        }
    }

    /// TARGET WARM RESET; if that fails, the session is reinstated.
    pub(super) fn eh_target_reset(&self) -> EhOutcome {
        let conn = self.live_conn();
        let answer = conn
            .as_ref()
            .and_then(|c| self.task_mgmt(c, tmf::TARGET_WARM_RESET, 0, RESERVED_TAG));
        match answer {
            Some(0) => self.forget_covered("reset", |_| true),
            // The last resort, as open-iscsi's: a new connection.
            _ => self.reset_session(),
        }
    }

    /// After an abort, a LUN or a target reset the target answered (`what`, for the log):
    /// forgets the commands it covered
    /// (`which`; their queued R2T bursts are then dropped unsent), takes back those a Data-In
    /// is being placed into on any connection (the reset may have been answered on another
    /// one than their data arrives on), and waits (bounded) for those lent to a sender to
    /// come back, since until then the sender reads their pages. A sender the target keeps
    /// past the bound loses its connection, which gives them back. `Success` once none is
    /// out: the midlayer frees or reuses what it gets back.
    fn forget_covered(&self, what: &str, which: impl Fn(&Slot) -> bool) -> EhOutcome {
        let conns = self.conns();
        for conn in conns.iter().flatten() {
            conn.end_where(&which, Ending::Forget);
            if conn.release_placement_where(&which) {
                pr_info!(
                    "core-iscsi: channel {}: {}: connection {} was receiving data for a command it covered; the rest of that data is dropped\n",
                    self.name.as_str(),
                    what,
                    conn.cid()
                );
            }
            if conn.is_dead() {
                // Not retired yet, and no transmit work will finish a PDU an inline send
                // left partly sent: its command comes back now, not at the bound below.
                conn.wait_sender();
            }
        }
        let deadline = Deadline::after_ms(self.stall_bound_ms().into());
        let back = self.wait_until(deadline, |_| {
            let lent = conns.iter().flatten().any(|c| c.has_command(&which));
            (!lent).then_some(())
        });
        if back.is_none() {
            pr_warn!(
                "core-iscsi: channel {}: {}: a command still being sent after {} s; dropping its connection\n",
                self.name.as_str(),
                what,
                self.stall_bound_ms() / 1000
            );
            for conn in conns.iter().flatten().filter(|c| c.has_command(&which)) {
                conn.fail(Failure::ResetFailed);
                conn.wait_sender();
                conn.release_placement();
            }
        }
        // A command the target ended just before may still be completing.
        self.wait_receivers();
        EhOutcome::Success
    }

    /// Drops the connection and waits for the ticker's ordinary recovery: reinstating the
    /// session (same ISID) makes the target end every task of the old connection (RFC 7143
    /// section 6.3.5), which a reset it did not do could not promise. `Success` once the
    /// session runs on a new, live leading connection; `Failed` if it failed instead, is being
    /// stopped, or did not come back in time. Either way no command is touched again: the
    /// midlayer takes them back even on `Failed`.
    fn reset_session(&self) -> EhOutcome {
        // From the error handler thread, which runs once every command in flight has failed,
        // they are all its own. (A reset asked for through SG_SCSI_RESET may find others:
        // forgotten too, they time out and are retried.) Forget them now, or the recovery
        // would requeue them under its feet.
        let old = self.conns();
        for conn in old.iter().flatten() {
            conn.end_where(|_| true, Ending::Forget);
        }
        for conn in old.iter().flatten() {
            conn.fail(Failure::ResetFailed);
            // A command lent out is forgotten when it comes back; bring it back before we
            // answer. Senders hold `tx` and stop at the shut connection; the receive path
            // gives its placement back here and stops at the dead connection.
            conn.wait_sender();
            conn.release_placement();
        }
        let s = &self.settings;
        let logins = s.login_timeout_s.saturating_mul(self.login_rounds());
        // recover() ends in Running or Failed within replacement_timeout (plus one connect),
        // or returns when the session stops; this limit is a generous bound on that, not a
        // timeout of its own: past it the midlayer offlines the disks, which a later recovery
        // does not bring back.
        let limit_s = s
            .replacement_timeout_s
            .saturating_add(logins)
            .saturating_mul(2)
            .saturating_add(RECOVERY_SLACK_S);
        let deadline = Deadline::after_ms(u64::from(limit_s) * 1000);
        let outcome = self.wait_until(deadline, |ctl| {
            if self.stopping.load(Ordering::Acquire) {
                return Some(EhOutcome::Failed);
            }
            match ctl.phase {
                // Logged in again only once a live leading connection other than those failed
                // here is in place (the ticker may not have seen the failure yet, or the
                // failure may have hit a connection a recovery had just attached). The leading
                // one: only a login of the whole session replaces it, while the grow work may
                // add another to the session failed here.
                Phase::Running => {
                    // Looked at in place: a clone dropped here could be the last reference,
                    // and a socket's release must not run under `ctl`.
                    let conns = self.conns.lock();
                    let fresh = conns.first().and_then(Option::as_ref).is_some_and(|c| {
                        !c.is_dead() && !old.iter().flatten().any(|o| Arc::ptr_eq(c, o))
                    });
                    drop(conns);
                    fresh.then_some(EhOutcome::Success)
                }
                Phase::Recovering | Phase::Starting => None,
                Phase::Failed(_) | Phase::Paused | Phase::Stopping => Some(EhOutcome::Failed),
            }
        });
        outcome.unwrap_or_else(|| {
            pr_warn!(
                "core-iscsi: channel {}: reset: the session did not come back in {} s\n",
                self.name.as_str(),
                limit_s
            );
            EhOutcome::Failed
        })
    }
}
