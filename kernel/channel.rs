// SPDX-License-Identifier: GPL-2.0

//! A channel: one configured iSCSI session, the directory
//! `/sys/kernel/config/core_iscsi/<channel>/` (see Documentation/control-interface.md).
//!
//! The directory's attributes hold the channel's settings; writing `start`, `stop` or `pause`
//! to `control` drives its session. Settings can only change while the channel is stopped (or
//! failed), so a running session never sees them move; every write is validated whole and
//! either applied or refused with an errno and one kernel log line naming the attribute.

use crate::queues::Queues;
use crate::login::Failure;
use crate::proto::{chap::ChapAlgorithm, settings, text::Limits};
use crate::session::Session;
use crate::sys::mem::{copy_init, Secret};
use crate::sys::socket::SocketAddr;
use core::fmt::{self, Write};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::{new_mutex, str::CStr};

/// Longest iSCSI name (RFC 7143 section 4.2.7.1).
const MAX_NAME: usize = 223;
/// Longest CHAP name and secret we accept (RFC 7143 section 12.1.3 bounds neither; 255
/// is what common targets accept).
const MAX_CHAP: usize = 255;
/// Portals per channel: several for a multi-connection session.
pub(crate) const MAX_PORTALS: usize = 8;
/// Connections per session, over all its portals. Each hardware queue of the SCSI host is
/// served by its share of them, and an ITT has room for 32 queue numbers.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// One entry of `portals`: where to connect, how many of the session's connections go there,
/// and the network interface they are bound to (0: none, the route decides).
#[derive(Clone, Copy)]
pub(crate) struct Portal {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: u8,
    pub(crate) ifindex: u32,
}

impl Portal {
    /// `ADDR[:PORT][*N][@IFINDEX]` (see Documentation/control-interface.md).
    fn parse(word: &[u8]) -> core::result::Result<Self, &'static str> {
        let number = |digits: &[u8]| -> Option<u32> {
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
        };
        // Neither '@' nor '*' occurs in an address (an IPv6 scope is '%').
        let (rest, ifindex) = match word.iter().rposition(|&b| b == b'@') {
            Some(at) => {
                let index = word.get(at + 1..).and_then(number);
                let index = index.filter(|&i| i > 0 && i <= i32::MAX as u32);
                (word.get(..at).unwrap_or(&[]), index.ok_or("interface index after @ not a number")?)
            }
            None => (word, 0),
        };
        let (addr, connections) = match rest.iter().rposition(|&b| b == b'*') {
            Some(at) => {
                let n = rest.get(at + 1..).and_then(number);
                let n = n.filter(|&n| n >= 1 && n as usize <= MAX_CONNECTIONS);
                (rest.get(..at).unwrap_or(&[]), n.ok_or("connection count after * not 1-16")?)
            }
            None => (rest, 1),
        };
        Ok(Self {
            addr: SocketAddr::parse(addr).map_err(|_| "not ADDR:PORT, [IPv6]:PORT or an address")?,
            // At most MAX_CONNECTIONS (16), checked above.
            connections: connections as u8,
            ifindex,
        })
    }
}

impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if self.connections > 1 {
            write!(f, "*{}", self.connections)?;
        }
        if self.ifindex != 0 {
            write!(f, "@{}", self.ifindex)?;
        }
        Ok(())
    }
}

/// A bounded byte string stored inline, so settings copy without allocating.
#[derive(Clone, Copy)]
pub(crate) struct Text<const N: usize> {
    len: usize,
    buf: [u8; N],
}

impl<const N: usize> Text<N> {
    pub(crate) const fn new() -> Self {
        Self {
            len: 0,
            buf: [0; N],
        }
    }

    pub(crate) fn set(&mut self, value: &[u8]) -> Result {
        let dst = self
            .buf
            .get_mut(..value.len())
            .ok_or_else(crate::sys::errno::nametoolong)?;
        dst.copy_from_slice(value);
        self.len = value.len();
        Ok(())
    }

