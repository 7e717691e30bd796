//! An iSCSI session over one TCP connection: login (security and operational stages, one-way
//! or mutual CHAP), SendTargets, SCSI commands, logout.
//!
//! One command is outstanding at a time: this driver is for discovery, probing and tests, not
//! for throughput (that is the kernel module's job).

use super::conn::{Connection, RawPdu, Timeouts, DEFAULT_MRDSL};
use super::digest::{chap_response, random, ChapAlg};
use super::error::{NetError, Result};
use super::portal::Portal;
use super::text::{decode_binary, encode_hex, Keys};
use iscsi_proto::pdu::{
    self, Bhs, DataOut, LoginRequest, LogoutRequest, Lun, NopOut, Pdu, ScsiCommand, Stage, TextRequest,
    BHS_LEN, RESERVED_TAG,
};
use zeroize::Zeroizing;

/// A CHAP name and secret. The secret is zeroed on drop and never printed (`Debug` hides it).
#[derive(Clone)]
pub struct ChapCredentials {
    /// CHAP_N.
    pub user: String,
    /// The secret.
    pub secret: Zeroizing<Vec<u8>>,
}

impl ChapCredentials {
    /// New credentials.
    pub fn new(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> ChapCredentials {
        ChapCredentials { user: user.into(), secret: Zeroizing::new(secret.into()) }
    }
}

impl std::fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredentials").field("user", &self.user).field("secret", &"<hidden>").finish()
    }
}

/// What to log in to and how.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// Our iSCSI name.
    pub initiator_name: String,
    /// The target to log in to; `None` for a discovery session.
    pub target_name: Option<String>,
    /// CHAP credentials we answer the target's challenge with (one-way CHAP).
    pub chap: Option<ChapCredentials>,
    /// The credentials the target must answer our challenge with (mutual CHAP; needs `chap`).
    pub mutual: Option<ChapCredentials>,
    /// CHAP algorithms to offer, most preferred first (default MD5 only: see [`ChapAlg`]).
    pub chap_algorithms: Vec<ChapAlg>,
    /// Ask for HeaderDigest=CRC32C (required, not merely offered).
    pub header_digest: bool,
    /// Ask for DataDigest=CRC32C.
    pub data_digest: bool,
    /// Our MaxRecvDataSegmentLength (what we accept per PDU).
    pub max_recv_data_segment_length: u32,
    /// ImmediateData we offer.
    pub immediate_data: bool,
    /// InitialR2T we offer.
    pub initial_r2t: bool,
    /// FirstBurstLength we offer.
    pub first_burst_length: u32,
    /// MaxBurstLength we offer.
    pub max_burst_length: u32,
    /// Socket timeouts.
    pub timeouts: Timeouts,
}

impl LoginOptions {
    /// Defaults for `initiator_name`: no target (discovery), no CHAP, no digests.
    pub fn new(initiator_name: impl Into<String>) -> LoginOptions {
        LoginOptions {
            initiator_name: initiator_name.into(),
            target_name: None,
            chap: None,
            mutual: None,
            chap_algorithms: vec![ChapAlg::Md5],
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: 262_144,
            immediate_data: true,
            initial_r2t: false,
            first_burst_length: 65_536,
            max_burst_length: 262_144,
            timeouts: Timeouts::default(),
        }
    }
}

/// The operational parameters in force after login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    /// HeaderDigest=CRC32C.
    pub header_digest: bool,
    /// DataDigest=CRC32C.
    pub data_digest: bool,
    /// What we accept per PDU.
    pub max_recv_data_segment_length: u32,
    /// What the target accepts per PDU (its MaxRecvDataSegmentLength).
    pub max_xmit_data_segment_length: u32,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// FirstBurstLength.
    pub first_burst_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u32,
    /// The target's portal group tag, if it said.
    pub target_portal_group_tag: Option<u16>,
    /// TargetAlias, if the target sent one.
    pub target_alias: Option<String>,
    /// The target's session handle.
    pub tsih: u16,
    /// Every key=value the target sent during login, in order.
    pub target_keys: Vec<(String, String)>,
}

impl Negotiated {
    fn defaults(max_recv: u32) -> Negotiated {
        Negotiated {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: max_recv,
            max_xmit_data_segment_length: DEFAULT_MRDSL,
            initial_r2t: true,
            immediate_data: true,
            first_burst_length: 65_536,
            max_burst_length: 262_144,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            target_portal_group_tag: None,
            target_alias: None,
            tsih: 0,
            target_keys: Vec::new(),
        }
    }
}

/// A target found by SendTargets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// Its TargetAddress values (`HOST:PORT,TPGT` as sent), in order.
    pub addresses: Vec<String>,
}

