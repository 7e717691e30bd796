//! One connection in the full feature phase, sans-IO: the receive decoder, ExpStatSN, the
//! transmit queue and the NOP timers. Shaped like `Login` and quinn-proto's `Connection`:
//!
//! - bytes in: [`Conn::want`] says whether the next bytes are for the engine
//!   ([`Conn::receive`]) or belong to a task at an offset ([`Want::Place`]: the driver moves them
//!   itself and reports them with [`Conn::placed`]); `receive` returns at most one [`Event`]
//!   per call (what a PDU means is `ffp_inbound`);
//! - requests in: commands, task management, logout, text (`ffp_requests`);
//! - PDUs out: `poll_transmit` writes the next header and names its data (`ffp_outbound`);
//! - time: [`Conn::poll_timeout`] says when to call [`Conn::handle_timeout`] (pings).
//!
//! The connection owns the task set of the commands sent on it (their allegiance): a command's
//! Data-In, R2Ts and response are matched, placed and ended with no session-wide state but
//! the window. The session-wide state (window, tags' generations, own requests) is a
//! [`Session`] every call that needs it borrows. Any error loses the connection for good
//! ([`Lost`]); the driver then ends or requeues its tasks ([`Conn::end`], ErrorRecoveryLevel
//! 0).

use super::crc::{Crc32c, DigestState};
use super::ffp_event::{Event, Lost};
use super::ffp_inbound::{Current, Ev};
use super::ffp_rx::{Next, Route, RxDecoder};
use super::ffp_session::{Millis, Session, OWN_PING};
use super::ffp_tasks::{Running, TaskSet, TaskSlot};
use super::ffp_tx::{TxItem, TxQueue, TxSlot};
use super::pdu::{Digests, BHS_LEN, DIGEST_LEN, RESERVED_TAG};
use super::serial;

/// Data segments the engine reads itself (sense, ping data, a rejected header) are kept up
/// to this many bytes; the rest is read and dropped.
pub const SEG_MAX: usize = 512;
/// The ping data of a target's NOP-In that we echo; more is a protocol error.
pub const MAX_PING_DATA: usize = 512;
/// Answers to the target's pings that can wait to be sent.
pub(super) const PING_BUFS: usize = 2;
/// The most text one request carries.
pub const MAX_TEXT_OUT: usize = 256;
/// The smallest buffer `poll_transmit` writes headers into.
pub const TX_HEADER_MAX: usize = BHS_LEN + DIGEST_LEN;

/// How a connection is set up after its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnConfig {
    /// Its connection ID.
    pub cid: u16,
    /// Negotiated digests.
    pub digests: Digests,
    /// Our MaxRecvDataSegmentLength.
    pub max_recv: u32,
    /// The target's MaxRecvDataSegmentLength.
    pub max_xmit: u32,
    /// ExpStatSN after the login (StatSN of the last Login Response + 1).
    pub exp_stat_sn: u32,
    /// Ping after this long without a PDU from the target (0: never).
    pub nop_interval_ms: Millis,
    /// A ping unanswered this long loses the connection.
    pub nop_timeout_ms: Millis,
    /// A PDU from the target not received whole this long after its first byte loses the
    /// connection (0: no bound). Bytes trickling in keep a ping's timer from firing; they do
    /// not stretch this.
    pub pdu_timeout_ms: Millis,
    /// A session of more than one connection: a ping waits until the target has every
    /// command sent (its ExpCmdSN is our next CmdSN), carries that CmdSN, and holds every
    /// command back until it is answered (`Window::hold`). An immediate PDU carries the next
    /// CmdSN, and a command on another connection can overtake it (taking that CmdSN) or
    /// trail it (one before it) on its way to the target; istgt closes the connection of an
    /// immediate PDU whose CmdSN is not its ExpCmdSN, and of a non-immediate NOP-Out that
    /// overtakes a command. One connection's stream keeps them in order by itself.
    pub ping_holds_commands: bool,
}

