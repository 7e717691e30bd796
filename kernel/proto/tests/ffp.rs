//! The full-feature-phase engine (ffp_*): scenarios against a simulated target, and property
//! tests: random interleavings of a target's PDUs for several commands, cut at random byte
//! boundaries, with and without digests, complete every command exactly once with the right
//! data; the same streams mutated (bytes flipped, PDUs dropped, duplicated, swapped) are either
//! accepted or refused with a reason, never a panic, a command ended twice, or a placement
//! outside its buffer (the harness in ffp_sim checks those on every event).
#[path = "fuzz_bodies/mod.rs"]
mod fuzz_bodies;

use fuzz_bodies::ffp_sim::{wire, BitCrc, Ended, Harness};
use fuzz_bodies::Rng;
use iscsi_proto::dataout::WriteParams;
use iscsi_proto::ffp_event::Lost;
use iscsi_proto::ffp_rx::RxError;
use iscsi_proto::ffp_conn::{Conn, ConnConfig};
use iscsi_proto::ffp_tasks::{Itt, StartError, TaskSlot};
use iscsi_proto::ffp_tx::{tx_capacity, TxSlot};
use iscsi_proto::pdu::{
    self, AsyncMessage, Bhs, DataIn, Digests, LogoutResponse, NopIn, Pdu, PduError, R2t, Reject,
    ScsiResponse, TaskMgmtResponse, TextResponse, RESERVED_TAG,
};

const PARAMS: WriteParams = WriteParams {
    immediate_data: true,
    initial_r2t: false,
    first_burst_length: 4096,
    max_burst_length: 8192,
    max_xmit_data_segment_length: 2048,
    max_outstanding_r2t: 4,
    data_sequence_in_order: true,
};

const NONE: Digests = Digests {
    header: false,
    data: false,
};
const BOTH: Digests = Digests {
    header: true,
    data: true,
};

fn data_in(itt: u32, sn: u32, offset: u32, status: Option<u32>) -> Pdu {
    Pdu::DataIn(DataIn {
        final_: status.is_some(),
        status_present: status.is_some(),
        itt,
        ttt: RESERVED_TAG,
        stat_sn: status.unwrap_or(0),
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        data_sn: sn,
        offset,
        ..Default::default()
    })
}

fn response(itt: u32, stat_sn: u32, status: u8) -> Pdu {
    Pdu::ScsiResponse(ScsiResponse {
        itt,
        stat_sn,
        status,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        ..Default::default()
    })
}

/// The target's answer to our NOP-Out `itt`.
fn nop_answer(itt: u32, stat_sn: u32, exp_cmd_sn: u32) -> Pdu {
    Pdu::NopIn(NopIn {
        itt,
        ttt: RESERVED_TAG,
        stat_sn,
        exp_cmd_sn,
        max_cmd_sn: 100,
        ..Default::default()
    })
}

fn r2t(itt: u32, sn: u32, offset: u32, len: u32) -> Pdu {
    Pdu::R2t(R2t {
        itt,
        ttt: 0x1000 + sn,
        r2t_sn: sn,
        offset,
        desired_len: len,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        ..Default::default()
    })
}

fn target_ping(ttt: u32) -> Pdu {
    Pdu::NopIn(NopIn {
        itt: RESERVED_TAG,
        ttt,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        ..Default::default()
    })
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn itt_carries_queue_generation_and_tag() {
    let i = Itt {
        queue: 31,
        generation: 0x3ff,
        tag: 0xffff,
    };
    assert_eq!(Itt::parse(i.value()), Some(i));
    assert!(i.value() & 0x8000_0000 == 0);
    assert_eq!(Itt::parse(0x8000_0001), None);
}

#[test]
fn read_in_two_data_ins_with_status_and_digests() {
    for d in [NONE, BOTH] {
        let mut h = Harness::new(d, PARAMS, 0);
        let itt = h.start(3, 6000, 0).unwrap();
        assert_eq!(h.transmit().unwrap(), 1);
        let cmd = &h.sent[0];
        match cmd.bhs.pdu {
            Pdu::ScsiCommand(c) => {
                assert!(c.read && c.final_ && c.expected_len == 6000 && c.cmd_sn == 1);
                assert_eq!(c.itt, itt);
            }
            ref other => panic!("{other:?}"),
        }
        let data = pattern(6000, 1);
        let mut bytes = wire(data_in(itt, 0, 0, None), &data[..4000], d);
        bytes.extend(wire(data_in(itt, 1, 4000, Some(5)), &data[4000..], d));
        // One byte at a time: every state boundary is crossed mid-piece.
        for b in bytes.chunks(1) {
            h.feed(b).unwrap();
        }
        assert_eq!(h.bufs[&itt], data);
        assert_eq!(
            h.ended[&itt],
            Ended::Completed {
                response: 0,
                status: 0,
                residual: 0,
                sense: vec![]
            }
        );
        assert_eq!(h.conn.exp_stat_sn(), 6);
        assert_eq!(h.conn.tasks().in_flight(), 0);
    }
}

#[test]
fn write_sends_immediate_unsolicited_and_r2t_bursts_from_the_buffer() {
    for d in [NONE, BOTH] {
        let mut h = Harness::new(d, PARAMS, 0);
        let len = 4096 + 8192 + 100;
        let itt = h.start(0, 0, len).unwrap();
        h.transmit().unwrap();
        // Command with 2048 immediate bytes, then one unsolicited Data-Out of 2048.
        assert_eq!(h.sent.len(), 2);
        h.feed(&wire(r2t(itt, 0, 4096, 8192), &[], d)).unwrap();
        h.feed(&wire(r2t(itt, 1, 4096 + 8192, 100), &[], d))
            .unwrap();
        h.transmit().unwrap();
        let mut covered = vec![0u8; len as usize];
        for s in &h.sent {
            let (off, itt_) = match s.bhs.pdu {
                Pdu::ScsiCommand(c) => (0, c.itt),
                Pdu::DataOut(o) => (o.offset, o.itt),
                ref other => panic!("{other:?}"),
            };
            assert_eq!(itt_, itt);
            covered[off as usize..off as usize + s.data.len()].copy_from_slice(&s.data);
            assert!(s.data.len() <= 2048);
        }
        assert_eq!(covered, h.bufs[&itt]);
        h.feed(&wire(response(itt, 1, 0), &[], d)).unwrap();
        assert!(h.ended.contains_key(&itt));
    }
}

#[test]
fn check_condition_carries_sense() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.start(1, 0, 0).unwrap();
    h.transmit().unwrap();
    let sense = [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0];
    let mut seg = vec![0, sense.len() as u8];
    seg.extend_from_slice(&sense);
    h.feed(&wire(response(itt, 1, 2), &seg, NONE)).unwrap();
    assert_eq!(
        h.ended[&itt],
        Ended::Completed {
            response: 0,
            status: 2,
            residual: 0,
            sense: sense.to_vec()
        }
    );
}

#[test]
fn response_segment_longer_than_kept_keeps_the_sense() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.start(1, 0, 0).unwrap();
    h.transmit().unwrap();
    let mut seg = vec![0, 18];
    seg.extend(pattern(18, 3));
    seg.extend(vec![0xee; 3000]); // iSCSI response data after the sense
    h.feed(&wire(response(itt, 1, 2), &seg, NONE)).unwrap();
    let Ended::Completed { sense, .. } = &h.ended[&itt];
    assert_eq!(sense, &pattern(18, 3));
}

