//! The channel operations of initiator-ctl: start, stop, pause, status, map, unmap, remap,
//! each on one channel or on all of them, as the howto's init script and map scripts do.
//!
//! Every operation first loads and validates the whole configuration: a bad file stops it
//! before anything is started or changed. With several channels, a failure on one is reported
//! (one line on stderr) and the others still run; the exit code is the first failure's.

use std::collections::BTreeSet;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::devices::{self, Lun};
use super::kernel::{self, ChannelDir, Kernel, State};
use super::mount::{self, MountEntry, UnmountError};
use super::netdev::NetDevs;
use super::status::{ChannelStatus, LunStatus, MapStatus};
use super::CtlError;
use crate::config::{self, Address, Channel, Config, ConfigPaths, DeviceMap, Portal};
use crate::exit_code::Exit;
use crate::text::printable;

/// Stands in for a missing initiatorname.iscsi while validating the other files.
pub(crate) const PLACEHOLDER_NAME: &str = "iqn.2005-03.org.core-iscsi:placeholder";

/// The context of one initiator-ctl run.
#[derive(Debug, Clone)]
pub struct Ctl {
    /// The configuration files.
    pub paths: ConfigPaths,
    /// The module's configfs tree.
    pub kernel: Kernel,
    /// Mount points are `<mount_root>/<target name>/<name>` (`/` by default).
    pub mount_root: PathBuf,
    /// How long to wait for disks and partitions to appear.
    pub device_timeout: Duration,
    /// The network interfaces, to turn the names of the configuration into indexes.
    pub net: NetDevs,
    /// Print progress on standard output (off with `--json`).
    pub verbose: bool,
}

/// What happened to one channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelResult {
    /// The channel.
    pub channel: u32,
    /// Whether its operation succeeded.
    pub ok: bool,
    /// The error, one line.
    pub error: Option<String>,
    /// What was done, one line each.
    pub actions: Vec<String>,
}

/// What a command did, for `--json` and the exit code.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Every channel succeeded.
    pub ok: bool,
    /// Per channel.
    pub channels: Vec<ChannelResult>,
    /// The status of each channel (for `status` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<ChannelStatus>,
    /// Whether the module is loaded (for `status` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_loaded: Option<bool>,
    /// The exit code.
    #[serde(skip)]
    pub exit: Exit,
}

/// The progress log of one channel's operation.
struct Log<'a> {
    ctl: &'a Ctl,
    channel: u32,
    lines: Vec<String>,
}

impl Log<'_> {
    fn say(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.ctl.verbose {
            println!("channel {}: {msg}", self.channel);
        }
        self.lines.push(msg);
    }
}

/// Which channels a command acts on.
enum Scope {
    /// Only those in the configuration (start, pause, map, remap).
    Configured,
    /// Those in the configuration and those the module has (stop, unmap, status).
    ConfiguredOrRunning,
}

/// One entry of the module's `portals` attribute: `ADDR:PORT[*N][@IFINDEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortalEntry {
    /// `ADDR:PORT` or `[V6%SCOPE]:PORT`, numeric.
    endpoint: String,
    /// Connections the session opens through it.
    connections: u32,
    /// The interface those connections are bound to.
    ifindex: Option<u32>,
}

impl fmt::Display for PortalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoint)?;
        // Left out, the module's defaults: one connection, no binding.
        if self.connections > 1 {
            write!(f, "*{}", self.connections)?;
        }
        if let Some(i) = self.ifindex {
            write!(f, "@{i}")?;
        }
        Ok(())
    }
}

fn require_root() -> Result<(), CtlError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(CtlError::Permission(
            "this command needs root (it reads the CHAP secrets, loads the module and mounts)"
                .into(),
        ))
    }
}

impl Ctl {
    /// A context with the defaults: configfs at its usual place, mounts under `/`, 30 s for
    /// devices to appear.
    pub fn new(paths: ConfigPaths) -> Self {
        Ctl {
            paths,
            kernel: Kernel::default(),
            mount_root: PathBuf::from("/"),
            device_timeout: Duration::from_secs(30),
            net: NetDevs::default(),
            verbose: true,
        }
    }

    /// Loads the configuration; a missing initiatorname.iscsi is created only when `create_name`
    /// (by `start`), and only after everything else has been found valid.
    pub fn load(&self, create_name: bool) -> Result<Config, CtlError> {
        self.load_with(create_name, true)
    }

    /// [`Ctl::load`]; without `read_auth`, the secrets file is left unread (`status`).
    fn load_with(&self, create_name: bool, read_auth: bool) -> Result<Config, CtlError> {
        let name_missing = std::fs::symlink_metadata(&self.paths.initiator_name).is_err();
        let loaded = if name_missing {
            let l = config::load_with(&self.paths, Some(PLACEHOLDER_NAME), read_auth)?;
            if !create_name {
                l
            } else {
                let n = config::ensure_initiator_name(&self.paths.dir)?;
                if self.verbose {
                    println!(
                        "created {} ({})",
                        self.paths.initiator_name.display(),
                        n.name()
                    );
                }
                config::load_with(&self.paths, None, read_auth)?
            }
        } else {
            config::load_with(&self.paths, None, read_auth)?
        };
        for w in &loaded.warnings {
            eprintln!("{w}");
        }
        Ok(loaded.config)
    }

    fn select(
        &self,
        cfg: &Config,
        channel: Option<u32>,
        scope: Scope,
    ) -> Result<Vec<u32>, CtlError> {
        let running = self.kernel.channels();
        match channel {
            Some(id) => {
                let known = cfg.channels.contains_key(&id)
                    || (matches!(scope, Scope::ConfiguredOrRunning) && running.contains(&id));
                if known {
                    Ok(vec![id])
                } else {
                    Err(CtlError::channel(
                        id,
                        format!("not defined in {}", self.paths.initiator.display()),
                    ))
                }
            }
            None => {
                let mut ids: BTreeSet<u32> = cfg.channels.keys().copied().collect();
                if matches!(scope, Scope::ConfiguredOrRunning) {
                    ids.extend(running);
                }
                Ok(ids.into_iter().collect())
            }
        }
    }

