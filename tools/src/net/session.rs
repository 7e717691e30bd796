//! An iSCSI session over one TCP connection: login (security and operational stages, one-way
//! or mutual CHAP), SendTargets, SCSI commands, logout.
//!
//! Every protocol decision is the `iscsi-proto` core's, the same code the kernel module runs:
//! the login is proto's [`Login`] state machine (text negotiation, CHAP, stage transitions),
//! SendTargets answers are parsed by `sendtargets`, writes are planned by `dataout`, CmdSN /
//! StatSN follow `serial`. This file only moves PDUs between that core and the [`Connection`],
//! supplies what proto cannot (random ISID and CHAP challenge, the platform hashes, timeouts)
//! and turns proto's errors into messages.
//!
//! One command is outstanding at a time: this driver is for discovery, probing and tests, not
//! for throughput (that is the kernel module's job).

use super::conn::{Connection, RawPdu, Timeouts};
use super::digest::{random, Platform};
use super::error::{NetError, Result};
use super::portal::Portal;
use iscsi_proto::chap::{ChapAlgorithm, ChapConfig, ChapError, MutualChap};
use iscsi_proto::dataout::{DataOutSeq, WriteParams, WritePlan};
use iscsi_proto::login::{
    InitiatorError, Login, LoginComplete, LoginConfig, LoginError, LoginEvent, ProtocolError,
    SessionType, TargetError, MAX_LOGIN_DATA,
};
use iscsi_proto::pdu::{
    self, Bhs, DataOut, LogoutRequest, Lun, NopOut, Pdu, ScsiCommand, TextRequest, BHS_LEN,
    RESERVED_TAG,
};
use iscsi_proto::serial::{self, CmdWindow};
use iscsi_proto::text::{self, DigestPref, Key, Limits, Params, TextError, TextWriter};
use iscsi_proto::{scsi as pscsi, sendtargets};
use zeroize::Zeroizing;

/// Most login response text (one response, all its C-bit parts) we hold.
const MAX_LOGIN_TEXT: usize = 64 * 1024;
/// Most SendTargets answer text we hold.
const MAX_SEND_TARGETS_TEXT: usize = 16 << 20;
/// Length of our mutual CHAP challenge.
const MUTUAL_CHALLENGE_LEN: usize = 16;
/// PDUs we read at most while waiting for the target to open a closed command window.
const MAX_WINDOW_WAITS: u32 = 16;

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
        ChapCredentials {
            user: user.into(),
            secret: Zeroizing::new(secret.into()),
        }
    }
}

impl std::fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredentials")
            .field("user", &self.user)
            .field("secret", &"<hidden>")
            .finish()
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
    /// CHAP algorithms to offer, most preferred first (default MD5 only, which every target
    /// knows).
    pub chap_algorithms: Vec<ChapAlgorithm>,
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
            chap_algorithms: vec![ChapAlgorithm::Md5],
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

    /// Our operational offer, in proto's terms (which also bounds the target's answers).
    pub fn limits(&self) -> Limits {
        let digest = |on: bool| {
            if on {
                DigestPref::Crc32c
            } else {
                DigestPref::None
            }
        };
        Limits {
            header_digest: digest(self.header_digest),
            data_digest: digest(self.data_digest),
            max_recv_data_segment_length: self.max_recv_data_segment_length,
            initial_r2t: self.initial_r2t,
            immediate_data: self.immediate_data,
            max_burst_length: self.max_burst_length,
            first_burst_length: self.first_burst_length,
            // Error recovery level 0: nothing to retain after a connection fails.
            default_time2retain: 0,
            ..Limits::default()
        }
    }
}

