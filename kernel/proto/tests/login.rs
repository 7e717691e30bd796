//! Login flows against a scripted target: no auth, one-way and mutual CHAP, reflected challenge,
//! skipped mutual authentication, redirection, status errors, multi-PDU responses, discovery.
mod common;
use common::*;
use iscsi_proto::chap::{self, ChapAlgorithm, ChapConfig, ChapError, MutualChap, MAX_DIGEST_LEN};
use iscsi_proto::login::*;
use iscsi_proto::pdu::*;
use iscsi_proto::text::{self, Limits};

const ISID: [u8; 6] = [0x80, 1, 2, 3, 4, 5];
const ITT: u32 = 0x77;

fn config(chap: Option<ChapConfig<'static>>) -> LoginConfig<'static> {
    LoginConfig {
        initiator_name: "iqn.2024-01.org.example:init",
        initiator_alias: None,
        target_name: "iqn.2024-01.org.example:tgt",
        session_type: SessionType::Normal,
        isid: ISID,
        tsih: 0,
        cid: 0,
        itt: ITT,
        cmd_sn: 1,
        exp_stat_sn: 0,
        chap,
        limits: Limits::default(),
    }
}

/// A sent request: header and its key=value pairs.
struct Req {
    h: LoginRequest,
    kv: Vec<(String, String)>,
}

impl Req {
    fn get(&self, k: &str) -> Option<&str> {
        self.kv
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

fn send(l: &mut Login<'_>) -> Req {
    let mut out = vec![0u8; 9000];
    let n = l
        .poll_transmit(&mut out)
        .unwrap()
        .expect("a request to send");
    assert_eq!(n % 4, 0);
    let b: [u8; 48] = out[..48].try_into().unwrap();
    let d = Bhs::decode(&b).unwrap();
    let Pdu::LoginRequest(h) = d.pdu else {
        panic!("not a login request")
    };
    assert_eq!(
        48 + d.data_segment_len as usize + pad_len(d.data_segment_len as usize),
        n
    );
    let data = &out[48..48 + d.data_segment_len as usize];
    let kv = text::pairs(data)
        .map(|p| {
            let (k, v) = p.unwrap();
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect();
    // A second poll while awaiting the answer gives nothing.
    assert_eq!(l.poll_transmit(&mut out).unwrap(), None);
    Req { h, kv }
}

struct Rsp {
    t: bool,
    c: bool,
    csg: Stage,
    nsg: Stage,
    tsih: u16,
    class: u8,
    detail: u8,
    text: Vec<u8>,
}

fn rsp(t: bool, csg: Stage, nsg: Stage, kv: &[(&str, &str)]) -> Rsp {
    let mut text = Vec::new();
    for (k, v) in kv {
        text.extend_from_slice(k.as_bytes());
        text.push(b'=');
        text.extend_from_slice(v.as_bytes());
        text.push(0);
    }
    Rsp {
        t,
        c: false,
        csg,
        nsg,
        tsih: if nsg == Stage::FullFeature && t { 9 } else { 0 },
        class: 0,
        detail: 0,
        text,
    }
}

fn deliver(l: &mut Login<'_>, r: &Rsp, stat_sn: u32) -> Result<LoginEvent, LoginError> {
    let p = LoginResponse {
        transit: r.t,
        continue_: r.c,
        csg: r.csg,
        nsg: r.nsg,
        version_max: 0,
        version_active: 0,
        isid: ISID,
        tsih: r.tsih,
        itt: ITT,
        stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 32,
        status_class: r.class,
        status_detail: r.detail,
    };
    let mut b = [0u8; 48];
    Bhs {
        total_ahs_words: 0,
        data_segment_len: r.text.len() as u32,
        pdu: Pdu::LoginResponse(p),
    }
    .encode(&mut b)
    .unwrap();
    l.handle_pdu(&b, &r.text)
}

fn op_answers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxRecvDataSegmentLength", "65536"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("TargetPortalGroupTag", "1"),
    ]
}

/// Finish an operational stage with the given answers; returns the completion.
fn operational(l: &mut Login<'_>, stat_sn: u32) -> LoginComplete {
    let r = send(l);
    assert_eq!(
        (r.h.csg, r.h.nsg, r.h.transit),
        (Stage::Operational, Stage::FullFeature, true)
    );
    assert_eq!(r.get("MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(r.get("HeaderDigest"), Some("None,CRC32C"));
    assert_eq!(r.h.exp_stat_sn, stat_sn);
    match deliver(
        l,
        &rsp(true, Stage::Operational, Stage::FullFeature, &op_answers()),
        stat_sn,
    )
    .unwrap()
    {
        LoginEvent::Complete(c) => c,
        e => panic!("{e:?}"),
    }
}

#[test]
fn no_auth() {
    let cfg = config(None);
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let r = send(&mut l);
    assert_eq!(
        (r.h.csg, r.h.nsg, r.h.transit),
        (Stage::Security, Stage::Operational, true)
    );
    assert_eq!(r.get("AuthMethod"), Some("None"));
    assert_eq!(r.get("SessionType"), Some("Normal"));
    assert_eq!(r.get("TargetName"), Some("iqn.2024-01.org.example:tgt"));
    assert_eq!(r.get("InitiatorName"), Some("iqn.2024-01.org.example:init"));
    assert_eq!((r.h.isid, r.h.tsih, r.h.itt, r.h.cmd_sn), (ISID, 0, ITT, 1));
    let ev = deliver(
        &mut l,
        &rsp(
            true,
            Stage::Security,
            Stage::Operational,
            &[("AuthMethod", "None")],
        ),
        100,
    )
    .unwrap();
    assert_eq!(ev, LoginEvent::Continue);
    let c = operational(&mut l, 101);
    assert_eq!(c.tsih, 9);
    assert_eq!(c.stat_sn, 101);
    assert_eq!((c.exp_cmd_sn, c.max_cmd_sn), (1, 32));
    let p = c.params;
    assert_eq!(p.conn.max_xmit_data_segment_length, 65536);
    assert_eq!(p.conn.max_recv_data_segment_length, 262144);
    assert!(p.session.initial_r2t && p.session.immediate_data);
    assert_eq!(
        (p.session.max_burst_length, p.session.first_burst_length),
        (262144, 65536)
    );
    assert_eq!(p.session.default_time2retain, 0);
    assert_eq!(p.session.target_portal_group_tag, Some(1));
    assert_eq!(l.exp_stat_sn(), 102);
    assert!(l.is_done());
}

#[test]
fn target_not_ready_to_transit_then_target_proposal() {
    let cfg = config(None);
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    // The target stays in security once: we ask again with an empty T=1 request.
    deliver(
        &mut l,
        &rsp(false, Stage::Security, Stage::Security, &[]),
        0,
    )
    .unwrap();
    let r = send(&mut l);
    assert!(r.h.transit && r.kv.is_empty());
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        1,
    )
    .unwrap();
    send(&mut l);
    // The target answers and proposes keys itself (including an unknown and an obsolete one),
    // without transiting: we must answer them next.
    let mut a = op_answers();
    a.retain(|(k, _)| *k != "MaxOutstandingR2T");
    a.push(("X-com.example.Foo", "bar"));
    a.push(("OFMarker", "Yes"));
    deliver(
        &mut l,
        &rsp(false, Stage::Operational, Stage::Operational, &a),
        2,
    )
    .unwrap();
    let r = send(&mut l);
    assert_eq!(r.get("X-com.example.Foo"), Some("NotUnderstood"));
    assert_eq!(r.get("OFMarker"), Some("No"));
    assert!(r.h.transit);
    let ev = deliver(
        &mut l,
        &rsp(true, Stage::Operational, Stage::FullFeature, &[]),
        3,
    )
    .unwrap();
    assert!(matches!(ev, LoginEvent::Complete(_)));
}

fn chap_cfg(mutual: Option<MutualChap<'static>>) -> ChapConfig<'static> {
    ChapConfig {
        user: "alice",
        secret: b"alice-secret-12",
        algorithms: &[],
        mutual,
    }
}

fn md5_resp(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut out = [0u8; MAX_DIGEST_LEN];
    let n = chap::response(&SwHash, ChapAlgorithm::Md5, id, secret, challenge, &mut out).unwrap();
    out[..n].to_vec()
}

fn hexs(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

const TGT_CHALLENGE: [u8; 16] = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 10, 11, 12, 13, 14, 15];
const OUR_CHALLENGE: [u8; 16] = [0x55; 16];

/// Run the security stage up to our CHAP_N/CHAP_R; returns that request.
fn chap_until_response(l: &mut Login<'_>, challenge: &[u8]) -> Result<Req, LoginError> {
    let r = send(l);
    assert!(!r.h.transit);
    deliver(
        l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "CHAP")],
        ),
        0,
    )?;
    let r = send(l);
    assert_eq!(r.get("CHAP_A"), Some("5"));
    let c = hexs(challenge);
    deliver(
        l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("CHAP_A", "5"), ("CHAP_I", "42"), ("CHAP_C", &c)],
        ),
        1,
    )?;
    let r = send(l);
    Ok(r)
}

