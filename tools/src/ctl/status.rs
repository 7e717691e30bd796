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

/// One line of the module's `connections` attribute: a connection of the session (`up`, or
/// `lost` and not yet replaced), or one that `portals` asks for and that is not open
/// (`missing`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// Its CID (none for a missing connection).
    pub cid: Option<u32>,
    /// The target portal: `ADDR:PORT` or `[ADDR]:PORT`.
    pub portal: String,
    /// The index of the interface it is (or would be) bound to; 0: not bound.
    pub ifindex: u32,
    /// That interface's name, when one has the index now.
    pub device: Option<String>,
    /// The local address and port, when known.
    pub local: Option<String>,
    /// `up`, `lost` or `missing`.
    pub state: String,
    /// PDUs sent (none for a missing connection).
    pub pdus_tx: Option<u64>,
    /// PDUs received.
    pub pdus_rx: Option<u64>,
    /// Bytes sent, headers and digests included.
    pub bytes_tx: Option<u64>,
    /// Bytes received.
    pub bytes_rx: Option<u64>,
    /// Seconds its portal's added connections are still held back (a missing connection
    /// whose portal dropped them soon after their login; see initiator-ctl(8)).
    pub held_s: Option<u64>,
}

impl ConnectionStatus {
    /// A connection of the session (up or lost), not one that is missing.
    pub fn is_open(&self) -> bool {
        self.cid.is_some() && self.state != "missing"
    }

    /// The device column: `-` when not bound, the interface's name, or `#N` when no
    /// interface has index N now.
    fn device_text(&self) -> String {
        match (self.ifindex, &self.device) {
            (0, _) => "-".into(),
            (_, Some(name)) => printable(name).into_owned(),
            (i, None) => format!("#{i}"),
        }
    }
}

/// One line of `connections`, `KEY VALUE` pairs: `None` for a line without `cid`, `portal` and
/// `state` or with a value that does not parse. Keys it does not know are skipped (a newer
/// module may add some).
fn parse_connection(line: &str) -> Option<ConnectionStatus> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return None;
    }
    let dash = |v: &str| (v != "-").then(|| v.to_string());
    let mut cid: Option<Option<u32>> = None;
    let mut c = ConnectionStatus {
        cid: None,
        portal: String::new(),
        ifindex: 0,
        device: None,
        local: None,
        state: String::new(),
        pdus_tx: None,
        pdus_rx: None,
        bytes_tx: None,
        bytes_rx: None,
        held_s: None,
    };
    for kv in words.chunks(2) {
        let (k, v) = (kv[0], kv[1]);
        match k {
            "cid" if v == "-" => cid = Some(None),
            "cid" => cid = Some(Some(v.parse().ok()?)),
            "portal" => c.portal = v.to_string(),
            "ifindex" => c.ifindex = v.parse().ok()?,
            "local" => c.local = dash(v),
            "state" => c.state = v.to_string(),
            "pdus_tx" => c.pdus_tx = Some(v.parse().ok()?),
            "pdus_rx" => c.pdus_rx = Some(v.parse().ok()?),
            "bytes_tx" => c.bytes_tx = Some(v.parse().ok()?),
            "bytes_rx" => c.bytes_rx = Some(v.parse().ok()?),
            "held" => c.held_s = Some(v.parse().ok()?),
            _ => {}
        }
    }
    c.cid = cid?;
    if c.portal.is_empty() || c.state.is_empty() {
        return None;
    }
    Some(c)
}

