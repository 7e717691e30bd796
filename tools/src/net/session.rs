//! An iSCSI session over one TCP connection: login (security and operational stages, one-way
//! or mutual CHAP), SendTargets, SCSI commands, logout.
//!
//! Every protocol decision is the `iscsi-proto` core's: the login is proto's [`Login`] state
//! machine (text negotiation, CHAP, stage transitions); after it, every PDU goes through
//! proto's full-feature-phase engine (`ffp_conn::Conn` and `ffp_session::Session`, which the
//! kernel module is to run too: Documentation/engine.md), which checks each target PDU against
//! its task, keeps the window and StatSN, plans Data-Out, answers the target's pings and says
//! where received data goes. This file moves bytes between the engine and the [`Connection`]
//! (placing Data-In and text into the caller's buffers, sending Data-Out from them, keeping
//! the CRC of placed data), supplies what proto cannot (random ISID and CHAP challenge, the
//! platform hashes, timeouts) and turns proto's errors into messages.
//!
//! One command is outstanding at a time: this driver is for discovery, probing and tests, not
//! for throughput (that is the kernel module's job).

use super::conn::{rx_error, Connection, RawPdu, Timeouts};
use super::digest::{random, Platform};
use super::error::{NetError, Result};
use super::portal::Portal;
use iscsi_proto::chap::{ChapAlgorithm, ChapConfig, ChapError, MutualChap};
use iscsi_proto::crc::DigestState;
use iscsi_proto::dataout::WriteParams;
use iscsi_proto::ffp_conn::{Conn, ConnConfig, Want, TX_HEADER_MAX};
use iscsi_proto::ffp_event::{Event, Lost};
use iscsi_proto::ffp_session::Session as FfpSession;
use iscsi_proto::ffp_tasks::{CommandSpec, StartError, TaskSlot};
use iscsi_proto::ffp_tx::{tx_capacity, TxData, TxKind, TxSlot};
use iscsi_proto::login::{
    InitiatorError, Login, LoginComplete, LoginConfig, LoginError, LoginEvent, ProtocolError,
    SessionType, TargetError, MAX_LOGIN_DATA,
};
use iscsi_proto::pdu::{self, Bhs, Digests, Lun, Pdu, BHS_LEN, RESERVED_TAG};
use iscsi_proto::task::Completion;
use iscsi_proto::text::{self, DigestPref, Key, Limits, TextError, TextWriter};
use iscsi_proto::{scsi as pscsi, sendtargets};
use std::time::Instant;
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

/// A logged-in session: the socket, and proto's full-feature-phase engine (one connection,
/// the session-wide window and task set) that every PDU after the login goes through.
pub struct Session {
    stats: Stats,
    conn: Connection,
    negotiated: Negotiated,
    ffp: FfpSession<Vec<u16>>,
    engine: Conn<Vec<TxSlot>, Vec<TaskSlot>>,
    /// The engine's clock starts at the login.
    epoch: Instant,
    discovery: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn)
            .field("negotiated", &self.negotiated)
            .field("engine", &self.engine.counters())
            .finish()
    }
}

/// Commands this driver keeps in flight (it runs one at a time; the engine's task set has a
/// few slots so a tag is always free).
const DEPTH: usize = 4;

/// Where placed data goes while the driver waits for an answer.
struct Sink<'a> {
    /// The command waited for, and its read buffer.
    itt: u32,
    read: Option<&'a mut [u8]>,
    /// Bytes of Data-In placed (the end of the furthest placement).
    received: usize,
    /// Its write buffer (Data-Out and immediate data come from it).
    write: &'a [u8],
    /// A text exchange's answer.
    text: Option<&'a mut Vec<u8>>,
    /// The CRC over the segment being placed (data digests).
    crc: DigestState,
}

impl<'a> Sink<'a> {
    fn none() -> Sink<'a> {
        Sink {
            itt: RESERVED_TAG,
            read: None,
            received: 0,
            write: &[],
            text: None,
            crc: DigestState::new(),
        }
    }
}

/// An engine event with its borrow dropped.
enum Ev {
    Finished {
        itt: u32,
        completion: Completion,
        sense: Vec<u8>,
    },
    Text { itt: u32, ttt: u32, more: bool },
    Logout { itt: u32, response: u8 },
    Refused(NetError),
    Other,
}


