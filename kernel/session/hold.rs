// SPDX-License-Identifier: GPL-2.0

//! Holding back a portal entry whose added connections drop soon after they log in.
//!
//! At ErrorRecoveryLevel 0 every lost connection costs a recovery of the whole session, its
//! I/O held meanwhile. A portal that lets a connection log in and then drops it (a flapping
//! link, a target or middlebox that ends the second connection of a session) would cost one
//! every few seconds for as long as it does so: each recovery logs that connection in again.
//! So when two connections in a row added through a portal entry are lost having worked
//! (the target's last bytes on them) less than `SHORT_LIFE_MS` after their login (one such
//! loss may be a fault that has passed: a single reset, a cable pulled and put back), the
//! entry is held back: logins of the whole session (recovery, resume) and the grow work leave
//! the added connections through its address and device out (an address listed in two
//! entries is one portal) until the hold is over, the holds doubling from `HOLD_FIRST_MS` to
//! `HOLD_MAX_MS` while they keep dropping, and everything forgotten once one through the
//! entry has worked that long. The time is the last bytes', not the loss's: a connection that
//! goes silent is only found dead by its ping's timeout, later than `SHORT_LIFE_MS` with the
//! defaults.
//!
//! What counts is the loss that begins a recovery: when a target drops the whole session, the
//! added connection may be the one seen first, so a target that does so twice within
//! `SHORT_LIFE_MS` of the logins holds an entry back that did nothing wrong; the cost is
//! running on fewer connections for `HOLD_FIRST_MS`. The leading connection is never held
//! back: the session needs one. A portal that drops it costs a recovery each time (each one
//! bounded by replacement_timeout), as at ErrorRecoveryLevel 0 it must.
//!
//! Read and written with atomics only (the loss's report and the ticker, which may both see
//! one loss: a connection is counted once, by its login time).

use super::{Conns, Session, LEADING_CID};
use crate::channel::MAX_PORTALS;
use crate::connection::Connection;
use crate::sys::mem::now_ms;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::Arc;

/// An added connection lost sooner than this after its login counts against its entry.
const SHORT_LIFE_MS: u64 = 10_000;

/// Short-lived losses in a row that hold an entry back.
const STRIKES: u32 = 2;

/// The first hold of an entry.
const HOLD_FIRST_MS: u32 = 10_000;

/// The longest hold.
const HOLD_MAX_MS: u32 = 300_000;

/// Per portal entry: until when its added connections are held back (`now_ms`; 0: never),
/// the length of its next hold, its short-lived losses in a row, and the login time of the
/// last one counted.
pub(super) struct Holds {
    until: [AtomicU64; MAX_PORTALS],
    next_ms: [AtomicU32; MAX_PORTALS],
    strikes: [AtomicU32; MAX_PORTALS],
    counted: [AtomicU64; MAX_PORTALS],
}

impl Holds {
    pub(super) fn new() -> Self {
        Self {
            until: core::array::from_fn(|_| AtomicU64::new(0)),
            next_ms: core::array::from_fn(|_| AtomicU32::new(HOLD_FIRST_MS)),
            strikes: core::array::from_fn(|_| AtomicU32::new(0)),
            counted: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// An added connection through `entry` that logged in at `since` and worked `worked_ms`
    /// was lost (noticed at `now`): counted if that was short, and the entry held back at
    /// the `STRIKES`th in a row. Gives the hold's length in ms, if it began one.
    pub(super) fn lost(&self, entry: usize, since: u64, worked_ms: u64, now: u64) -> Option<u32> {
        if worked_ms >= SHORT_LIFE_MS {
            return None;
        }
        let until = self.until.get(entry)?;
        let next = self.next_ms.get(entry)?;
        let strikes = self.strikes.get(entry)?;
        if self.counted.get(entry)?.swap(since, Ordering::Relaxed) == since {
            return None;
        }
        if strikes.fetch_add(1, Ordering::Relaxed).saturating_add(1) < STRIKES {
            return None;
        }
        let ms = next.load(Ordering::Relaxed);
        next.store(ms.saturating_mul(2).min(HOLD_MAX_MS), Ordering::Relaxed);
        until.store(now.saturating_add(ms.into()), Ordering::Relaxed);
        Some(ms)
    }

    /// An added connection through `entry` has been up for `SHORT_LIFE_MS`: its earlier
    /// losses are forgotten, and a later hold is the first length again.
    pub(super) fn lasted(&self, entry: usize) {
        if let (Some(next), Some(strikes)) = (self.next_ms.get(entry), self.strikes.get(entry)) {
            next.store(HOLD_FIRST_MS, Ordering::Relaxed);
            strikes.store(0, Ordering::Relaxed);
        }
    }

    /// How long `entry`'s added connections are still held back at `now`, in ms (0: not).
    pub(super) fn left_ms(&self, entry: usize, now: u64) -> u64 {
        self.until
            .get(entry)
            .map_or(0, |u| u.load(Ordering::Relaxed).saturating_sub(now))
    }
}

impl Session {
    /// The connection whose loss begins a recovery (the session running; reported by
    /// `failed`, or found dead by the ticker first): an added one that worked only briefly
    /// after its login counts against its entry.
    pub(super) fn hold_if_short_lived(&self, conn: &Connection) {
        if conn.cid() == LEADING_CID {
            return;
        }
        let o = conn.origin();
        let worked = conn.heard_ms().saturating_sub(o.since_ms);
        let Some(ms) = self.holds.lost(o.entry, o.since_ms, worked, now_ms()) else {
            return;
        };
        pr_warn!(
            "core-iscsi: channel {}: connection {} through portal {} was lost, last heard from {} ms after its login: no connection is added through that portal for {} s\n",
            self.name.as_str(),
            conn.cid(),
            o.portal,
            worked,
            ms / 1000
        );
    }

    /// Ticker: the entries of the added connections that have worked `SHORT_LIFE_MS` since
    /// their login forget their losses (`Holds::lasted`). Not the leading connection's: it is
    /// never held back, and says nothing of how its entry's added ones fare.
    pub(super) fn note_lasting(&self, conns: &Conns) {
        let added = |c: &&Arc<Connection>| c.cid() != LEADING_CID && !c.is_dead();
        for c in conns.iter().flatten().filter(added) {
            let o = c.origin();
            if c.heard_ms().saturating_sub(o.since_ms) >= SHORT_LIFE_MS {
                self.holds.lasted(o.entry);
            }
        }
    }

    /// How long the added connections of portal entry `entry` are still held back, in ms (0:
    /// not): the longest hold of the entries with its address and device, which count each
    /// other's connections (`grow::missing_at`).
    pub(super) fn held_ms(&self, entry: usize) -> u64 {
        let now = now_ms();
        let Some(p) = self.settings.portals().nth(entry) else {
            return 0;
        };
        self.settings
            .portals()
            .enumerate()
            .filter(|(_, q)| (&q.addr, q.ifindex) == (&p.addr, p.ifindex))
            .map(|(i, _)| self.holds.left_ms(i, now))
            .max()
            .unwrap_or(0)
    }
}
