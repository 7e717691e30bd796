//! Status rendering: what `initiator-ctl status` shows per channel, as text and as JSON (the
//! same [`ChannelStatus`] serialized). Never holds a secret: only what the module shows
//! (which has no readable secret attribute) and the configuration's public fields.

use serde::Serialize;

use crate::text::printable;

/// A mapped device (one DEVICE line) as it stands.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapStatus {
    /// The LUN.
    pub lun: u64,
    /// The partition (0 = whole device).
    pub partition: u32,
    /// The DEVICE line's name.
    pub name: String,
    /// `iscsi_device_maps:LINE`.
    pub line: usize,
    /// The block device (`/dev/sdb1`), if present.
    pub device: Option<String>,
    /// Where it should be mounted.
    pub mount_point: String,
    /// Whether it is mounted there.
    pub mounted: bool,
    /// The mounted file system type.
    pub fstype: Option<String>,
    /// Mounted read-only.
    pub read_only: bool,
}

/// One LUN.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LunStatus {
    /// LUN number.
    pub lun: u64,
    /// `/dev/sdX`, if the disk is present.
    pub device: Option<String>,
    /// Vendor and model.
    pub model: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Read-only disk.
    pub read_only: bool,
    /// Partition devices (`/dev/sdb1`...).
    pub partitions: Vec<String>,
    /// Mounts of the disk or its partitions: `(device, mount point)`, mapped or not.
    pub mounts: Vec<(String, String)>,
}

/// One channel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelStatus {
    /// Channel id.
    pub channel: u32,
    /// `running`, `paused`, `stopped`, `starting`, `stopping`, `recovering`, `failed`.
    pub state: String,
    /// Why it failed (with `failed`).
    pub reason: Option<String>,
    /// Whether the channel is in the configuration.
    pub configured: bool,
    /// Target name (the module's, else the configuration's).
    pub target: Option<String>,
    /// Portals (the module's, else the configuration's).
    pub portals: Vec<String>,
    /// TCP connections of the session open now (0 when not logged in).
    pub connections: u32,
    /// The connections its `portals` ask for, when the module says (`stats`).
    pub connections_configured: Option<u32>,
    /// SCSI host number.
    pub host: Option<u32>,
    /// Negotiated parameters, `(key, value)` in the module's order.
    pub negotiated: Vec<(String, String)>,
    /// LUNs.
    pub luns: Vec<LunStatus>,
    /// The DEVICE lines of this channel.
    pub maps: Vec<MapStatus>,
    /// Counters, `(name, value)` in the module's order.
    pub counters: Vec<(String, u64)>,
}

/// The session's connections as the module counts them in `stats`: `(open now, configured)`;
/// `None` from a module that does not print those lines.
pub fn connection_counts(counters: &[(String, u64)]) -> Option<(u32, u32)> {
    let get = |name: &str| {
        let v = counters.iter().find(|(k, _)| k == name)?.1;
        Some(u32::try_from(v).unwrap_or(u32::MAX))
    };
    Some((get("connections")?, get("connections_configured")?))
}