fn event(e: Event<'_>) -> Ev {
    match e {
        Event::Finished(f) => Ev::Finished {
            itt: f.itt,
            completion: f.completion,
            sense: f.sense.to_vec(),
        },
        Event::Text {
            itt,
            ttt,
            final_,
            continue_,
            ..
        } => Ev::Text {
            itt,
            ttt,
            more: continue_ || !final_,
        },
        Event::Logout { itt, response, .. } => Ev::Logout { itt, response },
        Event::Rejected { reason, .. } => Ev::Refused(NetError::Protocol(format!(
            "target rejected our PDU (reason {reason:#04x})"
        ))),
        Event::LogoutRequested { .. } => Ev::Refused(NetError::Protocol(
            "target requests logout (async event 1)".into(),
        )),
        // The command stays: the target ends it, or the connection. No ping of ours holds
        // anything back here (one connection, no pings).
        Event::Transmit
        | Event::Released
        | Event::TaskMgmt { .. }
        | Event::Rescan
        | Event::DataDigestRejected { .. } => Ev::Other,
    }
}

/// Why the engine lost the connection, as the driver reports it.
fn lost(l: Lost) -> NetError {
    match l {
        Lost::Framing(e) => rx_error(e),
        Lost::TargetDropsConnection => {
            NetError::Protocol("target is dropping the connection (async event 2)".into())
        }
        Lost::TargetDropsSession => {
            NetError::Protocol("target is dropping the connection (async event 3)".into())
        }
        l => NetError::Protocol(l.to_string()),
    }
}

