//! The userspace driver's error type.
//!
//! No variant ever carries a CHAP secret: messages name what failed (authentication, a digest,
//! a length), never the credentials used.

use std::io;

/// Everything that can go wrong talking to a target.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The portal string could not be parsed or resolved.
    #[error("bad portal {portal:?}: {reason}")]
    Portal {
        /// What the user gave.
        portal: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The target did not answer in time.
    #[error("timed out {0}")]
    Timeout(String),
    /// The target closed the connection.
    #[error("connection closed by the target {0}")]
    Closed(String),
    /// A received header or data digest did not match.
    #[error("{what} digest mismatch: received {got:#010x}, computed {want:#010x}")]
    Digest {
        /// "header" or "data".
        what: &'static str,
        /// The digest on the wire.
        got: u32,
        /// The digest we computed.
        want: u32,
    },
    /// The target sent a data segment larger than we allowed it to.
    #[error("target sent a {len}-byte data segment, more than the negotiated maximum of {max}")]
    Oversize {
        /// The announced length.
        len: u32,
        /// Our MaxRecvDataSegmentLength.
        max: u32,
    },
    /// The target violated the protocol, or sent something we cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Authentication (CHAP) failed, on either side.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The login was refused by the target (login status class/detail).
    #[error(
        "login rejected by the target: {reason} (status class {class:#04x} detail {detail:#04x})"
    )]
    LoginRejected {
        /// Status-Class.
        class: u8,
        /// Status-Detail.
        detail: u8,
        /// RFC 7143 text for the status.
        reason: &'static str,
    },
    /// A SCSI command completed with a non-GOOD status.
    #[error("SCSI command {op:#04x} failed: status {status:#04x}{sense}")]
    Scsi {
        /// The CDB operation code.
        op: u8,
        /// The SCSI status.
        status: u8,
        /// A printable sense summary (may be empty).
        sense: String,
    },
    /// The target answered a command with an iSCSI-level failure (response != 0).
    #[error("iSCSI response {response:#04x} for command {op:#04x}")]
    Response {
        /// The CDB operation code.
        op: u8,
        /// The iSCSI response code.
        response: u8,
    },
    /// Reading a secret failed.
    #[error("{0}")]
    Secret(String),
    /// Bad input from the administrator (an option, the initiator name file), found before
    /// any connection is made.
    #[error("{0}")]
    Input(String),
    /// Data read back differs from what was written.
    #[error("{0}")]
    Verify(String),
}

impl NetError {
    /// Wrap an I/O error with what we were doing, mapping timeouts and EOF to their variants.
    pub fn io(context: impl Into<String>, source: io::Error) -> NetError {
        let context = context.into();
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Timeout(context),
            io::ErrorKind::UnexpectedEof => NetError::Closed(context),
            io::ErrorKind::ConnectionReset => {
                NetError::Closed(format!("{context} (connection reset)"))
            }
            _ => NetError::Io { context, source },
        }
    }

    /// Whether this is an authentication failure.
    pub fn is_auth(&self) -> bool {
        matches!(self, NetError::Auth(_))
            || matches!(
                self,
                NetError::LoginRejected {
                    class: 2,
                    detail: 1,
                    ..
                }
            )
    }
}

/// Result alias for the driver.
pub type Result<T> = std::result::Result<T, NetError>;