#[test]
fn digest_errors_and_oversized_segments_lose_the_connection() {
    let mut h = Harness::new(BOTH, PARAMS, 0);
    let itt = h.start(0, 512, 0).unwrap();
    h.transmit().unwrap();
    let mut bytes = wire(data_in(itt, 0, 0, Some(1)), &[1; 512], BOTH);
    bytes[60] ^= 1;
    let lost = h.feed(&bytes);
    assert!(
        matches!(lost, Err(Lost::Framing(RxError::DataDigest { .. }))),
        "{lost:?}"
    );
    assert!(
        h.ended.is_empty(),
        "data with a bad digest must not complete"
    );
    // Lost for good, with the same reason.
    assert_eq!(h.feed(&[0]), lost);

    let mut h = Harness::new(BOTH, PARAMS, 0);
    let mut bytes = wire(target_ping(7), &[], BOTH);
    bytes[49] ^= 1;
    assert!(matches!(
        h.feed(&bytes),
        Err(Lost::Framing(RxError::HeaderDigest { .. }))
    ));

    let mut h = Harness::new(NONE, PARAMS, 0);
    let mut bhs = wire(target_ping(7), &[], NONE);
    bhs[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    assert_eq!(
        h.feed(&bhs),
        Err(Lost::Framing(RxError::Pdu(PduError::DataSegmentTooLarge {
            len: 0xff_ffff,
            max: 8192
        })))
    );
}

/// A command ended while still queued (an abort or a reset handed it back) has spent its
/// CmdSN: a non-immediate NOP-Out with its ITT and CmdSN goes in its place, so the target's
/// window moves past it, and the NOP-In that answers it names nothing.
#[test]
fn a_command_ended_before_it_was_sent_gives_its_cmd_sn_to_a_nop_out() {
    let mut h = Harness::new(BOTH, PARAMS, 0);
    let a = h.start(0, 512, 0).unwrap();
    let b = h.start(1, 0, 4096).unwrap();
    let c = h.start(2, 512, 0).unwrap();
    assert!(h.conn.forget_task(b).is_some());
    assert_eq!(h.transmit(), Ok(3));
    let sent: Vec<_> = h.sent.iter().map(|s| s.bhs.pdu).collect();
    let cmd = |i: usize| match sent[i] {
        Pdu::ScsiCommand(c) => (c.itt, c.cmd_sn, c.immediate),
        ref other => panic!("{other:?}"),
    };
    assert_eq!(cmd(0), (a, 1, false));
    match sent[1] {
        Pdu::NopOut(o) => {
            assert_eq!(
                (o.itt, o.cmd_sn, o.immediate, o.ttt),
                (b, 2, false, RESERVED_TAG)
            )
        }
        ref other => panic!("{other:?}"),
    }
    // A header alone (and its digest): b's immediate data and unsolicited Data-Out are gone.
    assert!(h.sent[1].data.is_empty());
    assert_eq!(cmd(2), (c, 3, false));
    assert_eq!(h.conn.counters().fillers, 1);
    // The target answers it; nothing ends, the connection goes on, a and c complete.
    h.feed(&wire(nop_answer(b, 1, 3), &[], BOTH)).unwrap();
    assert!(h.ended.is_empty());
    assert_eq!(h.conn.exp_stat_sn(), 2);
    h.feed(&wire(data_in(a, 0, 0, Some(2)), &[1; 512], BOTH))
        .unwrap();
    h.feed(&wire(data_in(c, 0, 0, Some(3)), &[2; 512], BOTH))
        .unwrap();
    assert_eq!(h.ended.len(), 2);
    assert!(h.ended.contains_key(&a) && h.ended.contains_key(&c));
    assert_eq!(h.conn.lost(), None);
}

/// A tag whose command ended while still queued takes no new command on that connection until
/// the filler has gone out (the midlayer retries it); the filler's answer does not answer a
/// keepalive ping outstanding meanwhile.
#[test]
fn a_tag_waits_for_its_filler_and_the_fillers_answer_leaves_the_ping_waiting() {
    let mut h = Harness::new(NONE, PARAMS, 5000);
    let a = h.start(0, 512, 0).unwrap();
    h.conn.forget_task(a).unwrap();
    assert_eq!(h.start(0, 512, 0), Err(StartError::CommandQueued));
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 5000), Ok(true));
    assert_eq!(h.transmit(), Ok(2));
    let a2 = h.start(0, 512, 0).unwrap();
    assert_ne!(a2, a);
    assert_eq!(a2 & 0xffff, a & 0xffff);
    assert_eq!(h.transmit(), Ok(1));
    let sent: Vec<_> = h.sent.iter().map(|s| s.bhs.pdu).collect();
    let ping = match (sent[0], sent[1], sent[2]) {
        (Pdu::NopOut(f), Pdu::NopOut(p), Pdu::ScsiCommand(c)) => {
            assert_eq!((f.itt, f.cmd_sn, f.immediate), (a, 1, false));
            assert!(p.immediate && p.itt != a && p.itt != a2);
            assert_eq!((c.itt, c.cmd_sn), (a2, 2));
            p.itt
        }
        other => panic!("{other:?}"),
    };
    // The filler's answer: the ping is still outstanding, and times out as it would.
    h.now = 5100;
    h.feed(&wire(nop_answer(a, 1, 2), &[], NONE)).unwrap();
    assert_eq!(h.conn.poll_timeout(), Some(5100 + 1000));
    // The ping's own answer clears it; a2 completes as the tag's only command.
    h.feed(&wire(nop_answer(ping, 2, 2), &[], NONE)).unwrap();
    assert_eq!(h.conn.poll_timeout(), Some(5100 + 5000));
    h.feed(&wire(data_in(a2, 0, 0, Some(3)), &[7; 512], NONE))
        .unwrap();
    assert_eq!(h.ended.len(), 1);
    assert!(h.ended.contains_key(&a2));
    assert_eq!(h.conn.lost(), None);
}

/// A tag whose filler waits behind a full transmit queue is refused as handed over
/// (`CommandQueued`: another connection may send it), not as this connection being busy
/// (`QueueFull`, retried here until the queue drains); a free tag meets the full queue.
#[test]
fn a_tag_whose_filler_waits_in_a_full_queue_is_handed_over() {
    let mut h = Harness::with_tx_capacity(NONE, PARAMS, 0, 1);
    let a = h.start(0, 512, 0).unwrap();
    h.conn.forget_task(a).unwrap();
    assert_eq!(h.start(0, 512, 0), Err(StartError::CommandQueued));
    assert_eq!(h.start(1, 512, 0), Err(StartError::QueueFull));
    assert_eq!(h.transmit(), Ok(1));
    assert!(h.start(0, 512, 0).is_ok());
    assert_eq!(h.conn.lost(), None);
}

/// Tags that end and come back again and again while nothing can be sent (resets answered on
/// another connection while this one's socket is full) leave one filler each, not one per
/// use: the transmit queue keeps room for a live write's R2T burst, and once the socket drains
/// the fillers go out in CmdSN order and every tag is free again.
#[test]
fn tags_ending_again_and_again_while_nothing_is_sent_leave_one_filler_each() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    // A window wide enough that only the queue's room can refuse a command.
    h.sess.window.update(1, 10_000);
    let last = (fuzz_bodies::ffp_sim::DEPTH - 1) as u16;
    // A write on the last tag: its command, 2048 immediate and 2048 unsolicited go out.
    let w = h.start(last, 0, 4096 + 8192).unwrap();
    assert_eq!(h.transmit(), Ok(2));
    let mut spent = Vec::new();
    for _ in 0..20 {
        for tag in 0..last {
            match h.start(tag, 0, 4096) {
                Ok(itt) => {
                    spent.push(itt);
                    h.conn.forget_task(itt).unwrap();
                }
                Err(StartError::CommandQueued) => {}
                other => panic!("tag {tag}: {other:?}"),
            }
        }
    }
    assert_eq!(spent.len(), usize::from(last));
    // The write's R2T still finds room for its burst.
    h.feed(&wire(r2t(w, 0, 4096, 8192), &[], NONE)).unwrap();
    assert_eq!(h.conn.lost(), None);
    let before = h.sent.len();
    assert_eq!(h.transmit(), Ok(usize::from(last) + 4));
    let fillers: Vec<_> = h.sent[before..]
        .iter()
        .filter_map(|s| match s.bhs.pdu {
            Pdu::NopOut(o) => Some((o.itt, o.cmd_sn, o.immediate)),
            _ => None,
        })
        .collect();
    let expected: Vec<_> = spent
        .iter()
        .zip(2u32..)
        .map(|(&itt, sn)| (itt, sn, false))
        .collect();
    assert_eq!(fillers, expected);
    assert_eq!(h.conn.counters().fillers, u64::from(last));
    for tag in 0..last {
        assert!(h.start(tag, 512, 0).is_ok(), "tag {tag}");
    }
}

