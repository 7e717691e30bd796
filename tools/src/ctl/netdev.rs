//! Network interfaces by name, from sysfs (`/sys/class/net/<name>/ifindex`). The module takes
//! interface indexes (a portal's `@IFINDEX`, a link-local address's `%SCOPE`); the
//! administrator writes names (field 3 of a CHANNEL line, `fe80::1%eth0`); the module's
//! `connections` attribute gives indexes back, which `status` shows as names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::initiator::{F_ADDRESS, F_NETDEV};
use crate::config::{Channel, ConfigError, ConfigErrors, Portal};

/// Where sysfs lists the network interfaces.
pub const DEFAULT_ROOT: &str = "/sys/class/net";

/// The network interfaces listed under a directory: sysfs's, or a test's copy of its shape
/// (`<root>/<name>/ifindex`).
#[derive(Debug, Clone)]
pub struct NetDevs {
    root: PathBuf,
}

impl Default for NetDevs {
    fn default() -> Self {
        NetDevs::new(DEFAULT_ROOT)
    }
}

/// The interface indexes one portal needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortalIndexes {
    /// The network device of field 3: its connections are bound to it.
    pub device: Option<u32>,
    /// The `%scope` of a link-local address.
    pub scope: Option<u32>,
}

impl NetDevs {
    /// The interfaces under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NetDevs { root: root.into() }
    }

    /// The index of the interface called `name`, if it exists.
    pub fn index(&self, name: &str) -> Option<u32> {
        // A name is one path component: nothing outside the directory is read.
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return None;
        }
        std::fs::read_to_string(self.root.join(name).join("ifindex"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every interface under the root by index: `index -> name` (names that are not UTF-8
    /// are taken lossily; they are printed escaped). Empty when the root cannot be read.
    pub fn names(&self) -> BTreeMap<u32, String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return BTreeMap::new();
        };
        let mut names = BTreeMap::new();
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("ifindex")) else {
                continue;
            };
            if let Ok(index) = text.trim().parse::<u32>() {
                names
                    .entry(index)
                    .or_insert_with(|| e.file_name().to_string_lossy().into_owned());
            }
        }
        names
    }

    /// The name of the interface with index `index`, if one has it (none has 0).
    pub fn name(&self, index: u32) -> Option<String> {
        if index == 0 {
            return None;
        }
        self.names().remove(&index)
    }

    /// The index of `scope` (what follows `%` in a link-local address): a name, or already
    /// an index.
    pub fn scope_index(&self, scope: &str) -> Option<u32> {
        if !scope.is_empty() && scope.bytes().all(|b| b.is_ascii_digit()) {
            return scope.parse().ok();
        }
        self.index(scope)
    }

    /// The indexes of portal `p` of `file`; an interface that does not exist is an error at
    /// the portal's line, naming the field that gave it.
    pub fn resolve(&self, file: &Path, p: &Portal) -> Result<PortalIndexes, ConfigError> {
        let device = match &p.netdev {
            Some(dev) => Some(self.index(dev).ok_or_else(|| {
                ConfigError::field(
                    file,
                    p.line,
                    F_NETDEV,
                    format!("no such network device '{dev}'"),
                )
            })?),
            None => None,
        };
        let scope = match &p.scope {
            Some(s) => Some(self.scope_index(s).ok_or_else(|| {
                ConfigError::field(
                    file,
                    p.line,
                    F_ADDRESS,
                    format!("no such network device '{s}' (after % in the address)"),
                )
            })?),
            None => None,
        };
        Ok(PortalIndexes { device, scope })
    }

    /// Every portal of `channels` whose interface does not exist, one error per line, in line
    /// order: what `check-config` and `start` report before anything is changed.
    pub fn check<'a>(
        &self,
        file: &Path,
        channels: impl IntoIterator<Item = &'a Channel>,
    ) -> Result<(), ConfigErrors> {
        let mut errors: Vec<ConfigError> = channels
            .into_iter()
            .flat_map(|ch| &ch.portals)
            .filter_map(|p| self.resolve(file, p).err())
            .collect();
        errors.sort_by_key(|e| e.line_number());
        ConfigErrors::check(errors)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::initiator::parse_initiator;

    /// A sysfs-like directory listing `(name, index)` interfaces.
    pub(crate) fn fake_sysfs(interfaces: &[(&str, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, index) in interfaces {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("ifindex"), format!("{index}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn names_become_indexes() {
        let sys = fake_sysfs(&[("eth0", 3), ("eth1", 4)]);
        let net = NetDevs::new(sys.path());
        assert_eq!(net.index("eth1"), Some(4));
        assert_eq!(net.index("eth7"), None);
        assert_eq!(net.index("../eth0"), None);
        assert_eq!(net.index(".."), None);
        assert_eq!(net.scope_index("eth0"), Some(3));
        assert_eq!(net.scope_index("7"), Some(7));
        // The real sysfs: the loopback interface is always index 1.
        assert_eq!(NetDevs::default().index("lo"), Some(1));
    }

    /// What `status` does with the indexes the module shows: back to names.
    #[test]
    fn indexes_become_names() {
        let sys = fake_sysfs(&[("lo", 1), ("eth0", 3), ("eth1", 4)]);
        // Not an interface: a file, a directory without `ifindex`, one with garbage in it.
        std::fs::write(sys.path().join("bonding_masters"), "\n").unwrap();
        std::fs::create_dir(sys.path().join("empty")).unwrap();
        std::fs::create_dir(sys.path().join("bad")).unwrap();
        std::fs::write(sys.path().join("bad").join("ifindex"), "x\n").unwrap();
        let net = NetDevs::new(sys.path());
        let names = net.names();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec![
                (1, "lo".to_string()),
                (3, "eth0".into()),
                (4, "eth1".into())
            ]
        );
        assert_eq!(net.name(4).as_deref(), Some("eth1"));
        assert_eq!(net.name(0), None);
        assert_eq!(net.name(9), None);
        assert!(NetDevs::new(sys.path().join("nowhere")).names().is_empty());
        assert_eq!(NetDevs::default().name(1).as_deref(), Some("lo"));
    }

    #[test]
    fn a_missing_device_names_its_line_and_field() {
        let sys = fake_sysfs(&[("eth0", 3)]);
        let file = Path::new("/etc/sysconfig/initiator");
        let chans = parse_initiator(
            file,
            "CHANNEL=\"1 2 eth0 192.168.1.10 3260 0\"\n\
             CHANNEL=\"1 2 eth7 192.168.2.10 3260 0\"\n\
             CHANNEL=\"2 1 fe80::2%eth9 3260 0\"\n\
             CHANNEL=\"3 1 fe80::3%eth0 3260 0\"\n",
        )
        .unwrap();
        let e = NetDevs::new(sys.path())
            .check(file, chans.values())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/sysconfig/initiator:2: field 3 (network device): no such network device 'eth7'\n\
             /etc/sysconfig/initiator:3: field 4 (address): no such network device 'eth9' (after % in the address)"
        );
        assert!(NetDevs::new(sys.path()).check(file, [&chans[&3]]).is_ok());
    }
}
