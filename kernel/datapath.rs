// SPDX-License-Identifier: GPL-2.0

//! The data path's state shared by a session and its connections: the engine's session half
//! (the CmdSN window, the task set and the session's own requests: `proto::ffp_session`), the
//! midlayer's commands (`tasks`), whether commands may go out, and the negotiated parameters.
//! It lives under one softirq-safe spinlock, `io`, taken per PDU by the receive path (softirq
//! context) and per command by queuecommand; nothing under it sleeps.
//!
//! Lock order: a connection's `rx` (one receiver), then its `engine`, then `io`. A connection's
//! engine and `io` are taken together for every engine call that needs both halves (receive,
//! poll_transmit, requests); `io` alone for what only the session half or the table is about
//! (a reset forgetting commands, counters).

use crate::proto::dataout::WriteParams;
use crate::proto::ffp_session::{Session as FfpSession, Window};
use crate::proto::ffp_tasks::TaskSlot;
use crate::proto::login::LoginComplete;
use crate::proto::text::Params;
use crate::tasks::{Ending, Slot, TaskTable};
use kernel::alloc::KVVec;
use kernel::prelude::*;

/// The engine's session half, over slots allocated once per session.
pub(crate) type EngineSession = FfpSession<KVVec<TaskSlot>>;

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
    pub(crate) cmds: TaskTable,
    pub(crate) params: Params,
}

impl Io {
    /// The state of a session not logged in yet, for `depth` commands (the host's can_queue).
    pub(crate) fn new(depth: u16) -> Result<Self> {
        let slots = KVVec::from_elem(TaskSlot::default(), depth.into(), GFP_KERNEL)?;
        let params = Params::default();
        Ok(Self {
            link: Link::Down,
            ffp: FfpSession::new(slots, WriteParams::from(&params), 1, 1),
            cmds: TaskTable::new(depth)?,
            params,
        })
    }

    /// Takes what a login ended with: its window (login requests are immediate, so its
    /// ExpCmdSN is our next CmdSN) and the parameters. The task set is empty: the last
    /// connection's commands ended with it ([`Io::end_connection`]).
    pub(crate) fn logged_in(&mut self, done: &LoginComplete) {
        self.ffp.window = Window::new(done.exp_cmd_sn, done.exp_cmd_sn, done.max_cmd_sn);
        self.ffp.write_params = WriteParams::from(&done.params);
        self.params = done.params;
    }

    /// Connection `cid` is gone: every command sent or queued on it leaves the engine's set
    /// and is ended with `ending` (requeued, or failed); its own requests are forgotten.
    pub(crate) fn end_connection(&mut self, cid: u16, ending: Ending) {
        let cmds = &mut self.cmds;
        self.ffp.end_connection(cid, |r| cmds.finish(r.itt, ending));
    }

    /// Ends every command for which `which` holds, in the engine and in the table (a lent
    /// command when it comes back): queued bursts of theirs are then dropped unsent.
    pub(crate) fn end_where(&mut self, which: impl Fn(&Slot) -> bool, ending: Ending) {
        let cmds = &mut self.cmds;
        self.ffp
            .tasks
            .remove_where(|r| cmds.get(r.itt).is_some_and(&which), |_| {});
        cmds.finish_where(which, ending);
    }
}
