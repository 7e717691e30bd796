// SPDX-License-Identifier: GPL-2.0

//! Growing a running session back to the connections its portals ask for. A login (at start,
//! in recovery, on resume) leaves out a connection that cannot log in (its portal does not
//! answer, or the target refuses it), so that a dead portal or NIC never keeps the channel
//! down; once the session runs, the grow work tries the missing ones again, each through its
//! own portal, and adds those that log in.
//!
//! The login runs without `op`: a portal that does not answer holds it up for login_timeout,
//! and recovery, pause and `stop` must not wait for that (stop interrupts it like any login).
//! Only the attach takes `op`, and only if the session is still the one the connection logged
//! in to: the same leading connection, alive, with the CID the login used still free, and
//! the same `epoch` (every loss, every `detach` and every connection leaving alone moves it).

use super::{Conns, Session};
use crate::channel::{Settings, MAX_CONNECTIONS};
use crate::login::LoginBuffers;
use crate::sys::mem::{now_ms, NoIoScope};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{system_unbound, WorkItem};

/// The first try at the missing connections comes this long after a login of the session;
/// each try without them doubles the wait, up to `GROW_MAX_MS`.
pub(super) const GROW_FIRST_MS: u32 = 5_000;

/// The longest wait between two tries.
const GROW_MAX_MS: u32 = 60_000;

/// How many of the connections that entry `index` of the portals asks for are not open (lost
/// ones count as open until recovery retires them). The connections through one address and
/// device count towards the entries that name it in order, so that an entry listed twice does
/// not take the other's as its own.
pub(super) fn missing_at(settings: &Settings, conns: &Conns, index: usize) -> usize {
    let Some(portal) = settings.portals().nth(index) else {
        return 0;
    };
    let key = (&portal.addr, portal.ifindex);
    let open = conns
        .iter()
        .flatten()
        .filter(|c| {
            let o = c.origin();
            (&o.portal, o.ifindex) == key
        })
        .count();
    let before: usize = settings
        .portals()
        .take(index)
        .filter(|p| (&p.addr, p.ifindex) == key)
        .map(|p| usize::from(p.connections))
        .sum();
    usize::from(portal.connections).saturating_sub(open.saturating_sub(before))
}

