//! `initiator-ctl discover` and `initiator-ctl probe`: argument structs (clap) and the logic
//! behind them. The binary only parses and calls [`run_discover`] / [`run_probe`].
//!
//! Secrets come from a file (`--chap-secret-file`) or an environment variable
//! (`--chap-secret-env`), never from the command line, and are never printed.

use super::error::NetError;
use super::portal::Portal;
use super::scsi;
use super::session::{ChapCredentials, LoginOptions, Session};
use super::{discover, Timeouts};
use crate::exit_code::Exit;
use crate::text::printable;
use iscsi_proto::chap::ChapAlgorithm;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// CHAP and connection options shared by `discover` and `probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Portal: HOST, HOST:PORT, [IPV6] or [IPV6]:PORT (default port 3260)
    #[arg(short = 'p', long = "portal", value_name = "HOST[:PORT]")]
    pub portal: String,
    /// Our iSCSI name (default: from initiatorname.iscsi in the config directory)
    #[arg(long, value_name = "IQN")]
    pub initiator_name: Option<String>,
    /// CHAP user name we answer the target's challenge with
    #[arg(long, value_name = "USER")]
    pub chap_user: Option<String>,
    /// File holding the CHAP secret (first line; trailing newline ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "chap_secret_env")]
    pub chap_secret_file: Option<PathBuf>,
    /// Environment variable holding the CHAP secret
    #[arg(long, value_name = "VAR")]
    pub chap_secret_env: Option<String>,
    /// Mutual CHAP: the name the target must answer with
    #[arg(long, value_name = "USER", requires = "chap_user")]
    pub mutual_user: Option<String>,
    /// Mutual CHAP: file holding the target's secret
    #[arg(long, value_name = "FILE", conflicts_with = "mutual_secret_env")]
    pub mutual_secret_file: Option<PathBuf>,
    /// Mutual CHAP: environment variable holding the target's secret
    #[arg(long, value_name = "VAR")]
    pub mutual_secret_env: Option<String>,
    /// CHAP algorithms to offer, by preference: md5, sha1, sha256, sha3-256
    #[arg(
        long,
        value_name = "ALG,...",
        value_delimiter = ',',
        default_value = "md5"
    )]
    pub chap_algorithm: Vec<String>,
    /// Our MaxRecvDataSegmentLength
    #[arg(long, value_name = "BYTES", default_value_t = 262_144,
          value_parser = clap::value_parser!(u32).range(512..=16_777_215))]
    pub max_recv_data_segment_length: u32,
    /// Connect and I/O timeout in seconds (1-3600)
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// `initiator-ctl discover`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    /// Portal, name, CHAP.
    pub common: CommonArgs,
}

/// `initiator-ctl probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    /// Portal, name, CHAP.
    pub common: CommonArgs,
    /// Target name
    #[arg(short = 'T', long = "target", value_name = "IQN")]
    pub target: String,
    /// LUN to inspect (default: the first disk REPORT LUNS lists)
    #[arg(long, value_name = "N")]
    pub lun: Option<u16>,
    /// DESTRUCTIVE: write a test pattern to the first 64 KiB of the LUN and read it back
    #[arg(long)]
    pub write: bool,
    /// Ask for HeaderDigest=CRC32C
    #[arg(long)]
    pub header_digest: bool,
    /// Ask for DataDigest=CRC32C
    #[arg(long)]
    pub data_digest: bool,
    /// Offer ImmediateData=No
    #[arg(long)]
    pub no_immediate_data: bool,
    /// Offer InitialR2T=Yes (no unsolicited Data-Out)
    #[arg(long)]
    pub initial_r2t: bool,
}

fn read_secret(
    file: Option<&Path>,
    env: Option<&str>,
    what: &str,
) -> Result<Option<Vec<u8>>, NetError> {
    if let Some(f) = file {
        let s = std::fs::read(f).map_err(|e| {
            NetError::Secret(format!(
                "cannot read the {what} secret file {}: {e}",
                f.display()
            ))
        })?;
        let s = zeroize::Zeroizing::new(s);
        let line = s.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(NetError::Secret(format!(
                "the {what} secret file {} is empty",
                f.display()
            )));
        }
        return Ok(Some(line.to_vec()));
    }
    if let Some(v) = env {
        let s = std::env::var_os(v).ok_or_else(|| {
            NetError::Secret(format!("the {what} secret variable {v} is not set"))
        })?;
        let b = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
        if b.is_empty() {
            return Err(NetError::Secret(format!(
                "the {what} secret variable {v} is empty"
            )));
        }
        return Ok(Some(b));
    }
    Ok(None)
}