/// Direction and buffer of a SCSI command's data.
#[derive(Debug)]
pub enum DataDir<'a> {
    /// No data.
    None,
    /// Read up to `.len()` bytes into the buffer.
    Read(&'a mut [u8]),
    /// Write the buffer.
    Write(&'a [u8]),
}

/// The outcome of a SCSI command that reached the target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiOutcome {
    /// SCSI status (0 GOOD, 2 CHECK CONDITION, ...).
    pub status: u8,
    /// Bytes of Data-In received (reads).
    pub data_len: usize,
    /// Residual underflow count (positive) or overflow (negative).
    pub residual: i64,
    /// Sense data, if the target sent any.
    pub sense: Vec<u8>,
}

/// RFC 7143 §11.13.5 text for a login status.
pub fn login_status_text(class: u8, detail: u8) -> &'static str {
    match (class, detail) {
        (1, 1) => "target moved temporarily",
        (1, 2) => "target moved permanently",
        (2, 0) => "initiator error",
        (2, 1) => "authentication failure",
        (2, 2) => "authorization failure",
        (2, 3) => "target not found",
        (2, 4) => "target removed",
        (2, 5) => "unsupported version",
        (2, 6) => "too many connections",
        (2, 7) => "missing parameter",
        (2, 8) => "can't include in session",
        (2, 9) => "session type not supported",
        (2, 10) => "session does not exist",
        (2, 11) => "invalid during login",
        (3, 0) => "target error",
        (3, 1) => "service unavailable",
        (3, 2) => "out of resources",
        _ => "unknown status",
    }
}

/// Counters of what crossed the wire, for tests and `probe` to check the mechanism used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Stats {
    /// PDUs sent.
    pub pdus_sent: u64,
    /// PDUs received.
    pub pdus_received: u64,
    /// Text Responses that announced a continuation (C bit or F clear).
    pub text_continuations: u64,
    /// Data-In PDUs received.
    pub data_in_pdus: u64,
    /// Bytes sent as immediate data in SCSI Command PDUs.
    pub immediate_bytes: u64,
    /// Unsolicited Data-Out PDUs sent (TTT 0xffffffff).
    pub unsolicited_data_out_pdus: u64,
    /// Data-Out PDUs sent in answer to R2Ts.
    pub solicited_data_out_pdus: u64,
    /// R2Ts received.
    pub r2ts: u64,
}

/// A logged-in session.
#[derive(Debug)]
pub struct Session {
    stats: Stats,
    conn: Connection,
    params: Negotiated,
    isid: [u8; 6],
    cmd_sn: u32,
    exp_stat_sn: u32,
    max_cmd_sn: u32,
    next_itt: u32,
    discovery: bool,
}

fn proto_err(what: &str, e: pdu::PduError) -> NetError {
    NetError::Protocol(format!("{what}: {e:?}"))
}

fn yes(v: &str) -> bool {
    v.eq_ignore_ascii_case("Yes")
}

