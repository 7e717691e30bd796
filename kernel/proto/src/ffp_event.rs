//! What the full-feature-phase engine reports: events out of the receive path, and why a
//! connection is lost.

use super::ffp_rx::RxError;
use super::ffp_session::OwnKind;
use super::pdu::PduError;
use super::task::{Completion, TaskError};

/// A command the target answered: it has left the task set, and no other event names it
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished<'a> {
    /// Its ITT.
    pub itt: u32,
    /// Its block-layer tag.
    pub tag: u16,
    /// Its hardware queue.
    pub queue: u8,
    /// iSCSI response, SAM status and residual.
    pub completion: Completion,
    /// Sense data (empty unless CHECK CONDITION carried some).
    pub sense: &'a [u8],
}

/// What a received PDU means to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A command ended.
    Finished(Finished<'a>),
    /// Something was queued to send (the burst an R2T asked for, an answer to the target's
    /// ping): call `poll_transmit`.
    Transmit,
    /// The answer to a task management request.
    TaskMgmt {
        /// The request's ITT.
        itt: u32,
        /// Its function.
        function: u8,
        /// The task it named.
        ref_itt: u32,
        /// Response code (0: function complete).
        response: u8,
    },
    /// The answer to a logout request.
    Logout {
        /// The request's ITT.
        itt: u32,
        /// Response code (0: closed).
        response: u8,
        /// Time2Wait.
        time2wait: u16,
        /// Time2Retain.
        time2retain: u16,
    },
    /// A Text Response to our request: its `len` data bytes were placed (`Want::Place`) right
    /// after the exchange's earlier ones.
    Text {
        /// The request's ITT.
        itt: u32,
        /// TTT to echo when asking for the rest.
        ttt: u32,
        /// Final bit.
        final_: bool,
        /// Continue bit.
        continue_: bool,
        /// Data bytes of this response.
        len: u32,
    },
    /// The target rejected one of the session's own PDUs (task management, logout, text).
    Rejected {
        /// The rejected PDU's ITT.
        itt: u32,
        /// Reject reason.
        reason: u8,
        /// Which request it was: a rejected logout has ended, as one answered with an error.
        request: OwnKind,
    },
    /// The target discarded a Data-Out of a command for its data digest error (Reject,
    /// reason 0x02). The command stays: the rest of its data goes, and the target ends it
    /// with CHECK CONDITION once all of it has come (RFC 7143 7.8: at ErrorRecoveryLevel 0 no
    /// recovery R2T asks for it again), or escalates to dropping the connection.
    DataDigestRejected {
        /// The command's ITT.
        itt: u32,
    },
    /// The target's LUN inventory changed (REPORTED LUNS DATA HAS CHANGED): rescan.
    Rescan,
    /// The target asks us to log out within `within_s` seconds (Async Message event 1).
    LogoutRequested {
        /// Seconds.
        within_s: u16,
    },
    /// This connection's ping, which held back every command of the session
    /// (`ConnConfig::ping_holds_commands`), was answered: call `poll_transmit` on every
    /// connection of the session, this one included.
    Released,
}