fn alg(name: &str) -> Result<ChapAlgorithm, NetError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "md5" | "5" => ChapAlgorithm::Md5,
        "sha1" | "sha-1" | "6" => ChapAlgorithm::Sha1,
        "sha256" | "sha-256" | "7" => ChapAlgorithm::Sha256,
        "sha3-256" | "sha3" | "8" => ChapAlgorithm::Sha3_256,
        _ => return Err(NetError::Auth(format!("unknown CHAP algorithm {name:?}"))),
    })
}

fn initiator_name(c: &CommonArgs, config_dir: &Path) -> Result<String, NetError> {
    if let Some(n) = &c.initiator_name {
        crate::config::validate_iscsi_name(n)
            .map_err(|p| NetError::Input(format!("--initiator-name: {p}")))?;
        return Ok(n.clone());
    }
    // As start does: a missing initiatorname.iscsi is created once, then kept.
    let ensured = crate::config::ensure_initiator_name(config_dir)
        .map_err(|e| NetError::Input(format!("{e} (or pass --initiator-name)")))?;
    if let crate::config::EnsuredName::Created(n) = &ensured {
        eprintln!(
            "initiator-ctl: created {} ({n})",
            config_dir.join("initiatorname.iscsi").display()
        );
    }
    Ok(ensured.name().to_string())
}

/// Build login options from the common arguments.
pub fn login_options(c: &CommonArgs, config_dir: &Path) -> Result<LoginOptions, NetError> {
    let mut o = LoginOptions::new(initiator_name(c, config_dir)?);
    o.max_recv_data_segment_length = c.max_recv_data_segment_length;
    o.timeouts = Timeouts {
        connect: Duration::from_secs(c.timeout),
        io: Duration::from_secs(c.timeout.max(1) * 3),
    };
    o.chap_algorithms = c
        .chap_algorithm
        .iter()
        .map(|a| alg(a))
        .collect::<Result<_, _>>()?;
    let secret = read_secret(
        c.chap_secret_file.as_deref(),
        c.chap_secret_env.as_deref(),
        "CHAP",
    )?;
    match (&c.chap_user, secret) {
        (Some(u), Some(s)) => o.chap = Some(ChapCredentials::new(u.clone(), s)),
        (None, None) => {}
        (Some(_), None) => {
            return Err(NetError::Secret(
                "--chap-user needs --chap-secret-file or --chap-secret-env".into(),
            ))
        }
        (None, Some(_)) => return Err(NetError::Secret("a CHAP secret needs --chap-user".into())),
    }
    let msecret = read_secret(
        c.mutual_secret_file.as_deref(),
        c.mutual_secret_env.as_deref(),
        "mutual CHAP",
    )?;
    match (&c.mutual_user, msecret) {
        (Some(u), Some(s)) => o.mutual = Some(ChapCredentials::new(u.clone(), s)),
        (None, None) => {}
        (Some(_), None) => {
            return Err(NetError::Secret(
                "--mutual-user needs --mutual-secret-file or --mutual-secret-env".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(NetError::Secret(
                "a mutual CHAP secret needs --mutual-user".into(),
            ))
        }
    }
    Ok(o)
}

fn exit_for(e: &NetError) -> Exit {
    match e {
        NetError::Secret(_) | NetError::Portal { .. } | NetError::Input(_) => Exit::Usage,
        _ => Exit::Channel,
    }
}

fn fail(e: NetError, json: bool) -> Exit {
    eprintln!("initiator-ctl: {e}");
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": false, "error": e.to_string() })
        );
    }
    exit_for(&e)
}

/// `initiator-ctl discover`: print every target and portal found, as `CHANNEL` lines ready
/// to paste into the initiator file (the target names as comments above them).
pub fn run_discover(a: &DiscoverArgs, config_dir: &Path, json: bool) -> Exit {
    let r = (|| {
        let portal = Portal::parse(&a.common.portal)?;
        let o = login_options(&a.common, config_dir)?;
        discover(&portal, &o).map(|t| (portal, t))
    })();
    match r {
        Ok((portal, targets)) => {
            let lines = channel_lines(&targets, &portal, config_dir);
            if json {
                let channels: Vec<&str> = lines
                    .iter()
                    .filter(|l| l.starts_with("CHANNEL="))
                    .map(String::as_str)
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "ok": true, "targets": targets, "channel_lines": channels })
                );
            } else if targets.is_empty() {
                println!("# {portal} offers no targets");
            } else {
                for l in &lines {
                    println!("{l}");
                }
            }
            Exit::Ok
        }
        Err(e) => fail(e, json),
    }
}

