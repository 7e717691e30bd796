//! A userspace iSCSI driver over std TCP, driving the `iscsi-proto` core: connection framing
//! with digests, login (with one-way or mutual CHAP), SendTargets discovery, SCSI commands with
//! immediate / unsolicited / R2T-solicited Data-Out, and logout.
//!
//! `initiator-ctl discover` and `initiator-ctl probe` are thin shells over this module, and the
//! interop tests (tools/tests/interop.rs) drive it against real tgtd and istgt.

pub mod conn;
pub mod digest;
pub mod error;
pub mod portal;

pub use conn::{Connection, RawPdu, Timeouts};
pub use error::{NetError, Result};
pub use portal::Portal;
