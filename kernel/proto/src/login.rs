//! The login state machine (RFC 7143 sections 6 and 11.12/11.13), sans-IO.
//!
//! The driver loops: `poll_transmit` gives a whole Login Request PDU to send (BHS, data,
//! padding; no digests exist during login), then each received Login Response goes to
//! `handle_pdu`, until `LoginEvent::Complete` or an error. The security stage always comes first
//! (with `AuthMethod=None` and T=1 when no CHAP is configured, which every target accepts),
//! then the operational stage, then the full feature phase.

use super::chap::{self, ChapAnswer, ChapConfig, ChapDigest, ChapError};
use super::pdu::{self, Bhs, LoginRequest, LoginResponse, Pdu, PduError, Stage, BHS_LEN};
use super::text::{self, Limits, Negotiation, OfferScope, Params, TextBuf, TextError, TextWriter};

/// Largest data segment we put in a Login Request: the RFC default MaxRecvDataSegmentLength,
/// since nothing has been declared yet.
pub const MAX_LOGIN_DATA: usize = 8192;
/// Login PDUs we exchange at most before giving up on a target that never transits.
pub const MAX_ROUNDS: u8 = 32;

/// Normal or discovery session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    /// A normal session to a named target.
    Normal,
    /// A discovery session (SendTargets).
    Discovery,
}

/// Everything a login needs; borrowed for the login's life.
#[derive(Debug, Clone, Copy)]
pub struct LoginConfig<'a> {
    /// Our iSCSI name.
    pub initiator_name: &'a str,
    /// Our alias, if any.
    pub initiator_alias: Option<&'a str>,
    /// Target name (required for normal sessions, ignored for discovery).
    pub target_name: &'a str,
    /// Normal or discovery.
    pub session_type: SessionType,
    /// Initiator Session ID (caller-chosen, stable per session).
    pub isid: [u8; 6],
    /// 0 for a new session; the session's TSIH to add a connection or reinstate.
    pub tsih: u16,
    /// Connection ID.
    pub cid: u16,
    /// Initiator Task Tag used by every Login Request of this login.
    pub itt: u32,
    /// CmdSN carried by the Login Requests (they are immediate: it is not advanced).
    pub cmd_sn: u32,
    /// ExpStatSN for the first request (0 on a new connection).
    pub exp_stat_sn: u32,
    /// CHAP, when configured.
    pub chap: Option<ChapConfig<'a>>,
    /// Operational offer and limits.
    pub limits: Limits,
}

/// Details of status class 2 (initiator error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitiatorError {
    /// 0x00: miscellaneous.
    Other,
    /// 0x01: authentication failed.
    AuthenticationFailure,
    /// 0x02: not authorized for this target.
    AuthorizationFailure,
    /// 0x03: target not found.
    NotFound,
    /// 0x04: target removed.
    TargetRemoved,
    /// 0x05: unsupported version.
    UnsupportedVersion,
    /// 0x06: too many connections.
    TooManyConnections,
    /// 0x07: missing parameter.
    MissingParameter,
    /// 0x08: cannot include in session.
    CantIncludeInSession,
    /// 0x09: session type not supported.
    SessionTypeNotSupported,
    /// 0x0a: session does not exist.
    SessionDoesNotExist,
    /// 0x0b: invalid request during login.
    InvalidDuringLogin,
    /// Any other detail code.
    Unknown(u8),
}

/// Details of status class 3 (target error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// 0x00: target error.
    Other,
    /// 0x01: service unavailable.
    ServiceUnavailable,
    /// 0x02: out of resources.
    OutOfResources,
    /// Any other detail code.
    Unknown(u8),
}

