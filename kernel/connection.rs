// SPDX-License-Identifier: GPL-2.0

//! One TCP connection of a session in the full feature phase: the driver of the protocol
//! engine's connection half (`proto::ffp_conn::Conn`) on a kernel socket, in the shape of
//! nvme-tcp's per-queue transport: a socket, its engine under its own lock, a receive and a
//! transmit work item, and sends that hold no lock another path needs.
//!
//! **Receiving** runs in the socket's data-ready callback, as in iscsi_tcp: in softirq context
//! (or in whoever releases the socket lock), it walks the receive queue in place
//! (tcp_read_sock) and feeds the engine (`Conn::want` / `receive` / `placed`): header bytes
//! and the segments the engine keeps go through a small buffer; a Data-In's data goes straight
//! from the skbs into its command's pages (the command lent out of the connection's table
//! meanwhile, see `tasks`), or, with data digests, through the buffer so its CRC can be computed. What a PDU
//! means comes back as an engine event, acted on once the locks are dropped: a command is
//! completed with no thread hop. Under load (several commands in flight, a data segment
//! waiting) the callback leaves the receive to a work item (`rx_work`) on an unbound queue,
//! which reads the same way with the socket locked (`receive_ready` says why). `rx_work` also
//! does what the callback cannot (fail the connection: that sleeps) and reads what arrived
//! before the callbacks were installed.
//!
//! **Sending**: the engine's transmit queue holds commands, the Data-Out bursts R2Ts ask for,
//! pings, answers to the target's pings and the session's own requests, in order. Whoever
//! holds the `tx` mutex next sends them (`drain`): queuecommand for a command alone in
//! flight, if no one is sending (it only tries the lock, and sends at most a few PDUs);
//! otherwise the transmit work (`tx_work`, on the unbound `core_iscsi_xmit` queue), a bounded
//! number per run, queued again while more is left.
//! Each PDU is taken from the engine under its lock (`poll_transmit`), the lock dropped, and
//! sent: the header as the engine wrote it, the data from the command's pages (the command lent
//! out meanwhile) or from the engine's bytes. Nothing but a sender waits for `tx`, and no send
//! waits for room in the socket (MSG_DONTWAIT), as in nvme-tcp's `io_work`: a PDU the socket
//! took only part of stays in `Tx::pending`, the socket's write-space callback wakes the
//! transmit work to send its rest first, and the ticker fails the connection if it is not all
//! out by its deadline (`send_timeout_ms` after it was taken), however slowly the target
//! takes it.
//!
//! **Its commands**: a command sent on this connection stays with it until it ends (its
//! allegiance): in the engine's task set and in the connection's own [`TaskTable`], both
//! under the `engine` lock. Matching, placing and completing a command needs no session-wide
//! state but the CmdSN window (`io`, see `datapath`). The session reaches a connection's
//! commands only through it: to abort one, to end those of a LUN at a reset, or all of them
//! when the connection is retired.
//!
//! The connection never calls into the session's logic: what the session must hear (a failure,
//! an answer to one of its requests, a rescan) goes through the [`Owner`] trait, as FreeBSD's
//! icl transport reports to the iSCSI layer above it.

use crate::datapath::{Io, Link};
use crate::login::Failure;
use crate::proto::crc::DigestState;
use crate::queues::Queues;
use crate::proto::ffp_conn::{Conn, ConnConfig, Want, MAX_PING_DATA, MAX_TEXT_OUT, TX_HEADER_MAX};
use crate::proto::ffp_event::{Event, Lost};
use crate::proto::ffp_session::OwnKind;
use crate::proto::ffp_tasks::{CommandSpec, StartError, TaskSlot};
use crate::proto::ffp_tx::{TxData, TxSlot};
use crate::proto::pdu::{self, Lun};
use crate::proto::task::Completion;
use crate::sys::bh_lock::{new_spinlock_bh, SpinLockBh};
use crate::sys::crypto::KernelCrc32c;
use crate::sys::mem::{now_ms, Deadline};
use crate::sys::scsi::{Command, CommandResult, Direction, HostByte};
use crate::sys::try_mutex::{new_try_mutex, TryMutex};
use crate::sys::socket::{Incoming, ReadyQueue, SendWait, SocketAddr, SocketEvents, TcpStream};
use crate::tasks::{Ending, Finished, Slot, TaskTable};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use kernel::alloc::KVVec;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};

/// What a connection's `engine` lock holds: the engine's connection half (decoder,
/// ExpStatSN, transmit queue, NOP timers and the task set of the commands sent on it, over
/// slots allocated once per connection) and the midlayer's commands for those tasks. They
/// change together: a task enters and leaves both under one hold.
struct Engine {
    ffp: Conn<KVVec<TxSlot>, KVVec<TaskSlot>>,
    cmds: TaskTable,
}

impl Engine {
    /// A connection's engine, on the heap. The engine's connection half is about 3 KiB of
    /// buffers (a header with its largest AHS, kept segment bytes, ping and text data), and
    /// proto builds it by value: built in the caller's frame, it sat under the whole login
    /// and connection set-up (a 5 KiB frame in `Session::attach`, with the connection's
    /// initialiser, another 3 KiB, called beneath it). Here it lives in this function's
    /// frame only until it is boxed, and the connection holds a pointer.
    #[inline(never)]
    fn new(
        cfg: ConnConfig,
        slots: KVVec<TxSlot>,
        task_slots: KVVec<TaskSlot>,
        depth: u16,
    ) -> Result<KBox<Self>> {
        let cmds = TaskTable::new(depth)?;
        // Allocated first, so that the engine can be built straight into it (the compiler's
        // choice, not a promise: tests/stack-frames holds the frame to its bound).
        let boxed = KBox::<Self>::new_uninit(GFP_KERNEL)?;
        Ok(KBox::write(
            boxed,
            Engine {
                ffp: Conn::new(cfg, slots, task_slots, now_ms()),
                cmds,
            },
        ))
    }
}

/// The data path's shared state, as the session and its connections hold it.
pub(crate) type IoLock = SpinLockBh<Io>;

/// Why [`Connection::submit`] did not take a command; the midlayer keeps it and retries.
pub(crate) enum Busy {
    /// This connection takes no command now: the target's window is shut, the transmit queue
    /// is full, or the connection is recovering, paused or being lost.
    Connection,
    /// The command's tag is taken on this connection: its last command there ended before it
    /// was sent (a reset answered on another connection while this one's socket was full),
    /// and the filler NOP-Out that spends its CmdSN still waits in the queue. Another
    /// connection can take the command, given back here.
    Tag(Command),
}

/// An answer to one of the session's own requests.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    /// A task management response.
    TaskMgmt { itt: u32, response: u8 },
    /// A logout response, with its response code (0: closed).
    Logout { itt: u32, response: u8 },
    /// The target rejected one of our requests: a logout, or task management.
    Rejected { itt: u32, logout: bool },
}

/// What a connection reports to the session that owns it.
pub(crate) trait Owner: Send + Sync {
    /// The channel's name, for the kernel log.
    fn name(&self) -> &str;
    /// The connection failed (once; process context).
    fn failed(self: Arc<Self>, conn: &Arc<Connection>, why: Failure);
    /// An answer to one of the session's own requests arrived (receive path: must not sleep).
    fn answered(&self, answer: Answer);
    /// The target's LUN inventory changed (receive path: must not sleep).
    fn rescan(self: Arc<Self>);
    /// The target asked one of its connections to log out (that connection's
    /// `Connection::leave_asked` says within how long): the session decides how (receive
    /// path: must not sleep).
    fn logout_requested(self: Arc<Self>);
    /// The pings that held every command of the session back (`Window::hold`) were answered:
    /// every connection sends what it has queued (receive path: must not sleep).
    fn released(&self);
}

/// Counters of one connection, shown in the channel's `stats`.
#[derive(Default)]
pub(crate) struct ConnStats {
    pub(crate) pdus_tx: AtomicU64,
    pub(crate) pdus_rx: AtomicU64,
    pub(crate) bytes_tx: AtomicU64,
    pub(crate) bytes_rx: AtomicU64,
    pub(crate) digest_errors: AtomicU64,
    /// Times a data-ready callback queued the rx work to receive (under load); callbacks that
    /// found it queued already are not counted.
    pub(crate) rx_deferred: AtomicU64,
    /// Inline sends (queuecommand, commit_rqs) that found another sender busy and left the
    /// send to the transmit work.
    pub(crate) tx_busy: AtomicU64,
    /// Inline sends that stopped because the socket had no room for the next PDU, leaving it
    /// to the transmit work.
    pub(crate) tx_full: AtomicU64,
    /// Commands given back because their tag's filler NOP-Out was still queued here (then
    /// sent on another connection, or retried by the midlayer).
    pub(crate) tag_busy: AtomicU64,
}