    /// The stored bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The stored text (attributes accept ASCII only, see [`printable`]).
    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// CHAP credentials of a channel; secrets are write-only and zeroed when dropped.
pub(crate) struct ChapSettings {
    pub(crate) user: Text<MAX_CHAP>,
    pub(crate) secret: Secret<MAX_CHAP>,
    /// Mutual CHAP: the name and secret the target must prove it knows.
    pub(crate) mutual_user: Text<MAX_CHAP>,
    pub(crate) mutual_secret: Secret<MAX_CHAP>,
    /// Algorithms offered, in order of preference (MD5 alone by default: some targets reject
    /// a list).
    pub(crate) algorithms: [Option<ChapAlgorithm>; 4],
}

/// Everything a session is started from: a snapshot of the channel's attributes. About 2 KiB:
/// it is built and copied only in place (`new`, `clone_init`), never on a stack.
pub(crate) struct Settings {
    pub(crate) target_name: Text<MAX_NAME>,
    pub(crate) initiator_name: Text<MAX_NAME>,
    pub(crate) portals: [Option<Portal>; MAX_PORTALS],
    pub(crate) limits: Limits,
    pub(crate) chap: ChapSettings,
    /// Commands in flight per session (the SCSI host's can_queue).
    pub(crate) queue_depth: u16,
    /// Connect plus login, per attempt.
    pub(crate) login_timeout_s: u32,
    /// A NOP-Out ping after this much idle time (0: never).
    pub(crate) nopout_interval_s: u32,
    /// No answer to a ping within this: the connection is dead.
    pub(crate) nopout_timeout_s: u32,
    /// How long I/O waits for a lost session to come back before failing.
    pub(crate) replacement_timeout_s: u32,
    /// How long the error handler waits for the answer to a task management request.
    pub(crate) tmf_timeout_s: u32,
}

impl Settings {
    /// The defaults.
    fn new() -> impl Init<Self> {
        init!(Self {
            target_name: Text::new(),
            initiator_name: Text::new(),
            portals: [None; MAX_PORTALS],
            limits: Limits::default(),
            chap <- init!(ChapSettings {
                user: Text::new(),
                secret: Secret::new(),
                mutual_user: Text::new(),
                mutual_secret: Secret::new(),
                algorithms: [Some(ChapAlgorithm::Md5), None, None, None],
            }),
            queue_depth: 32,
            login_timeout_s: 15,
            nopout_interval_s: 5,
            nopout_timeout_s: 10,
            replacement_timeout_s: 120,
            tmf_timeout_s: 10,
        })
    }

    /// A copy of these settings (a session's snapshot), written field by field into its place.
    pub(crate) fn clone_init(&self) -> impl Init<Self> + '_ {
        let chap = &self.chap;
        init!(Self {
            target_name <- copy_init(&self.target_name),
            initiator_name <- copy_init(&self.initiator_name),
            portals <- copy_init(&self.portals),
            limits: self.limits,
            chap <- init!(ChapSettings {
                user <- copy_init(&chap.user),
                secret <- chap.secret.clone_init(),
                mutual_user <- copy_init(&chap.mutual_user),
                mutual_secret <- chap.mutual_secret.clone_init(),
                algorithms: chap.algorithms,
            }),
            queue_depth: self.queue_depth,
            login_timeout_s: self.login_timeout_s,
            nopout_interval_s: self.nopout_interval_s,
            nopout_timeout_s: self.nopout_timeout_s,
            replacement_timeout_s: self.replacement_timeout_s,
            tmf_timeout_s: self.tmf_timeout_s,
        })
    }

    /// The configured portals, in order.
    pub(crate) fn portals(&self) -> impl Iterator<Item = &Portal> {
        self.portals.iter().flatten()
    }