/// Protocol violations by the target during login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not a Login Response.
    UnexpectedOpcode(u8),
    /// ITT does not match ours.
    WrongItt,
    /// ISID does not match ours.
    WrongIsid,
    /// CSG does not match the stage we are in.
    WrongStage,
    /// Target transited when we did not ask, or to another stage.
    BadTransit,
    /// TSIH is 0 at the end of a leading login, or differs from the one we gave.
    BadTsih,
    /// Version-active is not 0.
    UnsupportedVersion,
    /// The data segment length does not match the data handed in.
    LengthMismatch,
    /// The target never finishes a stage.
    TooManyRounds,
    /// The target answered AuthMethod with something we did not offer.
    BadAuthMethod,
    /// `handle_pdu` called while no response is expected, or after the end.
    NotExpected,
}

/// Why a login did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Status class 1: log in at the address [`Login::redirect_address`] gives.
    Redirect {
        /// Detail 0x02 (moved permanently) rather than 0x01 (temporarily).
        permanent: bool,
    },
    /// Status class 2.
    Initiator(InitiatorError),
    /// Status class 3.
    Target(TargetError),
    /// A status class this RFC does not define.
    UnknownStatus {
        /// Status class.
        class: u8,
        /// Status detail.
        detail: u8,
    },
    /// Mutual CHAP is configured but the target did not authenticate itself.
    MutualAuthSkipped,
    /// We require CHAP but the target wants none, or the reverse.
    AuthMethodRejected,
    /// CHAP failure.
    Chap(ChapError),
    /// Bad text or a negotiation answer outside what we offered.
    Text(TextError),
    /// Malformed PDU.
    Pdu(PduError),
    /// Target broke the login protocol.
    Protocol(ProtocolError),
    /// The output buffer cannot hold the request.
    BufferTooSmall,
}

impl From<TextError> for LoginError {
    fn from(e: TextError) -> Self {
        LoginError::Text(e)
    }
}

impl From<PduError> for LoginError {
    fn from(e: PduError) -> Self {
        LoginError::Pdu(e)
    }
}

impl From<ChapError> for LoginError {
    fn from(e: ChapError) -> Self {
        LoginError::Chap(e)
    }
}

impl From<ProtocolError> for LoginError {
    fn from(e: ProtocolError) -> Self {
        LoginError::Protocol(e)
    }
}

/// Result of a completed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginComplete {
    /// TSIH of the session.
    pub tsih: u16,
    /// Negotiated values. On a non-leading connection only `conn` was negotiated.
    pub params: Params,
    /// StatSN of the last Login Response; the next ExpStatSN is this + 1.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// What `handle_pdu` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginEvent {
    /// More to send: call `poll_transmit`.
    Continue,
    /// Full feature phase reached.
    Complete(LoginComplete),
}

/// The step we are at: what the next request carries, or what its response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// First PDU: names, session type, AuthMethod.
    SecurityStart,
    /// CHAP_A offer.
    ChapAlgorithm,
    /// CHAP_N/CHAP_R (and our CHAP_I/CHAP_C for mutual).
    ChapResponse,
    /// Empty security request asking to transit.
    SecurityTransit,
    /// First operational request with our offer.
    OperationalStart,
    /// Later operational requests: replies owed, asking to transit.
    OperationalMore,
}

impl Step {
    fn csg(self) -> Stage {
        match self {
            Step::OperationalStart | Step::OperationalMore => Stage::Operational,
            _ => Stage::Security,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next: send this step, or with `cont = Some(t)` an empty request with T=t fetching the
    /// rest of a response.
    Send { step: Step, cont: Option<bool> },
    /// Sent; awaiting the response.
    Await { step: Step, transit: bool },
    /// Complete or failed.
    Done,
}

/// One login on one connection.
pub struct Login<'a> {
    cfg: LoginConfig<'a>,
    digest: &'a dyn ChapDigest,
    rx: TextBuf<'a>,
    neg: Negotiation,
    state: State,
    exp_stat_sn: u32,
    answer: Option<ChapAnswer>,
    mutual_done: bool,
    rounds: u8,
}

impl core::fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Login")
            .field("state", &self.state)
            .field("rounds", &self.rounds)
            .finish()
    }
}

