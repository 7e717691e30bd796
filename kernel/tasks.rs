// SPDX-License-Identifier: GPL-2.0

//! The midlayer's commands in flight, by block-layer tag.
//!
//! The protocol state of a command (its ITT, CmdSN, connection, Data-In and R2T checks) is the
//! full-feature-phase engine's (`proto::ffp_tasks`); this table holds what the engine cannot:
//! the `Command` itself, which the midlayer lent us. Both are kept under the connection's
//! `engine` lock and change together: a command enters both in queuecommand and leaves the engine's set
//! first (a response, an abort, a lost connection), then this table. Every lookup checks the
//! whole ITT (the engine's, with its generation), not just the tag it carries: a target's ITT
//! is never trusted to index memory by itself.
//!
//! A command can be lent out of its slot ([`TaskTable::lend`]) so that its pages are sent or
//! received without holding the lock. While it is out, nothing can complete it: an ending
//! that arrives meanwhile (the target's response, recovery, a reset) is kept in the slot and
//! applied when the command comes back ([`TaskTable::give_back`]). Ownership does the rest: a
//! lent command's pages stay valid because no one else can reach the command.

use crate::sys::scsi::{Command, CommandResult, SENSE_BUFFER_SIZE};
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::alloc::KVVec;
use kernel::prelude::*;
use kernel::sync::Arc;

/// How a command leaves the table.
#[derive(Clone, Copy)]
pub(crate) enum Ending {
    /// Completed to the midlayer with a result, a residual and sense data.
    Complete {
        result: CommandResult,
        resid: u32,
        sense: [u8; SENSE_BUFFER_SIZE],
        sense_len: usize,
    },
    /// Handed back to the midlayer's error handler without completing it (after an abort or
    /// reset it owns the command again).
    Forget,
}

impl Ending {
    /// A completion without residual or sense.
    pub(crate) fn result(result: CommandResult) -> Self {
        Self::with(result, 0, &[])
    }

    /// A completion with a residual and sense data (cut to the midlayer's buffer).
    pub(crate) fn with(result: CommandResult, resid: u32, sense: &[u8]) -> Self {
        let mut buf = [0u8; SENSE_BUFFER_SIZE];
        let sense_len = sense.len().min(SENSE_BUFFER_SIZE);
        if let (Some(dst), Some(src)) = (buf.get_mut(..sense_len), sense.get(..sense_len)) {
            dst.copy_from_slice(src);
        }
        Ending::Complete {
            result,
            resid,
            sense: buf,
            sense_len,
        }
    }

    /// Hands `cmd` back to the midlayer: completed then (`here`) or later by the block layer
    /// (see [`Command::complete_here`]), or forgotten.
    fn apply(self, cmd: Command, here: bool) {
        match self {
            Ending::Forget => cmd.forget(),
            Ending::Complete {
                result,
                resid,
                sense,
                sense_len,
            } => {
                cmd.set_resid(resid);
                if let Some(sense) = sense.get(..sense_len).filter(|s| !s.is_empty()) {
                    cmd.set_sense(sense);
                }
                if here {
                    cmd.complete_here(result);
                } else {
                    cmd.complete(result);
                }
            }
        }
    }
}

/// Ends a lent command that cannot go back where it came from (a path that cannot happen):
/// a command is never leaked, which would leave it to the midlayer's timeout.
pub(crate) fn abandon(cmd: Command) {
    Ending::result(CommandResult::HostError(crate::sys::scsi::HostByte::Error)).apply(cmd, false);
}

/// A command the target ended, taken out of the table to complete after the table's lock is
/// dropped ([`TaskTable::take_finished`]).
#[must_use = "a finished command must be completed"]
pub(crate) struct Finished {
    cmd: Command,
    ending: Ending,
}

impl Finished {
    /// Completes the command: within this call if `here` (see [`Command::complete_here`]), so
    /// its waiter wakes now rather than when the block softirq gets to it, after the rest of
    /// the network receive. The receive path completes here with its own `rx` lock and the
    /// socket held, which is sound: the SCSI completion restarts queues only asynchronously,
    /// a bio's end_io must already be callable in atomic context (completions run in hardirq
    /// too), and nothing the completion reaches takes those locks. The error handler's abort
    /// waits on `rx` for a completion in progress (`Connection::wait_receive`).
    pub(crate) fn complete(self, here: bool) {
        self.ending.apply(self.cmd, here);
    }
}

/// One command in flight.
pub(crate) struct Slot {
    /// The engine's ITT for it.
    pub(crate) itt: u32,
    pub(crate) lun: u64,
    /// `None` while lent out.
    cmd: Option<Command>,
    /// An ending that arrived while the command was lent out.
    ending: Option<Ending>,
}

impl Slot {
    /// The command, unless it is lent out.
    pub(crate) fn into_command(self) -> Option<Command> {
        self.cmd
    }

    /// A slot for `cmd`, named by the ITT the engine gave it.
    pub(crate) fn new(itt: u32, lun: u64, cmd: Command) -> Self {
        Self {
            itt,
            lun,
            cmd: Some(cmd),
            ending: None,
        }
    }
}

/// Commands in flight, by slot.
pub(crate) struct TaskTable {
    slots: KVVec<Option<Slot>>,
    /// Commands in the table. Written only here, with the table borrowed mutably (under its
    /// lock); shared ([`TaskTable::shared_count`]) so that choosing a connection for the next
    /// command can read it without that lock.
    in_flight: Arc<AtomicUsize>,
}