#[test]
fn target_ping_is_answered_with_its_data_and_does_not_take_stat_sn() {
    let mut h = Harness::new(BOTH, PARAMS, 0);
    let mut p = target_ping(0x77);
    if let Pdu::NopIn(n) = &mut p {
        n.stat_sn = 40;
    }
    h.feed(&wire(p, b"hello", BOTH)).unwrap();
    assert_eq!(h.events, vec!["Transmit"]);
    h.transmit().unwrap();
    match h.sent[0].bhs.pdu {
        Pdu::NopOut(o) => assert_eq!((o.itt, o.ttt, o.immediate), (RESERVED_TAG, 0x77, true)),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(h.sent[0].data, b"hello");
    assert_eq!(h.conn.exp_stat_sn(), 1);
    // More ping data than we echo: refused.
    let mut h = Harness::new(NONE, PARAMS, 0);
    assert_eq!(
        h.feed(&wire(target_ping(1), &[0; 513], NONE)),
        Err(Lost::PingDataTooLong(513))
    );
}

#[test]
fn idle_connection_pings_and_an_unanswered_ping_loses_it() {
    let mut h = Harness::new(NONE, PARAMS, 5000);
    assert_eq!(h.conn.poll_timeout(), Some(5000));
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 4999), Ok(false));
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 5000), Ok(true));
    h.transmit().unwrap();
    let itt = match h.sent[0].bhs.pdu {
        Pdu::NopOut(o) => o.itt,
        ref other => panic!("{other:?}"),
    };
    assert!(itt & 0x8000_0000 != 0 && itt != RESERVED_TAG);
    assert_eq!(h.conn.poll_timeout(), Some(6000));
    // Answered: the timer goes back to the idle interval from the answer.
    h.now = 5500;
    h.feed(&wire(nop_answer(itt, 1, 1), &[], NONE)).unwrap();
    assert_eq!(h.conn.poll_timeout(), Some(10_500));
    assert_eq!(h.conn.exp_stat_sn(), 2);
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 10_500), Ok(true));
    assert_eq!(
        h.conn.handle_timeout(&mut h.sess, 11_500),
        Err(Lost::PingTimeout)
    );
    assert_eq!(h.conn.poll_timeout(), None);
}

/// A target that trickles a PDU keeps a ping's timer from firing (bytes arrive), but not the
/// PDU's own bound: counted from its first byte, it loses the connection; a PDU received whole
/// clears it.
#[test]
fn a_pdu_trickled_in_loses_the_connection_at_its_bound() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let a = h.start(0, 4096, 0).unwrap();
    h.transmit().unwrap();
    assert_eq!(h.conn.poll_timeout(), None);
    // A whole PDU (the first half of the read) leaves no bound running.
    h.now = 100;
    h.feed(&wire(data_in(a, 0, 0, None), &[1; 2048], NONE))
        .unwrap();
    assert_eq!(h.conn.poll_timeout(), None);
    // The second half: its header and 10 bytes at 1000, then a byte every second.
    let pdu = wire(data_in(a, 1, 2048, Some(1)), &[2; 2048], NONE);
    h.now = 1000;
    h.feed(&pdu[..58]).unwrap();
    assert_eq!(h.conn.poll_timeout(), Some(21_000));
    for (i, byte) in pdu[58..70].chunks(1).enumerate() {
        h.now = 2000 + 1000 * i as u64;
        h.feed(byte).unwrap();
        assert_eq!(h.conn.handle_timeout(&mut h.sess, h.now), Ok(false));
    }
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 20_999), Ok(false));
    assert_eq!(
        h.conn.handle_timeout(&mut h.sess, 21_000),
        Err(Lost::PduTimeout)
    );
    assert!(h.ended.is_empty());
}

#[test]
fn shut_window_is_reported_with_its_start_and_reopens() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    h.sess.window = iscsi_proto::ffp_session::Window::new(9, 1, 8);
    h.now = 42;
    assert_eq!(h.start(0, 1, 0), Err(StartError::WindowShut));
    h.now = 50;
    assert_eq!(h.start(1, 1, 0), Err(StartError::WindowShut));
    assert_eq!(h.sess.window_shut_since(), Some(42));
    let mut open = target_ping(0);
    if let Pdu::NopIn(n) = &mut open {
        n.ttt = RESERVED_TAG;
        n.exp_cmd_sn = 9;
        n.max_cmd_sn = 12;
    }
    h.feed(&wire(open, &[], NONE)).unwrap();
    assert_eq!(h.sess.window_shut_since(), None);
    assert!(h.start(0, 1, 0).is_ok());
}

#[test]
fn task_management_requests_have_their_own_itts() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let a = h.start(0, 512, 0).unwrap();
    let b = h.start(1, 512, 0).unwrap();
    h.transmit().unwrap();
    assert_eq!(h.conn.tasks().get(a).map(|r| r.cid), Some(0));
    let ta = h.tmf(pdu::tmf::ABORT_TASK, a);
    let tb = h.tmf(pdu::tmf::ABORT_TASK, b);
    assert_ne!(ta, tb);
    h.transmit().unwrap();
    match h.sent[2].bhs.pdu {
        Pdu::TaskMgmtRequest(t) => assert_eq!((t.itt, t.ref_task_tag, t.ref_cmd_sn), (ta, a, 1)),
        ref other => panic!("{other:?}"),
    }
    let rsp = |itt| {
        Pdu::TaskMgmtResponse(TaskMgmtResponse {
            response: 0,
            itt,
            stat_sn: 1,
            exp_cmd_sn: 1,
            max_cmd_sn: 100,
        })
    };
    h.feed(&wire(rsp(tb), &[], NONE)).unwrap();
    h.feed(&wire(rsp(tb), &[], NONE)).unwrap(); // a second answer names nothing
    h.feed(&wire(rsp(ta), &[], NONE)).unwrap();
    assert_eq!(
        h.events,
        vec![
            format!("TaskMgmt {{ itt: {tb}, function: 1, ref_itt: {b}, response: 0 }}"),
            format!("TaskMgmt {{ itt: {ta}, function: 1, ref_itt: {a}, response: 0 }}"),
        ]
    );
    // A request whose answer never comes is forgotten; a late answer names nothing.
    let tc = h.tmf(pdu::tmf::LOGICAL_UNIT_RESET, RESERVED_TAG);
    assert!(h.sess.forget_request(tc).is_some());
    h.feed(&wire(rsp(tc), &[], NONE)).unwrap();
    assert_eq!(h.events.len(), 2);
    // The driver forgets the aborted tasks; a late Data-In for one is dropped.
    assert!(h.conn.forget_task(a).is_some());
    h.feed(&wire(data_in(a, 0, 0, None), &[9; 100], NONE))
        .unwrap();
    assert!(h.ended.is_empty());
}

/// Task management requests that time out while still queued (the socket full) free their
/// place among the requests awaiting an answer, but not their entry in the transmit queue: at
/// most `MAX_OWN` wait there, so the queue keeps room for what the target asks (here the
/// answers to its pings), and once they have left new requests are taken again.
#[test]
fn requests_forgotten_while_queued_count_until_they_leave() {
    use iscsi_proto::ffp_session::MAX_OWN;
    let mut h = Harness::new(NONE, PARAMS, 0);
    let mut queued = 0;
    for _ in 0..3 * MAX_OWN {
        match h.conn.task_mgmt(
            &mut h.sess,
            pdu::tmf::LOGICAL_UNIT_RESET,
            [0; 8],
            RESERVED_TAG,
        ) {
            Ok(itt) => {
                queued += 1;
                assert!(h.sess.forget_request(itt).is_some());
            }
            Err(StartError::TooManyRequests) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(queued, MAX_OWN);
    h.feed(&wire(target_ping(5), b"x", NONE)).unwrap();
    h.feed(&wire(target_ping(6), b"y", NONE)).unwrap();
    assert_eq!(h.conn.lost(), None);
    assert_eq!(h.transmit(), Ok(MAX_OWN + 2));
    assert!(h
        .conn
        .task_mgmt(
            &mut h.sess,
            pdu::tmf::LOGICAL_UNIT_RESET,
            [0; 8],
            RESERVED_TAG
        )
        .is_ok());
}

/// An answer naming our ping before the ping has left (a target guessing its ITT) clears it,
/// but no second ping is queued behind the first.
#[test]
fn a_ping_answered_before_it_is_sent_is_not_queued_twice() {
    // ITTs are handed out in order: a twin harness shows which one the ping gets.
    let mut twin = Harness::new(NONE, PARAMS, 5000);
    assert_eq!(twin.conn.handle_timeout(&mut twin.sess, 5000), Ok(true));
    twin.transmit().unwrap();
    let itt = match twin.sent[0].bhs.pdu {
        Pdu::NopOut(o) => o.itt,
        ref other => panic!("{other:?}"),
    };
    let mut h = Harness::new(NONE, PARAMS, 5000);
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 5000), Ok(true));
    h.now = 5000;
    h.feed(&wire(nop_answer(itt, 1, 1), &[], NONE)).unwrap();
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 10_000), Ok(false));
    assert_eq!(h.transmit(), Ok(1));
    // Sent: the next idle interval pings again.
    assert_eq!(h.conn.handle_timeout(&mut h.sess, 10_000), Ok(true));
    assert_eq!(h.transmit(), Ok(1));
}

