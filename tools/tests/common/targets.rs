//! Real iSCSI targets for interop tests: `tgtd` (tgt) and `istgt`, each started by the test on
//! 127.0.0.1 only, on its own free port, in its own temporary directory.
//!
//! Everything is torn down when the [`RunningTarget`] is dropped (also while a test panics): the
//! daemon is killed with SIGKILL and reaped, tgtd's control socket and lock file under
//! /var/run/tgtd are removed, and the temporary directory (backing files, configs, logs) is
//! deleted. The daemon also gets `PR_SET_PDEATHSIG`, so a test process that is killed outright
//! takes its targets with it.
//!
//! A missing binary is a failure, not a skip: run `tests/vm/install-deps`.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The only address a test target ever listens on.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

const TGTD: &str = "/usr/sbin/tgtd";
const TGTADM: &str = "/usr/sbin/tgtadm";
const ISTGT: &str = "/usr/sbin/istgt";

/// Which target implementation to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// tgt's `tgtd`, configured with `tgtadm`.
    Tgt,
    /// `istgt`, configured with istgt.conf / auth.conf.
    Istgt,
}

impl Kind {
    /// Both kinds, for tests that run against every target.
    pub const ALL: [Kind; 2] = [Kind::Tgt, Kind::Istgt];

    /// A short lowercase name for messages and IQNs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tgt => "tgt",
            Kind::Istgt => "istgt",
        }
    }
}

/// A CHAP user name and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    /// CHAP_N.
    pub user: String,
    /// The shared secret.
    pub secret: String,
}

impl Chap {
    /// Convenience constructor.
    pub fn new(user: &str, secret: &str) -> Self {
        Chap {
            user: user.into(),
            secret: secret.into(),
        }
    }
}

/// How a target authenticates initiators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// One-way CHAP: the target checks the initiator.
    Chap(Chap),
    /// Mutual CHAP: `incoming` is checked by the target, the target answers with `outgoing`.
    Mutual {
        /// The initiator's credentials (what the target checks).
        incoming: Chap,
        /// The target's credentials (what the initiator checks).
        outgoing: Chap,
    },
}

/// One target (IQN) with its disks.
#[derive(Debug, Clone)]
pub struct TargetDef {
    /// Short name; the full IQN is `iqn.2024-01.test.<kind>:<short>`.
    pub short: String,
    /// Size in bytes of each disk LUN (file backed, in the temporary directory).
    pub disk_sizes: Vec<u64>,
    /// Authentication for normal sessions to this target.
    pub auth: Auth,
    /// iSCSI parameters for this target (RFC 7143 key names, e.g. `MaxRecvDataSegmentLength`,
    /// `HeaderDigest`, `DataDigest`, `InitialR2T`, `ImmediateData`).
    pub params: Vec<(String, String)>,
}

impl TargetDef {
    /// A target with one disk of `size` bytes, no auth, default parameters.
    pub fn disk(short: &str, size: u64) -> Self {
        TargetDef {
            short: short.into(),
            disk_sizes: vec![size],
            auth: Auth::None,
            params: vec![],
        }
    }

    /// Set the authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Add an iSCSI parameter.
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }
}

/// What a started target exposes to the test.
#[derive(Debug, Clone)]
pub struct StartedTarget {
    /// The full IQN.
    pub iqn: String,
    /// The LUN numbers of the disks, in the order of [`TargetDef::disk_sizes`]. tgt puts a
    /// controller at LUN 0 and disks from LUN 1; istgt puts the first disk at LUN 0.
    pub disk_luns: Vec<u64>,
    /// The sizes again, in bytes.
    pub disk_sizes: Vec<u64>,
    /// The backing files.
    pub backing: Vec<PathBuf>,
}

/// A running target daemon; dropping it stops the daemon and deletes every file it used.
pub struct RunningTarget {
    kind: Kind,
    addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
    control_port: Option<u16>,
    targets: Vec<StartedTarget>,
}

