//! BHS layouts from hand-built byte arrays (RFC 7143 section 11), AHS, LUNs, receive lengths,
//! and the encode/decode round trip for every opcode as a property.
mod common;
use common::hex;
use iscsi_proto::pdu::*;
use proptest::prelude::*;

fn bhs(s: &str) -> [u8; 48] {
    hex(s).try_into().unwrap()
}

#[test]
fn scsi_command_read10_layout() {
    // The RFC 3720 B.4 read PDU: I=1 F=1 R=1 attr=simple? (byte1 0xc0: F and R), ITT 0x14,
    // EDTL 0x400, CmdSN 0x14, ExpStatSN 0x18, CDB READ(10) of 2 blocks.
    let b = bhs(
        "01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018
                 28000000 00000000 02000000 00000000",
    );
    let d = Bhs::decode(&b).unwrap();
    let Pdu::ScsiCommand(c) = d.pdu else { panic!() };
    assert!(!c.immediate && c.final_ && c.read && !c.write);
    assert_eq!(c.itt, 0x1400_0000);
    assert_eq!(c.expected_len, 0x400);
    assert_eq!((c.cmd_sn, c.exp_stat_sn), (0x14, 0x18));
    assert_eq!(c.cdb[0], 0x28);
    let mut out = [0u8; 48];
    d.encode(&mut out).unwrap();
    assert_eq!(out, b);
}

