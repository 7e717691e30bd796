//! A connection's task set: one slot per tag (the block layer's tag, shared by every hardware
//! queue and every connection of the session), in storage the caller allocates once per
//! connection, and the Initiator Task Tags that name them.
//!
//! An ITT carries, from the top: a bit that is set only on the session's own PDUs (pings, task
//! management, logout, text: see [`OWN_ITT`]), the hardware queue (5 bits), the slot's
//! generation (10 bits, advanced every time the tag is reused on any connection: the session
//! keeps the generations, see `ffp_session::Session`) and the tag (16 bits). A
//! target's ITT is never trusted to index memory by itself: a lookup checks the whole ITT
//! against the slot, so a late or forged PDU naming an older use of a slot finds nothing.
//!
//! A task lives in the set of the connection it was sent on (its allegiance, RFC 7143 section
//! 7.1.1): the target answers on that connection, task management for it goes there, and
//! connection recovery at ErrorRecoveryLevel 2 will move exactly that set to another
//! connection. No session-wide lock is needed to find, place into or end a task.

use super::dataout::WriteParams;
use super::task::Task;

/// ITTs with this bit set name the session's own PDUs, never a command.
pub const OWN_ITT: u32 = 0x8000_0000;
/// Hardware queues an ITT can name.
pub const MAX_QUEUES: u8 = 32;
const QUEUE_SHIFT: u32 = 26;
const GEN_SHIFT: u32 = 16;
pub(super) const GEN_MASK: u16 = 0x3ff;

/// The parts of a command's ITT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Itt {
    /// Hardware queue (below [`MAX_QUEUES`]).
    pub queue: u8,
    /// Generation of the slot (10 bits).
    pub generation: u16,
    /// Block-layer tag: the slot.
    pub tag: u16,
}

impl Itt {
    /// The wire value.
    pub fn value(self) -> u32 {
        (u32::from(self.queue) & 0x1f) << QUEUE_SHIFT
            | u32::from(self.generation & GEN_MASK) << GEN_SHIFT
            | u32::from(self.tag)
    }

    /// The parts of a command's ITT; `None` for the session's own ITTs and the reserved tag.
    pub fn parse(v: u32) -> Option<Itt> {
        if v & OWN_ITT != 0 {
            return None;
        }
        Some(Itt {
            queue: ((v >> QUEUE_SHIFT) & 0x1f) as u8,
            generation: ((v >> GEN_SHIFT) as u16) & GEN_MASK,
            tag: (v & 0xffff) as u16,
        })
    }
}

/// A command to start, as the SCSI midlayer describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Block-layer tag (the slot).
    pub tag: u16,
    /// Hardware queue it came from.
    pub queue: u8,
    /// LUN, as carried in PDUs.
    pub lun: [u8; 8],
    /// The CDB, zero padded (longer CDBs are not supported).
    pub cdb: [u8; 16],
    /// Task attribute (see `pdu::task_attr`).
    pub attr: u8,
    /// Bytes the command reads.
    pub read_len: u32,
    /// Bytes the command writes.
    pub write_len: u32,
}

/// One command in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// Its ITT.
    pub itt: u32,
    /// Its CmdSN.
    pub cmd_sn: u32,
    /// The connection it was sent on (its allegiance).
    pub cid: u16,
    /// What the midlayer asked for.
    pub spec: CommandSpec,
    /// The protocol state: Data-In, R2T and response checks.
    pub task: Task,
    /// The command PDU has gone out (a command still queued has no place in the target's
    /// CmdSN order yet).
    pub sent: bool,
}

/// One slot of the task set; the caller allocates `depth` of them (`TaskSlot::default()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskSlot {
    running: Option<Running>,
    /// The transmit queue still holds the command entry of the slot's last task (sent as the
    /// command, or as its filler NOP-Out if the task ended first). The slot is not reused
    /// on this connection until it has left: so a slot's task, with everything it queued,
    /// and what an ended task before it left behind fit in [`tx_capacity`]'s share of a
    /// slot, however often the tag ends and comes back while the socket is full.
    ///
    /// [`tx_capacity`]: super::ffp_tx::tx_capacity
    command_queued: Option<u32>,
}

/// Why a command could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The tag names no slot, or the queue is out of range.
    BadTag,
    /// The slot holds a task.
    Busy,
    /// The slot's last task is over, but its command entry still waits in this connection's
    /// transmit queue (to go out as its filler NOP-Out): another connection can take the tag.
    CommandQueued,
    /// The command window is shut (see `Session::window_shut_since`).
    WindowShut,
    /// The connection's transmit queue is full.
    QueueFull,
    /// The connection is lost.
    Lost,
    /// No room for another request of the session's own (task management, logout, text).
    TooManyRequests,
}

