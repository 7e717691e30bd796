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
//! [`load`] reads them all and returns every error (one line each, see [`error`]) or the
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
use error::Broken;
pub use error::{ConfigError, ConfigErrors, Field, Warning};
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

/// What a file decides, and so how it must be protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protection {
    /// `initiator`, `iscsi_device_maps`: what root logs in to and mounts. Nobody but its
    /// owner may write it.
    Decides,
    /// `initiator_auth`: CHAP secrets. Nobody but its owner may read or write it, and it is
    /// not a symbolic link.
    Secrets,
}

/// Reads a file that decides what root does: it must be owned by root or by the user running
/// the tool (a private test directory), not be writable by group or others (for secrets: not
/// readable either), be a regular file, and for secrets not be a symbolic link. The checks are
/// made on the opened file. A missing file is `Ok(None)`.
pub(crate) fn read_protected(
    file: &Path,
    protection: Protection,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    if protection == Protection::Secrets {
        opts.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    } else {
        opts.custom_flags(nix::libc::O_NONBLOCK);
    }
    let mut f = match opts.open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(ConfigError::file(
                file,
                "is a symbolic link: a file of CHAP secrets must be the file itself (replace the link with the file it points to, mode 600)",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(ConfigError::file(
                file,
                "cannot read: permission denied (run this as root)",
            ))
        }
        Err(e) => return Err(ConfigError::file(file, format!("cannot read: {e}"))),
    };
    let meta = f
        .metadata()
        .map_err(|e| ConfigError::file(file, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(ConfigError::file(file, "is not a regular file"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(ConfigError::file(
            file,
            format!(
                "is owned by uid {}, not by root: anyone who can change it decides what root {}; run: chown root {}",
                meta.uid(),
                if protection == Protection::Secrets { "logs in with" } else { "logs in to and mounts" },
                file.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    match protection {
        Protection::Secrets if mode & 0o077 != 0 => {
            return Err(ConfigError::Permissions {
                file: file.to_path_buf(),
                mode,
            })
        }
        Protection::Decides if mode & 0o022 != 0 => {
            return Err(ConfigError::file(
                file,
                format!(
                    "mode {mode:04o} lets group or others write this file, which decides what root logs in to and mounts; run: chmod go-w {}",
                    file.display()
                ),
            ))
        }
        _ => {}
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    f.read_to_end(&mut bytes)
        .map_err(|e| ConfigError::file(file, format!("cannot read: {e}")))?;
    Ok(Some(bytes))
}

/// Reads, validates and cross-checks the four files. initiatorname.iscsi must exist; a missing
/// initiator file means no channels, a missing auth file no credentials, a missing maps file
/// no maps. Every error of every file is returned, one per bad line.
pub fn load(paths: &ConfigPaths) -> Result<Loaded, ConfigErrors> {
    load_with(paths, None, true)
}

/// [`load`], with `name` standing in for initiatorname.iscsi when given (which is then not
/// read): lets `start` validate everything else before it creates a missing name file.
pub fn load_with_name(paths: &ConfigPaths, name: Option<&str>) -> Result<Loaded, ConfigErrors> {
    load_with(paths, name, true)
}

/// [`load_with_name`]; without `read_auth` the secrets file is not opened (`status` as a user
/// who may not read it): no channel gets credentials and nothing is checked against them.
pub fn load_with(
    paths: &ConfigPaths,
    name: Option<&str>,
    read_auth: bool,
) -> Result<Loaded, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let initiator_name = match name {
        Some(n) => n.to_string(),
        None => initiator_name::read_initiator_name(&paths.initiator_name).unwrap_or_else(|e| {
            errors.extend(e.0);
            String::new()
        }),
    };
    let mut warnings = Vec::new();
    let read = |file: &Path, p: Protection, errors: &mut Vec<ConfigError>| {
        read_protected(file, p).unwrap_or_else(|e| {
            errors.push(e);
            None
        })
    };
    let (mut channels, ini_broken) = match read(&paths.initiator, Protection::Decides, &mut errors)
    {
        Some(text) => {
            let (c, b, e) = initiator::parse_initiator_all(&paths.initiator, &text);
            errors.extend(e);
            (c, b)
        }
        None if paths.initiator.exists() => (BTreeMap::new(), Broken::all()),
        None => (BTreeMap::new(), Broken::default()),
    };
    let (auth, auth_broken) = if read_auth {
        match read(&paths.auth, Protection::Secrets, &mut errors) {
            Some(text) => {
                let (a, w, b, e) = auth::parse_auth_all(&paths.auth, &text);
                errors.extend(e);
                warnings.extend(w);
                (a, b)
            }
            None if fs::symlink_metadata(&paths.auth).is_ok() => (BTreeMap::new(), Broken::all()),
            None => (BTreeMap::new(), Broken::default()),
        }
    } else {
        (BTreeMap::new(), Broken::all())
    };
    let maps = match read(&paths.device_maps, Protection::Decides, &mut errors) {
        Some(text) => {
            let (m, e) = device_maps::parse_device_maps_all(&paths.device_maps, &text);
            errors.extend(e);
            m
        }
        None => Vec::new(),
    };

    // Cross-file checks, leaving out what an error above already concerns.
    let chan_field = Field(1, "channel");
    for (id, entry) in &auth {
        let Some(ch) = channels.get_mut(id) else {
            if !ini_broken.covers(*id) {
                errors.push(ConfigError::field(
                    &paths.auth,
                    entry.line,
                    chan_field,
                    format!(
                        "channel {id} is not defined in {}",
                        paths.initiator.display()
                    ),
                ));
            }
            continue;
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
        } else if !ini_broken.covers(*id) {
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
        if ini_broken.covers(ch.id) {
            continue;
        }
        if ch.keys.offers_chap() && ch.auth.is_none() && !auth_broken.covers(ch.id) {
            errors.push(ConfigError::field(
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
    // Two channels may reach the same target (multipath), but two DEVICE lines must not mount
    // at the same /<target>/<name>.
    let mut mount_points: BTreeMap<(String, String), &DeviceMap> = BTreeMap::new();
    for m in &maps {
        let Some(ch) = channels.get(&m.channel) else {
            if !ini_broken.covers(m.channel) {
                errors.push(ConfigError::field(
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
            continue;
        };
        if let Some(t) = &ch.target_name {
            if let Some(first) = mount_points.insert((t.to_ascii_lowercase(), m.name.clone()), m) {
                errors.push(mount_point_collision(&paths.device_maps, m, first, t));
            }
        }
    }
    errors.sort_by(|a, b| {
        let order = |e: &ConfigError| {
            let f = e.path();
            let rank = [
                &paths.initiator_name,
                &paths.initiator,
                &paths.auth,
                &paths.device_maps,
            ]
            .iter()
            .position(|p| p.as_path() == f)
            .unwrap_or(4);
            (rank, e.line_number())
        };
        order(a).cmp(&order(b))
    });
    ConfigErrors::check(errors)?;
    Ok(Loaded {
        config: Config {
            initiator_name,
            channels,
            maps,
        },
        warnings,
    })
}

/// The error for DEVICE line `m`, which would mount where `first` (of another channel to the
/// same target) does.
pub(crate) fn mount_point_collision(
    file: &Path,
    m: &DeviceMap,
    first: &DeviceMap,
    target: &str,
) -> ConfigError {
    ConfigError::field(
        file,
        m.line,
        Field(4, "name"),
        format!(
            "\"{}\" would mount at /{target}/{} like line {} (channel {}), since channels {} and {} reach the same target: use another name",
            m.name, m.name, first.line, first.channel, first.channel, m.channel
        ),
    )
}
