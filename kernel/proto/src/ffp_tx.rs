//! The transmit queue of one connection: descriptors of the PDUs to send, in order, that name
//! their data as (task, offset, length) instead of holding it, so a driver can send a write's
//! data straight from the command's pages. The connection (`ffp_conn`) fills the queue
//! (commands, R2T bursts, pings, answers to the target's pings, task management, logout, text)
//! and turns its head into one PDU per `poll_transmit`.

use super::dataout::DataOutSeq;

/// What waits to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxItem {
    /// A SCSI command (then its unsolicited Data-Out, if any). If the task has ended before
    /// it is sent (a reset answered on another connection, or one that overtook it, handed
    /// it back), a NOP-Out takes its CmdSN instead.
    Command {
        /// Its ITT.
        itt: u32,
        /// Its CmdSN, spent when it was queued.
        cmd_sn: u32,
    },
    /// A sequence of Data-Out PDUs: a write's unsolicited data, or the burst an R2T asked for.
    DataOut {
        /// The command's ITT.
        itt: u32,
        /// What is left of the sequence.
        seq: DataOutSeq,
        /// Asked for by an R2T (the task's burst ends with the sequence).
        solicited: bool,
    },
    /// Our NOP-Out ping.
    Ping {
        /// Its ITT.
        itt: u32,
    },
    /// The answer to a target's NOP-In ping, its data in the connection's ping buffer `buf`.
    PingReply {
        /// The target's TTT.
        ttt: u32,
        /// The NOP-In's LUN.
        lun: [u8; 8],
        /// Which ping buffer holds the echoed data.
        buf: u8,
    },
    /// A task management request.
    TaskMgmt {
        /// Its ITT.
        itt: u32,
        /// Function code.
        function: u8,
        /// LUN.
        lun: [u8; 8],
        /// Referenced task (`RESERVED_TAG` when none).
        ref_itt: u32,
        /// CmdSN of the referenced task.
        ref_cmd_sn: u32,
    },
    /// A logout request.
    Logout {
        /// Its ITT.
        itt: u32,
        /// Reason code.
        reason: u8,
        /// The connection to close (for connection-level reasons).
        cid: u16,
    },
    /// A text request, its data in the connection's text buffer.
    Text {
        /// Its ITT.
        itt: u32,
        /// The target's TTT when continuing, else `RESERVED_TAG`.
        ttt: u32,
        /// Immediate delivery (the window was shut).
        immediate: bool,
        /// Its CmdSN (assigned when queued unless immediate).
        cmd_sn: u32,
    },
}

/// One entry of a transmit queue; the caller allocates them (`TxSlot::default()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxSlot(Option<TxItem>);

/// Transmit queue entries a connection needs: for every command slot, its task's command (or
/// the unsolicited data that replaces it) and MaxOutstandingR2T bursts, plus the command entry
/// of the tag's next task; then pings, ping answers and the session's own requests. A task
/// that ends leaves its entries queued (a command's turns into its filler NOP-Out, bursts are
/// dropped when reached), and the slot's next task queues its command behind them; but its
/// bursts come only after its command has gone, past them, and the slot takes no further task
/// until then (`TaskSlot::command_queued`): one slot never holds more than its share. The rest:
/// at most `MAX_OWN` requests of the session's own queued on the connection
/// (`Conn::own_queued`), one ping (`Conn::ping_queued`), the answers to two target pings
/// (`PING_BUFS`), and one to spare.
pub fn tx_capacity(depth: usize, max_outstanding_r2t: u16) -> usize {
    depth
        .saturating_mul(usize::from(max_outstanding_r2t).saturating_add(2))
        .saturating_add(super::ffp_session::MAX_OWN)
        .saturating_add(4)
}

/// A bounded FIFO over caller-provided slots.
#[derive(Debug)]
pub struct TxQueue<Q> {
    slots: Q,
    head: usize,
    len: usize,
}

impl<Q: core::ops::DerefMut<Target = [TxSlot]>> TxQueue<Q> {
    /// An empty queue over `slots`.
    pub fn new(slots: Q) -> Self {
        TxQueue {
            slots,
            head: 0,
            len: 0,
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another entry would not fit.
    pub fn is_full(&self) -> bool {
        self.len >= self.slots.len()
    }

    /// Appends `item`; gives it back when the queue is full.
    pub fn push(&mut self, item: TxItem) -> Result<(), TxItem> {
        let cap = self.slots.len();
        if self.len >= cap {
            return Err(item);
        }
        let at = (self.head + self.len) % cap;
        match self.slots.get_mut(at) {
            Some(s) => {
                s.0 = Some(item);
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }

    /// The entry at the head.
    pub fn front(&self) -> Option<TxItem> {
        if self.len == 0 {
            return None;
        }
        self.slots.get(self.head)?.0
    }

    /// Replaces the entry at the head (what is left of it).
    pub fn replace_front(&mut self, item: TxItem) {
        if self.len > 0 {
            if let Some(s) = self.slots.get_mut(self.head) {
                s.0 = Some(item);
            }
        }
    }

    /// Removes the entry at the head.
    pub fn pop(&mut self) -> Option<TxItem> {
        if self.len == 0 {
            return None;
        }
        let cap = self.slots.len();
        let item = self.slots.get_mut(self.head)?.0.take();
        self.head = (self.head + 1) % cap.max(1);
        self.len -= 1;
        item
    }
}

/// Where the data segment of a PDU to send comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxData<'a> {
    /// No data segment.
    None,
    /// `len` bytes at `offset` of the buffer of the command named by `itt`.
    Task {
        /// The command.
        itt: u32,
        /// Offset in its buffer.
        offset: u32,
        /// Bytes.
        len: u32,
    },
    /// Bytes the engine holds (echoed ping data, text).
    Bytes(&'a [u8]),
}

/// What a PDU to send is, for the caller's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// A SCSI command with this much immediate data.
    Command {
        /// Immediate data bytes.
        immediate: u32,
    },
    /// A Data-Out PDU.
    DataOut {
        /// Asked for by an R2T (else unsolicited).
        solicited: bool,
    },
    /// Our ping.
    Ping,
    /// A NOP-Out in place of a command that ended before it was sent.
    Filler,
    /// Our answer to the target's ping.
    PingReply,
    /// Task management.
    TaskMgmt,
    /// Logout.
    Logout,
    /// Text.
    Text,
}

/// One PDU to send: the first `header_len` bytes of the caller's buffer (BHS and header
/// digest), then the data segment from `data`, then `pad` zero bytes, then (when
/// `data_digest`) the CRC32C the caller computes over the data and the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPdu<'a> {
    /// Header bytes written.
    pub header_len: usize,
    /// The data segment.
    pub data: TxData<'a>,
    /// Padding bytes after the data.
    pub pad: usize,
    /// A data digest follows the padding.
    pub data_digest: bool,
    /// What it is.
    pub kind: TxKind,
}
