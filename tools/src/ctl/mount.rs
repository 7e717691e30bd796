//! Mounting and unmounting the mapped devices (nix::mount), the file system type (blkid), the
//! mount table (/proc/self/mountinfo) and who uses a mount (a fuser of our own over /proc/*/fd,
//! cwd, root, exe and maps).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// Device numbers of the mounted file system.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Mount point.
    pub target: PathBuf,
    /// File system type.
    pub fstype: String,
    /// Mount source (`/dev/sdb1`).
    pub source: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        if b[i] == b'\\' {
            if let Some(Ok(v)) = oct.map(|d| u8::from_str_radix(d, 8)) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            Some(MountEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                target: PathBuf::from(unescape(f.get(4)?)),
                read_only: f.get(5)?.split(',').any(|o| o == "ro"),
                fstype: r.first()?.to_string(),
                source: unescape(r.get(1)?),
            })
        })
        .collect()
}

/// The current mounts.
pub fn mounts() -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The file system type on `dev`, by blkid's low-level probe.
pub fn fs_type(dev: &Path) -> Result<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE"])
        .arg(dev)
        .output()
        .map_err(|e| format!("cannot run blkid: {e}"))?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !t.is_empty() {
        Ok(t)
    } else {
        Err(format!("no file system found on {}", dev.display()))
    }
}

/// Mounts `dev` (file system `fstype`) on `dir`, creating `dir`; read-only when `read_only`,
/// and read-only after the kernel refuses a read-write mount with EROFS or EACCES (a
/// write-protected medium), as mount(8) does. Returns whether it ended up read-only.
pub fn mount_device(dev: &Path, dir: &Path, fstype: &str, read_only: bool) -> Result<bool, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    let ro = |f: MsFlags| {
        mount(
            Some(dev),
            dir,
            Some(fstype),
            f | MsFlags::MS_RDONLY,
            None::<&str>,
        )
    };
    if read_only {
        return ro(flags).map(|()| true).map_err(|e| {
            format!(
                "cannot mount {} ({fstype}, read-only) on {}: {}",
                dev.display(),
                dir.display(),
                e.desc()
            )
        });
    }
    match mount(Some(dev), dir, Some(fstype), flags, None::<&str>) {
        Ok(()) => Ok(false),
        Err(nix::errno::Errno::EROFS) | Err(nix::errno::Errno::EACCES) => {
            ro(flags).map(|()| true).map_err(|e| {
                format!(
                    "cannot mount {} ({fstype}) on {}: {}",
                    dev.display(),
                    dir.display(),
                    e.desc()
                )
            })
        }
        Err(e) => Err(format!(
            "cannot mount {} ({fstype}) on {}: {}",
            dev.display(),
            dir.display(),
            e.desc()
        )),
    }
}

/// A process using a mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Process id.
    pub pid: i32,
    /// Its command name.
    pub command: String,
    /// How it uses the mount: `cwd`, `root`, `exe`, `mmap`, `fd N`.
    pub uses: Vec<String>,
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}: {})",
            self.command,
            self.pid,
            self.uses.join(", ")
        )
    }
}

/// The processes with a file, directory or mapping on the file system whose device numbers
/// are `dev` (`st_dev` of the mount point), ourselves excepted.
pub fn users(major: u32, minor: u32) -> Vec<User> {
    let want = nix::sys::stat::makedev(major.into(), minor.into());
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = p.path();
        let on = |link: &Path| fs::metadata(link).map(|m| m.dev() == want).unwrap_or(false);
        let mut uses = Vec::new();
        for what in ["cwd", "root", "exe"] {
            if on(&dir.join(what)) {
                uses.push(what.to_string());
            }
        }
        if let Ok(fds) = fs::read_dir(dir.join("fd")) {
            let mut nums: Vec<u32> = fds
                .flatten()
                .filter(|e| on(&e.path()))
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            nums.sort_unstable();
            uses.extend(nums.iter().map(|n| format!("fd {n}")));
        }
        let maps_dev = format!("{major:02x}:{minor:02x}");
        if fs::read_to_string(dir.join("maps"))
            .map(|m| {
                m.lines()
                    .any(|l| l.split_whitespace().nth(3) == Some(maps_dev.as_str()))
            })
            .unwrap_or(false)
        {
            uses.push("mmap".to_string());
        }
        if !uses.is_empty() {
            let command = fs::read_to_string(dir.join("comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            out.push(User { pid, command, uses });
        }
    }
    out.sort_by_key(|u| u.pid);
    out
}

/// Why an unmount did not happen.
#[derive(Debug, Clone)]
pub enum UnmountError {
    /// EBUSY: the users found (possibly none visible, e.g. a bind mount or a swap file).
    Busy(Vec<User>),
    /// Another error.
    Other(String),
}

/// Unmounts `dir` (the file system with device numbers `major:minor`); with `force`, kills
/// its users first (SIGKILL, as `fuser -km` does) and waits for them to go.
pub fn unmount(dir: &Path, major: u32, minor: u32, force: bool) -> Result<(), UnmountError> {
    if force {
        let victims = users(major, minor);
        for u in &victims {
            log::warn!("killing {u}, a user of {}", dir.display());
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(u.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !victims.is_empty() {
            let gone = super::devices::wait(Duration::from_secs(5), || {
                if users(major, minor).is_empty() {
                    Some(())
                } else {
                    None
                }
            });
            if gone.is_none() {
                log::warn!("users of {} still present after SIGKILL", dir.display());
            }
        }
    }
    match umount2(dir, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err(UnmountError::Busy(users(major, minor))),
        Err(e) => Err(UnmountError::Other(format!(
            "cannot unmount {}: {}",
            dir.display(),
            e.desc()
        ))),
    }
}

/// Removes `dir` and then its parent if they are empty (the mount point and `/<target>`
/// directories `map` created); never anything above `stop_at`.
pub fn remove_empty_dirs(dir: &Path, stop_at: &Path) {
    let mut d = Some(dir);
    while let Some(p) = d {
        if p == stop_at || !p.starts_with(stop_at) || fs::remove_dir(p).is_err() {
            break;
        }
        d = p.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let t = "36 35 8:17 / /iqn.2003-01.x:y/disk\\040a rw,nodev,relatime shared:1 - ext4 /dev/sdb1 rw\n\
                 22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                 40 35 11:0 / /mnt/cd ro,relatime - iso9660 /dev/sr0 ro\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].target, PathBuf::from("/iqn.2003-01.x:y/disk a"));
        assert_eq!((m[0].major, m[0].minor), (8, 17));
        assert_eq!(m[0].fstype, "ext4");
        assert_eq!(m[0].source, "/dev/sdb1");
        assert!(!m[0].read_only);
        assert!(m[2].read_only);
    }

    #[test]
    fn unescape_plain_and_octal() {
        assert_eq!(unescape("a\\040b\\011c"), "a b\tc");
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("end\\"), "end\\");
    }

    #[test]
    fn empty_dirs_go_up_to_the_root() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("iqn.x/disk0a");
        fs::create_dir_all(&d).unwrap();
        remove_empty_dirs(&d, t.path());
        assert!(!t.path().join("iqn.x").exists());
        assert!(t.path().exists());
    }
}
