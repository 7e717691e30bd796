//! Negotiation rules per key (unit and property tests), text parsing/writing, serial number
//! arithmetic laws and the CmdSN window, Data-Out planning, SendTargets and SCSI parsers.
use iscsi_proto::dataout::*;
use iscsi_proto::pdu::{R2t, RESERVED_TAG};
use iscsi_proto::scsi;
use iscsi_proto::sendtargets::{self, Portal};
use iscsi_proto::serial::{self, CmdWindow};
use iscsi_proto::text::*;
use proptest::prelude::*;

fn neg(l: &Limits) -> Negotiation {
    let mut n = Negotiation::new(l, OfferScope::Leading);
    let mut buf = [0u8; 2048];
    n.write_offer(&mut TextWriter::new(&mut buf)).unwrap();
    n
}

#[test]
fn pairs_and_writer() {
    let data = b"A=1\0B=x=y\0\0C=\0D=last";
    let v: Vec<_> = pairs(data).map(|p| p.unwrap()).collect();
    assert_eq!(
        v,
        vec![
            (&b"A"[..], &b"1"[..]),
            (b"B", b"x=y"),
            (b"C", b""),
            (b"D", b"last")
        ]
    );
    assert_eq!(
        pairs(b"novalue\0").next(),
        Some(Err(TextError::MissingEquals))
    );
    assert_eq!(pairs(b"=v\0").next(), Some(Err(TextError::BadKey)));
    assert_eq!(pairs(b"b\xffd=v\0").next(), Some(Err(TextError::BadKey)));
    let mut buf = [0u8; 40];
    let mut w = TextWriter::new(&mut buf);
    w.push("Key", "Val").unwrap();
    w.push_u32("N", 4294967295).unwrap();
    w.push_hex("H", &[0xab, 1]).unwrap();
    w.push_list("L", &["a", "b"]).unwrap();
    assert_eq!(w.as_bytes(), b"Key=Val\0N=4294967295\0H=0xab01\0L=a,b\0");
    // A pair that does not fit leaves nothing behind.
    let before = w.len();
    assert_eq!(w.push("Long", "0123456789"), Err(TextError::Overflow));
    assert_eq!(w.len(), before);
    assert_eq!(w.push("bad key", "v"), Err(TextError::BadKey));
    let mut acc = [0u8; 8];
    let mut t = TextBuf::new(&mut acc);
    t.push(b"A=1").unwrap();
    t.push(b"23\0").unwrap();
    assert_eq!(t.as_bytes(), b"A=123\0");
    assert_eq!(t.push(b"xyz"), Err(TextError::Overflow));
    assert_eq!(parse_number(b"0x1F"), Some(31));
    assert_eq!(parse_number(b"123"), Some(123));
    assert_eq!(parse_number(b"99999999999999999999999"), None);
    assert_eq!(parse_number(b"12a"), None);
    assert_eq!(parse_number(b""), None);
}

