// SPDX-License-Identifier: GPL-2.0

//! One TCP connection of a session in the full feature phase: framing PDUs on the socket.
//!
//! Receiving runs in the socket's data-ready callback, as in iscsi_tcp: in softirq context
//! (or in whoever releases the socket lock), it walks the receive queue in place
//! (tcp_read_sock), assembles PDUs (header, AHS, digests, data, bounded by our
//! MaxRecvDataSegmentLength; a Data-In's data copied straight into its command's pages) and
//! hands each to the session, so a response completes its command with no thread hop. Under
//! load (several commands in flight, a data segment waiting) the callback leaves the receive
//! to a work item (`rx_work`) on an unbound queue, which reads the same way with the socket
//! locked (`receive_ready` says why). `rx_work` also does what the callback cannot (fail the
//! connection: that sleeps) and reads what arrived before the callbacks were installed. The
//! receive side's locks are therefore softirq-safe spinlocks (`SpinLockBh`), as is the
//! session's `io`.
//!
//! Sending goes through the send ring (`pending`): commands, the Data-Out bursts R2Ts ask for
//! and answers to the target's NOP-In pings wait there in order, and whoever holds the `tx`
//! lock next sends them all (`drain`): queuecommand for a command alone in flight, otherwise
//! the transmit work (`tx_work`, on the unbound `core_iscsi_xmit` queue). The session's own
//! PDUs (pings, task management, logout) are queued there too (`Session::send_own`): nothing
//! but a sender ever waits for `tx`, so a target that drains its socket slowly holds up no
//! ping, abort or stop. Every PDU's send ends by its own deadline (`send_timeout_ms` after it
//! started), however slowly the target takes it.

use crate::login::Failure;
use crate::proto::crc;
use crate::proto::dataout::{DataOutSeq, WritePlan};
use crate::proto::pdu::{
    self, Bhs, Digests, NopOut, Pdu, RxLayout, ScsiCommand, BHS_LEN, RESERVED_TAG,
};
use crate::session::Session;
use crate::sys::bh_lock::{new_spinlock_bh, SpinLockBh};
use crate::sys::crypto::KernelCrc32c;
use crate::sys::mem::{now_ms, Deadline};
use crate::sys::scsi::Command;
use crate::sys::socket::{Incoming, ReadyQueue, SocketEvents, TcpStream};
use crate::tasks::Finished;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::alloc::KVVec;
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};

/// SCSI Data-In (RFC 7143 section 11.7).
const OPCODE_DATA_IN: u8 = 0x25;

/// The ping data a target's NOP-In may carry that we echo back; more is a protocol error.
pub(crate) const MAX_PING_DATA: usize = 512;

/// Counters of one connection, shown in the channel's `stats`.
#[derive(Default)]
pub(crate) struct ConnStats {
    pub(crate) pdus_tx: AtomicU64,
    pub(crate) pdus_rx: AtomicU64,
    pub(crate) bytes_tx: AtomicU64,
    pub(crate) bytes_rx: AtomicU64,
    pub(crate) digest_errors: AtomicU64,
    pub(crate) nop_pings: AtomicU64,
    pub(crate) r2ts: AtomicU64,
    /// Data-ready callbacks that left the receive to the rx work (under load).
    pub(crate) rx_deferred: AtomicU64,
}

impl ConnStats {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What waits on the send ring for whoever holds the tx lock next.
#[derive(Clone, Copy)]
pub(crate) enum Pending {
    /// A SCSI command (its ExpStatSN is filled in when it is sent).
    Command {
        header: ScsiCommand,
        plan: Option<WritePlan>,
    },
    /// The Data-Out PDUs of one R2T.
    Burst {
        itt: u32,
        lun: [u8; 8],
        seq: DataOutSeq,
    },
    /// Our answer to a target's NOP-In ping.
    NopReply {
        ttt: u32,
        lun: [u8; 8],
        len: usize,
        data: [u8; MAX_PING_DATA],
    },
    /// A PDU of the session's own, without data (ping, task management, logout); its
    /// ExpStatSN is filled in when it is sent.
    Own(Pdu),
}

/// A bounded FIFO, allocated once: what the receive side queues for the transmit side.
struct Ring {
    items: KVVec<Option<Pending>>,
    head: usize,
    len: usize,
}

impl Ring {
    fn new(capacity: usize) -> Result<Self> {
        Ok(Self {
            items: KVVec::from_elem(None, capacity.max(1), GFP_KERNEL)?,
            head: 0,
            len: 0,
        })
    }