#[test]
fn one_way_chap() {
    let cfg = config(Some(chap_cfg(None)));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let r = send(&mut l);
    assert_eq!(r.get("AuthMethod"), Some("CHAP,None"));
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "CHAP")],
        ),
        0,
    )
    .unwrap();
    let r = send(&mut l);
    assert_eq!(r.get("CHAP_A"), Some("5"));
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[
                ("CHAP_A", "5"),
                ("CHAP_I", "42"),
                ("CHAP_C", &hexs(&TGT_CHALLENGE)),
            ],
        ),
        1,
    )
    .unwrap();
    let r = send(&mut l);
    assert!(r.h.transit);
    assert_eq!(r.get("CHAP_N"), Some("alice"));
    assert_eq!(
        r.get("CHAP_R"),
        Some(hexs(&md5_resp(42, b"alice-secret-12", &TGT_CHALLENGE)).as_str())
    );
    assert_eq!(r.get("CHAP_C"), None);
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        2,
    )
    .unwrap();
    operational(&mut l, 3);
}

#[test]
fn one_way_chap_target_chooses_none() {
    let cfg = config(Some(chap_cfg(None)));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "None")],
        ),
        0,
    )
    .unwrap();
    let r = send(&mut l);
    assert!(r.h.transit && r.kv.is_empty());
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        1,
    )
    .unwrap();
    operational(&mut l, 2);
}