/// The operational parameters in force after login (proto's negotiation result, flattened for
/// printing and JSON).
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
    fn new(done: &LoginComplete, target_keys: Vec<(String, String)>) -> Negotiated {
        let (s, c) = (&done.params.session, &done.params.conn);
        Negotiated {
            header_digest: c.header_digest,
            data_digest: c.data_digest,
            max_recv_data_segment_length: c.max_recv_data_segment_length,
            max_xmit_data_segment_length: c.max_xmit_data_segment_length,
            initial_r2t: s.initial_r2t,
            immediate_data: s.immediate_data,
            first_burst_length: s.first_burst_length,
            max_burst_length: s.max_burst_length,
            max_outstanding_r2t: s.max_outstanding_r2t.into(),
            data_pdu_in_order: s.data_pdu_in_order,
            data_sequence_in_order: s.data_sequence_in_order,
            error_recovery_level: s.error_recovery_level.into(),
            target_portal_group_tag: s.target_portal_group_tag,
            target_alias: target_keys
                .iter()
                .rev()
                .find(|(k, _)| k == "TargetAlias")
                .map(|(_, v)| v.clone()),
            tsih: done.tsih,
            target_keys,
        }
    }
}

/// A target found by SendTargets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// Its TargetAddress values (`HOST:PORT,TPGT`), in order.
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
    params: Params,
    negotiated: Negotiated,
    window: CmdWindow,
    exp_stat_sn: u32,
    next_itt: u32,
    discovery: bool,
}

fn proto_err(what: &str, e: impl std::fmt::Debug) -> NetError {
    NetError::Protocol(format!("{what}: {e:?}"))
}

/// Send a PDU that proto wrote whole (BHS, data, padding) on `conn`.
fn send_encoded(conn: &mut Connection, wire: &[u8]) -> Result<()> {
    let bhs: &[u8; BHS_LEN] = wire
        .get(..BHS_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NetError::Protocol("encoded PDU shorter than its header".into()))?;
    let dlen = pdu::data_segment_len_of(bhs) as usize;
    let data = wire
        .get(BHS_LEN..BHS_LEN + dlen)
        .ok_or_else(|| NetError::Protocol("encoded PDU shorter than its data segment".into()))?;
    conn.send(bhs, &[], data)
}

/// Run proto's login state machine on `conn` until full feature phase. Returns the result, the
/// ExpStatSN to continue with and every key=value the target sent (for reports).
fn run_login(
    conn: &mut Connection,
    cfg: &LoginConfig<'_>,
    stats: &mut Stats,
) -> Result<(LoginComplete, u32, Transcript)> {
    let platform = Platform;
    let mut rx = vec![0u8; MAX_LOGIN_TEXT];
    let mut login = Login::new(cfg, &platform, &mut rx);
    let mut out = vec![0u8; BHS_LEN + MAX_LOGIN_DATA + 4];
    let mut transcript = Transcript::default();
    loop {
        if let Some(n) = login
            .poll_transmit(&mut out)
            .map_err(|e| login_error(e, None))?
        {
            send_encoded(conn, &out[..n])?;
            stats.pdus_sent += 1;
        }
        let raw = conn.recv()?;
        stats.pdus_received += 1;
        transcript.record(&raw);
        match login.handle_pdu(&raw.bhs, &raw.data) {
            Ok(LoginEvent::Continue) => {}
            Ok(LoginEvent::Complete(done)) => return Ok((done, login.exp_stat_sn(), transcript)),
            Err(e) => {
                if let (LoginError::Redirect { .. }, Some(a)) = (e, login.redirect_address()) {
                    log::warn!("the target redirects to {}", String::from_utf8_lossy(a));
                }
                return Err(login_error(e, Some(&raw)));
            }
        }
    }
}

/// The key=value pairs of the target's login responses, kept for [`Negotiated::target_keys`].
#[derive(Default)]
struct Transcript {
    text: Vec<u8>,
    keys: Vec<(String, String)>,
}