fn initiator_error(d: u8) -> InitiatorError {
    match d {
        0x00 => InitiatorError::Other,
        0x01 => InitiatorError::AuthenticationFailure,
        0x02 => InitiatorError::AuthorizationFailure,
        0x03 => InitiatorError::NotFound,
        0x04 => InitiatorError::TargetRemoved,
        0x05 => InitiatorError::UnsupportedVersion,
        0x06 => InitiatorError::TooManyConnections,
        0x07 => InitiatorError::MissingParameter,
        0x08 => InitiatorError::CantIncludeInSession,
        0x09 => InitiatorError::SessionTypeNotSupported,
        0x0a => InitiatorError::SessionDoesNotExist,
        0x0b => InitiatorError::InvalidDuringLogin,
        other => InitiatorError::Unknown(other),
    }
}

fn target_error(d: u8) -> TargetError {
    match d {
        0x00 => TargetError::Other,
        0x01 => TargetError::ServiceUnavailable,
        0x02 => TargetError::OutOfResources,
        other => TargetError::Unknown(other),
    }
}

/// Map a non-zero status class/detail to its error.
pub fn status_error(class: u8, detail: u8) -> LoginError {
    match class {
        1 => LoginError::Redirect {
            permanent: detail == 2,
        },
        2 => LoginError::Initiator(initiator_error(detail)),
        3 => LoginError::Target(target_error(detail)),
        _ => LoginError::UnknownStatus { class, detail },
    }
}

/// Values of the CHAP keys in one response.
#[derive(Default)]
struct ChapKeys<'t> {
    auth_method: Option<&'t [u8]>,
    a: Option<&'t [u8]>,
    i: Option<&'t [u8]>,
    c: Option<&'t [u8]>,
    n: Option<&'t [u8]>,
    r: Option<&'t [u8]>,
}

impl<'a> Login<'a> {
    /// Start a login. `rx_buf` accumulates a response's text across PDUs (C bit); 8 KiB is
    /// plenty for any target seen, and it bounds what a hostile target can make us hold.
    pub fn new(cfg: &LoginConfig<'a>, digest: &'a dyn ChapDigest, rx_buf: &'a mut [u8]) -> Self {
        let scope = match (cfg.session_type, cfg.tsih) {
            (SessionType::Discovery, _) => OfferScope::Discovery,
            (SessionType::Normal, 0) => OfferScope::Leading,
            (SessionType::Normal, _) => OfferScope::Connection,
        };
        Login {
            cfg: *cfg,
            digest,
            rx: TextBuf::new(rx_buf),
            neg: Negotiation::new(&cfg.limits, scope),
            state: State::Send {
                step: Step::SecurityStart,
                cont: None,
            },
            exp_stat_sn: cfg.exp_stat_sn,
            answer: None,
            mutual_done: false,
            rounds: 0,
        }
    }

    /// ExpStatSN to use after the login (StatSN of the last response + 1).
    pub fn exp_stat_sn(&self) -> u32 {
        self.exp_stat_sn
    }

    /// After `LoginError::Redirect`: the TargetAddress value the target gave.
    pub fn redirect_address(&self) -> Option<&[u8]> {
        text::pairs(self.rx.as_bytes())
            .filter_map(|p| p.ok())
            .find(|(k, _)| *k == b"TargetAddress")
            .map(|(_, v)| v)
    }