fn mutual() -> MutualChap<'static> {
    MutualChap {
        target_user: "tgt",
        secret: b"target-secret-1",
        challenge: &OUR_CHALLENGE,
        identifier: 17,
    }
}

#[test]
fn mutual_chap() {
    let cfg = config(Some(chap_cfg(Some(mutual()))));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let r = chap_until_response(&mut l, &TGT_CHALLENGE).unwrap();
    assert_eq!(r.get("CHAP_I"), Some("17"));
    assert_eq!(r.get("CHAP_C"), Some(hexs(&OUR_CHALLENGE).as_str()));
    let good = hexs(&md5_resp(17, b"target-secret-1", &OUR_CHALLENGE));
    deliver(
        &mut l,
        &rsp(
            true,
            Stage::Security,
            Stage::Operational,
            &[("CHAP_N", "tgt"), ("CHAP_R", &good)],
        ),
        2,
    )
    .unwrap();
    operational(&mut l, 3);
}

#[test]
fn mutual_chap_wrong_response_or_name() {
    for (name, resp) in [
        (
            "tgt",
            hexs(&md5_resp(17, b"wrong-secret-00", &OUR_CHALLENGE)),
        ),
        (
            "tgt",
            hexs(&md5_resp(18, b"target-secret-1", &OUR_CHALLENGE)),
        ),
        (
            "other",
            hexs(&md5_resp(17, b"target-secret-1", &OUR_CHALLENGE)),
        ),
        ("tgt", "0x00".to_string()),
    ] {
        let cfg = config(Some(chap_cfg(Some(mutual()))));
        let mut buf = [0u8; 8192];
        let mut l = Login::new(&cfg, &SwHash, &mut buf);
        chap_until_response(&mut l, &TGT_CHALLENGE).unwrap();
        let e = deliver(
            &mut l,
            &rsp(
                true,
                Stage::Security,
                Stage::Operational,
                &[("CHAP_N", name), ("CHAP_R", &resp)],
            ),
            2,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                LoginError::Chap(ChapError::BadResponse | ChapError::WrongName)
            ),
            "{e:?}"
        );
        assert!(l.is_done());
        let mut out = [0u8; 100];
        assert_eq!(l.poll_transmit(&mut out), Ok(None));
    }
}

