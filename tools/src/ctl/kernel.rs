//! Kernel control through configfs: `/sys/kernel/config/core_iscsi/<channel>/<attribute>`
//! (kernel/control.rs, kernel/channel.rs). Loading the module, creating and removing channel
//! directories, writing settings and `control`, reading `state`, `negotiated`, `stats`, `host`,
//! `connections` (parsed in status.rs).
//!
//! Secrets are written here and nowhere else; no error built here quotes a written value.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::CtlError;
use crate::config::Secret;

/// Where the module's configfs tree is.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/core_iscsi";
/// Where configfs is mounted.
pub const CONFIGFS: &str = "/sys/kernel/config";
/// Environment variable naming the module file to `insmod` instead of `modprobe core_iscsi`.
pub const KO_ENV: &str = "CORE_ISCSI_KO";

/// A channel's state, from its `state` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No channel directory.
    Absent,
    /// `stopped`.
    Stopped,
    /// `starting`.
    Starting,
    /// `running`.
    Running,
    /// `recovering`.
    Recovering,
    /// `paused`.
    Paused,
    /// `stopping`.
    Stopping,
    /// `failed: <reason>`.
    Failed(String),
}

impl State {
    /// Parses the text of `state`.
    pub fn parse(text: &str) -> State {
        let t = text.trim();
        match t {
            "stopped" => State::Stopped,
            "starting" => State::Starting,
            "running" => State::Running,
            "recovering" => State::Recovering,
            "paused" => State::Paused,
            "stopping" => State::Stopping,
            _ => State::Failed(t.strip_prefix("failed:").unwrap_or(t).trim().to_string()),
        }
    }

    /// The one word (`absent` reads as `stopped`: no directory is a stopped channel).
    pub fn word(&self) -> &'static str {
        match self {
            State::Absent | State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Recovering => "recovering",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Failed(_) => "failed",
        }
    }

    /// A session exists (logged in, logging in, recovering or paused with disks present).
    pub fn has_session(&self) -> bool {
        matches!(
            self,
            State::Running | State::Recovering | State::Paused | State::Starting
        )
    }
}

/// The module's configfs tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    root: PathBuf,
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel::new(DEFAULT_ROOT)
    }
}

