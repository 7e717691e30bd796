//! What the initiator-ctl subcommands do, callable without the command line: the binary only
//! parses arguments and calls these.
//!
//! One module per concern: [`kernel`] (the module's configfs tree), [`devices`] (the disks in
//! sysfs), [`netdev`] (network interfaces in sysfs), [`mount`] (mounting, unmounting, who uses
//! a mount), [`status`] (rendering); this file strings them together as the howto's start /
//! stop / pause / status / map / unmap / remap.

pub mod devices;
pub mod kernel;
pub mod mount;
pub mod netdev;
pub mod ops;
pub mod status;

use serde::Serialize;

use crate::config::{self, Channel, Config, ConfigError, ConfigErrors, ConfigPaths, Warning};
use crate::exit_code::Exit;

pub use netdev::NetDevs;
pub use ops::{Ctl, Outcome};

/// Why a subcommand failed, one line each; [`CtlError::exit`] gives the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Configuration files are wrong: every error, one line each (naming file, line and
    /// field).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// A channel or its target failed.
    #[error("channel {channel}: {what}")]
    Channel {
        /// The channel.
        channel: u32,
        /// What happened.
        what: String,
    },
    /// A device or mount is in use, or the channel is changing state.
    #[error("channel {channel}: {what}")]
    Busy {
        /// The channel.
        channel: u32,
        /// What is busy and who uses it.
        what: String,
    },
    /// The module is not loaded and cannot be.
    #[error("{0}")]
    NoKernel(String),
    /// Needs root.
    #[error("{0}")]
    Permission(String),
    /// Anything else.
    #[error("{0}")]
    System(String),
}

impl From<ConfigError> for CtlError {
    fn from(e: ConfigError) -> Self {
        CtlError::Config(e.into())
    }
}

impl CtlError {
    /// Prints the error on stderr: each configuration error on a line of its own (they name
    /// their file), anything else after `initiator-ctl: ` with control characters escaped (a
    /// failure reason may quote what a target sent).
    pub fn report(&self) {
        match self {
            CtlError::Config(e) => eprintln!("{e}"),
            e => eprintln!("initiator-ctl: {}", crate::text::printable(&e.to_string())),
        }
    }

    /// A channel error.
    pub fn channel(channel: u32, what: impl Into<String>) -> Self {
        CtlError::Channel {
            channel,
            what: what.into(),
        }
    }

    /// A busy error.
    pub fn busy(channel: u32, what: impl Into<String>) -> Self {
        CtlError::Busy {
            channel,
            what: what.into(),
        }
    }

    /// The exit code it maps to.
    pub fn exit(&self) -> Exit {
        match self {
            CtlError::Config(_) => Exit::Config,
            CtlError::Usage(_) => Exit::Usage,
            CtlError::Channel { .. } => Exit::Channel,
            CtlError::Busy { .. } => Exit::Busy,
            CtlError::NoKernel(_) => Exit::NoKernel,
            CtlError::Permission(_) => Exit::Permission,
            CtlError::System(_) => Exit::System,
        }
    }
}

/// What `check-config` reports on success.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The files checked.
    pub paths: ConfigPaths,
    /// The configuration (secrets print as `<redacted>`).
    pub config: Config,
    /// Warnings.
    pub warnings: Vec<Warning>,
}

/// `check-config`: loads and validates the four files, and finds the network devices they
/// name among `net`'s; touches nothing.
/// A missing initiatorname.iscsi is a warning only: `start` creates it.
pub fn check_config(paths: &ConfigPaths, net: &NetDevs) -> Result<CheckReport, ConfigErrors> {
    let missing = std::fs::symlink_metadata(&paths.initiator_name).is_err();
    let mut loaded = if missing {
        config::load_with_name(paths, Some(ops::PLACEHOLDER_NAME))?
    } else {
        config::load(paths)?
    };
    if missing {
        loaded.config.initiator_name = "(none yet: created by the first start)".into();
        loaded.warnings.push(Warning {
            file: paths.initiator_name.clone(),
            line: None,
            field: None,
            message:
                "does not exist: initiator-ctl start creates it (or run initiator-iname --write)"
                    .into(),
        });
    }
    net.check(&paths.initiator, loaded.config.channels.values())?;
    Ok(CheckReport {
        paths: paths.clone(),
        config: loaded.config,
        warnings: loaded.warnings,
    })
}

