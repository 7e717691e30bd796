//! A userspace iSCSI driver over std TCP, driving the `iscsi-proto` core: login (with one-way
//! or mutual CHAP), SendTargets discovery, SCSI commands with immediate / unsolicited /
//! R2T-solicited Data-Out, and logout, with digests.
//!
//! The protocol logic (PDUs and their framing, login state machine, text negotiation, CHAP,
//! SendTargets parsing, CDBs, the full-feature-phase engine) is proto's alone, shared with the
//! kernel module; this module does the I/O around it: sockets, a receive buffer, timeouts,
//! random bytes, the platform hash implementations and the command line.
//!
//! `initiator-ctl discover` and `initiator-ctl probe` are thin shells over this module, and the
//! interop tests (tools/tests/interop.rs) drive it against real tgtd and istgt.

pub mod cli;
pub mod conn;
pub mod digest;
pub mod error;
pub mod portal;
pub mod scsi;
pub mod session;

pub use conn::{Connection, RawPdu, Timeouts};
pub use error::{NetError, Result};
pub use portal::Portal;
pub use session::{ChapCredentials, DataDir, DiscoveredTarget, LoginOptions, Negotiated, Session};

/// Log in to `portal` for discovery (with `opts`' CHAP credentials, if any; `opts.target_name`
/// is ignored), ask SendTargets=All, log out, and return every target with its addresses.
pub fn discover(portal: &Portal, opts: &LoginOptions) -> Result<Vec<DiscoveredTarget>> {
    let mut o = opts.clone();
    o.target_name = None;
    let mut s = Session::login(portal, &o)?;
    let targets = s.send_targets()?;
    // A failed logout after a complete answer does not lose the answer.
    if let Err(e) = s.logout() {
        log::warn!("discovery logout from {portal}: {e}");
    }
    Ok(targets)
}
