// SPDX-License-Identifier: GPL-2.0

//! The control interface: the configfs tree at `/sys/kernel/config/core_iscsi/`.
//!
//! configfs rather than an ioctl on a misc device, as LIO and nvmet do: every setting is a file
//! an administrator can read with `cat` and a script can write with `echo`, each write is checked
//! on its own and refused with an errno, and there is no binary ABI to version.

use crate::sys::configfs::{self, Page};
use kernel::prelude::*;

/// The registered configfs subsystem; dropping it removes the tree.
pub(crate) struct Control {
    _subsystem: configfs::Subsystem,
}

impl Control {
    /// Creates `/sys/kernel/config/core_iscsi`.
    pub(crate) fn register() -> Result<Self> {
        Ok(Self {
            _subsystem: configfs::Subsystem::register()?,
        })
    }
}

/// `core_iscsi/version`: the module's version.
fn root_version_show(page: &mut Page<'_>) -> core::fmt::Result {
    use core::fmt::Write;
    writeln!(page, "{}", crate::VERSION)
}

configfs::root_show!(core_iscsi_root_version_show, root_version_show);

/// `core_iscsi/scsi_selftest` (write-only): `scsi` registers the in-memory test host with LUNs
/// 0 and 300, `scsi-nolun0` one without LUN 0 (LUNs 7 and 300), `stop` removes it;
/// `block`, `unblock` and `rescan` (which adds LUN 301) act on the running one.
fn root_scsi_selftest_store(buf: &[u8]) -> Result {
    let word = buf.strip_suffix(b"\n").unwrap_or(buf);
    match word {
        b"scsi" => crate::scsi_selftest::start(true),
        b"scsi-nolun0" => crate::scsi_selftest::start(false),
        b"stop" => crate::scsi_selftest::stop(),
        b"block" => crate::scsi_selftest::block(),
        b"unblock" => crate::scsi_selftest::unblock(),
        b"rescan" => crate::scsi_selftest::rescan(),
        _ => Err(EINVAL),
    }
}

configfs::root_store!(core_iscsi_root_scsi_selftest_store, root_scsi_selftest_store);