#[test]
fn a_lost_connection_hands_back_its_tasks_once() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let a = h.start(0, 512, 0).unwrap();
    let b = h.start(1, 0, 100).unwrap();
    h.transmit().unwrap();
    h.tmf(pdu::tmf::LOGICAL_UNIT_RESET, RESERVED_TAG);
    assert_eq!(h.conn.close(Lost::Closed), Lost::Closed);
    assert_eq!(h.start(2, 1, 0), Err(StartError::Lost));
    let mut back = Vec::new();
    assert!(!h.conn.end(&mut h.sess, |r| back.push(r.itt)));
    back.sort();
    assert_eq!(back, vec![a, b]);
    assert_eq!(h.conn.tasks().in_flight(), 0);
    assert_eq!(h.sess.own_requests().count(), 0);
    assert!(!h
        .conn
        .end(&mut h.sess, |r| panic!("{:#x} handed back twice", r.itt)));
}

/// Connection 1 of the harness's session (connection 0 is the harness's own), sending PDUs of
/// at most `max_xmit` bytes of data.
fn added_conn(max_xmit: u32) -> Conn<Vec<TxSlot>, Vec<TaskSlot>> {
    conn_of(added_config(1, max_xmit), 0)
}

/// Connection `cid` of the harness's session, without pings.
fn added_config(cid: u16, max_xmit: u32) -> ConnConfig {
    ConnConfig {
        cid,
        digests: NONE,
        max_recv: 8192,
        max_xmit,
        exp_stat_sn: 7,
        nop_interval_ms: 0,
        nop_timeout_ms: 0,
        pdu_timeout_ms: 0,
        ping_holds_commands: false,
    }
}

/// A connection set up with `cfg` at `now`, its queues of the harness's size.
fn conn_of(cfg: ConnConfig, now: u64) -> Conn<Vec<TxSlot>, Vec<TaskSlot>> {
    Conn::new(
        cfg,
        vec![TxSlot::default(); tx_capacity(8, 4)],
        vec![TaskSlot::default(); 8],
        now,
    )
}

/// A command with tag `tag` on queue 1 writing `write_len` bytes.
fn write_spec(tag: u16, write_len: u32) -> iscsi_proto::ffp_tasks::CommandSpec {
    iscsi_proto::ffp_tasks::CommandSpec {
        tag,
        queue: 1,
        lun: [0; 8],
        cdb: [0; 16],
        attr: 1,
        read_len: 0,
        write_len,
    }
}

#[test]
fn two_connections_share_the_window_and_keep_their_tasks() {
    // Connection 0 is the harness's; connection 1 joins the same session.
    let mut h = Harness::new(NONE, PARAMS, 0);
    let mut c1 = added_conn(2048);
    let a = h.start(0, 512, 0).unwrap();
    let spec = write_spec(1, 0);
    let b = c1.start_command(&mut h.sess, &spec, 0).unwrap();
    // One CmdSN sequence for the session, whichever connection a command goes on; each
    // task in the set of its own connection.
    assert_eq!(
        h.conn.tasks().get(a).map(|r| (r.cmd_sn, r.cid)),
        Some((1, 0))
    );
    assert_eq!(c1.tasks().get(b).map(|r| (r.cmd_sn, r.cid)), Some((2, 1)));
    assert!(h.conn.tasks().get(b).is_none());
    assert!(c1.tasks().get(a).is_none());
    h.transmit().unwrap();
    let mut head = [0u8; 52];
    assert!(c1
        .poll_transmit(&mut h.sess, &BitCrc, &mut head)
        .unwrap()
        .is_some());
    // b's status on connection 0 names no task of connection 0's: dropped, b still in flight
    // on connection 1; there it completes b, and its StatSN is connection 1's alone.
    let status = wire(response(b, 7, 0), &[], NONE);
    h.feed(&status).unwrap();
    assert!(h.ended.is_empty());
    assert_eq!(c1.tasks().in_flight(), 1);
    let r = c1.receive(&mut h.sess, &BitCrc, &status, 0).unwrap();
    assert!(matches!(r.event, Some(iscsi_proto::ffp_event::Event::Finished(f)) if f.itt == b));
    assert_eq!(c1.exp_stat_sn(), 8);
    // Tag 1 again, now on connection 0: the generation is the session's, so the ITT names
    // this use of the tag and not b's.
    let b2 = h.start(1, 512, 0).unwrap();
    assert_ne!(b2, b);
    assert_eq!(b2 & 0xffff, b & 0xffff);
    h.conn.forget_task(b2).unwrap();
    // Connection 0 is lost: only its task comes back.
    let mut back = Vec::new();
    assert!(!h.conn.end(&mut h.sess, |r| back.push(r.itt)));
    assert_eq!(back, vec![a]);
    assert_eq!(c1.tasks().in_flight(), 0);
}

/// MaxRecvDataSegmentLength is a connection's own key: a write on an added connection whose
/// target declared less than at the leading connection's login goes out in PDUs of the
/// added connection's size (immediate data and the unsolicited Data-Out alike).
/// The headers connection `c` sends next, decoded.
fn sent_by(c: &mut Conn<Vec<TxSlot>, Vec<TaskSlot>>, h: &mut Harness) -> Vec<Pdu> {
    let mut out = Vec::new();
    let mut head = [0u8; 52];
    while c
        .poll_transmit(&mut h.sess, &BitCrc, &mut head)
        .unwrap()
        .is_some()
    {
        out.push(Bhs::decode(head[..48].try_into().unwrap()).unwrap().pdu);
    }
    out
}

/// A GOOD status for `itt` with StatSN `stat_sn`, the target at ExpCmdSN `exp_cmd_sn`.
fn good_status(itt: u32, stat_sn: u32, exp_cmd_sn: u32) -> Vec<u8> {
    let mut status = response(itt, stat_sn, 0);
    if let Pdu::ScsiResponse(r) = &mut status {
        r.exp_cmd_sn = exp_cmd_sn;
    }
    wire(status, &[], NONE)
}

/// Connection `cid` of a session of several connections, pinging after 1 s of silence (and
/// lost 1 s after an unanswered ping), made at `now`.
fn pinging_conn(cid: u16, now: u64) -> Conn<Vec<TxSlot>, Vec<TaskSlot>> {
    let cfg = ConnConfig {
        nop_interval_ms: 1000,
        nop_timeout_ms: 1000,
        ping_holds_commands: true,
        ..added_config(cid, 2048)
    };
    conn_of(cfg, now)
}

/// A connection that ends with its ping out (retired: logged out alone, or replaced) ends its
/// hold, and says whether that was the last one: the driver must then let every connection
/// send, since no answer will.
#[test]
fn an_ended_connection_releases_its_ping_hold_and_says_when_it_was_the_last() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let (mut c1, mut c2) = (pinging_conn(1, 0), pinging_conn(2, 0));
    // Idle, with every command at the target: both ping under one hold.
    assert_eq!(c1.handle_timeout(&mut h.sess, 1000), Ok(true));
    assert_eq!(c2.handle_timeout(&mut h.sess, 1000), Ok(true));
    assert!(h.sess.window.held());
    h.start(0, 0, 0).unwrap();
    assert_eq!(h.transmit(), Ok(0));
    c1.close(Lost::Closed);
    assert!(!c1.end(&mut h.sess, |_| {}), "connection 2's ping still holds");
    assert_eq!(h.transmit(), Ok(0));
    c2.close(Lost::Closed);
    assert!(c2.end(&mut h.sess, |_| {}), "the last hold ended with connection 2");
    assert!(!h.sess.window.held());
    assert_eq!(h.transmit(), Ok(1));
}

