//! One connection in the full feature phase, sans-IO: the receive decoder, ExpStatSN, the
//! transmit queue and the NOP timers. Shaped like `Login` and quinn-proto's `Connection`:
//!
//! - bytes in: [`Conn::want`] says whether the next bytes are for the engine
//!   ([`Conn::receive`]) or belong to a task at an offset ([`Want::Place`]: the driver moves them
//!   itself and reports them with [`Conn::placed`]); `receive` returns at most one [`Event`]
//!   per call;
//! - PDUs out: [`Conn::poll_transmit`] writes the next header and names its data;
//! - time: [`Conn::poll_timeout`] says when to call [`Conn::handle_timeout`] (pings).
//!
//! The session-wide state (window, task set, own requests) is a [`Session`] every call that
//! needs it borrows. Any error loses the connection for good ([`Lost`]); the driver then ends
//! or requeues the connection's tasks (ErrorRecoveryLevel 0).

use super::crc::{Crc32c, DigestState};
use super::ffp_event::{Event, Finished, Lost, Outcome};
use super::ffp_rx::{Next, Route, RxDecoder, RxError};
use super::ffp_session::{Millis, Own, OwnKind, Session, OWN_LOGOUT, OWN_PING, OWN_TEXT, OWN_TMF};
use super::ffp_tasks::{CommandSpec, Itt, StartError, TaskSlot};
use super::ffp_tx::{TxData, TxItem, TxKind, TxPdu, TxQueue, TxSlot};
use super::pdu::{
    self, Bhs, DataIn, DataOut, Digests, LogoutRequest, NopOut, Pdu, ScsiCommand, TaskMgmtRequest,
    TextRequest, BHS_LEN, DIGEST_LEN, RESERVED_TAG,
};
use super::serial;
use super::task::Completion;

/// Data segments the engine reads itself (sense, ping data, a rejected header) are kept up
/// to this many bytes; the rest is read and dropped.
pub const SEG_MAX: usize = 1024;
/// The ping data of a target's NOP-In that we echo; more is a protocol error.
pub const MAX_PING_DATA: usize = 512;
/// Answers to the target's pings that can wait to be sent.
const PING_BUFS: usize = 4;
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
}

/// What the next received bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// For the engine: pass them to [`Conn::receive`].
    Bytes,
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
}

/// What the PDU being received is, once its header was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    /// Nothing to do at its end.
    Ignore,
    /// A Data-In for a task in the set (placed), ending it when `completion` is set.
    DataIn {
        itt: u32,
        completion: Option<Completion>,
    },
    /// A SCSI Response.
    Response(pdu::ScsiResponse),
    /// An R2T.
    R2t(pdu::R2t),
    /// A NOP-In the target wants answered.
    Ping(pdu::NopIn),
    /// An Async Message.
    Async(pdu::AsyncMessage),
    /// A Reject.
    Reject(pdu::Reject),
    /// A Text Response to our request, placed.
    Text(pdu::TextResponse),
    /// A Logout Response.
    Logout(pdu::LogoutResponse),
    /// A Task Management Function Response.
    TaskMgmt(pdu::TaskMgmtResponse),
}

/// An event without borrows, turned into an [`Event`] on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Finished {
        itt: u32,
        completion: Completion,
        sense_at: usize,
        sense_len: usize,
    },
    Rejected {
        itt: u32,
        reason: u8,
        command: bool,
    },
    Other(Event<'static>),
}

/// Our outstanding ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ping {
    itt: u32,
    sent: Millis,
}

#[derive(Debug, Clone, Copy)]
struct PingBuf {
    used: bool,
    len: usize,
    data: [u8; MAX_PING_DATA],
}

/// One connection of a session in the full feature phase (see the module documentation).
#[derive(Debug)]
pub struct Conn<Q> {
    cfg: ConnConfig,
    rx: RxDecoder,
    current: Current,
    /// Where a placed segment starts in its task's buffer.
    place_base: u32,
    place_itt: u32,
    seg: [u8; SEG_MAX],
    /// Bytes of the current segment kept in `seg`.
    seg_kept: usize,
    exp_stat_sn: u32,
    tx: TxQueue<Q>,
    ping: Option<Ping>,
    last_rx: Millis,
    pings: [PingBuf; PING_BUFS],
    text: [u8; MAX_TEXT_OUT],
    text_len: usize,
    /// A text request waits in the queue (its data is in `text`).
    text_queued: bool,
    lost: Option<Lost>,
    counters: ConnCounters,
}

