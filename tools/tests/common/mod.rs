//! Shared helpers for the tools' integration tests.
pub mod targets;
