// SPDX-License-Identifier: GPL-2.0

//! A session: the logged-in iSCSI session of a running channel, registered as a SCSI host.
//!
//! The SCSI midlayer hands commands to [`HostOps::queue_command`], which starts each on the
//! session's connection (`Connection::submit`: the protocol engine gives it a CmdSN, an ITT and
//! a place in the connection's transmit queue) and sends it right away if it is alone in
//! flight (otherwise the connection's transmit work does); the connection's receive path feeds
//! the target's bytes to the engine and completes commands itself. The session keeps the rest:
//! login, the SCSI host, the lifecycle (start, pause, resume, stop), recovery and, in `eh`,
//! error handling; `report` renders its configfs files; `grow` adds the connections a login
//! left out; `leave` logs out alone a connection the target asks to log out. Its ticker (a
//! periodic work item on the control workqueue) runs the connection's timers (pings), watches
//! the command window, queues the grow work when connections are missing and, when the
//! connection is lost (ErrorRecoveryLevel 0), blocks the host, requeues the commands in
//! flight, logs in again (session reinstatement: same ISID) and unblocks the host; if that does
//! not succeed within the replacement timeout, held and new I/O fails.
//!
//! Locks, always taken in this order: `op` (one control operation at a time: start, stop,
//! pause, resume, recovery; it holds the SCSI host, and is the only lock of ours held when the
//! midlayer is called to block, unblock, register or remove; a scan holds none), a
//! connection's `tx` (one sender; only senders wait for it), a connection's `rx` (one
//! receiver), its `engine`, then `io` (the data path's shared state, `datapath`; the last
//! three are softirq-safe spinlocks, as the receive path takes them), and `ctl` (phase,
//! waiters; held only for a few instructions, never across a call into the midlayer, a socket
//! or a sleep other than its condition variable's; never under a spinlock, never in the receive
//! path, which reports through atomics instead). `conns` (the session's connections) and a
//! hardware queue's `routes` entry are held only to read or swap them, a route under `conns`
//! in `reroute`. Every wait has a bound: see Documentation/design.md, "Waits and their
//! bounds".

mod awaited;
mod eh;
mod grow;
mod hold;
mod leave;
mod report;

use crate::channel::{Settings, Text, MAX_CONNECTIONS};
use crate::connection::{
    Answer, Busy, Connection, IoLock, Leave, Origin, Owner, Path, PathStats, MAX_SEGMENTS,
};
use crate::datapath::{Io, Link};
use crate::login::{self, Failure, LoginBuffers};
use crate::proto::chap::{ChapAlgorithm, ChapConfig, MutualChap};
use crate::proto::ffp_conn::ConnConfig;
use crate::proto::ffp_tx::tx_capacity;
use crate::proto::login::{LoginComplete, LoginConfig, SessionType};
use crate::proto::pdu::Digests;
use crate::proto::text::Limits;
use crate::queues::Queues;
use crate::sys::bh_lock::{new_spinlock_bh, SpinLockBh};
use crate::sys::crypto::KernelChapDigest;
use crate::sys::mem::{
    fatal_signal_pending, now_ms, online_cpus, random_bytes, signal_pending, sleep_ms, Deadline,
    NoIoScope,
};
use crate::sys::scsi::{
    Command, CommandRef, CommandResult, EhOutcome, Host, HostByte, HostOps, HostParams, QueueBusy,
};
use crate::sys::socket::TcpStream;
use crate::sys::ticker::{impl_has_ticker, Tick, Ticker};
use crate::tasks::Ending;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use awaited::Awaited;
use hold::Holds;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex};
use kernel::time::msecs_to_jiffies;
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};
use kernel::{new_condvar, new_mutex};

/// How often the ticker runs: the connection's timers, the window watch.
const TICK_MS: u32 = 1000;

/// On `stop`, how long the disks' last commands (queued I/O, sd's SYNCHRONIZE CACHE) may take
/// on a live connection before they are failed at once.
pub(crate) const STOP_GRACE_MS: u32 = 10_000;

/// The largest data segment we send, whatever the target accepts (see `connect_and_login`).
const MAX_XMIT_SEGMENT: u32 = 256 * 1024;

/// How long a logout may take before we close on the target. (A task management request
/// waits the channel's `tmf_timeout`.)
const LOGOUT_TIMEOUT_MS: u64 = 10_000;

/// How long a pause lets the commands in flight finish before it logs out.
const PAUSE_DRAIN_MS: u64 = 10_000;

/// The connection ID of the leading connection; the others follow it in order, 1, 2, ...
const LEADING_CID: u16 = 0;

/// The session's connections by CID: a login fills the first `n` slots (a connection that
/// cannot log in gets no CID); a connection that leaves alone (`leave`) empties its slot
/// until the grow work fills the lowest free one again.
type Conns = [Option<Arc<Connection>>; MAX_CONNECTIONS];

/// The connections that serve one hardware queue (the first few slots), of which
/// [`Session::pick`] takes the least busy.
type Route = [Option<Arc<Connection>>; MAX_CONNECTIONS];

/// Where the session is, as the channel reports it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Logging in for the first time, registering the host, scanning.
    Starting,
    Running,
    Recovering,
    Paused,
    Failed(Failure),
    Stopping,
}

/// Control state: the phase and what waiters wait for (held briefly, see the lock order).
struct Ctl {
    phase: Phase,
    /// Set by a failing connection, taken by the ticker.
    lost: Option<Failure>,
    recoveries: u64,
}

/// What only the holder of `op` touches.
struct Op {
    /// The SCSI host, from registration until `stop` removes it.
    host: Option<Host>,
    /// The login's buffers, allocated once per session: recovery allocates no large buffer
    /// while the disks it serves are blocked.
    login: LoginBuffers,
}

/// Counters of the session, shown in the channel's `stats` (the data path's are in
/// [`PathStats`]).
#[derive(Default)]
struct SessionStats {
    commands: AtomicU64,
    timeouts: AtomicU64,
    aborts: AtomicU64,
}