fn proto_err(what: &str, e: impl std::fmt::Debug) -> NetError {
    NetError::Protocol(format!("{what}: {e:?}"))
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
            // Proto wrote the whole PDU (BHS, data, padding); no digests during login.
            conn.write_all(&out[..n])?;
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
        let write_params = WriteParams::from(&p);
        let tx = vec![TxSlot::default(); tx_capacity(DEPTH, write_params.max_outstanding_r2t)];
        let engine = Conn::new(
            ConnConfig {
                cid: 0,
                digests: Digests {
                    header: p.conn.header_digest,
                    data: p.conn.data_digest,
                },
                max_recv: p.conn.max_recv_data_segment_length,
                max_xmit: p.conn.max_xmit_data_segment_length,
                exp_stat_sn,
                // No pings: the driver waits on the socket with its I/O timeout.
                nop_interval_ms: 0,
                nop_timeout_ms: 0,
                // Every read is bounded by the socket's I/O timeout instead.
                pdu_timeout_ms: 0,
                // One connection: an immediate PDU's CmdSN is exact.
                ping_holds_commands: false,
            },
            tx,
            vec![TaskSlot::default(); DEPTH],
            0,
        );
        Ok(Session {
            stats,
            conn,
            negotiated: Negotiated::new(&done, transcript.keys),
            // Login Requests are immediate: the first command carries the ExpCmdSN they left.
            ffp: FfpSession::new(
                vec![0; DEPTH],
                write_params,
                done.exp_cmd_sn,
                done.max_cmd_sn,
            ),
            engine,
            epoch: Instant::now(),
            discovery: opts.target_name.is_none(),
        })
    }

    /// The parameters in force.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// What crossed the wire so far.
    pub fn stats(&self) -> Stats {
        let c = self.engine.counters();
        Stats {
            pdus_received: self.stats.pdus_received + c.pdus_rx,
            data_in_pdus: c.data_in,
            r2ts: c.r2ts,
            ..self.stats
        }
    }

    /// The connection (for its addresses).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Milliseconds on the engine's clock.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends everything the engine has queued: each header as it wrote it, the data from
    /// `sink`'s write buffer (or the engine's own bytes), padding, and the data digest.
    fn flush(&mut self, sink: &Sink<'_>) -> Result<()> {
        let mut head = [0u8; TX_HEADER_MAX];
        let mut out = Vec::new();
        while let Some(p) = self
            .engine
            .poll_transmit(&mut self.ffp, &Platform, &mut head)
            .map_err(lost)?
        {
            let data: &[u8] = match p.data {
                TxData::None => &[],
                TxData::Bytes(b) => b,
                TxData::Task { itt, offset, len } => {
                    let (at, n) = (offset as usize, len as usize);
                    at.checked_add(n)
                        .filter(|_| itt == sink.itt)
                        .and_then(|end| sink.write.get(at..end))
                        .ok_or_else(|| {
                            NetError::Protocol("Data-Out outside the write buffer".into())
                        })?
                }
            };
            out.clear();
            out.extend_from_slice(&head[..p.header_len]);
            out.extend_from_slice(data);
            out.extend_from_slice(&[0u8; 3][..p.pad]);
            if p.data_digest {
                let mut d = DigestState::new();
                d.update(&Platform, data);
                d.pad(&Platform, data.len());
                out.extend_from_slice(&d.finish_wire());
            }
            match p.kind {
                TxKind::Command { immediate } => self.stats.immediate_bytes += u64::from(immediate),
                TxKind::DataOut { solicited: true } => self.stats.solicited_data_out_pdus += 1,
                TxKind::DataOut { solicited: false } => self.stats.unsolicited_data_out_pdus += 1,
                _ => {}
            }
            self.stats.pdus_sent += 1;
            self.conn.write_all(&out)?;
        }
        Ok(())
    }

    /// Reads what the socket has (waiting for it if nothing is buffered) and feeds it to the
    /// engine, placing data into `sink`; returns the events of the PDUs that ended.
    fn pump(&mut self, sink: &mut Sink<'_>) -> Result<Vec<Ev>> {
        let mut events = Vec::new();
        let now = self.now();
        let mut read = false;
        loop {
            let want = self.engine.want();
            if self.conn.buffered().is_empty() {
                // A PDU can end without another byte (after a placed segment): only wait on
                // the socket when the engine has nothing to do without bytes.
                let stuck = match want {
                    Want::Place { .. } => true,
                    Want::Bytes { .. } => {
                        let r = self
                            .engine
                            .receive(&mut self.ffp, &Platform, &[], now)
                            .map_err(lost)?;
                        match r.event.map(event) {
                            Some(e) => {
                                events.push(e);
                                continue;
                            }
                            None => true,
                        }
                    }
                };
                if stuck {
                    // Read once per pump, and not at all once something happened.
                    if read || !events.is_empty() {
                        return Ok(events);
                    }
                    self.conn.fill()?;
                    read = true;
                }
                continue;
            }
            match want {
                Want::Place {
                    itt,
                    offset,
                    len,
                    digest,
                } => {
                    let bytes = self.conn.buffered();
                    let n = len.min(bytes.len());
                    let piece = &bytes[..n];
                    let at = offset as usize;
                    if itt == sink.itt {
                        let buf = sink.read.as_deref_mut().ok_or_else(|| {
                            NetError::Protocol("Data-In for a command that reads nothing".into())
                        })?;
                        // The engine checked the offset against the command's length.
                        buf.get_mut(at..at + n)
                            .ok_or_else(|| NetError::Protocol("Data-In past the buffer".into()))?
                            .copy_from_slice(piece);
                        sink.received = sink.received.max(at + n);
                    } else {
                        let text = sink.text.as_deref_mut().ok_or_else(|| {
                            NetError::Protocol("data for no command or text request".into())
                        })?;
                        if at + n > MAX_SEND_TARGETS_TEXT {
                            return Err(NetError::Protocol(
                                "SendTargets answer longer than 16 MiB".into(),
                            ));
                        }
                        text.resize(text.len().max(at + n), 0);
                        text[at..at + n].copy_from_slice(piece);
                    }
                    if digest {
                        sink.crc.update(&Platform, piece);
                    }
                    let running = sink.crc;
                    if n == len {
                        sink.crc = DigestState::new();
                    }
                    self.conn.consume(n);
                    self.engine.placed(n, running, now).map_err(lost)?;
                }
                Want::Bytes { .. } => {
                    let bytes = self.conn.buffered();
                    let r = self
                        .engine
                        .receive(&mut self.ffp, &Platform, bytes, now)
                        .map_err(lost)?;
                    let used = r.used;
                    let ev = r.event.map(event);
                    self.conn.consume(used);
                    if let Some(e) = ev {
                        events.push(e);
                    }
                }
            }
        }
    }

    /// Runs the engine until `done` picks an answer out of the events, sending what it
    /// queues meanwhile; a refusal event ends the wait with its error.
    fn wait<T>(
        &mut self,
        sink: &mut Sink<'_>,
        mut done: impl FnMut(&mut Self, Ev) -> Result<Option<T>>,
    ) -> Result<T> {
        loop {
            for e in self.pump(sink)? {
                if let Ev::Refused(err) = e {
                    return Err(err);
                }
                if let Some(t) = done(self, e)? {
                    return Ok(t);
                }
            }
            if self.engine.has_transmit() {
                self.flush(sink)?;
            }
        }
    }

    /// The engine's start of a command or request, waiting (a bounded number of reads) for
    /// the target to open a shut command window.
    fn start<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> std::result::Result<T, StartError>,
    ) -> Result<T> {
        for _ in 0..MAX_WINDOW_WAITS {
            match f(self) {
                Ok(t) => return Ok(t),
                Err(StartError::WindowShut) => {
                    let mut sink = Sink::none();
                    for e in self.pump(&mut sink)? {
                        if let Ev::Refused(err) = e {
                            return Err(err);
                        }
                    }
                    self.flush(&sink)?;
                }
                Err(StartError::Lost) => {
                    return Err(lost(self.engine.lost().unwrap_or(Lost::Closed)))
                }
                Err(e) => return Err(NetError::Protocol(format!("cannot start: {e:?}"))),
            }
        }
        let w = self.ffp.window.numbers();
        Err(NetError::Protocol(format!(
            "the target keeps its command window closed (CmdSN {}, MaxCmdSN {})",
            w.cmd_sn(),
            w.max_cmd_sn()
        )))
    }

    // ---- full feature phase ----------------------------------------------------------------

    /// SendTargets=All on this (discovery) session, following C-bit continuations.
    pub fn send_targets(&mut self) -> Result<Vec<DiscoveredTarget>> {
        let mut body = [0u8; 16];
        let mut w = TextWriter::new(&mut body);
        w.push("SendTargets", "All")
            .map_err(|e| proto_err("SendTargets text", e))?;
        let n = w.len();
        let now = self.now();
        let itt = self.start(|s| s.engine.text(&mut s.ffp, None, &body[..n], now))?;
        let mut all = Vec::new();
        let mut sink = Sink::none();
        sink.text = Some(&mut all);
        self.flush(&sink)?;
        self.wait(&mut sink, |s, e| match e {
            Ev::Text { itt: i, ttt, more } if i == itt => {
                if !more {
                    return Ok(Some(()));
                }
                s.stats.text_continuations += 1;
                // C bit (or F clear): ask for the rest with an empty request echoing the TTT.
                // tgt does not open the command window of a discovery session as the answer
                // goes on (MaxCmdSN stays put): the engine sends it immediate then.
                let now = s.now();
                s.engine
                    .text(&mut s.ffp, Some((itt, ttt)), &[], now)
                    .map_err(|e| NetError::Protocol(format!("SendTargets: {e:?}")))?;
                Ok(None)
            }
            _ => Ok(None),
        })?;
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
        cdb16
            .get_mut(..cdb.len())
            .ok_or_else(|| {
                NetError::Protocol("CDBs longer than 16 bytes are not supported".into())
            })?
            .copy_from_slice(cdb);
        let (read, write): (Option<&mut [u8]>, &[u8]) = match dir {
            DataDir::None => (None, &[]),
            DataDir::Read(b) => (Some(b), &[]),
            DataDir::Write(b) => (None, b),
        };
        let len = |n: usize| {
            u32::try_from(n).map_err(|_| NetError::Protocol("transfer over 4 GiB".into()))
        };
        let spec = CommandSpec {
            tag: 0,
            queue: 0,
            lun: lun_b,
            cdb: cdb16,
            attr: pdu::task_attr::SIMPLE,
            read_len: len(read.as_deref().map_or(0, <[u8]>::len))?,
            write_len: len(write.len())?,
        };
        let itt = self.start(|s| {
            let now = s.now();
            s.engine.start_command(&mut s.ffp, &spec, now)
        })?;
        let mut sink = Sink {
            itt,
            read,
            write,
            ..Sink::none()
        };
        // Immediate data, unsolicited Data-Out and R2T bursts as proto's planner says.
        self.flush(&sink)?;
        let (completion, sense) = self.wait(&mut sink, |_, e| match e {
            Ev::Finished {
                itt: i,
                completion,
                sense,
            } if i == itt => Ok(Some((completion, sense))),
            _ => Ok(None),
        })?;
        if !completion.completed_at_target() {
            return Err(NetError::Response {
                op: cdb.first().copied().unwrap_or(0),
                response: completion.response,
            });
        }
        Ok(ScsiOutcome {
            status: completion.status,
            data_len: sink.received,
            residual: i64::from(completion.residual),
            sense,
        })
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
        let itt = self.start(|s| {
            s.engine
                .logout(&mut s.ffp, pdu::logout_reason::CLOSE_SESSION)
        })?;
        let mut sink = Sink::none();
        self.flush(&sink)?;
        let answer = self.wait(&mut sink, |_, e| match e {
            Ev::Logout { itt: i, response } if i == itt => Ok(Some(response)),
            _ => Ok(None),
        });
        match answer {
            Ok(response) => {
                self.conn.shutdown();
                if response != 0 {
                    return Err(NetError::Protocol(format!(
                        "logout response {response:#04x}"
                    )));
                }
                Ok(())
            }
            // istgt queues the Logout Response to its sender thread and may close the
            // socket before that thread writes it: the session is closed all the same.
            Err(NetError::Closed(c)) => {
                log::warn!("target closed the connection before its Logout Response ({c})");
                Ok(())
            }
            Err(e) => Err(e),
        }
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