impl<Q: core::ops::DerefMut<Target = [TxSlot]>> Conn<Q> {
    /// A connection after its login, with a transmit queue over `tx_slots` (see
    /// `ffp_tx::tx_capacity`), at time `now`.
    pub fn new(cfg: ConnConfig, tx_slots: Q, now: Millis) -> Self {
        Conn {
            cfg,
            rx: RxDecoder::new(cfg.digests, cfg.max_recv),
            current: Current::Ignore,
            place_base: 0,
            place_itt: RESERVED_TAG,
            seg: [0; SEG_MAX],
            seg_kept: 0,
            exp_stat_sn: cfg.exp_stat_sn,
            tx: TxQueue::new(tx_slots),
            ping: None,
            last_rx: now,
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

    fn fail(&mut self, why: Lost) -> Lost {
        self.close(why)
    }

    fn alive(&self) -> Result<(), Lost> {
        match self.lost {
            Some(l) => Err(l),
            None => Ok(()),
        }
    }

    /// StatSN of a PDU that carries status: ExpStatSN moves past it (never backwards).
    fn ack(&mut self, stat_sn: u32) {
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
            _ => Want::Bytes,
        }
    }

    /// `n` bytes of the segment [`Want::Place`] named were moved at `now`; `running` is the
    /// driver's CRC over the segment so far (unused without data digests: pass
    /// `DigestState::new()`).
    pub fn placed(&mut self, n: usize, running: DigestState, now: Millis) -> Result<(), Lost> {
        self.alive()?;
        if n > 0 {
            self.last_rx = now;
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
    pub fn receive<S, C>(
        &mut self,
        sess: &mut Session<S>,
        crc: &C,
        bytes: &[u8],
        now: Millis,
    ) -> Result<Received<'_>, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
        C: Crc32c + ?Sized,
    {
        self.alive()?;
        let mut used = 0;
        let ev = loop {
            let rest = bytes.get(used..).unwrap_or(&[]);
            let before = self.rx.next();
            match self.step(sess, crc, rest, now) {
                Ok((n, ev)) => {
                    used += n;
                    if n > 0 {
                        self.last_rx = now;
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
    fn step<S, C>(
        &mut self,
        sess: &mut Session<S>,
        crc: &C,
        bytes: &[u8],
        now: Millis,
    ) -> Result<(usize, Option<Ev>), Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
        C: Crc32c + ?Sized,
    {
        match self.rx.next() {
            Next::Header { .. } => Ok((self.rx.header(crc, bytes).map_err(Lost::Framing)?, None)),
            Next::Route => {
                self.on_header(sess, now)?;
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
                self.counters.pdus_rx = self.counters.pdus_rx.saturating_add(1);
                let current = core::mem::replace(&mut self.current, Current::Ignore);
                let ev = self.on_end(sess, current)?;
                self.rx.next_pdu().map_err(Lost::Framing)?;
                Ok((0, ev))
            }
        }
    }

    fn current_keeps(&self) -> bool {
        matches!(
            self.current,
            Current::Response(_) | Current::Ping(_) | Current::Async(_) | Current::Reject(_)
        )
    }

    fn event(&self, ev: Ev) -> Event<'_> {
        match ev {
            Ev::Finished {
                itt,
                completion,
                sense_at,
                sense_len,
            } => Event::Finished(Finished {
                itt,
                tag: Itt::parse(itt).map(|i| i.tag).unwrap_or(0),
                queue: Itt::parse(itt).map(|i| i.queue).unwrap_or(0),
                outcome: Outcome::Completed {
                    completion,
                    sense: self
                        .seg
                        .get(sense_at..sense_at.saturating_add(sense_len))
                        .unwrap_or(&[]),
                },
            }),
            Ev::Rejected {
                itt,
                reason,
                command: true,
            } => Event::Finished(Finished {
                itt,
                tag: Itt::parse(itt).map(|i| i.tag).unwrap_or(0),
                queue: Itt::parse(itt).map(|i| i.queue).unwrap_or(0),
                outcome: Outcome::Rejected { reason },
            }),
            Ev::Rejected { itt, reason, .. } => Event::Rejected { itt, reason },
            Ev::Other(e) => e,
        }
    }

    /// The header is whole: take what it says about sequence numbers and decide where its
    /// data goes.
    fn on_header<S>(&mut self, sess: &mut Session<S>, now: Millis) -> Result<(), Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let _ = now;
        let bhs = Bhs::decode(self.rx.bhs()).map_err(|e| Lost::Framing(RxError::Pdu(e)))?;
        let data_len = self.rx.layout().data_len;
        let len32 = u32::try_from(data_len).map_err(|_| Lost::Framing(RxError::OutOfTurn))?;
        self.seg_kept = 0;
        let mut route = Route::Keep;
        let current = match bhs.pdu {
            Pdu::DataIn(d) => {
                sess.window.update(d.exp_cmd_sn, d.max_cmd_sn);
                if d.status_present {
                    self.ack(d.stat_sn);
                }
                self.counters.data_in = self.counters.data_in.saturating_add(1);
                match self.data_in(sess, &d, len32)? {
                    Some((offset, completion)) => {
                        route = Route::Place;
                        self.place_itt = d.itt;
                        self.place_base = offset;
                        Current::DataIn {
                            itt: d.itt,
                            completion,
                        }
                    }
                    // A late Data-In for a task that ended (aborted, reset): dropped.
                    None => {
                        route = Route::Discard;
                        Current::Ignore
                    }
                }
            }
            Pdu::ScsiResponse(r) => {
                sess.window.update(r.exp_cmd_sn, r.max_cmd_sn);
                self.ack(r.stat_sn);
                Current::Response(r)
            }
            Pdu::R2t(r) => {
                sess.window.update(r.exp_cmd_sn, r.max_cmd_sn);
                route = Route::Discard;
                Current::R2t(r)
            }
            Pdu::NopIn(n) => {
                sess.window.update(n.exp_cmd_sn, n.max_cmd_sn);
                if n.itt != RESERVED_TAG {
                    // The answer to our ping carries status; a target's own ping does not.
                    self.ack(n.stat_sn);
                    if self.ping.is_some_and(|p| p.itt == n.itt) {
                        self.ping = None;
                    }
                }
                if n.ttt != RESERVED_TAG {
                    if data_len > MAX_PING_DATA {
                        return Err(Lost::PingDataTooLong(len32));
                    }
                    Current::Ping(n)
                } else {
                    route = Route::Discard;
                    Current::Ignore
                }
            }
            Pdu::AsyncMessage(a) => {
                sess.window.update(a.exp_cmd_sn, a.max_cmd_sn);
                self.ack(a.stat_sn);
                Current::Async(a)
            }
            Pdu::Reject(r) => {
                sess.window.update(r.exp_cmd_sn, r.max_cmd_sn);
                self.ack(r.stat_sn);
                Current::Reject(r)
            }
            Pdu::TextResponse(t) => {
                sess.window.update(t.exp_cmd_sn, t.max_cmd_sn);
                self.ack(t.stat_sn);
                match sess.own_mut(t.itt, self.cfg.cid) {
                    Some(Own {
                        kind: OwnKind::Text { received },
                        ..
                    }) => {
                        route = Route::Place;
                        self.place_itt = t.itt;
                        self.place_base = *received;
                        *received = received.saturating_add(len32);
                        Current::Text(t)
                    }
                    _ => {
                        route = Route::Discard;
                        Current::Ignore
                    }
                }
            }
            Pdu::LogoutResponse(l) => {
                sess.window.update(l.exp_cmd_sn, l.max_cmd_sn);
                self.ack(l.stat_sn);
                route = Route::Discard;
                Current::Logout(l)
            }
            Pdu::TaskMgmtResponse(t) => {
                sess.window.update(t.exp_cmd_sn, t.max_cmd_sn);
                self.ack(t.stat_sn);
                route = Route::Discard;
                Current::TaskMgmt(t)
            }
            _ => return Err(Lost::Unexpected(pdu::opcode_of(self.rx.bhs()))),
        };
        self.current = current;
        self.rx.route(route).map_err(Lost::Framing)
    }

    /// Checks a Data-In header against its task: where its data goes, and the completion it
    /// carries; `None` when no task in the set has its ITT.
    fn data_in<S>(
        &mut self,
        sess: &mut Session<S>,
        d: &DataIn,
        len: u32,
    ) -> Result<Option<(u32, Option<Completion>)>, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let Some(r) = sess.tasks.get_mut(d.itt) else {
            return Ok(None);
        };
        if r.cid != self.cfg.cid {
            return Err(Lost::WrongConnection(d.itt));
        }
        if !r.sent {
            return Err(Lost::NotSent(d.itt));
        }
        let step = r
            .task
            .on_data_in(d, len)
            .map_err(|error| Lost::Task { itt: d.itt, error })?;
        Ok(Some((step.offset, step.completion)))
    }

    /// The PDU is whole (digests checked): what it means.
    fn on_end<S>(&mut self, sess: &mut Session<S>, current: Current) -> Result<Option<Ev>, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let kept = self.seg_kept.min(SEG_MAX);
        match current {
            Current::Ignore => Ok(None),
            Current::DataIn { itt, completion } => Ok(completion.and_then(|completion| {
                // Gone if the driver ended it meanwhile (an abort): then no event.
                sess.tasks.remove(itt).map(|_| Ev::Finished {
                    itt,
                    completion,
                    sense_at: 0,
                    sense_len: 0,
                })
            })),
            Current::Response(rsp) => self.response(sess, &rsp, kept),
            Current::R2t(r2t) => {
                let Some(r) = sess.tasks.get_mut(r2t.itt) else {
                    return Ok(None);
                };
                if r.cid != self.cfg.cid {
                    return Err(Lost::WrongConnection(r2t.itt));
                }
                if !r.sent {
                    return Err(Lost::NotSent(r2t.itt));
                }
                self.counters.r2ts = self.counters.r2ts.saturating_add(1);
                let seq = r.task.on_r2t(&r2t).map_err(|error| Lost::Task {
                    itt: r2t.itt,
                    error,
                })?;
                self.tx
                    .push(TxItem::DataOut {
                        itt: r2t.itt,
                        seq,
                        solicited: true,
                    })
                    .map_err(|_| Lost::QueueFull)?;
                Ok(Some(Ev::Other(Event::Transmit)))
            }
            Current::Ping(n) => {
                let len = self.rx.layout().data_len;
                let buf = self
                    .pings
                    .iter()
                    .position(|b| !b.used)
                    .ok_or(Lost::PingFlood)?;
                let slot = self.pings.get_mut(buf).ok_or(Lost::PingFlood)?;
                let src = self.seg.get(..len).ok_or(Lost::PingDataTooLong(0))?;
                slot.data
                    .get_mut(..len)
                    .ok_or(Lost::PingFlood)?
                    .copy_from_slice(src);
                slot.len = len;
                slot.used = true;
                self.tx
                    .push(TxItem::PingReply {
                        ttt: n.ttt,
                        lun: n.lun,
                        buf: buf as u8,
                    })
                    .map_err(|_| Lost::QueueFull)?;
                Ok(Some(Ev::Other(Event::Transmit)))
            }
            Current::Async(a) => match a.event {
                0 => {
                    let data = self.seg.get(..kept).unwrap_or(&[]);
                    let changed = super::scsi::sense_from_response(data)
                        .and_then(|s| super::scsi::parse_sense(s).ok())
                        .is_some_and(|s| s.asc == 0x3f && s.ascq == 0x0e);
                    Ok(changed.then_some(Ev::Other(Event::Rescan)))
                }
                1 => Ok(Some(Ev::Other(Event::LogoutRequested {
                    within_s: a.param3,
                }))),
                2 => Err(Lost::TargetDropsConnection),
                3 => Err(Lost::TargetDropsSession),
                // Parameter renegotiation, vendor codes: nothing to do.
                _ => Ok(None),
            },
            Current::Reject(r) => {
                // The data segment is the rejected PDU's header; its ITT is at bytes 16..20.
                let itt = self
                    .seg
                    .get(16..20)
                    .filter(|_| kept >= 20)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes);
                let Some(itt) = itt else { return Ok(None) };
                if self.ping.is_some_and(|p| p.itt == itt) {
                    self.ping = None;
                    return Ok(None);
                }
                if sess.tasks.get(itt).is_some_and(|t| t.cid == self.cfg.cid) {
                    sess.tasks.remove(itt);
                    return Ok(Some(Ev::Rejected {
                        itt,
                        reason: r.reason,
                        command: true,
                    }));
                }
                if sess.own_mut(itt, self.cfg.cid).is_some() {
                    sess.take_own(itt);
                    return Ok(Some(Ev::Rejected {
                        itt,
                        reason: r.reason,
                        command: false,
                    }));
                }
                Ok(None)
            }
            Current::Text(t) => {
                let len = u32::try_from(self.rx.layout().data_len).unwrap_or(u32::MAX);
                if t.final_ && !t.continue_ {
                    sess.take_own(t.itt);
                }
                Ok(Some(Ev::Other(Event::Text {
                    itt: t.itt,
                    ttt: t.ttt,
                    final_: t.final_,
                    continue_: t.continue_,
                    len,
                })))
            }
            Current::Logout(l) => match sess.own_mut(l.itt, self.cfg.cid) {
                Some(Own {
                    kind: OwnKind::Logout { .. },
                    ..
                }) => {
                    sess.take_own(l.itt);
                    Ok(Some(Ev::Other(Event::Logout {
                        itt: l.itt,
                        response: l.response,
                        time2wait: l.time2wait,
                        time2retain: l.time2retain,
                    })))
                }
                _ => Ok(None),
            },
            Current::TaskMgmt(t) => match sess.own_mut(t.itt, self.cfg.cid) {
                Some(Own {
                    kind: OwnKind::TaskMgmt { function, ref_itt },
                    ..
                }) => {
                    let (function, ref_itt) = (*function, *ref_itt);
                    sess.take_own(t.itt);
                    Ok(Some(Ev::Other(Event::TaskMgmt {
                        itt: t.itt,
                        function,
                        ref_itt,
                        response: t.response,
                    })))
                }
                _ => Ok(None),
            },
        }
    }

    /// A SCSI Response: its task ends, with the sense the first `kept` bytes of its segment
    /// hold.
    fn response<S>(
        &mut self,
        sess: &mut Session<S>,
        rsp: &pdu::ScsiResponse,
        kept: usize,
    ) -> Result<Option<Ev>, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let itt = rsp.itt;
        let Some(r) = sess.tasks.get_mut(itt) else {
            // A response to a task the driver ended (aborted, reset): nothing to do.
            return Ok(None);
        };
        if r.cid != self.cfg.cid {
            return Err(Lost::WrongConnection(itt));
        }
        if !r.sent {
            return Err(Lost::NotSent(itt));
        }
        let seg_len = self.rx.layout().data_len;
        if seg_len > kept {
            // Longer than we keep: the sense must fit the real segment; we keep what fits.
            let claimed = match self.seg.get(..2) {
                Some(&[h, l]) if kept >= 2 => usize::from(u16::from_be_bytes([h, l])),
                _ => 0,
            };
            if claimed.saturating_add(2) > seg_len {
                return Err(Lost::Task {
                    itt,
                    error: super::task::TaskError::BadSense,
                });
            }
            let fits = u16::try_from(claimed.min(kept.saturating_sub(2))).unwrap_or(0);
            if let Some(d) = self.seg.get_mut(..2) {
                d.copy_from_slice(&fits.to_be_bytes());
            }
        }
        let data = self.seg.get(..kept).unwrap_or(&[]);
        let step = r
            .task
            .on_response(rsp, data)
            .map_err(|error| Lost::Task { itt, error })?;
        let completion = step.completion;
        let sense_len = step.sense.len();
        let sense_at = if sense_len > 0 { 2 } else { 0 };
        sess.tasks.remove(itt);
        Ok(Some(Ev::Finished {
            itt,
            completion,
            sense_at,
            sense_len,
        }))
    }

    // ---- starting things ---------------------------------------------------------------------

    /// Starts a SCSI command on this connection: a CmdSN from the window, its slot in the
    /// task set (its allegiance: this connection), its place in the transmit queue. Returns
    /// its ITT.
    pub fn start_command<S>(
        &mut self,
        sess: &mut Session<S>,
        spec: &CommandSpec,
        now: Millis,
    ) -> Result<u32, StartError>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        if self.lost.is_some() {
            return Err(StartError::Lost);
        }
        if self.tx.is_full() {
            return Err(StartError::QueueFull);
        }
        if spec.queue >= super::ffp_tasks::MAX_QUEUES || usize::from(spec.tag) >= sess.tasks.depth()
        {
            return Err(StartError::BadTag);
        }
        if !sess.tasks.is_free(spec.tag) {
            return Err(StartError::Busy);
        }
        let cmd_sn = sess.window.assign(now).ok_or(StartError::WindowShut)?;
        let params = sess.write_params;
        let itt = sess.tasks.insert(spec, cmd_sn, self.cfg.cid, &params)?;
        if self.tx.push(TxItem::Command { itt }).is_err() {
            // Checked above: cannot happen. The CmdSN is spent: the connection cannot go on.
            sess.tasks.remove(itt);
            self.fail(Lost::QueueFull);
            return Err(StartError::Lost);
        }
        Ok(itt)
    }

    /// Sends a task management request on this connection (for a task: its own connection,
    /// see `Session::allegiance`); returns the request's ITT, which its answer
    /// ([`Event::TaskMgmt`]) names.
    pub fn task_mgmt<S>(
        &mut self,
        sess: &mut Session<S>,
        function: u8,
        lun: [u8; 8],
        ref_itt: u32,
    ) -> Result<u32, StartError>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let ref_cmd_sn = sess
            .tasks
            .get(ref_itt)
            .map(|r| r.cmd_sn)
            .unwrap_or_else(|| sess.window.immediate());
        let itt = self.own(sess, OWN_TMF, OwnKind::TaskMgmt { function, ref_itt })?;
        self.queue_own(
            sess,
            itt,
            TxItem::TaskMgmt {
                itt,
                function,
                lun,
                ref_itt,
                ref_cmd_sn,
            },
        )
    }