/// The lines `discover` prints: per target a `# NAME` comment, then one `CHANNEL` line per
/// portal it offers (the discovery portal when it lists none), numbered from the lowest
/// channel ids the initiator file does not use. Each line is checked with the file's own
/// parser; a target or address it would refuse becomes a comment saying why.
pub fn channel_lines(
    targets: &[super::session::DiscoveredTarget],
    discovery: &Portal,
    config_dir: &Path,
) -> Vec<String> {
    use crate::config::initiator::parse_initiator;
    let ini = crate::config::ConfigPaths::new(config_dir).initiator;
    let used: std::collections::BTreeSet<u32> = std::fs::read(&ini)
        .ok()
        .map(|t| crate::config::initiator::parse_initiator_lenient(&ini, &t))
        .unwrap_or_default();
    let mut free = (0..=crate::config::MAX_CHANNEL_ID).filter(|id| !used.contains(id));
    let mut out = Vec::new();
    for t in targets {
        let name = crate::text::printable(&t.name);
        if crate::config::validate_iscsi_name(&t.name).is_err() {
            out.push(format!("# skipped \"{name}\": not a valid iSCSI name"));
            continue;
        }
        let Some(id) = free.next() else { break };
        out.push(format!("# {name}"));
        let mut portals: Vec<Portal> = t
            .addresses
            .iter()
            .filter_map(|a| Portal::parse_target_address(a).ok().map(|(p, _)| p))
            .collect();
        if portals.is_empty() {
            portals.push(discovery.clone());
        }
        for p in portals {
            let line = format!("CHANNEL=\"{id} 1 {} {} 0 {}\"", p.host, p.port, t.name);
            match parse_initiator(Path::new("initiator"), &line) {
                Ok(_) => out.push(line),
                Err(e) => out.push(format!(
                    "# not usable as is: {}",
                    crate::text::printable(&e.to_string().replacen("initiator:1: ", "", 1))
                )),
            }
        }
    }
    out
}

/// What `probe` found, for `--json` and for printing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeReport {
    /// Target name.
    pub target: String,
    /// The connection's peer.
    pub portal: String,
    /// Negotiated parameters.
    pub negotiated: super::session::Negotiated,
    /// LUNs from REPORT LUNS.
    pub luns: Vec<u64>,
    /// The LUN inspected.
    pub lun: u16,
    /// INQUIRY of that LUN.
    pub inquiry: scsi::Inquiry,
    /// READ CAPACITY of that LUN (if it is a block device).
    pub capacity: Option<scsi::Capacity>,
    /// Bytes written and verified with `--write`.
    pub verified_bytes: Option<usize>,
}

/// Log in, report, optionally write and verify, log out.
pub fn probe(a: &ProbeArgs, config_dir: &Path) -> Result<ProbeReport, NetError> {
    crate::config::validate_iscsi_name(&a.target)
        .map_err(|p| NetError::Input(format!("-T/--target: {p}")))?;
    let portal = Portal::parse(&a.common.portal)?;
    let mut o = login_options(&a.common, config_dir)?;
    o.target_name = Some(a.target.clone());
    o.header_digest = a.header_digest;
    o.data_digest = a.data_digest;
    o.immediate_data = !a.no_immediate_data;
    o.initial_r2t = a.initial_r2t;
    let mut s = Session::login(&portal, &o)?;
    let luns = scsi::report_luns(&mut s)?;
    let lun = match a.lun {
        Some(l) => l,
        None => {
            // The first LUN that is a disk; else the first LUN.
            let mut pick = None;
            for l in luns
                .iter()
                .filter_map(|l| u16::try_from(*l).ok())
                .filter(|l| *l < 256)
            {
                if scsi::inquiry(&mut s, l)?.peripheral_type == 0 {
                    pick = Some(l);
                    break;
                }
            }
            pick.or_else(|| luns.first().and_then(|l| u16::try_from(*l).ok()))
                .unwrap_or(0)
        }
    };
    let inquiry = scsi::inquiry(&mut s, lun)?;
    let capacity = if inquiry.peripheral_type == 0 {
        Some(scsi::read_capacity(&mut s, lun)?)
    } else {
        None
    };
    let mut verified_bytes = None;
    if a.write {
        let cap = capacity.ok_or_else(|| {
            NetError::Input(format!("LUN {lun} is not a disk: refusing to write"))
        })?;
        let len = (64 * 1024u64).min(cap.bytes()) as usize;
        let len = len - len % cap.block_size.max(1) as usize;
        if len == 0 {
            return Err(NetError::Input(format!(
                "LUN {lun} is too small to write a pattern"
            )));
        }
        let pattern: Vec<u8> = (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8)
            .collect();
        scsi::write(&mut s, lun, 0, cap.block_size, &pattern)?;
        let mut back = vec![0u8; len];
        scsi::read(&mut s, lun, 0, cap.block_size, &mut back)?;
        if back != pattern {
            let at = back
                .iter()
                .zip(&pattern)
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            return Err(NetError::Verify(format!(
                "read back differs from the pattern written, first at byte {at}"
            )));
        }
        verified_bytes = Some(len);
    }
    let report = ProbeReport {
        target: a.target.clone(),
        portal: s.connection().peer().to_string(),
        negotiated: s.negotiated().clone(),
        luns,
        lun,
        inquiry,
        capacity,
        verified_bytes,
    };
    s.logout()?;
    Ok(report)
}

