//! The administrator's configuration: the four files, parsed, validated and cross-checked
//! into one typed [`Config`].
//!
//! | file (under the config directory)  | module            | man page             |
//! |------------------------------------|-------------------|----------------------|
//! | `sysconfig/initiator`              | [`initiator`]     | initiator(5)         |
//! | `sysconfig/initiator_auth`         | [`auth`]          | initiator_auth(5)    |
//! | `sysconfig/iscsi_device_maps`      | [`device_maps`]   | iscsi_device_maps(5) |
//! | `initiatorname.iscsi`              | [`initiator_name`]| initiator-iname(8)   |
//!
//! [`load`] reads them all and returns the first error (one line, see [`error`]) or the
//! configuration plus warnings. Nothing is started or changed by loading.

pub mod attrs;
pub mod auth;
pub mod device_maps;
pub mod error;
pub mod initiator;
pub mod initiator_name;
pub mod keys;
mod lexer;
pub mod names;
pub mod secret;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use attrs::{ChannelAttrs, ChapAlgorithm};
pub use auth::{ChapCredentials, ChapPair};
pub use device_maps::DeviceMap;
pub use error::{ConfigError, Field, Warning};
pub use initiator::{Address, Channel, Portal, MAX_CHANNEL_ID};
pub use initiator_name::{ensure_initiator_name, generate_initiator_name, EnsuredName};
pub use keys::{AuthMethod, IscsiKeys};
pub use names::validate_iscsi_name;
pub use secret::Secret;

/// The default configuration directory.
pub const DEFAULT_CONFIG_DIR: &str = "/etc";
/// Environment variable naming another configuration directory (tests, packaging).
pub const CONFIG_DIR_ENV: &str = "CORE_ISCSI_CONFIG_DIR";

/// Where the four files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigPaths {
    /// The configuration directory (`/etc`).
    pub dir: PathBuf,
    /// `DIR/sysconfig/initiator`.
    pub initiator: PathBuf,
    /// `DIR/sysconfig/initiator_auth`.
    pub auth: PathBuf,
    /// `DIR/sysconfig/iscsi_device_maps`.
    pub device_maps: PathBuf,
    /// `DIR/initiatorname.iscsi`.
    pub initiator_name: PathBuf,
}

impl ConfigPaths {
    /// The files under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        ConfigPaths {
            initiator: dir.join("sysconfig/initiator"),
            auth: dir.join("sysconfig/initiator_auth"),
            device_maps: dir.join("sysconfig/iscsi_device_maps"),
            initiator_name: dir.join("initiatorname.iscsi"),
            dir,
        }
    }

    /// `dir` if given, else `$CORE_ISCSI_CONFIG_DIR` if set and not empty, else `/etc`.
    pub fn resolve(dir: Option<&Path>) -> Self {
        match dir {
            Some(d) => Self::new(d),
            None => match std::env::var_os(CONFIG_DIR_ENV) {
                Some(d) if !d.is_empty() => Self::new(PathBuf::from(d)),
                _ => Self::new(DEFAULT_CONFIG_DIR),
            },
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// This initiator's iSCSI name.
    pub initiator_name: String,
    /// The channels by id.
    pub channels: BTreeMap<u32, Channel>,
    /// The device maps, in file order.
    pub maps: Vec<DeviceMap>,
}

impl Config {
    /// The maps of one channel.
    pub fn maps_for(&self, channel: u32) -> impl Iterator<Item = &DeviceMap> {
        self.maps.iter().filter(move |m| m.channel == channel)
    }
}

/// A loaded configuration and what looked wrong but is allowed.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings, to show the administrator.
    pub warnings: Vec<Warning>,
}

fn read_text(file: &Path, required: bool) -> Result<Option<String>, ConfigError> {
    match fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ConfigError::file(file, "is not valid UTF-8 text")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(ConfigError::file(file, format!("cannot read: {e}"))),
    }
}

/// Reads, validates and cross-checks the four files. The initiator file and initiatorname.iscsi
/// must exist; a missing auth file means no credentials, a missing maps file no maps.
pub fn load(paths: &ConfigPaths) -> Result<Loaded, ConfigError> {
    load_with_name(paths, None)
}

/// [`load`], with `name` standing in for initiatorname.iscsi when given (which is then not
/// read): lets `start` validate everything else before it creates a missing name file.
pub fn load_with_name(paths: &ConfigPaths, name: Option<&str>) -> Result<Loaded, ConfigError> {
    let initiator_name = match name {
        Some(n) => n.to_string(),
        None => initiator_name::read_initiator_name(&paths.initiator_name)?,
    };
    let text = read_text(&paths.initiator, true)?.unwrap_or_default();
    let mut channels = initiator::parse_initiator(&paths.initiator, &text)?;
    let (auth, mut warnings) = match auth::read_auth_file(&paths.auth)? {
        Some(text) => auth::parse_auth(&paths.auth, &text)?,
        None => (BTreeMap::new(), Vec::new()),
    };
    let maps = match read_text(&paths.device_maps, false)? {
        Some(text) => device_maps::parse_device_maps(&paths.device_maps, &text)?,
        None => Vec::new(),
    };

    // Cross-file checks.
    let chan_field = Field(1, "channel");
    for (id, entry) in &auth {
        let Some(ch) = channels.get_mut(id) else {
            return Err(ConfigError::field(
                &paths.auth,
                entry.line,
                chan_field,
                format!(
                    "channel {id} is not defined in {}",
                    paths.initiator.display()
                ),
            ));
        };
        if ch.keys.offers_chap() {
            if entry.credentials.mutual.is_some() && ch.keys.offers_none() {
                warnings.push(Warning::new(
                    &paths.auth,
                    entry.line,
                    Some(Field(2, "mutual")),
                    format!(
                        "channel {id} also offers AuthMethod None, so a target can skip authentication and the mutual check"
                    ),
                ));
            }
            ch.auth = Some(entry.credentials.clone());
        } else {
            warnings.push(Warning::new(
                &paths.auth,
                entry.line,
                Some(chan_field),
                format!(
                    "channel {id} does not offer CHAP (AuthMethod={}); these credentials are not used",
                    ch.keys.get_or_default("AuthMethod").unwrap_or("None")
                ),
            ));
        }
    }
    for ch in channels.values() {
        if ch.connections > 1 {
            warnings.push(Warning::new(
                &paths.initiator,
                ch.line,
                Some(initiator::F_CONNECTIONS),
                format!(
                    "channel {} asks for {} connections, but this initiator uses only one per session (its portals are tried in order)",
                    ch.id, ch.connections
                ),
            ));
        }
        if ch.keys.offers_chap() && ch.auth.is_none() {
            return Err(ConfigError::field(
                &paths.initiator,
                ch.auth_method_line.unwrap_or(ch.line),
                initiator::F_KEYS,
                format!(
                    "AuthMethod offers CHAP but {} has no AUTH line for channel {}",
                    paths.auth.display(),
                    ch.id
                ),
            ));
        }
    }
    for m in &maps {
        if !channels.contains_key(&m.channel) {
            return Err(ConfigError::field(
                &paths.device_maps,
                m.line,
                chan_field,
                format!(
                    "channel {} is not defined in {}",
                    m.channel,
                    paths.initiator.display()
                ),
            ));
        }
    }
    Ok(Loaded {
        config: Config {
            initiator_name,
            channels,
            maps,
        },
        warnings,
    })
}