impl Transcript {
    fn record(&mut self, raw: &RawPdu) {
        let Ok(Bhs {
            pdu: Pdu::LoginResponse(r),
            ..
        }) = Bhs::decode(&raw.bhs)
        else {
            return;
        };
        if self.text.len() + raw.data.len() <= MAX_LOGIN_TEXT {
            self.text.extend_from_slice(&raw.data);
        }
        if r.continue_ {
            return;
        }
        for (k, v) in text::pairs(&self.text).map_while(|p| p.ok()) {
            self.keys.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
        self.text.clear();
    }
}

/// Status class and detail of a Login Response.
fn login_status(raw: &RawPdu) -> Option<(u8, u8)> {
    match Bhs::decode(&raw.bhs).ok()?.pdu {
        Pdu::LoginResponse(r) => Some((r.status_class, r.status_detail)),
        _ => None,
    }
}

/// Words for a login status (RFC 7143 section 11.13.5), from proto's decoding of it.
fn status_reason(e: &LoginError) -> &'static str {
    use InitiatorError as I;
    use TargetError as T;
    match e {
        LoginError::Redirect { permanent: false } => "target moved temporarily",
        LoginError::Redirect { permanent: true } => "target moved permanently",
        LoginError::Initiator(i) => match i {
            I::Other | I::Unknown(_) => "initiator error",
            I::AuthenticationFailure => "authentication failure",
            I::AuthorizationFailure => "authorization failure",
            I::NotFound => "target not found",
            I::TargetRemoved => "target removed",
            I::UnsupportedVersion => "unsupported version",
            I::TooManyConnections => "too many connections",
            I::MissingParameter => "missing parameter",
            I::CantIncludeInSession => "can't include in session",
            I::SessionTypeNotSupported => "session type not supported",
            I::SessionDoesNotExist => "session does not exist",
            I::InvalidDuringLogin => "invalid during login",
        },
        LoginError::Target(t) => match t {
            T::Other | T::Unknown(_) => "target error",
            T::ServiceUnavailable => "service unavailable",
            T::OutOfResources => "out of resources",
        },
        _ => "unknown status",
    }
}

fn chap_error(e: ChapError) -> NetError {
    NetError::Auth(
        match e {
            ChapError::AlgorithmNotOffered => "the target chose no CHAP algorithm we offered",
            ChapError::DigestUnavailable => "the CHAP digest could not be computed",
            ChapError::BadEncoding | ChapError::BadIdentifier | ChapError::BadChallenge => {
                "the target sent a malformed CHAP challenge"
            }
            ChapError::ReflectedChallenge => {
                "the target sent back our own CHAP challenge (reflection); refused"
            }
            ChapError::Missing => "the target left out CHAP keys it owes",
            ChapError::WrongName => {
                "mutual CHAP: the target answered with another name than expected"
            }
            ChapError::BadResponse => {
                "mutual CHAP: the target's response is wrong (bad target secret)"
            }
        }
        .into(),
    )
}

fn text_error(e: TextError) -> NetError {
    match e {
        TextError::NotOffered(k @ (Key::HeaderDigest | Key::DataDigest))
        | TextError::Rejected(k @ (Key::HeaderDigest | Key::DataDigest)) => NetError::Protocol(
            format!("target refused the {k:?} we require; check the target's digest settings"),
        ),
        e => NetError::Protocol(format!("login negotiation failed: {e:?}")),
    }
}

/// Turn proto's login error into ours; `raw` is the response that caused it, if any.
fn login_error(e: LoginError, raw: Option<&RawPdu>) -> NetError {
    match e {
        LoginError::Redirect { .. }
        | LoginError::Initiator(_)
        | LoginError::Target(_)
        | LoginError::UnknownStatus { .. } => {
            let (class, detail) = match (e, raw.and_then(login_status)) {
                (_, Some(s)) => s,
                (LoginError::UnknownStatus { class, detail }, None) => (class, detail),
                _ => (0xff, 0xff),
            };
            NetError::LoginRejected { class, detail, reason: status_reason(&e) }
        }
        LoginError::MutualAuthSkipped => {
            NetError::Auth("mutual CHAP: the target did not authenticate itself to us".into())
        }
        LoginError::AuthMethodRejected => NetError::Auth(
            "the target and we disagree on AuthMethod: it requires authentication we were not given CHAP \
             credentials for, or refuses the CHAP we require"
                .into(),
        ),
        LoginError::Chap(c) => chap_error(c),
        LoginError::Text(t) => text_error(t),
        LoginError::Pdu(p) => proto_err("malformed Login Response", p),
        LoginError::Protocol(ProtocolError::UnexpectedOpcode(op)) if op == pdu::opcode::REJECT => {
            NetError::Protocol("target rejected the login PDU".into())
        }
        LoginError::Protocol(p) => proto_err("target broke the login protocol", p),
        LoginError::BufferTooSmall => NetError::Protocol("login request does not fit in a PDU".into()),
    }
}