impl CheckReport {
    /// A short human summary: one line per channel, saying what the module will do with it
    /// (how many connections through which portal and device), not only what the file asks
    /// for.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "{}: configuration OK\ninitiator name: {}\n",
            self.paths.dir.display(),
            c.initiator_name
        );
        if c.channels.is_empty() {
            out.push_str(&format!(
                "no channels ({} has no CHANNEL line): start has nothing to do\n",
                self.paths.initiator.display()
            ));
        }
        for ch in c.channels.values() {
            let auth = match &ch.auth {
                Some(a) if a.mutual.is_some() => "mutual CHAP",
                Some(_) => "CHAP",
                None => "none",
            };
            let nmaps = c.maps_for(ch.id).count();
            out.push_str(&format!(
                "channel {}: target {}, {}; auth {auth}; {nmaps} map{}\n",
                ch.id,
                ch.target_name.as_deref().unwrap_or("(discovered at start)"),
                connections_summary(ch),
                if nmaps == 1 { "" } else { "s" },
            ));
        }
        out
    }
}

/// What the session of `ch` will open: `1 connection, portal X`, or `N connections (n via X
/// on DEV, ...), up to what the target grants` (the module offers N as MaxConnections and
/// runs with what the target answers).
fn connections_summary(ch: &Channel) -> String {
    let via = |p: &config::Portal| match &p.netdev {
        Some(dev) => format!("{} on {dev}", p.endpoint()),
        None => p.endpoint(),
    };
    match ch.portals.as_slice() {
        [p] if ch.connections == 1 => format!("1 connection, portal {}", via(p)),
        portals => {
            let each: Vec<String> = portals
                .iter()
                .map(|p| format!("{} via {}", p.connections, via(p)))
                .collect();
            format!(
                "{} connections ({}), up to what the target grants",
                ch.connections,
                each.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::ctl::netdev::tests::fake_sysfs;

    /// `check-config` on a directory holding `initiator` (and a name), with the network
    /// interfaces of `sys`: the summary, or the errors, one per line.
    fn check(initiator: &str, sys: &Path) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("sysconfig/initiator");
        fs::create_dir(dir.path().join("sysconfig")).unwrap();
        fs::write(&ini, initiator).unwrap();
        fs::set_permissions(&ini, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(
            dir.path().join("initiatorname.iscsi"),
            "InitiatorName=iqn.2005-03.org.core-iscsi:01:0123456789ab\n",
        )
        .unwrap();
        let paths = ConfigPaths::new(dir.path());
        let dir_text = format!("{}/", dir.path().display());
        let short = |t: String| t.replace(&dir_text, "DIR/");
        check_config(&paths, &NetDevs::new(sys))
            .map(|r| short(r.summary()))
            .map_err(|e| short(e.to_string()))
    }

    #[test]
    fn one_connection_is_said_briefly() {
        let sys = fake_sysfs(&[("eth0", 3)]);
        let out = check(
            "CHANNEL=\"0 1 192.168.1.10 3260 0 iqn.2003-01.org.example:t\"\n\
             CHANNEL=\"2 1 eth0 192.168.1.11 3260 0\"\n",
            sys.path(),
        )
        .unwrap();
        assert!(
            out.contains("channel 0: target iqn.2003-01.org.example:t, 1 connection, portal 192.168.1.10:3260; auth none; 0 maps\n"),
            "{out}"
        );
        assert!(
            out.contains("channel 2: target (discovered at start), 1 connection, portal 192.168.1.11:3260 on eth0; auth none; 0 maps\n"),
            "{out}"
        );
    }

    /// The howto's Example 2: four connections, two through each portal and device.
    #[test]
    fn several_connections_are_counted_per_portal() {
        let sys = fake_sysfs(&[("eth0", 3), ("eth1", 4)]);
        let out = check(
            "CHANNEL=\"1 2 eth0 192.168.1.10 3260 0 AuthMethod=None\"\n\
             CHANNEL=\"1 2 eth1 192.168.2.10 3260 0\"\n\
             CHANNEL=\"3 2 [2001:db8::5] 3260 0\"\n",
            sys.path(),
        )
        .unwrap();
        assert!(
            out.contains("channel 1: target (discovered at start), 4 connections (2 via 192.168.1.10:3260 on eth0, 2 via 192.168.2.10:3260 on eth1), up to what the target grants; auth none; 0 maps\n"),
            "{out}"
        );
        assert!(
            out.contains("channel 3: target (discovered at start), 2 connections (2 via [2001:db8::5]:3260), up to what the target grants; auth none; 0 maps\n"),
            "{out}"
        );
    }

    #[test]
    fn a_missing_device_fails_the_check() {
        let sys = fake_sysfs(&[("eth0", 3)]);
        let e = check(
            "CHANNEL=\"1 2 eth0 192.168.1.10 3260 0\"\n\
             CHANNEL=\"1 2 eth7 192.168.2.10 3260 0\"\n",
            sys.path(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "DIR/sysconfig/initiator:2: field 3 (network device): no such network device 'eth7'"
        );
    }
}