#[test]
fn login_request_layout() {
    let req = LoginRequest {
        transit: true,
        continue_: false,
        csg: Stage::Security,
        nsg: Stage::Operational,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
        tsih: 0,
        itt: 0x0a0b0c0d,
        cid: 1,
        cmd_sn: 5,
        exp_stat_sn: 0,
    };
    let mut out = [0u8; 48];
    Bhs {
        total_ahs_words: 0,
        data_segment_len: 0x1234,
        pdu: Pdu::LoginRequest(req),
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(
        out,
        bhs(
            "43810000 00001234 80123456 789a0000 0a0b0c0d 00010000 00000005 00000000
             00000000 00000000 00000000 00000000"
        )
    );
}

#[test]
fn login_response_and_status() {
    let b = bhs(
        "23870000 00000010 80123456 789a0007 0a0b0c0d 00000000 00000001 00000002
                 00000003 02010000 00000000 00000000",
    );
    let d = Bhs::decode(&b).unwrap();
    assert_eq!(d.data_segment_len, 16);
    let Pdu::LoginResponse(r) = d.pdu else {
        panic!()
    };
    assert!(r.transit && !r.continue_);
    assert_eq!((r.csg, r.nsg), (Stage::Operational, Stage::FullFeature));
    assert_eq!(r.tsih, 7);
    assert_eq!((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn), (1, 2, 3));
    assert_eq!((r.status_class, r.status_detail), (2, 1));
}

#[test]
fn bad_headers_are_errors() {
    for op in [0x07u8, 0x0f, 0x11, 0x1c, 0x27, 0x30, 0x33, 0x3e] {
        let mut b = [0u8; 48];
        b[0] = op;
        assert_eq!(Bhs::decode(&b), Err(PduError::InvalidOpcode(op)));
    }
    // Login with T and C together, or a reserved stage.
    let mut b = [0u8; 48];
    b[0] = 0x23;
    b[1] = 0xc1;
    assert_eq!(Bhs::decode(&b), Err(PduError::TransitWithContinue));
    b[1] = 0x88; // CSG=2
    assert_eq!(Bhs::decode(&b), Err(PduError::ReservedStage));
    b[1] = 0x82; // T with NSG=2
    assert_eq!(Bhs::decode(&b), Err(PduError::ReservedStage));
    // Data-In with S but not F; SCSI Response with o and O... u and U.
    b[0] = 0x25;
    b[1] = 0x01;
    assert_eq!(Bhs::decode(&b), Err(PduError::BadFlags));
    b[0] = 0x21;
    b[1] = 0x86;
    assert_eq!(Bhs::decode(&b), Err(PduError::BadFlags));
    // Data segment too large to encode.
    let p = Bhs {
        total_ahs_words: 0,
        data_segment_len: 1 << 24,
        pdu: Pdu::NopOut(NopOut::default()),
    };
    assert!(p.encode(&mut [0; 48]).is_err());
}

#[test]
fn r2t_data_in_layout() {
    let b = bhs(
        "31800000 00000000 00010000 00000000 00000042 00001234 00000009 0000000a
                 0000000b 00000002 00002000 00010000",
    );
    let Pdu::R2t(r) = Bhs::decode(&b).unwrap().pdu else {
        panic!()
    };
    assert_eq!(r.lun, [0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        (r.itt, r.ttt, r.r2t_sn, r.offset, r.desired_len),
        (0x42, 0x1234, 2, 0x2000, 0x10000)
    );
    let b = bhs(
        "25830002 00000200 00000000 00000000 00000042 ffffffff 00000009 0000000a
                 0000000b 00000000 00000000 00000100",
    );
    let Pdu::DataIn(d) = Bhs::decode(&b).unwrap().pdu else {
        panic!()
    };
    assert!(d.final_ && d.status_present && d.underflow && !d.overflow);
    assert_eq!((d.status, d.residual), (2, 0x100));
}

#[test]
fn rx_layout_rules() {
    let mut b = [0u8; 48];
    b[0] = 0x25;
    b[4] = 2; // 8 bytes AHS
    b[5..8].copy_from_slice(&[0, 0x10, 0x01]); // 4097 bytes
    let l = rx_layout(
        &b,
        Digests {
            header: true,
            data: true,
        },
        8192,
    )
    .unwrap();
    assert_eq!(
        (
            l.ahs_len,
            l.header_digest_len,
            l.data_len,
            l.pad_len,
            l.data_digest_len
        ),
        (8, 4, 4097, 3, 4)
    );
    assert_eq!(l.remaining(), 8 + 4 + 4097 + 3 + 4);
    assert_eq!(
        rx_layout(&b, Digests::default(), 4096),
        Err(PduError::DataSegmentTooLarge {
            len: 4097,
            max: 4096
        })
    );
    b[5..8].copy_from_slice(&[0, 0, 0]);
    let l = rx_layout(
        &b,
        Digests {
            header: false,
            data: true,
        },
        8192,
    )
    .unwrap();
    assert_eq!(l.data_digest_len, 0, "no data digest without data");
    assert_eq!(l.remaining(), 8);
}

#[test]
fn ahs_encode_parse() {
    let cdb: Vec<u8> = (0..32u8).collect();
    let mut out = [0u8; 64];
    let n = encode_ext_cdb_ahs(&cdb, &mut out).unwrap();
    // AHSLength = 32 - 15 = 17, type 1, reserved, 16 CDB bytes: 3 + 17 = 20 bytes.
    assert_eq!(n, 20);
    assert_eq!(&out[..4], &[0, 17, 1, 0]);
    let m = encode_bidi_read_ahs(0x1000, &mut out[n..]).unwrap();
    assert_eq!(&out[n..n + m], &[0, 5, 2, 0, 0, 0, 0x10, 0]);
    let got: Vec<_> = parse_ahs(&out[..n + m]).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        got,
        vec![Ahs::ExtendedCdb(&cdb[16..]), Ahs::BidiReadLen(0x1000)]
    );
    assert_eq!(ahs_words(n + m), Ok(7));
    assert!(encode_ext_cdb_ahs(&cdb[..16], &mut out).is_err());
    assert!(encode_ext_cdb_ahs(&cdb, &mut out[..8]).is_err());
    // Truncated AHS: error, then the iterator stops.
    let mut it = parse_ahs(&[0, 40, 1, 0, 1, 2]);
    assert_eq!(it.next(), Some(Err(PduError::BadAhs)));
    assert_eq!(it.next(), None);
}

#[test]
fn lun_forms() {
    assert_eq!(Lun::from_number(5).unwrap().0, [0, 5, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        Lun::from_number(300).unwrap().0,
        [0x41, 0x2c, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        Lun::from_number(16383).unwrap().0,
        [0x7f, 0xff, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(Lun::from_number(16384), None);
    assert_eq!(Lun([0x41, 0x2c, 0, 0, 0, 0, 0, 0]).number(), Some(300));
    assert_eq!(Lun([0x00, 0x07, 0, 0, 0, 0, 0, 0]).number(), Some(7));
    assert_eq!(Lun([0x01, 0x07, 0, 0, 0, 0, 0, 0]).number(), None, "bus 1");
    assert_eq!(
        Lun([0x00, 0x07, 0, 1, 0, 0, 0, 0]).number(),
        None,
        "second level"
    );
    assert_eq!(Lun([0x41, 0x2c, 0, 0, 0, 0, 0, 0]).to_linux(), 0x412c);
    assert_eq!(Lun::from_linux(0x412c).0, [0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn write_pdu_pads() {
    let mut out = [0xeeu8; 64];
    let n = write_pdu(
        &Pdu::NopOut(NopOut {
            itt: 1,
            ttt: RESERVED_TAG,
            ..Default::default()
        }),
        b"abcde",
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 48 + 8);
    assert_eq!(&out[48..56], b"abcde\0\0\0");
    assert_eq!(data_segment_len_of(out[..48].try_into().unwrap()), 5);
    assert!(write_pdu(&Pdu::NopOut(NopOut::default()), b"abcde", &mut out[..55]).is_err());
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::Security),
        Just(Stage::Operational),
        Just(Stage::FullFeature)
    ]
}

prop_compose! {
    fn login_req()(t in any::<bool>(), c in any::<bool>(), csg in stage(), nsg in stage(), vmax in any::<u8>(),
        vmin in any::<u8>(), isid in any::<[u8; 6]>(), tsih in any::<u16>(), itt in any::<u32>(),
        cid in any::<u16>(), cmd_sn in any::<u32>(), exp in any::<u32>()) -> LoginRequest {
        // T and C together are refused on encode; NSG without T is not carried meaningfully.
        LoginRequest { transit: t, continue_: c && !t, csg, nsg, version_max: vmax,
            version_min: vmin, isid, tsih, itt, cid, cmd_sn, exp_stat_sn: exp }
    }
}

prop_compose! {
    fn login_rsp()(t in any::<bool>(), c in any::<bool>(), csg in stage(), nsg in stage(), vmax in any::<u8>(),
        va in any::<u8>(), isid in any::<[u8; 6]>(), tsih in any::<u16>(), itt in any::<u32>(),
        s in any::<[u32; 3]>(), class in any::<u8>(), detail in any::<u8>()) -> LoginResponse {
        LoginResponse { transit: t, continue_: c && !t, csg, nsg, version_max: vmax, version_active: va, isid, tsih,
            itt, stat_sn: s[0], exp_cmd_sn: s[1], max_cmd_sn: s[2], status_class: class, status_detail: detail }
    }
}

fn any_pdu() -> impl Strategy<Value = Pdu> {
    let w = any::<[u32; 8]>();
    let lun = any::<[u8; 8]>();
    prop_oneof![
        (any::<bool>(), lun, w).prop_map(|(i, lun, w)| Pdu::NopOut(NopOut {
            immediate: i,
            lun,
            itt: w[0],
            ttt: w[1],
            cmd_sn: w[2],
            exp_stat_sn: w[3]
        })),
        (any::<[bool; 4]>(), 0u8..8, lun, w, any::<[u8; 16]>()).prop_map(
            |(f, attr, lun, w, cdb)| {
                Pdu::ScsiCommand(ScsiCommand {
                    immediate: f[0],
                    final_: f[1],
                    read: f[2],
                    write: f[3],
                    attr,
                    lun,
                    itt: w[0],
                    expected_len: w[1],
                    cmd_sn: w[2],
                    exp_stat_sn: w[3],
                    cdb,
                })
            }
        ),
        (any::<bool>(), 0u8..128, lun, w).prop_map(|(i, f, lun, w)| Pdu::TaskMgmtRequest(
            TaskMgmtRequest {
                immediate: i,
                function: f,
                lun,
                itt: w[0],
                ref_task_tag: w[1],
                cmd_sn: w[2],
                exp_stat_sn: w[3],
                ref_cmd_sn: w[4],
                exp_data_sn: w[5]
            }
        )),
        login_req().prop_map(Pdu::LoginRequest),
        (any::<[bool; 2]>(), lun, w).prop_map(|(f, lun, w)| Pdu::TextRequest(TextRequest {
            immediate: f[0],
            final_: f[1],
            continue_: !f[1] && w[7] & 1 == 1,
            lun,
            itt: w[0],
            ttt: w[1],
            cmd_sn: w[2],
            exp_stat_sn: w[3]
        })),
        (any::<bool>(), lun, w).prop_map(|(f, lun, w)| Pdu::DataOut(DataOut {
            final_: f,
            lun,
            itt: w[0],
            ttt: w[1],
            exp_stat_sn: w[2],
            data_sn: w[3],
            offset: w[4]
        })),
        (any::<bool>(), 0u8..128, any::<u16>(), w).prop_map(|(i, r, cid, w)| Pdu::LogoutRequest(
            LogoutRequest {
                immediate: i,
                reason: r,
                itt: w[0],
                cid,
                cmd_sn: w[1],
                exp_stat_sn: w[2]
            }
        )),
        (0u8..16, lun, w).prop_map(|(t, lun, w)| Pdu::Snack(Snack {
            type_: t,
            lun,
            itt: w[0],
            ttt: w[1],
            exp_stat_sn: w[2],
            beg_run: w[3],
            run_length: w[4]
        })),
        (lun, w).prop_map(|(lun, w)| Pdu::NopIn(NopIn {
            lun,
            itt: w[0],
            ttt: w[1],
            stat_sn: w[2],
            exp_cmd_sn: w[3],
            max_cmd_sn: w[4]
        })),
        (0u8..3, 0u8..3, any::<[u8; 2]>(), w).prop_map(|(bi, r, rs, w)| Pdu::ScsiResponse(
            ScsiResponse {
                bidi_overflow: bi == 1,
                bidi_underflow: bi == 2,
                overflow: r == 1,
                underflow: r == 2,
                response: rs[0],
                status: rs[1],
                itt: w[0],
                snack_tag: w[1],
                stat_sn: w[2],
                exp_cmd_sn: w[3],
                max_cmd_sn: w[4],
                exp_data_sn: w[5],
                bidi_residual: w[6],
                residual: w[7]
            }
        )),
        (any::<u8>(), w).prop_map(|(r, w)| Pdu::TaskMgmtResponse(TaskMgmtResponse {
            response: r,
            itt: w[0],
            stat_sn: w[1],
            exp_cmd_sn: w[2],
            max_cmd_sn: w[3]
        })),
        login_rsp().prop_map(Pdu::LoginResponse),
        (any::<[bool; 2]>(), lun, w).prop_map(|(f, lun, w)| Pdu::TextResponse(TextResponse {
            final_: f[0],
            continue_: !f[0] && f[1],
            lun,
            itt: w[0],
            ttt: w[1],
            stat_sn: w[2],
            exp_cmd_sn: w[3],
            max_cmd_sn: w[4]
        })),
        (
            any::<[bool; 3]>(),
            0u8..3,
            any::<u8>(),
            lun,
            w,
            any::<u32>()
        )
            .prop_map(|(f, r, st, lun, w, res)| {
                let s = f[2];
                Pdu::DataIn(DataIn {
                    final_: f[0] || s,
                    ack: f[1],
                    overflow: s && r == 1,
                    underflow: s && r == 2,
                    status_present: s,
                    status: st,
                    lun,
                    itt: w[0],
                    ttt: w[1],
                    stat_sn: w[2],
                    exp_cmd_sn: w[3],
                    max_cmd_sn: w[4],
                    data_sn: w[5],
                    offset: w[6],
                    residual: res,
                })
            }),
        (any::<u8>(), any::<[u16; 2]>(), w).prop_map(|(r, t, w)| Pdu::LogoutResponse(
            LogoutResponse {
                response: r,
                itt: w[0],
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                time2wait: t[0],
                time2retain: t[1]
            }
        )),
        (lun, w).prop_map(|(lun, w)| Pdu::R2t(R2t {
            lun,
            itt: w[0],
            ttt: w[1],
            stat_sn: w[2],
            exp_cmd_sn: w[3],
            max_cmd_sn: w[4],
            r2t_sn: w[5],
            offset: w[6],
            desired_len: w[7]
        })),
        (lun, w, any::<[u8; 2]>(), any::<[u16; 3]>()).prop_map(|(lun, w, e, p)| Pdu::AsyncMessage(
            AsyncMessage {
                lun,
                stat_sn: w[0],
                exp_cmd_sn: w[1],
                max_cmd_sn: w[2],
                event: e[0],
                vcode: e[1],
                param1: p[0],
                param2: p[1],
                param3: p[2]
            }
        )),
        (any::<u8>(), w).prop_map(|(r, w)| Pdu::Reject(Reject {
            reason: r,
            stat_sn: w[0],
            exp_cmd_sn: w[1],
            max_cmd_sn: w[2],
            data_sn: w[3]
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_decodes_to_itself(pdu in any_pdu(), ahs in any::<u8>(), dl in 0u32..(1 << 24)) {
        // NSG is only meaningful with T, but any non-reserved stage reads back as itself.
        let b = Bhs { total_ahs_words: ahs, data_segment_len: dl, pdu };
        let mut out = [0u8; 48];
        b.encode(&mut out).unwrap();
        prop_assert_eq!(Bhs::decode(&out), Ok(b));
        // Encoding what was decoded gives the same bytes.
        let mut again = [0u8; 48];
        Bhs::decode(&out).unwrap().encode(&mut again).unwrap();
        prop_assert_eq!(out, again);
    }

    #[test]
    fn decode_never_panics(b in any::<[u8; 32]>(), c in any::<[u8; 16]>()) {
        let mut x = [0u8; 48];
        x[..32].copy_from_slice(&b);
        x[32..].copy_from_slice(&c);
        let _ = Bhs::decode(&x);
        let _ = rx_layout(&x, Digests { header: true, data: true }, 8192);
    }

    #[test]
    fn lun_number_round_trip(n in 0u16..16384) {
        let l = Lun::from_number(n).unwrap();
        prop_assert_eq!(l.number(), Some(n));
        prop_assert_eq!(Lun::from_linux(l.to_linux()), l);
    }
}
