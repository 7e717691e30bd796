// SPDX-License-Identifier: GPL-2.0

//! A session: the logged-in iSCSI session of a running channel, registered as a SCSI host.
//!
//! The SCSI midlayer hands commands to [`HostOps::queue_command`], which puts each on the
//! connection's send ring and sends it right away if it is alone in flight (otherwise the
//! connection's transmit work does); the connection's receive path (its socket's data-ready
//! callback, usually in softirq context; under load its receive work) hands every PDU the
//! target sends to [`Session::handle_pdu`], which checks it against the command it names
//! (proto's `task`) and completes it. The session's ticker (a periodic work item on the
//! control workqueue) pings an idle connection, watches the command window and, when the
//! connection is lost (ErrorRecoveryLevel 0), blocks the host, requeues the commands in flight,
//! logs in again (session reinstatement: same ISID) and unblocks the host; if that does not
//! succeed within the replacement timeout, held and new I/O fails.
//!
//! Locks, always taken in this order: `op` (one control operation at a time: start, stop,
//! pause, resume, recovery; it holds the SCSI host, and is the only lock of ours held when the
//! midlayer is called: block, unblock, register, remove; a scan holds none), a connection's
//! `tx` (one sender; only senders wait for it), `io` (tasks, sequence numbers, link; a
//! softirq-safe spinlock, as the receive path takes it), `ctl` (phase, waiters; held only for
//! a few instructions, never across a call into the midlayer, a socket or a sleep other than
//! its condition variable's; never under `io`, never in the receive path, which reports
//! through atomics instead). A connection's send ring (`pending`) nests inside `io`. Every
//! wait has a bound: see Documentation/design.md, "Waits and their bounds".

use crate::channel::{Settings, Text};
use crate::connection::{Connection, Framing, Pending, Placement, Tx, MAX_PING_DATA};
use crate::control::Shared;
use crate::login::{self, Failure, LoginBuffers};
use crate::sys::ticker::{impl_has_ticker, Tick, Ticker};
use crate::proto::chap::{ChapAlgorithm, ChapConfig, MutualChap};
use crate::proto::dataout::{DataOutSeq, WriteParams, WritePlan};
use crate::proto::login::{LoginComplete, LoginConfig, SessionType};
use crate::proto::pdu::{
    Bhs, DataOut, Digests, LogoutRequest, Lun, NopOut, Pdu, ScsiCommand, TaskMgmtRequest,
    RESERVED_TAG,
};
use crate::proto::serial::{self, CmdWindow};
use crate::proto::task::Task;
use crate::proto::text::Params;
use crate::sys::bh_lock::{new_spinlock_bh, SpinLockBh, SpinLockBhBackend};
use crate::sys::crypto::KernelChapDigest;
use crate::sys::mem::{
    fatal_signal_pending, now_ms, random_bytes, signal_pending, sleep_ms, Deadline, NoIoScope,
};
use crate::sys::scsi::{
    Command, CommandRef, CommandResult, Direction, EhOutcome, Host, HostByte, HostOps, HostParams,
    QueueBusy,
};
use crate::sys::socket::TcpStream;
use crate::tasks::{Ending, Slot, TaskTable, SESSION_ITT};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::lock::Guard;
use kernel::sync::{Arc, CondVar, Mutex};
use kernel::time::msecs_to_jiffies;
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};
use kernel::{new_condvar, new_mutex};

/// ITTs of the session's own PDUs (see tasks.rs). Each task management request gets an ITT of
/// its own at or above `TMF_ITT_BASE`, so that a late answer to an earlier one (an abort that
/// timed out) is never taken for the answer to the next (the LUN reset that followed).
const PING_ITT: u32 = SESSION_ITT;
const LOGOUT_ITT: u32 = SESSION_ITT + 2;
const TMF_ITT_BASE: u32 = SESSION_ITT | 0x4000_0000;

/// How often the ticker runs: keepalive, the window watch.
const TICK_MS: u32 = 1000;

/// On `stop`, how long the disks' last commands (queued I/O, sd's SYNCHRONIZE CACHE) may take
/// on a live connection before they are failed at once.
pub(crate) const STOP_GRACE_MS: u32 = 10_000;

/// The largest data segment we send, whatever the target accepts (see `connect_and_login`).
const MAX_XMIT_SEGMENT: u32 = 256 * 1024;

/// How long a logout or a task management function may take before we give up on it.
const RESPONSE_TIMEOUT_MS: u32 = 10_000;

/// TASK MANAGEMENT FUNCTION codes (RFC 7143 section 11.5.1).
const TMF_ABORT_TASK: u8 = 1;
const TMF_LUN_RESET: u8 = 5;
const TMF_TARGET_WARM_RESET: u8 = 6;

/// Whether the data path can send.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Logged in: commands go out.
    Up,
    /// Recovering or paused: the host is blocked, a racing command is retried later.
    Down,
    /// Given up (replacement timeout) or stopping: commands fail at once.
    Failed,
}

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

/// The data path's shared state.
struct Io {
    link: Link,
    conn: Option<Arc<Connection>>,
    tasks: TaskTable,
    window: CmdWindow,
    exp_stat_sn: u32,
    params: Params,
    /// Our outstanding NOP-Out ping: when it was queued (ms).
    ping_sent_ms: Option<u64>,
    /// Since when (ms) commands have been waiting for a command window the target keeps
    /// closed; `None` while it is open.
    window_shut_since_ms: Option<u64>,
}