    fn push(&mut self, item: Pending) -> bool {
        let cap = self.items.len();
        if self.len == cap {
            return false;
        }
        let index = (self.head + self.len) % cap;
        match self.items.get_mut(index) {
            Some(slot) => {
                *slot = Some(item);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pop(&mut self) -> Option<Pending> {
        if self.len == 0 {
            return None;
        }
        let item = self.items.get_mut(self.head)?.take();
        self.head = (self.head + 1) % self.items.len();
        self.len -= 1;
        item
    }

    fn clear(&mut self) {
        while self.pop().is_some() {}
    }

    /// Keeps only the entries for which `keep` holds, in order.
    fn retain(&mut self, mut keep: impl FnMut(&Pending) -> bool) {
        for _ in 0..self.len {
            if let Some(item) = self.pop() {
                if keep(&item) {
                    // Room: one was just taken.
                    let _ = self.push(item);
                }
            }
        }
    }
}

/// The transmit side: only one sender at a time.
pub(crate) struct Tx {
    /// Bounce buffer for one data segment (our MaxXmitDataSegmentLength).
    buf: KVVec<u8>,
}

/// The receive side's partial PDU.
struct Rx {
    bhs: [u8; BHS_LEN],
    /// Bytes of the current part (header, then the rest) received so far.
    got: usize,
    layout: Option<RxLayout>,
    /// The BHS and AHS of the current PDU have been checked (header digest) and, for a Data-In,
    /// its data placement decided.
    head_done: bool,
    /// A Data-In whose data goes straight into its command's pages.
    placing: Option<Placement>,
    /// AHS, header digest, data, padding and data digest of the current PDU (the data part
    /// stays unused while placing).
    buf: KVVec<u8>,
    /// A failure found here, where the connection cannot be failed (softirq context: failing
    /// sleeps); the rx work acts on it.
    broken: Option<Failure>,
}

/// A Data-In segment being received into its command's buffer: the command is lent out of
/// the task table for it (see tasks.rs), and given back when the segment is in.
pub(crate) struct Placement {
    pub(crate) itt: u32,
    pub(crate) cmd: Command,
    /// Where the segment goes in the command's buffer, and its length.
    pub(crate) offset: u32,
    pub(crate) len: u32,
    /// Bytes of it received so far.
    pub(crate) done: u32,
    /// The task's completion, when the Data-In carried status.
    pub(crate) completion: Option<crate::proto::task::Completion>,
}

/// The negotiated framing of a connection.
#[derive(Clone, Copy)]
pub(crate) struct Framing {
    pub(crate) digests: Digests,
    /// Largest data segment we accept (what we declared).
    pub(crate) max_recv: u32,
    /// Largest data segment the target accepts.
    pub(crate) max_xmit: u32,
}

/// A connection in the full feature phase.
#[pin_data]
pub(crate) struct Connection {
    stream: TcpStream,
    session: Arc<Session>,
    framing: Framing,
    crc: KernelCrc32c,
    #[pin]
    tx: Mutex<Tx>,
    /// The send ring: filled by queuecommand (under the session's `io`) and the receive side,
    /// drained by whoever holds `tx`. Not under `tx`: the receive side runs with the socket
    /// locked (in its softirq, or owning it), and a sender holding `tx` may be waiting for
    /// that lock.
    #[pin]
    pending: SpinLockBh<Ring>,
    /// The receive side's state: taken by the data-ready callback (softirq) and the rx work.
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
    /// data-ready callback to choose where to receive (a hint, read without the session's lock).
    depth: AtomicUsize,
    /// When the last PDU arrived (ms, monotonic): keepalive pings an idle connection.
    last_rx_ms: AtomicU64,
    pub(crate) stats: ConnStats,
}

impl_has_work! {
    impl HasWork<Self, 0> for Connection { self.rx_work }
    impl HasWork<Self, 1> for Connection { self.tx_work }
}

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
/// read, so this counts per delivery: over loopback and with GRO a Data-In's whole segment
/// comes at once; a NIC without GRO delivers MSS-sized pieces, and the work takes over only
/// once a page of them has piled up.
const RX_WORK_BYTES: usize = 4096;

/// A zeroed buffer that need not be physically contiguous (kvmalloc): a connection is made
/// during recovery, when a large contiguous allocation may fail.
fn zeroed(n: usize) -> Result<KVVec<u8>> {
    Ok(KVVec::from_elem(0, n, GFP_KERNEL)?)
}

/// The socket's callbacks (softirq context, or a socket owner's `release_sock`): data is
/// received in `data_ready`, or under load handed to the rx work.
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

    fn write_space(&self) {}
}

impl Connection {
    /// Takes over a logged-in `stream` for `session`, and starts receiving.
    pub(crate) fn start(
        session: Arc<Session>,
        stream: TcpStream,
        framing: Framing,
        pending_capacity: usize,
        send_timeout_ms: u32,
    ) -> Result<Arc<Self>> {
        let rx_len = pdu::MAX_AHS_LEN + 4 + framing.max_recv as usize + 3 + 4;
        let pending = Ring::new(pending_capacity)?;
        let tx_buf = zeroed(framing.max_xmit as usize)?;
        let rx_buf = zeroed(rx_len)?;
        let conn = Arc::pin_init(
            pin_init!(Self {
                stream,
                session,
                framing,
                crc: KernelCrc32c,
                tx <- new_mutex!(Tx { buf: tx_buf }),
                pending <- new_spinlock_bh!(pending),
                rx <- new_spinlock_bh!(Rx {
                    bhs: [0; BHS_LEN],
                    got: 0,
                    layout: None,
                    head_done: false,
                    placing: None,
                    buf: rx_buf,
                    broken: None,
                }),
                rx_work <- new_work!("core_iscsi::rx"),
                tx_work <- new_work!("core_iscsi::tx"),
                dead: AtomicBool::new(false),
                gate <- new_spinlock_bh!(true),
                send_timeout_ms,
                depth: AtomicUsize::new(0),
                last_rx_ms: AtomicU64::new(now_ms()),
                stats: ConnStats::default(),
            }),
            GFP_KERNEL,
        )?;
        // Receives never block (the rx work reads what is there); every send is bounded by
        // its PDU's deadline.
        conn.stream.set_timeouts(0, send_timeout_ms);
        conn.stream
            .set_callbacks(Arc::new(Wake(conn.clone()), GFP_KERNEL)?)?;
        // Data may have arrived before the callbacks were in place.
        conn.queue_rx();
        Ok(conn)
    }

    /// When a PDU whose send starts now must be out: a target that takes a segment every few
    /// seconds cannot keep the tx lock for longer.
    fn pdu_deadline(&self) -> Deadline {
        Deadline::after_ms(self.send_timeout_ms.into())
    }

    /// Sends what was held back by sends with `more` (the tx lock is held).
    pub(crate) fn push(&self, _tx: &mut Tx) {
        self.stream.push();
    }

    /// Whether header and data digests are on.
    pub(crate) fn digests(&self) -> Digests {
        self.framing.digests
    }

    /// Milliseconds since the last PDU arrived.
    pub(crate) fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_rx_ms.load(Ordering::Relaxed))
    }