/// The module's `connections` attribute: one [`ConnectionStatus`] per line it can read (lines
/// it cannot are skipped). Empty text (no session, or a module without the attribute) gives
/// none.
pub fn parse_connections(text: &str) -> Vec<ConnectionStatus> {
    text.lines().filter_map(parse_connection).collect()
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
    /// Each connection of a running channel's session, then each one its `portals` asks for
    /// that is not open, from the module's `connections` attribute (none from a module
    /// without it).
    pub connection_list: Vec<ConnectionStatus>,
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

    /// The block under `connections:` of a running channel: the open connections as an
    /// aligned table, then one line per missing connection.
    fn connections_block(&self) -> String {
        const INDENT: &str = "        ";
        if self.state != "running" {
            return String::new();
        }
        let mut s = String::new();
        let num = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
        let mut rows: Vec<[String; 9]> = vec![[
            "cid", "portal", "device", "local", "state", "tx PDUs", "rx PDUs", "tx bytes",
            "rx bytes",
        ]
        .map(String::from)];
        rows.extend(
            self.connection_list
                .iter()
                .filter(|c| c.is_open())
                .map(|c| {
                    [
                        c.cid.map_or_else(|| "-".to_string(), |n| n.to_string()),
                        printable(&c.portal).into_owned(),
                        c.device_text(),
                        printable(c.local.as_deref().unwrap_or("-")).into_owned(),
                        printable(&c.state).into_owned(),
                        num(c.pdus_tx),
                        num(c.pdus_rx),
                        num(c.bytes_tx),
                        num(c.bytes_rx),
                    ]
                }),
        );
        if rows.len() > 1 {
            let mut width = [0usize; 9];
            for r in &rows {
                for (w, cell) in width.iter_mut().zip(r) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for r in &rows {
                let cells: Vec<String> = r
                    .iter()
                    .zip(width)
                    .enumerate()
                    .map(|(i, (cell, w))| {
                        if i < 5 {
                            format!("{cell:<w$}")
                        } else {
                            format!("{cell:>w$}")
                        }
                    })
                    .collect();
                s += &format!("{INDENT}{}\n", cells.join("  ").trim_end());
            }
        }
        for c in self.connection_list.iter().filter(|c| !c.is_open()) {
            let via = match (c.ifindex, &c.device) {
                (0, _) => String::new(),
                (_, Some(name)) => format!(" on {}", printable(name)),
                (i, None) => format!(" on interface index {i} (no such device now)"),
            };
            let held = c.held_s.map_or_else(String::new, |n| {
                format!(" (held back {n} s more: its connections dropped soon after login)")
            });
            s += &format!(
                "{INDENT}not open: a connection through {}{via}{held}\n",
                printable(&c.portal)
            );
        }
        s
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
        s += &self.connections_block();
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
            connection_list: vec![],
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
            connection_list: vec![],
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
            connection_list: vec![],
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

    /// The two kinds of line: a connection of the session (IPv4, IPv6, up, lost), and one
    /// `portals` asks for that is not open.
    #[test]
    fn connections_lines_parse() {
        let list = parse_connections(
            "cid 0 portal 127.0.0.1:3260 ifindex 0 local 127.0.0.1:51688 state up pdus_tx 25 pdus_rx 25 bytes_tx 1200 bytes_rx 5896\n\
             cid 1 portal [::1]:3260 ifindex 1 local [::1]:40112 state lost pdus_tx 3 pdus_rx 2 bytes_tx 144 bytes_rx 96\n\
             cid 2 portal [fe80::1%2]:3260 ifindex 2 local - state up pdus_tx 0 pdus_rx 0 bytes_tx 0 bytes_rx 0\n\
             cid - portal 127.0.0.2:3260 ifindex 3 local - state missing\n",
        );
        assert_eq!(list.len(), 4, "{list:?}");
        assert_eq!(
            list[0],
            ConnectionStatus {
                cid: Some(0),
                portal: "127.0.0.1:3260".into(),
                ifindex: 0,
                device: None,
                local: Some("127.0.0.1:51688".into()),
                state: "up".into(),
                pdus_tx: Some(25),
                pdus_rx: Some(25),
                bytes_tx: Some(1200),
                bytes_rx: Some(5896),
                held_s: None,
            }
        );
        assert!(list[0].is_open());
        assert_eq!(list[1].cid, Some(1));
        assert_eq!(list[1].portal, "[::1]:3260");
        assert_eq!(list[1].local.as_deref(), Some("[::1]:40112"));
        assert_eq!((list[1].ifindex, list[1].state.as_str()), (1, "lost"));
        assert_eq!(list[1].bytes_rx, Some(96));
        assert!(
            list[1].is_open(),
            "a lost connection is still the session's"
        );
        assert_eq!(list[2].portal, "[fe80::1%2]:3260");
        assert_eq!(list[2].local, None);
        assert_eq!(
            list[3],
            ConnectionStatus {
                cid: None,
                portal: "127.0.0.2:3260".into(),
                ifindex: 3,
                device: None,
                local: None,
                state: "missing".into(),
                pdus_tx: None,
                pdus_rx: None,
                bytes_tx: None,
                bytes_rx: None,
                held_s: None,
            }
        );
        assert!(!list[3].is_open());
    }

    /// No session, or a module without the attribute: nothing. Lines that do not parse are
    /// skipped, keys a newer module adds are ignored.
    #[test]
    fn connections_lines_tolerated() {
        assert!(parse_connections("").is_empty());
        assert!(parse_connections("\n").is_empty());
        let list = parse_connections(
            "cid x portal 127.0.0.1:3260 state up\n\
             cid 0 portal 127.0.0.1:3260 ifindex 0 state\n\
             portal 127.0.0.1:3260 state up\n\
             cid 0 state up\n\
             cid 0 portal 127.0.0.1:3260 ifindex -1 state up\n\
             cid 0 portal 127.0.0.1:3260 state up pdus_tx many\n\
             cid 4 portal 127.0.0.1:3260 ifindex 0 local - state up rtt_us 80 pdus_tx 1\n",
        );
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(
            (list[0].cid, list[0].pdus_tx, list[0].pdus_rx),
            (Some(4), Some(1), None)
        );
    }

    fn running_with(list: Vec<ConnectionStatus>) -> ChannelStatus {
        ChannelStatus {
            channel: 0,
            state: "running".into(),
            reason: None,
            configured: true,
            target: None,
            portals: vec![],
            connections: list.iter().filter(|c| c.is_open()).count() as u32,
            connections_configured: Some(list.len() as u32),
            connection_list: list,
            host: None,
            negotiated: vec![],
            luns: vec![],
            maps: vec![],
            counters: vec![],
        }
    }

    /// The block: a table of the open connections (device names, `-` for not bound, `#N` for
    /// an index no interface has), then a line per missing one, under `connections:`.
    #[test]
    fn connections_block_renders() {
        let mut list = parse_connections(
            "cid 0 portal 127.0.0.1:3260 ifindex 0 local 127.0.0.1:51688 state up pdus_tx 25 pdus_rx 25 bytes_tx 1200 bytes_rx 5896\n\
             cid 1 portal [::1]:3260 ifindex 1 local [::1]:40112 state lost pdus_tx 3 pdus_rx 2 bytes_tx 144 bytes_rx 96\n\
             cid 2 portal 10.0.0.1:3260 ifindex 7 local - state up pdus_tx 1 pdus_rx 1 bytes_tx 48 bytes_rx 48\n\
             cid - portal 127.0.0.2:3260 ifindex 3 local - state missing\n\
             cid - portal 127.0.0.3:3260 ifindex 0 local - state missing held 17\n\
             cid - portal 127.0.0.4:3260 ifindex 9 local - state missing\n",
        );
        list[1].device = Some("lo".into());
        list[3].device = Some("eth1".into());
        let st = running_with(list);
        let t = st.render();
        let expected = "    connections: 3 of 6\n\
            \x20       cid  portal          device  local            state  tx PDUs  rx PDUs  tx bytes  rx bytes\n\
            \x20       0    127.0.0.1:3260  -       127.0.0.1:51688  up          25       25      1200      5896\n\
            \x20       1    [::1]:3260      lo      [::1]:40112      lost         3        2       144        96\n\
            \x20       2    10.0.0.1:3260   #7      -                up           1        1        48        48\n\
            \x20       not open: a connection through 127.0.0.2:3260 on eth1\n\
            \x20       not open: a connection through 127.0.0.3:3260 (held back 17 s more: its connections dropped soon after login)\n\
            \x20       not open: a connection through 127.0.0.4:3260 on interface index 9 (no such device now)\n";
        assert!(t.contains(expected), "{t}");
        // Only for a running channel; nothing without the attribute.
        let mut st = st;
        st.state = "recovering".into();
        assert!(!st.render().contains("cid"), "{}", st.render());
        let t = running_with(vec![]).render();
        assert!(!t.contains("cid") && !t.contains("not open"), "{t}");
    }

    /// What the module and sysfs print is escaped like the target's text.
    #[test]
    fn connections_block_is_escaped() {
        let mut list = parse_connections(
            "cid 0 portal 127.0.0.1:3260\x1b[2J ifindex 4 local 127.0.0.1:1\x07 state up\x1b]0;x pdus_tx 1 pdus_rx 1 bytes_tx 48 bytes_rx 48\n\
             cid - portal 127.0.0.2:3260\x1b[1m ifindex 5 local - state missing\n",
        );
        list[0].device = Some("eth\x1b[31m0".into());
        list[1].device = Some("ev\u{202e}il".into());
        let t = running_with(list).render();
        assert!(
            !t.contains('\x1b') && !t.contains('\x07') && !t.contains('\u{202e}'),
            "{t:?}"
        );
        assert!(
            t.contains("127.0.0.1:3260\\x1b[2J  eth\\x1b[31m0  127.0.0.1:1\\x07  up\\x1b]0;x"),
            "{t}"
        );
        assert!(
            t.contains("through 127.0.0.2:3260\\x1b[1m on ev\\u{202e}il\n"),
            "{t}"
        );
    }
}