/// A running session.
#[pin_data]
pub(crate) struct Session {
    name: Text<32>,
    queues: Arc<Queues>,
    settings: Settings,
    isid: [u8; 6],
    #[pin]
    op: Mutex<Op>,
    /// The data path's shared state (with the connection).
    io: Arc<IoLock>,
    path_stats: Arc<PathStats>,
    /// The session's connections, while it has them.
    #[pin]
    conns: SpinLockBh<Conns>,
    /// The SCSI host's hardware queues (fixed at registration): each is served by every
    /// connection ([`Session::reroute`], [`Session::pick`]).
    hw_queues: AtomicU32,
    /// Per hardware queue, the connections that serve it, made from `conns` whenever those
    /// change ([`Session::reroute`]): queuecommand takes its own queue's lock, not a
    /// session-wide one.
    #[pin]
    routes: [SpinLockBh<Route>; MAX_CONNECTIONS],
    #[pin]
    ctl: Mutex<Ctl>,
    #[pin]
    changed: CondVar,
    /// Timers, window watch, recovery.
    #[pin]
    ticker: Ticker<Session>,
    /// `stop`'s grace period: fails what the disks' removal still waits for once it is over.
    #[pin]
    grace: Work<Session>,
    stopping: AtomicBool,
    /// The host's removal in `stop` has finished (the grace work's condition).
    removed: AtomicBool,
    /// The SCSI host number (`NO_HOST` before registration), readable without `op`.
    host_no: AtomicU32,
    answers: Answers,
    /// One task management request at a time (the error handler, and a reset ioctl): taken
    /// by [`Session::tmf_slot`], given back when its guard drops.
    tmf_busy: AtomicBool,
    /// The scan work: the first scan (`start` waits for it, killable), and a rescan the target
    /// asks for (REPORTED LUNS DATA HAS CHANGED): a work item of its own, so that a scan
    /// waiting for commands never holds up keepalive, recovery or a killed writer.
    #[pin]
    scan_work: Work<Session, 1>,
    /// The first scan is queued or running.
    initial_scan: AtomicBool,
    /// Whether a rescan may be queued: `stop` shuts it before cancelling the work.
    #[pin]
    scan_gate: SpinLockBh<bool>,
    /// The grow work: adds the connections the last login left out once their portals
    /// answer (`grow`); queued only by the ticker, when `grow_at` (`now_ms`) has come, the
    /// wait after that `grow_wait_ms`.
    #[pin]
    grow_work: Work<Session, 2>,
    /// The leave work: logs out alone a connection the target asked to log out (`leave`);
    /// queued by the receive path.
    #[pin]
    leave_work: Work<Session, 3>,
    grow_at: AtomicU64,
    grow_wait_ms: AtomicU32,
    /// `epoch` when the ticker last queued the grow work: its run ends at a change from it.
    grow_epoch: AtomicU32,
    /// The portal entries whose added connections are held back (`hold`).
    holds: Holds,
    /// Changes whenever the session's connections are lost or torn down (`failed`,
    /// `detach`) and when one leaves alone (`leave`): the grow work attaches nothing logged
    /// in across a change.
    epoch: AtomicU32,
    tsih: AtomicU32,
    stats: SessionStats,
}

/// What the receive path reports to waiters: the answer to the session's logout (its
/// response code, or `REJECTED`), and to the task management request in progress.
struct Answers {
    logout: Awaited,
    tmf: Awaited,
}

/// An [`Awaited`] answer when the target rejected the request (above any response code).
const REJECTED: u32 = 0x100;

/// `Session::host_no` while there is no host.
const NO_HOST: u32 = u32::MAX;

/// How long a recovery waits for the target to close the connections it retired before it
/// logs in again ([`Session::wait_peers_closed`]).
const PEER_CLOSE_MS: u32 = 5000;

/// Waits on `changed` last at most this long before looking again: the receive path sets its
/// flags without `ctl` (softirq context), so a wake-up can fall between a waiter's look and its
/// sleep.
const WAIT_SLICE_MS: u32 = 50;

impl_has_work! {
    impl HasWork<Self> for Session { self.grace }
    impl HasWork<Self, 1> for Session { self.scan_work }
    impl HasWork<Self, 2> for Session { self.grow_work }
    impl HasWork<Self, 3> for Session { self.leave_work }
}
impl_has_ticker!(Session, ticker);

