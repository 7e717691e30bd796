//! What the initiator-ctl subcommands do, callable without the command line: the binary only
//! parses arguments and calls these.
//!
//! One module per concern: [`kernel`] (the module's configfs tree), [`devices`] (the disks in
//! sysfs), [`mount`] (mounting, unmounting, who uses a mount), [`status`] (rendering); this file
//! strings them together as the howto's start / stop / pause / status / map / unmap / remap.

pub mod devices;
pub mod kernel;
pub mod mount;
pub mod ops;
pub mod status;

use serde::Serialize;

use crate::config::{self, Config, ConfigError, ConfigPaths, Warning};
use crate::exit_code::Exit;

pub use ops::{Ctl, Outcome};

/// Why a subcommand failed, one line each; [`CtlError::exit`] gives the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A configuration file is wrong (names file, line and field).
    #[error("{0}")]
    Config(#[from] ConfigError),
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

impl CtlError {
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

/// `check-config`: loads and validates the four files; touches nothing.
/// A missing initiatorname.iscsi is a warning only: `start` creates it.
pub fn check_config(paths: &ConfigPaths) -> Result<CheckReport, ConfigError> {
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
    Ok(CheckReport {
        paths: paths.clone(),
        config: loaded.config,
        warnings: loaded.warnings,
    })
}

impl CheckReport {
    /// A short human summary: one line per channel and per channel's maps.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "{}: configuration OK\ninitiator name: {}\n",
            self.paths.dir.display(),
            c.initiator_name
        );
        for ch in c.channels.values() {
            let portals: Vec<String> = ch
                .portals
                .iter()
                .map(|p| match &p.netdev {
                    Some(dev) => format!("{} via {dev} (x{})", p.endpoint(), p.connections),
                    None => format!("{} (x{})", p.endpoint(), p.connections),
                })
                .collect();
            let auth = match &ch.auth {
                Some(a) if a.mutual.is_some() => "mutual CHAP",
                Some(_) => "CHAP",
                None => "none",
            };
            out.push_str(&format!(
                "channel {}: target {}, {} connection{}, portals {}; auth {}; {} map{}\n",
                ch.id,
                ch.target_name.as_deref().unwrap_or("(discovered at start)"),
                ch.connections,
                if ch.connections == 1 { "" } else { "s" },
                portals.join(", "),
                auth,
                c.maps_for(ch.id).count(),
                if c.maps_for(ch.id).count() == 1 {
                    ""
                } else {
                    "s"
                },
            ));
        }
        out
    }
}