impl Session {
    /// Connect to `portal` and log in as `opts` says.
    pub fn login(portal: &Portal, opts: &LoginOptions) -> Result<Session> {
        if opts.mutual.is_some() && opts.chap.is_none() {
            return Err(NetError::Auth(
                "mutual CHAP needs the initiator's CHAP credentials too".into(),
            ));
        }
        let mut conn = Connection::connect(portal, opts.timeouts)?;
        // Random qualifier, type 0b10 (random) in the top bits.
        let mut isid = [0x80u8, 0, 0, 0, 0, 0];
        random(&mut isid[1..4]).map_err(|e| NetError::io("random ISID", e))?;
        let mut challenge = [0u8; MUTUAL_CHALLENGE_LEN];
        let mut identifier = [0u8; 1];
        if opts.mutual.is_some() {
            random(&mut challenge).map_err(|e| NetError::io("random CHAP challenge", e))?;
            random(&mut identifier).map_err(|e| NetError::io("random CHAP identifier", e))?;
        }
        let chap = opts.chap.as_ref().map(|c| ChapConfig {
            user: &c.user,
            secret: &c.secret,
            algorithms: &opts.chap_algorithms,
            mutual: opts.mutual.as_ref().map(|m| MutualChap {
                target_user: &m.user,
                secret: &m.secret,
                challenge: &challenge,
                identifier: identifier[0],
            }),
        });
        let login_itt = 1;
        let cfg = LoginConfig {
            initiator_name: &opts.initiator_name,
            initiator_alias: None,
            target_name: opts.target_name.as_deref().unwrap_or(""),
            session_type: if opts.target_name.is_some() {
                SessionType::Normal
            } else {
                SessionType::Discovery
            },
            isid,
            tsih: 0,
            cid: 0,
            itt: login_itt,
            cmd_sn: 1,
            exp_stat_sn: 0,
            chap,
            limits: opts.limits(),
        };
        let mut stats = Stats::default();
        let (done, exp_stat_sn, transcript) = run_login(&mut conn, &cfg, &mut stats)?;
        let p = done.params;
        conn.set_digests(p.conn.header_digest, p.conn.data_digest);
        conn.set_limits(
            p.conn.max_recv_data_segment_length,
            p.conn.max_xmit_data_segment_length,
        );
        Ok(Session {
            stats,
            conn,
            params: p,
            negotiated: Negotiated::new(&done, transcript.keys),
            // Login Requests are immediate: the first command carries the ExpCmdSN they left.
            window: CmdWindow::new(done.exp_cmd_sn, done.exp_cmd_sn, done.max_cmd_sn),
            exp_stat_sn,
            next_itt: login_itt.wrapping_add(1),
            discovery: opts.target_name.is_none(),
        })
    }