    fn queue_rx(self: &Arc<Self>) {
        let open = self.gate.lock();
        if *open && !self.dead.load(Ordering::Relaxed) {
            // Already queued is fine: it will read everything there is.
            let _ = self
                .session
                .shared()
                .io
                .enqueue::<Arc<Self>, 0>(self.clone());
        }
    }

    fn queue_tx(self: &Arc<Self>) {
        let open = self.gate.lock();
        if *open && !self.dead.load(Ordering::Relaxed) {
            let _ = self
                .session
                .shared()
                .xmit
                .enqueue::<Arc<Self>, 1>(self.clone());
        }
    }

    /// Marks the connection dead and tells the session (once): it recovers or stops.
    pub(crate) fn fail(self: &Arc<Self>, why: Failure) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            self.stream.shutdown();
            self.session.connection_failed(self, why);
        }
    }

    /// Whether the connection has failed or been closed.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Stops everything: no callback, no new work; blocked senders and receivers return. The
    /// caller then waits for work already queued or running with [`Connection::cancel_work`].
    pub(crate) fn close(&self) {
        self.dead.store(true, Ordering::Release);
        *self.gate.lock() = false;
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

    /// Locks the transmit side.
    pub(crate) fn lock_tx(
        &self,
    ) -> kernel::sync::lock::Guard<'_, Tx, kernel::sync::lock::mutex::MutexBackend> {
        self.tx.lock()
    }

    /// Sends one PDU: `bhs`, the AHS, the data segment (which `fill` writes into the bounce
    /// buffer, returning false to abandon the PDU) and the digests. The tx lock is held.
    pub(crate) fn send_pdu(
        &self,
        tx: &mut Tx,
        bhs: &Bhs,
        ahs: &[u8],
        data_len: usize,
        more: bool,
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> core::result::Result<bool, Failure> {
        let mut head = [0u8; BHS_LEN];
        bhs.encode(&mut head).map_err(|_| Failure::Protocol)?;
        let data = tx.buf.get_mut(..data_len).ok_or(Failure::Protocol)?;
        if data_len > 0 && !fill(data) {
            return Ok(false);
        }
        // Digests only when negotiated: CRC32C over every segment is not free.
        let hdigest = match self.framing.digests.header {
            true => crc::header_digest(&self.crc, &head, ahs),
            false => [0; 4],
        };
        let hdigest: &[u8] = if self.framing.digests.header {
            &hdigest
        } else {
            &[]
        };
        let pad = [0u8; 3];
        let pad = pad.get(..pdu::pad_len(data_len)).unwrap_or(&[]);
        let with_ddigest = self.framing.digests.data && data_len > 0;
        let ddigest = if with_ddigest {
            crc::data_digest(&self.crc, data)
        } else {
            [0; 4]
        };
        let ddigest: &[u8] = if with_ddigest { &ddigest } else { &[] };
        let parts = [&head[..], ahs, hdigest, data, pad, ddigest];
        self.stream
            .send_all(&parts, more, Some(self.pdu_deadline()))
            .map_err(Failure::from_socket)?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        ConnStats::add(&self.stats.pdus_tx, 1);
        ConnStats::add(&self.stats.bytes_tx, total);
        Ok(true)
    }

    /// Sends one PDU whose data segment is `len` bytes at `offset` of `cmd`'s buffer, from
    /// its pages (no copy; no data digest: see `Session::send_data`). The tx lock is held.
    pub(crate) fn send_pdu_pages(
        &self,
        _tx: &mut Tx,
        bhs: &Bhs,
        cmd: &Command,
        offset: u32,
        len: u32,
        more: bool,
    ) -> core::result::Result<(), Failure> {
        let mut head = [0u8; BHS_LEN];
        bhs.encode(&mut head).map_err(|_| Failure::Protocol)?;
        let hdigest = match self.framing.digests.header {
            true => crc::header_digest(&self.crc, &head, &[]),
            false => [0; 4],
        };
        let hdigest: &[u8] = if self.framing.digests.header {
            &hdigest
        } else {
            &[]
        };
        let pad = [0u8; 3];
        let pad = pad.get(..pdu::pad_len(len as usize)).unwrap_or(&[]);
        let deadline = Some(self.pdu_deadline());
        // MSG_MORE until the last piece: header and data leave in full segments.
        self.stream
            .send_all(&[&head[..], hdigest], true, deadline)
            .map_err(Failure::from_socket)?;
        let end = offset.checked_add(len).ok_or(Failure::Protocol)?;
        let mut at = offset;
        while at < end {
            let mut ranges = [None; 16];
            let (n, bytes) = cmd
                .page_ranges(at, end - at, &mut ranges)
                .map_err(|_| Failure::Protocol)?;
            if bytes == 0 {
                return Err(Failure::Protocol);
            }
            at = at.checked_add(bytes).ok_or(Failure::Protocol)?;
            let more = more || at < end || !pad.is_empty();
            self.stream
                .send_pages(ranges.get(..n).unwrap_or(&[]), more, deadline)
                .map_err(Failure::from_socket)?;
        }
        if !pad.is_empty() {
            self.stream
                .send_all(&[pad], more, deadline)
                .map_err(Failure::from_socket)?;
        }
        let total = BHS_LEN + hdigest.len() + len as usize + pad.len();
        ConnStats::add(&self.stats.pdus_tx, 1);
        ConnStats::add(&self.stats.bytes_tx, total);
        Ok(())
    }

    /// Puts a command on the send ring (the session's `io` lock is held, which keeps the ring
    /// in CmdSN order); `Err` when the ring is full.
    pub(crate) fn queue_command(
        &self,
        header: ScsiCommand,
        plan: Option<WritePlan>,
    ) -> core::result::Result<(), ()> {
        match self.pending.lock().push(Pending::Command { header, plan }) {
            true => Ok(()),
            false => Err(()),
        }
    }

    /// Sends what the send ring holds. A command alone in flight (`in_flight`, this one
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
            self.send_queued();
        }
    }

    /// Drains the send ring under the tx lock; a send error fails the connection.
    pub(crate) fn send_queued(self: &Arc<Self>) {
        let mut tx = self.tx.lock();
        let result = self.drain(&mut tx);
        drop(tx);
        if let Err(why) = result {
            self.fail(why);
        }
    }

    /// Puts a PDU of the session's own on the send ring (the session's `io` lock is held: it
    /// takes its place, and its CmdSN, among the commands); `Err` when the ring is full.
    pub(crate) fn queue_own(&self, pdu: Pdu) -> core::result::Result<(), Failure> {
        match self.pending.lock().push(Pending::Own(pdu)) {
            true => Ok(()),
            false => Err(Failure::Protocol),
        }
    }

    /// Wakes the transmit work to drain the send ring.
    pub(crate) fn wake_sender(self: &Arc<Self>) {
        self.queue_tx();
    }

    /// Drops the queued R2T bursts of commands for which `live` no longer holds (a LUN or
    /// target reset ended them): their pages are the midlayer's again.
    pub(crate) fn drop_bursts(&self, mut live: impl FnMut(u32) -> bool) {
        self.pending.lock().retain(|p| match p {
            Pending::Burst { itt, .. } => live(*itt),
            _ => true,
        });
    }

    /// Puts the receive side's work (an R2T's burst, a ping's answer) or a PDU of the
    /// session's own on the send ring for the transmit work.
    pub(crate) fn push_pending(
        self: &Arc<Self>,
        item: Pending,
    ) -> core::result::Result<(), Failure> {
        // The ring has room for every command slot's command and MaxOutstandingR2T bursts: a
        // full ring means the target broke that limit (or pings faster than it reads).
        let mut ring = self.pending.lock();
        if !ring.push(item) {
            let capacity = ring.items.len();
            drop(ring);
            pr_warn!(
                "core-iscsi: send queue full ({} entries): the target asks faster than it reads\n",
                capacity
            );
            return Err(Failure::Protocol);
        }
        drop(ring);
        self.queue_tx();
        Ok(())
    }

    /// The data-ready callback (the socket locked by the network stack). With few commands in
    /// flight it receives right here, as iscsi_tcp does, so a response completes its command
    /// without a thread hop. Under load, called where the network stack delivered the data
    /// (not in a socket owner's `release_sock`, which is already a process: the rx work's own,
    /// or a sender's) with a data segment waiting, it leaves the receive to the rx work instead
    /// (see [`RX_WORK_DEPTH`]). Failures are left to the rx work too: failing a connection
    /// sleeps.
    fn receive_ready(self: &Arc<Self>, queue: &mut ReadyQueue<'_>) {
        if self.is_dead() {
            return;
        }
        if self.under_load() && queue.unread() >= RX_WORK_BYTES && !queue.owned() {
            ConnStats::add(&self.stats.rx_deferred, 1);
            self.queue_rx();
            return;
        }
        if let Err(e) = queue.read(|incoming| self.consume(incoming)) {
            self.fail_later(&mut self.rx.lock(), Failure::from_socket(e));
        }
    }

    /// Waits for a receive pass in progress to end: it holds `rx` from taking a finished
    /// command out of the table until it has completed it.
    pub(crate) fn wait_receive(&self) {
        drop(self.rx.lock());
    }

    /// Whether at least [`RX_WORK_DEPTH`] commands were in flight at the last submission.
    fn under_load(&self) -> bool {
        self.depth.load(Ordering::Relaxed) >= RX_WORK_DEPTH
    }

    /// Completes a command the target ended. With few in flight, right here: the block layer
    /// would raise its softirq for it, which runs only after the rest of the network receive
    /// (an ACK, the next packets), and fio's next read waits for that (4 KiB reads at QD1
    /// ran 1.09x as fast, Documentation/benchmarks.md). Under load through that softirq, which
    /// takes the completions off the receive path.
    pub(crate) fn complete(&self, done: Finished) {
        done.complete(!self.under_load());
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

    /// Takes one piece of the receive queue toward whole PDUs, each handed to the session;
    /// false stops the read (the connection is dead or broken).
    fn consume(self: &Arc<Self>, incoming: &mut Incoming<'_>) -> bool {
        let mut rx = self.rx.lock();
        loop {
            if self.is_dead() || rx.broken.is_some() {
                return false;
            }
            match self.receive_one(&mut rx, incoming) {
                Ok(true) => {}
                // This piece is used up: on to the next.
                Ok(false) => return true,
                Err(why) => {
                    if let Some(p) = rx.placing.take() {
                        self.session.abandon_data_in(p);
                    }
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

    /// Gives back a command whose Data-In was being received when the connection stopped
    /// (the connection is dead: a receive in progress ends first, later ones stop at once).
    pub(crate) fn release_placement(&self) {
        if let Some(p) = self.rx.lock().placing.take() {
            self.session.abandon_data_in(p);
        }
    }

    /// Copies the next bytes of `incoming` into `part`: `Ok(None)` when it has none left.
    fn take(
        incoming: &mut Incoming<'_>,
        part: &mut [u8],
    ) -> core::result::Result<Option<usize>, Failure> {
        if incoming.is_empty() {
            return Ok(None);
        }
        incoming.read(part).map(Some).map_err(|_| Failure::Protocol)
    }

    /// Takes the next bytes of `incoming` toward the next PDU; `Ok(true)` when progress was
    /// made, `Ok(false)` when `incoming` is used up.
    fn receive_one(
        self: &Arc<Self>,
        rx: &mut Rx,
        incoming: &mut Incoming<'_>,
    ) -> core::result::Result<bool, Failure> {
        let Rx {
            bhs,
            got,
            layout,
            head_done,
            placing,
            buf,
            ..
        } = rx;
        if layout.is_none() {
            let part = bhs.get_mut(*got..).ok_or(Failure::Protocol)?;
            let Some(n) = Self::take(incoming, part)? else {
                return Ok(false);
            };
            *got += n;
            if *got < BHS_LEN {
                return Ok(true);
            }
            // The header decides how much follows: a segment longer than we declared is
            // refused here, before anything is read or allocated.
            *layout = Some(
                pdu::rx_layout(bhs, self.framing.digests, self.framing.max_recv).map_err(|e| {
                    pr_warn!(
                        "core-iscsi: refused a PDU header from the target: {:?}\n",
                        e
                    );
                    Failure::Protocol
                })?,
            );
            *got = 0;
            *head_done = false;
        }
        let l = layout.ok_or(Failure::Protocol)?;
        let total = l.remaining();
        let ahs_end = l.ahs_len;
        let hd_end = ahs_end + l.header_digest_len;
        let data_end = hd_end + l.data_len;
        let pad_end = data_end + l.pad_len;

        // 1. AHS and header digest: check them before anything else of the PDU is believed.
        if *got < hd_end {
            let part = buf.get_mut(*got..hd_end).ok_or(Failure::Protocol)?;
            let Some(n) = Self::take(incoming, part)? else {
                return Ok(false);
            };
            *got += n;
            return Ok(true);
        }
        if !*head_done {
            let ahs = buf.get(..ahs_end).ok_or(Failure::Protocol)?;
            if l.header_digest_len > 0 {
                let wire: &[u8; 4] = buf
                    .get(ahs_end..hd_end)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(Failure::Protocol)?;
                if !crc::verify_header_digest(&self.crc, bhs, ahs, wire) {
                    ConnStats::add(&self.stats.digest_errors, 1);
                    // ErrorRecoveryLevel 0: a digest error ends the connection.
                    pr_warn!("core-iscsi: header digest error\n");
                    return Err(Failure::Protocol);
                }
            }
            // A Data-In's data goes straight into its command's pages (without a data
            // digest: that must be checked before the data counts, so it is received here).
            if l.data_len > 0 && l.data_digest_len == 0 && pdu::opcode_of(bhs) == OPCODE_DATA_IN {
                if let Ok(Bhs {
                    pdu: Pdu::DataIn(d),
                    ..
                }) = Bhs::decode(bhs)
                {
                    let len = u32::try_from(l.data_len).map_err(|_| Failure::Protocol)?;
                    *placing = self.session.begin_data_in(&d, len)?;
                }
            }
            *head_done = true;
        }

        // 2. The data segment: into the command's pages, or into the buffer.
        if *got < data_end {
            if let Some(p) = placing.as_mut() {
                let mut ranges = [None; 16];
                let at = p.offset.checked_add(p.done).ok_or(Failure::Protocol)?;
                let left = p.len.checked_sub(p.done).ok_or(Failure::Protocol)?;
                let (n, _) = p
                    .cmd
                    .page_ranges(at, left, &mut ranges)
                    .map_err(|_| Failure::Protocol)?;
                if incoming.is_empty() {
                    return Ok(false);
                }
                let k = incoming
                    .read_pages(ranges.get(..n).unwrap_or(&[]))
                    .map_err(|_| Failure::Protocol)?;
                if k == 0 {
                    // No room left in the command's buffer: begin_data_in checked the bounds.
                    return Err(Failure::Protocol);
                }
                p.done = p
                    .done
                    .checked_add(u32::try_from(k).map_err(|_| Failure::Protocol)?)
                    .ok_or(Failure::Protocol)?;
                *got += k;
                return Ok(true);
            }
            let part = buf.get_mut(*got..data_end).ok_or(Failure::Protocol)?;
            let Some(n) = Self::take(incoming, part)? else {
                return Ok(false);
            };
            *got += n;
            return Ok(true);
        }

        // 3. Padding and data digest.
        if *got < total {
            let part = buf.get_mut(*got..total).ok_or(Failure::Protocol)?;
            let Some(n) = Self::take(incoming, part)? else {
                return Ok(false);
            };
            *got += n;
            if *got < total {
                return Ok(true);
            }
        }
        if l.data_digest_len > 0 {
            let wire: &[u8; 4] = buf
                .get(pad_end..pad_end + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or(Failure::Protocol)?;
            let covered = buf.get(hd_end..pad_end).ok_or(Failure::Protocol)?;
            if !crc::verify_data_digest(&self.crc, covered, wire) {
                ConnStats::add(&self.stats.digest_errors, 1);
                pr_warn!("core-iscsi: data digest error\n");
                return Err(Failure::Protocol);
            }
        }

        // A whole PDU.
        ConnStats::add(&self.stats.pdus_rx, 1);
        ConnStats::add(&self.stats.bytes_rx, BHS_LEN + total);
        self.last_rx_ms.store(now_ms(), Ordering::Relaxed);
        *layout = None;
        *got = 0;
        if let Some(p) = placing.take() {
            self.session.end_data_in(self, p);
            return Ok(true);
        }
        let ahs = buf.get(..ahs_end).ok_or(Failure::Protocol)?;
        let data = buf.get(hd_end..data_end).ok_or(Failure::Protocol)?;
        let pdu = Bhs::decode(bhs).map_err(|e| {
            pr_warn!("core-iscsi: refused a PDU from the target: {:?}\n", e);
            Failure::Protocol
        })?;
        self.session.handle_pdu(self, &pdu, ahs, data)?;
        Ok(true)
    }

    /// Sends everything on the send ring, in order, with MSG_MORE while more follows (the tx
    /// lock is held).
    pub(crate) fn drain(&self, tx: &mut Tx) -> core::result::Result<(), Failure> {
        loop {
            if self.is_dead() {
                self.pending.lock().clear();
                return Ok(());
            }
            let (item, more) = {
                let mut ring = self.pending.lock();
                let item = ring.pop();
                (item, !ring.is_empty())
            };
            let Some(item) = item else {
                return Ok(());
            };
            match item {
                Pending::Command { header, plan } => {
                    self.session.send_command(self, tx, header, plan, more)?
                }
                Pending::Burst { itt, lun, seq } => self.send_burst(tx, itt, lun, seq, more)?,
                Pending::NopReply {
                    ttt,
                    lun,
                    len,
                    data,
                } => {
                    let nop = Pdu::NopOut(NopOut {
                        immediate: true,
                        lun,
                        itt: RESERVED_TAG,
                        ttt,
                        cmd_sn: self.session.immediate_cmd_sn(),
                        exp_stat_sn: self.session.exp_stat_sn(),
                    });
                    let bhs = Bhs {
                        total_ahs_words: 0,
                        data_segment_len: len as u32,
                        pdu: nop,
                    };
                    let payload = data.get(..len).unwrap_or(&[]);
                    self.send_pdu(tx, &bhs, &[], payload.len(), more, |out| {
                        out.copy_from_slice(payload);
                        true
                    })?;
                }
                Pending::Own(pdu) => {
                    let bhs = Bhs {
                        total_ahs_words: 0,
                        data_segment_len: 0,
                        pdu: with_exp_stat_sn(pdu, self.session.exp_stat_sn()),
                    };
                    self.send_pdu(tx, &bhs, &[], 0, more, |_| true)?;
                }
            }
        }
    }

    /// Sends the Data-Out PDUs of one R2T, copying each segment out of the command's buffer
    /// under the session's lock (the command cannot complete meanwhile).
    fn send_burst(
        &self,
        tx: &mut Tx,
        itt: u32,
        lun: [u8; 8],
        seq: DataOutSeq,
        more: bool,
    ) -> core::result::Result<(), Failure> {
        ConnStats::add(&self.stats.r2ts, 1);
        let exp_stat_sn = self.session.exp_stat_sn();
        // The burst is counted done before its last PDU (see `Session::send_data_outs`); false
        // (the command completed or was aborted meanwhile) needs nothing more.
        self.session
            .send_data_outs(self, tx, itt, lun, seq, exp_stat_sn, more, true)?;
        Ok(())
    }
}

/// `pdu` carrying the newest ExpStatSN (a session PDU may wait on the ring meanwhile).
fn with_exp_stat_sn(mut pdu: Pdu, sn: u32) -> Pdu {
    match &mut pdu {
        Pdu::NopOut(p) => p.exp_stat_sn = sn,
        Pdu::TaskMgmtRequest(p) => p.exp_stat_sn = sn,
        Pdu::LogoutRequest(p) => p.exp_stat_sn = sn,
        _ => {}
    }
    pdu
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