impl Io {
    /// Takes what every target PDU says about sequence numbers: the command window always,
    /// StatSN when the PDU carries status.
    fn ack(&mut self, stat_sn: Option<u32>, exp_cmd_sn: u32, max_cmd_sn: u32) {
        self.window.update(exp_cmd_sn, max_cmd_sn);
        if self.window.can_send() {
            self.window_shut_since_ms = None;
        }
        if let Some(sn) = stat_sn {
            if serial::ge(sn, self.exp_stat_sn) {
                self.exp_stat_sn = sn.wrapping_add(1);
            }
        }
    }
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

/// Counters of the session, shown in the channel's `stats`.
#[derive(Default)]
struct SessionStats {
    commands: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    window_full: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    aborts: AtomicU64,
}

/// A running session.
#[pin_data]
pub(crate) struct Session {
    name: Text<32>,
    shared: Arc<Shared>,
    settings: Settings,
    isid: [u8; 6],
    #[pin]
    op: Mutex<Op>,
    /// Taken in the receive path (softirq) too.
    #[pin]
    io: SpinLockBh<Io>,
    #[pin]
    ctl: Mutex<Ctl>,
    #[pin]
    changed: CondVar,
    /// Keepalive, window watch, recovery, rescans.
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
    /// One task management request at a time (the error handler, and a reset ioctl).
    #[pin]
    tmf: Mutex<()>,
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
    tsih: AtomicU32,
    stats: SessionStats,
}

/// What the receive path reports to waiters (it runs in softirq context, where `ctl`, a mutex,
/// cannot be taken): the logout response, and the task management response to the request in
/// progress, as one value (`tmf_answer`: its ITT in the high half, the response or
/// `NO_TMF_RESPONSE` in the low half), so that an answer is only ever taken for its own request.
struct Answers {
    logout_done: AtomicBool,
    tmf_answer: AtomicU64,
    /// Numbers the task management requests (their ITTs).
    tmf_seq: AtomicU32,
}

/// `Answers::tmf_answer` for request `itt` with `response`.
fn tmf_answer(itt: u32, response: u32) -> u64 {
    u64::from(itt) << 32 | u64::from(response)
}

/// `Session::host_no` while there is no host.
const NO_HOST: u32 = u32::MAX;

/// `Session::tmf_response` while no response has come.
const NO_TMF_RESPONSE: u32 = u32::MAX;

/// Waits on `changed` last at most this long before looking again: the receive path sets its
/// flags without `ctl` (softirq context), so a wake-up can fall between a waiter's look and its
/// sleep.
const WAIT_SLICE_MS: u32 = 50;

impl_has_work! {
    impl HasWork<Self> for Session { self.grace }
    impl HasWork<Self, 1> for Session { self.scan_work }
}
impl_has_ticker!(Session, ticker);

fn framing(params: &Params) -> Framing {
    Framing {
        digests: Digests {
            header: params.conn.header_digest,
            data: params.conn.data_digest,
        },
        max_recv: params.conn.max_recv_data_segment_length,
        max_xmit: params.conn.max_xmit_data_segment_length,
    }
}

impl Session {
    /// A session for a channel, not logged in yet: the channel holds it while [`Session::start`]
    /// runs, so that `stop` can interrupt the start.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        name: &str,
        settings: &Settings,
    ) -> core::result::Result<Arc<Self>, Failure> {
        // ISID type 10b: random (RFC 7143 section 11.12.5).
        let mut isid = [0u8; 6];
        random_bytes(&mut isid);
        isid[0] = 0x80 | (isid[0] & 0x3f);
        let mut text = Text::new();
        text.set(name.as_bytes()).map_err(|_| Failure::NoMemory)?;
        let tasks = TaskTable::new(settings.queue_depth).map_err(|_| Failure::NoMemory)?;
        let login = LoginBuffers::new().map_err(|_| Failure::NoMemory)?;
        Arc::pin_init(
            pin_init!(Self {
                name: text,
                shared: shared.clone(),
                settings: settings.clone(),
                isid,
                op <- new_mutex!(Op { host: None, login }),
                io <- new_spinlock_bh!(Io {
                    link: Link::Down,
                    conn: None,
                    tasks,
                    window: CmdWindow::new(1, 1, 0),
                    exp_stat_sn: 0,
                    params: Params::default(),
                    ping_sent_ms: None,
                    window_shut_since_ms: None,
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
                    logout_done: AtomicBool::new(false),
                    tmf_answer: AtomicU64::new(tmf_answer(0, NO_TMF_RESPONSE)),
                    tmf_seq: AtomicU32::new(0),
                },
                tmf <- new_mutex!(()),
                scan_work <- new_work!("core_iscsi::scan"),
                initial_scan: AtomicBool::new(false),
                scan_gate <- new_spinlock_bh!(true),
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
            let (stream, done) = self.connect_and_login(&mut op.login, None)?;
            if self.stopping.load(Ordering::Acquire) {
                return Err(Failure::Interrupted);
            }
            self.take_login(&done);
            self.attach(stream, &done.params)?;
            let depth = self.settings.queue_depth;
            let params = HostParams {
                can_queue: depth,
                cmd_per_lun: depth,
                max_sectors: 2048,
                sg_tablesize: 256,
                max_lun: 16384,
                nr_hw_queues: 1,
            };
            let ops: Arc<dyn HostOps> = self.clone();
            let host = Host::register(ops, &params, kernel::c_str!("core_iscsi"))
                .map_err(|_| Failure::NoMemory)?;
            self.host_no.store(host.host_no(), Ordering::Relaxed);
            op.host = Some(host);
            self.set_phase(Phase::Running);
            Ticker::arm(self, &self.shared.ctl, TICK_MS);
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
            let _ = self.shared.ctl.enqueue::<Arc<Self>, 1>(self.clone());
        }
    }

    /// Takes the sequence numbers and parameters a login ended with.
    fn take_login(&self, done: &LoginComplete) {
        {
            let mut io = self.io.lock();
            io.window = CmdWindow::new(done.exp_cmd_sn, done.exp_cmd_sn, done.max_cmd_sn);
            io.exp_stat_sn = done.stat_sn.wrapping_add(1);
            io.params = done.params;
            io.window_shut_since_ms = None;
        }
        self.tsih.store(done.tsih.into(), Ordering::Relaxed);
    }

    /// The module's workqueues.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Makes a logged-in stream the session's connection.
    fn attach(
        self: &Arc<Self>,
        stream: TcpStream,
        params: &Params,
    ) -> core::result::Result<(), Failure> {
        let sp = &params.session;
        // Room for every command slot's command and bursts, plus the session's own PDUs (one
        // ping, one task management request, one logout) and answers to the target's pings.
        let capacity = usize::from(self.settings.queue_depth)
            .saturating_mul(usize::from(sp.max_outstanding_r2t.max(1)).saturating_add(1))
            .saturating_add(8);
        let conn = Connection::start(
            self.clone(),
            stream,
            framing(params),
            capacity,
            self.stall_bound_ms(),
        )
        .map_err(|_| Failure::NoMemory)?;
        let mut io = self.io.lock();
        let old = io.conn.replace(conn);
        io.link = Link::Up;
        io.ping_sent_ms = None;
        drop(io);
        // Outside `io`, a spinlock: closing sleeps. Recovery and resume detach the old
        // connection first; were one still here, it must not outlive us with its callbacks
        // and work.
        if let Some(old) = old {
            old.close();
            old.cancel_work();
            old.release_placement();
        }
        Ok(())
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

    /// ExpStatSN for the next PDU we send.
    pub(crate) fn exp_stat_sn(&self) -> u32 {
        self.io.lock().exp_stat_sn
    }

    /// CmdSN for an immediate PDU (it does not advance the window).
    pub(crate) fn immediate_cmd_sn(&self) -> u32 {
        self.io.lock().window.immediate()
    }

    /// Copies `buf.len()` bytes at `offset` of command `itt`'s buffer into `buf`, under the lock
    /// that keeps the command from completing meanwhile; false if it is gone.
    pub(crate) fn copy_out(&self, itt: u32, offset: u32, buf: &mut [u8]) -> bool {
        self.io.lock().tasks.copy_out(itt, offset, buf)
    }

    /// Sends a PDU carrying `len` bytes at `offset` of command `itt`'s buffer: straight from
    /// the command's pages (the command lent out of the table meanwhile, so it cannot complete
    /// under us), or through the bounce buffer when a data digest must cover the bytes as sent
    /// (pages may change until transmitted, as iscsi_tcp also reasons). `Ok(false)`: the
    /// command is gone, and what its earlier PDUs held back with `more` has been pushed out.
    pub(crate) fn send_data(
        &self,
        conn: &Connection,
        tx: &mut Tx,
        bhs: &Bhs,
        itt: u32,
        offset: u32,
        len: u32,
        more: bool,
    ) -> core::result::Result<bool, Failure> {
        let sent = if len == 0 || conn.digests().data {
            conn.send_pdu(tx, bhs, &[], len as usize, more, |buf| {
                self.copy_out(itt, offset, buf)
            })?
        } else {
            // Its own statement: `io` (a spinlock) must be released before the send sleeps.
            let lent = self.io.lock().tasks.lend(itt);
            match lent {
                Some(cmd) => {
                    let sent = conn.send_pdu_pages(tx, bhs, &cmd, offset, len, more);
                    self.io.lock().tasks.give_back(itt, cmd);
                    sent.map(|()| true)?
                }
                None => false,
            }
        };
        if !sent {
            // The callers stop here: nothing else would send what MSG_MORE kept back.
            conn.push(tx);
        }
        Ok(sent)
    }

    /// Sends a sequence of Data-Out PDUs of `itt` (its unsolicited data, or the burst one R2T
    /// asked for: `r2t`), each from the command's pages, MSG_MORE on all but the last unless
    /// `more` (the tx lock is held); false when the command went away part-way.
    pub(crate) fn send_data_outs(
        &self,
        conn: &Connection,
        tx: &mut Tx,
        itt: u32,
        lun: [u8; 8],
        seq: DataOutSeq,
        exp_stat_sn: u32,
        more: bool,
        r2t: bool,
    ) -> core::result::Result<bool, Failure> {
        for out in seq {
            if r2t && out.final_ {
                // The R2T stops being outstanding before its last Data-Out leaves, not after:
                // the target may answer that PDU with its next R2T before this send returns.
                self.burst_done(itt);
            }
            let bhs = Bhs {
                total_ahs_words: 0,
                data_segment_len: out.len,
                pdu: Pdu::DataOut(DataOut {
                    final_: out.final_,
                    lun,
                    itt,
                    ttt: out.ttt,
                    exp_stat_sn,
                    data_sn: out.data_sn,
                    offset: out.offset,
                }),
            };
            let hold = more || !out.final_;
            if !self.send_data(conn, tx, &bhs, itt, out.offset, out.len, hold)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks a Data-In header whose `len` data bytes are about to be received, and lends its
    /// command out so they go straight into its buffer; `None` when no command in flight has
    /// this ITT (the data is then read and dropped).
    pub(crate) fn begin_data_in(
        &self,
        d: &crate::proto::pdu::DataIn,
        len: u32,
    ) -> core::result::Result<Option<Placement>, Failure> {
        let mut io = self.io.lock();
        io.ack(
            d.status_present.then_some(d.stat_sn),
            d.exp_cmd_sn,
            d.max_cmd_sn,
        );
        let Some(slot) = io.tasks.get_mut(d.itt) else {
            return Ok(None);
        };
        let step = slot.task.on_data_in(d, len).map_err(|e| {
            pr_warn!(
                "core-iscsi: channel {}: Data-In: {}\n",
                self.name.as_str(),
                e
            );
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            Failure::Protocol
        })?;
        // A read command is never lent to a sender: it is here.
        let cmd = io.tasks.lend(d.itt).ok_or(Failure::Protocol)?;
        Ok(Some(Placement {
            itt: d.itt,
            cmd,
            offset: step.offset,
            len,
            done: 0,
            completion: step.completion,
        }))
    }

    /// A placed Data-In segment is in: the command goes back, completing if it carried status.
    pub(crate) fn end_data_in(&self, conn: &Connection, p: Placement) {
        self.stats
            .read_bytes
            .fetch_add(p.len.into(), Ordering::Relaxed);
        let mut io = self.io.lock();
        io.tasks.give_back(p.itt, p.cmd);
        if let Some(c) = p.completion {
            let ending = Ending::with(completion_result(&c), c.residual, &[]);
            finish_received(conn, io, p.itt, ending);
        }
    }

    /// A placement cut short by a connection failure: the command goes back unfinished
    /// (recovery requeues it).
    pub(crate) fn abandon_data_in(&self, p: Placement) {
        self.io.lock().tasks.give_back(p.itt, p.cmd);
    }

    /// An R2T's burst for `itt` has been sent.
    pub(crate) fn burst_done(&self, itt: u32) {
        if let Some(slot) = self.io.lock().tasks.get_mut(itt) {
            slot.task.burst_done();
        }
    }

    /// A connection failed: the ticker recovers (if it is still the session's connection).
    pub(crate) fn connection_failed(self: &Arc<Self>, conn: &Arc<Connection>, why: Failure) {
        let current = self
            .io
            .lock()
            .conn
            .as_ref()
            .map(|c| Arc::ptr_eq(c, conn))
            .unwrap_or(false);
        if !current {
            return;
        }
        // The end of a connection we are logging out of is no loss: nothing to recover. While
        // stopping, what the disks' removal still sends must then fail at once, not be told
        // "busy" by a link that is up on a dead connection, forever.
        let phase = self.ctl.lock().phase;
        match phase {
            Phase::Stopping => {
                self.io.lock().link = Link::Failed;
                return;
            }
            Phase::Paused => return,
            _ => {}
        }
        pr_warn!(
            "core-iscsi: channel {}: connection lost: {}\n",
            self.name.as_str(),
            why
        );
        let mut ctl = self.ctl.lock();
        if ctl.lost.is_none() {
            ctl.lost = Some(why);
        }
        drop(ctl);
        self.changed.notify_all();
        Ticker::kick(self, &self.shared.ctl);
    }

    /// Handles one PDU from the target (receive path: softirq context with the socket locked,
    /// so nothing here sleeps or sends; work for the sender goes through `push_pending`).
    pub(crate) fn handle_pdu(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        pdu: &Bhs,
        _ahs: &[u8],
        data: &[u8],
    ) -> core::result::Result<(), Failure> {
        let protocol = |what: fmt::Arguments<'_>| {
            pr_warn!("core-iscsi: channel {}: {}\n", self.name.as_str(), what);
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            Failure::Protocol
        };
        match &pdu.pdu {
            Pdu::ScsiResponse(r) => {
                let mut io = self.io.lock();
                io.ack(Some(r.stat_sn), r.exp_cmd_sn, r.max_cmd_sn);
                let Some(slot) = io.tasks.get_mut(r.itt) else {
                    // A response to a command we aborted or requeued: nothing to do.
                    return Ok(());
                };
                let step = slot
                    .task
                    .on_response(r, data)
                    .map_err(|e| protocol(format_args!("SCSI Response: {}", e)))?;
                let result = completion_result(&step.completion);
                let ending = Ending::with(result, step.completion.residual, step.sense);
                finish_received(conn, io, r.itt, ending);
            }
            Pdu::DataIn(d) => {
                let mut io = self.io.lock();
                let stat_sn = d.status_present.then_some(d.stat_sn);
                io.ack(stat_sn, d.exp_cmd_sn, d.max_cmd_sn);
                let Some(slot) = io.tasks.get_mut(d.itt) else {
                    return Ok(());
                };
                let len = u32::try_from(data.len()).map_err(|_| Failure::Protocol)?;
                let step = slot
                    .task
                    .on_data_in(d, len)
                    .map_err(|e| protocol(format_args!("Data-In: {}", e)))?;
                io.tasks
                    .copy_in(d.itt, step.offset, data)
                    .map_err(|_| protocol(format_args!("Data-In past the buffer")))?;
                self.stats
                    .read_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if let Some(c) = step.completion {
                    let ending = Ending::with(completion_result(&c), c.residual, &[]);
                    finish_received(conn, io, d.itt, ending);
                }
            }
            Pdu::R2t(r) => {
                let mut io = self.io.lock();
                io.ack(None, r.exp_cmd_sn, r.max_cmd_sn);
                let Some(slot) = io.tasks.get_mut(r.itt) else {
                    return Ok(());
                };
                let seq = slot
                    .task
                    .on_r2t(r)
                    .map_err(|e| protocol(format_args!("R2T: {}", e)))?;
                let lun = Lun::from_linux(slot.lun).0;
                drop(io);
                self.stats
                    .write_bytes
                    .fetch_add(seq.remaining().into(), Ordering::Relaxed);
                conn.push_pending(Pending::Burst {
                    itt: r.itt,
                    lun,
                    seq,
                })?;
            }
            Pdu::NopIn(n) => {
                let mut io = self.io.lock();
                let ours = n.itt != RESERVED_TAG;
                io.ack(ours.then_some(n.stat_sn), n.exp_cmd_sn, n.max_cmd_sn);
                if n.itt == PING_ITT {
                    io.ping_sent_ms = None;
                }
                drop(io);
                if n.ttt != RESERVED_TAG {
                    // The target pings us: answer with its TTT and its ping data.
                    if data.len() > MAX_PING_DATA {
                        return Err(protocol(format_args!("NOP-In ping data too long")));
                    }
                    let mut echo = [0u8; MAX_PING_DATA];
                    if let Some(dst) = echo.get_mut(..data.len()) {
                        dst.copy_from_slice(data);
                    }
                    conn.push_pending(Pending::NopReply {
                        ttt: n.ttt,
                        lun: n.lun,
                        len: data.len(),
                        data: echo,
                    })?;
                }
            }
            Pdu::AsyncMessage(a) => {
                self.io
                    .lock()
                    .ack(Some(a.stat_sn), a.exp_cmd_sn, a.max_cmd_sn);
                match a.event {
                    // SCSI asynchronous event: sense data; ASC/ASCQ 3Fh/0Eh is REPORTED LUNS
                    // DATA HAS CHANGED.
                    0 => {
                        if let Some(sense) =
                            crate::proto::scsi::parse_sense(data.get(2..).unwrap_or(&[])).ok()
                        {
                            if sense.asc == 0x3f && sense.ascq == 0x0e {
                                self.queue_scan();
                            }
                        }
                    }
                    // The target asks us to log out, or will drop the connection or the
                    // session: at ErrorRecoveryLevel 0, log in again (reinstating it).
                    1..=3 => {
                        pr_info!(
                            "core-iscsi: channel {}: target requests logout (event {})\n",
                            self.name.as_str(),
                            a.event
                        );
                        return Err(Failure::ConnectionReset);
                    }
                    // Parameter renegotiation, vendor events: nothing to do.
                    _ => {}
                }
            }
            Pdu::Reject(r) => {
                let mut io = self.io.lock();
                io.ack(Some(r.stat_sn), r.exp_cmd_sn, r.max_cmd_sn);
                // The data segment is the rejected PDU's header; fail the command it carried.
                let itt = data
                    .get(16..20)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes);
                pr_warn!(
                    "core-iscsi: channel {}: target rejected a PDU (reason {:#x})\n",
                    self.name.as_str(),
                    r.reason
                );
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(itt) = itt {
                    io.tasks.finish(
                        itt,
                        Ending::result(CommandResult::HostError(HostByte::Error)),
                    );
                }
            }
            Pdu::LogoutResponse(l) => {
                self.io
                    .lock()
                    .ack(Some(l.stat_sn), l.exp_cmd_sn, l.max_cmd_sn);
                self.answers.logout_done.store(true, Ordering::Release);
                self.changed.notify_all();
            }
            Pdu::TaskMgmtResponse(t) => {
                self.io
                    .lock()
                    .ack(Some(t.stat_sn), t.exp_cmd_sn, t.max_cmd_sn);
                // Only the answer to the request in progress: a late one to an earlier request
                // (whose wait timed out) has another ITT, and finds nothing to replace.
                let waiting = tmf_answer(t.itt, NO_TMF_RESPONSE);
                let answer = tmf_answer(t.itt, u32::from(t.response));
                if self
                    .answers
                    .tmf_answer
                    .compare_exchange(waiting, answer, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.changed.notify_all();
                }
            }
            Pdu::TextResponse(t) => {
                self.io
                    .lock()
                    .ack(Some(t.stat_sn), t.exp_cmd_sn, t.max_cmd_sn);
            }
            // Initiator opcodes, or a Login/Text/SNACK-related PDU we never asked for.
            _ => return Err(protocol(format_args!("unexpected PDU from the target"))),
        }
        Ok(())
    }

    /// Queues one session PDU (ping, task management, logout) on the current connection's send
    /// ring, behind what is queued there (so it never overtakes a command queued before it, and
    /// its CmdSN, the next one, is right), and wakes the transmit work. Nothing here waits for
    /// the tx lock: a sender that a slowly draining target holds up delays the PDU, not the
    /// caller, whose wait for the answer has its own bound.
    fn send_own(&self, build: impl FnOnce(&mut Io) -> Pdu) -> core::result::Result<(), Failure> {
        let conn = {
            let mut io = self.io.lock();
            let conn = match (&io.conn, io.link) {
                (Some(c), Link::Up) if !c.is_dead() => c.clone(),
                _ => return Err(Failure::ConnectionReset),
            };
            let pdu = build(&mut io);
            conn.queue_own(pdu)?;
            conn
        };
        conn.wake_sender();
        Ok(())
    }

    /// Waits up to RESPONSE_TIMEOUT_MS for `done` (a flag the receive path sets) to hold;
    /// false when the time is up, the connection is gone, or a stop's grace period is over.
    fn wait_for(&self, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Deadline::after_ms(RESPONSE_TIMEOUT_MS.into());
        self.wait_until(deadline, |_| {
            if done() {
                return Some(true);
            }
            let io = self.io.lock();
            let live = io.link == Link::Up && io.conn.as_ref().is_some_and(|c| !c.is_dead());
            (!live).then_some(false)
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

    /// Sends a task management request (an ITT of its own) and waits for its response code.
    fn task_mgmt(&self, function: u8, lun: u64, ref_itt: u32, ref_cmd_sn: u32) -> Option<u8> {
        let _one = self.tmf.lock();
        let seq = self.answers.tmf_seq.fetch_add(1, Ordering::Relaxed);
        // A new ITT each time, never RESERVED_TAG (0xffffffff): the low 30 bits run through
        // 0..=0x3fff_fffe.
        let itt = TMF_ITT_BASE | (seq % 0x3fff_ffff);
        self.answers
            .tmf_answer
            .store(tmf_answer(itt, NO_TMF_RESPONSE), Ordering::Release);
        self.send_own(|io| {
            Pdu::TaskMgmtRequest(TaskMgmtRequest {
                immediate: true,
                function,
                lun: Lun::from_linux(lun).0,
                itt,
                ref_task_tag: ref_itt,
                cmd_sn: io.window.immediate(),
                exp_stat_sn: io.exp_stat_sn,
                ref_cmd_sn,
                exp_data_sn: 0,
            })
        })
        .ok()?;
        let mut response = None;
        self.wait_for(|| {
            let answer = self.answers.tmf_answer.load(Ordering::Acquire);
            // The low half, of our own request (the high half is its ITT).
            response = (answer >> 32 == u64::from(itt))
                .then(|| u8::try_from(answer & 0xffff_ffff).ok())
                .flatten();
            response.is_some()
        });
        response
    }

    /// After a LUN or target reset the target answered: forgets the commands it covered
    /// (`which`), drops their queued R2T bursts, and waits (bounded) for those lent to a sender
    /// to come back, since until then the sender reads their pages. `Success` only then: the
    /// midlayer frees or reuses what it gets back.
    fn forget_covered(&self, which: impl Fn(&Slot) -> bool) -> EhOutcome {
        let conn = {
            let mut io = self.io.lock();
            io.tasks.finish_where(&which, Ending::Forget);
            let conn = io.conn.clone();
            if let Some(c) = &conn {
                c.drop_bursts(|itt| io.tasks.is_live(itt));
            }
            conn
        };
        drop(conn);
        let deadline = Deadline::after_ms(self.stall_bound_ms().into());
        let back = self.wait_until(deadline, |_| {
            (!self.io.lock().tasks.any(&which)).then_some(())
        });
        match back {
            Some(()) => EhOutcome::Success,
            None => {
                pr_warn!(
                    "core-iscsi: channel {}: reset: a command is still being sent; not done\n",
                    self.name.as_str()
                );
                EhOutcome::Failed
            }
        }
    }

    /// Drops the connection and waits for the ticker's ordinary recovery: reinstating the
    /// session (same ISID) makes the target end every task of the old connection (RFC 7143
    /// section 6.3.5), which a reset it did not do could not promise. `Success` once the
    /// session runs on a new, live connection; `Failed` if it failed instead, is being
    /// stopped, or did not come back in time. Either way no command is touched again: the
    /// midlayer takes them back even on `Failed`.
    fn reset_session(&self) -> EhOutcome {
        let old = {
            let mut io = self.io.lock();
            // From the error handler thread, which runs once every command in flight has
            // failed, they are all its own. (A reset asked for through SG_SCSI_RESET may find
            // others: forgotten too, they time out and are retried.) Forget them now, or the
            // recovery would requeue them under its feet.
            io.tasks.finish_all(Ending::Forget);
            io.conn.clone()
        };
        if let Some(conn) = &old {
            conn.fail(Failure::ResetFailed);
            // A command lent out is forgotten when it comes back; bring it back before we
            // answer. Senders hold `tx` and stop at the shut connection; the receive path
            // gives its placement back here and stops at the dead connection.
            drop(conn.lock_tx());
            conn.release_placement();
        }
        let s = &self.settings;
        let logins = s
            .login_timeout_s
            .saturating_mul(u32::try_from(s.portals().count()).unwrap_or(u32::MAX));
        // recover() ends in Running or Failed within replacement_timeout (plus one connect),
        // or returns when the session stops; this limit is a generous bound on that, not a
        // timeout of its own: past it the midlayer offlines the disks, which a later recovery
        // does not bring back.
        let limit_s = s
            .replacement_timeout_s
            .saturating_add(logins)
            .saturating_mul(2)
            .saturating_add(RESPONSE_TIMEOUT_MS / 1000);
        let deadline = Deadline::after_ms(u64::from(limit_s) * 1000);
        let outcome = self.wait_until(deadline, |ctl| {
            if self.stopping.load(Ordering::Acquire) {
                return Some(EhOutcome::Failed);
            }
            match ctl.phase {
                // Logged in again only once a live connection other than the one failed here
                // is in place (the ticker may not have seen the failure yet, or the failure
                // may have hit a connection a recovery had just attached).
                Phase::Running => {
                    let io = self.io.lock();
                    let fresh = io.conn.as_ref().is_some_and(|c| {
                        !c.is_dead() && old.as_ref().map_or(true, |o| !Arc::ptr_eq(c, o))
                    });
                    fresh.then_some(EhOutcome::Success)
                }
                Phase::Recovering | Phase::Starting => None,
                Phase::Failed(_) | Phase::Paused | Phase::Stopping => Some(EhOutcome::Failed),
            }
        });
        outcome.unwrap_or_else(|| {
            pr_warn!(
                "core-iscsi: channel {}: reset: the session did not come back in {} s\n",
                self.name.as_str(),
                limit_s
            );
            EhOutcome::Failed
        })
    }

    /// Logs out the session (best effort: a target that does not answer is closed on).
    fn logout(&self) {
        self.answers.logout_done.store(false, Ordering::Release);
        let sent = self.send_own(|io| {
            Pdu::LogoutRequest(LogoutRequest {
                immediate: true,
                reason: 0, // close the session
                itt: LOGOUT_ITT,
                cid: 0,
                cmd_sn: io.window.immediate(),
                exp_stat_sn: io.exp_stat_sn,
            })
        });
        if sent.is_ok() && !self.wait_for(|| self.answers.logout_done.load(Ordering::Acquire)) {
            pr_warn!(
                "core-iscsi: channel {}: no logout response\n",
                self.name.as_str()
            );
        }
    }

    /// Takes the connection away from the data path and waits until nothing uses it; the
    /// commands in flight are completed with `result` (requeued, or failed). Bounded: the
    /// socket is shut down before anything waits on it.
    fn detach(&self, link: Link, result: CommandResult) {
        let conn = {
            let mut io = self.io.lock();
            io.link = link;
            io.conn.take()
        };
        if let Some(conn) = &conn {
            conn.close();
            // A sender holding the tx lock fails fast on the shut socket and lets go.
            drop(conn.lock_tx());
            // This connection's own work only: another channel's stalled work is no concern
            // of ours.
            conn.cancel_work();
            conn.release_placement();
        }
        self.io.lock().tasks.finish_all(Ending::result(result));
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
        let (stream, done) = self.connect_and_login(login, Some(deadline))?;
        self.take_login(&done);
        self.attach(stream, &done.params)
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
        if let Some(h) = &op.host {
            h.block();
        }
        self.detach(Link::Down, CommandResult::HostError(HostByte::Requeue));
        let deadline =
            Deadline::after_ms(u64::from(self.settings.replacement_timeout_s) * 1000);
        let mut last = Failure::Timeout;
        let mut backoff_ms = 1000u32;
        // RFC 7143 section 6.1: wait DefaultTime2Wait before logging in again.
        let time2wait = u64::from(self.io.lock().params.session.default_time2wait);
        self.sleep_until(Deadline::after_ms(time2wait * 1000).min(deadline));
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
        self.io.lock().link = Link::Failed;
        self.set_phase(Phase::Failed(Failure::ReplacementTimeout));
        // Held I/O now fails instead of waiting forever.
        if let Some(h) = &op.host {
            h.unblock();
        }
    }

    /// Pings an idle connection; a ping unanswered in time means the connection is dead. The
    /// ping waits on the send ring like everything else: one stuck behind a slowly draining
    /// target times out as if it had been lost.
    fn keepalive(&self) {
        let interval = u64::from(self.settings.nopout_interval_s) * 1000;
        if interval == 0 {
            return;
        }
        let timeout = u64::from(self.settings.nopout_timeout_s) * 1000;
        let (conn, sent) = {
            let io = self.io.lock();
            if io.link != Link::Up {
                return;
            }
            (io.conn.clone(), io.ping_sent_ms)
        };
        let Some(conn) = conn else { return };
        match sent {
            Some(at) if now_ms().saturating_sub(at) > timeout => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                conn.fail(Failure::Timeout);
            }
            Some(_) => {}
            None if conn.idle_ms() >= interval => {
                conn.stats.nop_pings.fetch_add(1, Ordering::Relaxed);
                let _ = self.send_own(|io| {
                    io.ping_sent_ms = Some(now_ms());
                    Pdu::NopOut(NopOut {
                        immediate: true,
                        lun: [0; 8],
                        itt: PING_ITT,
                        ttt: RESERVED_TAG,
                        cmd_sn: io.window.immediate(),
                        exp_stat_sn: io.exp_stat_sn,
                    })
                });
            }
            None => {}
        }
    }

    /// A command window the target keeps closed while commands wait, for longer than a stalled
    /// send may last, fails the connection: the midlayer would otherwise retry them forever.
    fn watch_window(&self) {
        let stalled = {
            let io = self.io.lock();
            let shut_ms = io
                .window_shut_since_ms
                .map_or(0, |t| now_ms().saturating_sub(t));
            match &io.conn {
                Some(c) if io.link == Link::Up && shut_ms > u64::from(self.stall_bound_ms()) => {
                    Some(c.clone())
                }
                _ => None,
            }
        };
        if let Some(conn) = stalled {
            self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            conn.fail(Failure::WindowClosed);
        }
    }

    /// One run of the ticker: recovery after a lost connection, keepalive, the window watch.
    fn run_tick(self: &Arc<Self>) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let lost = self.ctl.lock().lost.take();
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
        let deadline = Deadline::after_ms(RESPONSE_TIMEOUT_MS.into());
        let _ = self.wait_until(deadline, |_| {
            (self.stopping.load(Ordering::Acquire) || self.io.lock().tasks.in_flight() == 0)
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

    /// The longest one round of logins takes: login_timeout per portal.
    fn login_bound_ms(&self) -> u64 {
        let portals = u64::try_from(self.settings.portals().count()).unwrap_or(u64::MAX);
        u64::from(self.settings.login_timeout_s)
            .saturating_mul(1000)
            .saturating_mul(portals.max(1))
    }

    /// Removes the SCSI host and its disks, logs out and closes the connection; when it
    /// returns, nothing of the session runs and the host is gone. Interrupts a start, resume
    /// or recovery in progress (within `RECV_SLICE_MS`, or a connect's login_timeout). The
    /// disks' last commands (queued I/O, sd's SYNCHRONIZE CACHE) get `STOP_GRACE_MS` on a live
    /// connection, then fail at once; the logout waits at most RESPONSE_TIMEOUT_MS.
    pub(crate) fn stop(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify_all();
        let mut op = self.op.lock();
        self.set_phase(Phase::Stopping);
        if let Some(host) = op.host.take() {
            // While the link is up the disks can flush their caches on the way out; otherwise
            // their I/O fails at once instead of waiting.
            {
                let mut io = self.io.lock();
                // A connection that failed before the ticker saw it is no live link.
                let live = io.conn.as_ref().is_some_and(|c| !c.is_dead());
                if io.link != Link::Up || !live {
                    io.link = Link::Failed;
                }
            }
            self.removed.store(false, Ordering::Release);
            let _ = self.shared.ctl.enqueue::<Arc<Self>, 0>(self.clone());
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

    /// `negotiated`: the parameters in force.
    pub(crate) fn show_negotiated(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        if self.ctl.lock().phase == Phase::Starting {
            // Not logged in yet: nothing is negotiated.
            return Ok(());
        }
        let (params, tsih) = (self.io.lock().params, self.tsih.load(Ordering::Relaxed));
        let s = &params.session;
        let c = &params.conn;
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let dg = |b: bool| if b { "CRC32C" } else { "None" };
        writeln!(p, "TSIH={}", tsih)?;
        writeln!(
            p,
            "ISID={:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.isid[0], self.isid[1], self.isid[2], self.isid[3], self.isid[4], self.isid[5]
        )?;
        writeln!(p, "HeaderDigest={}", dg(c.header_digest))?;
        writeln!(p, "DataDigest={}", dg(c.data_digest))?;
        writeln!(
            p,
            "MaxRecvDataSegmentLength={}",
            c.max_recv_data_segment_length
        )?;
        writeln!(
            p,
            "MaxXmitDataSegmentLength={}",
            c.max_xmit_data_segment_length
        )?;
        writeln!(p, "MaxConnections={}", s.max_connections)?;
        writeln!(p, "InitialR2T={}", yn(s.initial_r2t))?;
        writeln!(p, "ImmediateData={}", yn(s.immediate_data))?;
        writeln!(p, "MaxBurstLength={}", s.max_burst_length)?;
        writeln!(p, "FirstBurstLength={}", s.first_burst_length)?;
        writeln!(p, "DefaultTime2Wait={}", s.default_time2wait)?;
        writeln!(p, "DefaultTime2Retain={}", s.default_time2retain)?;
        writeln!(p, "MaxOutstandingR2T={}", s.max_outstanding_r2t)?;
        writeln!(p, "DataPDUInOrder={}", yn(s.data_pdu_in_order))?;
        writeln!(p, "DataSequenceInOrder={}", yn(s.data_sequence_in_order))?;
        writeln!(p, "ErrorRecoveryLevel={}", s.error_recovery_level)
    }

    /// `stats`: counters, `name value` per line; connection counters prefixed `conn0.`.
    pub(crate) fn show_stats(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        let (conn, in_flight) = {
            let io = self.io.lock();
            (io.conn.clone(), io.tasks.in_flight())
        };
        writeln!(p, "commands {}", get(&s.commands))?;
        writeln!(p, "in_flight {}", in_flight)?;
        writeln!(p, "read_bytes {}", get(&s.read_bytes))?;
        writeln!(p, "write_bytes {}", get(&s.write_bytes))?;
        writeln!(p, "errors {}", get(&s.errors))?;
        writeln!(p, "timeouts {}", get(&s.timeouts))?;
        writeln!(p, "aborts {}", get(&s.aborts))?;
        writeln!(p, "window_full {}", get(&s.window_full))?;
        writeln!(p, "recoveries {}", self.ctl.lock().recoveries)?;
        if let Some(conn) = conn {
            let c = &conn.stats;
            writeln!(p, "conn0.pdus_tx {}", get(&c.pdus_tx))?;
            writeln!(p, "conn0.pdus_rx {}", get(&c.pdus_rx))?;
            writeln!(p, "conn0.bytes_tx {}", get(&c.bytes_tx))?;
            writeln!(p, "conn0.bytes_rx {}", get(&c.bytes_rx))?;
            writeln!(p, "conn0.digest_errors {}", get(&c.digest_errors))?;
            writeln!(p, "conn0.r2ts {}", get(&c.r2ts))?;
            writeln!(p, "conn0.nop_pings {}", get(&c.nop_pings))?;
            writeln!(p, "conn0.rx_deferred {}", get(&c.rx_deferred))?;
        }
        Ok(())
    }

    /// Starts a SCSI command: checks, a CmdSN and an ITT, the command in the table, and its
    /// PDU on the connection's send ring, all under one hold of `io` so the ring holds
    /// commands in CmdSN order. Whoever holds the tx lock next sends it (`Connection::drain`).
    /// Gives the connection and the commands in flight, this one included; `None` when the
    /// command was completed instead (refused, or the session has failed).
    fn start_command(
        &self,
        cmd: Command,
    ) -> core::result::Result<Option<(Arc<Connection>, usize)>, QueueBusy> {
        let mut io = self.io.lock();
        let conn = match (io.link, &io.conn) {
            (Link::Up, Some(conn)) if !conn.is_dead() => conn.clone(),
            (Link::Failed, _) => {
                drop(io);
                cmd.complete(CommandResult::HostError(HostByte::NoConnect));
                return Ok(None);
            }
            // Recovering or paused: the midlayer holds it until the host is unblocked.
            _ => return Err(QueueBusy),
        };
        if !io.window.can_send() {
            // Flow control: the target's MaxCmdSN says wait (the ticker's window watch bounds
            // how long).
            self.stats.window_full.fetch_add(1, Ordering::Relaxed);
            io.window_shut_since_ms.get_or_insert_with(now_ms);
            return Err(QueueBusy);
        }
        let Some(itt) = io.tasks.reserve(cmd.tag()) else {
            return Err(QueueBusy);
        };
        // The host template declares max_cmd_len 16: longer CDBs (an extended-CDB AHS) never
        // come; refuse one rather than truncate it.
        let cdb = cmd.cdb();
        let mut cdb16 = [0u8; 16];
        match cdb16.get_mut(..cdb.len()) {
            Some(dst) => dst.copy_from_slice(cdb),
            None => {
                drop(io);
                cmd.complete(CommandResult::HostError(HostByte::Error));
                return Ok(None);
            }
        }
        let len = cmd.transfer_len();
        let (read, write) = match cmd.direction() {
            Direction::FromDevice => (len, 0),
            Direction::ToDevice => (0, len),
            Direction::None => (0, 0),
            // The block layer no longer issues bidirectional commands; refuse one rather than
            // send it as something else.
            Direction::Bidirectional => {
                drop(io);
                cmd.complete(CommandResult::HostError(HostByte::Error));
                return Ok(None);
            }
        };
        let task = Task::new(read, write, &WriteParams::from(&io.params));
        let plan = task.write_plan().copied();
        let Some(cmd_sn) = io.window.assign() else {
            return Err(QueueBusy);
        };
        let lun = cmd.lun();
        let header = ScsiCommand {
            immediate: false,
            final_: plan.map(|p| p.command_final()).unwrap_or(true),
            read: read > 0,
            write: write > 0,
            attr: 1, // SIMPLE
            lun: Lun::from_linux(lun).0,
            itt,
            expected_len: len,
            cmd_sn,
            // Filled in when it is sent: the newest by then.
            exp_stat_sn: 0,
            cdb: cdb16,
        };
        if io
            .tasks
            .insert(Slot::new(itt, cmd_sn, lun, task, cmd))
            .is_err()
        {
            // reserve() said the slot was free: cannot happen; the midlayer retries.
            return Err(QueueBusy);
        }
        if conn.queue_command(header, plan).is_err() {
            // The ring has room for every command slot: cannot happen. The command stays in
            // the table and recovery requeues it.
            drop(io);
            conn.fail(Failure::Protocol);
            return Ok(None);
        }
        let in_flight = io.tasks.in_flight();
        drop(io);
        self.stats.commands.fetch_add(1, Ordering::Relaxed);
        Ok(Some((conn, in_flight)))
    }

    /// Sends a queued SCSI command (the tx lock is held): the command PDU with its immediate
    /// data, then any unsolicited Data-Out; MSG_MORE on all but the last when `more`.
    pub(crate) fn send_command(
        &self,
        conn: &Connection,
        tx: &mut Tx,
        mut header: ScsiCommand,
        plan: Option<WritePlan>,
        more: bool,
    ) -> core::result::Result<(), Failure> {
        let itt = header.itt;
        // While it waited on the ring its connection may have failed and the session requeued
        // it: never send a command whose slot is gone or now holds another. (A TMF cannot have
        // ended it: everything sent under `tx` drains the ring first, and SCSI error handling
        // stops dispatch before a LUN or target reset.)
        {
            let mut io = self.io.lock();
            let current = io
                .tasks
                .get_mut(itt)
                .is_some_and(|slot| slot.cmd_sn == header.cmd_sn);
            if !current {
                if conn.is_dead() {
                    return Ok(());
                }
                // Cannot happen on a live connection (nothing but a dead connection's
                // detach ends a command that has not left). Were it to, skipping it would
                // leave a hole in CmdSN that stalls every later command at the target:
                // reconnect instead, which starts CmdSN afresh.
                pr_warn!(
                    "core-iscsi: channel {}: a queued command vanished before it was sent\n",
                    self.name.as_str()
                );
                return Err(Failure::Protocol);
            }
            header.exp_stat_sn = io.exp_stat_sn;
        }
        let immediate = plan.map(|p| p.immediate_len()).unwrap_or(0);
        let unsolicited = plan
            .map(|p| p.unsolicited().remaining() > 0)
            .unwrap_or(false);
        self.stats
            .write_bytes
            .fetch_add(u64::from(immediate), Ordering::Relaxed);
        let bhs = Bhs {
            total_ahs_words: 0,
            data_segment_len: immediate,
            pdu: Pdu::ScsiCommand(header),
        };
        if !self.send_data(conn, tx, &bhs, itt, 0, immediate, more || unsolicited)? {
            return Ok(());
        }
        let Some(plan) = plan else {
            return Ok(());
        };
        self.stats
            .write_bytes
            .fetch_add(u64::from(plan.unsolicited().remaining()), Ordering::Relaxed);
        self.send_data_outs(
            conn,
            tx,
            itt,
            header.lun,
            plan.unsolicited(),
            header.exp_stat_sn,
            more,
            false,
        )?;
        Ok(())
    }
}

/// Ends `itt` on the receive path: out of the table under `io`, completed once `io` is dropped
/// (`Connection::complete`, which may complete within the call).
fn finish_received(
    conn: &Connection,
    mut io: Guard<'_, Io, SpinLockBhBackend>,
    itt: u32,
    ending: Ending,
) {
    let done = io.tasks.take_finished(itt, ending);
    drop(io);
    if let Some(done) = done {
        conn.complete(done);
    }
}

/// What the midlayer gets for a completed task.
fn completion_result(c: &crate::proto::task::Completion) -> CommandResult {
    if c.completed_at_target() {
        CommandResult::Status(c.status)
    } else {
        CommandResult::HostError(HostByte::Error)
    }
}

impl HostOps for Session {
    fn queue_command(&self, cmd: Command) -> core::result::Result<(), QueueBusy> {
        let last = cmd.is_last();
        if let Some((conn, in_flight)) = self.start_command(cmd)? {
            conn.transmit_queued(in_flight, last);
        }
        Ok(())
    }

    fn abort(&self, cmd: &CommandRef<'_>) -> EhOutcome {
        self.stats.aborts.fetch_add(1, Ordering::Relaxed);
        let (found, conn) = {
            let mut io = self.io.lock();
            let found = io
                .tasks
                .itt_of_tag(cmd.tag())
                .and_then(|itt| io.tasks.get_mut(itt).map(|s| (itt, s.cmd_sn, s.lun)));
            (found, io.conn.clone())
        };
        let Some((itt, cmd_sn, lun)) = found else {
            // Completed meanwhile, or being completed: the receive path completes outside
            // `io` (`Connection::complete`). Wait for it to let go of the command before the
            // midlayer retries or reuses it.
            if let Some(conn) = conn {
                conn.wait_receive();
            }
            return EhOutcome::Success;
        };
        match self.task_mgmt(TMF_ABORT_TASK, lun, itt, cmd_sn) {
            // Function complete, or the task did not exist (it completed before the abort).
            Some(0) | Some(1) => {
                let mut io = self.io.lock();
                if io.tasks.get_mut(itt).is_none() || io.tasks.forget(itt) {
                    // Completed meanwhile, or now forgotten: the midlayer owns it.
                    EhOutcome::Success
                } else {
                    // Lent out to a sender: it cannot be forgotten now; let the midlayer
                    // escalate.
                    EhOutcome::Failed
                }
            }
            _ => EhOutcome::Failed,
        }
    }

    fn commit(&self) {
        // Sends what is queued without touching the connection's depth hint: blk-mq calls
        // this when a dispatch stops short (a busy device), which is load, not idleness.
        let conn = self.io.lock().conn.clone();
        if let Some(conn) = conn {
            conn.send_queued();
        }
    }

    fn device_reset(&self, lun: u64) -> EhOutcome {
        match self.task_mgmt(TMF_LUN_RESET, lun, RESERVED_TAG, 0) {
            // The target dropped the LUN's tasks: so do we (the midlayer owns them now).
            Some(0) => self.forget_covered(|slot| slot.lun == lun),
            _ => EhOutcome::Failed,
        }
    }

    fn target_reset(&self) -> EhOutcome {
        match self.task_mgmt(TMF_TARGET_WARM_RESET, 0, RESERVED_TAG, 0) {
            Some(0) => self.forget_covered(|_| true),
            // The last resort, as open-iscsi's: a new connection.
            _ => self.reset_session(),
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
        Ticker::arm(&this, &this.shared.ctl, TICK_MS);
    }
}

impl Session {
    /// Connects to the first portal that answers and logs in (a new session, or reinstating
    /// the one with the same ISID). Each portal's attempt, connect included, ends within
    /// login_timeout and by `deadline`; `stop` (or a fatal signal to the writer of `start`)
    /// interrupts it within `RECV_SLICE_MS` once connected.
    fn connect_and_login(
        &self,
        bufs: &mut LoginBuffers,
        deadline: Option<Deadline>,
    ) -> core::result::Result<(TcpStream, LoginComplete), Failure> {
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
            tsih: 0,
            cid: 0,
            itt: 0,
            cmd_sn: 1,
            exp_stat_sn: 0,
            chap: chap_config,
            limits: settings.limits,
        };
        let mut last = Failure::ConnectionRefused;
        for portal in settings.portals() {
            if cancelled() {
                return Err(Failure::Interrupted);
            }
            let attempt = match deadline {
                Some(d) => Deadline::after_ms(timeout_ms).min(d),
                None => Deadline::after_ms(timeout_ms),
            };
            let Some(left) = attempt.left_ms() else {
                return Err(Failure::Timeout);
            };
            let _ = left;
        let stream = match TcpStream::connect(portal, attempt, &cancelled) {
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
                    return Ok((stream, done));
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