    /// The parameters in force.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
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
        let dsl =
            u32::try_from(data.len()).map_err(|_| NetError::Protocol("data too long".into()))?;
        Bhs {
            total_ahs_words: words,
            data_segment_len: dsl,
            pdu: p,
        }
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
        if serial::lt(self.exp_stat_sn, next) {
            self.exp_stat_sn = next;
        }
    }

    fn note_window(&mut self, exp_cmd_sn: u32, max_cmd_sn: u32) {
        self.window.update(exp_cmd_sn, max_cmd_sn);
    }

    /// CmdSN for a non-immediate command, waiting (a bounded number of PDUs) for the target to
    /// open a closed window with a NOP-In or an Async Message.
    fn assign_cmd_sn(&mut self) -> Result<u32> {
        for _ in 0..MAX_WINDOW_WAITS {
            if let Some(sn) = self.window.assign() {
                return Ok(sn);
            }
            let (p, raw) = self.recv_pdu()?;
            self.handle_unsolicited(&p, &raw)?;
        }
        Err(NetError::Protocol(format!(
            "the target keeps its command window closed (CmdSN {}, MaxCmdSN {})",
            self.window.cmd_sn(),
            self.window.max_cmd_sn()
        )))
    }

    // ---- full feature phase ----------------------------------------------------------------

    /// Answer a target NOP-In that wants an answer; other unsolicited PDUs are reported.
    fn handle_unsolicited(&mut self, p: &Pdu, raw: &RawPdu) -> Result<()> {
        match p {
            Pdu::NopIn(n) => {
                self.note_window(n.exp_cmd_sn, n.max_cmd_sn);
                if n.ttt != RESERVED_TAG {
                    // A NOP-In that wants an answer does not advance StatSN.
                    self.note_stat_sn(n.stat_sn.wrapping_sub(1));
                    let out = NopOut {
                        immediate: true,
                        lun: n.lun,
                        itt: RESERVED_TAG,
                        ttt: n.ttt,
                        cmd_sn: self.window.immediate(),
                        exp_stat_sn: self.exp_stat_sn,
                    };
                    self.send_pdu(Pdu::NopOut(out), &[], &raw.data)?;
                }
                Ok(())
            }
            Pdu::AsyncMessage(a) => {
                self.note_stat_sn(a.stat_sn);
                self.note_window(a.exp_cmd_sn, a.max_cmd_sn);
                match a.event {
                    1 => Err(NetError::Protocol(
                        "target requests logout (async event 1)".into(),
                    )),
                    2 | 3 => Err(NetError::Protocol(format!(
                        "target is dropping the connection (async event {})",
                        a.event
                    ))),
                    _ => Ok(()),
                }
            }
            Pdu::Reject(r) => Err(NetError::Protocol(format!(
                "target rejected our PDU (reason {:#04x})",
                r.reason
            ))),
            other => Err(NetError::Protocol(format!(
                "unexpected PDU from target: {other:?}"
            ))),
        }
    }

    /// SendTargets=All on this (discovery) session, following C-bit continuations.
    pub fn send_targets(&mut self) -> Result<Vec<DiscoveredTarget>> {
        let itt = self.itt();
        let mut body = [0u8; 16];
        let mut w = TextWriter::new(&mut body);
        w.push("SendTargets", "All")
            .map_err(|e| proto_err("SendTargets text", e))?;
        let n = w.len();
        let mut req = TextRequest {
            immediate: false,
            final_: true,
            continue_: false,
            lun: [0; 8],
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.assign_cmd_sn()?,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send_pdu(Pdu::TextRequest(req), &[], &body[..n])?;
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
            if all.len() + raw.data.len() > MAX_SEND_TARGETS_TEXT {
                return Err(NetError::Protocol(
                    "SendTargets answer longer than 16 MiB".into(),
                ));
            }
            all.extend_from_slice(&raw.data);
            if r.final_ && !r.continue_ {
                break;
            }
            self.stats.text_continuations += 1;
            // C bit (or F clear): ask for the rest with an empty request echoing the TTT. tgt
            // does not open the command window of a discovery session as the answer goes on
            // (MaxCmdSN stays put): a closed window is no reason to stop, the request goes
            // immediate then, which needs no window.
            req.ttt = r.ttt;
            req.immediate = !self.window.can_send();
            req.cmd_sn = if req.immediate {
                self.window.immediate()
            } else {
                self.assign_cmd_sn()?
            };
            req.exp_stat_sn = self.exp_stat_sn;
            self.send_pdu(Pdu::TextRequest(req), &[], &[])?;
        }
        parse_send_targets(&all)
    }

    /// Run one SCSI command on `lun` and wait for its status. A non-GOOD status is returned in
    /// the outcome, not as an error; use [`Session::scsi_ok`] for that.
    pub fn scsi(&mut self, lun: u16, cdb: &[u8], dir: DataDir<'_>) -> Result<ScsiOutcome> {
        if self.discovery {
            return Err(NetError::Protocol(
                "SCSI commands need a normal session".into(),
            ));
        }
        let lun_b = Lun::from_number(lun)
            .ok_or_else(|| NetError::Protocol(format!("LUN {lun} out of range")))?
            .0;
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
        let expected_len =
            u32::try_from(len).map_err(|_| NetError::Protocol("transfer over 4 GiB".into()))?;
        // Immediate data, unsolicited Data-Out and R2T bursts as proto's planner says.
        let mut plan = WritePlan::new(
            &WriteParams::from(&self.params),
            if write { expected_len } else { 0 },
        );
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
            cmd_sn: self.assign_cmd_sn()?,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb16,
        };
        let wbuf: &[u8] = match &dir {
            DataDir::Write(b) => b,
            _ => &[],
        };
        self.send_pdu(Pdu::ScsiCommand(cmd), &ahs[..ahs_len], &wbuf[..imm_len])?;
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
                    let buf = rbuf.as_deref_mut().ok_or_else(|| {
                        NetError::Protocol("Data-In for a command that reads nothing".into())
                    })?;
                    let off = d.offset as usize;
                    let end = off
                        .checked_add(raw.data.len())
                        .filter(|e| *e <= buf.len())
                        .ok_or_else(|| {
                            NetError::Protocol("Data-In beyond the expected transfer length".into())
                        })?;
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
                    let burst = plan.on_r2t(&r).map_err(|e| {
                        NetError::Protocol(format!("bad R2T from the target: {e:?}"))
                    })?;
                    self.send_data_out(lun_b, itt, burst, wbuf)?;
                    plan.burst_done();
                }
                Pdu::ScsiResponse(r) if r.itt == itt => {
                    self.note_stat_sn(r.stat_sn);
                    self.note_window(r.exp_cmd_sn, r.max_cmd_sn);
                    if r.response != 0 {
                        return Err(NetError::Response {
                            op: cdb.first().copied().unwrap_or(0),
                            response: r.response,
                        });
                    }
                    outcome.status = r.status;
                    outcome.data_len = received;
                    outcome.residual = residual(r.underflow, r.overflow, r.residual);
                    outcome.sense = pscsi::sense_from_response(&raw.data)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    return Ok(outcome);
                }
                other => self.handle_unsolicited(&other, &raw)?,
            }
        }
    }

    /// Send one Data-Out sequence planned by proto (each PDU at most the target's
    /// MaxRecvDataSegmentLength, DataSN from 0, F on the last).
    fn send_data_out(&mut self, lun: [u8; 8], itt: u32, seq: DataOutSeq, buf: &[u8]) -> Result<()> {
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
        if o.status != pscsi::STATUS_GOOD {
            return Err(NetError::Scsi {
                op: cdb.first().copied().unwrap_or(0),
                status: o.status,
                sense: sense_text(&o.sense),
            });
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
            cmd_sn: self.window.immediate(),
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
                        return Err(NetError::Protocol(format!(
                            "logout response {:#04x}",
                            r.response
                        )));
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

/// `HOST:PORT,TPGT` as printed for a discovered portal (IPv6 in brackets).
fn address_text(p: &sendtargets::Portal<'_>) -> String {
    let host = Portal {
        host: p.host.to_string(),
        port: p.port,
    };
    match p.tpgt {
        Some(t) => format!("{host},{t}"),
        None => host.to_string(),
    }
}

/// A complete SendTargets answer, parsed by proto, as owned values.
pub fn parse_send_targets(data: &[u8]) -> Result<Vec<DiscoveredTarget>> {
    let bad = |e| proto_err("bad SendTargets answer", e);
    let mut out = Vec::new();
    for t in sendtargets::targets(data) {
        let t = t.map_err(bad)?;
        let addresses = t
            .portals()
            .map(|p| p.map(|p| address_text(&p)))
            .collect::<std::result::Result<_, _>>();
        out.push(DiscoveredTarget {
            name: t.name.to_string(),
            addresses: addresses.map_err(bad)?,
        });
    }
    Ok(out)
}

/// A one-line summary of fixed or descriptor format sense data (parsed by proto).
pub fn sense_text(sense: &[u8]) -> String {
    match pscsi::parse_sense(sense) {
        Ok(s) => format!(
            ", sense key {:#x} ASC {:#04x} ASCQ {:#04x}",
            s.key, s.asc, s.ascq
        ),
        Err(_) => String::new(),
    }
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
    fn credentials_debug_hides_secret() {
        let c = ChapCredentials::new("u", b"topsecret".to_vec());
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn sense_summary() {
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = 5;
        s[7] = 10;
        s[12] = 0x24;
        assert_eq!(sense_text(&s), ", sense key 0x5 ASC 0x24 ASCQ 0x00");
        assert_eq!(sense_text(&[]), "");
    }

    #[test]
    fn options_become_proto_limits() {
        let mut o = LoginOptions::new("iqn.x");
        o.header_digest = true;
        o.initial_r2t = true;
        o.max_recv_data_segment_length = 512;
        let l = o.limits();
        assert_eq!(
            (l.header_digest, l.data_digest),
            (DigestPref::Crc32c, DigestPref::None)
        );
        assert!(l.initial_r2t && l.immediate_data);
        assert_eq!(
            (
                l.max_recv_data_segment_length,
                l.first_burst_length,
                l.max_burst_length
            ),
            (512, 65_536, 262_144)
        );
    }

    #[test]
    fn login_errors_keep_status_and_auth_meaning() {
        let e = login_error(
            LoginError::Initiator(InitiatorError::AuthenticationFailure),
            None,
        );
        assert!(e.to_string().contains("authentication failure"), "{e}");
        assert!(login_error(LoginError::Chap(ChapError::BadResponse), None).is_auth());
        assert!(login_error(LoginError::AuthMethodRejected, None).is_auth());
        assert!(login_error(LoginError::MutualAuthSkipped, None).is_auth());
        let e = login_error(
            LoginError::Text(TextError::NotOffered(Key::DataDigest)),
            None,
        );
        assert!(e.to_string().contains("DataDigest"), "{e}");
    }

    fn login_response(continue_: bool, class: u8, detail: u8, data: &[u8]) -> RawPdu {
        let rsp = pdu::LoginResponse {
            transit: false,
            continue_,
            csg: pdu::Stage::Security,
            nsg: pdu::Stage::Security,
            version_max: 0,
            version_active: 0,
            isid: [0x80, 0, 0, 0, 0, 0],
            tsih: 0,
            itt: 1,
            stat_sn: 0,
            exp_cmd_sn: 1,
            max_cmd_sn: 1,
            status_class: class,
            status_detail: detail,
        };
        let mut bhs = [0u8; BHS_LEN];
        Bhs {
            total_ahs_words: 0,
            data_segment_len: data.len() as u32,
            pdu: Pdu::LoginResponse(rsp),
        }
        .encode(&mut bhs)
        .unwrap();
        RawPdu {
            bhs,
            ahs: Vec::new(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn status_class_and_detail_come_from_the_response() {
        let raw = login_response(false, 2, 1, b"");
        match login_error(
            LoginError::Initiator(InitiatorError::AuthenticationFailure),
            Some(&raw),
        ) {
            e @ NetError::LoginRejected {
                class: 2,
                detail: 1,
                reason: "authentication failure",
            } => assert!(e.is_auth()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transcript_joins_continued_text() {
        let mut t = Transcript::default();
        t.record(&login_response(true, 0, 0, b"TargetAlias=di"));
        assert!(t.keys.is_empty());
        t.record(&login_response(
            false,
            0,
            0,
            b"sk one\0TargetPortalGroupTag=1\0",
        ));
        assert_eq!(
            t.keys,
            vec![
                ("TargetAlias".into(), "disk one".into()),
                ("TargetPortalGroupTag".into(), "1".into())
            ]
        );
    }
}
