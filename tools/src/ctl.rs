//! What the initiator-ctl subcommands do, callable without the command line: the binary only
//! parses arguments and calls these. Subcommands other than `check-config` are not implemented
//! yet ([`not_implemented`]).

use serde::Serialize;

use crate::config::{self, Config, ConfigError, ConfigPaths, Warning};
use crate::exit_code::Exit;

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
pub fn check_config(paths: &ConfigPaths) -> Result<CheckReport, ConfigError> {
    let loaded = config::load(paths)?;
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

/// The error of a subcommand that is not implemented yet.
#[derive(Debug, Clone, thiserror::Error)]
#[error("initiator-ctl {0}: not yet implemented")]
pub struct NotImplemented(pub String);

impl NotImplemented {
    /// The exit code it maps to.
    pub fn exit(&self) -> Exit {
        Exit::NotImplemented
    }
}

/// Placeholder for subcommands still to be written.
pub fn not_implemented(subcommand: &str) -> NotImplemented {
    NotImplemented(subcommand.to_string())
}