#[test]
fn each_key_rule() {
    let l = Limits {
        initial_r2t: false,
        immediate_data: false,
        ..Limits::default()
    };
    // Numerical minimum: more than offered is an error, less is taken.
    let mut n = neg(&l);
    assert_eq!(
        n.handle(b"MaxBurstLength", b"16777215"),
        Err(TextError::OutOfRange(Key::MaxBurstLength))
    );
    let mut n = neg(&l);
    n.handle(b"MaxBurstLength", b"65536").unwrap();
    n.handle(b"FirstBurstLength", b"131072").unwrap();
    // FirstBurstLength is capped at MaxBurstLength.
    assert_eq!(n.params().session.max_burst_length, 65536);
    assert_eq!(n.params().session.first_burst_length, 65536);
    assert_eq!(
        neg(&l).handle(b"MaxBurstLength", b"511"),
        Err(TextError::OutOfRange(Key::MaxBurstLength))
    );
    // Numerical maximum (DefaultTime2Wait): below our offer is an error.
    let l2 = Limits {
        default_time2wait: 5,
        max_time2wait: 10,
        ..l
    };
    assert!(neg(&l2).handle(b"DefaultTime2Wait", b"4").is_err());
    assert!(neg(&l2).handle(b"DefaultTime2Wait", b"11").is_err());
    let mut n = neg(&l2);
    n.handle(b"DefaultTime2Wait", b"7").unwrap();
    assert_eq!(n.params().session.default_time2wait, 7);
    // OR (InitialR2T): we offered No, Yes is fine; offered Yes, No is an error.
    let mut n = neg(&l);
    n.handle(b"InitialR2T", b"Yes").unwrap();
    assert!(n.params().session.initial_r2t);
    let ly = Limits {
        initial_r2t: true,
        ..l
    };
    assert!(neg(&ly).handle(b"InitialR2T", b"No").is_err());
    // AND (ImmediateData): we offered No, Yes is an error.
    assert!(neg(&l).handle(b"ImmediateData", b"Yes").is_err());
    let mut n = neg(&l);
    n.handle(b"ImmediateData", b"No").unwrap();
    assert!(!n.params().session.immediate_data);
    // Lists: only what we offered.
    let lc = Limits {
        header_digest: DigestPref::None,
        data_digest: DigestPref::Crc32c,
        ..l
    };
    assert!(neg(&lc).handle(b"HeaderDigest", b"CRC32C").is_err());
    assert!(neg(&lc).handle(b"DataDigest", b"None").is_err());
    assert_eq!(
        neg(&lc).handle(b"DataDigest", b"Reject"),
        Err(TextError::Rejected(Key::DataDigest))
    );
    let mut n = neg(&lc);
    n.handle(b"DataDigest", b"CRC32C").unwrap();
    assert!(n.params().conn.data_digest);
    // Reject / Irrelevant / NotUnderstood keep the default.
    let mut n = neg(&l);
    n.handle(b"MaxConnections", b"Irrelevant").unwrap();
    n.handle(b"MaxOutstandingR2T", b"Reject").unwrap();
    assert_eq!(n.params().session.max_connections, 1);
    // Declarative: range-checked.
    let mut n = neg(&l);
    assert!(n.handle(b"MaxRecvDataSegmentLength", b"16777216").is_err());
    n.handle(b"MaxRecvDataSegmentLength", b"512").unwrap();
    assert_eq!(n.params().conn.max_xmit_data_segment_length, 512);
    // A key answered twice is an error.
    let mut n = neg(&l);
    n.handle(b"ErrorRecoveryLevel", b"0").unwrap();
    assert!(n.handle(b"ErrorRecoveryLevel", b"0").is_err());
    // Defaults when nothing was negotiated.
    let p = Negotiation::new(&l, OfferScope::Leading).params();
    assert_eq!(p.session, SessionParams::default());
    assert!(p.session.initial_r2t && p.session.immediate_data);
    assert_eq!(p.conn.max_xmit_data_segment_length, 8192);
}

/// A Boolean offer that decides the result by itself needs no answer (RFC 7143 6.2.2): LIO
/// leaves ImmediateData=No unanswered, and the session must not take its silence for the
/// default (Yes) and send immediate data the target refuses. The other value still waits for
/// the answer, and an answer that does come is checked against the offer.
#[test]
fn decisive_offers_need_no_answer() {
    let l = Limits {
        immediate_data: false,
        initial_r2t: true,
        data_pdu_in_order: true,
        data_sequence_in_order: true,
        ..Limits::default()
    };
    let s = neg(&l).params().session;
    assert!(!s.immediate_data && s.initial_r2t && s.data_pdu_in_order && s.data_sequence_in_order);
    let mut n = neg(&l);
    assert!(n.handle(b"ImmediateData", b"Yes").is_err());
    let mut n = neg(&l);
    n.handle(b"ImmediateData", b"No").unwrap();
    assert!(!n.params().session.immediate_data);
    // Offered Yes (AND), InitialR2T No (OR): the answer decides; RFC defaults until it comes.
    let l = Limits {
        immediate_data: true,
        initial_r2t: false,
        ..Limits::default()
    };
    let mut n = neg(&l);
    assert!(n.params().session.immediate_data && n.params().session.initial_r2t);
    n.handle(b"ImmediateData", b"No").unwrap();
    n.handle(b"InitialR2T", b"No").unwrap();
    assert!(!n.params().session.immediate_data && !n.params().session.initial_r2t);
}