    /// The session's connections, over all portals.
    pub(crate) fn connections(&self) -> usize {
        self.portals().map(|p| usize::from(p.connections)).sum()
    }
}

/// Where a channel is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Stopped,
    Starting,
    Running,
    /// Logging out (a `start` meanwhile is refused: it would log in under the pause's feet).
    Pausing,
    Paused,
    Stopping,
    Failed(Failure),
}

struct Inner {
    /// Boxed: a lock is initialised from its value, which would be built on the stack.
    settings: KBox<Settings>,
    state: State,
    session: Option<Arc<Session>>,
}

/// A configured channel (the configfs group's object).
#[pin_data]
pub(crate) struct Channel {
    name: Text<32>,
    shared: Arc<Queues>,
    #[pin]
    inner: Mutex<Inner>,
}

/// Logs why a write to `attr` of `channel` was refused, and returns `err` for the writer.
fn refuse(channel: &Channel, attr: &str, why: fmt::Arguments<'_>, err: Error) -> Error {
    pr_warn!(
        "core-iscsi: channel {}: {}: {}\n",
        channel.name.as_str(),
        attr,
        why
    );
    err
}

/// Attribute values are printable ASCII without spaces (names, numbers, keys).
fn printable(value: &[u8]) -> bool {
    value.iter().all(|&b| b.is_ascii_graphic())
}

/// The sanity check the module makes on an iSCSI name; initiator-ctl checks the full syntax
/// of RFC 3720 section 3.2.6 before it writes one.
fn valid_iscsi_name(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && [&b"iqn."[..], b"eui.", b"naa."]
            .iter()
            .any(|p| name.starts_with(p))
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

fn parse_u32(value: &[u8], min: u32, max: u32) -> Option<u32> {
    let n = core::str::from_utf8(value).ok()?.parse::<u32>().ok()?;
    (min..=max).contains(&n).then_some(n)
}

fn chap_algorithm(name: &[u8]) -> Option<ChapAlgorithm> {
    Some(match name {
        b"MD5" => ChapAlgorithm::Md5,
        b"SHA1" => ChapAlgorithm::Sha1,
        b"SHA256" => ChapAlgorithm::Sha256,
        b"SHA3-256" => ChapAlgorithm::Sha3_256,
        _ => return None,
    })
}

fn chap_algorithm_name(alg: ChapAlgorithm) -> &'static str {
    match alg {
        ChapAlgorithm::Md5 => "MD5",
        ChapAlgorithm::Sha1 => "SHA1",
        ChapAlgorithm::Sha256 => "SHA256",
        ChapAlgorithm::Sha3_256 => "SHA3-256",
    }
}