    fn each(
        &self,
        ids: &[u32],
        mut op: impl FnMut(&mut Log<'_>, u32) -> Result<(), CtlError>,
    ) -> Outcome {
        let mut out = Outcome {
            ok: true,
            channels: Vec::new(),
            status: Vec::new(),
            module_loaded: None,
            exit: Exit::Ok,
        };
        for &id in ids {
            let mut log = Log {
                ctl: self,
                channel: id,
                lines: Vec::new(),
            };
            let r = op(&mut log, id);
            let error = match r {
                Ok(()) => None,
                Err(e) => {
                    e.report();
                    if out.ok {
                        out.exit = e.exit();
                    }
                    out.ok = false;
                    Some(e.to_string())
                }
            };
            out.channels.push(ChannelResult {
                channel: id,
                ok: error.is_none(),
                error,
                actions: log.lines,
            });
        }
        out
    }

    /// `start [CHANNEL]`: load the module if needed, configure and log in each channel (or
    /// resume a paused one), then mount its DEVICE entries.
    pub fn start(&self, channel: Option<u32>) -> Result<Outcome, CtlError> {
        require_root()?;
        let cfg = self.load(false)?;
        let ids = self.select(&cfg, channel, Scope::Configured)?;
        if ids.is_empty() {
            if self.verbose {
                println!(
                    "no channel in {}: nothing to start",
                    self.paths.initiator.display()
                );
            }
            return Ok(self.each(&[], |_, _| Ok(())));
        }
        // A network device that is not there fails the start before anything is created.
        self.net.check(
            &self.paths.initiator,
            ids.iter().filter_map(|id| cfg.channels.get(id)),
        )?;
        let cfg = self.load(true)?;
        self.kernel.ensure_loaded()?;
        Ok(self.each(&ids, |log, id| self.start_one(log, &cfg, id)))
    }

    fn start_one(&self, log: &mut Log<'_>, cfg: &Config, id: u32) -> Result<(), CtlError> {
        let ch = cfg
            .channels
            .get(&id)
            .ok_or_else(|| CtlError::channel(id, "not in the configuration"))?;
        let dir = self.kernel.channel(id);
        match dir.state() {
            State::Running | State::Recovering => {
                log.say("already running");
                return self.map_one(log, cfg, id);
            }
            State::Paused => {
                dir.control("start")
                    .map_err(|e| CtlError::channel(id, kernel::start_failure(&e, &dir.state())))?;
                log.say("resumed (logged in again, held I/O released)");
                return self.map_one(log, cfg, id);
            }
            State::Starting | State::Stopping => {
                return Err(CtlError::busy(
                    id,
                    format!("is {}: try again when it has finished", dir.state().word()),
                ))
            }
            State::Failed(_) | State::Stopped => dir.remove()?,
            State::Absent => {}
        }
        let target = match &ch.target_name {
            Some(t) => t.clone(),
            None => self.discover_target(log, cfg, ch)?,
        };
        self.check_mount_points(cfg, id, &target)?;
        dir.create()?;
        let r = self.configure(log, cfg, ch, &dir, &target);
        if let Err(e) = r {
            let _ = dir.remove();
            return Err(e);
        }
        if let Err(e) = dir.control("start") {
            // The directory stays, in state `failed: <reason>`, for `status` to show.
            return Err(CtlError::channel(
                id,
                kernel::start_failure(&e, &dir.state()),
            ));
        }
        let host = dir.host();
        let luns: Vec<String> = host
            .map(devices::luns)
            .unwrap_or_default()
            .iter()
            .map(|l| l.lun.to_string())
            .collect();
        log.say(format!(
            "logged in to {target} via {} (SCSI host{}, LUNs: {})",
            dir.read("portals"),
            host.map(|h| h.to_string()).unwrap_or_else(|| "?".into()),
            if luns.is_empty() {
                "none".to_string()
            } else {
                luns.join(", ")
            }
        ));
        self.map_one(log, cfg, id)
    }

    /// The portals of a channel as the module takes them ([`PortalEntry`]): host names
    /// resolved, interface names turned into indexes.
    fn portal_list(&self, ch: &Channel) -> Result<Vec<PortalEntry>, CtlError> {
        let mut out: Vec<PortalEntry> = Vec::new();
        for p in &ch.portals {
            let indexes = self.net.resolve(&self.paths.initiator, p)?;
            let endpoint = match &p.address {
                Address::Ip(_) => {
                    p.endpoint_with_scope(indexes.scope.map(|i| i.to_string()).as_deref())
                }
                Address::Hostname(h) => self.resolve_host(ch, p, h)?,
            };
            let entry = PortalEntry {
                endpoint,
                connections: p.connections,
                ifindex: indexes.device,
            };
            // Two host names may name one address: one entry, with the connections of both.
            match out
                .iter_mut()
                .find(|e| e.endpoint == entry.endpoint && e.ifindex == entry.ifindex)
            {
                Some(e) => e.connections += entry.connections,
                None => out.push(entry),
            }
        }
        Ok(out)
    }

    /// The address of host name `h` of portal `p`, with its port: `ADDR:PORT`, `[V6]:PORT`.
    fn resolve_host(&self, ch: &Channel, p: &Portal, h: &str) -> Result<String, CtlError> {
        (h, p.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.to_string())
            .ok_or_else(|| {
                CtlError::channel(
                    ch.id,
                    format!(
                        "{} line {}: cannot resolve host name {h}",
                        self.paths.initiator.display(),
                        p.line
                    ),
                )
            })
    }

    /// The text written to the module's `portals` attribute.
    fn portals_text(&self, ch: &Channel) -> Result<String, CtlError> {
        let entries: Vec<String> = self
            .portal_list(ch)?
            .iter()
            .map(|e| e.to_string())
            .collect();
        Ok(entries.join(" "))
    }

    /// Writes every setting of `ch` to its channel directory.
    fn configure(
        &self,
        log: &mut Log<'_>,
        cfg: &Config,
        ch: &Channel,
        dir: &ChannelDir,
        target: &str,
    ) -> Result<(), CtlError> {
        dir.write("target_name", target)?;
        dir.write("initiator_name", &cfg.initiator_name)?;
        dir.write("portals", &self.portals_text(ch)?)?;
        // Exactly the keys iscsi_proto::settings accepts (no AuthMethod: CHAP is the
        // credentials below); loading the configuration checked the module takes them.
        dir.write("params", &ch.keys.module_params())?;
        let a = &ch.attrs;
        dir.write("queue_depth", &a.queue_depth.to_string())?;
        dir.write("login_timeout", &a.login_timeout.to_string())?;
        // The howto's nopout_timeout is the ping period, its nopout_response_timeout the time
        // to wait for the answer: the module's nopout_interval and nopout_timeout.
        dir.write("nopout_interval", &a.nopout_timeout.to_string())?;
        dir.write("nopout_timeout", &a.nopout_response_timeout.to_string())?;
        dir.write("replacement_timeout", &a.replacement_timeout.to_string())?;
        dir.write("tmf_timeout", &a.tmf_timeout.to_string())?;
        let algs: Vec<&str> = a.chap_algorithms.iter().map(|x| x.name()).collect();
        if !algs.is_empty() {
            dir.write("chap_algorithms", &algs.join(","))?;
        }
        if let Some(auth) = &ch.auth {
            dir.write("chap_user", &auth.initiator.user)?;
            dir.write_secret("chap_secret", &auth.initiator.secret)?;
            if let Some(m) = &auth.mutual {
                dir.write("chap_mutual_user", &m.user)?;
                dir.write_secret("chap_mutual_secret", &m.secret)?;
            }
        }
        log.say(format!(
            "configured: target {target}, portals {}, {}",
            dir.read("portals"),
            match &ch.auth {
                Some(a) if a.mutual.is_some() => "mutual CHAP",
                Some(_) => "CHAP",
                None => "no authentication",
            }
        ));
        Ok(())
    }

    /// SendTargets at the channel's first portal: the one target it offers.
    fn discover_target(
        &self,
        log: &mut Log<'_>,
        cfg: &Config,
        ch: &Channel,
    ) -> Result<String, CtlError> {
        use crate::net;
        // Discovery is one connection from userspace, through the route (no binding).
        let portal_text = self
            .portal_list(ch)?
            .into_iter()
            .next()
            .ok_or_else(|| CtlError::channel(ch.id, "has no portal"))?
            .endpoint;
        let portal = net::Portal::parse(&portal_text)
            .map_err(|e| CtlError::channel(ch.id, format!("portal {portal_text}: {e}")))?;
        let mut o = net::LoginOptions::new(cfg.initiator_name.clone());
        if let Some(a) = &ch.auth {
            o.chap = Some(net::ChapCredentials::new(
                a.initiator.user.clone(),
                a.initiator.secret.expose().to_vec(),
            ));
            if let Some(m) = &a.mutual {
                o.mutual = Some(net::ChapCredentials::new(
                    m.user.clone(),
                    m.secret.expose().to_vec(),
                ));
            }
            o.chap_algorithms = ch
                .attrs
                .chap_algorithms
                .iter()
                .filter_map(|x| iscsi_proto::chap::ChapAlgorithm::from_code(u64::from(x.chap_a())))
                .collect();
        }
        let secs = u64::from(ch.attrs.login_timeout.max(1));
        o.timeouts = net::Timeouts {
            connect: Duration::from_secs(secs),
            io: Duration::from_secs(secs),
        };
        let targets = net::discover(&portal, &o).map_err(|e| {
            CtlError::channel(
                ch.id,
                format!("no target name given and discovery at {portal_text} failed: {e}"),
            )
        })?;
        let line = ch.line;
        match targets.as_slice() {
            [one] => {
                // The name becomes a mount point: it must be an iSCSI name, not a path.
                config::validate_iscsi_name(&one.name).map_err(|_| {
                    CtlError::channel(
                        ch.id,
                        format!(
                            "{portal_text} offers the target \"{}\", which is not a valid iSCSI name",
                            printable(&one.name)
                        ),
                    )
                })?;
                log.say(format!("discovered target {} at {portal_text}", one.name));
                Ok(one.name.clone())
            }
            [] => Err(CtlError::channel(
                ch.id,
                format!(
                    "no target name given ({} line {line}, field 9) and {portal_text} offers no target",
                    self.paths.initiator.display()
                ),
            )),
            many => Err(CtlError::channel(
                ch.id,
                format!(
                    "no target name given ({} line {line}, field 9) and {portal_text} offers {} targets: {}; add the one to use as field 9",
                    self.paths.initiator.display(),
                    many.len(),
                    many.iter().map(|t| printable(&t.name)).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// Refuses a discovered `target` for channel `id` when one of its DEVICE lines would
    /// mount where a line of another channel to the same target does (the configuration
    /// could not check it: the target name was not written down).
    fn check_mount_points(&self, cfg: &Config, id: u32, target: &str) -> Result<(), CtlError> {
        for m in cfg.maps_for(id) {
            let clash = cfg.maps.iter().find(|o| {
                o.channel != id
                    && o.name == m.name
                    && self
                        .target_of(cfg, o.channel)
                        .is_some_and(|t| t.eq_ignore_ascii_case(target))
            });
            if let Some(first) = clash {
                let e = config::mount_point_collision(&self.paths.device_maps, m, first, target);
                return Err(CtlError::channel(
                    id,
                    format!("discovered target {target}, but {e}"),
                ));
            }
        }
        Ok(())
    }

    /// The target name of a channel: the module's (it may have been discovered), else the
    /// configuration's.
    fn target_of(&self, cfg: &Config, id: u32) -> Option<String> {
        let dir = self.kernel.channel(id);
        let t = dir.read("target_name");
        if dir.exists() && !t.is_empty() {
            return Some(t);
        }
        cfg.channels.get(&id).and_then(|c| c.target_name.clone())
    }

    fn mount_point(&self, target: &str, name: &str) -> PathBuf {
        self.mount_root.join(target).join(name)
    }

    fn map_line(&self, m: &DeviceMap) -> String {
        format!(
            "{} line {} (DEVICE \"{} {} {} {}\")",
            self.paths.device_maps.display(),
            m.line,
            m.channel,
            m.lun,
            m.partition,
            m.name
        )
    }

    /// `map [CHANNEL]`: mount the DEVICE entries of running channels.
    pub fn map(&self, channel: Option<u32>) -> Result<Outcome, CtlError> {
        require_root()?;
        let cfg = self.load(false)?;
        let ids = self.select(&cfg, channel, Scope::Configured)?;
        self.kernel.require_loaded()?;
        Ok(self.each(&ids, |log, id| self.map_one(log, &cfg, id)))
    }

    fn map_one(&self, log: &mut Log<'_>, cfg: &Config, id: u32) -> Result<(), CtlError> {
        let maps: Vec<&DeviceMap> = cfg.maps_for(id).collect();
        if maps.is_empty() {
            return Ok(());
        }
        let dir = self.kernel.channel(id);
        let state = dir.state();
        if !matches!(state, State::Running | State::Recovering | State::Paused) {
            return Err(CtlError::channel(
                id,
                format!("is {}: start it first", state.word()),
            ));
        }
        let host = dir
            .host()
            .ok_or_else(|| CtlError::channel(id, "has no SCSI host"))?;
        let target = dir.read("target_name");
        let mut first_err = None;
        let mut failed = 0;
        for m in &maps {
            match self.map_entry(host, &target, m) {
                Ok(msg) => log.say(msg),
                Err(e) => {
                    let e = CtlError::channel(id, format!("{}: {e}", self.map_line(m)));
                    failed += 1;
                    if first_err.is_none() {
                        first_err = Some(e);
                    } else {
                        eprintln!("initiator-ctl: {e}");
                    }
                }
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) if failed == 1 => Err(e),
            Some(e) => {
                eprintln!("initiator-ctl: {e}");
                Err(CtlError::channel(
                    id,
                    format!("{failed} of {} DEVICE entries not mounted", maps.len()),
                ))
            }
        }
    }

    fn map_entry(&self, host: u32, target: &str, m: &DeviceMap) -> Result<String, String> {
        let present = devices::luns(host);
        let Some(lun) = present.iter().find(|l| l.lun == m.lun) else {
            let list: Vec<String> = present.iter().map(|l| l.lun.to_string()).collect();
            return Err(format!(
                "the target has no LUN {} (LUNs: {})",
                m.lun,
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            ));
        };
        let disk = match &lun.disk {
            Some(d) => d.clone(),
            None => devices::wait(self.device_timeout, || {
                devices::luns(host)
                    .into_iter()
                    .find(|l| l.lun == m.lun)?
                    .disk
            })
            .ok_or_else(|| {
                format!(
                    "LUN {} ({}) has no disk device after {} s (not a disk?)",
                    m.lun,
                    lun.hctl,
                    self.device_timeout.as_secs()
                )
            })?,
        };
        let name = devices::partition_name(&disk, m.partition);
        let node = devices::wait_for_node(&name, self.device_timeout).ok_or_else(|| {
            if m.partition == 0 {
                format!(
                    "/dev/{name} did not appear within {} s",
                    self.device_timeout.as_secs()
                )
            } else {
                format!(
                    "/dev/{disk} has no partition {} (partitions: {})",
                    m.partition,
                    devices::disk_and_partitions(&disk)
                        .iter()
                        .skip(1)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })?;
        let mp = self.mount_point(target, &m.name);
        let numbers = devices::dev_numbers(&name);
        if let Some(e) = mount::mounts().into_iter().find(|e| e.target == mp) {
            return if Some((e.major, e.minor)) == numbers {
                Ok(format!(
                    "{} already mounted at {}",
                    node.display(),
                    mp.display()
                ))
            } else {
                Err(format!(
                    "{} is already a mount point (of {})",
                    mp.display(),
                    e.source
                ))
            };
        }
        let ro_flag = std::fs::read_to_string(format!("/sys/class/block/{name}/ro"))
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        let ro = ro_flag || lun.read_only;
        let fstype = mount::fs_type(&node)?;
        let ended_ro = mount::mount_device(&node, &mp, &fstype, ro)?;
        Ok(format!(
            "mounted {} ({fstype}{}) at {}",
            node.display(),
            if ended_ro { ", read-only" } else { "" },
            mp.display()
        ))
    }

    /// The block devices of a channel: `(name, major, minor)` of each disk and partition.
    fn channel_devices(&self, id: u32) -> Vec<(String, u32, u32)> {
        let Some(host) = self.kernel.channel(id).host() else {
            return Vec::new();
        };
        devices::luns(host)
            .iter()
            .filter_map(|l| l.disk.clone())
            .flat_map(|d| devices::disk_and_partitions(&d))
            .filter_map(|n| devices::dev_numbers(&n).map(|(a, b)| (n, a, b)))
            .collect()
    }

    /// The mounts of a channel's devices, deepest mount point first.
    fn channel_mounts(&self, id: u32) -> Vec<MountEntry> {
        let devs = self.channel_devices(id);
        let mut v: Vec<MountEntry> = mount::mounts()
            .into_iter()
            .filter(|e| devs.iter().any(|(_, a, b)| (e.major, e.minor) == (*a, *b)))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.target.components().count()));
        v
    }

    /// `unmap [CHANNEL] [--force]`.
    pub fn unmap(&self, channel: Option<u32>, force: bool) -> Result<Outcome, CtlError> {
        require_root()?;
        let cfg = self.load(false)?;
        let ids = self.select(&cfg, channel, Scope::ConfiguredOrRunning)?;
        Ok(self.each(&ids, |log, id| self.unmap_one(log, &cfg, id, force)))
    }

    /// Unmounts every mount of the channel's disks (mapped or not); busy ones fail, naming
    /// their users, unless `force`.
    fn unmap_one(
        &self,
        log: &mut Log<'_>,
        cfg: &Config,
        id: u32,
        force: bool,
    ) -> Result<(), CtlError> {
        let target = self.target_of(cfg, id);
        let mut busy: Vec<String> = Vec::new();
        let mounts = self.channel_mounts(id);
        if !force {
            // Fail before unmounting anything: a refused stop leaves every mount in place.
            for e in &mounts {
                let users = mount::users(e);
                if !users.is_empty() {
                    busy.push(format!(
                        "{} ({}) is busy: used by {}",
                        e.target.display(),
                        e.source,
                        users
                            .iter()
                            .map(|u| u.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if !busy.is_empty() {
                return Err(CtlError::busy(
                    id,
                    format!(
                        "{}; stop those processes or force it with: iscsi-unmap-channel {id} 1",
                        busy.join("; ")
                    ),
                ));
            }
        }
        for e in mounts {
            match mount::unmount(&e, force) {
                Ok(()) => {
                    log.say(format!("unmounted {} ({})", e.target.display(), e.source));
                    if let Some(t) = &target {
                        let top = self.mount_root.join(t);
                        if e.target.starts_with(&top) {
                            mount::remove_empty_dirs(&e.target, &self.mount_root);
                        }
                    }
                }
                Err(UnmountError::Busy(users)) => {
                    let who = if users.is_empty() {
                        "no process found holding it (another mount or a kernel user?)".to_string()
                    } else {
                        format!(
                            "used by {}",
                            users
                                .iter()
                                .map(|u| u.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    busy.push(format!(
                        "{} ({}) is busy: {who}",
                        e.target.display(),
                        e.source
                    ));
                }
                Err(UnmountError::Other(why)) => return Err(CtlError::channel(id, why)),
            }
        }
        if busy.is_empty() {
            Ok(())
        } else {
            Err(CtlError::busy(
                id,
                format!(
                    "{}; stop those processes or force it with: iscsi-unmap-channel {id} 1",
                    busy.join("; ")
                ),
            ))
        }
    }

    /// `remap [CHANNEL]`: unmap, then map.
    pub fn remap(&self, channel: Option<u32>) -> Result<Outcome, CtlError> {
        require_root()?;
        let cfg = self.load(false)?;
        let ids = self.select(&cfg, channel, Scope::Configured)?;
        self.kernel.require_loaded()?;
        Ok(self.each(&ids, |log, id| {
            self.unmap_one(log, &cfg, id, false)?;
            self.map_one(log, &cfg, id)
        }))
    }

    /// `pause [CHANNEL]`: log out, keeping disks and mounts; their I/O waits for `start`.
    pub fn pause(&self, channel: Option<u32>) -> Result<Outcome, CtlError> {
        require_root()?;
        let cfg = self.load(false)?;
        let ids = self.select(&cfg, channel, Scope::Configured)?;
        self.kernel.require_loaded()?;
        Ok(self.each(&ids, |log, id| {
            let dir = self.kernel.channel(id);
            match dir.state() {
                State::Paused => {
                    log.say("already paused");
                    Ok(())
                }
                State::Running => {
                    dir.control("pause").map_err(|e| {
                        CtlError::channel(id, format!("pause failed: {}", kernel::errno_text(&e)))
                    })?;
                    log.say(
                        "paused (logged out; disks and mounts stay, their I/O waits for start)",
                    );
                    Ok(())
                }
                s => Err(CtlError::channel(
                    id,
                    format!("is {}: only a running channel can be paused", s.word()),
                )),
            }
        }))
    }

    /// `stop [CHANNEL]`: unmap (failing on a busy mount), remove the disks, log out, remove
    /// the channel directory.
    pub fn stop(&self, channel: Option<u32>) -> Result<Outcome, CtlError> {
        require_root()?;
        let cfg = self.load(false)?;
        let ids = self.select(&cfg, channel, Scope::ConfiguredOrRunning)?;
        Ok(self.each(&ids, |log, id| self.stop_one(log, &cfg, id)))
    }

    fn stop_one(&self, log: &mut Log<'_>, cfg: &Config, id: u32) -> Result<(), CtlError> {
        let dir = self.kernel.channel(id);
        let holders_free = || -> Result<(), CtlError> {
            for (name, _, _) in self.channel_devices(id) {
                let h = devices::holders(&name);
                if !h.is_empty() {
                    return Err(CtlError::busy(
                        id,
                        format!(
                            "/dev/{name} is held by {} (device-mapper, md...): remove that first",
                            h.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        let was_paused = dir.state() == State::Paused;
        if dir.state() != State::Absent {
            // Checked without I/O, before anything is resumed or unmounted.
            holders_free()?;
        }
        match dir.state() {
            State::Absent => {
                log.say("not running");
                return Ok(());
            }
            State::Paused => {
                // Unmounting flushes: the held I/O must be able to complete first.
                dir.control("start").map_err(|e| {
                    CtlError::channel(
                        id,
                        format!(
                            "is paused and resuming it (to flush its file systems before stop) failed: {}",
                            kernel::start_failure(&e, &dir.state())
                        ),
                    )
                })?;
                log.say("resumed to flush its file systems");
            }
            State::Starting | State::Stopping => {
                return Err(CtlError::busy(
                    id,
                    format!("is {}: try again when it has finished", dir.state().word()),
                ));
            }
            _ => {}
        }
        if let Err(e) = self.unmap_one(log, cfg, id, false).and_then(|()| holders_free()) {
            // A busy mount (or a holder that came meanwhile): the channel goes back to how
            // the command found it.
            if was_paused {
                match dir.control("pause") {
                    Ok(()) => log.say("paused again"),
                    Err(p) => log.say(format!("left running: pausing it again failed: {p}")),
                }
            }
            return Err(e);
        }
        let disks: Vec<String> = self
            .channel_devices(id)
            .into_iter()
            .map(|(n, _, _)| n)
            .filter(|n| !n.ends_with(|c: char| c.is_ascii_digit()))
            .collect();
        // rmdir stops the channel: logout, SCSI host and disks removed, connections closed.
        dir.remove()?;
        if disks.is_empty() {
            log.say("stopped");
        } else {
            log.say(format!(
                "logged out; removed {}",
                disks
                    .iter()
                    .map(|d| format!("/dev/{d}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(())
    }

    /// `status [CHANNEL]`: each channel's state, target, portals, connections, negotiated
    /// parameters, LUNs and mounts, counters. The exit code is 0 when every channel shown is
    /// running, [`Exit::NotRunning`] otherwise.
    pub fn status(&self, channel: Option<u32>) -> Result<Outcome, CtlError> {
        // Status shows no secret, so it reads none: any user may run it.
        let cfg = self.load_with(false, false)?;
        let ids = self.select(&cfg, channel, Scope::ConfiguredOrRunning)?;
        let status: Vec<ChannelStatus> = ids.iter().map(|&id| self.status_one(&cfg, id)).collect();
        let all_running = self.kernel.is_loaded() && status.iter().all(|s| s.state == "running");
        Ok(Outcome {
            ok: true,
            channels: Vec::new(),
            module_loaded: Some(self.kernel.is_loaded()),
            exit: if all_running {
                Exit::Ok
            } else {
                Exit::NotRunning
            },
            status,
        })
    }

    fn status_one(&self, cfg: &Config, id: u32) -> ChannelStatus {
        let ch = cfg.channels.get(&id);
        let dir = self.kernel.channel(id);
        let state = dir.state();
        let exists = dir.exists();
        let session = state.has_session() || matches!(state, State::Stopping);
        let portals = if exists && !dir.read("portals").is_empty() {
            dir.read("portals")
                .split_whitespace()
                .map(str::to_string)
                .collect()
        } else {
            ch.map(|c| c.portals.iter().map(|p| p.endpoint()).collect())
                .unwrap_or_default()
        };
        let counters = if session { dir.stats() } else { Vec::new() };
        let conns: BTreeSet<&str> = counters
            .iter()
            .filter_map(|(k, _)| {
                k.split_once('.')
                    .map(|(c, _)| c)
                    .filter(|c| c.starts_with("conn"))
            })
            .collect();
        // A module from before multi-connection sessions has no `connections` line: count the
        // connections' own counters then.
        let counts = super::status::connection_counts(&counters);
        let connections = match (&state, counts) {
            (State::Running, Some((open, _))) => open,
            (State::Running, None) => conns.len().max(1) as u32,
            _ => 0,
        };
        // Each connection, and each one `portals` asks for that is not open: running only
        // (a module without the attribute reads as empty). Indexes shown as device names.
        let mut connection_list = if state == State::Running {
            super::status::parse_connections(&dir.read("connections"))
        } else {
            Vec::new()
        };
        if connection_list.iter().any(|c| c.ifindex != 0) {
            let names = self.net.names();
            for c in &mut connection_list {
                c.device = names.get(&c.ifindex).cloned();
            }
        }
        let host = if session { dir.host() } else { None };
        let all_mounts = mount::mounts();
        let luns: Vec<Lun> = host.map(devices::luns).unwrap_or_default();
        let lun_status: Vec<LunStatus> = luns
            .iter()
            .map(|l| {
                let names = l
                    .disk
                    .as_deref()
                    .map(devices::disk_and_partitions)
                    .unwrap_or_default();
                let nums: Vec<(String, (u32, u32))> = names
                    .iter()
                    .filter_map(|n| devices::dev_numbers(n).map(|d| (n.clone(), d)))
                    .collect();
                LunStatus {
                    lun: l.lun,
                    device: l.disk.as_ref().map(|d| format!("/dev/{d}")),
                    model: l.model.clone(),
                    size_bytes: l.size_bytes,
                    read_only: l.read_only,
                    partitions: names.iter().skip(1).map(|n| format!("/dev/{n}")).collect(),
                    mounts: all_mounts
                        .iter()
                        .filter_map(|e| {
                            let n = nums.iter().find(|(_, d)| *d == (e.major, e.minor))?;
                            Some((format!("/dev/{}", n.0), e.target.display().to_string()))
                        })
                        .collect(),
                }
            })
            .collect();
        let target = self.target_of(cfg, id);
        let maps = cfg
            .maps_for(id)
            .map(|m| {
                let mp = target.as_deref().map(|t| self.mount_point(t, &m.name));
                let device = luns
                    .iter()
                    .find(|l| l.lun == m.lun)
                    .and_then(|l| l.disk.as_deref())
                    .map(|d| devices::partition_name(d, m.partition))
                    .filter(|n| Path::new("/sys/class/block").join(n).exists());
                let numbers = device.as_deref().and_then(devices::dev_numbers);
                let entry = all_mounts.iter().find(|e| {
                    Some(&e.target) == mp.as_ref() && Some((e.major, e.minor)) == numbers
                });
                MapStatus {
                    lun: m.lun,
                    partition: m.partition,
                    name: m.name.clone(),
                    line: m.line,
                    device: device.map(|d| format!("/dev/{d}")),
                    mount_point: mp
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| format!("/<target>/{}", m.name)),
                    mounted: entry.is_some(),
                    fstype: entry.map(|e| e.fstype.clone()),
                    read_only: entry.map(|e| e.read_only).unwrap_or(false),
                }
            })
            .collect();
        ChannelStatus {
            channel: id,
            state: state.word().to_string(),
            reason: match &state {
                State::Failed(r) => Some(r.clone()),
                _ => None,
            },
            configured: ch.is_some(),
            target,
            portals,
            connections,
            connections_configured: counts.map(|(_, configured)| configured),
            connection_list,
            host,
            negotiated: if session {
                dir.negotiated()
            } else {
                Vec::new()
            },
            luns: lun_status,
            maps,
            counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::netdev::tests::fake_sysfs;

    /// A context whose interfaces are those of `sys`.
    fn ctl_with(sys: &Path) -> Ctl {
        let mut ctl = Ctl::new(ConfigPaths::new("/nonexistent"));
        ctl.net = NetDevs::new(sys);
        ctl
    }

    fn channels(text: &str) -> std::collections::BTreeMap<u32, Channel> {
        config::initiator::parse_initiator(Path::new("initiator"), text).unwrap()
    }

    /// The howto's Example 2: two lines of two connections, each through its own device.
    #[test]
    fn each_portal_carries_its_connections_and_device() {
        let sys = fake_sysfs(&[("lo", 1), ("eth0", 3), ("eth1", 4)]);
        let chans = channels(
            "CHANNEL=\"1 2 eth0 192.168.1.10 3260 0 AuthMethod=None\"\n\
             CHANNEL=\"1 2 eth1 192.168.2.10 3260 0\"\n",
        );
        assert_eq!(
            ctl_with(sys.path()).portals_text(&chans[&1]).unwrap(),
            "192.168.1.10:3260*2@3 192.168.2.10:3260*2@4"
        );
    }

    /// One connection and no device: the entry is the address alone, as before.
    #[test]
    fn defaults_are_left_out() {
        let sys = fake_sysfs(&[("eth0", 3)]);
        let chans = channels(
            "CHANNEL=\"0 1 192.168.1.10 3260 0\"\n\
             CHANNEL=\"1 3 [2001:db8::5] 3261 0\"\n\
             CHANNEL=\"2 1 eth0 10.0.0.1 3260 0\"\n",
        );
        let ctl = ctl_with(sys.path());
        assert_eq!(ctl.portals_text(&chans[&0]).unwrap(), "192.168.1.10:3260");
        assert_eq!(
            ctl.portals_text(&chans[&1]).unwrap(),
            "[2001:db8::5]:3261*3"
        );
        assert_eq!(ctl.portals_text(&chans[&2]).unwrap(), "10.0.0.1:3260@3");
    }

    #[test]
    fn the_module_gets_a_numeric_scope() {
        let sys = fake_sysfs(&[("eth0", 3)]);
        let chans = channels(
            "CHANNEL=\"0 1 fe80::1%eth0 3260 0\"\n\
             CHANNEL=\"1 2 eth0 fe80::2%7 3260 0\"\n\
             CHANNEL=\"2 1 fe80::2%nosuchif9 3260 0\"\n",
        );
        let ctl = ctl_with(sys.path());
        assert_eq!(ctl.portals_text(&chans[&0]).unwrap(), "[fe80::1%3]:3260");
        assert_eq!(
            ctl.portals_text(&chans[&1]).unwrap(),
            "[fe80::2%7]:3260*2@3"
        );
        let e = ctl.portals_text(&chans[&2]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/sysconfig/initiator:3: field 4 (address): no such network device 'nosuchif9' (after % in the address)"
        );
        assert_eq!(e.exit(), Exit::Config);
    }

    /// A device that is not there is the configuration's error, at its line and field.
    #[test]
    fn a_missing_device_is_refused() {
        let sys = fake_sysfs(&[("eth0", 3)]);
        let chans = channels(
            "CHANNEL=\"1 2 eth0 192.168.1.10 3260 0\"\n\
             CHANNEL=\"1 2 eth7 192.168.2.10 3260 0\"\n",
        );
        let e = ctl_with(sys.path()).portals_text(&chans[&1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/sysconfig/initiator:2: field 3 (network device): no such network device 'eth7'"
        );
        assert_eq!(e.exit(), Exit::Config);
    }

    /// `status` of channel 0 of a fake configfs tree, running with these `stats` and
    /// `negotiated`: the status, and its text.
    fn status_of(stats: &str, negotiated: &str) -> (ChannelStatus, String) {
        let sys = fake_sysfs(&[("lo", 1)]);
        status_in(
            "running\n",
            &[("stats", stats), ("negotiated", negotiated)],
            sys.path(),
        )
    }

    /// `status` of channel 0 of a fake configfs tree in `state` with these other attributes,
    /// the interfaces being those of the fake sysfs `sys`: the status, and its text.
    fn status_in(state: &str, attrs: &[(&str, &str)], sys: &Path) -> (ChannelStatus, String) {
        let root = tempfile::tempdir().unwrap();
        let ch = root.path().join("0");
        std::fs::create_dir(&ch).unwrap();
        for (attr, text) in [
            ("state", state),
            ("target_name", "iqn.2003-01.org.example:t\n"),
            ("portals", "127.0.0.1:3260*2 127.0.0.2:3260*2@1\n"),
        ]
        .iter()
        .chain(attrs)
        {
            std::fs::write(ch.join(attr), text).unwrap();
        }
        let mut ctl = ctl_with(sys);
        ctl.kernel = Kernel::new(root.path());
        ctl.verbose = false;
        let st = ctl.status(Some(0)).unwrap().status.remove(0);
        let text = st.render();
        (st, text)
    }

    #[test]
    fn status_reads_the_connection_counts() {
        let (st, text) = status_of(
            "commands 7\nconnections 1\nconnections_configured 4\nconn0.pdus_rx 9\n",
            "TSIH=1\nMaxConnections=1\n",
        );
        assert_eq!((st.connections, st.connections_configured), (1, Some(4)));
        assert!(
            text.contains("    connections: 1 of 4 (the target grants MaxConnections=1)\n"),
            "{text}"
        );
        let (st, text) = status_of(
            "connections 4\nconnections_configured 4\nconn0.pdus_rx 9\nconn1.pdus_rx 9\n",
            "MaxConnections=4\n",
        );
        assert_eq!((st.connections, st.connections_configured), (4, Some(4)));
        assert!(text.contains("    connections: 4 of 4\n"), "{text}");
    }

    /// A module that does not print the connection counts yet: the count of its connections'
    /// counters, and no `of`.
    #[test]
    fn status_without_the_connection_counts() {
        let (st, text) = status_of("commands 7\nconn0.pdus_rx 9\n", "MaxConnections=1\n");
        assert_eq!((st.connections, st.connections_configured), (1, None));
        assert!(text.contains("    connections: 1\n"), "{text}");
    }

    const CONNECTIONS: &str = "\
cid 0 portal 127.0.0.1:3260 ifindex 0 local 127.0.0.1:51688 state up pdus_tx 25 pdus_rx 25 bytes_tx 1200 bytes_rx 5896
cid 1 portal [::1]:3260 ifindex 1 local [::1]:40112 state up pdus_tx 7 pdus_rx 7 bytes_tx 336 bytes_rx 400
cid 2 portal 127.0.0.2:3260 ifindex 3 local 127.0.0.2:51690 state lost pdus_tx 3 pdus_rx 2 bytes_tx 144 bytes_rx 96
cid - portal 127.0.0.2:3260 ifindex 4 local - state missing
";

    /// The module's `connections`: each connection under the summary line, devices by name
    /// from sysfs, the one not open said as such.
    #[test]
    fn status_shows_each_connection() {
        let sys = fake_sysfs(&[("lo", 1), ("eth0", 3), ("eth1", 4)]);
        let (st, text) = status_in(
            "running\n",
            &[
                ("stats", "connections 3\nconnections_configured 4\n"),
                ("negotiated", "MaxConnections=4\n"),
                ("connections", CONNECTIONS),
            ],
            sys.path(),
        );
        let devices: Vec<(Option<u32>, u32, Option<&str>)> = st
            .connection_list
            .iter()
            .map(|c| (c.cid, c.ifindex, c.device.as_deref()))
            .collect();
        assert_eq!(
            devices,
            vec![
                (Some(0), 0, None),
                (Some(1), 1, Some("lo")),
                (Some(2), 3, Some("eth0")),
                (None, 4, Some("eth1")),
            ]
        );
        let expected = "    connections: 3 of 4\n\
            \x20       cid  portal          device  local            state  tx PDUs  rx PDUs  tx bytes  rx bytes\n\
            \x20       0    127.0.0.1:3260  -       127.0.0.1:51688  up          25       25      1200      5896\n\
            \x20       1    [::1]:3260      lo      [::1]:40112      up           7        7       336       400\n\
            \x20       2    127.0.0.2:3260  eth0    127.0.0.2:51690  lost         3        2       144        96\n\
            \x20       not open: a connection through 127.0.0.2:3260 on eth1\n";
        assert!(text.contains(expected), "{text}");
        // An interface gone since: its index.
        let sys = fake_sysfs(&[("lo", 1)]);
        let (_, text) = status_in(
            "running\n",
            &[
                ("stats", "connections 3\nconnections_configured 4\n"),
                ("connections", CONNECTIONS),
            ],
            sys.path(),
        );
        assert!(
            text.contains("  127.0.0.2:3260  #3      127.0.0.2:51690  lost"),
            "{text}"
        );
        assert!(
            text.contains("not open: a connection through 127.0.0.2:3260 on interface index 4 (no such device now)\n"),
            "{text}"
        );
    }

    /// A module without `connections` (or with it empty): the summary line alone, as before.
    /// A channel that is not running shows no connection even if the file lists some.
    #[test]
    fn status_without_the_connections_file() {
        let sys = fake_sysfs(&[("lo", 1)]);
        let stats = (
            "stats",
            "commands 7\nconnections 1\nconnections_configured 4\n",
        );
        for attrs in [vec![stats], vec![stats, ("connections", "")]] {
            let (st, text) = status_in("running\n", &attrs, sys.path());
            assert!(st.connection_list.is_empty());
            assert!(
                text.contains("    connections: 1 of 4\n    counters:\n"),
                "{text}"
            );
            assert!(!text.contains("not open"), "{text}");
        }
        let (st, text) = status_in(
            "recovering\n",
            &[stats, ("connections", CONNECTIONS)],
            sys.path(),
        );
        assert!(st.connection_list.is_empty());
        assert!(text.contains("    connections: 0\n"), "{text}");
        assert!(
            !text.contains("cid") && !text.contains("not open"),
            "{text}"
        );
    }
}
