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

/// `core_iscsi/selftest` (write-only): runs a built-in self-test (see kernel/selftest.rs); the
/// write fails with the test's errno.
fn root_selftest_store(data: &[u8]) -> Result {
    crate::selftest::run(data)
}

configfs::root_store!(core_iscsi_root_selftest_store, root_selftest_store);
