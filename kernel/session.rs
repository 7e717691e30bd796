// SPDX-License-Identifier: GPL-2.0

//! A session: the logged-in iSCSI session of a running channel, registered as a SCSI host.
//!
//! The SCSI midlayer hands commands to [`HostOps::queue_command`], which puts each on the
//! connection's send ring and sends it right away if it is alone in flight (otherwise the
//! connection's transmit work does); the connection's receive path (its socket's data-ready
//! callback, usually in softirq context; under load its receive work) hands every PDU the
//! target sends to [`Session::handle_pdu`], which checks it against the command it names
//! (proto's `task`) and completes it. A session
//! worker on the control workqueue pings an idle connection and, when the connection is lost
//! (ErrorRecoveryLevel 0), blocks the host, requeues the commands in flight, logs in again
//! (session reinstatement: same ISID) and unblocks the host; if that does not succeed within
//! the replacement timeout, held and new I/O fails.
//!
//! Locks, always taken in this order: `op` (one control operation at a time: stop, pause,
//! resume, recovery), a connection's `tx` (one sender), `io` (tasks, sequence numbers, link; a
//! softirq-safe spinlock, as the receive path takes it), `ctl` (phase, host, waiters; never
//! under `io`, never in the receive path, which reports through atomics instead). A
//! connection's send ring (`pending`) nests inside `io`.

use crate::channel::{Settings, Text};
use crate::connection::{Connection, Framing, Pending, Placement, Tx, MAX_PING_DATA};
use crate::control::Shared;
use crate::login::{self, Failure, LoginBuffers};
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
use crate::sys::mem::{now_ms, random_bytes, sleep_ms};
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

/// ITTs of the session's own PDUs (see tasks.rs).
const PING_ITT: u32 = SESSION_ITT;
const TMF_ITT: u32 = SESSION_ITT + 1;
const LOGOUT_ITT: u32 = SESSION_ITT + 2;

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
    /// Our outstanding NOP-Out ping: when it left (ms).
    ping_sent_ms: Option<u64>,
}

impl Io {
    /// Takes what every target PDU says about sequence numbers: the command window always,
    /// StatSN when the PDU carries status.
    fn ack(&mut self, stat_sn: Option<u32>, exp_cmd_sn: u32, max_cmd_sn: u32) {
        self.window.update(exp_cmd_sn, max_cmd_sn);
        if let Some(sn) = stat_sn {
            if serial::ge(sn, self.exp_stat_sn) {
                self.exp_stat_sn = sn.wrapping_add(1);
            }
        }
    }
}

/// Control state: the phase, the SCSI host, and what waiters wait for.
struct Ctl {
    phase: Phase,
    host: Option<Host>,
    /// Set by a failing connection, taken by the worker.
    lost: Option<Failure>,
    worker_running: bool,
    recoveries: u64,
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
    op: Mutex<()>,
    /// Taken in the receive path (softirq) too.
    #[pin]
    io: SpinLockBh<Io>,
    #[pin]
    ctl: Mutex<Ctl>,
    #[pin]
    changed: CondVar,
    #[pin]
    worker: Work<Session>,
    stopping: AtomicBool,
    /// What the receive path reports to waiters (it runs in softirq context, where `ctl`, a
    /// mutex, cannot be taken): a rescan request (REPORTED LUNS DATA HAS CHANGED), the
    /// logout response, the task management response (`NO_TMF_RESPONSE` until one comes).
    rescan: AtomicBool,
    logout_done: AtomicBool,
    tmf_response: AtomicU32,
    tsih: AtomicU32,
    stats: SessionStats,
}

/// `Session::tmf_response` while no response has come.
const NO_TMF_RESPONSE: u32 = u32::MAX;

/// Waits on `changed` last at most this long before looking again: the receive path sets its
/// flags without `ctl` (softirq context), so a wake-up can fall between a waiter's look and its
/// sleep.
const WAIT_SLICE_MS: u32 = 50;