    /// Sends a logout request (`pdu::logout_reason`; the connection to close is this one);
    /// returns its ITT, which its answer ([`Event::Logout`]) names.
    pub fn logout<S>(&mut self, sess: &mut Session<S>, reason: u8) -> Result<u32, StartError>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let itt = self.own(sess, OWN_LOGOUT, OwnKind::Logout { reason })?;
        let cid = self.cfg.cid;
        self.queue_own(sess, itt, TxItem::Logout { itt, reason, cid })
    }

    /// Sends a text request with `data` (at most [`MAX_TEXT_OUT`] bytes): a new exchange
    /// (`cont` `None`), or the next request of one (`Some((itt, ttt))` from its last
    /// [`Event::Text`], with empty data, to fetch the rest). The answer's data comes as
    /// [`Want::Place`] for the request's ITT at increasing offsets. The request goes immediate
    /// when the window is shut (a discovery session's target may keep it so).
    pub fn text<S>(
        &mut self,
        sess: &mut Session<S>,
        cont: Option<(u32, u32)>,
        data: &[u8],
        now: Millis,
    ) -> Result<u32, StartError>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        self.alive().map_err(|_| StartError::Lost)?;
        if self.text_queued {
            return Err(StartError::TooManyRequests);
        }
        if data.len() > MAX_TEXT_OUT {
            return Err(StartError::TooManyRequests);
        }
        if self.tx.is_full() {
            return Err(StartError::QueueFull);
        }
        let (itt, ttt) = match cont {
            Some((itt, ttt)) => {
                if sess.own_mut(itt, self.cfg.cid).is_none() {
                    // The exchange ended (or names no text request): start afresh.
                    self.own(sess, OWN_TEXT, OwnKind::Text { received: 0 })
                        .map(|i| (i, RESERVED_TAG))?
                } else {
                    (itt, ttt)
                }
            }
            None => (
                self.own(sess, OWN_TEXT, OwnKind::Text { received: 0 })?,
                RESERVED_TAG,
            ),
        };
        if let Some(dst) = self.text.get_mut(..data.len()) {
            dst.copy_from_slice(data);
        }
        self.text_len = data.len();
        self.text_queued = true;
        let (immediate, cmd_sn) = if sess.window.can_send() {
            (false, sess.window.assign(now).unwrap_or(0))
        } else {
            (true, sess.window.immediate())
        };
        self.queue_own(
            sess,
            itt,
            TxItem::Text {
                itt,
                ttt,
                immediate,
                cmd_sn,
            },
        )
    }

    fn own<S>(&mut self, sess: &mut Session<S>, kind: u32, what: OwnKind) -> Result<u32, StartError>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        self.alive().map_err(|_| StartError::Lost)?;
        if self.tx.is_full() {
            return Err(StartError::QueueFull);
        }
        let itt = sess.own_itt(kind);
        sess.add_own(Own {
            itt,
            cid: self.cfg.cid,
            kind: what,
        })
        .ok_or(StartError::TooManyRequests)?;
        Ok(itt)
    }

    fn queue_own<S>(
        &mut self,
        sess: &mut Session<S>,
        itt: u32,
        item: TxItem,
    ) -> Result<u32, StartError>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        if self.tx.push(item).is_err() {
            sess.take_own(itt);
            return Err(StartError::QueueFull);
        }
        Ok(itt)
    }

    // ---- time --------------------------------------------------------------------------------

    /// A ping is lost when neither its answer nor any other byte came for the NOP timeout
    /// (the answer may wait behind a long Data-In the target is still sending).
    fn ping_deadline(&self, p: Ping) -> Millis {
        p.sent
            .max(self.last_rx)
            .saturating_add(self.cfg.nop_timeout_ms)
    }

    /// When [`Conn::handle_timeout`] should run next (`None`: no timer).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.lost.is_some() {
            return None;
        }
        match self.ping {
            Some(p) => Some(self.ping_deadline(p)),
            None if self.cfg.nop_interval_ms > 0 => {
                Some(self.last_rx.saturating_add(self.cfg.nop_interval_ms))
            }
            None => None,
        }
    }

    /// The timers at `now`: a ping unanswered too long loses the connection; a connection
    /// from which nothing arrived for the NOP interval gets a ping (`Ok(true)`: call
    /// `poll_transmit`).
    pub fn handle_timeout<S>(&mut self, sess: &mut Session<S>, now: Millis) -> Result<bool, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        self.alive()?;
        match self.ping {
            Some(p) if now >= self.ping_deadline(p) => Err(self.fail(Lost::PingTimeout)),
            Some(_) => Ok(false),
            None if self.cfg.nop_interval_ms > 0
                && now >= self.last_rx.saturating_add(self.cfg.nop_interval_ms) =>
            {
                let itt = sess.own_itt(OWN_PING);
                if self.tx.push(TxItem::Ping { itt }).is_err() {
                    return Ok(false);
                }
                self.ping = Some(Ping { itt, sent: now });
                self.counters.pings = self.counters.pings.saturating_add(1);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    // ---- transmitting ------------------------------------------------------------------------

    /// The next PDU to send: its header (and header digest) written at the start of `out`
    /// (at least [`TX_HEADER_MAX`] bytes), its data named. `None` when nothing waits.
    pub fn poll_transmit<S, C>(
        &mut self,
        sess: &mut Session<S>,
        crc: &C,
        out: &mut [u8],
    ) -> Result<Option<TxPdu<'_>>, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
        C: Crc32c + ?Sized,
    {
        self.alive()?;
        loop {
            let Some(item) = self.tx.front() else {
                return Ok(None);
            };
            let Some((bhs, data, kind)) = self.build(sess, item)? else {
                continue;
            };
            let head: &mut [u8; BHS_LEN] = match out.first_chunk_mut::<BHS_LEN>() {
                Some(h) => h,
                None => return Err(self.fail(Lost::Encode(pdu::PduError::BufferTooSmall))),
            };
            if let Err(e) = bhs.encode(head) {
                return Err(self.fail(Lost::Encode(e)));
            }
            let mut header_len = BHS_LEN;
            if self.cfg.digests.header {
                let mut d = DigestState::new();
                d.update(crc, head);
                match out.get_mut(BHS_LEN..BHS_LEN + DIGEST_LEN) {
                    Some(dst) => dst.copy_from_slice(&d.finish_wire()),
                    None => return Err(self.fail(Lost::Encode(pdu::PduError::BufferTooSmall))),
                }
                header_len += DIGEST_LEN;
            }
            self.counters.pdus_tx = self.counters.pdus_tx.saturating_add(1);
            let len = bhs.data_segment_len as usize;
            let data = match data {
                Tx::None => TxData::None,
                Tx::Task { itt, offset, len } => TxData::Task { itt, offset, len },
                Tx::Ping(buf) => TxData::Bytes(
                    self.pings
                        .get(usize::from(buf))
                        .and_then(|b| b.data.get(..b.len))
                        .unwrap_or(&[]),
                ),
                Tx::Text => TxData::Bytes(self.text.get(..self.text_len).unwrap_or(&[])),
            };
            return Ok(Some(TxPdu {
                header_len,
                data,
                pad: pdu::pad_len(len),
                data_digest: self.cfg.digests.data && len > 0,
                kind,
            }));
        }
    }

    /// Turns the head of the queue into one PDU (advancing or popping it); `None` when the
    /// head was dropped (a burst for a task that ended) and the next one is due.
    fn build<S>(
        &mut self,
        sess: &mut Session<S>,
        item: TxItem,
    ) -> Result<Option<(Bhs, Tx, TxKind)>, Lost>
    where
        S: core::ops::DerefMut<Target = [TaskSlot]>,
    {
        let exp_stat_sn = self.exp_stat_sn;
        let immediate_sn = sess.window.immediate();
        let bhs = |pdu: Pdu, len: u32| Bhs {
            total_ahs_words: 0,
            data_segment_len: len,
            pdu,
        };
        match item {
            TxItem::Command { itt } => {
                let Some(r) = sess.tasks.get_mut(itt) else {
                    self.tx.pop();
                    return Err(self.fail(Lost::QueuedCommandGone(itt)));
                };
                r.sent = true;
                let spec = r.spec;
                let plan = r.task.write_plan().copied();
                let immediate = plan.map(|p| p.immediate_len()).unwrap_or(0);
                let header = ScsiCommand {
                    immediate: false,
                    final_: plan.map(|p| p.command_final()).unwrap_or(true),
                    read: spec.read_len > 0,
                    write: spec.write_len > 0,
                    attr: spec.attr,
                    lun: spec.lun,
                    itt,
                    expected_len: if spec.write_len > 0 {
                        spec.write_len
                    } else {
                        spec.read_len
                    },
                    cmd_sn: r.cmd_sn,
                    exp_stat_sn,
                    cdb: spec.cdb,
                };
                match plan.map(|p| p.unsolicited()).filter(|s| s.remaining() > 0) {
                    Some(seq) => self.tx.replace_front(TxItem::DataOut {
                        itt,
                        seq,
                        solicited: false,
                    }),
                    None => {
                        self.tx.pop();
                    }
                }
                let data = if immediate > 0 {
                    Tx::Task {
                        itt,
                        offset: 0,
                        len: immediate,
                    }
                } else {
                    Tx::None
                };
                Ok(Some((
                    bhs(Pdu::ScsiCommand(header), immediate),
                    data,
                    TxKind::Command { immediate },
                )))
            }
            TxItem::DataOut {
                itt,
                mut seq,
                solicited,
            } => {
                let Some(r) = sess.tasks.get_mut(itt) else {
                    // The task ended (the target's status, an abort): nothing left to send.
                    self.tx.pop();
                    return Ok(None);
                };
                let Some(d) = seq.next() else {
                    self.tx.pop();
                    return Ok(None);
                };
                if d.final_ && solicited {
                    r.task.burst_done();
                }
                if seq.remaining() > 0 {
                    self.tx.replace_front(TxItem::DataOut {
                        itt,
                        seq,
                        solicited,
                    });
                } else {
                    self.tx.pop();
                }
                let out = DataOut {
                    final_: d.final_,
                    lun: r.spec.lun,
                    itt,
                    ttt: d.ttt,
                    exp_stat_sn,
                    data_sn: d.data_sn,
                    offset: d.offset,
                };
                Ok(Some((
                    bhs(Pdu::DataOut(out), d.len),
                    Tx::Task {
                        itt,
                        offset: d.offset,
                        len: d.len,
                    },
                    TxKind::DataOut { solicited },
                )))
            }
            TxItem::Ping { itt } => {
                self.tx.pop();
                let nop = NopOut {
                    immediate: true,
                    lun: [0; 8],
                    itt,
                    ttt: RESERVED_TAG,
                    cmd_sn: immediate_sn,
                    exp_stat_sn,
                };
                Ok(Some((bhs(Pdu::NopOut(nop), 0), Tx::None, TxKind::Ping)))
            }
            TxItem::PingReply { ttt, lun, buf } => {
                self.tx.pop();
                let len = match self.pings.get_mut(usize::from(buf)) {
                    Some(b) => {
                        b.used = false;
                        b.len
                    }
                    None => 0,
                };
                self.counters.ping_replies = self.counters.ping_replies.saturating_add(1);
                let nop = NopOut {
                    immediate: true,
                    lun,
                    itt: RESERVED_TAG,
                    ttt,
                    cmd_sn: immediate_sn,
                    exp_stat_sn,
                };
                let len = u32::try_from(len).unwrap_or(0);
                let data = if len > 0 { Tx::Ping(buf) } else { Tx::None };
                Ok(Some((bhs(Pdu::NopOut(nop), len), data, TxKind::PingReply)))
            }
            TxItem::TaskMgmt {
                itt,
                function,
                lun,
                ref_itt,
                ref_cmd_sn,
            } => {
                self.tx.pop();
                let req = TaskMgmtRequest {
                    immediate: true,
                    function,
                    lun,
                    itt,
                    ref_task_tag: ref_itt,
                    cmd_sn: immediate_sn,
                    exp_stat_sn,
                    ref_cmd_sn,
                    exp_data_sn: 0,
                };
                Ok(Some((
                    bhs(Pdu::TaskMgmtRequest(req), 0),
                    Tx::None,
                    TxKind::TaskMgmt,
                )))
            }
            TxItem::Logout { itt, reason, cid } => {
                self.tx.pop();
                let req = LogoutRequest {
                    immediate: true,
                    reason,
                    itt,
                    cid,
                    cmd_sn: immediate_sn,
                    exp_stat_sn,
                };
                Ok(Some((
                    bhs(Pdu::LogoutRequest(req), 0),
                    Tx::None,
                    TxKind::Logout,
                )))
            }
            TxItem::Text {
                itt,
                ttt,
                immediate,
                cmd_sn,
            } => {
                self.tx.pop();
                self.text_queued = false;
                let req = TextRequest {
                    immediate,
                    final_: true,
                    continue_: false,
                    lun: [0; 8],
                    itt,
                    ttt,
                    cmd_sn: if immediate { immediate_sn } else { cmd_sn },
                    exp_stat_sn,
                };
                let len = u32::try_from(self.text_len).unwrap_or(0);
                let data = if len > 0 { Tx::Text } else { Tx::None };
                Ok(Some((bhs(Pdu::TextRequest(req), len), data, TxKind::Text)))
            }
        }
    }
}

/// Where a built PDU's data is, before it is borrowed for [`TxData`].
#[derive(Debug, Clone, Copy)]
enum Tx {
    None,
    Task { itt: u32, offset: u32, len: u32 },
    Ping(u8),
    Text,
}
