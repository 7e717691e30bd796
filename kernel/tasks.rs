// SPDX-License-Identifier: GPL-2.0

//! The session's table of commands in flight, indexed by Initiator Task Tag.
//!
//! An ITT is `generation << 16 | slot`: the slot is the command's block-layer tag, and the
//! generation changes every time the slot is reused, so a late or forged PDU naming an old ITT
//! finds nothing instead of another command. Generations are 15 bits: ITTs with the top bit set
//! are the session's own (pings, task management, logout; see [`SESSION_ITT`]). Every lookup goes through [`TaskTable::get_mut`],
//! which checks both halves: a target's ITT is never trusted to index memory by itself.

use crate::proto::task::Task;
use crate::sys::scsi::{Command, CommandResult};
use kernel::prelude::*;

/// ITTs at or above this are the session's own PDUs, never a command's.
pub(crate) const SESSION_ITT: u32 = 0x8000_0000;

/// One command in flight.
pub(crate) struct Slot {
    pub(crate) itt: u32,
    pub(crate) cmd_sn: u32,
    pub(crate) lun: u64,
    pub(crate) task: Task,
    pub(crate) cmd: Command,
}

/// Commands in flight, by slot.
pub(crate) struct TaskTable {
    slots: KVec<Option<Slot>>,
    generation: u16,
    in_flight: usize,
}

impl TaskTable {
    /// A table for `depth` commands (the SCSI host's can_queue; slots are block-layer tags).
    pub(crate) fn new(depth: u16) -> Result<Self> {
        let mut slots = KVec::with_capacity(depth.into(), GFP_KERNEL)?;
        for _ in 0..depth {
            // `Slot` is not Clone (it owns a command), so no from_elem.
            slots.push(None, GFP_KERNEL)?;
        }
        Ok(Self { slots, generation: 0, in_flight: 0 })
    }

    /// Commands in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The ITT a command with block-layer tag `tag` gets, if its slot exists and is free.
    pub(crate) fn reserve(&mut self, tag: u32) -> Option<u32> {
        let index = usize::try_from(tag & 0xffff).ok()?;
        if tag > 0xffff || !matches!(self.slots.get(index), Some(None)) {
            return None;
        }
        self.generation = self.generation.wrapping_add(1) & 0x7fff;
        Some(u32::from(self.generation) << 16 | (tag & 0xffff))
    }

    /// Puts a command in the slot its ITT (from [`TaskTable::reserve`]) names.
    pub(crate) fn insert(&mut self, slot: Slot) -> core::result::Result<(), Slot> {
        let index = (slot.itt & 0xffff) as usize;
        match self.slots.get_mut(index) {
            Some(s @ None) => {
                *s = Some(slot);
                self.in_flight = self.in_flight.saturating_add(1);
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

    /// Takes the command named by `itt` out of the table.
    pub(crate) fn remove(&mut self, itt: u32) -> Option<Slot> {
        let entry = self.slots.get_mut((itt & 0xffff) as usize)?;
        if entry.as_ref()?.itt != itt {
            return None;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        entry.take()
    }

    /// The ITT of the in-flight command with block-layer tag `tag`.
    pub(crate) fn itt_of_tag(&self, tag: u32) -> Option<u32> {
        Some(self.slots.get(usize::try_from(tag & 0xffff).ok()?)?.as_ref()?.itt)
    }

    /// Completes `itt` with `result`. Data is copied in and out of a command's buffer only
    /// under the lock that guards this table, so nothing can be using its pages.
    pub(crate) fn complete(&mut self, itt: u32, result: CommandResult) {
        if let Some(slot) = self.remove(itt) {
            slot.cmd.complete(result);
        }
    }

    /// Forgets (hands back to the SCSI midlayer without completing) every command for which
    /// `which` holds: what a successful LUN or target reset means for the commands it covered.
    pub(crate) fn forget_where(&mut self, which: impl Fn(&Slot) -> bool) {
        for entry in self.slots.iter_mut() {
            if entry.as_ref().is_some_and(&which) {
                if let Some(slot) = entry.take() {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    slot.cmd.forget();
                }
            }
        }
    }

    /// Completes every command in flight with `result`.
    pub(crate) fn complete_all(&mut self, result: CommandResult) {
        for entry in self.slots.iter_mut() {
            if let Some(slot) = entry.take() {
                slot.cmd.complete(result);
            }
        }
        self.in_flight = 0;
    }
}