/// Why a connection is lost. Every error on a connection ends it (ErrorRecoveryLevel 0): the
/// engine refuses any further call on it with the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The byte stream is malformed (bad header, oversized segment, digest error).
    Framing(RxError),
    /// A PDU does not fit the task it names.
    Task {
        /// The task's ITT.
        itt: u32,
        /// What is wrong.
        error: TaskError,
    },
    /// A PDU the target may not send (an initiator opcode, a login response).
    Unexpected(u8),
    /// The target rejected a Data-Out of a task it keeps for another reason than a data
    /// digest error (Reject, with its reason code).
    DataOutRejected {
        /// The task's ITT.
        itt: u32,
        /// Reject reason.
        reason: u8,
    },
    /// The target rejected a command (Reject, with its reason code): it discarded it, and
    /// its CmdSN is a gap that holds up every later command of the session. The task stays
    /// in the set, for the recovery to send again in a new session, unless [`Lost::fails`]
    /// names it.
    CommandRejected {
        /// The task's ITT.
        itt: u32,
        /// Reject reason.
        reason: u8,
    },
    /// A PDU for a task of another connection.
    WrongConnection(u32),
    /// A PDU for a command we have not sent yet.
    NotSent(u32),
    /// The target's ping carries more data than we echo.
    PingDataTooLong(u32),
    /// More answers to the target's pings wait than we hold.
    PingFlood,
    /// The transmit queue overflowed (the target broke MaxOutstandingR2T).
    QueueFull,
    /// Our ping went unanswered.
    PingTimeout,
    /// A PDU from the target was not received whole in time (`ConnConfig::pdu_timeout_ms`).
    PduTimeout,
    /// The target will drop this connection (Async Message event 2).
    TargetDropsConnection,
    /// The target will drop the session (Async Message event 3).
    TargetDropsSession,
    /// A header could not be encoded (caller's buffer too small).
    Encode(PduError),
    /// The driver closed it (socket error, end of stream, stop).
    Closed,
}

impl Lost {
    /// The command the driver must end with an error instead of sending it again after the
    /// recovery: one the target rejected for something wrong with it (a protocol error, an
    /// invalid field, a command not supported), which it would reject again: a requeue would
    /// repeat the recovery for good. Every other task of the lost connection, this one after
    /// a passing reason (a data digest error, a lack of resources, a logout awaited:
    /// `reject_reason::passing`) included, is the recovery's to requeue.
    pub fn fails(&self) -> Option<u32> {
        match *self {
            Lost::CommandRejected { itt, reason }
                if !super::pdu::reject_reason::passing(reason) =>
            {
                Some(itt)
            }
            _ => None,
        }
    }
}

impl core::fmt::Display for Lost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Lost::Framing(RxError::Pdu(PduError::DataSegmentTooLarge { len, max })) => {
                write!(f, "data segment of {len} bytes, above our limit of {max}")
            }
            Lost::Framing(RxError::Pdu(e)) => write!(f, "malformed PDU header: {e:?}"),
            Lost::Framing(RxError::HeaderDigest { got, want }) => {
                write!(f, "header digest {got:#010x}, computed {want:#010x}")
            }
            Lost::Framing(RxError::DataDigest { got, want }) => {
                write!(f, "data digest {got:#010x}, computed {want:#010x}")
            }
            Lost::Framing(RxError::OutOfTurn) => f.write_str("receive call out of turn"),
            Lost::Task { itt, error } => write!(f, "task {itt:#x}: {error}"),
            Lost::Unexpected(op) => write!(f, "unexpected PDU (opcode {op:#04x})"),
            Lost::DataOutRejected { itt, reason } => write!(
                f,
                "target rejected a Data-Out of task {itt:#x} (reason {reason:#x}): at ErrorRecoveryLevel 0 its data cannot be sent again"
            ),
            Lost::CommandRejected { itt, reason } => write!(
                f,
                "target rejected command {itt:#x} (reason {reason:#x}): its CmdSN is a gap only a new session clears"
            ),
            Lost::WrongConnection(itt) => {
                write!(f, "PDU for task {itt:#x} of another connection")
            }
            Lost::NotSent(itt) => write!(f, "PDU for task {itt:#x}, not sent yet"),
            Lost::PingDataTooLong(n) => write!(f, "NOP-In ping data of {n} bytes"),
            Lost::PingFlood => f.write_str("too many NOP-In pings waiting for an answer"),
            Lost::QueueFull => f.write_str("transmit queue full (too many R2Ts)"),
            Lost::PingTimeout => f.write_str("ping not answered in time"),
            Lost::PduTimeout => f.write_str("a PDU from the target not received whole in time"),
            Lost::TargetDropsConnection => f.write_str("target drops the connection"),
            Lost::TargetDropsSession => f.write_str("target drops the session"),
            Lost::Encode(e) => write!(f, "cannot encode a header: {e:?}"),
            Lost::Closed => f.write_str("closed"),
        }
    }
}
