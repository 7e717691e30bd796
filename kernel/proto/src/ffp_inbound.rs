//! What the target's PDUs mean to a connection: once a header is whole, where its data goes
//! and what it does to the window, ExpStatSN and the task it names; once the PDU is whole
//! (digests checked), the event it makes. Every PDU is hostile input: a task is looked up by
//! its whole ITT, must belong to this connection and have been sent, and every Data-In, R2T
//! and response is checked by the task's own state (`task::Task`).

use super::ffp_conn::{Conn, MAX_PING_DATA, SEG_MAX};
use super::ffp_event::{Event, Finished, Lost};
use super::ffp_rx::{Route, RxError};
use super::ffp_session::{Own, OwnKind, Session};
use super::ffp_tasks::{Itt, TaskSlot};
use super::ffp_tx::{TxItem, TxSlot};
use super::pdu::{self, Bhs, DataIn, Pdu, RESERVED_TAG};
use super::task::Completion;

/// What the PDU being received is, once its header was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Current {
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
pub(super) enum Ev {
    Finished {
        itt: u32,
        completion: Completion,
        sense_at: usize,
        sense_len: usize,
    },
    /// One of the session's own requests rejected.
    Rejected {
        itt: u32,
        reason: u8,
        request: OwnKind,
    },
    Other(Event<'static>),
}

impl<Q, S> Conn<Q, S>
where
    Q: core::ops::DerefMut<Target = [TxSlot]>,
    S: core::ops::DerefMut<Target = [TaskSlot]>,
{
    pub(super) fn current_keeps(&self) -> bool {
        matches!(
            self.current,
            Current::Response(_) | Current::Ping(_) | Current::Async(_) | Current::Reject(_)
        )
    }

    pub(super) fn event(&self, ev: Ev) -> Event<'_> {
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
                completion,
                sense: self
                    .seg
                    .get(sense_at..sense_at.saturating_add(sense_len))
                    .unwrap_or(&[]),
            }),
            Ev::Rejected {
                itt,
                reason,
                request,
            } => Event::Rejected {
                itt,
                reason,
                request,
            },
            Ev::Other(e) => e,
        }
    }

    /// The header is whole: take what it says about sequence numbers and decide where its
    /// data goes.
    pub(super) fn on_header<G>(&mut self, sess: &mut Session<G>) -> Result<(), Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
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
                match self.data_in(&d, len32)? {
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
                        self.released = self.release_hold(sess);
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
    fn data_in(&mut self, d: &DataIn, len: u32) -> Result<Option<(u32, Option<Completion>)>, Lost> {
        let Some(r) = self.tasks.get_mut(d.itt) else {
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
    pub(super) fn on_end<G>(
        &mut self,
        sess: &mut Session<G>,
        current: Current,
    ) -> Result<Option<Ev>, Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        let kept = self.seg_kept.min(SEG_MAX);
        match current {
            Current::Ignore => Ok(None),
            Current::DataIn { itt, completion } => Ok(completion.and_then(|completion| {
                // Gone if the driver ended it meanwhile (an abort): then no event.
                self.tasks.remove(itt).map(|_| Ev::Finished {
                    itt,
                    completion,
                    sense_at: 0,
                    sense_len: 0,
                })
            })),
            Current::Response(rsp) => self.response(&rsp, kept),
            Current::R2t(r2t) => {
                let Some(r) = self.tasks.get_mut(r2t.itt) else {
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
                let opcode = self
                    .seg
                    .get(..pdu::BHS_LEN)
                    .filter(|_| kept >= pdu::BHS_LEN)
                    .and_then(|b| b.try_into().ok())
                    .map(pdu::opcode_of);
                if self.ping.is_some_and(|p| p.itt == itt) {
                    self.ping = None;
                    self.released = self.release_hold(sess);
                    return Ok(None);
                }
                if self.tasks.get(itt).is_some_and(|t| t.cid == self.cfg.cid) {
                    // A rejected Data-Out leaves the task on the target, short of data
                    // that only ErrorRecoveryLevel 1 could ask for again (a recovery R2T).
                    // Failing the command here would stop the rest of its data and leave
                    // the task waiting on the target until the session ends. For a data
                    // digest error the target ends the task itself, with CHECK CONDITION
                    // once the rest has come (RFC 7143 7.8), or drops the connection (LIO):
                    // the command stays. For any other reason nothing says it will: the
                    // connection goes, and the session's recovery requeues the command.
                    if opcode == Some(pdu::opcode::DATA_OUT) {
                        if r.reason == pdu::reject_reason::DATA_DIGEST_ERROR {
                            return Ok(Some(Ev::Other(Event::DataDigestRejected { itt })));
                        }
                        return Err(Lost::DataOutRejected {
                            itt,
                            reason: r.reason,
                        });
                    }
                    // The command itself was discarded, and its CmdSN is a gap the target
                    // waits on before it runs any later command (RFC 7143 6.3): only a retry
                    // (ErrorRecoveryLevel 1) or an abort could plug it, and LIO does not
                    // count an aborted unknown task's CmdSN as received. Ending the command
                    // here would leave the session's every later command waiting behind the
                    // gap; a new session has none. The task stays for the driver to requeue
                    // or, when the target would reject it again, to fail (`Lost::fails`).
                    if opcode != Some(pdu::opcode::SCSI_CMD) {
                        // Too short to say which PDU of the task it was (the segment must
                        // hold its whole header), or naming one no task sends: the task is
                        // not failed for it, but requeued with the others.
                        return Err(Lost::Unexpected(pdu::opcode::REJECT));
                    }
                    return Err(Lost::CommandRejected {
                        itt,
                        reason: r.reason,
                    });
                }
                if let Some(own) = sess.own_mut(itt, self.cfg.cid) {
                    let request = own.kind;
                    sess.take_own(itt);
                    return Ok(Some(Ev::Rejected {
                        itt,
                        reason: r.reason,
                        request,
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
    fn response(&mut self, rsp: &pdu::ScsiResponse, kept: usize) -> Result<Option<Ev>, Lost> {
        let itt = rsp.itt;
        let Some(r) = self.tasks.get_mut(itt) else {
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
        self.tasks.remove(itt);
        Ok(Some(Ev::Finished {
            itt,
            completion,
            sense_at,
            sense_len,
        }))
    }
}