#[test]
fn target_proposals_are_answered() {
    let l = Limits::default();
    let mut n = Negotiation::new(&l, OfferScope::Leading);
    n.handle(b"MaxBurstLength", b"1000000000").unwrap_err();
    let mut n = Negotiation::new(&l, OfferScope::Leading);
    n.handle(b"MaxBurstLength", b"65536").unwrap();
    n.handle(b"DefaultTime2Wait", b"0").unwrap();
    n.handle(b"InitialR2T", b"Yes").unwrap();
    n.handle(b"ImmediateData", b"Yes").unwrap();
    n.handle(b"HeaderDigest", b"CRC32C,None").unwrap();
    n.handle(b"X-vendor", b"1").unwrap();
    n.handle(b"IFMarkInt", b"1-2").unwrap();
    assert!(n.has_replies());
    let mut buf = [0u8; 512];
    let mut w = TextWriter::new(&mut buf);
    n.write_replies(&mut w).unwrap();
    assert_eq!(
        w.as_bytes(),
        &b"HeaderDigest=CRC32C\0InitialR2T=Yes\0ImmediateData=Yes\0MaxBurstLength=65536\0DefaultTime2Wait=2\0\
X-vendor=NotUnderstood\0IFMarkInt=Irrelevant\0"[..]
    );
    assert!(!n.has_replies());
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (512u32..=0xff_ffff, 512u32..=0xff_ffff, 512u32..=0xff_ffff),
        (1u16..=8, 1u16..=8, 0u16..=3600, 0u16..=3600, 0u8..=2),
    )
        .prop_map(|(b, n, m)| Limits {
            header_digest: DigestPref::PreferNone,
            data_digest: DigestPref::PreferCrc32c,
            max_recv_data_segment_length: n.0,
            max_connections: m.0,
            initial_r2t: b.0,
            immediate_data: b.1,
            max_burst_length: n.1,
            first_burst_length: n.2,
            default_time2wait: m.2.min(m.3),
            max_time2wait: m.2.max(m.3),
            default_time2retain: m.3,
            max_outstanding_r2t: m.1,
            data_pdu_in_order: b.2,
            data_sequence_in_order: b.3,
            error_recovery_level: m.4,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Whatever the target answers, an accepted answer obeys the key's rule against our offer,
    /// and a rejected one is an error, never a panic.
    #[test]
    fn answers_obey_rules(l in limits(), v in any::<u32>(), b in any::<bool>(), key in 0usize..10) {
        let keys: [&[u8]; 10] = [b"MaxBurstLength", b"FirstBurstLength", b"MaxConnections", b"MaxOutstandingR2T",
            b"DefaultTime2Retain", b"DefaultTime2Wait", b"ErrorRecoveryLevel", b"InitialR2T", b"ImmediateData",
            b"DataPDUInOrder"];
        let k = keys[key];
        let val = if key >= 7 { if b { "Yes".to_string() } else { "No".to_string() } } else { v.to_string() };
        let mut n = neg(&l);
        let lim = *n.limits();
        let r = n.handle(k, val.as_bytes());
        let s = n.params().session;
        if r.is_ok() {
            match key {
                0 => prop_assert!(s.max_burst_length <= lim.max_burst_length && s.max_burst_length >= 512),
                1 => prop_assert!(s.first_burst_length <= lim.first_burst_length),
                2 => prop_assert!(s.max_connections <= lim.max_connections && s.max_connections >= 1),
                3 => prop_assert!(s.max_outstanding_r2t <= lim.max_outstanding_r2t && s.max_outstanding_r2t >= 1),
                4 => prop_assert!(s.default_time2retain <= lim.default_time2retain),
                5 => prop_assert!(s.default_time2wait >= lim.default_time2wait && s.default_time2wait <= lim.max_time2wait),
                6 => prop_assert!(s.error_recovery_level <= lim.error_recovery_level),
                7 => prop_assert!(s.initial_r2t == (b || lim.initial_r2t) && (b || !lim.initial_r2t)),
                8 => prop_assert!(s.immediate_data == b && (!b || lim.immediate_data)),
                _ => prop_assert!(s.data_pdu_in_order == b && (b || !lim.data_pdu_in_order)),
            }
        } else {
            // A rejected answer is one the rule forbids.
            let ok_num = |lo: u32, hi: u32| v >= lo && v <= hi;
            let forbidden = match key {
                0 => !ok_num(512, lim.max_burst_length),
                1 => !ok_num(512, lim.first_burst_length),
                2 => !ok_num(1, lim.max_connections.into()),
                3 => !ok_num(1, lim.max_outstanding_r2t.into()),
                4 => !ok_num(0, lim.default_time2retain.into()),
                5 => !ok_num(lim.default_time2wait.into(), lim.max_time2wait.into()),
                6 => !ok_num(0, lim.error_recovery_level.into()),
                7 => lim.initial_r2t && !b,
                8 => !lim.immediate_data && b,
                _ => lim.data_pdu_in_order && !b,
            };
            prop_assert!(forbidden, "{:?} refused for {}={}", r, String::from_utf8_lossy(k), val);
        }
        // FirstBurstLength never exceeds MaxBurstLength in what we report.
        prop_assert!(s.first_burst_length <= s.max_burst_length);
    }

    /// A target proposal gets the key's function of both values.
    #[test]
    fn proposals_use_rule(l in limits(), v in 512u32..=0xff_ffff, t in 0u32..=3600, b in any::<bool>()) {
        let mut n = Negotiation::new(&l, OfferScope::Leading);
        let lim = *n.limits();
        n.handle(b"MaxBurstLength", v.to_string().as_bytes()).unwrap();
        n.handle(b"DefaultTime2Retain", t.to_string().as_bytes()).unwrap();
        n.handle(b"InitialR2T", if b { b"Yes" } else { b"No" }).unwrap();
        n.handle(b"ImmediateData", if b { b"Yes" } else { b"No" }).unwrap();
        let s = n.params().session;
        prop_assert_eq!(s.max_burst_length, v.min(lim.max_burst_length));
        prop_assert_eq!(u32::from(s.default_time2retain), t.min(lim.default_time2retain.into()));
        prop_assert_eq!(s.initial_r2t, b || lim.initial_r2t);
        prop_assert_eq!(s.immediate_data, b && lim.immediate_data);
    }

    #[test]
    fn serial_laws(a in any::<u32>(), n in 1u32..(1 << 31)) {
        let b = serial::add(a, n).unwrap();
        prop_assert!(serial::lt(a, b));
        prop_assert!(serial::gt(b, a));
        prop_assert!(!serial::lt(b, a));
        prop_assert!(!serial::lt(a, a) && !serial::gt(a, a) && serial::le(a, a) && serial::ge(a, a));
        // Exactly one of <, =, > or incomparable (2^31 apart).
        let c = a.wrapping_add(n.wrapping_mul(2));
        let rels = [serial::lt(a, c), a == c, serial::gt(a, c)].iter().filter(|x| **x).count();
        prop_assert!(rels <= 1);
        if c.wrapping_sub(a) != 1 << 31 { prop_assert_eq!(rels, 1); }
        prop_assert_eq!(serial::add(a, 1 << 31), None);
    }

    #[test]
    fn window_never_moves_back(start in any::<u32>(), ups in proptest::collection::vec((any::<i16>(), 0u16..64), 1..50)) {
        let mut w = CmdWindow::new(start, start, start.wrapping_add(7));
        for (d, width) in ups {
            let exp = start.wrapping_add(d as i32 as u32);
            let max = exp.wrapping_add(u32::from(width)).wrapping_sub(1);
            let (e0, m0) = (w.exp_cmd_sn(), w.max_cmd_sn());
            w.update(exp, max);
            prop_assert!(serial::ge(w.exp_cmd_sn(), e0));
            prop_assert!(serial::ge(w.max_cmd_sn(), m0));
        }
    }

    #[test]
    fn dataout_covers_exactly(total in 0u32..4_000_000, fb in 512u32..300_000, mb in 512u32..300_000,
        mrdsl in 512u32..70_000, imm in any::<bool>(), ir2t in any::<bool>()) {
        let p = WriteParams { immediate_data: imm, initial_r2t: ir2t, first_burst_length: fb.min(mb),
            max_burst_length: mb, max_xmit_data_segment_length: mrdsl, max_outstanding_r2t: 1,
            data_sequence_in_order: true };
        let mut plan = WritePlan::new(&p, total);
        let mut covered = plan.immediate_len();
        prop_assert!(covered <= mrdsl && covered <= fb.min(mb));
        let mut last_final = true;
        for (sn, pdu) in plan.unsolicited().enumerate() {
            prop_assert_eq!(pdu.offset, covered);
            prop_assert!(pdu.len >= 1 && pdu.len <= mrdsl);
            prop_assert_eq!(pdu.data_sn, sn as u32);
            prop_assert_eq!(pdu.ttt, RESERVED_TAG);
            covered += pdu.len;
            last_final = pdu.final_;
        }
        prop_assert!(last_final);
        prop_assert!(covered <= fb.min(mb).max(plan.immediate_len()));
        prop_assert_eq!(plan.command_final(), plan.unsolicited().next().is_none());
        // The target then asks for the rest in bursts of MaxBurstLength.
        let mut r2t_sn = 0;
        while covered < total {
            let len = (total - covered).min(mb);
            let r = R2t { itt: 1, ttt: 99, r2t_sn, offset: covered, desired_len: len, ..Default::default() };
            let seq = plan.on_r2t(&r).unwrap();
            // One outstanding R2T at a time.
            prop_assert_eq!(plan.on_r2t(&R2t { r2t_sn: r2t_sn + 1, ..r }), Err(DataOutError::TooManyR2ts));
            let mut n = 0;
            for (i, pdu) in seq.enumerate() {
                prop_assert_eq!(pdu.offset, covered);
                prop_assert_eq!(pdu.data_sn, i as u32);
                prop_assert!(pdu.len <= mrdsl);
                covered += pdu.len;
                n += pdu.len;
                prop_assert_eq!(pdu.final_, n == len);
            }
            plan.burst_done();
            r2t_sn += 1;
        }
        prop_assert_eq!(covered, total);
        prop_assert_eq!(plan.solicited_len() + plan.unsolicited().remaining() + plan.immediate_len(), total);
    }
}

#[test]
fn cmd_window_rules() {
    let mut w = CmdWindow::new(10, 10, 12);
    assert_eq!(w.available(), 3);
    assert_eq!(
        (w.assign(), w.assign(), w.assign(), w.assign()),
        (Some(10), Some(11), Some(12), None)
    );
    assert!(!w.can_send());
    assert_eq!(w.immediate(), 13);
    // MaxCmdSN < ExpCmdSN - 1: ignored.
    assert!(!w.update(20, 15));
    assert_eq!((w.exp_cmd_sn(), w.max_cmd_sn()), (10, 12));
    // MaxCmdSN = ExpCmdSN - 1 is a closed window but valid.
    assert!(w.update(13, 12));
    assert_eq!(w.exp_cmd_sn(), 13);
    assert!(w.update(13, 20));
    assert!(w.can_send());
    // Stale values do not move the window back.
    assert!(w.update(11, 14));
    assert_eq!((w.exp_cmd_sn(), w.max_cmd_sn()), (13, 20));
    // Wrap around 2^32.
    let mut w = CmdWindow::new(u32::MAX, u32::MAX, 1);
    assert_eq!(w.available(), 3);
    assert_eq!(w.assign(), Some(u32::MAX));
    assert_eq!(w.assign(), Some(0));
}

/// The write parameters of the R2T tests: 8192 bytes of immediate data, InitialR2T=Yes.
const R2T_PARAMS: WriteParams = WriteParams {
    immediate_data: true,
    initial_r2t: true,
    first_burst_length: 65536,
    max_burst_length: 65536,
    max_xmit_data_segment_length: 8192,
    max_outstanding_r2t: 2,
    data_sequence_in_order: true,
};

/// An R2T with R2TSN `sn` asking for `len` bytes at `off`.
fn r(sn: u32, off: u32, len: u32) -> R2t {
    R2t {
        ttt: 5,
        r2t_sn: sn,
        offset: off,
        desired_len: len,
        ..Default::default()
    }
}

#[test]
fn r2t_validation() {
    let p = R2T_PARAMS;
    let mut plan = WritePlan::new(&p, 100_000);
    assert_eq!(plan.immediate_len(), 8192);
    assert!(plan.command_final());
    assert_eq!(
        plan.on_r2t(&r(0, 90_000, 20_000)),
        Err(DataOutError::OutOfRange)
    );
    assert_eq!(
        plan.on_r2t(&r(0, u32::MAX, 2)),
        Err(DataOutError::OutOfRange)
    );
    assert_eq!(plan.on_r2t(&r(0, 0, 0)), Err(DataOutError::OutOfRange));
    assert_eq!(
        plan.on_r2t(&r(0, 0, 70_000)),
        Err(DataOutError::BurstTooLong)
    );
    assert_eq!(plan.on_r2t(&r(3, 8192, 100)), Err(DataOutError::BadR2tSn));
    let s = plan.on_r2t(&r(0, 8192, 65536)).unwrap();
    assert_eq!(s.count(), 8);
    // At ErrorRecoveryLevel 0 an R2TSN comes once: a repeat would ask for the same data again
    // and again.
    assert_eq!(plan.on_r2t(&r(0, 8192, 100)), Err(DataOutError::BadR2tSn));
    plan.on_r2t(&r(1, 73728, 26272)).unwrap();
    assert_eq!(plan.on_r2t(&r(2, 0, 1)), Err(DataOutError::TooManyR2ts));
    plan.burst_done();
    assert_eq!(plan.outstanding(), 1);
    // ImmediateData=No, InitialR2T=No: all unsolicited as Data-Out.
    let p2 = WriteParams {
        immediate_data: false,
        initial_r2t: false,
        ..p
    };
    let plan = WritePlan::new(&p2, 20_000);
    assert_eq!(plan.immediate_len(), 0);
    assert!(!plan.command_final());
    let v: Vec<_> = plan
        .unsolicited()
        .map(|d| (d.offset, d.len, d.final_))
        .collect();
    assert_eq!(
        v,
        vec![(0, 8192, false), (8192, 8192, false), (16384, 3616, true)]
    );
}

/// A target cannot keep a write's sender busy by asking for the same bytes again under new
/// R2TSNs: in order, a range may not start before the last one ended, nor inside the
/// immediate or unsolicited data; out of order, the bytes asked for add up to at most the
/// solicited length.
#[test]
fn r2t_asked_again() {
    let p = WriteParams {
        max_outstanding_r2t: 4,
        ..R2T_PARAMS
    };
    // 8192 bytes go as immediate data; the rest, 8192..100_000, is asked for.
    let mut plan = WritePlan::new(&p, 100_000);
    assert_eq!(plan.on_r2t(&r(0, 0, 4096)), Err(DataOutError::AskedAgain));
    plan.on_r2t(&r(0, 8192, 4096)).unwrap();
    plan.burst_done();
    let mut accepted = 1;
    for sn in 1..1000 {
        if plan.on_r2t(&r(sn, 8192, 4096)).is_ok() {
            accepted += 1;
            plan.burst_done();
        }
    }
    assert_eq!(accepted, 1, "the same range was asked for again");
    // A refused R2T does not use up its R2TSN: the next range in order is taken.
    plan.on_r2t(&r(1, 12288, 4096)).unwrap();
    assert_eq!(
        plan.on_r2t(&r(2, 12000, 4096)),
        Err(DataOutError::AskedAgain)
    );

    // Out of order: ranges may come in any order, but no more than the solicited length.
    let mut plan = WritePlan::new(
        &WriteParams {
            data_sequence_in_order: false,
            ..p
        },
        100_000,
    );
    plan.on_r2t(&r(0, 50_000, 50_000)).unwrap();
    plan.on_r2t(&r(1, 8192, 41_808)).unwrap();
    assert_eq!(plan.on_r2t(&r(2, 8192, 1)), Err(DataOutError::AskedAgain));
    assert_eq!(plan.on_r2t(&r(2, 0, 1)), Err(DataOutError::AskedAgain));
}

#[test]
fn sendtargets_parse() {
    let data = b"TargetName=iqn.2003-01.org.linux-iscsi:t1\0TargetAddress=10.0.0.1:3260,1\0\
TargetAddress=[fe80::1%eth0]:3261,2\0TargetName=iqn.t2\0TargetAlias=foo\0TargetAddress=storage.example.com\0\
TargetName=iqn.t3\0";
    let ts: Vec<_> = sendtargets::targets(data).map(|t| t.unwrap()).collect();
    assert_eq!(ts.len(), 3);
    assert_eq!(ts[0].name, "iqn.2003-01.org.linux-iscsi:t1");
    let p: Vec<_> = ts[0].portals().map(|p| p.unwrap()).collect();
    assert_eq!(
        p,
        vec![
            Portal {
                host: "10.0.0.1",
                port: 3260,
                tpgt: Some(1)
            },
            Portal {
                host: "fe80::1%eth0",
                port: 3261,
                tpgt: Some(2)
            }
        ]
    );
    let p: Vec<_> = ts[1].portals().map(|p| p.unwrap()).collect();
    assert_eq!(
        p,
        vec![Portal {
            host: "storage.example.com",
            port: 3260,
            tpgt: None
        }]
    );
    assert_eq!(ts[2].portals().count(), 0);
    assert_eq!(
        sendtargets::parse_address(b"[::1]").unwrap(),
        Portal {
            host: "::1",
            port: 3260,
            tpgt: None
        }
    );
    assert_eq!(
        sendtargets::parse_address(b"fe80::2,3").unwrap(),
        Portal {
            host: "fe80::2",
            port: 3260,
            tpgt: Some(3)
        }
    );
    for bad in [
        &b"h:0"[..],
        b"h:99999",
        b"[::1",
        b"[::1]x",
        b":3260",
        b"h:,1",
        b"h,x",
        b"h:12a",
    ] {
        assert!(
            sendtargets::parse_address(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut it = sendtargets::targets(b"TargetAddress=1.2.3.4\0");
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

#[test]
fn scsi_cdbs_and_parsers() {
    assert_eq!(scsi::inquiry(None, 96), [0x12, 0, 0, 0, 96, 0]);
    assert_eq!(scsi::inquiry(Some(0x80), 255), [0x12, 1, 0x80, 0, 255, 0]);
    assert_eq!(
        scsi::report_luns(4096),
        [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
    );
    assert_eq!(
        scsi::read10(0x01020304, 8),
        [0x28, 0, 1, 2, 3, 4, 0, 0, 8, 0]
    );
    assert_eq!(
        scsi::write16(0x0102030405060708, 0x10),
        [0x8a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0x10, 0, 0]
    );
    assert_eq!(scsi::read_capacity16(32)[..2], [0x9e, 0x10]);
    assert_eq!(scsi::test_unit_ready(), [0; 6]);
    let c = scsi::parse_read_capacity10(&[0, 0, 0xff, 0xff, 0, 0, 2, 0]).unwrap();
    assert_eq!(
        (c.last_lba, c.block_len, c.blocks()),
        (0xffff, 512, Some(0x10000))
    );
    let c =
        scsi::parse_read_capacity16(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!((c.last_lba, c.block_len), (1 << 32, 4096));
    assert!(scsi::parse_read_capacity10(&[0; 7]).is_err());
    let rl = [
        0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0,
    ];
    let luns: Vec<_> = scsi::parse_report_luns(&rl)
        .unwrap()
        .map(|l| l.number())
        .collect();
    assert_eq!(luns, vec![Some(0), Some(300)]);
    // Truncated by the allocation length: what arrived, and the full length.
    let r = scsi::parse_report_luns(&rl[..20]).unwrap();
    assert_eq!(r.list_len, 16);
    assert_eq!(r.count(), 1);
    // Fixed sense: NOT READY, 04/01.
    let s = scsi::parse_sense(&[
        0xf0, 0, 0x02, 0, 0, 0, 9, 10, 0, 0, 0, 0, 0x04, 0x01, 0, 0, 0, 0,
    ])
    .unwrap();
    assert_eq!((s.key, s.asc, s.ascq, s.information), (2, 4, 1, Some(9)));
    // Descriptor sense: MEDIUM ERROR 11/00 with an information descriptor.
    let s = scsi::parse_sense(&[
        0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12, 0, 10, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34,
    ])
    .unwrap();
    assert_eq!(
        (s.key, s.asc, s.ascq, s.information),
        (3, 0x11, 0, Some(0x1234))
    );
    assert!(scsi::parse_sense(&[0x7f]).is_err());
    assert!(scsi::parse_sense(&[]).is_err());
    assert_eq!(
        scsi::sense_from_response(&[0, 3, 0x70, 0, 5, 9]),
        Some(&[0x70, 0, 5][..])
    );
    assert_eq!(scsi::sense_from_response(&[0, 9, 0x70]), None);
}