/// `initiator-ctl probe`.
pub fn run_probe(a: &ProbeArgs, config_dir: &Path, json: bool) -> Exit {
    match probe(a, config_dir) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::json!({ "ok": true, "probe": r }));
            } else {
                print!("{}", r.render());
            }
            Exit::Ok
        }
        Err(e) => fail(e, json),
    }
}

impl ProbeReport {
    /// Human-readable text.
    pub fn render(&self) -> String {
        let n = &self.negotiated;
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let dg = |b: bool| if b { "CRC32C" } else { "None" };
        let mut s = format!(
            "target {} at {} (TSIH {})\n",
            self.target, self.portal, n.tsih
        );
        if let Some(alias) = &n.target_alias {
            s += &format!("alias {}\n", printable(alias));
        }
        s += "negotiated:\n";
        s += &format!(
            "    HeaderDigest={} DataDigest={}\n",
            dg(n.header_digest),
            dg(n.data_digest)
        );
        s += &format!(
            "    MaxRecvDataSegmentLength={} (target's: {})\n",
            n.max_recv_data_segment_length, n.max_xmit_data_segment_length
        );
        s += &format!(
            "    InitialR2T={} ImmediateData={} FirstBurstLength={} MaxBurstLength={}\n",
            yn(n.initial_r2t),
            yn(n.immediate_data),
            n.first_burst_length,
            n.max_burst_length
        );
        s += &format!(
            "    MaxOutstandingR2T={} DataPDUInOrder={} DataSequenceInOrder={} ErrorRecoveryLevel={}\n",
            n.max_outstanding_r2t,
            yn(n.data_pdu_in_order),
            yn(n.data_sequence_in_order),
            n.error_recovery_level
        );
        s += &format!("REPORT LUNS: {:?}\n", self.luns);
        s += &format!(
            "LUN {}: {} {} {} (type {:#04x})\n",
            self.lun,
            printable(&self.inquiry.vendor),
            printable(&self.inquiry.product),
            printable(&self.inquiry.revision),
            self.inquiry.peripheral_type
        );
        if let Some(c) = &self.capacity {
            s += &format!(
                "    {} blocks of {} bytes ({} bytes)\n",
                c.blocks,
                c.block_size,
                c.bytes()
            );
        }
        if let Some(v) = self.verified_bytes {
            s += &format!("    wrote and verified {v} bytes at LBA 0\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_report_escapes_inquiry_and_alias() {
        let negotiated = super::super::session::Negotiated {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: 8192,
            max_xmit_data_segment_length: 8192,
            initial_r2t: true,
            immediate_data: true,
            first_burst_length: 65536,
            max_burst_length: 262144,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            target_portal_group_tag: Some(1),
            target_alias: Some("alias\x1b[2J".into()),
            tsih: 1,
            target_keys: vec![],
        };
        let r = ProbeReport {
            target: "iqn.2003-01.org.example:t".into(),
            portal: "127.0.0.1:3260".into(),
            negotiated,
            luns: vec![0],
            lun: 0,
            inquiry: scsi::Inquiry {
                peripheral_type: 0,
                vendor: "V\x1b]0;x\x07".into(),
                product: "P\n".into(),
                revision: "1".into(),
            },
            capacity: None,
            verified_bytes: None,
        };
        let t = r.render();
        assert!(!t.contains('\x1b') && !t.contains('\x07'), "{t:?}");
        assert!(t.contains("alias alias\\x1b[2J\n"), "{t}");
        assert!(
            t.contains("LUN 0: V\\x1b]0;x\\x07 P\\x0a 1 (type 0x00)"),
            "{t}"
        );
    }
}