impl Kernel {
    /// The tree at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Kernel { root: root.into() }
    }

    /// Whether the module is loaded (its tree exists).
    pub fn is_loaded(&self) -> bool {
        self.root.is_dir()
    }

    /// Loads the module unless it is: mounts configfs if needed, then `insmod $CORE_ISCSI_KO`
    /// when that is set, else `modprobe core_iscsi`.
    pub fn ensure_loaded(&self) -> Result<(), CtlError> {
        if self.is_loaded() {
            return Ok(());
        }
        if !Path::new(CONFIGFS).join("core_iscsi").exists() && !configfs_mounted() {
            nix::mount::mount(
                Some("configfs"),
                CONFIGFS,
                Some("configfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| CtlError::NoKernel(format!("cannot mount configfs on {CONFIGFS}: {e}")))?;
        }
        let (what, out) = match std::env::var_os(KO_ENV).filter(|v| !v.is_empty()) {
            Some(ko) => (
                format!("insmod {}", Path::new(&ko).display()),
                Command::new("insmod").arg(&ko).output(),
            ),
            None => (
                "modprobe core_iscsi".to_string(),
                Command::new("modprobe").arg("core_iscsi").output(),
            ),
        };
        let out = out.map_err(|e| CtlError::NoKernel(format!("cannot run {what}: {e}")))?;
        if !out.status.success() && !self.is_loaded() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or("").trim();
            return Err(CtlError::NoKernel(format!(
                "{what} failed: {}",
                if why.is_empty() {
                    "no reason given"
                } else {
                    why
                }
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.is_loaded() {
            if Instant::now() > deadline {
                return Err(CtlError::NoKernel(format!(
                    "{what} succeeded but {} did not appear",
                    self.root.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// An error for commands that need the module but find it absent.
    pub fn require_loaded(&self) -> Result<(), CtlError> {
        if self.is_loaded() {
            Ok(())
        } else {
            Err(CtlError::NoKernel(format!(
                "the core_iscsi module is not loaded ({} does not exist)",
                self.root.display()
            )))
        }
    }

    /// A channel's directory (which may not exist).
    pub fn channel(&self, id: u32) -> ChannelDir {
        ChannelDir {
            id,
            path: self.root.join(id.to_string()),
        }
    }

    /// The ids of the channel directories that exist.
    pub fn channels(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = match fs::read_dir(&self.root) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort_unstable();
        ids
    }
}

fn configfs_mounted() -> bool {
    fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split(' ').nth(2) == Some("configfs")))
        .unwrap_or(false)
}

/// One channel directory.
#[derive(Debug, Clone)]
pub struct ChannelDir {
    /// The channel id.
    pub id: u32,
    /// `core_iscsi/<id>`.
    pub path: PathBuf,
}

/// The text of an errno, without Rust's " (os error N)".
pub fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

impl ChannelDir {
    /// Whether the directory exists.
    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// Creates the directory (a stopped channel with default settings).
    pub fn create(&self) -> Result<(), CtlError> {
        fs::create_dir(&self.path).map_err(|e| {
            CtlError::channel(
                self.id,
                format!("cannot create {}: {}", self.path.display(), errno_text(&e)),
            )
        })
    }

    /// Removes the directory (the module stops the channel first).
    pub fn remove(&self) -> Result<(), CtlError> {
        match fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CtlError::channel(
                self.id,
                format!("cannot remove {}: {}", self.path.display(), errno_text(&e)),
            )),
        }
    }

    fn write_raw(&self, attr: &str, value: &[u8]) -> io::Result<()> {
        // One write(2) per value: configfs takes each write as a whole store.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.path.join(attr))?;
        f.write_all(value)
    }

    /// Writes a setting; the error names the attribute and the value (not for secrets: see
    /// [`ChannelDir::write_secret`]).
    pub fn write(&self, attr: &str, value: &str) -> Result<(), CtlError> {
        log::debug!("channel {}: {attr} = {value}", self.id);
        self.write_raw(attr, value.as_bytes()).map_err(|e| {
            CtlError::channel(
                self.id,
                format!("the module refused {attr}={value:?}: {}", errno_text(&e)),
            )
        })
    }

    /// Writes a secret; neither the log nor an error shows it.
    pub fn write_secret(&self, attr: &str, value: &Secret) -> Result<(), CtlError> {
        log::debug!("channel {}: {attr} = <redacted>", self.id);
        self.write_raw(attr, value.expose()).map_err(|e| {
            CtlError::channel(
                self.id,
                format!("the module refused {attr}: {}", errno_text(&e)),
            )
        })
    }

    /// Reads an attribute, trailing newline removed; empty when it cannot be read.
    pub fn read(&self, attr: &str) -> String {
        fs::read_to_string(self.path.join(attr))
            .map(|s| s.trim_end_matches('\n').to_string())
            .unwrap_or_default()
    }

    /// The channel's state ([`State::Absent`] without a directory).
    pub fn state(&self) -> State {
        if !self.exists() {
            return State::Absent;
        }
        State::parse(&self.read("state"))
    }

    /// Writes `start`, `stop` or `pause` to `control`; `start` blocks until the channel runs.
    pub fn control(&self, cmd: &str) -> io::Result<()> {
        log::info!("channel {}: control {cmd}", self.id);
        self.write_raw("control", cmd.as_bytes())
    }

    /// The SCSI host number, if the channel has a session.
    pub fn host(&self) -> Option<u32> {
        self.read("host").trim().parse().ok()
    }

    /// `negotiated`: `Key=Value` lines.
    pub fn negotiated(&self) -> Vec<(String, String)> {
        self.read("negotiated")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// `stats`: `name value` lines (values that are not numbers are skipped).
    pub fn stats(&self) -> Vec<(String, u64)> {
        self.read("stats")
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }
}

/// What a failed `start` means, from its errno and the reason left in `state`.
pub fn start_failure(errno: &io::Error, state: &State) -> String {
    let what = match errno.raw_os_error() {
        Some(libc_errno::ECONNREFUSED) => "connection refused at every portal",
        Some(libc_errno::ETIMEDOUT) => "timed out (target unreachable or not answering)",
        Some(libc_errno::EACCES) => "login refused: authentication or authorization failed (check initiator_auth and the target's ACL)",
        Some(libc_errno::ENOENT) => "the target does not know this target name",
        Some(libc_errno::EPROTO) => "protocol error during login",
        Some(libc_errno::EHOSTUNREACH) => "no route to the portal",
        Some(libc_errno::EBUSY) => "the channel is changing state",
        _ => "",
    };
    let reason = match state {
        State::Failed(r) if !r.is_empty() => format!(" (module: {r})"),
        _ => String::new(),
    };
    if what.is_empty() {
        format!("start failed: {}{reason}", errno_text(errno))
    } else {
        format!("start failed: {what}{reason}")
    }
}

/// The errno numbers used above (Linux values), without a libc dependency.
mod libc_errno {
    pub const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;
    pub const EACCES: i32 = nix::errno::Errno::EACCES as i32;
    pub const EBUSY: i32 = nix::errno::Errno::EBUSY as i32;
    pub const EPROTO: i32 = nix::errno::Errno::EPROTO as i32;
    pub const ECONNREFUSED: i32 = nix::errno::Errno::ECONNREFUSED as i32;
    pub const ETIMEDOUT: i32 = nix::errno::Errno::ETIMEDOUT as i32;
    pub const EHOSTUNREACH: i32 = nix::errno::Errno::EHOSTUNREACH as i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse() {
        assert_eq!(State::parse("running\n"), State::Running);
        assert_eq!(State::parse("paused"), State::Paused);
        assert_eq!(
            State::parse("failed: authentication failed\n"),
            State::Failed("authentication failed".into())
        );
        assert_eq!(State::Absent.word(), "stopped");
    }

    #[test]
    fn start_failures_explain() {
        let e = io::Error::from_raw_os_error(libc_errno::EACCES);
        let s = start_failure(&e, &State::Failed("authentication failed".into()));
        assert!(s.contains("authentication"), "{s}");
        assert!(s.contains("(module: authentication failed)"), "{s}");
    }
}