/// Counters of the session's data path, kept by its connections.
#[derive(Default)]
pub(crate) struct PathStats {
    pub(crate) read_bytes: AtomicU64,
    pub(crate) write_bytes: AtomicU64,
    /// Protocol errors of the target's.
    pub(crate) errors: AtomicU64,
    /// Commands the shut command window kept waiting.
    pub(crate) window_full: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// Receive-side bytes copied through the connection's buffer per step: header bytes, the
/// segments the engine reads itself, discarded data, and placed data under a data digest.
const RX_BUF: usize = 16 * 1024;

/// The transmit side: one sender at a time.
pub(crate) struct Tx {
    /// The header of the PDU being sent, as the engine wrote it.
    head: [u8; TX_HEADER_MAX],
    /// Data segments sent from a copy: the engine's bytes, and task data under a data digest
    /// (pages may change until transmitted, as iscsi_tcp also reasons: the digest must cover
    /// the bytes as sent).
    buf: KVVec<u8>,
    /// The PDU taken from the engine and not yet all on the wire (its header in `head`, its
    /// data in `buf` or lent from its command): an inline send that found the socket full
    /// leaves the rest here, and nothing else may go on the stream before it.
    pending: Option<Pending>,
}

impl Drop for Tx {
    fn drop(&mut self) {
        // A dead connection's partly sent PDU gives its command back in `wait_sender`, which
        // retires every connection: this cannot happen.
        if let Some(Pending {
            data: OutData::Task { cmd, .. },
            ..
        }) = self.pending.take()
        {
            pr_warn!("core-iscsi: a connection went with a partly sent PDU's command lent\n");
            crate::tasks::abandon(cmd);
        }
    }
}

/// A PDU on its way out, taken from the engine under its lock and sent without it.
struct Pending {
    header_len: usize,
    data: OutData,
    pad: usize,
    /// The data digest (over data and padding), when one follows them.
    digest: Option<[u8; 4]>,
    /// The engine had more queued when this was taken: sent with MSG_MORE to its end.
    more: bool,
    /// Bytes of it on the wire so far.
    sent: usize,
    /// When all of it must be out, `send_timeout_ms` after it was taken, however often the
    /// transmit work resumes it: past it the ticker fails the connection (a target that takes
    /// a segment every few seconds keeps no PDU, and no command, for longer).
    deadline: Deadline,
}

/// The receive side (one receiver: the socket lock orders the callback and the rx work).
struct Rx {
    buf: KVVec<u8>,
    /// The data segment being placed, if one is.
    placing: Option<Placement>,
    /// A failure found here, where the connection cannot be failed (softirq context: failing
    /// sleeps); the rx work acts on it.
    broken: Option<Failure>,
    /// What the engine wants next, as it said at the end of the last step (`None`: ask it).
    /// Only the receive path, under this lock, moves the engine's decoder (`receive`,
    /// `placed`), so the answer stays true until the next step, and each step takes the
    /// engine's lock once instead of again just to ask.
    want: Option<Want>,
}

/// A Data-In segment being received into its command's buffer: the command is lent out of the
/// table for it (`None`: the command ended meanwhile and the bytes are dropped), and given back
/// when the segment is in.
struct Placement {
    itt: u32,
    cmd: Option<Command>,
    /// The data digest over the segment so far.
    crc: DigestState,
}

/// A PDU's data segment.
enum OutData {
    None,
    /// The first `n` bytes of the transmit buffer.
    Buf(usize),
    /// Bytes of a command's buffer, sent from its pages, the command lent out of the table
    /// until the PDU is all out.
    Task { itt: u32, cmd: Command, offset: u32, len: u32 },
}

/// Where [`Connection::drain`] stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// The engine's queue was empty: whoever queues more wakes the transmit work.
    Empty,
    /// The budget ran out with more queued: the transmit work goes on.
    More,
    /// The socket took only part of a PDU (`Tx::pending`): its write-space callback wakes
    /// the transmit work once there is room, and the ticker watches the PDU's deadline.
    Full,
}

/// What [`Connection::feed`] gives back: the action of a PDU's event, what the engine wants
/// next, and for a segment to place its ITT and command (lent out).
type Fed = (Option<Action>, Want, Option<(u32, Option<Command>)>);

/// What an engine event asks for, taken out under the locks and acted on once they are
/// dropped.
enum Action {
    Complete(Finished),
    Transmit,
    Answer(Answer),
    Rescan,
    LogoutRequested { within_s: u16 },
    Released,
}

/// Where a connection is in leaving its session on its own, at the target's request (Async
/// Message event 1): the session drains it, logs it out ("close the connection") and unlists
/// it, while its other connections carry the I/O.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Leave {
    /// A member like any other.
    Member = 0,
    /// The target asked it to log out; the session has not acted yet.
    Asked = 1,
    /// No new command goes out on it (`Session::pick` and `Connection::submit` pass it by);
    /// those in flight end.
    Draining = 2,
    /// Its logout request is out.
    LoggingOut = 3,
    /// The target answered the logout "closed": its end (the target closes it) is no loss.
    LoggedOut = 4,
    /// Its logout went unanswered, was rejected or was answered with an error (the connection
    /// is failed), or a stop or a loss overtook the wait for the answer.
    GivenUp = 5,
}

impl Leave {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Leave::Asked,
            2 => Leave::Draining,
            3 => Leave::LoggingOut,
            4 => Leave::LoggedOut,
            5 => Leave::GivenUp,
            _ => Leave::Member,
        }
    }
}

/// A connection in the full feature phase.
#[pin_data]
pub(crate) struct Connection {
    stream: TcpStream,
    queues: Arc<Queues>,
    owner: Arc<dyn Owner>,
    io: Arc<IoLock>,
    stats_path: Arc<PathStats>,
    cid: u16,
    /// Where it goes and when it logged in (the channel's `connections`, the session's
    /// holds), and where it comes from.
    origin: Origin,
    local: Option<SocketAddr>,
    data_digest: bool,
    crc: KernelCrc32c,
    /// The engine and this connection's commands. Taken per step of the receive, per PDU
    /// sent and per request; never across a socket operation or a copy.
    #[pin]
    engine: SpinLockBh<KBox<Engine>>,
    /// Held by whoever sends (`drain`); queuecommand only tries it, so nothing on the I/O
    /// path waits for a send in progress.
    #[pin]
    tx: TryMutex<Tx>,
    #[pin]
    rx: SpinLockBh<Rx>,
    #[pin]
    rx_work: Work<Connection, 0>,
    #[pin]
    tx_work: Work<Connection, 1>,
    dead: AtomicBool,
    /// Work may be queued (under this lock): `close` shuts it, so that once its work is
    /// cancelled nothing queues more.
    #[pin]
    gate: SpinLockBh<bool>,
    /// How long one PDU's send may take before the connection is given up.
    send_timeout_ms: u32,
    /// Commands in flight when the last one was queued: how busy the connection is, for the
    /// data-ready callback to choose where to receive (a hint, read without a lock).
    depth: AtomicUsize,
    /// Commands in flight now (the task table's count, read without the engine lock): how
    /// the session chooses among connections ([`Connection::in_flight`]).
    busy: Arc<AtomicUsize>,
    /// Its [`Leave`] state, and the seconds the target gave it to log out.
    leave: AtomicU8,
    leave_within_s: AtomicU16,
    /// The session's logout went out on it (set under the engine lock, as `LoggingOut` is
    /// for its own): see [`Connection::logout_sent`]. Never cleared: the session's logout
    /// is followed by `detach`, which retires the connection.
    session_logout: AtomicBool,
    /// When a Reject was last logged (`now_ms`; 0: never): [`Connection::log_reject`].
    reject_logged_ms: AtomicU64,
    /// When the target's bytes last arrived and were taken (`now_ms`; 0: none yet): how long
    /// the connection worked, for the session's holds, whenever its loss is noticed.
    heard_ms: AtomicU64,
    pub(crate) stats: ConnStats,
}

impl_has_work! {
    impl HasWork<Self, 0> for Connection { self.rx_work }
    impl HasWork<Self, 1> for Connection { self.tx_work }
}

/// The most scatterlist entries a command has: the host's `sg_tablesize` (`Session::start`).
/// Each lies within one page (the template's `dma_boundary` and `max_segment_size`), so a data
/// segment is sent in at most this many page ranges.
pub(crate) const MAX_SEGMENTS: u16 = 256;

