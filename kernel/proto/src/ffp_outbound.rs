//! What a connection sends: the head of its transmit queue turned into one PDU per
//! `poll_transmit`, the header written (with its digest) and the data named as (task, offset,
//! length) or as bytes the engine holds. CmdSN and ExpStatSN are filled in as the PDU leaves.

use super::crc::{Crc32c, DigestState};
use super::ffp_conn::Conn;
use super::ffp_event::Lost;
use super::ffp_session::Session;
use super::ffp_tasks::TaskSlot;
use super::ffp_tx::{TxData, TxItem, TxKind, TxPdu, TxSlot};
use super::pdu::{
    self, Bhs, DataOut, LogoutRequest, NopOut, Pdu, ScsiCommand, TaskMgmtRequest, TextRequest,
    BHS_LEN, DIGEST_LEN, RESERVED_TAG,
};

impl<Q, S> Conn<Q, S>
where
    Q: core::ops::DerefMut<Target = [TxSlot]>,
    S: core::ops::DerefMut<Target = [TaskSlot]>,
{
    /// The next PDU to send: its header (and header digest) written at the start of `out`
    /// (at least [`TX_HEADER_MAX`](super::ffp_conn::TX_HEADER_MAX) bytes), its data named. `None` when nothing waits, or
    /// when the next is a command that a ping holds back
    /// ([`Event::Released`](super::ffp_event::Event::Released) says when it may go).
    pub fn poll_transmit<G, C>(
        &mut self,
        sess: &mut Session<G>,
        crc: &C,
        out: &mut [u8],
    ) -> Result<Option<TxPdu<'_>>, Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
        C: Crc32c + ?Sized,
    {
        self.alive()?;
        loop {
            let Some(item) = self.tx.front() else {
                return Ok(None);
            };
            if matches!(item, TxItem::Command { .. }) && sess.window.held() {
                return Ok(None);
            }
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
    fn build<G>(
        &mut self,
        sess: &mut Session<G>,
        item: TxItem,
    ) -> Result<Option<(Bhs, Tx, TxKind)>, Lost>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        let exp_stat_sn = self.exp_stat_sn;
        let immediate_sn = sess.window.immediate();
        let bhs = |pdu: Pdu, len: u32| Bhs {
            total_ahs_words: 0,
            data_segment_len: len,
            pdu,
        };
        match item {
            TxItem::Command { itt, cmd_sn } => {
                // Every way out of this arm takes the entry off the queue (or turns it into
                // the command's unsolicited data): the slot may be reused after it.
                self.tasks.command_left(itt);
                // The whole ITT and the CmdSN: a later use of the slot is another task
                // (one whose command entry has left before it: `TaskSlot::command_queued`).
                let Some(r) = self.tasks.get_mut(itt).filter(|r| r.cmd_sn == cmd_sn) else {
                    // The task ended before it was sent (a reset answered on another
                    // connection, or one that overtook it on this one), but its CmdSN is
                    // spent: left out, it would be a hole that stops the target's window for
                    // good (RFC 7143 4.2.2.1), and the session would have to be reinstated. A
                    // non-immediate NOP-Out takes the CmdSN instead (11.18: a valid ITT, here
                    // the task's own, which the target answers with a NOP-In that names
                    // nothing).
                    self.tx.pop();
                    self.counters.fillers = self.counters.fillers.saturating_add(1);
                    let nop = NopOut {
                        immediate: false,
                        lun: [0; 8],
                        itt,
                        ttt: RESERVED_TAG,
                        cmd_sn,
                        exp_stat_sn,
                    };
                    return Ok(Some((bhs(Pdu::NopOut(nop), 0), Tx::None, TxKind::Filler)));
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
                let Some(r) = self.tasks.get_mut(itt) else {
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
                self.ping_queued = false;
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
                self.own_queued = self.own_queued.saturating_sub(1);
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
                self.own_queued = self.own_queued.saturating_sub(1);
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
                self.own_queued = self.own_queued.saturating_sub(1);
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
