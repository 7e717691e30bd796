//! Sans-IO iSCSI protocol core (RFC 7143).
//!
//! This crate root exists only for cargo. The kernel module compiles the very same module files
//! through `#[path]` modules inside its own `proto` module (see `kernel/initiator.rs`), so every
//! file here is a leaf module: it names its siblings as `super::x`, carries no crate attributes,
//! uses `core` only, allocates nothing and never panics.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod chap;
pub mod crc;
pub mod dataout;
pub mod ffp_conn;
pub mod ffp_event;
pub mod ffp_inbound;
pub mod ffp_outbound;
pub mod ffp_requests;
pub mod ffp_rx;
pub mod ffp_session;
pub mod ffp_tasks;
pub mod ffp_tx;
pub mod login;
pub mod pdu;
pub mod scsi;
pub mod sendtargets;
pub mod serial;
pub mod settings;
pub mod task;
pub mod text;