impl_has_work! {
    impl HasWork<Self> for Session { self.worker }
}

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
    /// Logs in to the channel's target (trying its portals in order), registers the SCSI host
    /// and scans its LUNs; returns when the disks are there or the start has failed.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        name: &str,
        settings: &Settings,
    ) -> core::result::Result<Arc<Self>, Failure> {
        // ISID type 10b: random (RFC 7143 section 11.12.5).
        let mut isid = [0u8; 6];
        random_bytes(&mut isid);
        isid[0] = 0x80 | (isid[0] & 0x3f);
        let (stream, done) = connect_and_login(settings, isid)?;
        let mut text = Text::new();
        text.set(name.as_bytes()).map_err(|_| Failure::NoMemory)?;
        let depth = settings.queue_depth;
        let tasks = TaskTable::new(depth).map_err(|_| Failure::NoMemory)?;
        let session = Arc::pin_init(
            pin_init!(Self {
                name: text,
                shared: shared.clone(),
                settings: settings.clone(),
                isid,
                op <- new_mutex!(()),
                io <- new_spinlock_bh!(Io {
                    link: Link::Up,
                    conn: None,
                    tasks,
                    window: CmdWindow::new(done.exp_cmd_sn, done.exp_cmd_sn, done.max_cmd_sn),
                    exp_stat_sn: done.stat_sn.wrapping_add(1),
                    params: done.params,
                    ping_sent_ms: None,
                }),
                ctl <- new_mutex!(Ctl {
                    phase: Phase::Running,
                    host: None,
                    lost: None,
                    worker_running: false,
                    recoveries: 0,
                }),
                changed <- new_condvar!(),
                worker <- new_work!("core_iscsi::session"),
                stopping: AtomicBool::new(false),
                rescan: AtomicBool::new(false),
                logout_done: AtomicBool::new(false),
                tmf_response: AtomicU32::new(NO_TMF_RESPONSE),
                tsih: AtomicU32::new(done.tsih.into()),
                stats: SessionStats::default(),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| Failure::NoMemory)?;
        if let Err(why) = session.attach(stream, &done.params) {
            session.stop();
            return Err(why);
        }
        let params = HostParams {
            can_queue: depth,
            cmd_per_lun: depth,
            max_sectors: 2048,
            sg_tablesize: 256,
            max_lun: 16384,
            nr_hw_queues: 1,
        };
        let ops: Arc<dyn HostOps> = session.clone();
        let host = match Host::register(ops, &params, kernel::c_str!("core_iscsi")) {
            Ok(host) => host,
            Err(_) => {
                session.stop();
                return Err(Failure::NoMemory);
            }
        };
        {
            let mut ctl = session.ctl.lock();
            ctl.worker_running = true;
            ctl.host = Some(host);
        }
        if shared.ctl.enqueue(session.clone()).is_err() {
            session.ctl.lock().worker_running = false;
        }
        // Scan now, so the disks exist when `start` returns.
        if let Some(host) = &session.ctl.lock().host {
            host.scan();
        }
        Ok(session)
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
        // Room for every command slot's command and bursts, plus pings.
        let capacity = usize::from(self.settings.queue_depth)
            .saturating_mul(usize::from(sp.max_outstanding_r2t.max(1)).saturating_add(1))
            .saturating_add(4);
        // A send that makes no progress this long means a dead peer: the connection fails and
        // recovery starts, instead of the tx lock being held forever.
        let send_timeout_ms = (self.settings.nopout_interval_s + self.settings.nopout_timeout_s)
            .max(10)
            .saturating_mul(1000);
        let conn = Connection::start(
            self.clone(),
            stream,
            framing(params),
            capacity,
            send_timeout_ms,
        )
        .map_err(|_| Failure::NoMemory)?;
        let mut io = self.io.lock();
        let old = io.conn.replace(conn);
        io.link = Link::Up;
        io.ping_sent_ms = None;
        drop(io);
        // A connection is dropped outside `io`, a spinlock: releasing its socket sleeps.
        drop(old);
        Ok(())
    }

    /// The SCSI host number.
    pub(crate) fn host_no(&self) -> Option<u32> {
        self.ctl.lock().host.as_ref().map(|h| h.host_no())
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
    /// asked for), each from the command's pages, MSG_MORE on all but the last unless `more`
    /// (the tx lock is held); false when the command went away part-way.
    pub(crate) fn send_data_outs(
        &self,
        conn: &Connection,
        tx: &mut Tx,
        itt: u32,
        lun: [u8; 8],
        seq: DataOutSeq,
        exp_stat_sn: u32,
        more: bool,
    ) -> core::result::Result<bool, Failure> {
        for out in seq {
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

    /// A connection failed: the worker recovers (if it is still the session's connection).
    pub(crate) fn connection_failed(&self, conn: &Arc<Connection>, why: Failure) {
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
    }

    /// Handles one PDU from the target (receive path: softirq context with the socket locked,
    /// so nothing here sleeps or sends; work for the sender goes through `push_pending`).
    pub(crate) fn handle_pdu(
        &self,
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
                                self.rescan.store(true, Ordering::Release);
                                self.changed.notify_all();
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
                self.logout_done.store(true, Ordering::Release);
                self.changed.notify_all();
            }
            Pdu::TaskMgmtResponse(t) => {
                self.io
                    .lock()
                    .ack(Some(t.stat_sn), t.exp_cmd_sn, t.max_cmd_sn);
                if t.itt == TMF_ITT {
                    self.tmf_response
                        .store(u32::from(t.response), Ordering::Release);
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

    /// Sends one session PDU (ping, task management, logout) on the current connection.
    fn send_own(&self, build: impl FnOnce(&mut Io) -> Pdu) -> core::result::Result<(), Failure> {
        let conn = self
            .io
            .lock()
            .conn
            .clone()
            .ok_or(Failure::ConnectionReset)?;
        let mut tx = conn.lock_tx();
        // What is queued goes first: a TMF or a logout never overtakes the commands before it,
        // nor carries the CmdSN of one still waiting (a command queued after the drain but
        // before `build` would be: look again under `io`, which every queuer holds).
        let pdu = loop {
            if let Err(why) = conn.drain(&mut tx) {
                drop(tx);
                conn.fail(why);
                return Err(why);
            }
            let mut io = self.io.lock();
            if conn.nothing_queued() {
                break build(&mut io);
            }
        };
        let bhs = Bhs {
            total_ahs_words: 0,
            data_segment_len: 0,
            pdu,
        };
        let result = conn.send_pdu(&mut tx, &bhs, &[], 0, false, |_| true);
        drop(tx);
        if let Err(why) = result {
            conn.fail(why);
            return Err(why);
        }
        Ok(())
    }

    /// Waits (up to RESPONSE_TIMEOUT_MS) for `done` (a flag the receive path sets) to hold.
    fn wait_for(&self, mut done: impl FnMut() -> bool) -> bool {
        self.wait_until(RESPONSE_TIMEOUT_MS.into(), |_| done().then_some(()))
            .is_some()
    }

    /// Waits up to `timeout_ms` for `outcome` (looked at under `ctl`, at every wake-up and at
    /// least every WAIT_SLICE_MS) to give an answer; `None` when the time is up.
    fn wait_until<T>(
        &self,
        timeout_ms: u64,
        mut outcome: impl FnMut(&Ctl) -> Option<T>,
    ) -> Option<T> {
        let deadline = now_ms().saturating_add(timeout_ms);
        let mut ctl = self.ctl.lock();
        loop {
            if let Some(answer) = outcome(&ctl) {
                return Some(answer);
            }
            let now = now_ms();
            if now >= deadline {
                return None;
            }
            let left = u32::try_from(deadline - now)
                .unwrap_or(u32::MAX)
                .min(WAIT_SLICE_MS);
            let _ = self
                .changed
                .wait_interruptible_timeout(&mut ctl, msecs_to_jiffies(left));
        }
    }

    /// Sends a task management request and waits for its response code.
    fn task_mgmt(&self, function: u8, lun: u64, ref_itt: u32, ref_cmd_sn: u32) -> Option<u8> {
        self.tmf_response.store(NO_TMF_RESPONSE, Ordering::Release);
        self.send_own(|io| {
            Pdu::TaskMgmtRequest(TaskMgmtRequest {
                immediate: true,
                function,
                lun: Lun::from_linux(lun).0,
                itt: TMF_ITT,
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
            response = u8::try_from(self.tmf_response.load(Ordering::Acquire)).ok();
            response.is_some()
        });
        response
    }

    /// Drops the connection and waits for the session worker to log in again: reinstating the
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
        // recover() ends in Running or Failed, or returns when the session stops; this limit
        // is a generous bound on that (its last round of logins may overrun its deadline), not
        // a timeout of its own: past it the midlayer offlines the disks, which a later
        // recovery does not bring back.
        let limit_s = s
            .replacement_timeout_s
            .saturating_add(logins)
            .saturating_mul(2)
            .saturating_add(u32::from(self.io.lock().params.session.default_time2wait))
            .saturating_add(RESPONSE_TIMEOUT_MS / 1000);
        let outcome = self.wait_until(u64::from(limit_s) * 1000, |ctl| {
            if self.stopping.load(Ordering::Acquire) {
                return Some(EhOutcome::Failed);
            }
            match ctl.phase {
                // Logged in again only once a live connection other than the one failed here
                // is in place (the worker may not have seen the failure yet, or the failure
                // may have hit a connection a recovery had just attached).
                Phase::Running => {
                    let io = self.io.lock();
                    let fresh = io.conn.as_ref().is_some_and(|c| {
                        !c.is_dead() && old.as_ref().map_or(true, |o| !Arc::ptr_eq(c, o))
                    });
                    fresh.then_some(EhOutcome::Success)
                }
                Phase::Recovering => None,
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
        self.logout_done.store(false, Ordering::Release);
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
        if sent.is_ok() && !self.wait_for(|| self.logout_done.load(Ordering::Acquire)) {
            pr_warn!(
                "core-iscsi: channel {}: no logout response\n",
                self.name.as_str()
            );
        }
    }

    /// Takes the connection away from the data path and waits until nothing uses it; the
    /// commands in flight are completed with `result` (requeued, or failed).
    fn detach(&self, link: Link, result: CommandResult) {
        let conn = {
            let mut io = self.io.lock();
            io.link = link;
            io.conn.take()
        };
        if let Some(conn) = &conn {
            conn.close();
            // Senders in queuecommand hold the tx lock; once closed they fail fast.
            drop(conn.lock_tx());
        }
        self.shared.io.flush();
        self.shared.xmit.flush();
        if let Some(conn) = &conn {
            conn.release_placement();
        }
        self.io.lock().tasks.finish_all(Ending::result(result));
    }

    /// Logs in again on a new connection, reinstating the session (same ISID).
    fn relogin(self: &Arc<Self>) -> core::result::Result<(), Failure> {
        let (stream, done) = connect_and_login(&self.settings, self.isid)?;
        {
            let mut io = self.io.lock();
            io.window = CmdWindow::new(done.exp_cmd_sn, done.exp_cmd_sn, done.max_cmd_sn);
            io.exp_stat_sn = done.stat_sn.wrapping_add(1);
            io.params = done.params;
        }
        self.tsih.store(done.tsih.into(), Ordering::Relaxed);
        self.attach(stream, &done.params)
    }

    fn set_phase(&self, phase: Phase) {
        self.ctl.lock().phase = phase;
        self.changed.notify_all();
    }

    fn with_host(&self, f: impl FnOnce(&Host)) {
        if let Some(host) = &self.ctl.lock().host {
            f(host);
        }
    }

    /// ErrorRecoveryLevel 0 recovery (worker context, `op` held): hold the I/O, log in again
    /// within the replacement timeout, release the I/O; or give up and fail it.
    fn recover(self: &Arc<Self>, why: Failure) {
        let _ = why; // already logged by connection_failed
        self.set_phase(Phase::Recovering);
        self.ctl.lock().recoveries += 1;
        self.with_host(|h| h.block());
        self.detach(Link::Down, CommandResult::HostError(HostByte::Requeue));
        let deadline =
            now_ms().saturating_add(u64::from(self.settings.replacement_timeout_s) * 1000);
        let mut last;
        let mut backoff_ms = 1000u32;
        // RFC 7143 section 6.1: wait DefaultTime2Wait before logging in again.
        let time2wait = u32::from(self.io.lock().params.session.default_time2wait);
        if time2wait > 0 {
            let mut ctl = self.ctl.lock();
            if !self.stopping.load(Ordering::Acquire) {
                let _ = self
                    .changed
                    .wait_interruptible_timeout(&mut ctl, msecs_to_jiffies(time2wait * 1000));
            }
        }
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            match self.relogin() {
                Ok(()) => {
                    pr_info!(
                        "core-iscsi: channel {}: session recovered\n",
                        self.name.as_str()
                    );
                    self.set_phase(Phase::Running);
                    self.with_host(|h| h.unblock());
                    return;
                }
                Err(f) => last = f,
            }
            let now = now_ms();
            if now >= deadline {
                break;
            }
            let wait = backoff_ms.min(u32::try_from(deadline - now).unwrap_or(u32::MAX));
            let mut ctl = self.ctl.lock();
            if !self.stopping.load(Ordering::Acquire) {
                let _ = self
                    .changed
                    .wait_interruptible_timeout(&mut ctl, msecs_to_jiffies(wait));
            }
            drop(ctl);
            backoff_ms = (backoff_ms * 2).min(5000);
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
        self.with_host(|h| h.unblock());
    }

    /// Pings an idle connection; a ping unanswered in time means the connection is dead.
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

    /// The session worker: keepalive, recovery, rescans; runs until the session stops.
    fn run_worker(self: Arc<Self>) {
        loop {
            let (lost, rescan) = {
                let mut ctl = self.ctl.lock();
                if ctl.lost.is_none()
                    && !self.rescan.load(Ordering::Acquire)
                    && !self.stopping.load(Ordering::Acquire)
                {
                    let _ = self
                        .changed
                        .wait_interruptible_timeout(&mut ctl, msecs_to_jiffies(1000));
                }
                (ctl.lost.take(), self.rescan.swap(false, Ordering::AcqRel))
            };
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            if let Some(why) = lost {
                let _op = self.op.lock();
                if !self.stopping.load(Ordering::Acquire) && self.ctl.lock().phase == Phase::Running
                {
                    self.recover(why);
                }
                continue;
            }
            if rescan {
                self.with_host(|h| h.rescan());
            }
            self.keepalive();
        }
        self.ctl.lock().worker_running = false;
        self.changed.notify_all();
    }

    /// Logs out while holding the host's I/O (queued in the block layer) until [`resume`].
    ///
    /// [`resume`]: Session::resume
    pub(crate) fn pause(&self) {
        let _op = self.op.lock();
        self.set_phase(Phase::Paused);
        self.with_host(|h| h.block());
        // Let what is in flight finish, so the logout is clean.
        let deadline = now_ms().saturating_add(RESPONSE_TIMEOUT_MS.into());
        while self.io.lock().tasks.in_flight() > 0 && now_ms() < deadline {
            sleep_ms(20);
        }
        self.logout();
        self.detach(Link::Down, CommandResult::HostError(HostByte::Requeue));
    }

    /// Logs in again after a pause and releases the held I/O.
    pub(crate) fn resume(self: &Arc<Self>) -> core::result::Result<(), Failure> {
        let _op = self.op.lock();
        self.relogin()?;
        self.set_phase(Phase::Running);
        self.with_host(|h| h.unblock());
        Ok(())
    }

    /// Removes the SCSI host and its disks, logs out and closes the connection; when it
    /// returns, no work of the session runs and the host is gone.
    pub(crate) fn stop(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify_all();
        let _op = self.op.lock();
        let host = {
            let mut ctl = self.ctl.lock();
            ctl.phase = Phase::Stopping;
            ctl.host.take()
        };
        if let Some(host) = host {
            // While the link is up the disks can flush their caches on the way out; otherwise
            // their I/O fails at once instead of waiting.
            {
                let mut io = self.io.lock();
                if io.link != Link::Up {
                    io.link = Link::Failed;
                }
            }
            host.unblock();
            host.remove();
        }
        if self.io.lock().link == Link::Up {
            self.logout();
        }
        self.detach(Link::Failed, CommandResult::HostError(HostByte::NoConnect));
        // The worker leaves its loop at its next wake-up (at most a second).
        let mut ctl = self.ctl.lock();
        while ctl.worker_running {
            let _ = self
                .changed
                .wait_interruptible_timeout(&mut ctl, msecs_to_jiffies(100));
        }
    }

    /// `negotiated`: the parameters in force.
    pub(crate) fn show_negotiated(&self, p: &mut crate::sys::configfs::Page<'_>) -> fmt::Result {
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
            // Flow control: the target's MaxCmdSN says wait.
            self.stats.window_full.fetch_add(1, Ordering::Relaxed);
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
            Some(0) => {
                // The target dropped the LUN's tasks: so do we (the midlayer owns them now).
                self.io
                    .lock()
                    .tasks
                    .finish_where(|slot| slot.lun == lun, Ending::Forget);
                EhOutcome::Success
            }
            _ => EhOutcome::Failed,
        }
    }

    fn target_reset(&self) -> EhOutcome {
        match self.task_mgmt(TMF_TARGET_WARM_RESET, 0, RESERVED_TAG, 0) {
            Some(0) => {
                self.io.lock().tasks.finish_all(Ending::Forget);
                EhOutcome::Success
            }
            // The last resort, as open-iscsi's: a new connection.
            _ => self.reset_session(),
        }
    }
}

impl WorkItem for Session {
    type Pointer = Arc<Session>;

    fn run(this: Arc<Session>) {
        this.run_worker();
    }
}

/// Connects to the first portal that answers and logs in (a new session, or reinstating the
/// one with the same ISID); the stream's timeouts bound the whole attempt.
fn connect_and_login(
    settings: &Settings,
    isid: [u8; 6],
) -> core::result::Result<(TcpStream, LoginComplete), Failure> {
    let timeout_ms = settings.login_timeout_s.saturating_mul(1000);
    let mut bufs = LoginBuffers::new().map_err(|_| Failure::NoMemory)?;
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
        let stream = match TcpStream::connect(portal, timeout_ms) {
            Ok(s) => s,
            Err(e) => {
                last = Failure::from_socket(e);
                continue;
            }
        };
        stream.set_nodelay();
        stream.set_timeouts(timeout_ms, timeout_ms);
        match login::login(&stream, &cfg, &KernelChapDigest, &mut bufs) {
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