/// The task set over caller-provided slots (a `Vec`, a kernel `KVec`, a slice).
#[derive(Debug)]
pub struct TaskSet<S> {
    slots: S,
    in_flight: usize,
}

impl<S: core::ops::DerefMut<Target = [TaskSlot]>> TaskSet<S> {
    /// A task set over `slots` (all free: `TaskSlot::default()`).
    pub fn new(slots: S) -> Self {
        TaskSet {
            slots,
            in_flight: 0,
        }
    }

    /// Commands in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Slots (the depth).
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Puts a command in its slot under the ITT its tag's `generation` makes, with the
    /// protocol state for the negotiated write parameters; returns the ITT.
    pub(super) fn insert(
        &mut self,
        spec: &CommandSpec,
        generation: u16,
        cmd_sn: u32,
        cid: u16,
        params: &WriteParams,
    ) -> Result<u32, StartError> {
        if spec.queue >= MAX_QUEUES {
            return Err(StartError::BadTag);
        }
        self.check_free(spec.tag)?;
        let slot = self
            .slots
            .get_mut(usize::from(spec.tag))
            .ok_or(StartError::BadTag)?;
        let itt = Itt {
            queue: spec.queue,
            generation: generation & GEN_MASK,
            tag: spec.tag,
        }
        .value();
        slot.command_queued = Some(itt);
        slot.running = Some(Running {
            itt,
            cmd_sn,
            cid,
            spec: *spec,
            task: Task::new(spec.read_len, spec.write_len, params),
            sent: false,
        });
        self.in_flight = self.in_flight.saturating_add(1);
        Ok(itt)
    }

    /// Whether the slot for `tag` can take a command: no task in it
    /// ([`StartError::Busy`]), and its last command entry gone from the transmit queue
    /// ([`StartError::CommandQueued`]).
    pub fn check_free(&self, tag: u16) -> Result<(), StartError> {
        let slot = self.slots.get(usize::from(tag)).ok_or(StartError::BadTag)?;
        if slot.running.is_some() {
            Err(StartError::Busy)
        } else if slot.command_queued.is_some() {
            Err(StartError::CommandQueued)
        } else {
            Ok(())
        }
    }

    /// The command entry of the slot `itt` names has left the transmit queue (as its command
    /// or its filler); the slot may take the tag's next command once its task is over.
    pub(super) fn command_left(&mut self, itt: u32) {
        let slot = Itt::parse(itt).and_then(|i| self.slots.get_mut(usize::from(i.tag)));
        if let Some(slot) = slot.filter(|s| s.command_queued == Some(itt)) {
            slot.command_queued = None;
        }
    }

    /// The command named by `itt`, if it is in flight (the whole ITT must match).
    pub fn get(&self, itt: u32) -> Option<&Running> {
        let tag = Itt::parse(itt)?.tag;
        let r = self.slots.get(usize::from(tag))?.running.as_ref()?;
        (r.itt == itt).then_some(r)
    }

    /// As [`TaskSet::get`], mutable.
    pub fn get_mut(&mut self, itt: u32) -> Option<&mut Running> {
        let tag = Itt::parse(itt)?.tag;
        let r = self.slots.get_mut(usize::from(tag))?.running.as_mut()?;
        (r.itt == itt).then_some(r)
    }

    /// The ITT of the command in flight with block-layer tag `tag`.
    pub fn itt_of_tag(&self, tag: u16) -> Option<u32> {
        Some(self.slots.get(usize::from(tag))?.running.as_ref()?.itt)
    }

    /// Takes `itt` out of the set: it is over (completed, or handed back to the midlayer by
    /// the caller after an abort, a reset or a lost connection). A second removal of the same
    /// ITT finds nothing: a task ends once.
    pub fn remove(&mut self, itt: u32) -> Option<Running> {
        let tag = Itt::parse(itt)?.tag;
        let slot = self.slots.get_mut(usize::from(tag))?;
        if slot.running.as_ref()?.itt != itt {
            return None;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        slot.running.take()
    }

    /// The commands in flight, in tag order.
    pub fn iter(&self) -> impl Iterator<Item = &Running> + '_ {
        self.slots.iter().filter_map(|s| s.running.as_ref())
    }

    /// Removes every command for which `which` holds, handing each to `ended` (recovery:
    /// requeue them; a reset: forget them).
    pub fn remove_where(
        &mut self,
        mut which: impl FnMut(&Running) -> bool,
        mut ended: impl FnMut(Running),
    ) {
        for slot in self.slots.iter_mut() {
            if slot.running.as_ref().is_some_and(&mut which) {
                if let Some(r) = slot.running.take() {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    ended(r);
                }
            }
        }
    }
}