impl Channel {
    /// A new, stopped channel named after its directory.
    pub(crate) fn new(shared: Arc<Queues>, name: &CStr) -> Result<Arc<Self>> {
        let mut text = Text::new();
        text.set(name.as_bytes())?;
        if !printable(name.as_bytes()) {
            return Err(EINVAL);
        }
        let settings = KBox::init(Settings::new(), GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                name: text,
                shared,
                inner <- new_mutex!(Inner {
                    settings,
                    state: State::Stopped,
                    session: None,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Changes the settings with `change`, which validates the value and must not fail once
    /// it has written anything (the `store_*` below check a value, or parse it into a local,
    /// before they write it; `Text::set` and `Secret::set` check the length first), so a
    /// refused value changes nothing; refused with EBUSY while a session exists. No copy of
    /// the settings is made to roll back to: they are about 2 KiB, on a configfs writer's
    /// stack, and a copy would leave the CHAP secrets behind in that stack.
    fn configure(
        &self,
        attr: &str,
        change: impl FnOnce(&mut Settings) -> core::result::Result<(), &'static str>,
    ) -> Result {
        let mut inner = self.inner.lock();
        if !matches!(inner.state, State::Stopped | State::Failed(_)) {
            return Err(refuse(
                self,
                attr,
                format_args!("channel is active: stop it first"),
                EBUSY,
            ));
        }
        change(&mut inner.settings)
            .map_err(|why| refuse(self, attr, format_args!("{}", why), EINVAL))
    }

    fn store_name(
        &self,
        attr: &str,
        value: &[u8],
        which: fn(&mut Settings) -> &mut Text<MAX_NAME>,
    ) -> Result {
        self.configure(attr, |s| {
            if !valid_iscsi_name(value) {
                return Err("not an iSCSI name (iqn./eui./naa., at most 223 characters)");
            }
            which(s).set(value).map_err(|_| "too long")
        })
    }

    pub(crate) fn store_target_name(&self, value: &[u8]) -> Result {
        self.store_name("target_name", value, |s| &mut s.target_name)
    }

    pub(crate) fn store_initiator_name(&self, value: &[u8]) -> Result {
        self.store_name("initiator_name", value, |s| &mut s.initiator_name)
    }

    /// `portals`: whitespace-separated `ADDR:PORT`, `[IPv6]:PORT` or bare addresses, each
    /// optionally followed by `*N` (connections through it) and `@IFINDEX` (the interface they
    /// are bound to).
    pub(crate) fn store_portals(&self, value: &[u8]) -> Result {
        self.configure("portals", |s| {
            let mut portals = [None; MAX_PORTALS];
            let mut n = 0;
            for word in value
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
            {
                let slot = portals.get_mut(n).ok_or("more than 8 portals")?;
                *slot = Some(Portal::parse(word)?);
                n += 1;
            }
            let total: usize = portals.iter().flatten().map(|p| usize::from(p.connections)).sum();
            if total > MAX_CONNECTIONS {
                return Err("more than 16 connections");
            }
            s.portals = portals;
            Ok(())
        })
    }

    /// `params`: the operational keys to offer, `Key=Value;Key=Value` (proto::settings).
    pub(crate) fn store_params(&self, value: &[u8]) -> Result {
        let mut inner = self.inner.lock();
        if !matches!(inner.state, State::Stopped | State::Failed(_)) {
            return Err(refuse(
                self,
                "params",
                format_args!("channel is active: stop it first"),
                EBUSY,
            ));
        }
        let mut limits = Limits::default();
        settings::apply_list(&mut limits, value).map_err(|e| {
            refuse(
                self,
                "params",
                format_args!("item {}: {}", e.index + 1, e.error),
                EINVAL,
            )
        })?;
        // What the protocol allows but this initiator does not do (yet): refuse rather than
        // negotiate something the session would not honour.
        settings::check_supported(&limits).map_err(|why| {
            refuse(self, "params", format_args!("{} is not supported: {}", why.key(), why), EINVAL)
        })?;
        inner.settings.limits = limits;
        Ok(())
    }

    fn store_number(
        &self,
        attr: &str,
        value: &[u8],
        min: u32,
        max: u32,
        set: impl FnOnce(&mut Settings, u32),
    ) -> Result {
        self.configure(attr, |s| {
            set(
                s,
                parse_u32(value, min, max).ok_or("not a number in the allowed range")?,
            );
            Ok(())
        })
    }

    pub(crate) fn store_queue_depth(&self, v: &[u8]) -> Result {
        // The range fits u16: the conversion cannot fail.
        self.store_number("queue_depth", v, 1, 1024, |s, n| s.queue_depth = n as u16)
    }
    pub(crate) fn store_login_timeout(&self, v: &[u8]) -> Result {
        self.store_number("login_timeout", v, 1, 3600, |s, n| s.login_timeout_s = n)
    }
    pub(crate) fn store_nopout_interval(&self, v: &[u8]) -> Result {
        self.store_number("nopout_interval", v, 0, 3600, |s, n| {
            s.nopout_interval_s = n
        })
    }
    pub(crate) fn store_nopout_timeout(&self, v: &[u8]) -> Result {
        self.store_number("nopout_timeout", v, 1, 3600, |s, n| s.nopout_timeout_s = n)
    }
    pub(crate) fn store_replacement_timeout(&self, v: &[u8]) -> Result {
        self.store_number("replacement_timeout", v, 0, 86400, |s, n| {
            s.replacement_timeout_s = n
        })
    }
    pub(crate) fn store_tmf_timeout(&self, v: &[u8]) -> Result {
        self.store_number("tmf_timeout", v, 1, 3600, |s, n| s.tmf_timeout_s = n)
    }

    fn store_chap_text(
        &self,
        attr: &str,
        value: &[u8],
        which: fn(&mut ChapSettings) -> &mut Text<MAX_CHAP>,
    ) -> Result {
        self.configure(attr, |s| {
            if !printable(value) {
                return Err("printable characters only");
            }
            which(&mut s.chap)
                .set(value)
                .map_err(|_| "longer than 255 bytes")
        })
    }

    pub(crate) fn store_chap_user(&self, v: &[u8]) -> Result {
        self.store_chap_text("chap_user", v, |c| &mut c.user)
    }
    pub(crate) fn store_chap_mutual_user(&self, v: &[u8]) -> Result {
        self.store_chap_text("chap_mutual_user", v, |c| &mut c.mutual_user)
    }

    /// Secrets: never echoed, not even in the refusal.
    fn store_secret(
        &self,
        attr: &str,
        value: &[u8],
        which: fn(&mut ChapSettings) -> &mut Secret<MAX_CHAP>,
    ) -> Result {
        self.configure(attr, |s| {
            which(&mut s.chap)
                .set(value)
                .map_err(|_| "longer than 255 bytes")
        })
    }

    pub(crate) fn store_chap_secret(&self, v: &[u8]) -> Result {
        self.store_secret("chap_secret", v, |c| &mut c.secret)
    }
    pub(crate) fn store_chap_mutual_secret(&self, v: &[u8]) -> Result {
        self.store_secret("chap_mutual_secret", v, |c| &mut c.mutual_secret)
    }

    /// `chap_algorithms`: a comma-separated preference list of MD5, SHA1, SHA256, SHA3-256.
    pub(crate) fn store_chap_algorithms(&self, value: &[u8]) -> Result {
        self.configure("chap_algorithms", |s| {
            let mut algs = [None; 4];
            let mut n = 0;
            for name in value.split(|&b| b == b',') {
                let alg =
                    chap_algorithm(name.trim_ascii()).ok_or("not MD5, SHA1, SHA256 or SHA3-256")?;
                if algs.contains(&Some(alg)) {
                    return Err("algorithm listed twice");
                }
                *algs.get_mut(n).ok_or("too many algorithms")? = Some(alg);
                n += 1;
            }
            s.chap.algorithms = algs;
            Ok(())
        })
    }

    /// `control`: `start`, `stop` or `pause`.
    pub(crate) fn control(self: &Arc<Self>, value: &[u8]) -> Result {
        match value {
            b"start" => self.start(),
            b"stop" => self.stop(),
            b"pause" => self.pause(),
            _ => Err(refuse(
                self,
                "control",
                format_args!("expected start, stop or pause"),
                EINVAL,
            )),
        }
    }

    /// Logs in (or, when paused, logs in again and releases the held I/O). Blocks the writer
    /// until the session runs or has failed; the reason of a failure stays in `state`. The
    /// session is the channel's from the start, so that `stop` can interrupt it (the writer
    /// then gets EINTR, as when it is killed).
    fn start(self: &Arc<Self>) -> Result {
        let mut inner = self.inner.lock();
        match inner.state {
            State::Running => return Ok(()),
            State::Starting | State::Stopping | State::Pausing => return Err(EBUSY),
            State::Paused => {
                let session = inner.session.clone().ok_or(EINVAL)?;
                inner.state = State::Starting;
                drop(inner);
                let result = session.resume();
                return self.finish_start(&session, result);
            }
            State::Stopped | State::Failed(_) => {}
        }
        // Read where they are, under `inner`: a copy (about 2 KiB) would sit in this frame under
        // the whole login below. The session takes its own copy in `Session::new`, which
        // returns before the login.
        let settings = &inner.settings;
        if settings.target_name.as_bytes().is_empty() {
            return Err(refuse(
                self,
                "control",
                format_args!("start: target_name is not set"),
                EINVAL,
            ));
        }
        if settings.initiator_name.as_bytes().is_empty() {
            return Err(refuse(
                self,
                "control",
                format_args!("start: initiator_name is not set"),
                EINVAL,
            ));
        }
        if settings.portals().next().is_none() {
            return Err(refuse(
                self,
                "control",
                format_args!("start: no portal"),
                EINVAL,
            ));
        }
        let session = match Session::new(&self.shared, self.name.as_str(), settings) {
            Ok(session) => session,
            Err(failure) => {
                inner.state = State::Failed(failure);
                return Err(failure.errno());
            }
        };
        inner.state = State::Starting;
        inner.session = Some(session.clone());
        drop(inner);
        let result = session.start();
        self.finish_start(&session, result)
    }

    /// Records how a start (or a resume) of `session` ended, unless a `stop` took the session
    /// over meanwhile (it stops it; the writer gets EINTR).
    fn finish_start(
        &self,
        session: &Arc<Session>,
        result: core::result::Result<(), Failure>,
    ) -> Result {
        let mut inner = self.inner.lock();
        let ours = inner.state == State::Starting
            && inner.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, session));
        if !ours {
            return Err(EINTR);
        }
        match result {
            Ok(()) => {
                inner.state = State::Running;
                Ok(())
            }
            Err(failure) => {
                pr_warn!(
                    "core-iscsi: channel {}: start failed: {}\n",
                    self.name.as_str(),
                    failure
                );
                inner.state = State::Failed(failure);
                let session = inner.session.take();
                drop(inner);
                if let Some(session) = session {
                    session.stop();
                }
                Err(failure.errno())
            }
        }
    }

    /// Logs out, removes the SCSI host and its disks, closes the connections. Also what
    /// rmdir and module unload do. Interrupts a start in progress. A second `stop` while one
    /// runs waits for it (whose bound is that of `Session::stop`), or returns EINTR if its
    /// writer is killed.
    pub(crate) fn stop(&self) -> Result {
        let mut inner = self.inner.lock();
        while inner.state == State::Stopping {
            drop(inner);
            if crate::sys::mem::fatal_signal_pending() {
                return Err(EINTR);
            }
            crate::sys::mem::sleep_ms(50);
            inner = self.inner.lock();
        }
        let session = inner.session.take();
        inner.state = State::Stopping;
        drop(inner);
        if let Some(session) = session {
            session.stop();
        }
        self.inner.lock().state = State::Stopped;
        Ok(())
    }

    /// Logs out but keeps the SCSI host and its disks, holding their I/O until `start`.
    fn pause(&self) -> Result {
        let mut inner = self.inner.lock();
        if inner.state != State::Running {
            return Err(refuse(
                self,
                "control",
                format_args!("pause: channel is not running"),
                EINVAL,
            ));
        }
        let session = inner.session.clone().ok_or(EINVAL)?;
        if session.is_recovering() {
            // The recovery holds the session for up to replacement_timeout; a pause would
            // wait for it, unkillable. The I/O is held meanwhile anyway.
            return Err(refuse(
                self,
                "control",
                format_args!("pause: the session is recovering"),
                EBUSY,
            ));
        }
        inner.state = State::Pausing;
        drop(inner);
        session.pause();
        let mut inner = self.inner.lock();
        // Unless a stop took the session meanwhile.
        if inner.state == State::Pausing {
            inner.state = State::Paused;
        }
        Ok(())
    }

    /// `state`: one word, then the reason of a failure.
    pub(crate) fn show_state(&self, page: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        match inner.state {
            State::Stopped => writeln!(page, "stopped"),
            State::Starting => writeln!(page, "starting"),
            State::Stopping => writeln!(page, "stopping"),
            State::Pausing => writeln!(page, "pausing"),
            State::Paused => writeln!(page, "paused"),
            State::Failed(f) => writeln!(page, "failed: {}", f),
            State::Running => match &inner.session {
                Some(s) if s.is_recovering() => writeln!(page, "recovering"),
                Some(s) => match s.failure() {
                    Some(f) => writeln!(page, "failed: {}", f),
                    None => writeln!(page, "running"),
                },
                None => writeln!(page, "running"),
            },
        }
    }

    /// Runs `f` on the session, if there is one.
    pub(crate) fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> Option<R> {
        let session = self.inner.lock().session.clone()?;
        Some(f(&session))
    }

    pub(crate) fn show_target_name(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        writeln!(p, "{}", self.inner.lock().settings.target_name.as_str())
    }
    pub(crate) fn show_initiator_name(
        &self,
        p: &mut crate::sys::configfs::Page<'_>,
    ) -> fmt::Result {
        writeln!(p, "{}", self.inner.lock().settings.initiator_name.as_str())
    }
    pub(crate) fn show_portals(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        for (i, portal) in inner.settings.portals().enumerate() {
            write!(p, "{}{}", if i == 0 { "" } else { " " }, portal)?;
        }
        writeln!(p)
    }
    pub(crate) fn show_params(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        settings::write(&self.inner.lock().settings.limits, p)?;
        writeln!(p)
    }
    pub(crate) fn show_number(
        &self,
        p: &mut crate::sys::configfs::Page<'_>,
        which: fn(&Settings) -> u32,
    ) -> fmt::Result {
        writeln!(p, "{}", which(&self.inner.lock().settings))
    }
    pub(crate) fn show_chap_user(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        writeln!(p, "{}", self.inner.lock().settings.chap.user.as_str())
    }
    pub(crate) fn show_chap_mutual_user(
        &self,
        p: &mut crate::sys::configfs::Page<'_>,
    ) -> fmt::Result {
        writeln!(
            p,
            "{}",
            self.inner.lock().settings.chap.mutual_user.as_str()
        )
    }
    pub(crate) fn show_chap_algorithms(
        &self,
        p: &mut crate::sys::configfs::Page<'_>,
    ) -> fmt::Result {
        let inner = self.inner.lock();
        for (i, alg) in inner.settings.chap.algorithms.iter().flatten().enumerate() {
            write!(
                p,
                "{}{}",
                if i == 0 { "" } else { "," },
                chap_algorithm_name(*alg)
            )?;
        }
        writeln!(p)
    }

    /// `negotiated`: the parameters in force, one `Key=Value` per line (empty when stopped).
    pub(crate) fn show_negotiated(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        self.with_session(|s| s.show_negotiated(p))
            .unwrap_or(Ok(()))
    }

    /// `stats`: the session's and each connection's counters, `name value` per line.
    pub(crate) fn show_stats(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        self.with_session(|s| s.show_stats(p)).unwrap_or(Ok(()))
    }

    /// `connections`: each connection of the session, and those the portals ask for that are
    /// not open.
    pub(crate) fn show_connections(
        &self,
        p: &mut crate::sys::configfs::Page<'_>,
    ) -> fmt::Result {
        self.with_session(|s| s.show_connections(p)).unwrap_or(Ok(()))
    }

    /// `host`: the SCSI host number (`hostN` in sysfs), empty when there is none.
    pub(crate) fn show_host(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        match self.with_session(|s| s.host_no()).flatten() {
            Some(n) => writeln!(p, "{}", n),
            None => Ok(()),
        }
    }
}
