// SPDX-License-Identifier: GPL-2.0

//! The control interface: the configfs tree at `/sys/kernel/config/core_iscsi/`.
//!
//! configfs rather than an ioctl on a misc device, as LIO and nvmet do: every setting is a file
//! an administrator can read with `cat` and a script can write with `echo`, each write is checked
//! on its own and refused with an errno, and there is no binary ABI to version. `mkdir
//! core_iscsi/<channel>` creates a channel (kernel/channel.rs), `rmdir` stops and removes it.
//! configfs pins the module while a channel directory exists, so `rmmod` is refused (EBUSY)
//! until every channel is removed: a running session is never pulled from under its disks.

use crate::channel::Channel;
use crate::sys::configfs::{self, Page};
use crate::queues::Queues;
use core::fmt::{self, Write};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::Arc;

/// The registered configfs subsystem; dropping it removes the tree.
pub(crate) struct Control {
    _subsystem: Pin<KBox<configfs::Subsystem<Arc<Queues>>>>,
}

impl Control {
    /// Creates `/sys/kernel/config/core_iscsi`.
    pub(crate) fn register() -> Result<Self> {
        let shared = Arc::new(Queues::new()?, GFP_KERNEL)?;
        Ok(Self {
            _subsystem: configfs::Subsystem::register(shared)?,
        })
    }
}

/// `core_iscsi/version`: the module's version.
fn root_version_show(page: &mut Page<'_>) -> fmt::Result {
    writeln!(page, "{}", crate::VERSION)
}

configfs::root_show!(core_iscsi_root_version_show, root_version_show);

fn channel_make(shared: &Arc<Queues>, name: &CStr) -> Result<Arc<Channel>> {
    Channel::new(shared.clone(), name)
}

fn channel_drop(channel: &Arc<Channel>) {
    // Only a second stop in progress (its writer killed meanwhile) makes this return early;
    // that stop ends the session.
    let _ = channel.stop();
}

configfs::group_type!(Arc<Queues> => Arc<Channel>,
    core_iscsi_channel_make => channel_make,
    core_iscsi_channel_drop => channel_drop,
    core_iscsi_channel_release, core_iscsi_channel_type);

/// The entry points of one read-write channel attribute.
macro_rules! channel_attr {
    ($show_c:ident => $show:expr, $store_c:ident => $store:expr) => {
        configfs::attr_show!(Arc<Channel>, $show_c => $show);
        configfs::attr_store!(Arc<Channel>, $store_c => $store);
    };
}

channel_attr!(core_iscsi_channel_target_name_show => Channel::show_target_name,
              core_iscsi_channel_target_name_store => Channel::store_target_name);
channel_attr!(core_iscsi_channel_initiator_name_show => Channel::show_initiator_name,
              core_iscsi_channel_initiator_name_store => Channel::store_initiator_name);
channel_attr!(core_iscsi_channel_portals_show => Channel::show_portals,
              core_iscsi_channel_portals_store => Channel::store_portals);
channel_attr!(core_iscsi_channel_params_show => Channel::show_params,
              core_iscsi_channel_params_store => Channel::store_params);
channel_attr!(core_iscsi_channel_queue_depth_show => |c: &Arc<Channel>, p: &mut Page<'_>| c.show_number(p, |s| s.queue_depth.into()),
              core_iscsi_channel_queue_depth_store => Channel::store_queue_depth);
channel_attr!(core_iscsi_channel_login_timeout_show => |c: &Arc<Channel>, p: &mut Page<'_>| c.show_number(p, |s| s.login_timeout_s),
              core_iscsi_channel_login_timeout_store => Channel::store_login_timeout);
channel_attr!(core_iscsi_channel_nopout_interval_show => |c: &Arc<Channel>, p: &mut Page<'_>| c.show_number(p, |s| s.nopout_interval_s),
              core_iscsi_channel_nopout_interval_store => Channel::store_nopout_interval);
channel_attr!(core_iscsi_channel_nopout_timeout_show => |c: &Arc<Channel>, p: &mut Page<'_>| c.show_number(p, |s| s.nopout_timeout_s),
              core_iscsi_channel_nopout_timeout_store => Channel::store_nopout_timeout);
channel_attr!(core_iscsi_channel_replacement_timeout_show => |c: &Arc<Channel>, p: &mut Page<'_>| c.show_number(p, |s| s.replacement_timeout_s),
              core_iscsi_channel_replacement_timeout_store => Channel::store_replacement_timeout);
channel_attr!(core_iscsi_channel_tmf_timeout_show => |c: &Arc<Channel>, p: &mut Page<'_>| c.show_number(p, |s| s.tmf_timeout_s),
              core_iscsi_channel_tmf_timeout_store => Channel::store_tmf_timeout);
channel_attr!(core_iscsi_channel_chap_user_show => Channel::show_chap_user,
              core_iscsi_channel_chap_user_store => Channel::store_chap_user);
channel_attr!(core_iscsi_channel_chap_mutual_user_show => Channel::show_chap_mutual_user,
              core_iscsi_channel_chap_mutual_user_store => Channel::store_chap_mutual_user);
channel_attr!(core_iscsi_channel_chap_algorithms_show => Channel::show_chap_algorithms,
              core_iscsi_channel_chap_algorithms_store => Channel::store_chap_algorithms);
configfs::attr_store!(Arc<Channel>, core_iscsi_channel_chap_secret_store => Channel::store_chap_secret);
configfs::attr_store!(Arc<Channel>, core_iscsi_channel_chap_mutual_secret_store => Channel::store_chap_mutual_secret);
configfs::attr_store!(Arc<Channel>, core_iscsi_channel_control_store => Channel::control);
configfs::attr_show!(Arc<Channel>, core_iscsi_channel_state_show => Channel::show_state);
configfs::attr_show!(Arc<Channel>, core_iscsi_channel_negotiated_show => Channel::show_negotiated);
configfs::attr_show!(Arc<Channel>, core_iscsi_channel_stats_show => Channel::show_stats);
configfs::attr_show!(Arc<Channel>, core_iscsi_channel_connections_show => Channel::show_connections);
configfs::attr_show!(Arc<Channel>, core_iscsi_channel_host_show => Channel::show_host);

/// `core_iscsi/selftest` (write-only): runs a built-in self-test (see kernel/selftest.rs); the
/// write fails with the test's errno.
fn root_selftest_store(data: &[u8]) -> Result {
    crate::selftest::run(data)
}

configfs::root_store!(core_iscsi_root_selftest_store, root_selftest_store);

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

configfs::root_store!(
    core_iscsi_root_scsi_selftest_store,
    root_scsi_selftest_store
);