impl std::fmt::Debug for RunningTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTarget")
            .field("kind", &self.kind)
            .field("addr", &self.addr)
            .field("dir", &self.dir.path)
            .finish()
    }
}

impl RunningTarget {
    /// Start a target daemon of `kind` serving `defs` on 127.0.0.1 and wait until it accepts
    /// connections. Panics with a clear message on any failure (missing binary included).
    pub fn start(kind: Kind, defs: &[TargetDef]) -> RunningTarget {
        let mut last_err = String::new();
        // A free port found by binding port 0 can be taken by someone else before the daemon
        // binds it: retry a few times with a fresh port.
        for _attempt in 0..4 {
            match Self::try_start(kind, defs) {
                Ok(t) => return t,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start {}: {last_err}", kind.name());
    }

    /// The portal (always 127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The portal as "127.0.0.1:port".
    pub fn portal(&self) -> String {
        self.addr.to_string()
    }

    /// Which implementation this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The started targets, in the order given to [`RunningTarget::start`].
    pub fn targets(&self) -> &[StartedTarget] {
        &self.targets
    }

    /// The temporary directory holding configs, backing files and the log.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// The daemon's output so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path.join("daemon.log")).unwrap_or_default()
    }

    /// Whether the daemon process is still alive.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn try_start(kind: Kind, defs: &[TargetDef]) -> Result<RunningTarget, String> {
        let bin = match kind {
            Kind::Tgt => TGTD,
            Kind::Istgt => ISTGT,
        };
        for b in [bin, TGTADM]
            .iter()
            .take(if kind == Kind::Tgt { 2 } else { 1 })
        {
            if !Path::new(b).exists() {
                panic!(
                    "{b} is missing: the interop tests need the real targets; \
                     run tests/vm/install-deps (installs the Debian packages tgt and istgt)"
                );
            }
        }
        let dir = TempDir::new(kind.name())?;
        let port = free_port()?;
        let addr = SocketAddr::from((LOOPBACK, port));
        let mut targets = Vec::new();
        for (i, d) in defs.iter().enumerate() {
            let iqn = format!("iqn.2024-01.test.{}:{}", kind.name(), d.short);
            let mut backing = Vec::new();
            for (j, size) in d.disk_sizes.iter().enumerate() {
                let p = dir.path.join(format!("t{i}-lun{j}.img"));
                let f = fs::File::create(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
                f.set_len(*size)
                    .map_err(|e| format!("size {}: {e}", p.display()))?;
                backing.push(p);
            }
            let disk_luns = match kind {
                Kind::Tgt => (1..=d.disk_sizes.len() as u64).collect(),
                Kind::Istgt => (0..d.disk_sizes.len() as u64).collect(),
            };
            targets.push(StartedTarget {
                iqn,
                disk_luns,
                disk_sizes: d.disk_sizes.clone(),
                backing,
            });
        }
        let mut rt = RunningTarget {
            kind,
            addr,
            dir,
            child: None,
            control_port: None,
            targets,
        };
        match kind {
            Kind::Tgt => rt.start_tgt(defs)?,
            Kind::Istgt => rt.start_istgt(defs)?,
        }
        Ok(rt)
    }

    fn spawn(&mut self, cmd: &mut Command) -> Result<(), String> {
        let log = self.dir.path.join("daemon.log");
        let out = fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.current_dir(&self.dir.path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid) between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the test process even if it is killed without running destructors.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !self.is_alive() {
                return Err(format!(
                    "{} exited before listening on {}; its output:\n{}",
                    self.kind.name(),
                    self.addr,
                    self.log()
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not listening on {} after 10 s; its output:\n{}",
                    self.kind.name(),
                    self.addr,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    // ---- tgt -------------------------------------------------------------------------------

    fn tgtadm(&self, args: &[&str]) -> Result<(), String> {
        let cp = self.control_port.expect("control port").to_string();
        let out = Command::new(TGTADM)
            .args(["--lld", "iscsi", "-C", &cp])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run tgtadm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tgtadm {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn start_tgt(&mut self, defs: &[TargetDef]) -> Result<(), String> {
        // The control port only names the management socket /var/run/tgtd/socket.N (tgtd
        // takes N up to 32767). Derive it from the iSCSI port, which is unique to this test; a
        // clash shows as an existing lock file and the caller retries with another port.
        let cp = 1000 + self.addr.port() % 31000;
        let sock = tgt_socket(cp);
        if Path::new(&format!("{sock}.lock")).exists() {
            // A stale socket from a crashed run, or someone else's: pick another port.
            return Err(format!("{sock}.lock exists"));
        }
        self.control_port = Some(cp);
        let portal = format!("portal={}", self.addr);
        let cps = cp.to_string();
        self.spawn(Command::new(TGTD).args(["-f", "-C", &cps, "--iscsi", &portal]))?;
        self.wait_listening()?;
        // The management socket appears right before the portal listens; make sure.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&sock).exists() {
            if Instant::now() > deadline {
                return Err(format!("tgtd did not create {sock}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, d) in defs.iter().enumerate() {
            let tid = (i + 1).to_string();
            let t = self.targets[i].clone();
            self.tgtadm(&[
                "--op", "new", "--mode", "target", "--tid", &tid, "-T", &t.iqn,
            ])?;
            for (lun, path) in t.disk_luns.iter().zip(&t.backing) {
                self.tgtadm(&[
                    "--op",
                    "new",
                    "--mode",
                    "logicalunit",
                    "--tid",
                    &tid,
                    "--lun",
                    &lun.to_string(),
                    "-b",
                    path.to_str().unwrap(),
                ])?;
            }
            for (k, v) in &d.params {
                self.tgtadm(&[
                    "--op", "update", "--mode", "target", "--tid", &tid, "--name", k, "--value", v,
                ])?;
            }
            let (incoming, outgoing) = match &d.auth {
                Auth::None => (None, None),
                Auth::Chap(c) => (Some(c), None),
                Auth::Mutual { incoming, outgoing } => (Some(incoming), Some(outgoing)),
            };
            // tgt accounts are global by user name: the first target that names a user creates
            // it (a second `new` of the same name fails and is ignored), every target binds it.
            for (c, out) in [(incoming, false), (outgoing, true)] {
                let Some(c) = c else { continue };
                let _ = self.tgtadm(&[
                    "--op",
                    "new",
                    "--mode",
                    "account",
                    "--user",
                    &c.user,
                    "--password",
                    &c.secret,
                ]);
                let mut args = vec![
                    "--op", "bind", "--mode", "account", "--tid", &tid, "--user", &c.user,
                ];
                if out {
                    args.push("--outgoing");
                }
                self.tgtadm(&args)?;
            }
            // Accept initiators from loopback only.
            self.tgtadm(&[
                "--op",
                "bind",
                "--mode",
                "target",
                "--tid",
                &tid,
                "-I",
                "127.0.0.1",
            ])?;
        }
        Ok(())
    }

    // ---- istgt -----------------------------------------------------------------------------

    fn start_istgt(&mut self, defs: &[TargetDef]) -> Result<(), String> {
        let dir = self.dir.path.clone();
        let mut conf = String::new();
        let mut auth = String::new();
        let _ = write!(
            conf,
            r#"[Global]
  Comment "written by core-iscsi interop tests"
  NodeBase "iqn.2024-01.test.istgt"
  PidFile {pid}
  AuthFile {auth}
  MediaDirectory {dir}
  LogFacility "local7"
  Timeout 30
  NopInInterval 20
  DiscoveryAuthMethod None
  MaxSessions 16
  MaxConnections 4
  MaxR2T 32
  MaxOutstandingR2T 16
  DefaultTime2Wait 2
  DefaultTime2Retain 60
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
  DataPDUInOrder Yes
  DataSequenceInOrder Yes
  ErrorRecoveryLevel 0

[UnitControl]
  Comment "no controller portal"
  AuthMethod CHAP Mutual
  AuthGroup AuthGroup10000

[PortalGroup1]
  Portal DA1 {addr}

[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask 127.0.0.1
"#,
            pid = dir.join("istgt.pid").display(),
            auth = dir.join("auth.conf").display(),
            dir = dir.display(),
            addr = self.addr,
        );
        let _ = writeln!(
            auth,
            "[AuthGroup10000]\n  Auth \"unused-ctl\" \"unused-ctl-secret\"\n"
        );
        for (i, d) in defs.iter().enumerate() {
            let n = i + 1;
            let t = &self.targets[i];
            let (method, group) = match &d.auth {
                Auth::None => ("None", String::new()),
                Auth::Chap(c) => {
                    let _ = writeln!(
                        auth,
                        "[AuthGroup{n}]\n  Auth \"{}\" \"{}\"\n",
                        c.user, c.secret
                    );
                    ("CHAP", format!("  AuthGroup AuthGroup{n}\n"))
                }
                Auth::Mutual { incoming, outgoing } => {
                    let _ = writeln!(
                        auth,
                        "[AuthGroup{n}]\n  Auth \"{}\" \"{}\" \"{}\" \"{}\"\n",
                        incoming.user, incoming.secret, outgoing.user, outgoing.secret
                    );
                    ("CHAP Mutual", format!("  AuthGroup AuthGroup{n}\n"))
                }
            };
            let mut use_digest = Vec::new();
            let mut overrides = String::new();
            for (k, v) in &d.params {
                match (k.as_str(), v.as_str()) {
                    ("HeaderDigest", "CRC32C") => use_digest.push("Header"),
                    ("DataDigest", "CRC32C") => use_digest.push("Data"),
                    ("HeaderDigest" | "DataDigest", _) => {}
                    _ => {
                        let _ = writeln!(overrides, "  {k} {v}");
                    }
                }
            }
            let use_digest = if use_digest.is_empty() {
                "Auto".to_string()
            } else {
                use_digest.join(" ")
            };
            let _ = write!(
                conf,
                "\n[LogicalUnit{n}]\n  TargetName {short}\n  Mapping PortalGroup1 InitiatorGroup1\n  \
                 AuthMethod {method}\n{group}  UseDigest {use_digest}\n  UnitType Disk\n{overrides}",
                short = d.short,
            );
            for (j, (p, size)) in t.backing.iter().zip(&t.disk_sizes).enumerate() {
                // istgt sizes: a plain number is bytes? It accepts suffixes; give MB when even.
                let sz = if size % (1024 * 1024) == 0 {
                    format!("{}MB", size / (1024 * 1024))
                } else {
                    size.to_string()
                };
                let _ = writeln!(conf, "  LUN{j} Storage {} {sz}", p.display());
            }
        }
        let conf_path = dir.join("istgt.conf");
        fs::write(&conf_path, conf).map_err(|e| format!("write istgt.conf: {e}"))?;
        fs::write(dir.join("auth.conf"), auth).map_err(|e| format!("write auth.conf: {e}"))?;
        self.spawn(Command::new(ISTGT).arg("-D").arg("-c").arg(&conf_path))?;
        self.wait_listening()
    }
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}\n---- end of {} log ----",
                self.kind.name(),
                self.addr,
                tail(&self.log(), 4000),
                self.kind.name()
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(cp) = self.control_port {
            let sock = tgt_socket(cp);
            let _ = fs::remove_file(&sock);
            let _ = fs::remove_file(format!("{sock}.lock"));
        }
        // self.dir is removed by its own Drop.
    }
}

fn tgt_socket(control_port: u16) -> String {
    format!("/var/run/tgtd/socket.{control_port}")
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((LOOPBACK, 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A private temporary directory, removed (with its contents) on drop.
pub struct TempDir {
    /// Its path.
    pub path: PathBuf,
}

impl TempDir {
    /// Create `$TMPDIR/core-iscsi-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Result<TempDir, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("core-iscsi-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