#[test]
fn reflected_challenge_refused() {
    let cfg = config(Some(chap_cfg(Some(mutual()))));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let e = chap_until_response(&mut l, &OUR_CHALLENGE).err().unwrap();
    assert_eq!(e, LoginError::Chap(ChapError::ReflectedChallenge));
}

#[test]
fn mutual_required_but_target_skips() {
    // The target picks no authentication.
    let cfg = config(Some(chap_cfg(Some(mutual()))));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let r = send(&mut l);
    assert_eq!(r.get("AuthMethod"), Some("CHAP"), "mutual offers CHAP only");
    let e = deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "None")],
        ),
        0,
    )
    .unwrap_err();
    assert_eq!(e, LoginError::MutualAuthSkipped);
    // The target checks us but does not prove itself.
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    chap_until_response(&mut l, &TGT_CHALLENGE).unwrap();
    let e = deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        2,
    )
    .unwrap_err();
    assert_eq!(e, LoginError::MutualAuthSkipped);
}

#[test]
fn chap_not_offered_algorithm_and_bad_challenge() {
    let cfg = config(Some(chap_cfg(None)));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "CHAP")],
        ),
        0,
    )
    .unwrap();
    send(&mut l);
    let e = deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("CHAP_A", "7"), ("CHAP_I", "1"), ("CHAP_C", "0x01")],
        ),
        1,
    )
    .unwrap_err();
    assert_eq!(e, LoginError::Chap(ChapError::AlgorithmNotOffered));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "CHAP")],
        ),
        0,
    )
    .unwrap();
    send(&mut l);
    let e = deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("CHAP_A", "5"), ("CHAP_I", "300"), ("CHAP_C", "0x01")],
        ),
        1,
    )
    .unwrap_err();
    assert_eq!(e, LoginError::Chap(ChapError::BadIdentifier));
}

#[test]
fn sha256_offer() {
    let algs: &'static [ChapAlgorithm] = &[
        ChapAlgorithm::Sha256,
        ChapAlgorithm::Sha1,
        ChapAlgorithm::Md5,
    ];
    let cfg = config(Some(ChapConfig {
        algorithms: algs,
        ..chap_cfg(None)
    }));
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("AuthMethod", "CHAP")],
        ),
        0,
    )
    .unwrap();
    let r = send(&mut l);
    assert_eq!(r.get("CHAP_A"), Some("7,6,5"));
    deliver(
        &mut l,
        &rsp(
            false,
            Stage::Security,
            Stage::Security,
            &[("CHAP_A", "7"), ("CHAP_I", "3"), ("CHAP_C", "0bAQID")],
        ),
        1,
    )
    .unwrap();
    let r = send(&mut l);
    assert_eq!(r.get("CHAP_R").unwrap().len(), 2 + 64);
}