/// What the next received bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// For the engine: pass them to [`Conn::receive`]. `need` more finish the part of the PDU
    /// being read (its header, a segment the engine keeps or drops, the padding and data
    /// digest); a driver taking bytes out of socket buffers that cannot be put back copies at
    /// most that many (from a flat buffer, more is fine: `receive` takes what it can). 0: the
    /// PDU ends without another byte (after a placed segment): call `receive` with none.
    Bytes {
        /// Bytes to the end of the current part.
        need: usize,
    },
    /// The next `len` bytes belong to task `itt` (a command, or one of the session's own text
    /// requests) at `offset` of its buffer: move them there and report with [`Conn::placed`]
    /// (with data digests on, over a CRC the driver keeps: see `ffp_rx`).
    Place {
        /// The task.
        itt: u32,
        /// Where the next byte goes in its buffer.
        offset: u32,
        /// Bytes left of this segment.
        len: usize,
        /// Data digests are on: keep a `DigestState` over these bytes.
        digest: bool,
    },
}

/// What one [`Conn::receive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// Bytes taken from the input.
    pub used: usize,
    /// What a whole PDU meant, if one ended.
    pub event: Option<Event<'a>>,
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnCounters {
    /// PDUs received.
    pub pdus_rx: u64,
    /// PDUs handed out to send.
    pub pdus_tx: u64,
    /// Data-In PDUs received.
    pub data_in: u64,
    /// R2Ts received.
    pub r2ts: u64,
    /// Data bytes placed into task buffers.
    pub placed_bytes: u64,
    /// Pings we sent.
    pub pings: u64,
    /// Target pings we answered.
    pub ping_replies: u64,
    /// NOP-Outs sent in place of commands that ended before they were sent.
    pub fillers: u64,
}

/// Our outstanding ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ping {
    pub(super) itt: u32,
    pub(super) sent: Millis,
}

/// A target's ping data, held until its answer is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct PingBuf {
    pub(super) used: bool,
    pub(super) len: usize,
    pub(super) data: [u8; MAX_PING_DATA],
}

/// One connection of a session in the full feature phase (see the module documentation).
#[derive(Debug)]
pub struct Conn<Q, S> {
    pub(super) cfg: ConnConfig,
    /// The commands sent on this connection.
    pub(super) tasks: TaskSet<S>,
    pub(super) rx: RxDecoder,
    pub(super) current: Current,
    /// Where a placed segment starts in its task's buffer.
    pub(super) place_base: u32,
    pub(super) place_itt: u32,
    pub(super) seg: [u8; SEG_MAX],
    /// Bytes of the current segment kept in `seg`.
    pub(super) seg_kept: usize,
    pub(super) exp_stat_sn: u32,
    pub(super) tx: TxQueue<Q>,
    /// The session's own requests (task management, logout, text) queued on this connection
    /// and not yet sent: at most `MAX_OWN`, counted here rather than by the session's table
    /// of requests awaiting an answer, which a timed-out request leaves while its entry may
    /// still be queued (so `tx_capacity` holds).
    pub(super) own_queued: usize,
    /// Our ping waits in the queue: no second one is queued meanwhile, even if an answer
    /// naming it comes before it has left.
    pub(super) ping_queued: bool,
    pub(super) ping: Option<Ping>,
    /// Our ping holds the session's commands back (`Window::hold`, this generation) until
    /// it is answered.
    pub(super) holding: Option<u32>,
    /// The PDU being received answered our ping, whose hold was the last: its end says so
    /// (`Event::Released`).
    pub(super) released: bool,
    pub(super) last_rx: Millis,
    /// When the first byte of the PDU being received came (`None` between PDUs).
    pub(super) pdu_since: Option<Millis>,
    pub(super) pings: [PingBuf; PING_BUFS],
    pub(super) text: [u8; MAX_TEXT_OUT],
    pub(super) text_len: usize,
    /// A text request waits in the queue (its data is in `text`).
    pub(super) text_queued: bool,
    pub(super) lost: Option<Lost>,
    pub(super) counters: ConnCounters,
}

