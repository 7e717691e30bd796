//! Userspace side of core-iscsi: configuration parsing and the drivers behind `initiator-ctl`.
pub mod net;
