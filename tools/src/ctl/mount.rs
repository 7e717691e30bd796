//! Mounting and unmounting the mapped devices (nix::mount), the file system type (blkid), the
//! mount table (/proc/self/mountinfo) and who uses a mount (a fuser of our own over /proc/*/fd,
//! cwd, root, exe and map_files, by mount id: the same file system seen through a bind mount
//! elsewhere is another mount). A forced unmount signals each user through a descriptor of its
//! /proc/PID directory, which keeps naming that process after its pid is reused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// The mount's id (first field; `mnt_id` in /proc/PID/fdinfo).
    pub id: u32,
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
                id: f.first()?.parse().ok()?,
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

/// The `mnt_id:` of an fdinfo text.
fn fdinfo_mnt_id(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The mount `path` (a magic link such as /proc/PID/cwd is followed) is on: opened with
/// O_PATH, which neither reads nor blocks, then our own fdinfo of it.
fn mount_id_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH)
        .open(path)
        .ok()?;
    fdinfo_mnt_id(&fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd())).ok()?)
}

/// A process held by an open descriptor of its /proc/PID directory: everything read through
/// it, and the signal sent through it, concern that process, even if it has exited and its
/// pid has gone to another (then reads fail and the signal is refused with ESRCH).
struct Pinned {
    pid: i32,
    dir: fs::File,
}

impl Pinned {
    fn open(pid: i32) -> Option<Pinned> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY)
            .open(format!("/proc/{pid}"))
            .ok()?;
        Some(Pinned { pid, dir })
    }

    /// `rel` under the pinned /proc/PID.
    fn path(&self, rel: &str) -> PathBuf {
        use std::os::unix::io::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{rel}", self.dir.as_raw_fd()))
    }

    /// How the process uses mount `m`: `cwd`, `root`, `exe`, `fd N`, `mmap`.
    fn uses(&self, m: &MountEntry) -> Vec<String> {
        let mut uses = Vec::new();
        for what in ["cwd", "root", "exe"] {
            if mount_id_of(&self.path(what)) == Some(m.id) {
                uses.push(what.to_string());
            }
        }
        if let Ok(fds) = fs::read_dir(self.path("fd")) {
            let mut nums: Vec<u32> = fds
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|n: &u32| {
                    fs::read_to_string(self.path(&format!("fdinfo/{n}")))
                        .ok()
                        .and_then(|t| fdinfo_mnt_id(&t))
                        == Some(m.id)
                })
                .collect();
            nums.sort_unstable();
            uses.extend(nums.iter().map(|n| format!("fd {n}")));
        }
        // Mappings of files on the same device, then which mount each is through.
        let dev = format!("{:02x}:{:02x}", m.major, m.minor);
        let maps = fs::read_to_string(self.path("maps")).unwrap_or_default();
        let mapped = maps.lines().any(|l| {
            let mut f = l.split_whitespace();
            let range = f.next();
            let on_dev = f.nth(2) == Some(dev.as_str());
            on_dev
                && range.is_some_and(|r| {
                    mount_id_of(&self.path(&format!("map_files/{r}"))) == Some(m.id)
                })
        });
        if mapped {
            uses.push("mmap".to_string());
        }
        uses
    }

    fn user(&self, m: &MountEntry) -> Option<User> {
        let uses = self.uses(m);
        if uses.is_empty() {
            return None;
        }
        let command = fs::read_to_string(self.path("comm"))
            .map(|s| crate::text::printable(s.trim()).into_owned())
            .unwrap_or_else(|_| "?".into());
        Some(User {
            pid: self.pid,
            command,
            uses,
        })
    }

    /// SIGKILL to this process and no other (pidfd_send_signal on the /proc/PID descriptor).
    fn kill(&self) -> std::io::Result<()> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: pidfd_send_signal(2) takes a descriptor we own and keep open for the call,
        // a signal number, a null siginfo (the kernel fills in a SI_USER one) and no flags; it
        // reads and writes no memory of ours.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.dir.as_raw_fd(),
                nix::libc::SIGKILL,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0u32,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

fn pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|p| p.file_name().to_str()?.parse().ok())
                .filter(|p| *p != me)
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The processes with a file, directory or mapping on mount `m` itself (not on the same file
/// system mounted or bind-mounted elsewhere), ourselves excepted.
pub fn users(m: &MountEntry) -> Vec<User> {
    pids()
        .into_iter()
        .filter_map(|pid| Pinned::open(pid)?.user(m))
        .collect()
}

/// Kills `victims` (found by [`users`]) that still use mount `m`: each is pinned, checked
/// again through the pin, and signalled through it, so a pid that went to another process
/// since the scan is not killed unless that process uses the mount too. Returns those killed.
pub fn kill_users(m: &MountEntry, victims: &[User]) -> Vec<User> {
    let mut killed = Vec::new();
    for v in victims {
        let Some(p) = Pinned::open(v.pid) else {
            continue; // gone
        };
        let Some(u) = p.user(m) else {
            continue; // no longer a user
        };
        log::warn!("killing {u}, a user of {}", m.target.display());
        match p.kill() {
            Ok(()) => killed.push(u),
            Err(e) => log::warn!("cannot kill pid {}: {e}", v.pid),
        }
    }
    killed
}

/// Why an unmount did not happen.
#[derive(Debug, Clone)]
pub enum UnmountError {
    /// EBUSY: the users found (possibly none visible, e.g. a bind mount or a swap file).
    Busy(Vec<User>),
    /// Another error.
    Other(String),
}

/// Unmounts mount `m`; with `force`, kills its users first (SIGKILL, as `fuser -km` does,
/// but only those of this mount, see [`kill_users`]) and waits for them to go.
pub fn unmount(m: &MountEntry, force: bool) -> Result<(), UnmountError> {
    if force {
        let victims = users(m);
        if !kill_users(m, &victims).is_empty() {
            let gone =
                super::devices::wait(Duration::from_secs(5), || users(m).is_empty().then_some(()));
            if gone.is_none() {
                log::warn!(
                    "users of {} still present after SIGKILL",
                    m.target.display()
                );
            }
        }
    }
    match umount2(&m.target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err(UnmountError::Busy(users(m))),
        Err(e) => Err(UnmountError::Other(format!(
            "cannot unmount {}: {}",
            m.target.display(),
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
        assert_eq!(m[0].id, 36);
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