impl<Q, S> Conn<Q, S>
where
    Q: core::ops::DerefMut<Target = [TxSlot]>,
    S: core::ops::DerefMut<Target = [TaskSlot]>,
{
    /// A connection after its login, with a transmit queue over `tx_slots` (see
    /// `ffp_tx::tx_capacity`) and a task set over `task_slots` (all free, one per tag: the
    /// session's depth), at time `now`.
    pub fn new(cfg: ConnConfig, tx_slots: Q, task_slots: S, now: Millis) -> Self {
        Conn {
            cfg,
            tasks: TaskSet::new(task_slots),
            rx: RxDecoder::new(cfg.digests, cfg.max_recv),
            current: Current::Ignore,
            place_base: 0,
            place_itt: RESERVED_TAG,
            seg: [0; SEG_MAX],
            seg_kept: 0,
            exp_stat_sn: cfg.exp_stat_sn,
            tx: TxQueue::new(tx_slots),
            own_queued: 0,
            ping_queued: false,
            holding: None,
            released: false,
            ping: None,
            last_rx: now,
            pdu_since: None,
            pings: [PingBuf {
                used: false,
                len: 0,
                data: [0; MAX_PING_DATA],
            }; PING_BUFS],
            text: [0; MAX_TEXT_OUT],
            text_len: 0,
            text_queued: false,
            lost: None,
            counters: ConnCounters::default(),
        }
    }

    /// Its connection ID.
    pub fn cid(&self) -> u16 {
        self.cfg.cid
    }

    /// The ExpStatSN we send.
    pub fn exp_stat_sn(&self) -> u32 {
        self.exp_stat_sn
    }

    /// Its counters.
    pub fn counters(&self) -> ConnCounters {
        self.counters
    }

    /// The commands sent (or queued to be sent) on it.
    pub fn tasks(&self) -> &TaskSet<S> {
        &self.tasks
    }

    /// Takes `itt` out of its task set (the driver handed the command back to the midlayer
    /// after an abort or a reset): a late PDU for it then finds nothing, and a burst of its
    /// still queued is dropped unsent.
    pub fn forget_task(&mut self, itt: u32) -> Option<Running> {
        self.tasks.remove(itt)
    }

    /// Takes every task for which `which` holds out of its set, handing each to `ended`.
    pub fn forget_tasks_where(
        &mut self,
        which: impl FnMut(&Running) -> bool,
        ended: impl FnMut(Running),
    ) {
        self.tasks.remove_where(which, ended);
    }

    /// The connection is gone (ErrorRecoveryLevel 0): every command sent or queued on it
    /// leaves its task set through `ended` (the driver requeues or fails it; at
    /// ErrorRecoveryLevel 2 they would move to another connection instead), and its own
    /// requests are forgotten in `sess` (no answer comes). True when its ping held the
    /// session's commands and that was the last hold: the driver must let every connection
    /// send, as after [`Self::release_hold`].
    #[must_use]
    pub fn end<G>(&mut self, sess: &mut Session<G>, ended: impl FnMut(Running)) -> bool
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        self.tasks.remove_where(|_| true, ended);
        sess.forget_own(self.cfg.cid);
        self.release_hold(sess)
    }

    /// Ends the hold of our ping on the session's commands, if it has one (answered, or the
    /// connection is gone: the driver calls this when it fails, since its end may come late);
    /// true when it was the last hold, and the driver must let every connection send.
    pub fn release_hold<G>(&mut self, sess: &mut Session<G>) -> bool {
        self.holding
            .take()
            .is_some_and(|g| sess.window.release(g))
    }

    /// Why it was lost, if it was.
    pub fn lost(&self) -> Option<Lost> {
        self.lost
    }

    /// Whether something waits to be sent.
    pub fn has_transmit(&self) -> bool {
        self.lost.is_none() && !self.tx.is_empty()
    }

    /// Loses the connection (the driver's socket failed, or it stops); the first reason stays.
    pub fn close(&mut self, why: Lost) -> Lost {
        *self.lost.get_or_insert(why)
    }

    pub(super) fn fail(&mut self, why: Lost) -> Lost {
        self.close(why)
    }

    pub(super) fn alive(&self) -> Result<(), Lost> {
        match self.lost {
            Some(l) => Err(l),
            None => Ok(()),
        }
    }

    /// StatSN of a PDU that carries status: ExpStatSN moves past it (never backwards).
    pub(super) fn ack(&mut self, stat_sn: u32) {
        if serial::ge(stat_sn, self.exp_stat_sn) {
            self.exp_stat_sn = stat_sn.wrapping_add(1);
        }
    }

    // ---- receiving ---------------------------------------------------------------------------

    /// What the next received bytes are.
    pub fn want(&self) -> Want {
        match self.rx.next() {
            Next::Segment {
                route: Route::Place,
                offset,
                left,
            } => Want::Place {
                itt: self.place_itt,
                offset: self
                    .place_base
                    .saturating_add(u32::try_from(offset).unwrap_or(u32::MAX)),
                len: left,
                digest: self.rx.digests().data,
            },
            Next::Header { need } | Next::Trailer { need } => Want::Bytes { need },
            Next::Segment { left, .. } => Want::Bytes { need: left },
            Next::Route | Next::Done => Want::Bytes { need: 0 },
        }
    }

    /// `n` bytes of the segment [`Want::Place`] named were moved at `now`; `running` is the
    /// driver's CRC over the segment so far (unused without data digests: pass
    /// `DigestState::new()`).
    pub fn placed(&mut self, n: usize, running: DigestState, now: Millis) -> Result<(), Lost> {
        self.alive()?;
        if n > 0 {
            self.last_rx = now;
            self.pdu_since.get_or_insert(now);
        }
        if let Err(e) = self.rx.placed(n, running) {
            return Err(self.fail(Lost::Framing(e)));
        }
        self.counters.placed_bytes = self.counters.placed_bytes.saturating_add(n as u64);
        Ok(())
    }

    /// Takes received bytes (while [`Conn::want`] is [`Want::Bytes`]) until a PDU ends with an
    /// event, the bytes run out, or a segment is to be placed. It returns without an event only
    /// when it can go no further: then more bytes are needed, or [`Want::Place`]. After
    /// placing a segment's last byte call it again, even with no bytes: a PDU can end there.
    pub fn receive<G, C>(
        &mut self,
        sess: &mut Session<G>,
        crc: &C,
        bytes: &[u8],
        now: Millis,
    ) -> Result<Received<'_>, Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
        C: Crc32c + ?Sized,
    {
        self.alive()?;
        let mut used = 0;
        let ev = loop {
            let rest = bytes.get(used..).unwrap_or(&[]);
            let before = self.rx.next();
            match self.step(sess, crc, rest) {
                Ok((n, ev)) => {
                    used += n;
                    if n > 0 {
                        self.last_rx = now;
                        self.pdu_since.get_or_insert(now);
                    }
                    if ev.is_some() {
                        break ev;
                    }
                    // No progress: more bytes are needed, or a segment is to be placed.
                    if n == 0 && self.rx.next() == before {
                        break None;
                    }
                }
                Err(why) => return Err(self.fail(why)),
            }
        };
        Ok(Received {
            used,
            event: ev.map(|e| self.event(e)),
        })
    }

    /// One step of the decoder: bytes used, and an event if a PDU ended with one.
    fn step<G, C>(
        &mut self,
        sess: &mut Session<G>,
        crc: &C,
        bytes: &[u8],
    ) -> Result<(usize, Option<Ev>), Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
        C: Crc32c + ?Sized,
    {
        match self.rx.next() {
            Next::Header { .. } => Ok((self.rx.header(crc, bytes).map_err(Lost::Framing)?, None)),
            Next::Route => {
                self.on_header(sess)?;
                Ok((0, None))
            }
            Next::Segment {
                route: Route::Place,
                ..
            } => Ok((0, None)),
            Next::Segment { .. } => {
                let (at, piece) = self.rx.segment(crc, bytes).map_err(Lost::Framing)?;
                let n = piece.len();
                if self.current_keeps() {
                    let room = SEG_MAX.saturating_sub(at).min(n);
                    if let (Some(dst), Some(src)) =
                        (self.seg.get_mut(at..at + room), piece.get(..room))
                    {
                        dst.copy_from_slice(src);
                        self.seg_kept = at + room;
                    }
                }
                Ok((n, None))
            }
            Next::Trailer { .. } => Ok((self.rx.trailer(crc, bytes).map_err(Lost::Framing)?, None)),
            Next::Done => {
                self.pdu_since = None;
                self.counters.pdus_rx = self.counters.pdus_rx.saturating_add(1);
                let current = core::mem::replace(&mut self.current, Current::Ignore);
                let ev = match self.on_end(sess, current)? {
                    None | Some(Ev::Other(Event::Transmit)) if self.released => {
                        Some(Ev::Other(Event::Released))
                    }
                    ev => ev,
                };
                self.released = false;
                self.rx.next_pdu().map_err(Lost::Framing)?;
                Ok((0, ev))
            }
        }
    }

    // ---- time --------------------------------------------------------------------------------

    /// A ping is lost when neither its answer nor any other byte came for the NOP timeout
    /// (the answer may wait behind a long Data-In the target is still sending).
    fn ping_deadline(&self, p: Ping) -> Millis {
        p.sent
            .max(self.last_rx)
            .saturating_add(self.cfg.nop_timeout_ms)
    }

    /// When the PDU being received must be whole (`None`: none is, or no bound).
    fn pdu_deadline(&self) -> Option<Millis> {
        let since = self.pdu_since?;
        (self.cfg.pdu_timeout_ms > 0).then(|| since.saturating_add(self.cfg.pdu_timeout_ms))
    }

    /// When [`Conn::handle_timeout`] should run next (`None`: no timer).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.lost.is_some() {
            return None;
        }
        let ping = match self.ping {
            Some(p) => Some(self.ping_deadline(p)),
            None if self.cfg.nop_interval_ms > 0 => {
                Some(self.last_rx.saturating_add(self.cfg.nop_interval_ms))
            }
            None => None,
        };
        match (ping, self.pdu_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The timers at `now`: a PDU not received whole in time, or a ping unanswered too long,
    /// loses the connection; a connection from which nothing arrived for the NOP interval gets
    /// a ping (`Ok(true)`: call `poll_transmit`).
    pub fn handle_timeout<G>(&mut self, sess: &mut Session<G>, now: Millis) -> Result<bool, Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        self.alive()?;
        if self.pdu_deadline().is_some_and(|d| now >= d) {
            return Err(self.fail(Lost::PduTimeout));
        }
        match self.ping {
            Some(p) if now >= self.ping_deadline(p) => Err(self.fail(Lost::PingTimeout)),
            Some(_) => Ok(false),
            None if self.cfg.nop_interval_ms > 0
                && !self.ping_queued
                && now >= self.last_rx.saturating_add(self.cfg.nop_interval_ms) =>
            {
                if self.tx.is_full() {
                    return Ok(false);
                }
                // See `ConnConfig::ping_holds_commands`: the ping waits for a moment when the
                // target has every command and this connection nothing queued ahead of it
                // (the hold lasts until the answer). One with commands in flight goes all the
                // same, unheld: a connection that has work and has gone silent is what pings
                // are for, and a dead path must not wait for the SCSI timeouts while commands
                // keep coming on the others. An idle one waits: nothing depends on it.
                if self.cfg.ping_holds_commands {
                    self.holding = if self.tx.is_empty() {
                        sess.window.hold(now)
                    } else {
                        None
                    };
                    if self.holding.is_none() && self.tasks.in_flight() == 0 {
                        return Ok(false);
                    }
                }
                let itt = sess.own_itt(OWN_PING);
                if self.tx.push(TxItem::Ping { itt }).is_err() {
                    self.release_hold(sess);
                    return Ok(false);
                }
                self.ping_queued = true;
                self.ping = Some(Ping { itt, sent: now });
                self.counters.pings = self.counters.pings.saturating_add(1);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
