// SPDX-License-Identifier: GPL-2.0

//! The data path's state shared by a session and its connections: the engine's session half
//! (the CmdSN window, the tags' generations and the session's own requests:
//! `proto::ffp_session`), whether commands may go out, and the negotiated parameters. It lives
//! under one softirq-safe spinlock, `io`, taken per PDU by the receive path (softirq context:
//! every PDU from the target moves the window) and per command by queuecommand (a CmdSN);
//! nothing under it sleeps. The commands in flight are not here: each connection keeps those
//! sent on it, in its engine's task set and its own `tasks::TaskTable`, under its own lock.
//!
//! Lock order: a connection's `rx` (one receiver), then its `engine`, then `io`. A connection's
//! engine and `io` are taken together for every engine call that needs both halves (receive,
//! poll_transmit, requests); `io` alone for what only the session half is about.

use crate::proto::dataout::WriteParams;
use crate::proto::ffp_session::{Session as FfpSession, Window};
use crate::proto::login::LoginComplete;
use crate::proto::text::Params;
use kernel::alloc::KVVec;
use kernel::prelude::*;

/// The engine's session half, over the tags' generations allocated once per session.
pub(crate) type EngineSession = FfpSession<KVVec<u16>>;

/// Whether the data path can send.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Logged in: commands go out.
    Up,
    /// Recovering or paused: the host is blocked, a racing command is retried later.
    Down,
    /// Given up (replacement timeout) or stopping: commands fail at once.
    Failed,
}

/// The data path's shared state (see the module documentation).
pub(crate) struct Io {
    pub(crate) link: Link,
    pub(crate) ffp: EngineSession,
    pub(crate) params: Params,
}

impl Io {
    /// The state of a session not logged in yet, for `depth` commands (the host's can_queue).
    pub(crate) fn new(depth: u16) -> Result<Self> {
        let generations = KVVec::from_elem(0u16, depth.into(), GFP_KERNEL)?;
        let params = Params::default();
        Ok(Self {
            link: Link::Down,
            ffp: FfpSession::new(generations, WriteParams::from(&params), 1, 1),
            params,
        })
    }

    /// Takes what a login ended with: its window (login requests are immediate, so its
    /// ExpCmdSN is our next CmdSN) and the parameters. No command is in flight: the last
    /// connection's ended with it (`Connection::end_tasks`).
    pub(crate) fn logged_in(&mut self, done: &LoginComplete) {
        self.ffp.window = Window::new(done.exp_cmd_sn, done.exp_cmd_sn, done.max_cmd_sn);
        self.ffp.write_params = WriteParams::from(&done.params);
        self.params = done.params;
    }
}
