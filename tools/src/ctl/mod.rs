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

use crate::config::{self, Config, ConfigError, ConfigErrors, ConfigPaths, Warning};
use crate::exit_code::Exit;

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

/// `check-config`: loads and validates the four files; touches nothing.
/// A missing initiatorname.iscsi is a warning only: `start` creates it.
pub fn check_config(paths: &ConfigPaths) -> Result<CheckReport, ConfigErrors> {
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
    /// A short human summary: one line per channel, saying what the module will do with it
    /// (one connection, portals tried in order, no interface binding), not only what the
    /// file asks for.
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
            let portals: Vec<String> = ch.portals.iter().map(|p| p.endpoint()).collect();
            let portals = if portals.len() == 1 {
                format!("portal {}", portals[0])
            } else {
                format!("portals {} (tried in this order)", portals.join(", "))
            };
            let asked = if ch.connections > 1 {
                format!(" ({} asked for; one per session today)", ch.connections)
            } else {
                String::new()
            };
            let devs: Vec<&str> = ch
                .portals
                .iter()
                .filter_map(|p| p.netdev.as_deref())
                .collect();
            let devs = if devs.is_empty() {
                String::new()
            } else {
                format!(
                    "; not bound to {} (the route decides the interface)",
                    devs.join(", ")
                )
            };
            let auth = match &ch.auth {
                Some(a) if a.mutual.is_some() => "mutual CHAP",
                Some(_) => "CHAP",
                None => "none",
            };
            let nmaps = c.maps_for(ch.id).count();
            out.push_str(&format!(
                "channel {}: target {}, 1 connection{asked}, {portals}{devs}; auth {auth}; {nmaps} map{}\n",
                ch.id,
                ch.target_name.as_deref().unwrap_or("(discovered at start)"),
                if nmaps == 1 { "" } else { "s" },
            ));
        }
        out
    }
}
