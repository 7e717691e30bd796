//! Userspace side of core-iscsi: configuration parsing and the drivers behind `initiator-ctl`.
pub mod config;
pub mod ctl;
pub mod exit_code;
pub mod net;
pub mod text;