#[test]
fn redirect_and_status_errors() {
    let cfg = config(None);
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    let mut r = rsp(
        false,
        Stage::Security,
        Stage::Security,
        &[("TargetAddress", "[fe80::1]:3261,2")],
    );
    r.class = 1;
    r.detail = 2;
    assert_eq!(
        deliver(&mut l, &r, 0),
        Err(LoginError::Redirect { permanent: true })
    );
    assert_eq!(l.redirect_address(), Some(&b"[fe80::1]:3261,2"[..]));
    for (class, detail, want) in [
        (1, 1, LoginError::Redirect { permanent: false }),
        (
            2,
            1,
            LoginError::Initiator(InitiatorError::AuthenticationFailure),
        ),
        (
            2,
            2,
            LoginError::Initiator(InitiatorError::AuthorizationFailure),
        ),
        (2, 3, LoginError::Initiator(InitiatorError::NotFound)),
        (2, 4, LoginError::Initiator(InitiatorError::TargetRemoved)),
        (
            2,
            0x0a,
            LoginError::Initiator(InitiatorError::SessionDoesNotExist),
        ),
        (
            2,
            0x99,
            LoginError::Initiator(InitiatorError::Unknown(0x99)),
        ),
        (3, 1, LoginError::Target(TargetError::ServiceUnavailable)),
        (3, 2, LoginError::Target(TargetError::OutOfResources)),
        (
            7,
            7,
            LoginError::UnknownStatus {
                class: 7,
                detail: 7,
            },
        ),
    ] {
        let mut buf = [0u8; 8192];
        let mut l = Login::new(&cfg, &SwHash, &mut buf);
        send(&mut l);
        let mut r = rsp(false, Stage::Security, Stage::Security, &[]);
        r.class = class;
        r.detail = detail;
        assert_eq!(deliver(&mut l, &r, 0), Err(want));
    }
}

#[test]
fn multi_pdu_response() {
    let cfg = config(None);
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        0,
    )
    .unwrap();
    send(&mut l);
    let full = rsp(true, Stage::Operational, Stage::FullFeature, &op_answers());
    // Split in the middle of a key=value: C=1, T=0 on the first part.
    let cut = 37;
    let mut p1 = rsp(false, Stage::Operational, Stage::Operational, &[]);
    p1.c = true;
    p1.text = full.text[..cut].to_vec();
    assert_eq!(deliver(&mut l, &p1, 1).unwrap(), LoginEvent::Continue);
    let r = send(&mut l);
    assert!(
        r.h.transit && r.kv.is_empty(),
        "an empty request, T kept, fetches the rest"
    );
    let mut p2 = full;
    p2.text = p2.text[cut..].to_vec();
    let LoginEvent::Complete(c) = deliver(&mut l, &p2, 2).unwrap() else {
        panic!()
    };
    assert_eq!(c.params.conn.max_xmit_data_segment_length, 65536);
    assert_eq!(c.params.session.target_portal_group_tag, Some(1));
}

#[test]
fn response_larger_than_buffer_is_an_error() {
    let cfg = config(None);
    let mut buf = [0u8; 64];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    let mut r = rsp(
        false,
        Stage::Security,
        Stage::Security,
        &[("TargetAlias", &"x".repeat(100))],
    );
    r.c = true;
    r.t = false;
    assert!(matches!(
        deliver(&mut l, &r, 0),
        Err(LoginError::Text(text::TextError::Overflow))
    ));
}

