//! Device discovery in sysfs: the disks of a channel's SCSI host
//! (`/sys/class/scsi_host/hostN/device/target*/N:C:T:L/block/sdX`), their partitions, read-only
//! flags and sizes, and waiting for device nodes to appear.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One LUN of a channel as the SCSI layer sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lun {
    /// The LUN number.
    pub lun: u64,
    /// `host:channel:target:lun`.
    pub hctl: String,
    /// The block device name (`sdb`), once the disk driver has claimed it.
    pub disk: Option<String>,
    /// SCSI vendor and model, as INQUIRY reported them.
    pub model: String,
    /// Size in bytes (0 without a disk).
    pub size_bytes: u64,
    /// The disk is read-only.
    pub read_only: bool,
    /// Partition numbers found on the disk.
    pub partitions: Vec<u32>,
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The LUNs of SCSI host `host`, by LUN number.
pub fn luns(host: u32) -> Vec<Lun> {
    let dev = PathBuf::from(format!("/sys/class/scsi_host/host{host}/device"));
    let mut out = Vec::new();
    let Ok(targets) = fs::read_dir(&dev) else {
        return out;
    };
    for t in targets.flatten() {
        if !t.file_name().to_string_lossy().starts_with("target") {
            continue;
        }
        let Ok(sdevs) = fs::read_dir(t.path()) else {
            continue;
        };
        for s in sdevs.flatten() {
            let name = s.file_name().to_string_lossy().to_string();
            let parts: Vec<&str> = name.split(':').collect();
            if parts.len() != 4 || parts[0] != host.to_string() {
                continue;
            }
            let Ok(lun) = parts[3].parse::<u64>() else {
                continue;
            };
            let p = s.path();
            let disk = fs::read_dir(p.join("block"))
                .ok()
                .and_then(|mut rd| rd.next())
                .and_then(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string());
            let model = format!(
                "{} {}",
                read_trim(&p.join("vendor")),
                read_trim(&p.join("model"))
            )
            .trim()
            .to_string();
            let (size_bytes, read_only, partitions) = match &disk {
                Some(d) => disk_info(d),
                None => (0, false, Vec::new()),
            };
            out.push(Lun {
                lun,
                hctl: name,
                disk,
                model,
                size_bytes,
                read_only,
                partitions,
            });
        }
    }
    out.sort_by_key(|l| l.lun);
    out
}

fn disk_info(disk: &str) -> (u64, bool, Vec<u32>) {
    let sys = PathBuf::from(format!("/sys/class/block/{disk}"));
    let size = read_trim(&sys.join("size")).parse::<u64>().unwrap_or(0) * 512;
    let ro = read_trim(&sys.join("ro")) == "1";
    let mut parts: Vec<u32> = fs::read_dir(&sys)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("partition").exists())
                .filter_map(|e| read_trim(&e.path().join("partition")).parse().ok())
                .collect()
        })
        .unwrap_or_default();
    parts.sort_unstable();
    (size, ro, parts)
}

/// The kernel name of partition `part` of `disk` (`sdb1`); partition 0 is the disk itself.
pub fn partition_name(disk: &str, part: u32) -> String {
    if part == 0 {
        return disk.to_string();
    }
    let sep = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    format!("{disk}{sep}{part}")
}

/// `/dev/<name>`.
pub fn node(name: &str) -> PathBuf {
    PathBuf::from("/dev").join(name)
}

/// `major:minor` of a block device by kernel name, from sysfs.
pub fn dev_numbers(name: &str) -> Option<(u32, u32)> {
    let t = read_trim(&PathBuf::from(format!("/sys/class/block/{name}/dev")));
    let (a, b) = t.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Every block device name of `disk`: the disk and its partitions.
pub fn disk_and_partitions(disk: &str) -> Vec<String> {
    let mut v = vec![disk.to_string()];
    for p in disk_info(disk).2 {
        v.push(partition_name(disk, p));
    }
    v
}

/// What holds a block device (device-mapper, md...): names under `holders/`.
pub fn holders(name: &str) -> Vec<String> {
    fs::read_dir(format!("/sys/class/block/{name}/holders"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the block device node `/dev/<name>` to exist and be a block device.
pub fn wait_for_node(name: &str, timeout: Duration) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let p = node(name);
    wait(timeout, || {
        fs::metadata(&p)
            .ok()
            .filter(|m| m.file_type().is_block_device())
            .map(|_| p.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(partition_name("sdb", 0), "sdb");
        assert_eq!(partition_name("sdb", 2), "sdb2");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
    }
}