/// Under load the data-ready callback hands the receive to the rx work (on an unbound
/// workqueue): with at least this many commands in flight, latency matters less than
/// throughput, and one worker takes every PDU that arrived by the time it runs, copying and
/// completing them on a CPU of the scheduler's choosing, while the CPU that delivered the
/// packets (a NIC's interrupt CPU; over loopback, the target's own) goes back to the network.
/// 4 KiB reads at QD32 ran 1.11-1.16x as fast as when received all in softirq (two boots); at
/// QD1 the hop would only add latency (Documentation/benchmarks.md).
const RX_WORK_DEPTH: usize = 4;

/// ... and only when at least this much is waiting: a data segment to copy. A few small
/// responses are cheaper to take right away than a wake-up (4 KiB writes at QD32 lost 11 %
/// when their responses went to the work too). What is waiting is what arrived since the last
/// read (or since the last hand-over, while the work has not run yet): over loopback a page of
/// a Data-In comes at once (LIO sends each page with a `sendmsg` of its own), and GRO merges a
/// NIC's burst into one delivery. Without GRO, MSS-sized pieces would each be read where they
/// arrive: each read drains the queue, so they do not pile up.
const RX_WORK_BYTES: usize = 4096;

/// Zeros to pad a data segment with.
const PAD: [u8; 3] = [0; 3];

/// PDUs queuecommand (or commit_rqs) sends itself before it leaves the rest to the transmit
/// work: a command alone in flight with its immediate data and first unsolicited Data-Out
/// PDUs, or a ping answer with it.
const INLINE_PDUS: usize = 8;

/// PDUs the transmit work sends per run before it queues itself again, as nvme-tcp's
/// `io_work` does: a target that keeps the queue fed (pings, R2Ts) gets its answers, but no
/// run holds `tx`, or its worker, for as long as the target likes. Large enough that a 1 MiB
/// write at the smallest MaxRecvDataSegmentLength (512 bytes: 2048 Data-Outs) costs a few
/// requeues; small next to the PDUs of one QD32 round.
const TX_WORK_PDUS: usize = 256;

/// The socket's callbacks (softirq context, or a socket owner's `release_sock`): data is
/// received in `data_ready`, or under load handed to the rx work; `write_space` wakes the
/// transmit work when a full socket has room again.
struct Wake(Arc<Connection>);

impl SocketEvents for Wake {
    fn data_ready(&self, queue: &mut ReadyQueue<'_>) {
        self.0.receive_ready(queue);
    }

    fn state_change(&self, closed: bool) {
        if closed {
            // Let the receive work find the end of the stream and report it.
            self.0.queue_rx();
        }
    }

    fn write_space(&self) {
        // A PDU left partly sent (`Tx::pending`) can go on.
        self.0.queue_tx();
    }
}

/// What the midlayer gets for a completed task.
fn completion_result(c: &Completion) -> CommandResult {
    if c.completed_at_target() {
        CommandResult::Status(c.status)
    } else {
        CommandResult::HostError(HostByte::Error)
    }
}

/// Where a connection goes: its portal and the interface it is bound to (0: none), the entry
/// of the channel's `portals` that asked for it, and when it logged in (`now_ms`).
#[derive(Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) portal: SocketAddr,
    pub(crate) ifindex: u32,
    pub(crate) entry: usize,
    pub(crate) since_ms: u64,
}

/// How the parts of the data path a connection shares with its session are handed to it.
pub(crate) struct Path {
    pub(crate) queues: Arc<Queues>,
    pub(crate) owner: Arc<dyn Owner>,
    pub(crate) io: Arc<IoLock>,
    pub(crate) stats: Arc<PathStats>,
}

impl Connection {
    /// Takes over a logged-in `stream` as connection `cfg.cid` of a session, with room for
    /// `depth` commands (the host's can_queue: any tag may come to any connection) and
    /// `tx_capacity` PDUs waiting to be sent (`ffp_tx::tx_capacity`), and starts receiving.
    pub(crate) fn start(
        path: Path,
        origin: Origin,
        stream: TcpStream,
        cfg: ConnConfig,
        depth: u16,
        tx_capacity: usize,
        send_timeout_ms: u32,
    ) -> Result<Arc<Self>> {
        let slots = KVVec::from_elem(TxSlot::default(), tx_capacity.max(1), GFP_KERNEL)?;
        let task_slots = KVVec::from_elem(TaskSlot::default(), depth.into(), GFP_KERNEL)?;
        // Buffers that need not be physically contiguous (kvmalloc): a connection is made
        // during recovery, when a large contiguous allocation may fail.
        let tx_len = (cfg.max_xmit as usize).max(MAX_PING_DATA).max(MAX_TEXT_OUT);
        let tx_buf = KVVec::from_elem(0u8, tx_len, GFP_KERNEL)?;
        let rx_buf = KVVec::from_elem(0u8, RX_BUF, GFP_KERNEL)?;
        let engine = Engine::new(cfg, slots, task_slots, depth)?;
        let busy = engine.cmds.shared_count();
        let local = stream.local_addr().ok();
        let conn = Arc::pin_init(
            pin_init!(Self {
                stream,
                queues: path.queues,
                owner: path.owner,
                io: path.io,
                stats_path: path.stats,
                cid: cfg.cid,
                origin,
                local,
                data_digest: cfg.digests.data,
                crc: KernelCrc32c,
                engine <- new_spinlock_bh!(engine),
                tx <- new_try_mutex!(Tx {
                    head: [0; TX_HEADER_MAX],
                    buf: tx_buf,
                    pending: None,
                }),
                rx <- new_spinlock_bh!(Rx {
                    buf: rx_buf,
                    placing: None,
                    broken: None,
                    want: None,
                }),
                rx_work <- new_work!("core_iscsi::rx"),
                tx_work <- new_work!("core_iscsi::tx"),
                dead: AtomicBool::new(false),
                gate <- new_spinlock_bh!(true),
                send_timeout_ms,
                depth: AtomicUsize::new(0),
                busy,
                leave: AtomicU8::new(Leave::Member as u8),
                leave_within_s: AtomicU16::new(0),
                session_logout: AtomicBool::new(false),
                reject_logged_ms: AtomicU64::new(0),
                heard_ms: AtomicU64::new(0),
                stats: ConnStats::default(),
            }),
            GFP_KERNEL,
        )?;
        // Receives never block (the rx work reads what is there), nor sends (MSG_DONTWAIT: the
        // ticker bounds a PDU left partly sent); the send timeout only backs that up.
        conn.stream.set_timeouts(0, send_timeout_ms);
        conn.stream
            .set_callbacks(Arc::new(Wake(conn.clone()), GFP_KERNEL)?)?;
        // Data may have arrived before the callbacks were in place.
        conn.queue_rx();
        Ok(conn)
    }

    /// Its connection ID.
    pub(crate) fn cid(&self) -> u16 {
        self.cid
    }

    /// Where it goes.
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// When the target's bytes last arrived on it (`now_ms`), or when it logged in if none
    /// has since.
    pub(crate) fn heard_ms(&self) -> u64 {
        self.heard_ms.load(Ordering::Relaxed).max(self.origin.since_ms)
    }

    /// The local address it goes out from, if the socket could say.
    pub(crate) fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The engine's counters: R2Ts received, pings sent.
    pub(crate) fn counters(&self) -> crate::proto::ffp_conn::ConnCounters {
        self.engine.lock().ffp.counters()
    }

    /// Queues the receive work; false when it was queued already (it will read everything
    /// there is) or the connection is closing or dead.
    fn queue_rx(self: &Arc<Self>) -> bool {
        let open = self.gate.lock();
        *open
            && !self.dead.load(Ordering::Relaxed)
            && self.queues.io.enqueue::<Arc<Self>, 0>(self.clone()).is_ok()
    }

    /// Wakes the transmit work to send what the engine has queued.
    pub(crate) fn queue_tx(self: &Arc<Self>) {
        let open = self.gate.lock();
        if *open && !self.dead.load(Ordering::Relaxed) {
            let _ = self.queues.xmit.enqueue::<Arc<Self>, 1>(self.clone());
        }
    }