#[test]
fn negotiation_violations_fail_login() {
    for (k, v) in [
        ("MaxBurstLength", "16777215"), // above our offer? no: our offer is 16776192
        ("MaxRecvDataSegmentLength", "100"),
        ("ImmediateData", "Maybe"),
        ("HeaderDigest", "MD5"),
        ("ErrorRecoveryLevel", "2"),
        ("InitiatorName", "iqn.x"),
    ] {
        let cfg = config(None);
        let mut buf = [0u8; 8192];
        let mut l = Login::new(&cfg, &SwHash, &mut buf);
        send(&mut l);
        deliver(
            &mut l,
            &rsp(true, Stage::Security, Stage::Operational, &[]),
            0,
        )
        .unwrap();
        send(&mut l);
        let e = deliver(
            &mut l,
            &rsp(true, Stage::Operational, Stage::FullFeature, &[(k, v)]),
            1,
        )
        .unwrap_err();
        assert!(matches!(e, LoginError::Text(_)), "{k}={v}: {e:?}");
    }
}

#[test]
fn protocol_violations() {
    let cfg = config(Some(chap_cfg(None)));
    // Target transits although we did not ask.
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    let e = deliver(
        &mut l,
        &rsp(
            true,
            Stage::Security,
            Stage::Operational,
            &[("AuthMethod", "CHAP")],
        ),
        0,
    )
    .unwrap_err();
    assert_eq!(e, LoginError::Protocol(ProtocolError::BadTransit));
    // Wrong stage.
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    let e = deliver(
        &mut l,
        &rsp(false, Stage::Operational, Stage::Operational, &[]),
        0,
    )
    .unwrap_err();
    assert_eq!(e, LoginError::Protocol(ProtocolError::WrongStage));
    // Not a login response; a response with no request outstanding.
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let mut b = [0u8; 48];
    b[0] = opcode::NOP_IN;
    assert_eq!(
        l.handle_pdu(&b, &[]),
        Err(LoginError::Protocol(ProtocolError::NotExpected))
    );
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    assert_eq!(
        l.handle_pdu(&b, &[]),
        Err(LoginError::Protocol(ProtocolError::UnexpectedOpcode(0x20)))
    );
    // A leading login must end with a TSIH.
    let cfg = config(None);
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    send(&mut l);
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        0,
    )
    .unwrap();
    send(&mut l);
    let mut r = rsp(true, Stage::Operational, Stage::FullFeature, &[]);
    r.tsih = 0;
    assert_eq!(
        deliver(&mut l, &r, 1),
        Err(LoginError::Protocol(ProtocolError::BadTsih))
    );
}

#[test]
fn discovery_and_added_connection() {
    let mut cfg = config(None);
    cfg.session_type = SessionType::Discovery;
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let r = send(&mut l);
    assert_eq!(r.get("SessionType"), Some("Discovery"));
    assert_eq!(r.get("TargetName"), None);
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        0,
    )
    .unwrap();
    let r = send(&mut l);
    let keys: Vec<&str> = r.kv.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength"]
    );
    // A second connection of session TSIH 9: connection keys only, TSIH carried.
    let mut cfg = config(None);
    cfg.tsih = 9;
    cfg.cid = 1;
    let mut buf = [0u8; 8192];
    let mut l = Login::new(&cfg, &SwHash, &mut buf);
    let r = send(&mut l);
    assert_eq!((r.h.tsih, r.h.cid), (9, 1));
    // SessionType is leading-only; the names go on every connection's first request.
    assert_eq!(r.get("SessionType"), None);
    assert_eq!(r.get("InitiatorName"), Some(cfg.initiator_name));
    assert_eq!(r.get("TargetName"), Some(cfg.target_name));
    deliver(
        &mut l,
        &rsp(true, Stage::Security, Stage::Operational, &[]),
        0,
    )
    .unwrap();
    let r = send(&mut l);
    assert_eq!(r.kv.len(), 3);
    let LoginEvent::Complete(c) = deliver(
        &mut l,
        &rsp(
            true,
            Stage::Operational,
            Stage::FullFeature,
            &[("MaxRecvDataSegmentLength", "4096")],
        ),
        1,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        (c.tsih, c.params.conn.max_xmit_data_segment_length),
        (9, 4096)
    );
}