    /// Whether the login is over (completed or failed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Write the next Login Request into `out` (BHS + data + padding) and return its length, or
    /// `None` while a response is awaited.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, LoginError> {
        let State::Send { step, cont } = self.state else {
            return Ok(None);
        };
        let r = self.build(step, cont, out);
        match r {
            Ok((n, transit)) => {
                self.state = State::Await { step, transit };
                Ok(Some(n))
            }
            Err(e) => {
                self.state = State::Done;
                Err(e)
            }
        }
    }

    fn build(
        &mut self,
        step: Step,
        cont: Option<bool>,
        out: &mut [u8],
    ) -> Result<(usize, bool), LoginError> {
        if out.len() < BHS_LEN {
            return Err(LoginError::BufferTooSmall);
        }
        let (head, body) = out.split_at_mut(BHS_LEN);
        let cap = body.len().min(MAX_LOGIN_DATA);
        let body = body.get_mut(..cap).ok_or(LoginError::BufferTooSmall)?;
        let mut w = TextWriter::new(body);
        let cfg = self.cfg;
        let next_stage = if step.csg() == Stage::Security {
            Stage::Operational
        } else {
            Stage::FullFeature
        };
        let (transit, nsg) = if let Some(t) = cont {
            (t, next_stage)
        } else {
            match step {
                Step::SecurityStart => {
                    w.push("InitiatorName", cfg.initiator_name)?;
                    if let Some(a) = cfg.initiator_alias {
                        w.push("InitiatorAlias", a)?;
                    }
                    match cfg.session_type {
                        SessionType::Discovery => w.push("SessionType", "Discovery")?,
                        SessionType::Normal => {
                            // SessionType is leading-only (RFC 7143 section 13.21: "LO"): an
                            // added connection (TSIH set) must not send it, and LIO refuses
                            // one that does. TargetName goes on every connection's first
                            // request.
                            if cfg.tsih == 0 {
                                w.push("SessionType", "Normal")?;
                            }
                            w.push("TargetName", cfg.target_name)?;
                        }
                    }
                    match &cfg.chap {
                        None => {
                            w.push("AuthMethod", "None")?;
                            (true, Stage::Operational)
                        }
                        // One-way CHAP protects the target: if it wants no authentication that
                        // is its call. Mutual CHAP protects us: then only CHAP is offered.
                        Some(c) if c.mutual.is_some() => {
                            w.push("AuthMethod", "CHAP")?;
                            (false, Stage::Operational)
                        }
                        Some(_) => {
                            w.push_list("AuthMethod", &["CHAP", "None"])?;
                            (false, Stage::Operational)
                        }
                    }
                }
                Step::ChapAlgorithm => {
                    let c = cfg.chap.as_ref().ok_or(ProtocolError::NotExpected)?;
                    let mut list = [""; 4];
                    for (dst, a) in list.iter_mut().zip(c.offered()) {
                        *dst = match a {
                            chap::ChapAlgorithm::Md5 => "5",
                            chap::ChapAlgorithm::Sha1 => "6",
                            chap::ChapAlgorithm::Sha256 => "7",
                            chap::ChapAlgorithm::Sha3_256 => "8",
                        };
                    }
                    let n = c.offered().len().min(4);
                    w.push_list("CHAP_A", list.get(..n).unwrap_or(&[]))?;
                    (false, Stage::Operational)
                }
                Step::ChapResponse => {
                    let c = cfg.chap.as_ref().ok_or(ProtocolError::NotExpected)?;
                    let ans = self.answer.as_ref().ok_or(ProtocolError::NotExpected)?;
                    w.push("CHAP_N", c.user)?;
                    w.push_hex("CHAP_R", ans.bytes())?;
                    if let Some(m) = &c.mutual {
                        w.push_u32("CHAP_I", m.identifier.into())?;
                        w.push_hex("CHAP_C", m.challenge)?;
                    }
                    (true, Stage::Operational)
                }
                Step::SecurityTransit => (true, Stage::Operational),
                Step::OperationalStart => {
                    self.neg.write_offer(&mut w)?;
                    self.neg.write_replies(&mut w)?;
                    (true, Stage::FullFeature)
                }
                Step::OperationalMore => {
                    self.neg.write_replies(&mut w)?;
                    (true, Stage::FullFeature)
                }
            }
        };
        let dlen = w.len();
        let req = LoginRequest {
            transit,
            continue_: false,
            csg: step.csg(),
            nsg,
            version_max: 0,
            version_min: 0,
            isid: cfg.isid,
            tsih: cfg.tsih,
            itt: cfg.itt,
            cid: cfg.cid,
            cmd_sn: cfg.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        let head: &mut [u8; BHS_LEN] = head.try_into().map_err(|_| LoginError::BufferTooSmall)?;
        Bhs {
            total_ahs_words: 0,
            data_segment_len: u32::try_from(dlen).map_err(|_| LoginError::BufferTooSmall)?,
            pdu: Pdu::LoginRequest(req),
        }
        .encode(head)?;
        let pad = pdu::pad_len(dlen);
        let end = BHS_LEN + dlen;
        out.get_mut(end..end + pad)
            .ok_or(LoginError::BufferTooSmall)?
            .fill(0);
        Ok((end + pad, transit))
    }

    /// Feed one received Login Response: its BHS and its data segment (without padding).
    pub fn handle_pdu(
        &mut self,
        bhs: &[u8; BHS_LEN],
        data: &[u8],
    ) -> Result<LoginEvent, LoginError> {
        let r = self.handle_inner(bhs, data);
        if !matches!(r, Ok(LoginEvent::Continue)) {
            self.state = State::Done;
        }
        r
    }

    fn handle_inner(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) -> Result<LoginEvent, LoginError> {
        let State::Await {
            step,
            transit: asked_transit,
        } = self.state
        else {
            return Err(ProtocolError::NotExpected.into());
        };
        self.rounds = self.rounds.saturating_add(1);
        if self.rounds > MAX_ROUNDS {
            return Err(ProtocolError::TooManyRounds.into());
        }
        let op = pdu::opcode_of(bhs);
        if op != pdu::opcode::LOGIN_RSP {
            return Err(ProtocolError::UnexpectedOpcode(op).into());
        }
        let Pdu::LoginResponse(rsp) = Bhs::decode(bhs)?.pdu else {
            return Err(ProtocolError::UnexpectedOpcode(op).into());
        };
        if pdu::data_segment_len_of(bhs) as usize != data.len() {
            return Err(ProtocolError::LengthMismatch.into());
        }
        if rsp.itt != self.cfg.itt {
            return Err(ProtocolError::WrongItt.into());
        }
        self.exp_stat_sn = rsp.stat_sn.wrapping_add(1);
        if rsp.status_class != 0 {
            // Keep the text for redirect_address().
            self.rx.clear();
            let _ = self.rx.push(data);
            return Err(status_error(rsp.status_class, rsp.status_detail));
        }
        if rsp.version_active != 0 {
            return Err(ProtocolError::UnsupportedVersion.into());
        }
        if rsp.isid != self.cfg.isid {
            return Err(ProtocolError::WrongIsid.into());
        }
        if rsp.csg != step.csg() {
            return Err(ProtocolError::WrongStage.into());
        }
        if rsp.transit {
            let want = if step.csg() == Stage::Security {
                Stage::Operational
            } else {
                Stage::FullFeature
            };
            if !asked_transit || rsp.nsg != want {
                return Err(ProtocolError::BadTransit.into());
            }
        }
        if self.cfg.tsih != 0 && rsp.tsih != 0 && rsp.tsih != self.cfg.tsih {
            return Err(ProtocolError::BadTsih.into());
        }
        self.rx.push(data)?;
        if rsp.continue_ {
            // Our empty request keeps the T bit we asked with (it continues no text of ours),
            // so the target can transit on the last part.
            self.state = State::Send {
                step,
                cont: Some(asked_transit),
            };
            return Ok(LoginEvent::Continue);
        }
        let r = self.process(step, &rsp);
        self.rx.clear();
        r
    }

    fn process(&mut self, step: Step, rsp: &LoginResponse) -> Result<LoginEvent, LoginError> {
        let mut ck = ChapKeys::default();
        // The text lives in self.rx; copy the few CHAP values' positions out by re-parsing, so
        // that the negotiation (which borrows self mutably) can see the other keys.
        let text = self.rx.as_bytes();
        for p in text::pairs(text) {
            let (k, v) = p?;
            match k {
                b"AuthMethod" => ck.auth_method = Some(v),
                b"CHAP_A" => ck.a = Some(v),
                b"CHAP_I" => ck.i = Some(v),
                b"CHAP_C" => ck.c = Some(v),
                b"CHAP_N" => ck.n = Some(v),
                b"CHAP_R" => ck.r = Some(v),
                _ => self.neg.handle(k, v)?,
            }
        }
        let next = match step {
            Step::SecurityStart => match (&self.cfg.chap, ck.auth_method) {
                (None, Some(b"None")) | (None, None) => self.after_security_request(rsp),
                (None, Some(_)) => return Err(LoginError::AuthMethodRejected),
                (Some(_), Some(b"CHAP")) => Step::ChapAlgorithm,
                (Some(c), Some(b"None")) | (Some(c), None) => {
                    if c.mutual.is_some() {
                        return Err(LoginError::MutualAuthSkipped);
                    }
                    self.after_security_request(rsp)
                }
                (Some(_), Some(b"Reject")) => return Err(LoginError::AuthMethodRejected),
                (Some(_), Some(_)) => return Err(ProtocolError::BadAuthMethod.into()),
            },
            Step::ChapAlgorithm => {
                let c = self.cfg.chap.as_ref().ok_or(ProtocolError::NotExpected)?;
                let (Some(a), Some(i), Some(ch)) = (ck.a, ck.i, ck.c) else {
                    return Err(ChapError::Missing.into());
                };
                self.answer = Some(chap::answer_challenge(c, self.digest, a, i, ch)?);
                Step::ChapResponse
            }
            Step::ChapResponse => {
                let c = self.cfg.chap.as_ref().ok_or(ProtocolError::NotExpected)?;
                if let Some(m) = &c.mutual {
                    if !self.mutual_done {
                        let (Some(n), Some(r)) = (ck.n, ck.r) else {
                            return Err(LoginError::MutualAuthSkipped);
                        };
                        let alg = self.answer.as_ref().ok_or(ProtocolError::NotExpected)?.alg;
                        chap::verify_target(m, self.digest, alg, n, r)?;
                        self.mutual_done = true;
                    }
                }
                self.after_security_request(rsp)
            }
            Step::SecurityTransit => {
                if let Some(c) = &self.cfg.chap {
                    if c.mutual.is_some() && !self.mutual_done {
                        return Err(LoginError::MutualAuthSkipped);
                    }
                }
                self.after_security_request(rsp)
            }
            Step::OperationalStart | Step::OperationalMore => {
                if rsp.transit {
                    if self.cfg.tsih == 0 && rsp.tsih == 0 {
                        return Err(ProtocolError::BadTsih.into());
                    }
                    return Ok(LoginEvent::Complete(LoginComplete {
                        tsih: rsp.tsih,
                        params: self.neg.params(),
                        stat_sn: rsp.stat_sn,
                        exp_cmd_sn: rsp.exp_cmd_sn,
                        max_cmd_sn: rsp.max_cmd_sn,
                    }));
                }
                Step::OperationalMore
            }
        };
        self.state = State::Send {
            step: next,
            cont: None,
        };
        Ok(LoginEvent::Continue)
    }

    /// After a security-stage response with nothing more to authenticate: move on if the target
    /// transited, else ask again.
    fn after_security_request(&self, rsp: &LoginResponse) -> Step {
        if rsp.transit {
            Step::OperationalStart
        } else {
            Step::SecurityTransit
        }
    }
}