impl TaskTable {
    /// A table for `depth` commands (the SCSI host's can_queue; slots are block-layer tags).
    pub(crate) fn new(depth: u16) -> Result<Self> {
        let mut slots = KVVec::with_capacity(depth.into(), GFP_KERNEL)?;
        for _ in 0..depth {
            // `Slot` is not Clone (it owns a command), so no from_elem.
            slots.push(None, GFP_KERNEL)?;
        }
        Ok(Self {
            slots,
            in_flight: Arc::new(AtomicUsize::new(0), GFP_KERNEL)?,
        })
    }

    /// Commands in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The count [`TaskTable::in_flight`] reads, to read without the table: a hint, as it
    /// may change as soon as it is read.
    pub(crate) fn shared_count(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    fn count(&mut self, change: impl FnOnce(usize) -> usize) {
        // The only writer: a load and a store are enough.
        self.in_flight.store(change(self.in_flight()), Ordering::Relaxed);
    }

    /// Puts a command in the slot its ITT names; gives it back if the slot is taken.
    pub(crate) fn insert(&mut self, slot: Slot) -> core::result::Result<(), Slot> {
        let index = (slot.itt & 0xffff) as usize;
        match self.slots.get_mut(index) {
            Some(s @ None) => {
                *s = Some(slot);
                self.count(|n| n.saturating_add(1));
                Ok(())
            }
            _ => Err(slot),
        }
    }

    /// The command named by `itt`, if it is in flight.
    pub(crate) fn get_mut(&mut self, itt: u32) -> Option<&mut Slot> {
        let slot = self.slots.get_mut((itt & 0xffff) as usize)?.as_mut()?;
        (slot.itt == itt).then_some(slot)
    }

    /// The command named by `itt`, if it is in the table.
    pub(crate) fn get(&self, itt: u32) -> Option<&Slot> {
        let slot = self.slots.get((itt & 0xffff) as usize)?.as_ref()?;
        (slot.itt == itt).then_some(slot)
    }

    /// The ITT of the command in the table with block-layer tag `tag` (its slot).
    pub(crate) fn itt_of_tag(&self, tag: u16) -> Option<u32> {
        Some(self.slots.get(usize::from(tag))?.as_ref()?.itt)
    }

    fn take(&mut self, itt: u32) -> Option<Slot> {
        let entry = self.slots.get_mut((itt & 0xffff) as usize)?;
        if entry.as_ref()?.itt != itt {
            return None;
        }
        let slot = entry.take();
        self.count(|n| n.saturating_sub(1));
        slot
    }

    /// Ends `itt`: now, or when it comes back if it is lent out (the first ending wins). The
    /// block layer completes it later, so this is called with the table locked.
    pub(crate) fn finish(&mut self, itt: u32, ending: Ending) {
        if let Some(Finished { cmd, ending }) = self.take_finished(itt, ending) {
            ending.apply(cmd, false);
        }
    }

    /// As [`TaskTable::finish`], but a command that can end now is handed out, for the caller
    /// to complete once the table's lock is dropped.
    #[must_use = "a finished command must be completed"]
    pub(crate) fn take_finished(&mut self, itt: u32, ending: Ending) -> Option<Finished> {
        let slot = self.get_mut(itt)?;
        if slot.cmd.is_none() {
            slot.ending.get_or_insert(ending);
            return None;
        }
        match self.take(itt) {
            Some(Slot { cmd: Some(cmd), .. }) => Some(Finished { cmd, ending }),
            _ => None,
        }
    }

    /// Ends every command in flight (lent ones when they come back).
    pub(crate) fn finish_all(&mut self, ending: Ending) {
        self.finish_where(|_| true, ending);
    }

    /// Ends every command for which `which` holds.
    pub(crate) fn finish_where(&mut self, which: impl Fn(&Slot) -> bool, ending: Ending) {
        for index in 0..self.slots.len() {
            let itt = match self.slots.get(index) {
                Some(Some(slot)) if which(slot) => slot.itt,
                _ => continue,
            };
            self.finish(itt, ending);
        }
    }

    /// Whether any command in the table (lent ones included) satisfies `which`.
    pub(crate) fn any(&self, which: impl Fn(&Slot) -> bool) -> bool {
        self.slots.iter().flatten().any(which)
    }

    /// Takes `itt`'s command out to use its buffer without the table's lock; `None` if it is
    /// gone, already lent, or has ended.
    pub(crate) fn lend(&mut self, itt: u32) -> Option<Command> {
        let slot = self.get_mut(itt)?;
        if slot.ending.is_some() {
            return None;
        }
        slot.cmd.take()
    }

    /// Returns a command [`TaskTable::lend`] gave out, applying an ending that came meanwhile.
    pub(crate) fn give_back(&mut self, itt: u32, cmd: Command) {
        let Some(slot) = self.get_mut(itt) else {
            // Lent commands keep their slot until they come back: this cannot happen.
            abandon(cmd);
            return;
        };
        match slot.ending.take() {
            Some(ending) => {
                if self.take(itt).is_some() {
                    ending.apply(cmd, false);
                }
            }
            None => slot.cmd = Some(cmd),
        }
    }
}