/// In a session of more than one connection a ping waits until the target has every command
/// sent, carries the next CmdSN, and holds every command back until it is answered, while
/// immediate PDUs carry that CmdSN: an immediate PDU whose CmdSN a command on another
/// connection overtakes or trails is one istgt closes the connection for.
#[test]
fn a_ping_in_a_session_of_several_connections_holds_the_commands_back() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let mut c1 = pinging_conn(1, 0);
    let a = h.start(0, 0, 0).unwrap();
    h.transmit().unwrap();
    // Command 1 is not known to have reached the target: no ping yet.
    assert_eq!(c1.handle_timeout(&mut h.sess, 1000), Ok(false));
    assert!(sent_by(&mut c1, &mut h).is_empty());
    h.feed(&good_status(a, 1, 2)).unwrap();
    assert_eq!(c1.handle_timeout(&mut h.sess, 1100), Ok(true));
    // Commands 2 and 3, on connection 0 and on the ping's own, are held until the answer;
    // an immediate PDU meanwhile carries CmdSN 2, the target's ExpCmdSN (a request queued
    // behind a held command waits with it).
    h.start(1, 0, 0).unwrap();
    assert_eq!(h.transmit(), Ok(0));
    c1.start_command(&mut h.sess, &write_spec(2, 0), 1100).unwrap();
    assert_eq!(h.sess.window.immediate(), 2);
    let ping = match sent_by(&mut c1, &mut h).as_slice() {
        [Pdu::NopOut(p)] => {
            assert!(p.immediate && p.cmd_sn == 2, "{p:?}");
            *p
        }
        other => panic!("{other:?}"),
    };
    c1.task_mgmt(&mut h.sess, pdu::tmf::ABORT_TASK, [0; 8], a).unwrap();
    match sent_by(&mut c1, &mut h).as_slice() {
        [] => {}
        other => panic!("sent behind the held command: {other:?}"),
    }
    let answer = wire(nop_answer(ping.itt, 7, 2), &[], NONE);
    let r = c1.receive(&mut h.sess, &BitCrc, &answer, 1200).unwrap();
    assert_eq!(r.used, answer.len());
    assert_eq!(r.event, Some(iscsi_proto::ffp_event::Event::Released));
    assert_eq!(h.transmit(), Ok(1));
    let b = match h.sent.last().map(|p| p.bhs.pdu) {
        Some(Pdu::ScsiCommand(c)) if c.cmd_sn == 2 => c.itt,
        other => panic!("{other:?}"),
    };
    match sent_by(&mut c1, &mut h).as_slice() {
        [Pdu::ScsiCommand(c), Pdu::TaskMgmtRequest(t)] => {
            assert_eq!(c.cmd_sn, 3);
            assert!(t.immediate && t.cmd_sn == 4, "{t:?}");
        }
        other => panic!("{other:?}"),
    }
    let (mut c2, mut c3) = (pinging_conn(2, 3200), pinging_conn(3, 3200));
    // Commands 2 and 3 unanswered, so no hold: connection 1, with command 3 in flight, pings
    // all the same, unheld (a silent connection with work is what pings are for); an idle
    // one does not.
    assert_eq!(c1.handle_timeout(&mut h.sess, 2200), Ok(true));
    assert!(!h.sess.window.held());
    match sent_by(&mut c1, &mut h).as_slice() {
        [Pdu::NopOut(p)] => assert!(p.immediate && p.cmd_sn == 4, "{p:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c2.handle_timeout(&mut h.sess, 4200), Ok(false));
    // Two idle connections ping together under one hold: the commands go once both pings are
    // answered, or their connections end.
    h.feed(&good_status(b, 2, 4)).unwrap();
    assert_eq!(c2.handle_timeout(&mut h.sess, 4200), Ok(true));
    h.start(3, 0, 0).unwrap();
    assert_eq!(c3.handle_timeout(&mut h.sess, 4200), Ok(true));
    for c in [&mut c2, &mut c3] {
        match sent_by(c, &mut h).as_slice() {
            [Pdu::NopOut(p)] => assert!(p.immediate && p.cmd_sn == 4, "{p:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.transmit(), Ok(0));
    // Connection 3 ends unanswered: its hold ends, not the last one (connection 2's holds).
    c3.close(Lost::Closed);
    assert!(!c3.end(&mut h.sess, |_| {}));
    assert_eq!(h.transmit(), Ok(0));
    assert!(c2.release_hold(&mut h.sess));
    assert!(!c2.release_hold(&mut h.sess));
    assert_eq!(h.transmit(), Ok(1));
    // A hold whose answer is late (a ping behind a slowly drained send buffer) ends after
    // HOLD_MAX_MS all the same; the late answer then releases nothing.
    let d = match h.sent.last().map(|p| p.bhs.pdu) {
        Some(Pdu::ScsiCommand(c)) if c.cmd_sn == 4 => c.itt,
        other => panic!("{other:?}"),
    };
    h.feed(&good_status(d, 3, 5)).unwrap();
    let mut c4 = pinging_conn(4, 5000);
    assert_eq!(c4.handle_timeout(&mut h.sess, 6000), Ok(true));
    let ping = match sent_by(&mut c4, &mut h).as_slice() {
        [Pdu::NopOut(p)] => *p,
        other => panic!("{other:?}"),
    };
    h.start(4, 0, 0).unwrap();
    assert!(!h.sess.window.expire(6999));
    assert_eq!(h.transmit(), Ok(0));
    assert!(h.sess.window.expire(7000));
    assert_eq!(h.transmit(), Ok(1));
    let answer = wire(nop_answer(ping.itt, 7, 5), &[], NONE);
    let r = c4.receive(&mut h.sess, &BitCrc, &answer, 7100).unwrap();
    assert_eq!(r.event, None);
}

#[test]
fn a_write_goes_out_in_its_connections_pdu_size() {
    use iscsi_proto::ffp_tx::TxData;
    let h = &mut Harness::new(NONE, PARAMS, 0);
    assert_eq!(PARAMS.max_xmit_data_segment_length, 2048);
    let mut c1 = added_conn(512);
    let spec = write_spec(1, 4096);
    let w = c1.start_command(&mut h.sess, &spec, 0).unwrap();
    let mut head = [0u8; 52];
    let mut sent = Vec::new();
    while let Some(pdu) = c1.poll_transmit(&mut h.sess, &BitCrc, &mut head).unwrap() {
        if let TxData::Task { itt, offset, len } = pdu.data {
            assert_eq!(itt, w);
            sent.push((offset, len));
        }
    }
    // FirstBurstLength 4096, all unsolicited: 8 PDUs of 512 bytes, in order.
    let want: Vec<(u32, u32)> = (0..8).map(|i| (i * 512, 512)).collect();
    assert_eq!(sent, want);
}

/// A Reject (reason `reason`, the window at `exp_cmd_sn`) of the PDU whose ITT is `itt`: its
/// data segment is the rejected header, with the ITT at bytes 16..20.
fn reject(itt: u32, reason: u8, exp_cmd_sn: u32) -> Vec<u8> {
    reject_of(pdu::opcode::SCSI_CMD, itt, reason, exp_cmd_sn)
}

/// A Reject of a PDU with opcode `opcode`, otherwise as `reject`.
fn reject_of(opcode: u8, itt: u32, reason: u8, exp_cmd_sn: u32) -> Vec<u8> {
    let mut rejected = [0u8; 48];
    rejected[0] = opcode;
    rejected[16..20].copy_from_slice(&itt.to_be_bytes());
    let pdu = Pdu::Reject(Reject {
        reason,
        exp_cmd_sn,
        max_cmd_sn: 100,
        ..Default::default()
    });
    wire(pdu, &rejected, NONE)
}

#[test]
fn async_messages_and_rejects() {
    let msg = |event: u8| {
        Pdu::AsyncMessage(AsyncMessage {
            event,
            param3: 20,
            exp_cmd_sn: 1,
            max_cmd_sn: 100,
            ..Default::default()
        })
    };
    let mut h = Harness::new(NONE, PARAMS, 0);
    let sense = [
        0, 18, 0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3f, 0x0e, 0, 0, 0, 0,
    ];
    h.feed(&wire(msg(0), &sense, NONE)).unwrap();
    h.feed(&wire(msg(1), &[], NONE)).unwrap();
    assert_eq!(h.events, vec!["Rescan", "LogoutRequested { within_s: 20 }"]);
    assert_eq!(
        h.feed(&wire(msg(2), &[], NONE)),
        Err(Lost::TargetDropsConnection)
    );

}

/// A rejected command was discarded by the target, and its CmdSN is a gap that holds up every
/// later command of the session (RFC 7143 6.3): the connection is lost, so that the recovery's
/// new session clears it. The task stays, for the driver to requeue after a data digest error
/// (reason 0x02: the command may well pass next time) and to fail for any other reason (the
/// target would reject it again, and a requeue would loop through recoveries).
#[test]
fn a_rejected_command_loses_the_connection() {
    // 0x09 invalid PDU field, 0x04 protocol error: failed; 0x02 data digest error, 0x0c
    // waiting for logout: requeued.
    for (reason, fails) in [(9, true), (4, true), (2, false), (0x0c, false)] {
        let mut h = Harness::new(NONE, PARAMS, 0);
        let itt = h.start(0, 0, 4096).unwrap();
        let other = h.start(2, 0, 0).unwrap();
        h.transmit().unwrap();
        let lost = h.feed(&reject(itt, reason, 1));
        assert_eq!(lost, Err(Lost::CommandRejected { itt, reason }));
        assert_eq!(lost.unwrap_err().fails(), fails.then_some(itt));
        assert!(h.ended.is_empty());
        // The engine takes nothing more on this connection.
        assert_eq!(
            h.feed(&wire(response(other, 2, 0), &[], NONE)),
            Err(Lost::CommandRejected { itt, reason })
        );
        // Both commands are handed back, once, for the recovery to requeue or fail.
        let mut back = Vec::new();
        assert!(!h.conn.end(&mut h.sess, |r| back.push(r.itt)));
        back.sort();
        let mut want = vec![itt, other];
        want.sort();
        assert_eq!(back, want);
    }
    // A Reject too short to hold the rejected header names no PDU: nothing is failed for it.
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.start(0, 0, 4096).unwrap();
    h.transmit().unwrap();
    let mut short = [0u8; 20];
    short[16..20].copy_from_slice(&itt.to_be_bytes());
    let pdu = Pdu::Reject(Reject {
        reason: 9,
        exp_cmd_sn: 1,
        max_cmd_sn: 100,
        ..Default::default()
    });
    let lost = h.feed(&wire(pdu, &short, NONE));
    assert_eq!(lost, Err(Lost::Unexpected(pdu::opcode::REJECT)));
    assert_eq!(lost.unwrap_err().fails(), None);
    // Other reasons to lose a connection fail no command.
    assert_eq!(Lost::DataOutRejected { itt: 5, reason: 9 }.fails(), None);
    assert_eq!(Lost::PingTimeout.fails(), None);
}

/// A rejected Data-Out leaves the task on the target, short of data that only ErrorRecoveryLevel
/// 1 could ask for again. For a data digest error (reason 0x02) the target ends the task itself
/// once the rest of its data has come (RFC 7143 7.8): the command stays, the rest of its data
/// goes, and its CHECK CONDITION ends it. For another reason the connection is lost with the
/// reason, and the command is not ended (it is handed back, once, for the recovery to requeue).
#[test]
fn a_rejected_data_out_keeps_the_command() {
    let len = 4096 + 8192;
    let data_outs = |h: &Harness| {
        h.sent
            .iter()
            .filter(|s| matches!(s.bhs.pdu, Pdu::DataOut(_)))
            .count()
    };
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.start(0, 0, len).unwrap();
    h.transmit().unwrap();
    h.feed(&wire(r2t(itt, 0, 4096, 8192), &[], NONE)).unwrap();
    let first = h.sent.len();
    // One Data-Out of the burst is out when the Reject of it comes.
    assert!(h.transmit_one().unwrap());
    assert!(matches!(h.sent.last().unwrap().bhs.pdu, Pdu::DataOut(_)));
    h.feed(&reject_of(pdu::opcode::DATA_OUT, itt, 2, 2)).unwrap();
    assert_eq!(
        h.events.last(),
        Some(&format!("DataDigestRejected {{ itt: {itt} }}"))
    );
    assert!(!h.ended.contains_key(&itt));
    h.transmit().unwrap();
    // All the data went: the unsolicited Data-Out after the immediate data, and the R2T's
    // 8192 bytes in PDUs of at most 2048.
    assert_eq!(data_outs(&h), 1 + 4);
    assert!(h.sent.len() > first);
    let sense = [0x70, 0, 0x0b, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x47, 0x05, 0, 0, 0, 0];
    let mut seg = vec![0, sense.len() as u8];
    seg.extend_from_slice(&sense);
    h.feed(&wire(response(itt, 2, 2), &seg, NONE)).unwrap();
    assert!(matches!(h.ended[&itt], Ended::Completed { status: 2, .. }));

    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.start(0, 0, len).unwrap();
    h.transmit().unwrap();
    h.feed(&wire(r2t(itt, 0, 4096, 8192), &[], NONE)).unwrap();
    h.transmit().unwrap();
    let lost = h.feed(&reject_of(pdu::opcode::DATA_OUT, itt, 9, 2));
    assert_eq!(lost, Err(Lost::DataOutRejected { itt, reason: 9 }));
    assert!(!h.ended.contains_key(&itt));
    let mut back = Vec::new();
    assert!(!h.conn.end(&mut h.sess, |r| back.push(r.itt)));
    assert_eq!(back, vec![itt]);
}

/// A logout of one connection (reason 1) is answered with its response code, or rejected:
/// either way its event names the request, so that the module can end the logout's wait; a
/// late answer after the Reject names nothing.
#[test]
fn logout_answered_or_rejected() {
    let close = pdu::logout_reason::CLOSE_CONNECTION;
    let answer = |itt: u32, stat_sn: u32, response: u8| {
        Pdu::LogoutResponse(LogoutResponse {
            response,
            itt,
            stat_sn,
            exp_cmd_sn: 2,
            max_cmd_sn: 100,
            ..Default::default()
        })
    };
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.conn.logout(&mut h.sess, close).unwrap();
    h.transmit().unwrap();
    h.feed(&wire(answer(itt, 1, 3), &[], NONE)).unwrap();
    assert_eq!(
        h.events,
        vec![format!("Logout {{ itt: {itt}, response: 3, time2wait: 0, time2retain: 0 }}")]
    );

    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.conn.logout(&mut h.sess, close).unwrap();
    h.transmit().unwrap();
    h.feed(&reject(itt, 4, 2)).unwrap();
    assert_eq!(
        h.events,
        vec![format!("Rejected {{ itt: {itt}, reason: 4, request: Logout {{ reason: {close} }} }}")]
    );
    h.feed(&wire(answer(itt, 1, 0), &[], NONE)).unwrap();
    assert_eq!(h.events.len(), 1, "{:?}", h.events);
}

#[test]
fn pdus_for_unsent_commands_or_initiator_opcodes_are_refused() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h.start(0, 512, 0).unwrap();
    assert_eq!(
        h.feed(&wire(response(itt, 1, 0), &[], NONE)),
        Err(Lost::NotSent(itt))
    );
    let mut h = Harness::new(NONE, PARAMS, 0);
    let nop_out = Pdu::NopOut(Default::default());
    assert_eq!(h.feed(&wire(nop_out, &[], NONE)), Err(Lost::Unexpected(0)));
}

/// A Text Response to `itt`, with the window left open.
fn text_part(itt: u32, final_: bool, continue_: bool, ttt: u32) -> Pdu {
    Pdu::TextResponse(TextResponse {
        final_,
        continue_,
        itt,
        ttt,
        exp_cmd_sn: 2,
        max_cmd_sn: 100,
        ..Default::default()
    })
}

#[test]
fn text_exchange_places_the_answer_and_continues() {
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h
        .conn
        .text(&mut h.sess, None, b"SendTargets=All\0", 0)
        .unwrap();
    h.transmit().unwrap();
    match h.sent[0].bhs.pdu {
        Pdu::TextRequest(t) => assert_eq!(
            (t.itt, t.ttt, t.immediate, t.cmd_sn),
            (itt, RESERVED_TAG, false, 1)
        ),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(h.sent[0].data, b"SendTargets=All\0");
    h.feed(&wire(
        text_part(itt, false, true, 5),
        b"TargetName=iq",
        NONE,
    ))
    .unwrap();
    let again = h.conn.text(&mut h.sess, Some((itt, 5)), &[], 0).unwrap();
    assert_eq!(again, itt);
    h.feed(&wire(
        text_part(itt, true, false, RESERVED_TAG),
        b"n.x\0",
        NONE,
    ))
    .unwrap();
    assert_eq!(h.text, b"TargetName=iqn.x\0");
    assert_eq!(h.events.len(), 2);
    assert_eq!(h.sess.own_requests().count(), 0);
}

/// The next request of a text exchange counts among the session's own requests queued on the
/// connection (at most `MAX_OWN` wait there, `tx_capacity`): refused while they are all queued,
/// taken once they have left.
#[test]
fn a_text_continuation_counts_among_the_queued_requests() {
    use iscsi_proto::ffp_session::MAX_OWN;
    let mut h = Harness::new(NONE, PARAMS, 0);
    let itt = h
        .conn
        .text(&mut h.sess, None, b"SendTargets=All\0", 0)
        .unwrap();
    assert_eq!(h.transmit(), Ok(1));
    h.feed(&wire(
        text_part(itt, false, true, 5),
        b"TargetName=iq",
        NONE,
    ))
    .unwrap();
    // Resets that time out while queued keep their entries until they leave.
    for _ in 0..MAX_OWN {
        let tmf = h
            .conn
            .task_mgmt(
                &mut h.sess,
                pdu::tmf::LOGICAL_UNIT_RESET,
                [0; 8],
                RESERVED_TAG,
            )
            .unwrap();
        assert!(h.sess.forget_request(tmf).is_some());
    }
    assert_eq!(
        h.conn.text(&mut h.sess, Some((itt, 5)), &[], 0),
        Err(StartError::TooManyRequests)
    );
    assert_eq!(h.transmit(), Ok(MAX_OWN));
    assert_eq!(h.conn.text(&mut h.sess, Some((itt, 5)), &[], 0), Ok(itt));
    assert_eq!(h.conn.lost(), None);
}

// ---- property tests ----------------------------------------------------------------------------

/// One valid exchange: the commands and every PDU a correct target sends for them, each
/// command's PDUs in order, the commands interleaved at random, with target pings between.
struct Scenario {
    /// (ITT, read data or write length).
    reads: Vec<(u32, Vec<u8>)>,
    writes: Vec<u32>,
    pdus: Vec<Vec<u8>>,
    /// PDUs a correct target sends only once it has received what came before (a write's
    /// status follows its data): the driver sends what it has queued before they arrive.
    barriers: Vec<bool>,
}

fn scenario(rng: &mut Rng, h: &mut Harness, d: Digests) -> Scenario {
    let mut per_task: Vec<Vec<(Vec<u8>, bool)>> = Vec::new();
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    let mut stat_sn = 1;
    for tag in 0..1 + rng.below(fuzz_bodies::ffp_sim::DEPTH) as u16 {
        let mut pdus = Vec::new();
        if rng.below(2) == 0 {
            let len = 1 + rng.below(20_000);
            let itt = h.start(tag, len as u32, 0).unwrap();
            let data = pattern(len, tag as u8);
            let (mut off, mut sn) = (0, 0);
            let separate_status = rng.below(2) == 0;
            while off < len {
                let n = (1 + rng.below(8192)).min(len - off);
                let last = off + n == len;
                let status = (last && !separate_status).then(|| {
                    stat_sn += 1;
                    stat_sn
                });
                pdus.push((
                    wire(data_in(itt, sn, off as u32, status), &data[off..off + n], d),
                    false,
                ));
                off += n;
                sn += 1;
            }
            if separate_status {
                stat_sn += 1;
                pdus.push((wire(response(itt, stat_sn, 0), &[], d), false));
            }
            reads.push((itt, data));
        } else {
            let len = 1 + rng.below(4096 + 4 * 8192);
            let itt = h.start(tag, 0, len as u32).unwrap();
            let (mut off, mut sn) = (4096.min(len), 0);
            while off < len {
                let n = (1 + rng.below(8192)).min(len - off);
                // MaxOutstandingR2T (4): the fifth waits until the bursts before are in.
                let wait = sn > 0 && sn % 4 == 0;
                pdus.push((wire(r2t(itt, sn, off as u32, n as u32), &[], d), wait));
                off += n;
                sn += 1;
            }
            stat_sn += 1;
            // A write's status comes once its data is in.
            pdus.push((wire(response(itt, stat_sn, 0), &[], d), true));
            writes.push(itt);
        }
        per_task.push(pdus);
    }
    let mut out = Vec::new();
    let mut barriers = Vec::new();
    while per_task.iter().any(|p| !p.is_empty()) {
        if rng.below(8) == 0 {
            let data = pattern(rng.below(512), 9);
            out.push(wire(target_ping(rng.next() as u32 | 1), &data, d));
            // A target waits for the answer to its ping before the next one.
            barriers.push(true);
            continue;
        }
        let live: Vec<usize> = (0..per_task.len())
            .filter(|&i| !per_task[i].is_empty())
            .collect();
        let t = live[rng.below(live.len())];
        let (p, barrier) = per_task[t].remove(0);
        barriers.push(barrier);
        out.push(p);
    }
    Scenario {
        reads,
        writes,
        pdus: out,
        barriers,
    }
}

/// Feeds the PDUs cut at random boundaries, sending whatever the engine queues meanwhile,
/// and everything before a barrier PDU.
fn feed_scenario(rng: &mut Rng, h: &mut Harness, sc: &Scenario) -> Result<(), Lost> {
    let mut run = Vec::new();
    for (p, barrier) in sc.pdus.iter().zip(&sc.barriers) {
        if *barrier {
            feed_split(rng, h, &run)?;
            run.clear();
        }
        run.extend_from_slice(p);
    }
    feed_split(rng, h, &run)
}

/// Feeds `bytes` cut at random boundaries, sending whatever the engine queues meanwhile.
fn feed_split(rng: &mut Rng, h: &mut Harness, bytes: &[u8]) -> Result<(), Lost> {
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(3000)).min(bytes.len() - at);
        h.feed(&bytes[at..at + n])?;
        if rng.below(3) == 0 {
            h.transmit()?;
        }
        at += n;
    }
    h.transmit().map(|_| ())
}

#[test]
fn random_interleavings_split_anywhere_complete_every_command_once() {
    let iters: u64 = std::env::var("FFP_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for i in 0..iters {
        let mut rng = Rng(0x5eed_0000 + i);
        let d = [
            NONE,
            BOTH,
            Digests {
                header: true,
                data: false,
            },
        ][rng.below(3)];
        let mut h = Harness::new(d, PARAMS, 0);
        h.exact = i % 2 == 1;
        let sc = scenario(&mut rng, &mut h, d);
        h.transmit().unwrap();
        feed_scenario(&mut rng, &mut h, &sc).unwrap_or_else(|e| panic!("iteration {i}: {e}"));
        for (itt, data) in &sc.reads {
            assert_eq!(&h.bufs[itt], data, "iteration {i}");
        }
        for itt in sc
            .reads
            .iter()
            .map(|r| r.0)
            .chain(sc.writes.iter().copied())
        {
            assert!(
                matches!(h.ended.get(&itt), Some(Ended::Completed { status: 0, .. })),
                "iteration {i}: {itt:#x} {:?}",
                h.ended.get(&itt)
            );
        }
        // Every byte of every write went out once, from its buffer.
        for itt in &sc.writes {
            let mut got = vec![false; h.bufs[itt].len()];
            for s in &h.sent {
                let off = match s.bhs.pdu {
                    Pdu::ScsiCommand(c) if c.itt == *itt => 0,
                    Pdu::DataOut(o) if o.itt == *itt => o.offset as usize,
                    _ => continue,
                };
                assert_eq!(s.data, h.bufs[itt][off..off + s.data.len()]);
                for g in &mut got[off..off + s.data.len()] {
                    assert!(!*g, "iteration {i}: byte sent twice");
                    *g = true;
                }
            }
            assert!(got.iter().all(|g| *g), "iteration {i}: write not covered");
        }
        assert_eq!(h.conn.tasks().in_flight(), 0);
    }
}

#[test]
fn mutated_streams_are_accepted_or_refused_never_worse() {
    let iters: u64 = std::env::var("FFP_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..iters * 3 {
        let mut rng = Rng(0xbad_0000 + i);
        let d = [NONE, BOTH][rng.below(2)];
        let mut h = Harness::new(d, PARAMS, 0);
        h.exact = i % 2 == 1;
        let mut sc = scenario(&mut rng, &mut h, d);
        h.transmit().unwrap();
        for _ in 0..1 + rng.below(4) {
            let n = sc.pdus.len();
            match rng.below(5) {
                0 => {
                    let p = rng.below(n);
                    sc.pdus.remove(p);
                }
                1 => {
                    let p = sc.pdus[rng.below(n)].clone();
                    sc.pdus.insert(rng.below(n), p);
                }
                2 => sc.pdus.swap(rng.below(n), rng.below(n)),
                3 => {
                    let p = rng.below(n);
                    let pdu = &mut sc.pdus[p];
                    let b = rng.below(pdu.len());
                    pdu[b] ^= 1 << rng.below(8);
                }
                _ => {
                    // A header field rewritten in place (digests then disagree, or not).
                    let p = rng.below(n);
                    let pdu = &mut sc.pdus[p];
                    let b = rng.below(48.min(pdu.len()));
                    pdu[b] = rng.next() as u8;
                }
            }
            if sc.pdus.is_empty() {
                break;
            }
        }
        let bytes: Vec<u8> = sc.pdus.concat();
        match feed_split(&mut rng, &mut h, &bytes) {
            Ok(()) => accepted += 1,
            Err(e) => {
                // A reason that prints; the connection stays lost with it.
                assert!(!e.to_string().is_empty());
                assert_eq!(h.conn.lost(), Some(e));
                refused += 1;
            }
        }
    }
    eprintln!("mutated streams: {accepted} accepted, {refused} refused");
    assert!(refused > 0 && accepted > 0);
}

#[test]
fn the_bit_crc_matches_rfc_3720_b4() {
    let d = iscsi_proto::crc::crc32c(&BitCrc, &[0u8; 32]);
    assert_eq!(d.to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
}

/// Seeds for the `ffp` fuzz target (see tests/fuzz_bodies/mod.rs, `ffp_stream`), written with
/// `FFP_WRITE_CORPUS=1 cargo test -p iscsi-proto --test ffp fuzz_seeds`; each replays cleanly.
#[test]
fn fuzz_seeds() {
    const READ: u32 = 0x0001_0000;
    const WRITE: u32 = 0x0401_0001;
    const SMALL: u32 = 0x0801_0002;
    const NONE_ITT: u32 = 0x0001_0003;
    let seed = |flags: u8, cut: u8, pdus: &[Vec<u8>]| {
        let mut v = vec![flags, cut];
        for p in pdus {
            v.extend_from_slice(p);
        }
        v
    };
    let data = pattern(4096, 1);
    let both = BOTH;
    let read = seed(
        3,
        7,
        &[
            wire(data_in(READ, 0, 0, None), &data[..1000], both),
            wire(data_in(READ, 1, 1000, Some(2)), &data[1000..], both),
            wire(response(NONE_ITT, 3, 0), &[], both),
        ],
    );
    let write = seed(
        0,
        3,
        &[
            wire(r2t(WRITE, 0, 4096, 4000), &[], NONE),
            wire(r2t(WRITE, 1, 8096, 1904), &[], NONE),
            wire(response(WRITE, 2, 0), &[], NONE),
        ],
    );
    let sense = [
        0, 18, 0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3f, 0x0e, 0, 0, 0, 0,
    ];
    // A Data-Out of SMALL rejected for its digest: the command stays (a Reject of a command
    // would lose the connection).
    let mut rejected = [0u8; 48];
    rejected[0] = pdu::opcode::DATA_OUT;
    rejected[16..20].copy_from_slice(&SMALL.to_be_bytes());
    let mixed = seed(
        1,
        200,
        &[
            wire(
                target_ping(0x55),
                b"ping",
                Digests {
                    header: true,
                    data: false,
                },
            ),
            wire(
                Pdu::AsyncMessage(AsyncMessage {
                    event: 0,
                    exp_cmd_sn: 1,
                    max_cmd_sn: 100,
                    ..Default::default()
                }),
                &sense,
                Digests {
                    header: true,
                    data: false,
                },
            ),
            wire(
                Pdu::Reject(Reject {
                    reason: pdu::reject_reason::DATA_DIGEST_ERROR,
                    exp_cmd_sn: 1,
                    max_cmd_sn: 100,
                    ..Default::default()
                }),
                &rejected,
                Digests {
                    header: true,
                    data: false,
                },
            ),
            wire(
                response(READ, 2, 2),
                &sense,
                Digests {
                    header: true,
                    data: false,
                },
            ),
        ],
    );
    let pong = seed(
        0,
        1,
        &[wire(
            Pdu::NopIn(NopIn {
                itt: 0x9000_0001,
                ttt: RESERVED_TAG,
                stat_sn: 1,
                exp_cmd_sn: 1,
                max_cmd_sn: 100,
                ..Default::default()
            }),
            &[],
            NONE,
        )],
    );
    let seeds = [
        ("read", read),
        ("write", write),
        ("mixed", mixed),
        ("pong", pong),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ffp");
    for (name, bytes) in &seeds {
        if std::env::var_os("FFP_WRITE_CORPUS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let on_disk = std::fs::read(dir.join(name)).expect("seed missing: FFP_WRITE_CORPUS=1");
        assert_eq!(&on_disk, bytes, "seed {name} is stale: FFP_WRITE_CORPUS=1");
    }
    // Each seed goes all the way through: no loss, and the commands it answers end.
    let ended: Vec<_> = seeds
        .iter()
        .map(|(_, b)| fuzz_bodies::ffp_stream_run(b))
        .collect();
    assert_eq!(ended, vec![(2, None), (1, None), (1, None), (0, None)]);
}

// ---- the receive decoder alone ---------------------------------------------------------------

/// PDUs as (BHS, AHS, data), and the error that stopped the stream.
type Decoded = (Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>, Option<RxError>);

/// Decodes `stream` fed in pieces of the given lengths (cycled), keeping every segment: each
/// PDU as (BHS, AHS, data), and the error that stopped it, if one did.
fn decode_all(stream: &[u8], cuts: &[usize], d: Digests) -> Decoded {
    use iscsi_proto::ffp_rx::{Next, Route, RxDecoder};
    let mut dec = RxDecoder::new(d, 600);
    let mut out = Vec::new();
    let mut data = Vec::new();
    let (mut at, mut k) = (0, 0);
    loop {
        let end = (at + cuts[k % cuts.len()]).min(stream.len());
        k += 1;
        let mut piece = &stream[at..end];
        at = end;
        loop {
            let r = match dec.next() {
                Next::Header { .. } => dec.header(&BitCrc, piece),
                Next::Route => {
                    data.clear();
                    dec.route(Route::Keep).map(|_| 0)
                }
                Next::Segment { .. } => dec.segment(&BitCrc, piece).map(|(_, p)| {
                    data.extend_from_slice(p);
                    p.len()
                }),
                Next::Trailer { .. } => dec.trailer(&BitCrc, piece),
                Next::Done => {
                    out.push((dec.bhs().to_vec(), dec.ahs().to_vec(), data.clone()));
                    dec.next_pdu().map(|_| 0)
                }
            };
            match r {
                Err(e) => return (out, Some(e)),
                Ok(n) => piece = &piece[n..],
            }
            let waits = matches!(
                dec.next(),
                Next::Header { .. } | Next::Segment { .. } | Next::Trailer { need: 1.. }
            );
            if piece.is_empty() && waits {
                break;
            }
        }
        if at == stream.len() {
            return (out, None);
        }
    }
}

proptest::proptest! {
    /// The decoder's answer does not depend on how the stream is cut: the same PDUs, the same
    /// segments, the same error at the same place.
    #[test]
    fn decoder_answers_the_same_however_the_stream_is_cut(
        pdus in proptest::collection::vec(
            (proptest::collection::vec(proptest::prelude::any::<u8>(), 48), 0u8..3, 0usize..700, 0u8..8),
            1..6,
        ),
        cuts in proptest::collection::vec(1usize..300, 1..20),
        hd in proptest::prelude::any::<bool>(),
        dd in proptest::prelude::any::<bool>(),
    ) {
        let d = Digests { header: hd, data: dd };
        let mut stream = Vec::new();
        for (bhs, ahs_words, len, flaw) in &pdus {
            let mut b: [u8; 48] = bhs.as_slice().try_into().unwrap();
            b[4] = *ahs_words;
            b[5..8].copy_from_slice(&(*len as u32).to_be_bytes()[1..]);
            let ahs = vec![0xa5; usize::from(*ahs_words) * 4];
            let mut w = b.to_vec();
            w.extend_from_slice(&ahs);
            if hd {
                w.extend_from_slice(&iscsi_proto::crc::header_digest(&BitCrc, &b, &ahs));
            }
            let data = pattern(*len, *flaw);
            if !data.is_empty() {
                w.extend_from_slice(&data);
                w.extend(std::iter::repeat_n(0, pdu::pad_len(data.len())));
                if dd {
                    w.extend_from_slice(&iscsi_proto::crc::data_digest(&BitCrc, &data));
                }
            }
            // Now and then a flipped bit somewhere in the PDU.
            if *flaw == 7 {
                let i = usize::from(b[0]) % w.len();
                w[i] ^= 0x10;
            }
            stream.extend_from_slice(&w);
        }
        let whole = decode_all(&stream, &[stream.len().max(1)], d);
        let cut = decode_all(&stream, &cuts, d);
        proptest::prop_assert_eq!(&whole, &cut);
        // Without flaws and within the limit, every PDU comes out as it went in.
        if pdus.iter().all(|p| p.3 != 7 && p.2 <= 600) {
            proptest::prop_assert_eq!(whole.1, None);
            proptest::prop_assert_eq!(whole.0.len(), pdus.len());
        }
    }
}
