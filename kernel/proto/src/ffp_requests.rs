//! What the driver asks of a connection: a SCSI command (a CmdSN, a slot in the task set, a
//! place in the transmit queue), task management, logout and text requests, each of the
//! session's own requests under an ITT of its own that its answer is matched against.

use super::dataout::WriteParams;
use super::ffp_conn::{Conn, MAX_TEXT_OUT};
use super::ffp_event::Lost;
use super::ffp_session::{Millis, Own, OwnKind, Session, MAX_OWN, OWN_LOGOUT, OWN_TEXT, OWN_TMF};
use super::ffp_tasks::{CommandSpec, StartError, TaskSlot};
use super::ffp_tx::{TxItem, TxSlot};
use super::pdu::RESERVED_TAG;

impl<Q, S> Conn<Q, S>
where
    Q: core::ops::DerefMut<Target = [TxSlot]>,
    S: core::ops::DerefMut<Target = [TaskSlot]>,
{
    /// Starts a SCSI command on this connection: a CmdSN from the window, its slot in the
    /// task set (its allegiance: this connection), its place in the transmit queue. Returns
    /// its ITT.
    pub fn start_command<G>(
        &mut self,
        sess: &mut Session<G>,
        spec: &CommandSpec,
        now: Millis,
    ) -> Result<u32, StartError>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        if self.lost.is_some() {
            return Err(StartError::Lost);
        }
        if spec.queue >= super::ffp_tasks::MAX_QUEUES
            || usize::from(spec.tag) >= self.tasks.depth()
            || usize::from(spec.tag) >= sess.depth()
        {
            return Err(StartError::BadTag);
        }
        // Checked before the queue's room, so that a tag whose filler waits here is reported
        // as such (`CommandQueued`: handed to another connection) even when the queue is full
        // (`tx_capacity` leaves room for it; a smaller queue may not).
        self.tasks.check_free(spec.tag)?;
        if self.tx.is_full() {
            return Err(StartError::QueueFull);
        }
        let cmd_sn = sess.window.assign(now).ok_or(StartError::WindowShut)?;
        let generation = sess.next_generation(spec.tag).ok_or(StartError::BadTag)?;
        // The session's write keys, with this connection's own PDU size (a connection-scope
        // key, negotiated at each connection's login): the task's data goes out on it.
        let params = WriteParams {
            max_xmit_data_segment_length: self.cfg.max_xmit,
            ..sess.write_params
        };
        let itt = self
            .tasks
            .insert(spec, generation, cmd_sn, self.cfg.cid, &params)?;
        if self.tx.push(TxItem::Command { itt, cmd_sn }).is_err() {
            // Checked above: cannot happen. The CmdSN is spent: the connection cannot go on.
            self.tasks.remove(itt);
            self.fail(Lost::QueueFull);
            return Err(StartError::Lost);
        }
        Ok(itt)
    }

    /// Sends a task management request on this connection (for a task: the connection whose
    /// set holds it, [`Conn::tasks`]); returns the request's ITT, which its answer
    /// ([`Event::TaskMgmt`](super::ffp_event::Event::TaskMgmt)) names.
    pub fn task_mgmt<G>(
        &mut self,
        sess: &mut Session<G>,
        function: u8,
        lun: [u8; 8],
        ref_itt: u32,
    ) -> Result<u32, StartError>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        let ref_cmd_sn = self
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
    /// returns its ITT, which its answer ([`Event::Logout`](super::ffp_event::Event::Logout)) names.
    pub fn logout<G>(&mut self, sess: &mut Session<G>, reason: u8) -> Result<u32, StartError>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        let itt = self.own(sess, OWN_LOGOUT, OwnKind::Logout { reason })?;
        let cid = self.cfg.cid;
        self.queue_own(sess, itt, TxItem::Logout { itt, reason, cid })
    }

    /// Sends a text request with `data` (at most [`MAX_TEXT_OUT`] bytes): a new exchange
    /// (`cont` `None`), or the next request of one (`Some((itt, ttt))` from its last
    /// [`Event::Text`](super::ffp_event::Event::Text), with empty data, to fetch the rest). The answer's data comes as
    /// [`Want::Place`](super::ffp_conn::Want::Place) for the request's ITT at increasing offsets. The request goes immediate
    /// when the window is shut (a discovery session's target may keep it so). A continuation
    /// counts among the session's requests queued here: `TooManyRequests` while `MAX_OWN` of
    /// them wait to be sent (try again once they have left), as for a new exchange.
    pub fn text<G>(
        &mut self,
        sess: &mut Session<G>,
        cont: Option<(u32, u32)>,
        data: &[u8],
        now: Millis,
    ) -> Result<u32, StartError>
    where
        G: core::ops::DerefMut<Target = [u16]>,
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
                } else if self.own_queued >= MAX_OWN {
                    // A continuation takes no new place among the requests awaiting an
                    // answer (`own` checks that), but its entry in the transmit queue counts
                    // as theirs do (`tx_capacity`).
                    return Err(StartError::TooManyRequests);
                } else {
                    (itt, ttt)
                }
            }
            None => (
                self.own(sess, OWN_TEXT, OwnKind::Text { received: 0 })?,
                RESERVED_TAG,
            ),
        };
        let (immediate, cmd_sn) = if sess.window.can_send() {
            (false, sess.window.assign(now).unwrap_or(0))
        } else {
            (true, sess.window.immediate())
        };
        let item = TxItem::Text {
            itt,
            ttt,
            immediate,
            cmd_sn,
        };
        let itt = self.queue_own(sess, itt, item)?;
        if let Some(dst) = self.text.get_mut(..data.len()) {
            dst.copy_from_slice(data);
        }
        self.text_len = data.len();
        self.text_queued = true;
        Ok(itt)
    }

    fn own<G>(&mut self, sess: &mut Session<G>, kind: u32, what: OwnKind) -> Result<u32, StartError>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        self.alive().map_err(|_| StartError::Lost)?;
        if self.tx.is_full() {
            return Err(StartError::QueueFull);
        }
        if self.own_queued >= MAX_OWN {
            return Err(StartError::TooManyRequests);
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

    fn queue_own<G>(
        &mut self,
        sess: &mut Session<G>,
        itt: u32,
        item: TxItem,
    ) -> Result<u32, StartError>
    where
        G: core::ops::DerefMut<Target = [u16]>,
    {
        if self.tx.push(item).is_err() {
            sess.take_own(itt);
            return Err(StartError::QueueFull);
        }
        self.own_queued = self.own_queued.saturating_add(1);
        Ok(itt)
    }
}