    /// Marks the connection dead and tells the session (once): it recovers or stops.
    pub(crate) fn fail(self: &Arc<Self>, why: Failure) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            self.stream.shutdown();
            self.owner.clone().failed(self, why);
        }
    }

    /// Whether the target has closed its side of the connection.
    pub(crate) fn peer_closed(&self) -> bool {
        self.stream.peer_closed()
    }

    /// Whether the connection has failed or been closed.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Stops everything: no callback, no new work, no new command; blocked senders and
    /// receivers return. The caller then waits for work already queued or running with
    /// [`Connection::cancel_work`].
    pub(crate) fn close(&self) {
        self.dead.store(true, Ordering::Release);
        *self.gate.lock() = false;
        self.engine.lock().ffp.close(Lost::Closed);
        self.stream.clear_callbacks();
        self.stream.shutdown();
    }

    /// Cancels this connection's receive and transmit work, waiting for a run in progress
    /// (after [`Connection::close`], which keeps more from being queued). Only its own: a
    /// stalled work of another connection on the same queue holds nothing up here.
    pub(crate) fn cancel_work(self: &Arc<Self>) {
        crate::sys::workqueue::cancel_sync::<Self, 0>(self);
        crate::sys::workqueue::cancel_sync::<Self, 1>(self);
    }

    /// Waits for a sender in progress to let go (it fails fast on a shut socket); once the
    /// connection is dead, also gives back the command of a PDU left partly sent, which no
    /// transmit work will finish.
    pub(crate) fn wait_sender(&self) {
        let mut tx = self.tx.lock();
        if self.is_dead() {
            self.give_back_pending(&mut tx);
        }
    }

    /// Waits for a receive pass in progress to end: it holds `rx` from taking a finished
    /// command out of the table until it has completed it.
    pub(crate) fn wait_receive(&self) {
        drop(self.rx.lock());
    }

    /// The engine's view of a loss, for the session: the reason logged once, as the kernel
    /// log's account of what the target did.
    fn lost(&self, why: Lost) -> Failure {
        if self.is_dead() {
            return Failure::ConnectionReset;
        }
        match why {
            Lost::Closed => Failure::ConnectionReset,
            Lost::PingTimeout => Failure::Timeout,
            Lost::PduTimeout => {
                pr_warn!(
                    "core-iscsi: channel {}: connection {}: {}\n",
                    self.owner.name(),
                    self.cid,
                    why
                );
                Failure::Timeout
            }
            Lost::TargetDropsConnection | Lost::TargetDropsSession => {
                let event = if why == Lost::TargetDropsConnection { 2 } else { 3 };
                pr_info!(
                    "core-iscsi: channel {}: target requests logout (event {})\n",
                    self.owner.name(),
                    event
                );
                Failure::ConnectionReset
            }
            other => {
                if let Lost::Framing(crate::proto::ffp_rx::RxError::HeaderDigest { .. })
                | Lost::Framing(crate::proto::ffp_rx::RxError::DataDigest { .. }) = other
                {
                    add(&self.stats.digest_errors, 1);
                }
                add(&self.stats_path.errors, 1);
                pr_warn!(
                    "core-iscsi: channel {}: {}\n",
                    self.owner.name(),
                    other
                );
                Failure::Protocol
            }
        }
    }

    // ---- requests ------------------------------------------------------------------------

    /// Starts a SCSI command on this connection: checks, a CmdSN, an ITT and the command's
    /// place in the engine's transmit queue, and the command in the table, under one hold of
    /// the engine and `io`. Gives the commands in flight on this connection (this one
    /// included); `None` when the command was completed instead (refused, or the session has
    /// failed).
    pub(crate) fn submit(self: &Arc<Self>, cmd: Command) -> core::result::Result<Option<usize>, Busy> {
        let refuse = |cmd: Command, host: HostByte| {
            cmd.complete(CommandResult::HostError(host));
            Ok(None)
        };
        let len = cmd.transfer_len();
        let (read_len, write_len) = match cmd.direction() {
            Direction::FromDevice => (len, 0),
            Direction::ToDevice => (0, len),
            Direction::None => (0, 0),
            // The block layer no longer issues bidirectional commands; refuse one rather than
            // send it as something else.
            Direction::Bidirectional => return refuse(cmd, HostByte::Error),
        };
        // The host template declares max_cmd_len 16: longer CDBs (an extended-CDB AHS) never
        // come; refuse one rather than truncate it.
        let mut cdb = [0u8; 16];
        match cdb.get_mut(..cmd.cdb().len()) {
            Some(dst) => dst.copy_from_slice(cmd.cdb()),
            None => return refuse(cmd, HostByte::Error),
        }
        let tag = cmd.slot();
        let Ok(queue) = u8::try_from(cmd.hw_queue()) else {
            return refuse(cmd, HostByte::Error);
        };
        let lun = cmd.lun();
        let spec = CommandSpec {
            tag,
            queue,
            lun: Lun::from_linux(lun).0,
            cdb,
            attr: pdu::task_attr::SIMPLE,
            read_len,
            write_len,
        };
        let mut guard = self.engine.lock();
        let engine = &mut *guard;
        let mut io = self.io.lock();
        match io.link {
            // One leaving the session takes no new command: a command picked before it was
            // marked goes out ahead of its logout or not at all (the marking came first, and
            // `logout_alone` queues the logout under this lock).
            Link::Up if !self.is_dead() && !self.is_leaving() => {}
            Link::Failed => {
                drop(io);
                drop(guard);
                return refuse(cmd, HostByte::NoConnect);
            }
            // Recovering or paused: the midlayer holds it until the host is unblocked.
            _ => return Err(Busy::Connection),
        }
        let itt = match engine.ffp.start_command(&mut io.ffp, &spec, now_ms()) {
            Ok(itt) => itt,
            Err(StartError::WindowShut) => {
                // Flow control: the target's MaxCmdSN says wait (the session's window watch
                // bounds how long).
                add(&self.stats_path.window_full, 1);
                return Err(Busy::Connection);
            }
            Err(StartError::BadTag) => {
                drop(io);
                drop(guard);
                return refuse(cmd, HostByte::Error);
            }
            // The tag's last command here ended before it was sent, and its filler waits in
            // the queue: another connection may take this one.
            Err(StartError::CommandQueued) => {
                drop(io);
                drop(guard);
                add(&self.stats.tag_busy, 1);
                return Err(Busy::Tag(cmd));
            }
            // The queue full, the connection being lost, or the tag's slot still holding a
            // task (cannot happen: the midlayer reuses a tag only after its command ended):
            // retried later here, never on another connection, where one command would sit
            // in two tables (a lost connection's recovery blocks the host).
            Err(_) => return Err(Busy::Connection),
        };
        drop(io);
        if let Err(slot) = engine.cmds.insert(Slot::new(itt, lun, cmd)) {
            // The engine's slot for this tag was free, so the table's is: cannot happen.
            // The command's CmdSN is spent: the connection cannot go on.
            engine.ffp.forget_task(itt);
            engine.ffp.close(Lost::Closed);
            drop(guard);
            if let Some(cmd) = slot.into_command() {
                cmd.complete(CommandResult::HostError(HostByte::Requeue));
            }
            self.fail(Failure::Protocol);
            return Ok(None);
        }
        add(&self.stats_path.write_bytes, write_len as usize);
        Ok(Some(engine.cmds.in_flight()))
    }

    /// Sends a task management request (on this connection: for a task, its own); returns
    /// the request's ITT, which its answer ([`Answer::TaskMgmt`]) names.
    /// `arm` runs with the request's ITT before the request can leave, so that its answer
    /// finds the waiter ready.
    pub(crate) fn task_mgmt(
        self: &Arc<Self>,
        function: u8,
        lun: u64,
        ref_itt: u32,
        arm: impl FnOnce(u32),
    ) -> core::result::Result<u32, Failure> {
        let itt = {
            let mut engine = self.engine.lock();
            if self.logout_sent() {
                // No request may follow its logout request (RFC 7143 section 11.14).
                return Err(Failure::ConnectionReset);
            }
            let mut io = self.io.lock();
            let itt = engine
                .ffp
                .task_mgmt(&mut io.ffp, function, Lun::from_linux(lun).0, ref_itt)
                .map_err(|_| Failure::ConnectionReset)?;
            arm(itt);
            itt
        };
        self.queue_tx();
        Ok(itt)
    }

    /// Sends a logout request closing the session; `arm` gets its ITT before the request can
    /// leave (as for [`Connection::task_mgmt`]), so that its answer finds what it answers.
    pub(crate) fn logout(
        self: &Arc<Self>,
        arm: impl FnOnce(u32),
    ) -> core::result::Result<u32, Failure> {
        self.send_logout(pdu::logout_reason::CLOSE_SESSION, arm)
    }

    /// Sends a logout request closing this connection only, once it is draining (see
    /// [`Leave`]); its answer moves it to `LoggedOut`.
    pub(crate) fn logout_alone(self: &Arc<Self>) -> core::result::Result<u32, Failure> {
        // Before the request can leave, so that its answer finds the state to move on.
        self.set_leave(Leave::LoggingOut);
        self.send_logout(pdu::logout_reason::CLOSE_CONNECTION, |_| ())
    }

    fn send_logout(
        self: &Arc<Self>,
        reason: u8,
        arm: impl FnOnce(u32),
    ) -> core::result::Result<u32, Failure> {
        let itt = {
            let mut engine = self.engine.lock();
            if reason == pdu::logout_reason::CLOSE_SESSION && self.logout_sent() {
                // One logout per connection: no request follows one (RFC 7143 section 11.14).
                return Err(Failure::ConnectionReset);
            }
            let mut io = self.io.lock();
            let itt = engine
                .ffp
                .logout(&mut io.ffp, reason)
                .map_err(|_| Failure::ConnectionReset)?;
            if reason == pdu::logout_reason::CLOSE_SESSION {
                self.session_logout.store(true, Ordering::Release);
            }
            arm(itt);
            itt
        };
        self.queue_tx();
        Ok(itt)
    }

    /// Where it is in leaving the session alone.
    pub(crate) fn leave(&self) -> Leave {
        Leave::from_u8(self.leave.load(Ordering::Acquire))
    }

    /// Moves it to `state` (the session's leave work; the receive path for `Asked`).
    pub(crate) fn set_leave(&self, state: Leave) {
        self.leave.store(state as u8, Ordering::Release);
    }

    /// Moves it from `from` to `to` if it is still at `from` (the receive path and the leave
    /// work race at the logout's answer and its timeout); false if it was not.
    pub(crate) fn leave_from(&self, from: Leave, to: Leave) -> bool {
        self.leave
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the session must not start a command on it: it is on its way out.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leave() >= Leave::Draining
    }

    /// Whether a logout request is out on it, its own or the session's: no other request may
    /// follow it (RFC 7143 section 11.14), no ping (a pause's logout waits with the ticker
    /// running), no task management.
    pub(crate) fn logout_sent(&self) -> bool {
        self.leave() >= Leave::LoggingOut || self.session_logout.load(Ordering::Acquire)
    }

    /// The seconds the target gave it to log out, once it asked.
    pub(crate) fn leave_asked(&self) -> Option<u16> {
        (self.leave() == Leave::Asked).then(|| self.leave_within_s.load(Ordering::Relaxed))
    }

    /// The timers at `now`: a ping is queued, or an unanswered one (or a PDU received, or
    /// sent, too slowly) fails the connection (true: it did).
    pub(crate) fn tick(self: &Arc<Self>) -> bool {
        if self.send_stalled() {
            pr_warn!(
                "core-iscsi: channel {}: connection {}: a PDU not sent whole in {} ms: the target stopped reading\n",
                self.owner.name(),
                self.cid,
                self.send_timeout_ms
            );
            self.fail(Failure::Timeout);
            return true;
        }
        let timed = {
            let mut engine = self.engine.lock();
            if self.logout_sent() {
                // No ping may follow a logout request on it (`logout_alone` marks its own
                // before it takes this lock to queue the request, `send_logout` the session's
                // under it); the logout's own wait bounds it.
                return false;
            }
            let mut io = self.io.lock();
            engine.ffp.handle_timeout(&mut io.ffp, now_ms())
        };
        match timed {
            Ok(true) => self.queue_tx(),
            Ok(false) => {}
            Err(why @ (Lost::PingTimeout | Lost::PduTimeout)) => {
                self.fail(self.lost(why));
                return true;
            }
            // Lost before (the failure has been reported then: this does nothing more).
            Err(why) => self.fail(self.lost(why)),
        }
        false
    }

    // ---- its commands, for the session -----------------------------------------------------

    /// Commands in flight on this connection (lent ones included), read without its lock:
    /// the task table's count, which may change as soon as it is read.
    pub(crate) fn in_flight(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// The ITT of this connection's command with block-layer tag `tag`, if it has it.
    pub(crate) fn itt_of_tag(&self, tag: u16) -> Option<u32> {
        self.engine.lock().cmds.itt_of_tag(tag)
    }

    /// Ends every command of this connection's for which `which` holds, in the engine and in
    /// the table (a lent command when it comes back): queued bursts of theirs are then
    /// dropped unsent.
    pub(crate) fn end_where(&self, which: impl Fn(&Slot) -> bool, ending: Ending) {
        let mut guard = self.engine.lock();
        let Engine { ffp, cmds } = &mut **guard;
        ffp.forget_tasks_where(|r| cmds.get(r.itt).is_some_and(&which), |_| {});
        cmds.finish_where(which, ending);
    }

    /// Whether a command of this connection's (lent ones included) satisfies `which`.
    pub(crate) fn has_command(&self, which: impl Fn(&Slot) -> bool) -> bool {
        self.engine.lock().cmds.any(which)
    }

    /// Ends its ping's hold on the session's commands, if it has one (`Conn::release_hold`):
    /// the connection failed, and the answer will not come.
    pub(crate) fn release_hold(&self) {
        let mut engine = self.engine.lock();
        engine.ffp.release_hold(&mut self.io.lock().ffp);
    }

    /// The connection is retired (closed, its sender and receiver gone): every command on it
    /// leaves the engine and is ended with `ending` (requeued, or failed), and its requests
    /// of the session's own are forgotten. The commands are completed after the session's
    /// `io` is dropped: the other connections' I/O path takes it. True when its ping's hold
    /// on the session's commands was the last one: the caller must let the others send.
    #[must_use]
    pub(crate) fn end_tasks(&self, ending: Ending) -> bool {
        let mut guard = self.engine.lock();
        let Engine { ffp, cmds } = &mut **guard;
        // Every task of the engine's has its command in the table, which ends them all.
        let released = ffp.end(&mut self.io.lock().ffp, |_| {});
        cmds.finish_all(ending);
        released
    }

    // ---- sending -------------------------------------------------------------------------

    /// Sends what the engine has queued. A command alone in flight (`in_flight`, this one
    /// included) is sent right here, in queuecommand's context: no hop, the lowest latency.
    /// With others in flight the transmit work sends: the submitter goes back to submitting
    /// while a worker on another CPU runs TCP's transmit path, and commands queued meanwhile
    /// leave together, MSG_MORE between them. Sending everything inline kept fio's CPU busy
    /// at QD32 and lost to this (Documentation/benchmarks.md).
    ///
    /// A request blk-mq does not flag `last` opens a batch: the transmit work sends it, so the
    /// rest of the batch can join it. Nothing waits for `commit_rqs` to send it: blk-mq does
    /// not call that when the SCSI midlayer completes the next request itself.
    pub(crate) fn transmit_queued(self: &Arc<Self>, in_flight: usize, last: bool) {
        self.depth.store(in_flight, Ordering::Relaxed);
        if in_flight > 1 || !last {
            self.queue_tx();
        } else {
            self.send_inline();
        }
    }

    /// Sends what is queued, from queuecommand or commit_rqs: at most [`INLINE_PDUS`] PDUs,
    /// and nothing at all if someone else is sending (the transmit work, or another queue's
    /// inline send): that sender, or the transmit work woken here, takes this command too.
    /// `scsi_host_block` (recovery, pause) waits for every queuecommand in progress, so one
    /// must not wait for `tx`, which a target can keep busy for as long as it feeds the
    /// queue; and no send waits for a target to read (see [`Connection::drain`]).
    pub(crate) fn send_inline(self: &Arc<Self>) {
        let Some(mut tx) = self.tx.try_lock() else {
            // A send in progress may be just past its last look at the engine: the work,
            // queued again even while it runs, looks once more.
            add(&self.stats.tx_busy, 1);
            self.queue_tx();
            return;
        };
        let result = self.drain(&mut tx, INLINE_PDUS);
        drop(tx);
        match result {
            Ok(Drained::More) => self.queue_tx(),
            Ok(Drained::Empty) => {}
            // The rest goes from the transmit work, once the socket has room.
            Ok(Drained::Full) => add(&self.stats.tx_busy, 1),
            Err(why) => self.fail(why),
        }
    }

    /// The transmit work: sends what is queued, at most [`TX_WORK_PDUS`] PDUs a run, queued
    /// again while more is left; a send error fails the connection. It never sleeps in a
    /// send: a full socket ends the run, and its write-space callback queues the next.
    fn send_queued(self: &Arc<Self>) {
        let mut tx = self.tx.lock();
        let result = self.drain(&mut tx, TX_WORK_PDUS);
        drop(tx);
        match result {
            Ok(Drained::More) => self.queue_tx(),
            Ok(Drained::Empty | Drained::Full) => {}
            Err(why) => self.fail(why),
        }
    }

    /// The deadline of a PDU left partly sent, at a tick: past it the connection is lost, as
    /// a send that waited for room would have found (the target stopped reading). Before it,
    /// the transmit work is woken to try again: room that comes without an ACK (memory freed
    /// elsewhere, which a waiting send polls for every 200 ms or so) calls no write-space
    /// callback. A sender holding `tx` is making progress: it is looked at next time.
    fn send_stalled(self: &Arc<Self>) -> bool {
        if self.is_dead() {
            return false;
        }
        let Some(tx) = self.tx.try_lock() else {
            return false;
        };
        let Some(p) = tx.pending.as_ref() else {
            return false;
        };
        if p.deadline.left_ms().is_some() {
            drop(tx);
            self.queue_tx();
            return false;
        }
        true
    }

    /// Sends the engine's queue, one PDU at a time and at most `budget`, with MSG_MORE while
    /// more follows (the tx lock is held; the engine's only while a PDU is taken from it),
    /// first the rest of a PDU left partly sent. Never waits for room in the socket
    /// (MSG_DONTWAIT), as nvme-tcp's `io_work` does not: a PDU the socket takes only part of
    /// stays in `Tx::pending` for the next call, woken by the write-space callback.
    fn drain(&self, tx: &mut Tx, budget: usize) -> core::result::Result<Drained, Failure> {
        // The last PDU went with MSG_MORE: what it held back must be pushed if nothing follows
        // after all (the engine dropped a burst whose task ended meanwhile).
        let mut held = false;
        for _ in 0..budget {
            if self.is_dead() {
                self.give_back_pending(tx);
                return Ok(Drained::Empty);
            }
            // A PDU left partly sent by an earlier call: its `more` is as stale as the
            // engine's queue was then (the command queued since may have found this work
            // queued already and gone without waking it again), so look at the queue after it.
            let resumed = tx.pending.is_some();
            if !resumed {
                match self.take_pdu(tx)? {
                    Some(p) => tx.pending = Some(p),
                    None => {
                        // Pushing takes the socket lock, which the receive path holds while
                        // it waits for `engine`: never under that lock (`take_pdu` dropped it).
                        if held {
                            self.stream.push();
                        }
                        return Ok(Drained::Empty);
                    }
                }
            }
            let Tx { head, buf, pending } = &mut *tx;
            let Some(p) = pending.as_mut() else {
                return Err(Failure::Protocol);
            };
            let all_out = self.send_rest(head, buf, p);
            let more = p.more;
            if !matches!(all_out, Ok(false)) {
                // Sent, or the connection fails: either way the PDU is done with.
                self.give_back_pending(tx);
            }
            if !all_out? {
                // The socket is full: the rest follows when there is room (no push).
                add(&self.stats.tx_full, 1);
                return Ok(Drained::Full);
            }
            if !more && !resumed {
                // The queue was empty when this PDU was taken, and it went without MSG_MORE.
                // Whoever queues more after that wakes the transmit work (or sends it
                // inline, or finds `tx` taken and wakes the work), so looking again here
                // would only take the locks once more per send.
                return Ok(Drained::Empty);
            }
            held = more;
        }
        // Out of budget. If the last PDU said more follows (MSG_MORE), what it held back goes
        // now and the transmit work sends the rest.
        if held {
            self.stream.push();
            return Ok(Drained::More);
        }
        Ok(Drained::Empty)
    }

    /// Takes the next PDU from the engine (`None`: its queue is empty): the header into
    /// `tx.head`, the data copied into `tx.buf` (the engine's bytes, or a task's data under a
    /// data digest, copied outside the engine's lock with the command lent meanwhile) or lent
    /// from its command, and the data digest computed.
    fn take_pdu(&self, tx: &mut Tx) -> core::result::Result<Option<Pending>, Failure> {
        let Tx { head, buf, .. } = tx;
        let mut pdu = {
            let mut guard = self.engine.lock();
            let Engine { ffp, cmds } = &mut **guard;
            let mut io = self.io.lock();
            let p = match ffp.poll_transmit(&mut io.ffp, &self.crc, head) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(None),
                Err(why) => {
                    drop(io);
                    drop(guard);
                    return Err(self.lost(why));
                }
            };
            drop(io);
            let data = match p.data {
                TxData::None => OutData::None,
                TxData::Bytes(b) => {
                    let dst = buf.get_mut(..b.len()).ok_or(Failure::Protocol)?;
                    dst.copy_from_slice(b);
                    OutData::Buf(b.len())
                }
                TxData::Task { itt, offset, len } => match cmds.lend(itt) {
                    Some(cmd) => OutData::Task {
                        itt,
                        cmd,
                        offset,
                        len,
                    },
                    // The engine holds the task, so the table holds its command, lent to
                    // no one else (a write is never placed into): cannot happen.
                    None => return Err(Failure::Protocol),
                },
            };
            Pending {
                header_len: p.header_len,
                data,
                pad: p.pad,
                digest: p.data_digest.then_some([0; 4]),
                more: ffp.has_transmit(),
                sent: 0,
                deadline: Deadline::after_ms(self.send_timeout_ms.into()),
            }
        };
        let Some(wire) = pdu.digest.as_mut() else {
            return Ok(Some(pdu));
        };
        pdu.data = match core::mem::replace(&mut pdu.data, OutData::None) {
            OutData::Task {
                itt,
                cmd,
                offset,
                len,
            } => {
                // Copied first, so the digest covers exactly the bytes sent; the command is
                // not needed once its bytes are.
                let copied = match buf.get_mut(..len as usize) {
                    Some(data) => cmd.copy_out(offset, data).map_err(|_| Failure::Protocol),
                    None => Err(Failure::Protocol),
                };
                self.engine.lock().cmds.give_back(itt, cmd);
                copied?;
                OutData::Buf(len as usize)
            }
            data => data,
        };
        let data = match pdu.data {
            OutData::Buf(n) => buf.get(..n).ok_or(Failure::Protocol)?,
            _ => &[],
        };
        *wire = crate::proto::crc::data_digest(&self.crc, data);
        Ok(Some(pdu))
    }

    /// Gives back the command of the PDU `tx` holds, if it lent one, and drops the PDU.
    fn give_back_pending(&self, tx: &mut Tx) {
        if let Some(Pending {
            data: OutData::Task { itt, cmd, .. },
            ..
        }) = tx.pending.take()
        {
            self.engine.lock().cmds.give_back(itt, cmd);
        }
    }

    /// Sends what is left of `p` (its first `p.sent` bytes are out) as far as the socket
    /// takes it without waiting: the header from `head`, the data from `buf` or from the lent
    /// command's pages (no copy: 16 page ranges a call), padding and data digest, with
    /// MSG_MORE up to its end, and past it when `p.more`. `Ok(true)` once all of it is out;
    /// `Ok(false)` when the socket was full first (`p.sent` says how far it got).
    fn send_rest(
        &self,
        head: &[u8],
        buf: &[u8],
        p: &mut Pending,
    ) -> core::result::Result<bool, Failure> {
        let wait = SendWait::No;
        let header = head.get(..p.header_len).ok_or(Failure::Protocol)?;
        let pad = PAD.get(..p.pad).ok_or(Failure::Protocol)?;
        let digest: &[u8] = p.digest.as_ref().map_or(&[], |d| d.as_slice());
        let data_len = match &p.data {
            OutData::None => 0,
            OutData::Buf(n) => *n,
            OutData::Task { len, .. } => *len as usize,
        };
        let total = header.len() + data_len + pad.len() + digest.len();
        match &p.data {
            OutData::Task {
                cmd, offset, len, ..
            } => {
                if p.digest.is_some() {
                    // `take_pdu` copies a task's data that a digest covers: cannot happen.
                    return Err(Failure::Protocol);
                }
                // Header, pages, padding: where the last send stopped.
                if p.sent < header.len() {
                    let rest = header.get(p.sent..).unwrap_or(&[]);
                    let n = self
                        .stream
                        .send_all(&[rest], true, wait)
                        .map_err(Failure::from_socket)?;
                    p.sent += n;
                    if n < rest.len() {
                        return Ok(false);
                    }
                }
                let end = offset.checked_add(*len).ok_or(Failure::Protocol)?;
                let done = u32::try_from(p.sent - header.len()).map_err(|_| Failure::Protocol)?;
                let mut at = offset.checked_add(done.min(*len)).ok_or(Failure::Protocol)?;
                while at < end {
                    let mut ranges = [None; 16];
                    let (n, bytes) = cmd
                        .page_ranges(at, end - at, &mut ranges)
                        .map_err(|_| Failure::Protocol)?;
                    if bytes == 0 {
                        return Err(Failure::Protocol);
                    }
                    let more = p.more || bytes < end - at || !pad.is_empty();
                    let sent = self
                        .stream
                        .send_pages(ranges.get(..n).unwrap_or(&[]), more, wait)
                        .map_err(Failure::from_socket)?;
                    p.sent += sent;
                    at = at.checked_add(sent as u32).ok_or(Failure::Protocol)?;
                    if sent < bytes as usize {
                        return Ok(false);
                    }
                }
                let pad_done = p.sent - header.len() - *len as usize;
                if let Some(rest) = pad.get(pad_done..).filter(|r| !r.is_empty()) {
                    let n = self
                        .stream
                        .send_all(&[rest], p.more, wait)
                        .map_err(Failure::from_socket)?;
                    p.sent += n;
                }
            }
            OutData::None | OutData::Buf(_) => {
                let data = match p.data {
                    OutData::Buf(n) => buf.get(..n).ok_or(Failure::Protocol)?,
                    _ => &[],
                };
                let mut skip = p.sent;
                let rest = [header, data, pad, digest].map(|part| {
                    let n = skip.min(part.len());
                    skip -= n;
                    part.get(n..).unwrap_or(&[])
                });
                p.sent += self
                    .stream
                    .send_all(&rest, p.more, wait)
                    .map_err(Failure::from_socket)?;
            }
        }
        if p.sent < total {
            return Ok(false);
        }
        add(&self.stats.pdus_tx, 1);
        add(&self.stats.bytes_tx, total);
        Ok(true)
    }

    // ---- receiving -----------------------------------------------------------------------

    /// The data-ready callback (the socket locked by the network stack, or by its owner, in
    /// whose `release_sock` it then runs). With few commands in flight it receives right here,
    /// as iscsi_tcp does, so a response completes its command without a thread hop. Under
    /// load, with a data segment waiting, it leaves the receive to the rx work instead (see
    /// [`RX_WORK_DEPTH`]), also in an owner's `release_sock`. That owner is most often the rx
    /// work itself, handing over what arrived while it read: read here one segment per
    /// callback, each read drained the queue and TCP acknowledged every second segment at
    /// once; queued again, the work takes the lot in its next pass with one acknowledgement
    /// (86-98 pure ACKs per MiB read against 1.4-8, Documentation/benchmarks.md). Failures
    /// are left to the rx work too: failing a connection sleeps.
    fn receive_ready(self: &Arc<Self>, queue: &mut ReadyQueue<'_>) {
        if self.is_dead() {
            return;
        }
        if self.under_load() && queue.unread() >= RX_WORK_BYTES {
            if self.queue_rx() {
                add(&self.stats.rx_deferred, 1);
            }
            return;
        }
        if let Err(e) = queue.read(|incoming| self.consume(incoming)) {
            self.fail_later(&mut self.rx.lock(), Failure::from_socket(e));
        }
    }

    /// Whether at least [`RX_WORK_DEPTH`] commands were in flight at the last submission.
    fn under_load(&self) -> bool {
        self.depth.load(Ordering::Relaxed) >= RX_WORK_DEPTH
    }

    /// The receive work (process context, the socket locked with lock_sock): receives what the
    /// data-ready callback left to it under load, and what arrived before the callbacks were
    /// installed; fails the connection when the receive side found it broken.
    fn receive(self: Arc<Self>) {
        if !self.is_dead() {
            if let Err(e) = self.stream.read(|incoming| self.consume(incoming)) {
                self.fail_later(&mut self.rx.lock(), Failure::from_socket(e));
            }
        }
        let broken = self.rx.lock().broken;
        if let Some(why) = broken {
            self.fail(why);
        }
    }

    /// Feeds one piece of the receive queue to the engine; false stops the read (the
    /// connection is dead or broken).
    fn consume(self: &Arc<Self>, incoming: &mut Incoming<'_>) -> bool {
        let mut rx = self.rx.lock();
        loop {
            if self.is_dead() || rx.broken.is_some() {
                return false;
            }
            match self.receive_step(&mut rx, incoming) {
                Ok(true) => {}
                // This piece is used up: on to the next.
                Ok(false) => return true,
                Err(why) => {
                    self.give_back_placement(&mut rx);
                    self.fail_later(&mut rx, why);
                    return false;
                }
            }
        }
    }

    /// Records a failure the receive path found (its lock held) for the rx work to act on.
    fn fail_later(self: &Arc<Self>, rx: &mut Rx, why: Failure) {
        rx.broken.get_or_insert(why);
        self.queue_rx();
    }

    fn give_back_placement(&self, rx: &mut Rx) {
        if let Some(Placement {
            itt, cmd: Some(cmd), ..
        }) = rx.placing.take()
        {
            self.engine.lock().cmds.give_back(itt, cmd);
        }
    }

    /// Gives back a command whose Data-In was being received when the connection stopped
    /// (the connection is dead: a receive in progress ends first, later ones stop at once).
    pub(crate) fn release_placement(&self) {
        self.give_back_placement(&mut self.rx.lock());
    }

    /// Gives back the command a Data-In is being placed into if `which` holds for it (a reset
    /// covered it): the rest of the segment is read and dropped. A target can trickle a
    /// segment for as long as it likes while answering the reset on another connection; the
    /// midlayer must not get the command back while its pages are still written. True if one
    /// was taken back.
    pub(crate) fn release_placement_where(&self, which: impl Fn(&Slot) -> bool) -> bool {
        let mut rx = self.rx.lock();
        let Some(p) = rx.placing.as_mut() else {
            return false;
        };
        let mut engine = self.engine.lock();
        if !engine.cmds.get(p.itt).is_some_and(&which) {
            return false;
        }
        match p.cmd.take() {
            Some(cmd) => {
                engine.cmds.give_back(p.itt, cmd);
                true
            }
            None => false,
        }
    }

    /// One step of the receive: the bytes the engine wants next, from `incoming`. `Ok(false)`
    /// when `incoming` has nothing left for it.
    fn receive_step(
        self: &Arc<Self>,
        rx: &mut Rx,
        incoming: &mut Incoming<'_>,
    ) -> core::result::Result<bool, Failure> {
        let want = match rx.want.take() {
            Some(want) => want,
            None => self.engine.lock().ffp.want(),
        };
        match want {
            Want::Place {
                itt,
                offset,
                len,
                digest,
            } => {
                if incoming.is_empty() {
                    rx.want = Some(want);
                    return Ok(false);
                }
                self.place(rx, incoming, itt, offset, len, digest)?;
                Ok(true)
            }
            Want::Bytes { need } => {
                let Rx { buf, .. } = rx;
                let n = if need == 0 {
                    0
                } else {
                    if incoming.is_empty() {
                        rx.want = Some(want);
                        return Ok(false);
                    }
                    let part = buf.get_mut(..need.min(RX_BUF)).ok_or(Failure::Protocol)?;
                    incoming.read(part).map_err(|_| Failure::Protocol)?
                };
                let bytes = buf.get(..n).ok_or(Failure::Protocol)?;
                let (action, next, lent) = self.feed(bytes, want)?;
                rx.want = Some(next);
                if let Some((itt, cmd)) = lent {
                    if rx.placing.is_some() {
                        // A segment is placed whole before the next begins: cannot happen.
                        if let Some(cmd) = cmd {
                            self.engine.lock().cmds.give_back(itt, cmd);
                        }
                        return Err(Failure::Protocol);
                    }
                    rx.placing = Some(Placement {
                        itt,
                        cmd,
                        crc: DigestState::new(),
                    });
                }
                add(&self.stats.bytes_rx, n);
                if let Some(action) = action {
                    self.act(action)?;
                }
                Ok(true)
            }
        }
    }

    /// Hands `bytes` (at most what the engine asked for) to the engine: the action its event,
    /// if a PDU ended with one, asks for; what the engine wants next; and, when that is a
    /// Data-In segment to place, its command, lent out of the table under the same lock
    /// (`None` inside: it ended meanwhile, and the bytes are dropped).
    fn feed(&self, bytes: &[u8], asked: Want) -> core::result::Result<Fed, Failure> {
        let mut guard = self.engine.lock();
        let Engine { ffp, cmds } = &mut **guard;
        if ffp.want() != asked {
            // The want kept in `Rx` went stale: only the receive path moves the decoder, so
            // this cannot happen; if it did, feeding on would misread the stream.
            return Err(Failure::Protocol);
        }
        let mut io = self.io.lock();
        let now = now_ms();
        let received = match ffp.receive(&mut io.ffp, &self.crc, bytes, now) {
            Ok(r) => r,
            Err(why) => {
                drop(io);
                // A command the target would reject again ends here, failed (the midlayer's
                // retries are counted), rather than going back with the others for the
                // recovery to send again, and again.
                let failed = why.fails().and_then(|itt| {
                    ffp.forget_task(itt)?;
                    let ending = Ending::result(CommandResult::HostError(HostByte::Error));
                    cmds.take_finished(itt, ending)
                });
                drop(guard);
                if let Some(done) = failed {
                    self.complete(done);
                }
                return Err(self.lost(why));
            }
        };
        // Whatever it was (an answer to our ping included, which makes no event).
        self.heard_ms.store(now, Ordering::Relaxed);
        drop(io);
        if received.used != bytes.len() {
            // We hand in no more than it asked for: cannot happen.
            return Err(Failure::Protocol);
        }
        let Some(event) = received.event else {
            let next = ffp.want();
            let lent = match next {
                Want::Place { itt, .. } => Some((itt, cmds.lend(itt))),
                Want::Bytes { .. } => None,
            };
            return Ok((None, next, lent));
        };
        add(&self.stats.pdus_rx, 1);
        let action = match event {
            Event::Finished(f) => {
                let c = f.completion;
                let ending = Ending::with(completion_result(&c), c.residual, f.sense);
                cmds.take_finished(f.itt, ending).map(Action::Complete)
            }
            Event::Transmit => Some(Action::Transmit),
            Event::TaskMgmt { itt, response, .. } => {
                Some(Action::Answer(Answer::TaskMgmt { itt, response }))
            }
            Event::Logout { itt, response, .. } => {
                Some(Action::Answer(Answer::Logout { itt, response }))
            }
            Event::Rejected {
                itt,
                reason,
                request,
            } => {
                self.log_reject(reason);
                let logout = matches!(request, OwnKind::Logout { .. });
                Some(Action::Answer(Answer::Rejected { itt, logout }))
            }
            // The command stays: the target ends it (CHECK CONDITION, which the midlayer
            // retries) or drops the connection.
            Event::DataDigestRejected { .. } => {
                self.log_reject(pdu::reject_reason::DATA_DIGEST_ERROR);
                add(&self.stats_path.errors, 1);
                None
            }
            Event::Rescan => Some(Action::Rescan),
            Event::LogoutRequested { within_s } => Some(Action::LogoutRequested { within_s }),
            Event::Released => Some(Action::Released),
            // The module sends no text request.
            Event::Text { .. } => None,
        };
        // A PDU ended: the next begins with its header, not a segment to place.
        Ok((action, ffp.want(), None))
    }

    /// Logs a Reject from the target: at most one line a second on a connection, since a
    /// target may reject every command (each counts in `errors` all the same).
    fn log_reject(&self, reason: u8) {
        let now = now_ms();
        let last = self.reject_logged_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < 1000 {
            return;
        }
        let won = self
            .reject_logged_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if won {
            pr_warn!(
                "core-iscsi: channel {}: target rejected a PDU (reason {:#x})\n",
                self.owner.name(),
                reason
            );
        }
    }

    /// Does what an event asked for, with the engine's and `io` dropped (the receive path's
    /// `rx` is still held: nothing here sleeps).
    fn act(self: &Arc<Self>, action: Action) -> core::result::Result<(), Failure> {
        match action {
            Action::Complete(done) => self.complete(done),
            Action::Transmit => self.queue_tx(),
            Action::Released => self.owner.released(),
            Action::Answer(a) => {
                // Before the end of the stream that follows it is read, which is then no
                // loss. Only "closed" (0) ends what was in flight on it (RFC 7143 section
                // 11.15.1): otherwise, or rejected, the leave is given up, and the connection
                // with it.
                let next = match a {
                    Answer::Logout { response: 0, .. } => Some(Leave::LoggedOut),
                    Answer::Logout { .. } | Answer::Rejected { logout: true, .. } => {
                        Some(Leave::GivenUp)
                    }
                    _ => None,
                };
                if let Some(next) = next {
                    let _ = self.leave_from(Leave::LoggingOut, next);
                }
                self.owner.answered(a)
            }
            Action::Rescan => self.owner.clone().rescan(),
            Action::LogoutRequested { within_s } => {
                // Once: a second request while the first is handled changes nothing (and is
                // not logged: a target may send them at line rate).
                if self.leave() == Leave::Member {
                    pr_info!(
                        "core-iscsi: channel {}: target requests logout (event 1) of connection {} within {} s\n",
                        self.owner.name(),
                        self.cid,
                        within_s
                    );
                    self.leave_within_s.store(within_s, Ordering::Relaxed);
                    self.set_leave(Leave::Asked);
                    self.owner.clone().logout_requested();
                }
            }
        }
        Ok(())
    }

    /// Completes a command the target ended. With few in flight, right here: the block layer
    /// would raise its softirq for it, which runs only after the rest of the network receive
    /// (an ACK, the next packets), and fio's next read waits for that (4 KiB reads at QD1
    /// ran 1.09x as fast, Documentation/benchmarks.md). Under load through `scsi_done`: for a
    /// single-queue host that softirq takes the completions off the receive path; with several
    /// hardware queues blk-mq raises none and completes in the caller when the CPUs share a
    /// cache, so the two differ only in the submitting CPU's test (`rq_affinity`).
    fn complete(&self, done: Finished) {
        done.complete(!self.under_load());
    }

    /// Moves the next bytes of a segment the engine places into task `itt`'s buffer at
    /// `offset` (`len` left of it), and reports them.
    fn place(
        &self,
        rx: &mut Rx,
        incoming: &mut Incoming<'_>,
        itt: u32,
        offset: u32,
        len: usize,
        digest: bool,
    ) -> core::result::Result<(), Failure> {
        let Rx { buf, placing, .. } = rx;
        if placing.as_ref().is_some_and(|p| p.itt != itt) {
            // A segment is placed whole before the next begins: cannot happen.
            return Err(Failure::Protocol);
        }
        // `feed` lent the command (`None`: it ended, and its bytes are dropped) under the lock
        // that took the header: a segment to place always has its placement.
        let Some(p) = placing.as_mut() else {
            return Err(Failure::Protocol);
        };
        let n = match &p.cmd {
            Some(cmd) if !digest => {
                // Only what this piece holds: a range beyond it would be described for nothing
                // (over loopback a piece is often a page or two of a 256 KiB segment).
                let mut ranges = [None; 16];
                let left = u32::try_from(len.min(incoming.len())).map_err(|_| Failure::Protocol)?;
                let (k, _) = cmd
                    .page_ranges(offset, left, &mut ranges)
                    .map_err(|_| Failure::Protocol)?;
                incoming
                    .read_pages(ranges.get(..k).unwrap_or(&[]))
                    .map_err(|_| Failure::Protocol)?
            }
            cmd => {
                let part = buf.get_mut(..len.min(RX_BUF)).ok_or(Failure::Protocol)?;
                let n = incoming.read(part).map_err(|_| Failure::Protocol)?;
                let got = part.get(..n).ok_or(Failure::Protocol)?;
                if digest {
                    p.crc.update(&self.crc, got);
                }
                if let Some(cmd) = cmd {
                    cmd.copy_in(offset, got).map_err(|_| Failure::Protocol)?;
                }
                n
            }
        };
        if n == 0 {
            // The engine checked the range against the command's buffer: cannot happen.
            return Err(Failure::Protocol);
        }
        let running = p.crc;
        add(&self.stats.bytes_rx, n);
        add(&self.stats_path.read_bytes, n);
        let asked = Want::Place {
            itt,
            offset,
            len,
            digest,
        };
        let placed = {
            let mut engine = self.engine.lock();
            if engine.ffp.want() != asked {
                // As in `feed`: cannot happen (`consume` gives the command back).
                return Err(Failure::Protocol);
            }
            if n >= len {
                // The segment is in: the command goes back before the PDU's end is reported,
                // so the completion finds it.
                if let Some(Placement {
                    itt, cmd: Some(cmd), ..
                }) = rx.placing.take()
                {
                    engine.cmds.give_back(itt, cmd);
                }
            }
            let placed = engine.ffp.placed(n, running, now_ms());
            rx.want = Some(engine.ffp.want());
            placed
        };
        placed.map_err(|why| self.lost(why))
    }
}

impl WorkItem<0> for Connection {
    type Pointer = Arc<Connection>;

    fn run(this: Arc<Connection>) {
        this.receive();
    }
}

impl WorkItem<1> for Connection {
    type Pointer = Arc<Connection>;

    fn run(this: Arc<Connection>) {
        this.send_queued();
    }
}