impl Session {
    /// The portal (its index) of each connection the portals ask for that is not open, in
    /// portal order, as many as the target's MaxConnections leaves room for, less those of a
    /// portal held back (`hold`); gives how many entries of `out` it filled.
    fn missing(&self, conns: &Conns, out: &mut [usize; MAX_CONNECTIONS]) -> usize {
        let open = conns.iter().flatten().count();
        let granted = usize::from(self.io.lock().params.session.max_connections.max(1));
        let room = granted.saturating_sub(open).min(out.len());
        let mut n = 0;
        for i in 0..self.settings.portals().count() {
            if self.held_ms(i) > 0 {
                continue;
            }
            for _ in 0..missing_at(&self.settings, conns, i) {
                if n < room {
                    if let Some(slot) = out.get_mut(n) {
                        *slot = i;
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// After a login of the whole session: the missing connections get their first try
    /// `GROW_FIRST_MS` from now.
    pub(super) fn grow_later(&self) {
        self.grow_wait_ms.store(GROW_FIRST_MS, Ordering::Relaxed);
        self.grow_at.store(
            now_ms().saturating_add(GROW_FIRST_MS.into()),
            Ordering::Relaxed,
        );
    }

    /// After a connection left the session alone (`leave`): the next try comes after the
    /// wait now in force, not reset to `GROW_FIRST_MS`, so that a target that keeps asking a
    /// portal's connections to leave gets them back ever later (up to `GROW_MAX_MS`).
    pub(super) fn grow_again_later(&self) {
        let wait = self.grow_wait_ms.load(Ordering::Relaxed);
        self.grow_at
            .store(now_ms().saturating_add(wait.into()), Ordering::Relaxed);
    }

    /// Ticker context, the session running: queues the grow work when connections are missing
    /// and their next try is due, and doubles the wait before the one after.
    pub(super) fn maybe_grow(self: &Arc<Self>) {
        // What the run stands on, read before the wait: a connection leaving alone sets the
        // wait before it moves `epoch` (`leave`), so a run that carries the new `epoch` was
        // queued only once that wait was over; one that carries the old ends at the change.
        let epoch = self.epoch.load(Ordering::Acquire);
        let now = now_ms();
        if now < self.grow_at.load(Ordering::Relaxed) {
            return;
        }
        let mut portals = [0usize; MAX_CONNECTIONS];
        let conns = self.conns();
        if conns.iter().all(Option::is_none) || self.missing(&conns, &mut portals) == 0 {
            return;
        }
        drop(conns);
        let wait = self.grow_wait_ms.load(Ordering::Relaxed);
        self.grow_at
            .store(now.saturating_add(wait.into()), Ordering::Relaxed);
        self.grow_wait_ms
            .store(wait.saturating_mul(2).min(GROW_MAX_MS), Ordering::Relaxed);
        self.grow_epoch.store(epoch, Ordering::Release);
        // On a queue of the kernel's, not the module's (whose workers have rescuers for memory
        // reclaim): a login may take login_timeout, and nothing reclaim needs waits for this.
        // Already queued is fine: it tries every missing connection.
        let _ = system_unbound().enqueue::<Arc<Self>, 2>(self.clone());
    }

    /// The grow work: one try at each missing connection, through its portal, the list made
    /// again before each; a portal whose try fails is not tried again in this run. The run
    /// ends at the first change of `epoch` since the ticker queued it: a connection that left
    /// alone meanwhile is missing now, and comes back only when the ticker finds its try due
    /// (`grow_again_later`).
    fn grow(self: &Arc<Self>) {
        // The disks this session serves may be what memory reclaim writes to.
        let _noio = NoIoScope::new();
        let Ok(mut bufs) = LoginBuffers::new() else {
            return;
        };
        let mut refused = [false; MAX_CONNECTIONS];
        let epoch = self.grow_epoch.load(Ordering::Acquire);
        loop {
            if !self.still_running() || self.epoch.load(Ordering::Acquire) != epoch {
                return;
            }
            let conns = self.conns();
            let mut portals = [0usize; MAX_CONNECTIONS];
            let n = self.missing(&conns, &mut portals);
            let next = portals
                .iter()
                .take(n)
                .find(|&&i| !refused.get(i).copied().unwrap_or(true))
                .copied();
            let (Some(portal), Some(lead)) = (next, conns.first().cloned().flatten()) else {
                return;
            };
            let count = conns.iter().flatten().count();
            // The lowest free CID: the next after a login's (0, 1, ...), or the one a
            // connection that left alone (`leave`) gave up.
            let free = conns.iter().position(Option::is_none);
            drop(conns);
            let (Some(Ok(cid)), Ok(tsih)) = (
                free.map(u16::try_from),
                u16::try_from(self.tsih.load(Ordering::Relaxed)),
            ) else {
                return;
            };
            if lead.is_dead() || usize::from(cid) >= MAX_CONNECTIONS {
                return;
            }
            let (stream, done, _) =
                match self.connect_and_login(&mut bufs, None, Some((portal, cid, tsih))) {
                    Ok(logged_in) => logged_in,
                    Err(_) => {
                        // Said once, by the login that left it out; `connections` shows it
                        // missing.
                        if let Some(r) = refused.get_mut(portal) {
                            *r = true;
                        }
                        continue;
                    }
                };
            // A session that changed while this connection logged in (a loss, a recovery, a
            // pause, a stop) gets it closed here at once, without waiting for `op`: it
            // belongs to a session the target is about to end. (A change in the instant
            // before `op` is taken still finds it open while the holder, a recovery say,
            // runs; it is closed after, when the check under `op` fails.)
            if self.epoch.load(Ordering::Acquire) != epoch || !self.still_running() {
                return;
            }
            let _op = self.op.lock();
            let same = {
                let conns = self.conns();
                conns
                    .first()
                    .and_then(Option::as_ref)
                    .is_some_and(|c| Arc::ptr_eq(c, &lead) && !c.is_dead())
                    && conns.iter().flatten().count() == count
                    && conns.get(usize::from(cid)).is_some_and(Option::is_none)
            };
            if !same || self.epoch.load(Ordering::Acquire) != epoch || !self.still_running() {
                return;
            }
            if let Err(why) = self.attach(stream, &done, cid, portal) {
                pr_warn!(
                    "core-iscsi: channel {}: connection {} (TSIH {}) not added: {}\n",
                    self.name.as_str(),
                    cid,
                    tsih,
                    why
                );
                return;
            }
            if let Some(p) = self.settings.portals().nth(portal) {
                pr_info!(
                    "core-iscsi: channel {}: connection {} (TSIH {}) added through portal {}\n",
                    self.name.as_str(),
                    cid,
                    tsih,
                    p.addr
                );
            }
        }
    }
}

impl WorkItem<2> for Session {
    type Pointer = Arc<Session>;

    fn run(this: Arc<Session>) {
        this.grow();
    }
}