impl Session {
    /// A session for a channel, not logged in yet: the channel holds it while [`Session::start`]
    /// runs, so that `stop` can interrupt the start.
    pub(crate) fn new(
        queues: &Arc<Queues>,
        name: &str,
        settings: &Settings,
    ) -> core::result::Result<Arc<Self>, Failure> {
        // ISID type 10b: random (RFC 7143 section 11.12.5).
        let mut isid = [0u8; 6];
        random_bytes(&mut isid);
        isid[0] = 0x80 | (isid[0] & 0x3f);
        let mut text = Text::new();
        text.set(name.as_bytes()).map_err(|_| Failure::NoMemory)?;
        let io = Io::new(settings.queue_depth).map_err(|_| Failure::NoMemory)?;
        let io = Arc::pin_init(new_spinlock_bh!(io), GFP_KERNEL).map_err(|_| Failure::NoMemory)?;
        let path_stats =
            Arc::new(PathStats::default(), GFP_KERNEL).map_err(|_| Failure::NoMemory)?;
        let login = LoginBuffers::new().map_err(|_| Failure::NoMemory)?;
        Arc::pin_init(
            pin_init!(Self {
                name: text,
                queues: queues.clone(),
                settings <- settings.clone_init(),
                isid,
                op <- new_mutex!(Op { host: None, login }),
                io,
                path_stats,
                conns <- new_spinlock_bh!(core::array::from_fn(|_| None)),
                hw_queues: AtomicU32::new(1),
                routes <- kernel::init::pin_init_array_from_fn(|_| {
                    new_spinlock_bh!(core::array::from_fn(|_| None))
                }),
                ctl <- new_mutex!(Ctl {
                    phase: Phase::Starting,
                    lost: None,
                    recoveries: 0,
                }),
                changed <- new_condvar!(),
                ticker <- Ticker::new(),
                grace <- new_work!("core_iscsi::grace"),
                stopping: AtomicBool::new(false),
                removed: AtomicBool::new(false),
                host_no: AtomicU32::new(NO_HOST),
                answers: Answers {
                    logout: Awaited::new(),
                    tmf: Awaited::new(),
                },
                tmf_busy: AtomicBool::new(false),
                scan_work <- new_work!("core_iscsi::scan"),
                initial_scan: AtomicBool::new(false),
                scan_gate <- new_spinlock_bh!(true),
                grow_work <- new_work!("core_iscsi::grow"),
                leave_work <- new_work!("core_iscsi::leave"),
                grow_at: AtomicU64::new(0),
                grow_wait_ms: AtomicU32::new(grow::GROW_FIRST_MS),
                grow_epoch: AtomicU32::new(0),
                holds: Holds::new(),
                epoch: AtomicU32::new(0),
                tsih: AtomicU32::new(0),
                stats: SessionStats::default(),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| Failure::NoMemory)
    }

    /// Logs in to the channel's target (trying its portals in order), registers the SCSI host
    /// and scans its LUNs; returns when the disks are there or the start has failed. `stop`
    /// interrupts it: a login within `RECV_SLICE_MS` (a connect within login_timeout), a scan
    /// once the disks' commands fail (`STOP_GRACE_MS` at most). On failure the caller stops the
    /// session.
    pub(crate) fn start(self: &Arc<Self>) -> core::result::Result<(), Failure> {
        {
            let mut op = self.op.lock();
            self.login_all(&mut op.login, None)?;
            if self.stopping.load(Ordering::Acquire) {
                return Err(Failure::Interrupted);
            }
            let depth = self.settings.queue_depth;
            // One hardware queue per connection configured, but no more than there are CPUs:
            // blk-mq maps every CPU to one queue, and a queue no CPU maps to would never carry
            // I/O. Each queue is served by every connection (`reroute`, `pick`), so every
            // connection carries I/O; the queues share one tag space, as the command window
            // and the task set are the session's.
            let queues = u32::try_from(self.settings.connections())
                .unwrap_or(1)
                .min(online_cpus())
                .max(1);
            self.hw_queues.store(queues, Ordering::Relaxed);
            self.reroute();
            let params = HostParams {
                can_queue: depth,
                cmd_per_lun: depth,
                max_sectors: 2048,
                sg_tablesize: MAX_SEGMENTS,
                max_lun: 16384,
                nr_hw_queues: u16::try_from(queues).unwrap_or(1),
                host_tagset: true,
            };
            let ops: Arc<dyn HostOps> = self.clone();
            let host = Host::register(ops, &params, kernel::c_str!("core_iscsi"))
                .map_err(|_| Failure::NoMemory)?;
            self.host_no.store(host.host_no(), Ordering::Relaxed);
            op.host = Some(host);
            self.set_phase(Phase::Running);
            Ticker::arm(self, &self.queues.ctl, TICK_MS);
        }
        // Scan now, so the disks exist when `start` returns: in the scan work, with no lock
        // of ours held (the paths that end the scan's commands, a failing connection or the
        // error handler, take them), while this writer waits, killable: a killed writer leaves
        // the session running and the scan going on without it.
        self.initial_scan.store(true, Ordering::Release);
        self.queue_scan();
        let _ = self.wait_until(Deadline::never(), |_| {
            let done = !self.initial_scan.load(Ordering::Acquire);
            (done || self.stopping.load(Ordering::Acquire)).then_some(())
        });
        if self.stopping.load(Ordering::Acquire) {
            return Err(Failure::Interrupted);
        }
        Ok(())
    }

    /// Queues the scan work, unless `stop` has shut its gate.
    fn queue_scan(self: &Arc<Self>) {
        let open = self.scan_gate.lock();
        if *open {
            let _ = self.queues.ctl.enqueue::<Arc<Self>, 1>(self.clone());
        }
    }

    /// Makes a logged-in stream the session's connection `cid`, with what its login
    /// negotiated: the session's parameters and window when it is the leading one, its own
    /// connection keys either way.
    fn attach(
        self: &Arc<Self>,
        stream: TcpStream,
        done: &LoginComplete,
        cid: u16,
        portal: usize,
    ) -> core::result::Result<(), Failure> {
        let origin = self
            .settings
            .portals()
            .nth(portal)
            .map(|p| Origin {
                portal: p.addr,
                ifindex: p.ifindex,
                entry: portal,
                since_ms: now_ms(),
            })
            .ok_or(Failure::Protocol)?;
        if usize::from(cid) >= MAX_CONNECTIONS {
            return Err(Failure::Protocol);
        }
        let leading = cid == LEADING_CID;
        let ms = |s: u32| u64::from(s) * 1000;
        // The window and parameters first: the connection receives as soon as it starts.
        let (r2t, granted) = {
            let mut io = self.io.lock();
            if leading {
                io.logged_in(done);
            } else {
                io.ffp.window.update(done.exp_cmd_sn, done.max_cmd_sn);
            }
            let s = &io.params.session;
            (s.max_outstanding_r2t, usize::from(s.max_connections))
        };
        let conn_params = &done.params.conn;
        let cfg = ConnConfig {
            cid,
            digests: Digests {
                header: conn_params.header_digest,
                data: conn_params.data_digest,
            },
            max_recv: conn_params.max_recv_data_segment_length,
            max_xmit: conn_params.max_xmit_data_segment_length,
            exp_stat_sn: done.stat_sn.wrapping_add(1),
            nop_interval_ms: ms(self.settings.nopout_interval_s),
            nop_timeout_ms: ms(self.settings.nopout_timeout_s),
            // A PDU trickled in keeps the ping timer quiet: its own bound is the stall bound,
            // as for one we send.
            pdu_timeout_ms: self.stall_bound_ms().into(),
            // With one connection an immediate ping's CmdSN is exact: it is stamped when it
            // leaves, on the stream every command takes.
            ping_holds_commands: granted.min(self.settings.connections()) > 1,
        };
        let path = Path {
            queues: self.queues.clone(),
            owner: self.clone(),
            io: self.io.clone(),
            stats: self.path_stats.clone(),
        };
        let capacity = tx_capacity(self.settings.queue_depth.into(), r2t.max(1));
        let depth = self.settings.queue_depth;
        let conn = Connection::start(path, origin, stream, cfg, depth, capacity, self.stall_bound_ms())
            .map_err(|_| Failure::NoMemory)?;
        // Recovery and resume detach the old connections first; were one still at this CID,
        // it must not outlive us with its callbacks and work.
        // Retired while still listed, as in `detach`.
        if let Some(old) = self.conns().get(usize::from(cid)).cloned().flatten() {
            self.retire(&old, Ending::result(CommandResult::HostError(HostByte::Requeue)));
        }
        let old = self
            .conns
            .lock()
            .get_mut(usize::from(cid))
            .and_then(|slot| slot.replace(conn));
        self.reroute();
        // The last reference to a connection is never dropped under a spinlock: its socket's
        // release sleeps.
        drop(old);
        if leading {
            self.tsih.store(done.tsih.into(), Ordering::Relaxed);
            self.io.lock().link = Link::Up;
        }
        Ok(())
    }

    /// Logs in the leading connection (the first portal that answers) and then the others
    /// the portals ask for, as many as the target grants (MaxConnections), each through its
    /// portal with the session's ISID and TSIH (RFC 7143 section 6.3.6) and a CID of its
    /// own. A connection after the leading one that cannot log in is logged and left out:
    /// the session runs on those it has. By `deadline` when given (recovery).
    fn login_all(
        self: &Arc<Self>,
        login: &mut LoginBuffers,
        deadline: Option<Deadline>,
    ) -> core::result::Result<(), Failure> {
        let (stream, done, at) = self.connect_and_login(login, deadline, None)?;
        self.attach(stream, &done, LEADING_CID, at)?;
        let granted = usize::from(done.params.session.max_connections.max(1));
        let wanted = self.settings.connections();
        if granted < wanted {
            pr_info!(
                "core-iscsi: channel {}: the target grants {} of {} connections (MaxConnections)\n",
                self.name.as_str(),
                granted,
                wanted
            );
        }
        // The connections each portal contributes, in order, less the leading one's and those
        // of a portal held back (`hold`: the grow work tries them once the hold is over).
        let mut slots = [0usize; MAX_CONNECTIONS];
        let mut n = 0;
        let mut skipped = false;
        for (i, portal) in self.settings.portals().enumerate() {
            for _ in 0..portal.connections {
                if i == at && !skipped {
                    skipped = true;
                    continue;
                }
                if self.held_ms(i) > 0 {
                    continue;
                }
                if let Some(slot) = slots.get_mut(n) {
                    *slot = i;
                    n += 1;
                }
            }
        }
        let mut cid = LEADING_CID;
        for &portal in slots.iter().take(n.min(granted.saturating_sub(1))) {
            if self.stopping.load(Ordering::Acquire) {
                return Err(Failure::Interrupted);
            }
            let next = cid.saturating_add(1);
            match self.connect_and_login(login, deadline, Some((portal, next, done.tsih))) {
                Ok((stream, added, _)) => {
                    self.attach(stream, &added, next, portal)?;
                    cid = next;
                }
                Err(why) => pr_warn!(
                    "core-iscsi: channel {}: connection {} (TSIH {}) not added: {}\n",
                    self.name.as_str(),
                    next,
                    done.tsih,
                    why
                ),
            }
        }
        // Those left out are tried again while the session runs.
        self.grow_later();
        Ok(())
    }

    /// Closes a connection that is no longer the session's and waits until nothing uses it;
    /// its commands end with `ending`. Bounded: the socket is shut down before anything waits
    /// on it.
    fn retire(&self, conn: &Arc<Connection>, ending: Ending) {
        conn.close();
        // A sender holding the tx lock fails fast on the shut socket and lets go.
        conn.wait_sender();
        // This connection's own work only: another channel's stalled work is no concern of
        // ours.
        conn.cancel_work();
        conn.release_placement();
        // Its ping may have held every connection's commands: with the last hold gone they
        // go now, not at the next queuecommand or keepalive. (Retired alone, logged out or
        // replaced at its CID, the others carry on; in `detach` the wake is harmless: the
        // others are retired next, their gates shut before their work is cancelled.)
        if conn.end_tasks(ending) {
            self.released();
        }
    }

    /// How long the target may stall us before the connection is given up: one PDU's send
    /// (the tx lock is never held longer), and a command window kept closed while commands
    /// wait. nopout_interval + nopout_timeout, at least 10 s: a live target answers a ping in
    /// that time.
    fn stall_bound_ms(&self) -> u32 {
        (self.settings.nopout_interval_s.saturating_add(self.settings.nopout_timeout_s))
            .max(10)
            .saturating_mul(1000)
    }

    /// The SCSI host number.
    pub(crate) fn host_no(&self) -> Option<u32> {
        Some(self.host_no.load(Ordering::Relaxed)).filter(|&n| n != NO_HOST)
    }

    /// Whether the session is recovering a lost connection.
    pub(crate) fn is_recovering(&self) -> bool {
        self.ctl.lock().phase == Phase::Recovering
    }

    /// The failure that ended the session, if it has given up.
    pub(crate) fn failure(&self) -> Option<Failure> {
        match self.ctl.lock().phase {
            Phase::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// Running, not stopping, no loss waiting for the ticker.
    fn still_running(&self) -> bool {
        let ctl = self.ctl.lock();
        !self.stopping.load(Ordering::Acquire) && ctl.phase == Phase::Running && ctl.lost.is_none()
    }

    /// The session's connections now (a copy: what it calls may sleep).
    fn conns(&self) -> Conns {
        self.conns.lock().clone()
    }

    /// Commands in flight on every connection.
    fn in_flight(&self) -> usize {
        self.conns().iter().flatten().map(|c| c.in_flight()).sum()
    }

    /// A live connection of the session that may carry a request, the leading one first.
    fn live_conn(&self) -> Option<Arc<Connection>> {
        self.conns
            .lock()
            .iter()
            .flatten()
            .find(|c| !c.is_dead() && !c.logout_sent())
            .cloned()
    }

    /// Whether the session has a live connection. Looked at in place, with no reference taken:
    /// usable under `ctl`, where dropping a clone could release a socket.
    fn has_live_conn(&self) -> bool {
        self.conns.lock().iter().flatten().any(|c| !c.is_dead())
    }

    /// Makes every hardware queue's route from the connections now: every queue is served
    /// by every connection, queue `i`'s list starting at connection `i mod n`, and `pick`
    /// chooses the least busy. So the commands of one CPU (one fio job, one queue) spread over
    /// all the connections as dm-multipath spreads them over its paths, and every connection
    /// carries I/O whatever the number of queues. Giving each queue only its share of the
    /// connections (`i`, `i + q`, ...) left one job's load on one connection: 0.81-0.93 of
    /// open-iscsi with multipath at 4 KiB QD32 and 1 MiB writes, against 1.05-1.10 spread
    /// (two boots, Documentation/benchmarks.md). Each route is written while `conns` is held,
    /// so a route is never older than the last change of `conns` (whoever changes it reroutes
    /// after); the routes it replaces are dropped with no lock held.
    fn reroute(&self) {
        let queues = (self.hw_queues.load(Ordering::Relaxed) as usize).clamp(1, MAX_CONNECTIONS);
        for (q, route) in self.routes.iter().enumerate() {
            let old = {
                let conns = self.conns.lock();
                let n = conns.iter().flatten().count();
                let mut new: Route = core::array::from_fn(|_| None);
                if q < queues && n > 0 {
                    // Every connection, starting at the (q mod n)-th (a slot a connection
                    // left empty is passed by).
                    for (k, slot) in new.iter_mut().take(n).enumerate() {
                        let i = q.saturating_add(k).checked_rem(n).unwrap_or(0);
                        *slot = conns.iter().flatten().nth(i).cloned();
                    }
                }
                core::mem::replace(&mut *route.lock(), new)
            };
            drop(old);
        }
    }

    /// The connection a command from hardware queue `queue` goes out on: of the queue's route
    /// ([`Session::reroute`]), the one with the fewest commands in flight, the first of them
    /// on a tie (dm-multipath's queue-length selector counts the same, but rotates its choice
    /// among equals; this keeps it). Under load that shares the queue's
    /// commands out evenly, and more to a connection that answers faster; a lone command (QD1)
    /// goes out on the queue's own connection every time. Choosing by tag alternated the
    /// connections at QD1 (tags cycle), waking each connection's receive path and the target's
    /// threads behind it in turn: two connections read at 0.91 of one connection's IOPS at
    /// QD1, against 1.03 with this rule (three boots each, Documentation/benchmarks.md). The
    /// counts are read without locks: a command may land on a connection that has just become
    /// the busier, which costs nothing but balance. `except` is passed by (it refused the
    /// command's tag).
    fn pick(&self, queue: u16, except: Option<&Arc<Connection>>) -> Option<Arc<Connection>> {
        let route = self.routes.get(usize::from(queue))?.lock();
        // A dead connection keeps its last count until it is detached, and one leaving alone
        // takes no new command: both passed by (every connection is in every route, so a
        // live one is found if there is one).
        route
            .iter()
            .map_while(Option::as_ref)
            .filter(|c| {
                !c.is_dead() && !c.is_leaving() && !except.is_some_and(|e| Arc::ptr_eq(c, e))
            })
            .min_by_key(|c| c.in_flight())
            .cloned()
    }

    /// Waits up to `ms` for `done` (a flag the receive path sets) to hold; false when the
    /// time is up, the connection is gone, or a stop's grace period is over.
    fn wait_for(&self, ms: u64, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Deadline::after_ms(ms);
        self.wait_until(deadline, |_| {
            if done() {
                return Some(true);
            }
            let up = self.io.lock().link == Link::Up;
            (!up || !self.has_live_conn()).then_some(false)
        })
        .unwrap_or(false)
    }

    /// Waits until `deadline` for `outcome` (looked at under `ctl`, at every wake-up and at
    /// least every WAIT_SLICE_MS) to give an answer; `None` when the time is up.
    fn wait_until<T>(
        &self,
        deadline: Deadline,
        mut outcome: impl FnMut(&Ctl) -> Option<T>,
    ) -> Option<T> {
        let mut ctl = self.ctl.lock();
        loop {
            if let Some(answer) = outcome(&ctl) {
                return Some(answer);
            }
            let left = deadline.left_ms()?.min(WAIT_SLICE_MS);
            if signal_pending() {
                // A killed writer (stop, rmdir) gives up its waits: what follows them is
                // bounded anyway. Another signal would make every wait return at once: sleep
                // the slice instead of spinning.
                if fatal_signal_pending() {
                    return None;
                }
                drop(ctl);
                sleep_ms(left);
                ctl = self.ctl.lock();
                continue;
            }
            let _ = self
                .changed
                .wait_interruptible_timeout(&mut ctl, msecs_to_jiffies(left));
        }
    }

    /// Sleeps until `deadline`, or until the session is being stopped.
    fn sleep_until(&self, deadline: Deadline) {
        let _ = self.wait_until(deadline, |_| {
            self.stopping.load(Ordering::Acquire).then_some(())
        });
    }

    /// Logs out the session (reason "close the session", on a live connection: the target
    /// closes every connection of it); best effort: a target that does not answer is closed
    /// on. The added connections are not logged out one by one first: LIO (6.12) then frees a
    /// connection that its session logout still walks (a use after free in
    /// `iscsit_stop_session`, seen in tests/e2e/mcs.sh).
    fn logout(&self) {
        let Some(conn) = self.live_conn() else { return };
        let answer = &self.answers.logout;
        let Ok(itt) = conn.logout(|itt| answer.arm(itt)) else {
            return;
        };
        // Nothing answers on a dead connection, even while the session's others are up.
        let _ = self.wait_for(LOGOUT_TIMEOUT_MS, || {
            answer.get(itt).is_some() || conn.is_dead()
        });
        if answer.get(itt) == Some(REJECTED) {
            pr_warn!(
                "core-iscsi: channel {}: logout rejected\n",
                self.name.as_str()
            );
        } else if answer.get(itt).is_none() {
            pr_warn!(
                "core-iscsi: channel {}: no logout response\n",
                self.name.as_str()
            );
        }
    }

    /// Takes the connections away from the data path and waits until nothing uses them; the
    /// commands in flight are completed with `result` (requeued, or failed). Bounded: each
    /// socket is shut down before anything waits on it. Gives the retired connections (their
    /// sockets are released when the last reference goes: never under a spinlock).
    fn detach(&self, link: Link, result: CommandResult) -> Conns {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.io.lock().link = link;
        // Retired while still listed, so that the error handler finds their commands until
        // they have ended (a command it cannot find, it takes as completed).
        let conns = self.conns();
        let ending = Ending::result(result);
        for conn in conns.iter().flatten() {
            self.retire(conn, ending);
        }
        // The list's references are dropped after unlocking (a last one releases a socket,
        // which sleeps), like the routes' in `reroute`.
        let listed = core::mem::replace(&mut *self.conns.lock(), core::array::from_fn(|_| None));
        self.reroute();
        drop(listed);
        conns
    }

    /// Waits (at most `PEER_CLOSE_MS`, and half the time left before `deadline`: the logins
    /// need the rest) for the target to close every connection in `old` (retired: we shut
    /// them down). Logging in again reinstates the session, and a target still tearing the
    /// old connections down meets the reinstatement halfway: LIO 6.12's `iscsit_stop_session`
    /// then walks a connection it is freeing. A target that never closes (one that stopped
    /// reading: our FIN waits behind unsent data) costs the bound.
    fn wait_peers_closed(&self, old: &Conns, deadline: Deadline) {
        let closed = || old.iter().flatten().all(|c| c.peer_closed());
        if closed() {
            return;
        }
        let half = deadline.left_ms().unwrap_or(0) / 2;
        let bound = Deadline::after_ms(PEER_CLOSE_MS.min(half).into());
        let _ = self.wait_until(bound, |_| {
            (self.stopping.load(Ordering::Acquire) || closed()).then_some(())
        });
    }

    /// Logs in again on a new connection, reinstating the session (same ISID), by `deadline`
    /// at the latest (`op` held: its guard gives the login buffers). Nothing it allocates
    /// waits for I/O: the disks it serves may be blocked meanwhile.
    fn relogin(
        self: &Arc<Self>,
        login: &mut LoginBuffers,
        deadline: Deadline,
    ) -> core::result::Result<(), Failure> {
        let _noio = NoIoScope::new();
        // What a failed attempt before this one attached (its leading connection, say)
        // belongs to a session this attempt reinstates away: none of it may carry I/O.
        let old = self.detach(Link::Down, CommandResult::HostError(HostByte::Requeue));
        self.wait_peers_closed(&old, deadline);
        drop(old);
        self.login_all(login, Some(deadline))
    }

    fn set_phase(&self, phase: Phase) {
        self.ctl.lock().phase = phase;
        self.changed.notify_all();
    }

    /// ErrorRecoveryLevel 0 recovery (ticker context, `op` held): hold the I/O, log in again
    /// within the replacement timeout, release the I/O; or give up and fail it. The
    /// replacement timeout holds whatever the target negotiated: DefaultTime2Wait and every
    /// login attempt end by its deadline.
    fn recover(self: &Arc<Self>, op: &mut Op) {
        self.set_phase(Phase::Recovering);
        self.ctl.lock().recoveries += 1;
        // Every connection is lost at ErrorRecoveryLevel 0: close them all before blocking
        // the host. scsi_host_block waits for every queuecommand in progress, and one
        // sending on a connection still open could be kept at it by the target.
        for conn in self.conns().iter().flatten() {
            conn.close();
        }
        if let Some(h) = &op.host {
            h.block();
        }
        let old = self.detach(Link::Down, CommandResult::HostError(HostByte::Requeue));
        // Losses of the connections just retired (reported while this recovery began) are
        // this recovery's: none may start another.
        self.ctl.lock().lost = None;
        let deadline =
            Deadline::after_ms(u64::from(self.settings.replacement_timeout_s) * 1000);
        // RFC 7143 section 6.1: wait DefaultTime2Wait after the loss before logging in again.
        // The wait for the target to close the old connections runs within it, not before
        // it: against a target that never closes (slow-drain), the two one after the other
        // left half a second of a 5 s replacement timeout for the login, which a busy host
        // missed.
        let time2wait = u64::from(self.io.lock().params.session.default_time2wait);
        let time2wait = Deadline::after_ms(time2wait * 1000).min(deadline);
        self.wait_peers_closed(&old, deadline);
        drop(old);
        let mut last = Failure::Timeout;
        let mut backoff_ms = 1000u32;
        self.sleep_until(time2wait);
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            if deadline.passed() {
                break;
            }
            match self.relogin(&mut op.login, deadline) {
                Ok(()) => {
                    pr_info!(
                        "core-iscsi: channel {}: session recovered\n",
                        self.name.as_str()
                    );
                    self.set_phase(Phase::Running);
                    if let Some(h) = &op.host {
                        h.unblock();
                    }
                    return;
                }
                Err(f) => last = f,
            }
            self.sleep_until(Deadline::after_ms(backoff_ms.into()).min(deadline));
            backoff_ms = (backoff_ms * 2).min(5000);
        }
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        pr_err!(
            "core-iscsi: channel {}: session lost, giving up after {} s ({})\n",
            self.name.as_str(),
            self.settings.replacement_timeout_s,
            last
        );
        // Nothing of a failed attempt stays open.
        self.detach(Link::Failed, CommandResult::HostError(HostByte::NoConnect));
        self.set_phase(Phase::Failed(Failure::ReplacementTimeout));
        // Held I/O now fails instead of waiting forever.
        if let Some(h) = &op.host {
            h.unblock();
        }
    }

    /// The connection's timers: a ping for an idle connection; one unanswered in time means
    /// the connection is dead.
    fn keepalive(&self) {
        if self.io.lock().link != Link::Up {
            return;
        }
        let conns = self.conns();
        self.note_lasting(&conns);
        // No ping may follow a logout request on its connection.
        let pinged = |c: &&Arc<Connection>| !c.is_dead() && !c.logout_sent();
        for conn in conns.iter().flatten().filter(pinged) {
            if conn.tick() {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A command window the target keeps closed while commands wait, for longer than a stalled
    /// send may last, fails the connection: the midlayer would otherwise retry them forever.
    fn watch_window(&self) {
        let shut_ms = {
            let io = self.io.lock();
            match (io.link, io.ffp.window_shut_since()) {
                (Link::Up, Some(t)) => now_ms().saturating_sub(t),
                _ => 0,
            }
        };
        if shut_ms > u64::from(self.stall_bound_ms()) {
            if let Some(conn) = self.live_conn() {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                conn.fail(Failure::WindowClosed);
            }
        }
    }

    /// One run of the ticker: recovery after a lost connection, keepalive, the window watch.
    fn run_tick(self: &Arc<Self>) {
        // Whatever the phase: a stop's last commands must not wait for a late answer either.
        if self.io.lock().ffp.window.expire(now_ms()) {
            self.released();
        }
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let mut lost = self.ctl.lock().lost.take();
        if lost.is_none() && self.io.lock().link == Link::Up {
            // A connection that failed before it was the session's (between its login and
            // `attach`) was not reported, and `failed` may not have run yet for one that just
            // failed: its loss is found here.
            // One logged out alone is dead until the leave work unlists it: no loss.
            let dead = self
                .conns()
                .into_iter()
                .flatten()
                .find(|c| c.is_dead() && c.leave() != Leave::LoggedOut);
            if let Some(conn) = dead {
                // A loss, like one `failed` reports: the grow work attaches nothing across it.
                self.epoch.fetch_add(1, Ordering::AcqRel);
                pr_warn!(
                    "core-iscsi: channel {}: connection lost: {}\n",
                    self.name.as_str(),
                    Failure::ConnectionReset
                );
                // Found before `failed` ran (it reports from the receive path's work).
                if self.ctl.lock().phase == Phase::Running {
                    self.hold_if_short_lived(&conn);
                }
                lost = Some(Failure::ConnectionReset);
            }
        }
        if lost.is_some() {
            let mut op = self.op.lock();
            let running = self.ctl.lock().phase == Phase::Running;
            if running && !self.stopping.load(Ordering::Acquire) {
                self.recover(&mut op);
            }
            return;
        }
        self.keepalive();
        self.watch_window();
        if self.ctl.lock().phase == Phase::Running {
            self.maybe_grow();
            self.maybe_leave();
        }
    }

    /// Logs out while holding the host's I/O (queued in the block layer) until [`resume`].
    ///
    /// [`resume`]: Session::resume
    pub(crate) fn pause(&self) {
        let op = self.op.lock();
        self.set_phase(Phase::Paused);
        if let Some(h) = &op.host {
            h.block();
        }
        // Let what is in flight finish, so the logout is clean.
        let deadline = Deadline::after_ms(PAUSE_DRAIN_MS);
        let _ = self.wait_until(deadline, |_| {
            (self.stopping.load(Ordering::Acquire) || self.in_flight() == 0)
                .then_some(())
        });
        self.logout();
        self.detach(Link::Down, CommandResult::HostError(HostByte::Requeue));
    }

    /// Logs in again after a pause and releases the held I/O.
    pub(crate) fn resume(self: &Arc<Self>) -> core::result::Result<(), Failure> {
        let mut op = self.op.lock();
        let Op { host, login } = &mut *op;
        self.relogin(login, Deadline::after_ms(self.login_bound_ms()))?;
        if self.stopping.load(Ordering::Acquire) {
            return Err(Failure::Interrupted);
        }
        self.set_phase(Phase::Running);
        if let Some(h) = host {
            h.unblock();
        }
        Ok(())
    }

    /// The longest one round of logins takes: login_timeout per attempt.
    fn login_bound_ms(&self) -> u64 {
        u64::from(self.settings.login_timeout_s)
            .saturating_mul(1000)
            .saturating_mul(self.login_rounds().into())
    }

    /// Login attempts in one round, each bounded by login_timeout: one per portal for the
    /// leading connection, then one per added connection.
    fn login_rounds(&self) -> u32 {
        let portals = self.settings.portals().count();
        let added = self.settings.connections().saturating_sub(1);
        u32::try_from(portals.saturating_add(added)).unwrap_or(u32::MAX).max(1)
    }

    /// Removes the SCSI host and its disks, logs out and closes the connection; when it
    /// returns, nothing of the session runs and the host is gone. Interrupts a start, resume
    /// or recovery in progress (within `RECV_SLICE_MS`, or a connect's login_timeout). The
    /// disks' last commands (queued I/O, sd's SYNCHRONIZE CACHE) get `STOP_GRACE_MS` on a live
    /// connection, then fail at once; the logout waits at most LOGOUT_TIMEOUT_MS.
    pub(crate) fn stop(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify_all();
        let mut op = self.op.lock();
        self.set_phase(Phase::Stopping);
        if let Some(host) = op.host.take() {
            // While the link is up the disks can flush their caches on the way out; otherwise
            // their I/O fails at once instead of waiting.
            // A connection that failed before the ticker saw it is no live link.
            let live = self.has_live_conn();
            {
                let mut io = self.io.lock();
                if io.link != Link::Up || !live {
                    io.link = Link::Failed;
                }
            }
            self.removed.store(false, Ordering::Release);
            let _ = self.queues.stop.enqueue::<Arc<Self>, 0>(self.clone());
            host.unblock();
            host.remove();
            self.removed.store(true, Ordering::Release);
            self.changed.notify_all();
            crate::sys::workqueue::cancel_sync::<Self, 0>(self);
        }
        let up = self.io.lock().link == Link::Up;
        if up {
            self.logout();
        }
        self.detach(Link::Failed, CommandResult::HostError(HostByte::NoConnect));
        drop(op);
        // After `op`: a run of the ticker or a rescan waiting for it gets it, sees `stopping`
        // (or no host) and returns.
        self.ticker.close();
        *self.scan_gate.lock() = false;
        crate::sys::workqueue::cancel_sync::<Self, 1>(self);
        // Only the ticker, closed now, queues it.
        crate::sys::workqueue::cancel_sync::<Self, 2>(self);
        // A receive path queues it (`detach` retired every connection), and the ticker
        // (closed now).
        crate::sys::workqueue::cancel_sync::<Self, 3>(self);
    }

    /// The scan work: the first scan (`initial_scan`, which `start` waits for), or a rescan
    /// the target asked for. No lock of ours across the scan, which waits for commands.
    fn scan(&self) {
        let initial = self.initial_scan.load(Ordering::Acquire);
        if !self.stopping.load(Ordering::Acquire) {
            let scan = self.op.lock().host.as_ref().and_then(|h| h.get_ref());
            match scan {
                Some(scan) if initial => scan.scan(),
                Some(scan) => scan.rescan(),
                None => {}
            }
        }
        if initial {
            self.initial_scan.store(false, Ordering::Release);
            self.changed.notify_all();
        }
    }

    /// The grace work of `stop` (see [`Session::stop`]): once `STOP_GRACE_MS` is over with the
    /// host's removal still waiting for commands, they fail at once.
    fn enforce_grace(&self) {
        let deadline = Deadline::after_ms(STOP_GRACE_MS.into());
        let removed = self.wait_until(deadline, |_| {
            self.removed.load(Ordering::Acquire).then_some(())
        });
        if removed.is_none() {
            pr_warn!(
                "core-iscsi: channel {}: stop: the disks' last commands did not end in {} s; failing them\n",
                self.name.as_str(),
                STOP_GRACE_MS / 1000
            );
            self.detach(Link::Failed, CommandResult::HostError(HostByte::NoConnect));
        }
    }

}

impl HostOps for Session {
    fn queue_command(&self, cmd: Command) -> core::result::Result<(), QueueBusy> {
        let last = cmd.is_last();
        // `pick` passes a lost connection by for a live one: a recovery about to start requeues
        // what went there, and while stopping the others carry the disks' last commands.
        let Some(conn) = self.pick(cmd.hw_queue(), None) else {
            if self.io.lock().link == Link::Failed {
                cmd.complete(CommandResult::HostError(HostByte::NoConnect));
                return Ok(());
            }
            // Recovering or paused: the midlayer holds it until the host is unblocked.
            return Err(QueueBusy);
        };
        let (conn, started) = match conn.submit(cmd) {
            Ok(started) => (conn, started),
            Err(Busy::Connection) => return Err(QueueBusy),
            Err(Busy::Tag(cmd)) => {
                // The tag's filler still waits on `conn`: another live connection takes the
                // command (the error handler's TEST UNIT READY after a LUN reset reuses the
                // tag of a command the reset covered), or the midlayer retries it.
                let other = self.pick(cmd.hw_queue(), Some(&conn)).ok_or(QueueBusy)?;
                match other.submit(cmd) {
                    Ok(started) => (other, started),
                    Err(_) => return Err(QueueBusy),
                }
            }
        };
        if let Some(in_flight) = started {
            self.stats.commands.fetch_add(1, Ordering::Relaxed);
            conn.transmit_queued(in_flight, last);
        }
        Ok(())
    }

    fn abort(&self, cmd: &CommandRef<'_>) -> EhOutcome {
        self.eh_abort(cmd)
    }

    fn commit(&self, queue: u16) {
        // Sends what is queued without touching the connection's depth hint: blk-mq calls
        // this when a dispatch stops short (a busy device), which is load, not idleness.
        let route = match self.routes.get(usize::from(queue)) {
            Some(route) => route.lock().clone(),
            None => return,
        };
        for conn in route.iter().flatten().filter(|c| !c.is_dead()) {
            conn.send_inline();
        }
    }

    fn device_reset(&self, lun: u64) -> EhOutcome {
        self.eh_device_reset(lun)
    }

    fn target_reset(&self) -> EhOutcome {
        self.eh_target_reset()
    }
}

impl Owner for Session {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    /// A connection failed: the ticker recovers (if it is still the session's connection).
    fn failed(self: Arc<Self>, conn: &Arc<Connection>, why: Failure) {
        // A ping of its that held every command back (`ConnConfig::ping_holds_commands`) is
        // not answered now, or its answer's release came with a PDU that failed it: whatever
        // the phase (a stop's or a pause's last commands go on the others), they send again.
        conn.release_hold();
        self.released();
        if conn.leave() == Leave::LoggedOut {
            // Logged out alone: the target closes it, and the leave work unlists it.
            return;
        }
        let current = self
            .conns
            .lock()
            .iter()
            .flatten()
            .any(|c| Arc::ptr_eq(c, conn));
        if !current {
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // The end of a connection we are logging out of is no loss: nothing to recover. While
        // stopping, what the disks' removal still sends goes on the connections left
        // (queuecommand passes a dead one by); with none left it must fail at once, not be
        // told "busy" by a link that is up on dead connections, forever.
        let phase = self.ctl.lock().phase;
        match phase {
            Phase::Stopping => {
                if !self.has_live_conn() {
                    self.io.lock().link = Link::Failed;
                }
                return;
            }
            Phase::Paused => return,
            _ => {}
        }
        // With several connections, the first loss is the session's (the others usually
        // follow it, as the target drops them all): one line, one recovery.
        let first = {
            let mut ctl = self.ctl.lock();
            let first = ctl.lost.is_none();
            ctl.lost.get_or_insert(why);
            first
        };
        if first {
            pr_warn!(
                "core-iscsi: channel {}: connection lost: {}\n",
                self.name.as_str(),
                why
            );
            // Only the loss that ends a running session counts against its portal: not those
            // a recovery's own closing causes, nor the others of a target's reset (`hold`).
            if phase == Phase::Running {
                self.hold_if_short_lived(conn);
            }
        }
        self.changed.notify_all();
        Ticker::kick(&self, &self.queues.ctl);
    }

    fn answered(&self, answer: Answer) {
        // Each taken only by the request it answers (`Awaited`): a connection's own logout
        // (`leave`) has another ITT than the session's.
        match answer {
            Answer::TaskMgmt { itt, response } => self.answers.tmf.answer(itt, response.into()),
            Answer::Rejected { itt, logout: false } => self.answers.tmf.answer(itt, REJECTED),
            Answer::Logout { itt, response } => self.answers.logout.answer(itt, response.into()),
            Answer::Rejected { itt, logout: true } => self.answers.logout.answer(itt, REJECTED),
        }
        self.changed.notify_all();
    }

    fn rescan(self: Arc<Self>) {
        self.queue_scan();
    }

    fn logout_requested(self: Arc<Self>) {
        self.leave_later();
    }

    fn released(&self) {
        // Under the list's lock rather than over a copy of it: a reference the receive path
        // took could be the last one once a connection is retired meanwhile, and its drop
        // (the socket's release) must not run here. `queue_tx` only takes the connection's
        // gate, a spinlock taken under no other.
        for c in self.conns.lock().iter().flatten() {
            c.queue_tx();
        }
    }
}

impl WorkItem for Session {
    type Pointer = Arc<Session>;

    fn run(this: Arc<Session>) {
        this.enforce_grace();
    }
}

impl WorkItem<1> for Session {
    type Pointer = Arc<Session>;

    fn run(this: Arc<Session>) {
        this.scan();
    }
}

impl Tick for Session {
    fn tick(this: Arc<Session>) {
        this.run_tick();
        // Closed once the session stops: then this does nothing.
        Ticker::arm(&this, &this.queues.ctl, TICK_MS);
    }
}

impl Session {
    /// Connects to the first portal that answers and logs in the leading connection (a new
    /// session, or reinstating the one with the same ISID); with `added` = (portal, CID,
    /// TSIH), logs in a connection added to the running session through that portal only.
    /// Gives the index of the portal used. Each portal's attempt, connect included, ends
    /// within login_timeout and by `deadline`; `stop` (or a fatal signal to the writer of
    /// `start`) interrupts it within `RECV_SLICE_MS` once connected.
    fn connect_and_login(
        &self,
        bufs: &mut LoginBuffers,
        deadline: Option<Deadline>,
        added: Option<(usize, u16, u16)>,
    ) -> core::result::Result<(TcpStream, LoginComplete, usize), Failure> {
        let settings = &self.settings;
        let isid = self.isid;
        let cancelled = || self.stopping.load(Ordering::Acquire) || fatal_signal_pending();
        let timeout_ms = u64::from(settings.login_timeout_s).saturating_mul(1000);
        let mut challenge = [0u8; 16];
        random_bytes(&mut challenge);
        let mut ident = [0u8; 1];
        random_bytes(&mut ident);
        let chap = &settings.chap;
        let mut algorithms = [ChapAlgorithm::Md5; 4];
        let mut n_alg = 0;
        for alg in chap.algorithms.iter().flatten() {
            if let Some(slot) = algorithms.get_mut(n_alg) {
                *slot = *alg;
                n_alg += 1;
            }
        }
        let chap_config =
            (!chap.user.as_bytes().is_empty() && !chap.secret.is_empty()).then(|| ChapConfig {
                user: chap.user.as_str(),
                secret: chap.secret.expose(),
                algorithms: algorithms.get(..n_alg).unwrap_or(&[]),
                mutual: (!chap.mutual_secret.is_empty()).then(|| MutualChap {
                    target_user: chap.mutual_user.as_str(),
                    secret: chap.mutual_secret.expose(),
                    challenge: &challenge,
                    identifier: ident[0],
                }),
            });
        let cfg = LoginConfig {
            initiator_name: settings.initiator_name.as_str(),
            initiator_alias: None,
            target_name: settings.target_name.as_str(),
            session_type: SessionType::Normal,
            isid,
            tsih: added.map_or(0, |(_, _, tsih)| tsih),
            cid: added.map_or(LEADING_CID, |(_, cid, _)| cid),
            itt: 0,
            // An added connection's login carries the session's current CmdSN.
            cmd_sn: match added {
                Some(_) => self.io.lock().ffp.window.immediate(),
                None => 1,
            },
            exp_stat_sn: 0,
            chap: chap_config,
            limits: Limits {
                // The connections the portals ask for: the target answers with what it grants.
                max_connections: u16::try_from(settings.connections()).unwrap_or(1).max(1),
                ..settings.limits
            },
        };
        let mut last = Failure::ConnectionRefused;
        let only = added.map(|(portal, _, _)| portal);
        for (index, portal) in settings.portals().enumerate() {
            if only.is_some_and(|i| i != index) {
                continue;
            }
            if cancelled() {
                return Err(Failure::Interrupted);
            }
            let attempt = match deadline {
                Some(d) => Deadline::after_ms(timeout_ms).min(d),
                None => Deadline::after_ms(timeout_ms),
            };
            if attempt.passed() {
                return Err(Failure::Timeout);
            }
            let stream = match TcpStream::connect(&portal.addr, portal.ifindex, attempt, &cancelled) {
                Ok(s) => s,
                Err(e) => {
                    last = Failure::from_socket(e);
                    continue;
                }
            };
            stream.set_nodelay();
            match login::login(&stream, &cfg, &KernelChapDigest, bufs, attempt, &cancelled) {
                Ok(mut done) => {
                    // The target's MaxRecvDataSegmentLength (up to 16 MiB) bounds what we send;
                    // we send at most MAX_XMIT_SEGMENT per PDU, so no buffer's size is the peer's
                    // to choose.
                    let xmit = &mut done.params.conn.max_xmit_data_segment_length;
                    *xmit = (*xmit).min(MAX_XMIT_SEGMENT);
                    return Ok((stream, done, index));
                }
                // Another portal may answer; a refusal by the target will not change.
                Err(
                    f @ (Failure::ConnectionRefused
                    | Failure::Unreachable
                    | Failure::Timeout
                    | Failure::ConnectionReset),
                ) => last = f,
                Err(f) => return Err(f),
            }
        }
        Err(last)
    }
}