fn size(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Joins `items` as lines of at most ~90 columns, each indented by `indent`.
fn wrap(items: &[String], indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for it in items {
        if !line.is_empty() && line.len() + it.len() + 1 > 90 - indent.len() {
            out += &format!("{indent}{line}\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line += it;
    }
    if !line.is_empty() {
        out += &format!("{indent}{line}\n");
    }
    out
}

impl ChannelStatus {
    /// The MaxConnections the target granted, from `negotiated`.
    fn granted(&self) -> Option<u32> {
        self.negotiated
            .iter()
            .find(|(k, _)| k == "MaxConnections")
            .and_then(|(_, v)| v.parse().ok())
    }

    /// What follows `connections:`: the count open, `N of M` when the channel runs and asks
    /// for more than one, with why fewer are open when the target granted fewer.
    fn connections_text(&self) -> String {
        let mut notes: Vec<String> = Vec::new();
        let count = match self.connections_configured {
            Some(total) if self.state == "running" && total > 1 => {
                if let Some(g) = self.granted().filter(|&g| g < total) {
                    notes.push(format!("the target grants MaxConnections={g}"));
                }
                format!("{} of {total}", self.connections)
            }
            _ => self.connections.to_string(),
        };
        if let Some(h) = self.host {
            notes.push(format!("SCSI host{h}"));
        }
        if notes.is_empty() {
            count
        } else {
            format!("{count} ({})", notes.join("; "))
        }
    }

    /// The text `initiator-ctl status` prints.
    pub fn render(&self) -> String {
        let mut s = format!("channel {}: {}", self.channel, self.state);
        if let Some(r) = &self.reason {
            s += &format!(" ({})", printable(r));
        }
        if !self.configured {
            s += " [not in the configuration]";
        }
        s.push('\n');
        s += &format!(
            "    target:      {}\n",
            printable(self.target.as_deref().unwrap_or("(discovered at start)"))
        );
        s += &format!("    portals:     {}\n", self.portals.join(" "));
        s += &format!("    connections: {}\n", self.connections_text());
        if !self.negotiated.is_empty() {
            s += "    negotiated:\n";
            let kv: Vec<String> = self
                .negotiated
                .iter()
                .map(|(k, v)| format!("{}={}", printable(k), printable(v)))
                .collect();
            s += &wrap(&kv, "        ");
        }
        for l in &self.luns {
            s += &format!(
                "    LUN {}: {} {} {}{}\n",
                l.lun,
                l.device.as_deref().unwrap_or("(no disk)"),
                size(l.size_bytes),
                printable(&l.model),
                if l.read_only { " read-only" } else { "" }
            );
            for (dev, at) in &l.mounts {
                if !self.maps.iter().any(|m| m.mounted && &m.mount_point == at) {
                    s += &format!("        {dev} mounted at {} (not mapped)\n", printable(at));
                }
            }
        }
        for m in &self.maps {
            let dev = m.device.as_deref().unwrap_or("(absent)");
            let what = if m.partition == 0 {
                format!("LUN {} whole device", m.lun)
            } else {
                format!("LUN {} partition {}", m.lun, m.partition)
            };
            if m.mounted {
                s += &format!(
                    "    map {}: {what} {dev} mounted at {} ({}{})\n",
                    m.name,
                    printable(&m.mount_point),
                    m.fstype.as_deref().unwrap_or("?"),
                    if m.read_only { ", read-only" } else { "" }
                );
            } else {
                s += &format!(
                    "    map {}: {what} {dev} not mounted ({})\n",
                    m.name,
                    printable(&m.mount_point)
                );
            }
        }
        if !self.counters.is_empty() {
            s += "    counters:\n";
            let kv: Vec<String> = self
                .counters
                .iter()
                .map(|(k, v)| format!("{}={v}", printable(k)))
                .collect();
            s += &wrap(&kv, "        ");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_part() {
        let st = ChannelStatus {
            channel: 0,
            state: "running".into(),
            reason: None,
            configured: true,
            target: Some("iqn.2003-01.org.example:t".into()),
            portals: vec!["127.0.0.1:3260".into()],
            connections: 1,
            connections_configured: None,
            host: Some(3),
            negotiated: vec![("HeaderDigest".into(), "None".into())],
            luns: vec![LunStatus {
                lun: 0,
                device: Some("/dev/sdb".into()),
                model: "LIO-ORG FILEIO".into(),
                size_bytes: 64 << 20,
                read_only: false,
                partitions: vec!["/dev/sdb1".into()],
                mounts: vec![(
                    "/dev/sdb1".into(),
                    "/iqn.2003-01.org.example:t/disk0a".into(),
                )],
            }],
            maps: vec![MapStatus {
                lun: 0,
                partition: 1,
                name: "disk0a".into(),
                line: 1,
                device: Some("/dev/sdb1".into()),
                mount_point: "/iqn.2003-01.org.example:t/disk0a".into(),
                mounted: true,
                fstype: Some("ext4".into()),
                read_only: false,
            }],
            counters: vec![("commands".into(), 12)],
        };
        let t = st.render();
        assert!(t.starts_with("channel 0: running\n"), "{t}");
        assert!(t.contains("HeaderDigest=None"), "{t}");
        assert!(t.contains("LUN 0: /dev/sdb 64.0 MiB LIO-ORG FILEIO"), "{t}");
        assert!(t.contains("map disk0a: LUN 0 partition 1 /dev/sdb1 mounted at /iqn.2003-01.org.example:t/disk0a (ext4)"), "{t}");
        assert!(t.contains("commands=12"), "{t}");
        assert!(t.contains("    connections: 1 (SCSI host3)\n"), "{t}");
        assert!(!t.contains("not mapped"), "{t}");
    }

    /// INQUIRY strings and reasons come from the target: printed escaped.
    #[test]
    fn target_text_is_escaped() {
        let st = ChannelStatus {
            channel: 1,
            state: "failed".into(),
            reason: Some("login refused: \x1b[31mred".into()),
            configured: true,
            target: Some("iqn.2003-01.org.example:t".into()),
            portals: vec![],
            connections: 0,
            connections_configured: None,
            host: None,
            negotiated: vec![],
            luns: vec![LunStatus {
                lun: 0,
                device: None,
                model: "EVIL\x1b]0;title\x07 DISK\r".into(),
                size_bytes: 0,
                read_only: false,
                partitions: vec![],
                mounts: vec![],
            }],
            maps: vec![],
            counters: vec![],
        };
        let t = st.render();
        assert!(
            !t.contains('\x1b') && !t.contains('\x07') && !t.contains('\r'),
            "{t:?}"
        );
        assert!(t.contains("EVIL\\x1b]0;title\\x07 DISK\\x0d"), "{t}");
        assert!(t.contains("(login refused: \\x1b[31mred)"), "{t}");
    }

    #[test]
    fn connection_counts_need_both_lines() {
        let stats = |lines: &[(&str, u64)]| -> Vec<(String, u64)> {
            lines.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(
            connection_counts(&stats(&[
                ("commands", 3),
                ("connections", 1),
                ("connections_configured", 4),
                ("conn0.pdus_tx", 9),
            ])),
            Some((1, 4))
        );
        // A module from before multi-connection sessions.
        assert_eq!(
            connection_counts(&stats(&[("commands", 3), ("conn0.pdus_tx", 9)])),
            None
        );
        assert_eq!(connection_counts(&stats(&[("connections", 1)])), None);
    }

    /// `N of M` only for a running channel asking for more than one; the grant explains a
    /// shortfall.
    #[test]
    fn connections_line() {
        let mut st = ChannelStatus {
            channel: 1,
            state: "running".into(),
            reason: None,
            configured: true,
            target: None,
            portals: vec![],
            connections: 1,
            connections_configured: Some(4),
            host: Some(2),
            negotiated: vec![("MaxConnections".into(), "1".into())],
            luns: vec![],
            maps: vec![],
            counters: vec![],
        };
        assert_eq!(
            st.connections_text(),
            "1 of 4 (the target grants MaxConnections=1; SCSI host2)"
        );
        st.host = None;
        assert_eq!(
            st.connections_text(),
            "1 of 4 (the target grants MaxConnections=1)"
        );
        st.connections = 3;
        st.negotiated = vec![("MaxConnections".into(), "4".into())];
        assert_eq!(st.connections_text(), "3 of 4");
        st.connections_configured = Some(1);
        st.connections = 1;
        assert_eq!(st.connections_text(), "1");
        st.connections_configured = Some(4);
        st.state = "recovering".into();
        st.connections = 0;
        assert_eq!(st.connections_text(), "0");
    }
}