fn yn(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Serial number comparison (RFC 1982, 32 bits): a < b.
fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

impl Session {
    /// Connect to `portal` and log in as `opts` says.
    pub fn login(portal: &Portal, opts: &LoginOptions) -> Result<Session> {
        if opts.mutual.is_some() && opts.chap.is_none() {
            return Err(NetError::Auth("mutual CHAP needs the initiator's CHAP credentials too".into()));
        }
        let conn = Connection::connect(portal, opts.timeouts)?;
        let mut isid = [0x80u8, 0, 0, 0, 0, 0];
        random(&mut isid[1..4]).map_err(|e| NetError::io("random ISID", e))?;
        let mut s = Session {
            stats: Stats::default(),
            conn,
            params: Negotiated::defaults(opts.max_recv_data_segment_length),
            isid,
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_cmd_sn: 1,
            next_itt: 1,
            discovery: opts.target_name.is_none(),
        };
        s.do_login(opts)?;
        Ok(s)
    }

    /// The parameters in force.
    pub fn negotiated(&self) -> &Negotiated {
        &self.params
    }

    /// What crossed the wire so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The connection (for its addresses).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn itt(&mut self) -> u32 {
        let t = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1);
        if self.next_itt == RESERVED_TAG {
            self.next_itt = 1;
        }
        t
    }

    fn send_pdu(&mut self, p: Pdu, ahs: &[u8], data: &[u8]) -> Result<()> {
        let mut bhs = [0u8; BHS_LEN];
        let words = pdu::ahs_words(ahs.len()).map_err(|e| proto_err("encode AHS", e))?;
        let dsl = u32::try_from(data.len()).map_err(|_| NetError::Protocol("data too long".into()))?;
        Bhs { total_ahs_words: words, data_segment_len: dsl, pdu: p }
            .encode(&mut bhs)
            .map_err(|e| proto_err("encode PDU", e))?;
        self.conn.send(&bhs, ahs, data)?;
        self.stats.pdus_sent += 1;
        Ok(())
    }

    fn recv_pdu(&mut self) -> Result<(Pdu, RawPdu)> {
        let raw = self.conn.recv()?;
        self.stats.pdus_received += 1;
        let bhs = Bhs::decode(&raw.bhs).map_err(|e| proto_err("decode PDU from target", e))?;
        Ok((bhs.pdu, raw))
    }

    fn note_stat_sn(&mut self, stat_sn: u32) {
        // Only advance: a StatSN of an older status is not a reason to go back.
        let next = stat_sn.wrapping_add(1);
        if sn_lt(self.exp_stat_sn, next) || self.exp_stat_sn == 0 {
            self.exp_stat_sn = next;
        }
    }

    fn note_window(&mut self, exp_cmd_sn: u32, max_cmd_sn: u32) {
        // RFC 7143 §4.2.2.1: ignore a window where MaxCmdSN < ExpCmdSN - 1.
        if sn_lt(max_cmd_sn, exp_cmd_sn.wrapping_sub(1)) {
            return;
        }
        if sn_lt(self.max_cmd_sn, max_cmd_sn) {
            self.max_cmd_sn = max_cmd_sn;
        }
    }

    // ---- login -----------------------------------------------------------------------------

    fn do_login(&mut self, opts: &LoginOptions) -> Result<()> {
        let itt = self.itt();
        let mut first = Keys::new();
        first.push("InitiatorName", opts.initiator_name.clone());
        match &opts.target_name {
            Some(t) => {
                first.push("SessionType", "Normal");
                first.push("TargetName", t.clone());
            }
            None => first.push("SessionType", "Discovery"),
        }
        let mut stage = Stage::Security;
        let mut transit_to_op;
        if opts.chap.is_some() {
            first.push("AuthMethod", "CHAP");
            let rsp = self.login_exchange(itt, Stage::Security, Stage::Operational, false, &first)?;
            if rsp.1.get("AuthMethod") != Some("CHAP") {
                return Err(NetError::Auth(format!(
                    "the target did not accept CHAP (it answered AuthMethod={})",
                    rsp.1.get("AuthMethod").unwrap_or("<none>")
                )));
            }
            self.chap_exchange(itt, opts)?;
            transit_to_op = true;
        } else {
            first.push("AuthMethod", "None");
            let (r, keys) = self.login_exchange(itt, Stage::Security, Stage::Operational, true, &first)?;
            match keys.get("AuthMethod") {
                Some("None") | None => {}
                Some(m) => {
                    return Err(NetError::Auth(format!(
                        "the target requires authentication (AuthMethod={m}); give CHAP credentials"
                    )))
                }
            }
            transit_to_op = r.transit;
            // A target may skip the operational stage and go straight to full feature.
            if r.transit && r.nsg == Stage::FullFeature {
                return self.finish_login(opts);
            }
        }
        // Security stage done (or the target wants more security-stage PDUs without keys).
        let mut guard = 0;
        while !transit_to_op {
            guard += 1;
            if guard > 8 {
                return Err(NetError::Protocol("target never left the security stage".into()));
            }
            let (r, _) = self.login_exchange(itt, Stage::Security, Stage::Operational, true, &Keys::new())?;
            transit_to_op = r.transit;
        }
        stage = match stage {
            Stage::Security => Stage::Operational,
            s => s,
        };
        // Operational stage.
        let mut op = Keys::new();
        let dig = |on: bool| if on { "CRC32C" } else { "None" };
        op.push("HeaderDigest", dig(opts.header_digest));
        op.push("DataDigest", dig(opts.data_digest));
        op.push("MaxRecvDataSegmentLength", opts.max_recv_data_segment_length.to_string());
        if !self.discovery {
            op.push("InitialR2T", yn(opts.initial_r2t));
            op.push("ImmediateData", yn(opts.immediate_data));
            op.push("MaxBurstLength", opts.max_burst_length.to_string());
            op.push("FirstBurstLength", opts.first_burst_length.to_string());
            op.push("MaxConnections", "1");
            op.push("MaxOutstandingR2T", "1");
            op.push("DataPDUInOrder", "Yes");
            op.push("DataSequenceInOrder", "Yes");
        }
        op.push("DefaultTime2Wait", "2");
        op.push("DefaultTime2Retain", "0");
        op.push("ErrorRecoveryLevel", "0");
        let mut sent = op;
        for _ in 0..8 {
            let (r, keys) = self.login_exchange(itt, stage, Stage::FullFeature, true, &sent)?;
            self.apply_operational(&keys, opts)?;
            if r.transit && r.nsg == Stage::FullFeature {
                return self.finish_login(opts);
            }
            // The target wants another round: answer anything it proposed that we did not.
            sent = Keys::new();
            for (k, v) in &keys.0 {
                if let Some(ans) = answer_unsolicited(k, v) {
                    sent.push(k, ans);
                }
            }
        }
        Err(NetError::Protocol("operational negotiation did not converge".into()))
    }

    fn finish_login(&mut self, _opts: &LoginOptions) -> Result<()> {
        let (h, d) = (self.params.header_digest, self.params.data_digest);
        self.conn.set_digests(h, d);
        self.conn.set_limits(self.params.max_recv_data_segment_length, self.params.max_xmit_data_segment_length);
        Ok(())
    }

    /// Send one Login Request and read one (possibly continued) Login Response.
    fn login_exchange(
        &mut self,
        itt: u32,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        keys: &Keys,
    ) -> Result<(pdu::LoginResponse, Keys)> {
        let data = keys.encode();
        let req = LoginRequest {
            transit,
            continue_: false,
            csg,
            nsg: if transit { nsg } else { Stage::Security },
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: 0,
            itt,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        // Login text is bounded by 8192 per PDU (our keys are far smaller).
        self.send_pdu(Pdu::LoginRequest(req), &[], &data)?;
        let mut all = Vec::new();
        loop {
            let (p, raw) = self.recv_pdu()?;
            let r = match p {
                Pdu::LoginResponse(r) => r,
                Pdu::Reject(rj) => {
                    return Err(NetError::Protocol(format!("target rejected the login PDU (reason {:#04x})", rj.reason)))
                }
                other => return Err(NetError::Protocol(format!("expected a Login Response, got {other:?}"))),
            };
            if r.status_class != 0 {
                return Err(NetError::LoginRejected {
                    class: r.status_class,
                    detail: r.status_detail,
                    reason: login_status_text(r.status_class, r.status_detail),
                });
            }
            if r.itt != itt {
                return Err(NetError::Protocol("login response for another task tag".into()));
            }
            self.note_stat_sn(r.stat_sn);
            self.note_window(r.exp_cmd_sn, r.max_cmd_sn);
            self.cmd_sn = r.exp_cmd_sn;
            self.params.tsih = r.tsih;
            if all.len() + raw.data.len() > 65_536 {
                return Err(NetError::Protocol("login response text longer than 64 KiB".into()));
            }
            all.extend_from_slice(&raw.data);
            if r.continue_ {
                // Ask for the rest with an empty request (RFC 7143 §6.2).
                let mut more = req;
                more.transit = false;
                more.nsg = Stage::Security;
                more.exp_stat_sn = self.exp_stat_sn;
                more.cmd_sn = self.cmd_sn;
                self.send_pdu(Pdu::LoginRequest(more), &[], &[])?;
                continue;
            }
            let keys = Keys::decode(&all).map_err(NetError::Protocol)?;
            for (k, v) in &keys.0 {
                self.params.target_keys.push((k.clone(), v.clone()));
            }
            if r.transit && !transit {
                return Err(NetError::Protocol("target set Transit where we did not".into()));
            }
            return Ok((r, keys));
        }
    }

    fn chap_exchange(&mut self, itt: u32, opts: &LoginOptions) -> Result<()> {
        let creds = opts.chap.as_ref().ok_or_else(|| NetError::Auth("no CHAP credentials".into()))?;
        let algs: Vec<String> = opts.chap_algorithms.iter().map(|a| a.code().to_string()).collect();
        let mut k = Keys::new();
        k.push("CHAP_A", algs.join(","));
        let (_, keys) = self.login_exchange(itt, Stage::Security, Stage::Operational, false, &k)?;
        let alg = keys
            .get("CHAP_A")
            .and_then(|v| v.parse::<u32>().ok())
            .and_then(ChapAlg::from_code)
            .filter(|a| opts.chap_algorithms.contains(a))
            .ok_or_else(|| NetError::Auth("the target chose no CHAP algorithm we offered".into()))?;
        let id = keys
            .get("CHAP_I")
            .and_then(|v| v.parse::<u8>().ok())
            .ok_or_else(|| NetError::Auth("the target sent no valid CHAP_I".into()))?;
        let challenge = keys
            .get("CHAP_C")
            .and_then(decode_binary)
            .ok_or_else(|| NetError::Auth("the target sent no valid CHAP_C".into()))?;
        if challenge.len() > 1024 {
            return Err(NetError::Auth("CHAP challenge longer than 1024 bytes".into()));
        }
        let mut resp = [0u8; 32];
        let n = chap_response(alg, id, &creds.secret, &challenge, &mut resp)
            .ok_or_else(|| NetError::Auth("CHAP digest".into()))?;
        let mut k = Keys::new();
        k.push("CHAP_N", creds.user.clone());
        k.push("CHAP_R", encode_hex(&resp[..n]));
        let mut ours = None;
        if let Some(m) = &opts.mutual {
            let mut idb = [0u8; 1];
            let mut c = vec![0u8; 16];
            random(&mut idb).map_err(|e| NetError::io("random CHAP_I", e))?;
            random(&mut c).map_err(|e| NetError::io("random CHAP_C", e))?;
            if c == challenge {
                return Err(NetError::Auth("refusing to reuse the target's CHAP challenge".into()));
            }
            k.push("CHAP_I", idb[0].to_string());
            k.push("CHAP_C", encode_hex(&c));
            ours = Some((m, idb[0], c));
        }
        let (r, keys) = self.login_exchange(itt, Stage::Security, Stage::Operational, true, &k)?;
        if let Some((m, id, c)) = ours {
            let name = keys.get("CHAP_N").ok_or_else(|| {
                NetError::Auth("mutual CHAP: the target did not answer our challenge (no CHAP_N)".into())
            })?;
            if name != m.user {
                return Err(NetError::Auth(format!(
                    "mutual CHAP: the target answered as {name:?}, expected {:?}",
                    m.user
                )));
            }
            let got = keys
                .get("CHAP_R")
                .and_then(decode_binary)
                .ok_or_else(|| NetError::Auth("mutual CHAP: the target sent no valid CHAP_R".into()))?;
            let mut want = [0u8; 32];
            let n = chap_response(alg, id, &m.secret, &c, &mut want)
                .ok_or_else(|| NetError::Auth("CHAP digest".into()))?;
            if got.len() != n || !constant_time_eq(&got, &want[..n]) {
                return Err(NetError::Auth("mutual CHAP: the target's response is wrong (bad target secret)".into()));
            }
        }
        if !r.transit {
            return Err(NetError::Protocol("target did not leave the security stage after CHAP".into()));
        }
        Ok(())
    }

    fn apply_operational(&mut self, keys: &Keys, opts: &LoginOptions) -> Result<()> {
        let num = |k: &str, v: &str| -> Result<u32> {
            v.parse::<u32>().map_err(|_| NetError::Protocol(format!("target sent {k}={v}: not a number")))
        };
        for (k, v) in &keys.0 {
            match k.as_str() {
                "HeaderDigest" | "DataDigest" => {
                    let wanted = if k == "HeaderDigest" { opts.header_digest } else { opts.data_digest };
                    let on = match v.as_str() {
                        "CRC32C" => true,
                        "None" => false,
                        _ => !wanted,
                    };
                    if on != wanted {
                        let ours = if wanted { "CRC32C" } else { "None" };
                        return Err(NetError::Protocol(format!(
                            "target refused {k}={ours} (it answered {k}={v}); check the target's digest settings"
                        )));
                    }
                    if k == "HeaderDigest" {
                        self.params.header_digest = on;
                    } else {
                        self.params.data_digest = on;
                    }
                }
                "MaxRecvDataSegmentLength" => {
                    let n = num(k, v)?;
                    if !(512..=16_777_215).contains(&n) {
                        return Err(NetError::Protocol(format!("target declared MaxRecvDataSegmentLength={n}")));
                    }
                    self.params.max_xmit_data_segment_length = n;
                }
                "InitialR2T" => self.params.initial_r2t = yes(v) || opts.initial_r2t,
                "ImmediateData" => self.params.immediate_data = yes(v) && opts.immediate_data,
                "MaxBurstLength" => self.params.max_burst_length = num(k, v)?.min(opts.max_burst_length),
                "FirstBurstLength" => self.params.first_burst_length = num(k, v)?.min(opts.first_burst_length),
                "MaxOutstandingR2T" => self.params.max_outstanding_r2t = num(k, v)?.max(1),
                "DataPDUInOrder" => self.params.data_pdu_in_order = yes(v),
                "DataSequenceInOrder" => self.params.data_sequence_in_order = yes(v),
                "ErrorRecoveryLevel" => self.params.error_recovery_level = num(k, v)?,
                "TargetPortalGroupTag" => self.params.target_portal_group_tag = v.parse().ok(),
                "TargetAlias" => self.params.target_alias = Some(v.clone()),
                _ => {}
            }
        }
        // Keys the target left out keep our offer where the result function allows it.
        if !self.discovery {
            if keys.get("InitialR2T").is_none() {
                self.params.initial_r2t = opts.initial_r2t || self.params.initial_r2t && keys.get("InitialR2T").is_some();
            }
            if keys.get("ImmediateData").is_none() {
                self.params.immediate_data = opts.immediate_data;
            }
            if keys.get("FirstBurstLength").is_none() {
                self.params.first_burst_length = self.params.first_burst_length.min(opts.first_burst_length);
            }
            if keys.get("MaxBurstLength").is_none() {
                self.params.max_burst_length = self.params.max_burst_length.min(opts.max_burst_length);
            }
        }
        if self.params.first_burst_length > self.params.max_burst_length {
            self.params.first_burst_length = self.params.max_burst_length;
        }
        Ok(())
    }

    // ---- full feature phase ----------------------------------------------------------------

    /// Answer a target NOP-In that wants an answer; other unsolicited PDUs are reported.
    fn handle_unsolicited(&mut self, p: &Pdu, raw: &RawPdu) -> Result<()> {
        match p {
            Pdu::NopIn(n) => {
                self.note_window(n.exp_cmd_sn, n.max_cmd_sn);
                if n.ttt != RESERVED_TAG {
                    self.note_stat_sn(n.stat_sn.wrapping_sub(1));
                    let out = NopOut {
                        immediate: true,
                        lun: n.lun,
                        itt: RESERVED_TAG,
                        ttt: n.ttt,
                        cmd_sn: self.cmd_sn,
                        exp_stat_sn: self.exp_stat_sn,
                    };
                    let data = raw.data.clone();
                    self.send_pdu(Pdu::NopOut(out), &[], &data)?;
                }
                Ok(())
            }
            Pdu::AsyncMessage(a) => {
                self.note_stat_sn(a.stat_sn);
                self.note_window(a.exp_cmd_sn, a.max_cmd_sn);
                match a.event {
                    1 => Err(NetError::Protocol("target requests logout (async event 1)".into())),
                    2 | 3 => Err(NetError::Protocol(format!("target is dropping the connection (async event {})", a.event))),
                    _ => Ok(()),
                }
            }
            Pdu::Reject(r) => Err(NetError::Protocol(format!("target rejected our PDU (reason {:#04x})", r.reason))),
            other => Err(NetError::Protocol(format!("unexpected PDU from target: {other:?}"))),
        }
    }

    /// SendTargets=All on this (discovery) session, following C-bit continuations.
    pub fn send_targets(&mut self) -> Result<Vec<DiscoveredTarget>> {
        let itt = self.itt();
        let mut k = Keys::new();
        k.push("SendTargets", "All");
        let data = k.encode();
        let mut req = TextRequest {
            immediate: false,
            final_: true,
            continue_: false,
            lun: [0; 8],
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send_pdu(Pdu::TextRequest(req), &[], &data)?;
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        let mut all = Vec::new();
        loop {
            let (p, raw) = self.recv_pdu()?;
            let r = match p {
                Pdu::TextResponse(r) if r.itt == itt => r,
                other => {
                    self.handle_unsolicited(&other, &raw)?;
                    continue;
                }
            };
            self.note_stat_sn(r.stat_sn);
            self.note_window(r.exp_cmd_sn, r.max_cmd_sn);
            if all.len() + raw.data.len() > 16 << 20 {
                return Err(NetError::Protocol("SendTargets answer longer than 16 MiB".into()));
            }
            all.extend_from_slice(&raw.data);
            if r.final_ && !r.continue_ {
                break;
            }
            self.stats.text_continuations += 1;
            // C bit (or F clear): ask for the rest with an empty request echoing the TTT.
            req.ttt = r.ttt;
            req.cmd_sn = self.cmd_sn;
            req.exp_stat_sn = self.exp_stat_sn;
            self.send_pdu(Pdu::TextRequest(req), &[], &[])?;
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
        }
        parse_send_targets(&all)
    }

    /// Run one SCSI command on `lun` and wait for its status. A non-GOOD status is returned in
    /// the outcome, not as an error; use [`Session::scsi_ok`] for that.
    pub fn scsi(&mut self, lun: u16, cdb: &[u8], dir: DataDir<'_>) -> Result<ScsiOutcome> {
        if self.discovery {
            return Err(NetError::Protocol("SCSI commands need a normal session".into()));
        }
        let lun_b = Lun::from_number(lun).ok_or_else(|| NetError::Protocol(format!("LUN {lun} out of range")))?.0;
        let mut cdb16 = [0u8; 16];
        let mut ahs = [0u8; pdu::MAX_AHS_LEN];
        let ahs_len = if cdb.len() > 16 {
            pdu::encode_ext_cdb_ahs(cdb, &mut ahs).map_err(|e| proto_err("CDB", e))?
        } else {
            0
        };
        let n = cdb.len().min(16);
        cdb16[..n].copy_from_slice(&cdb[..n]);
        let itt = self.itt();
        let (read, write, len) = match &dir {
            DataDir::None => (false, false, 0usize),
            DataDir::Read(b) => (true, false, b.len()),
            DataDir::Write(b) => (false, true, b.len()),
        };
        let expected_len = u32::try_from(len).map_err(|_| NetError::Protocol("transfer over 4 GiB".into()))?;
        // Immediate data, unsolicited Data-Out and R2T bursts as proto's planner says.
        let wp = iscsi_proto::dataout::WriteParams {
            immediate_data: self.params.immediate_data,
            initial_r2t: self.params.initial_r2t,
            first_burst_length: self.params.first_burst_length,
            max_burst_length: self.params.max_burst_length,
            max_xmit_data_segment_length: self.params.max_xmit_data_segment_length,
            max_outstanding_r2t: u16::try_from(self.params.max_outstanding_r2t).unwrap_or(u16::MAX),
        };
        let mut plan = iscsi_proto::dataout::WritePlan::new(&wp, if write { expected_len } else { 0 });
        let imm_len = plan.immediate_len() as usize;
        let cmd = ScsiCommand {
            immediate: false,
            final_: plan.command_final(),
            read,
            write,
            attr: pdu::task_attr::SIMPLE,
            lun: lun_b,
            itt,
            expected_len,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb16,
        };
        let wbuf: &[u8] = match &dir {
            DataDir::Write(b) => b,
            _ => &[],
        };
        self.send_pdu(Pdu::ScsiCommand(cmd), &ahs[..ahs_len], &wbuf[..imm_len])?;
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.stats.immediate_bytes += imm_len as u64;
        let unsolicited = plan.unsolicited();
        self.send_data_out(lun_b, itt, unsolicited, wbuf)?;
        let mut rbuf = match dir {
            DataDir::Read(b) => Some(b),
            _ => None,
        };
        let mut received = 0usize;
        let mut next_data_sn = 0u32;
        let mut outcome = ScsiOutcome::default();
        loop {
            let (pdu_, raw) = self.recv_pdu()?;
            match pdu_ {
                Pdu::DataIn(d) if d.itt == itt => {
                    if d.data_sn != next_data_sn {
                        return Err(NetError::Protocol(format!(
                            "Data-In DataSN {} where {} was due",
                            d.data_sn, next_data_sn
                        )));
                    }
                    next_data_sn = next_data_sn.wrapping_add(1);
                    self.stats.data_in_pdus += 1;
                    self.note_window(d.exp_cmd_sn, d.max_cmd_sn);
                    let buf = rbuf
                        .as_deref_mut()
                        .ok_or_else(|| NetError::Protocol("Data-In for a command that reads nothing".into()))?;
                    let off = d.offset as usize;
                    let end = off
                        .checked_add(raw.data.len())
                        .filter(|e| *e <= buf.len())
                        .ok_or_else(|| NetError::Protocol("Data-In beyond the expected transfer length".into()))?;
                    buf[off..end].copy_from_slice(&raw.data);
                    received += raw.data.len();
                    if d.status_present {
                        self.note_stat_sn(d.stat_sn);
                        outcome.status = d.status;
                        outcome.data_len = received;
                        outcome.residual = residual(d.underflow, d.overflow, d.residual);
                        return Ok(outcome);
                    }
                }
                Pdu::R2t(r) if r.itt == itt => {
                    self.stats.r2ts += 1;
                    self.note_window(r.exp_cmd_sn, r.max_cmd_sn);
                    let burst = plan
                        .on_r2t(&r)
                        .map_err(|e| NetError::Protocol(format!("bad R2T from the target: {e:?}")))?;
                    self.send_data_out(lun_b, itt, burst, wbuf)?;
                    plan.burst_done();
                }
                Pdu::ScsiResponse(r) if r.itt == itt => {
                    self.note_stat_sn(r.stat_sn);
                    self.note_window(r.exp_cmd_sn, r.max_cmd_sn);
                    if r.response != 0 {
                        return Err(NetError::Response { op: cdb.first().copied().unwrap_or(0), response: r.response });
                    }
                    outcome.status = r.status;
                    outcome.data_len = received;
                    outcome.residual = residual(r.underflow, r.overflow, r.residual);
                    // Sense: 2-byte SenseLength then the sense bytes.
                    if raw.data.len() >= 2 {
                        let sl = u16::from_be_bytes([raw.data[0], raw.data[1]]) as usize;
                        outcome.sense = raw.data.get(2..2 + sl).unwrap_or(&raw.data[2..]).to_vec();
                    }
                    return Ok(outcome);
                }
                other => self.handle_unsolicited(&other, &raw)?,
            }
        }
    }

    /// Send one Data-Out sequence planned by proto (each PDU at most the target's
    /// MaxRecvDataSegmentLength, DataSN from 0, F on the last).
    fn send_data_out(
        &mut self,
        lun: [u8; 8],
        itt: u32,
        seq: iscsi_proto::dataout::DataOutSeq,
        buf: &[u8],
    ) -> Result<()> {
        for d in seq {
            let (at, n) = (d.offset as usize, d.len as usize);
            let data = at
                .checked_add(n)
                .and_then(|end| buf.get(at..end))
                .ok_or_else(|| NetError::Protocol("Data-Out outside the write buffer".into()))?;
            let p = DataOut {
                final_: d.final_,
                lun,
                itt,
                ttt: d.ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn: d.data_sn,
                offset: d.offset,
            };
            self.send_pdu(Pdu::DataOut(p), &[], data)?;
            if d.ttt == RESERVED_TAG {
                self.stats.unsolicited_data_out_pdus += 1;
            } else {
                self.stats.solicited_data_out_pdus += 1;
            }
        }
        Ok(())
    }

    /// Like [`Session::scsi`], but a status other than GOOD is an error carrying the sense.
    pub fn scsi_ok(&mut self, lun: u16, cdb: &[u8], dir: DataDir<'_>) -> Result<ScsiOutcome> {
        let o = self.scsi(lun, cdb, dir)?;
        if o.status != 0 {
            return Err(NetError::Scsi { op: cdb.first().copied().unwrap_or(0), status: o.status, sense: sense_text(&o.sense) });
        }
        Ok(o)
    }

    /// Log out (close the session) and close the connection.
    pub fn logout(mut self) -> Result<()> {
        let itt = self.itt();
        let req = LogoutRequest {
            immediate: true,
            reason: pdu::logout_reason::CLOSE_SESSION,
            itt,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send_pdu(Pdu::LogoutRequest(req), &[], &[])?;
        loop {
            let (p, raw) = match self.recv_pdu() {
                Ok(x) => x,
                // istgt queues the Logout Response to its sender thread and may close the
                // socket before that thread writes it: the session is closed all the same.
                Err(NetError::Closed(c)) => {
                    log::warn!("target closed the connection before its Logout Response ({c})");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            match p {
                Pdu::LogoutResponse(r) if r.itt == itt => {
                    self.conn.shutdown();
                    if r.response != 0 {
                        return Err(NetError::Protocol(format!("logout response {:#04x}", r.response)));
                    }
                    return Ok(());
                }
                other => self.handle_unsolicited(&other, &raw)?,
            }
        }
    }
}

fn residual(under: bool, over: bool, count: u32) -> i64 {
    if under {
        i64::from(count)
    } else if over {
        -i64::from(count)
    } else {
        0
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Our answer to a key the target proposed on its own in the operational stage.
fn answer_unsolicited(k: &str, v: &str) -> Option<String> {
    match k {
        // Declarative or answers to our own offers: nothing to say.
        "HeaderDigest" | "DataDigest" | "MaxRecvDataSegmentLength" | "InitialR2T" | "ImmediateData"
        | "MaxBurstLength" | "FirstBurstLength" | "DefaultTime2Wait" | "DefaultTime2Retain" | "ErrorRecoveryLevel"
        | "MaxConnections" | "MaxOutstandingR2T" | "DataPDUInOrder" | "DataSequenceInOrder"
        | "TargetPortalGroupTag" | "TargetAlias" | "TargetAddress" => None,
        "IFMarker" | "OFMarker" => Some("No".into()),
        _ if v == "NotUnderstood" || v == "Irrelevant" || v == "Reject" => None,
        _ => Some("NotUnderstood".into()),
    }
}

/// Parse a SendTargets answer: `TargetName=` starts a target, `TargetAddress=` lines follow it.
pub fn parse_send_targets(data: &[u8]) -> Result<Vec<DiscoveredTarget>> {
    let keys = Keys::decode(data).map_err(NetError::Protocol)?;
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for (k, v) in keys.0 {
        match k.as_str() {
            "TargetName" => out.push(DiscoveredTarget { name: v, addresses: Vec::new() }),
            "TargetAddress" => match out.last_mut() {
                Some(t) => t.addresses.push(v),
                None => return Err(NetError::Protocol("TargetAddress before any TargetName".into())),
            },
            _ => {}
        }
    }
    Ok(out)
}

/// A one-line summary of fixed or descriptor format sense data.
pub fn sense_text(sense: &[u8]) -> String {
    let (key, asc, ascq) = match sense.first().map(|b| b & 0x7f) {
        Some(0x70) | Some(0x71) if sense.len() >= 14 => (sense[2] & 0x0f, sense[12], sense[13]),
        Some(0x72) | Some(0x73) if sense.len() >= 4 => (sense[1] & 0x0f, sense[2], sense[3]),
        _ => return String::new(),
    };
    format!(", sense key {key:#x} ASC {asc:#04x} ASCQ {ascq:#04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_targets_parsing() {
        let d = b"TargetName=iqn.a\0TargetAddress=127.0.0.1:3260,1\0TargetAddress=[::1]:3260,1\0TargetName=iqn.b\0";
        let t = parse_send_targets(d).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "iqn.a");
        assert_eq!(t[0].addresses, vec!["127.0.0.1:3260,1", "[::1]:3260,1"]);
        assert!(t[1].addresses.is_empty());
        assert!(parse_send_targets(b"TargetAddress=x\0").is_err());
    }

    #[test]
    fn serial_numbers() {
        assert!(sn_lt(1, 2));
        assert!(sn_lt(0xffff_ffff, 0));
        assert!(!sn_lt(2, 1));
        assert!(!sn_lt(5, 5));
    }

    #[test]
    fn credentials_debug_hides_secret() {
        let c = ChapCredentials::new("u", b"topsecret".to_vec());
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn sense_summary() {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = 5;
        s[12] = 0x24;
        assert_eq!(sense_text(&s), ", sense key 0x5 ASC 0x24 ASCQ 0x00");
        assert_eq!(sense_text(&[]), "");
    }
}
