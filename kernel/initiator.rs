// SPDX-License-Identifier: GPL-2.0

//! core-iscsi: an iSCSI initiator (RFC 7143) for Linux, in Rust.
//!
//! Each channel configured under `/sys/kernel/config/core_iscsi/` is one iSCSI session, which
//! the module logs into and registers as a SCSI host. The layers, from the bottom:
//!
//! - [`proto`]: the sans-IO protocol core, the same files cargo builds as the `iscsi-proto`
//!   crate (kernel/proto/src), compiled here with the kernel's lints;
//! - [`sys`]: thin safe wrappers over the C interfaces the `kernel` crate lacks; every `unsafe`
//!   block of the module is there;
//! - the rest: safe Rust on top of both.

// `pin_init!` recurses once per field: `Session` has more fields than the default limit (128)
// lets it expand.
#![recursion_limit = "256"]

use kernel::prelude::*;

mod channel;
mod connection;
mod control;
mod datapath;
mod login;
mod queues;
mod scsi_selftest;
mod selftest;
mod session;
mod sys;
mod tasks;

/// The shared sans-IO protocol core (kernel/proto/src), compiled into the module.
///
/// Each file is a leaf module naming its siblings as `super::x`, so the same sources build as
/// the cargo crate and here.
pub mod proto {
    #[path = "src/chap.rs"]
    pub mod chap;
    #[path = "src/crc.rs"]
    pub mod crc;
    #[path = "src/dataout.rs"]
    pub mod dataout;
    #[path = "src/ffp_conn.rs"]
    pub mod ffp_conn;
    #[path = "src/ffp_event.rs"]
    pub mod ffp_event;
    #[path = "src/ffp_inbound.rs"]
    pub mod ffp_inbound;
    #[path = "src/ffp_outbound.rs"]
    pub mod ffp_outbound;
    #[path = "src/ffp_requests.rs"]
    pub mod ffp_requests;
    #[path = "src/ffp_rx.rs"]
    pub mod ffp_rx;
    #[path = "src/ffp_session.rs"]
    pub mod ffp_session;
    #[path = "src/ffp_tasks.rs"]
    pub mod ffp_tasks;
    #[path = "src/ffp_tx.rs"]
    pub mod ffp_tx;
    #[path = "src/login.rs"]
    pub mod login;
    #[path = "src/pdu.rs"]
    pub mod pdu;
    #[path = "src/scsi.rs"]
    pub mod scsi;
    #[path = "src/sendtargets.rs"]
    pub mod sendtargets;
    #[path = "src/serial.rs"]
    pub mod serial;
    #[path = "src/settings.rs"]
    pub mod settings;
    #[path = "src/task.rs"]
    pub mod task;
    #[path = "src/text.rs"]
    pub mod text;
}

/// The module's version, reported at `/sys/kernel/config/core_iscsi/version`; kept equal to the
/// workspace version in Cargo.toml (checked by the tools' tests).
pub(crate) const VERSION: &str = "0.1.0";

module! {
    type: CoreIscsi,
    name: "core_iscsi",
    author: "The core-iscsi developers",
    description: "iSCSI initiator (RFC 7143): one SCSI host per iSCSI session",
    license: "GPL",
}

struct CoreIscsi {
    // Fields drop in order: configfs goes first, so no write can start a selftest host after
    // the one running (if any) is stopped.
    _control: control::Control,
    _selftest: scsi_selftest::StopOnDrop,
}

impl kernel::Module for CoreIscsi {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // The digests and CHAP depend on the kernel's hashes giving the published answers: a
        // module that would compute wrong digests must not load.
        if let Err(e) = selftest::crypto() {
            pr_err!("core-iscsi: crypto known-answer test failed; refusing to load\n");
            return Err(e);
        }
        let control = control::Control::register()?;
        pr_info!("core-iscsi {} loaded\n", VERSION);
        Ok(Self {
            _control: control,
            _selftest: scsi_selftest::StopOnDrop,
        })
    }
}

impl Drop for CoreIscsi {
    fn drop(&mut self) {
        pr_info!("core-iscsi {} unloaded\n", VERSION);
    }
}
