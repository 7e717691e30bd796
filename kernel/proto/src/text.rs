//! Text key=value data (RFC 7143 section 6): parsing, writing, the continuation accumulator and
//! the negotiation of every login/operational key with its own rule.

/// Longest key name (RFC 7143 section 6.1).
pub const MAX_KEY_LEN: usize = 63;

/// Errors from text parsing, writing and negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// A pair without '='.
    MissingEquals,
    /// A key that is empty, too long or has characters outside the allowed set.
    BadKey,
    /// A value that is not valid for its key (not a number, out of range, not UTF-8 ...).
    BadValue(Key),
    /// The output or accumulation buffer is full.
    Overflow,
    /// The target answered a key we did not offer with a value, or answered twice.
    Unexpected(Key),
    /// The target's answer is outside what we offered or allow.
    OutOfRange(Key),
    /// The target chose a value that was not in our list.
    NotOffered(Key),
    /// The target rejected a key that we cannot do without.
    Rejected(Key),
}

/// Iterator over the key=value pairs of a text data segment. Empty pairs (trailing NULs,
/// padding) are skipped; a final pair without a terminating NUL is still returned.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    rest: &'a [u8],
}

/// Iterate the pairs in `data`.
pub fn pairs(data: &[u8]) -> Pairs<'_> {
    Pairs { rest: data }
}

impl<'a> Pairs<'a> {
    /// The bytes not yet parsed.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

fn key_ok(k: &[u8]) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_'))
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), TextError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (item, rest) = match self.rest.iter().position(|c| *c == 0) {
                Some(i) => (
                    self.rest.get(..i).unwrap_or(&[]),
                    self.rest.get(i + 1..).unwrap_or(&[]),
                ),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            if item.is_empty() {
                continue;
            }
            let Some(eq) = item.iter().position(|c| *c == b'=') else {
                self.rest = &[];
                return Some(Err(TextError::MissingEquals));
            };
            let key = item.get(..eq).unwrap_or(&[]);
            let value = item.get(eq + 1..).unwrap_or(&[]);
            if !key_ok(key) {
                self.rest = &[];
                return Some(Err(TextError::BadKey));
            }
            return Some(Ok((key, value)));
        }
    }
}

/// Accumulates a text data segment that spans several PDUs (C bit) in a caller's buffer.
#[derive(Debug)]
pub struct TextBuf<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> TextBuf<'b> {
    /// Wrap a caller buffer; its size bounds the whole response.
    pub fn new(buf: &'b mut [u8]) -> Self {
        TextBuf { buf, len: 0 }
    }

    /// Append one PDU's data segment (without padding).
    pub fn push(&mut self, data: &[u8]) -> Result<(), TextError> {
        let end = self
            .len
            .checked_add(data.len())
            .ok_or(TextError::Overflow)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(TextError::Overflow)?
            .copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// The bytes accumulated so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Forget the accumulated bytes.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes accumulated.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is accumulated.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Writes key=value\0 pairs into a caller buffer.
#[derive(Debug)]
pub struct TextWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> TextWriter<'b> {
    /// Write into `buf` from its start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        TextWriter { buf, len: 0 }
    }

    fn raw(&mut self, b: &[u8]) -> Result<(), TextError> {
        let end = self.len.checked_add(b.len()).ok_or(TextError::Overflow)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(TextError::Overflow)?
            .copy_from_slice(b);
        self.len = end;
        Ok(())
    }

    /// Write the whole pair or nothing, so a full buffer never leaves half a pair behind.
    fn pair_with(
        &mut self,
        key: &str,
        f: impl FnOnce(&mut Self) -> Result<(), TextError>,
    ) -> Result<(), TextError> {
        if !key_ok(key.as_bytes()) {
            return Err(TextError::BadKey);
        }
        let start = self.len;
        let r = self
            .raw(key.as_bytes())
            .and_then(|_| self.raw(b"="))
            .and_then(|_| f(self))
            .and_then(|_| self.raw(&[0]));
        if r.is_err() {
            self.len = start;
        }
        r
    }

    /// Write `key=value`.
    pub fn push(&mut self, key: &str, value: &str) -> Result<(), TextError> {
        self.push_bytes(key, value.as_bytes())
    }

    /// Write `key=value` with a raw value (must not contain NUL).
    pub fn push_bytes(&mut self, key: &str, value: &[u8]) -> Result<(), TextError> {
        if value.contains(&0) {
            return Err(TextError::BadKey);
        }
        self.pair_with(key, |w| w.raw(value))
    }

    /// Write `key=<decimal>`.
    pub fn push_u32(&mut self, key: &str, value: u32) -> Result<(), TextError> {
        let mut tmp = [0u8; 10];
        let s = fmt_u32(value, &mut tmp);
        self.pair_with(key, |w| w.raw(s))
    }

    /// Write `key=0x<hex>` (binary value in base16).
    pub fn push_hex(&mut self, key: &str, value: &[u8]) -> Result<(), TextError> {
        self.pair_with(key, |w| {
            w.raw(b"0x")?;
            for b in value {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
                w.raw(&[hi, lo])?;
            }
            Ok(())
        })
    }

    /// Write a pre-validated list value `key=a,b,c`.
    pub fn push_list(&mut self, key: &str, items: &[&str]) -> Result<(), TextError> {
        self.pair_with(key, |w| {
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    w.raw(b",")?;
                }
                w.raw(it.as_bytes())?;
            }
            Ok(())
        })
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Format `v` in decimal into `tmp`, returning the used tail.
pub fn fmt_u32(mut v: u32, tmp: &mut [u8; 10]) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(d) = tmp.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    tmp.get(i..).unwrap_or(&[])
}

/// Parse an RFC 7143 numerical value: decimal, or `0x` hexadecimal; at most 64 bits.
pub fn parse_number(v: &[u8]) -> Option<u64> {
    let (digits, radix) = match v {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16u64),
        _ => (v, 10u64),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut acc: u64 = 0;
    for c in digits {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' if radix == 16 => c - b'a' + 10,
            b'A'..=b'F' if radix == 16 => c - b'A' + 10,
            _ => return None,
        };
        acc = acc.checked_mul(radix)?.checked_add(u64::from(d))?;
    }
    Some(acc)
}

/// Parse a `Yes`/`No` value.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"Yes" => Some(true),
        b"No" => Some(false),
        _ => None,
    }
}

/// The keys this initiator knows, with their negotiation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// HeaderDigest (list).
    HeaderDigest,
    /// DataDigest (list).
    DataDigest,
    /// AuthMethod (list).
    AuthMethod,
    /// MaxConnections (numerical minimum).
    MaxConnections,
    /// InitialR2T (boolean OR).
    InitialR2T,
    /// ImmediateData (boolean AND).
    ImmediateData,
    /// MaxRecvDataSegmentLength (declarative).
    MaxRecvDataSegmentLength,
    /// MaxBurstLength (numerical minimum).
    MaxBurstLength,
    /// FirstBurstLength (numerical minimum).
    FirstBurstLength,
    /// DefaultTime2Wait (numerical maximum).
    DefaultTime2Wait,
    /// DefaultTime2Retain (numerical minimum).
    DefaultTime2Retain,
    /// MaxOutstandingR2T (numerical minimum).
    MaxOutstandingR2T,
    /// DataPDUInOrder (boolean OR, RFC 7143 section 13.19).
    DataPduInOrder,
    /// DataSequenceInOrder (boolean OR, RFC 7143 section 13.20).
    DataSequenceInOrder,
    /// ErrorRecoveryLevel (numerical minimum).
    ErrorRecoveryLevel,
    /// TargetPortalGroupTag (declarative, target).
    TargetPortalGroupTag,
    /// TargetAlias (declarative, target).
    TargetAlias,
    /// TargetAddress (declarative, target; redirection and SendTargets).
    TargetAddress,
    /// TargetName (declarative).
    TargetName,
    /// InitiatorName (declarative, initiator only).
    InitiatorName,
    /// InitiatorAlias (declarative, initiator only).
    InitiatorAlias,
    /// SessionType (declarative, initiator only).
    SessionType,
    /// IFMarker / OFMarker (obsolete in RFC 7143; always No).
    Marker,
    /// IFMarkInt / OFMarkInt (obsolete; Irrelevant).
    MarkInt,
    /// Any other key (answered NotUnderstood).
    Unknown,
}

impl Key {
    /// Look a key name up.
    pub fn from_name(k: &[u8]) -> Key {
        match k {
            b"HeaderDigest" => Key::HeaderDigest,
            b"DataDigest" => Key::DataDigest,
            b"AuthMethod" => Key::AuthMethod,
            b"MaxConnections" => Key::MaxConnections,
            b"InitialR2T" => Key::InitialR2T,
            b"ImmediateData" => Key::ImmediateData,
            b"MaxRecvDataSegmentLength" => Key::MaxRecvDataSegmentLength,
            b"MaxBurstLength" => Key::MaxBurstLength,
            b"FirstBurstLength" => Key::FirstBurstLength,
            b"DefaultTime2Wait" => Key::DefaultTime2Wait,
            b"DefaultTime2Retain" => Key::DefaultTime2Retain,
            b"MaxOutstandingR2T" => Key::MaxOutstandingR2T,
            b"DataPDUInOrder" => Key::DataPduInOrder,
            b"DataSequenceInOrder" => Key::DataSequenceInOrder,
            b"ErrorRecoveryLevel" => Key::ErrorRecoveryLevel,
            b"TargetPortalGroupTag" => Key::TargetPortalGroupTag,
            b"TargetAlias" => Key::TargetAlias,
            b"TargetAddress" => Key::TargetAddress,
            b"TargetName" => Key::TargetName,
            b"InitiatorName" => Key::InitiatorName,
            b"InitiatorAlias" => Key::InitiatorAlias,
            b"SessionType" => Key::SessionType,
            b"IFMarker" | b"OFMarker" => Key::Marker,
            b"IFMarkInt" | b"OFMarkInt" => Key::MarkInt,
            _ => Key::Unknown,
        }
    }
}

/// Digest choice for HeaderDigest / DataDigest offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestPref {
    /// Offer `None` only.
    #[default]
    None,
    /// Offer `CRC32C` only (the target must accept digests).
    Crc32c,
    /// Offer `CRC32C,None`.
    PreferCrc32c,
    /// Offer `None,CRC32C`.
    PreferNone,
}

impl DigestPref {
    fn list(self) -> &'static [&'static str] {
        match self {
            DigestPref::None => &["None"],
            DigestPref::Crc32c => &["CRC32C"],
            DigestPref::PreferCrc32c => &["CRC32C", "None"],
            DigestPref::PreferNone => &["None", "CRC32C"],
        }
    }

    fn allows(self, crc: bool) -> bool {
        match self {
            DigestPref::None => !crc,
            DigestPref::Crc32c => crc,
            DigestPref::PreferCrc32c | DigestPref::PreferNone => true,
        }
    }
}

/// What we offer, which is also the bound we enforce on the target's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// HeaderDigest offer.
    pub header_digest: DigestPref,
    /// DataDigest offer.
    pub data_digest: DigestPref,
    /// Our MaxRecvDataSegmentLength (declared; 512..=2^24-1).
    pub max_recv_data_segment_length: u32,
    /// MaxConnections offered (answer must be 1..=this).
    pub max_connections: u16,
    /// InitialR2T offered.
    pub initial_r2t: bool,
    /// ImmediateData offered.
    pub immediate_data: bool,
    /// MaxBurstLength offered (answer must be 512..=this).
    pub max_burst_length: u32,
    /// FirstBurstLength offered (answer must be 512..=this).
    pub first_burst_length: u32,
    /// DefaultTime2Wait offered (answer must be this..=`max_time2wait`).
    pub default_time2wait: u16,
    /// Largest DefaultTime2Wait we accept.
    pub max_time2wait: u16,
    /// DefaultTime2Retain offered (answer must be 0..=this).
    pub default_time2retain: u16,
    /// MaxOutstandingR2T offered (answer must be 1..=this).
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder offered.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder offered.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel offered (answer must be 0..=this).
    pub error_recovery_level: u8,
}

impl Default for Limits {
    /// Our preferred offer: the RFC defaults except the performance-relevant ones.
    fn default() -> Self {
        Limits {
            header_digest: DigestPref::PreferNone,
            data_digest: DigestPref::PreferNone,
            max_recv_data_segment_length: 262_144,
            max_connections: 1,
            initial_r2t: false,
            immediate_data: true,
            max_burst_length: 16_776_192,
            first_burst_length: 262_144,
            default_time2wait: 2,
            max_time2wait: 3600,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// Negotiated session-wide values (RFC defaults until negotiated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionParams {
    /// MaxConnections.
    pub max_connections: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength (never above MaxBurstLength).
    pub first_burst_length: u32,
    /// DefaultTime2Wait.
    pub default_time2wait: u16,
    /// DefaultTime2Retain.
    pub default_time2retain: u16,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u8,
    /// TargetPortalGroupTag declared by the target, if any.
    pub target_portal_group_tag: Option<u16>,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            target_portal_group_tag: None,
        }
    }
}

/// Negotiated connection values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnParams {
    /// HeaderDigest=CRC32C.
    pub header_digest: bool,
    /// DataDigest=CRC32C.
    pub data_digest: bool,
    /// What we declared: the largest data segment we accept.
    pub max_recv_data_segment_length: u32,
    /// What the target declared: the largest data segment we may send it.
    pub max_xmit_data_segment_length: u32,
}

impl Default for ConnParams {
    fn default() -> Self {
        ConnParams {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: 8192,
            max_xmit_data_segment_length: 8192,
        }
    }
}

/// Session plus connection values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// Session-wide values.
    pub session: SessionParams,
    /// This connection's values.
    pub conn: ConnParams,
}

/// Which set of operational keys a login offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferScope {
    /// A discovery session: connection keys only (session keys are irrelevant there).
    Discovery,
    /// The leading connection of a normal session: every key.
    Leading,
    /// A further connection of an existing session: connection keys only.
    Connection,
}

const NKEYS: usize = 14;

fn slot(k: Key) -> Option<usize> {
    Some(match k {
        Key::HeaderDigest => 0,
        Key::DataDigest => 1,
        Key::MaxConnections => 2,
        Key::InitialR2T => 3,
        Key::ImmediateData => 4,
        Key::MaxRecvDataSegmentLength => 5,
        Key::MaxBurstLength => 6,
        Key::FirstBurstLength => 7,
        Key::DefaultTime2Wait => 8,
        Key::DefaultTime2Retain => 9,
        Key::MaxOutstandingR2T => 10,
        Key::DataPduInOrder => 11,
        Key::DataSequenceInOrder => 12,
        Key::ErrorRecoveryLevel => 13,
        _ => return None,
    })
}

/// Per-key bookkeeping: did we offer it, did the target answer it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct KeyState {
    offered: bool,
    answered: bool,
}

/// Reply owed to the target for a key it proposed (written in our next request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Num(u32),
    Str(&'static str),
}

/// Largest number of replies to target-proposed keys outside our table we keep (more is treated
/// as overflow: no sane target proposes that many).
const MAX_EXTRA: usize = 8;

/// A reply to a key outside our table, echoing the key name the target used.
type Extra = ([u8; MAX_KEY_LEN], u8, &'static str);

/// The operational-parameter negotiation of one login.
#[derive(Debug, Clone)]
pub struct Negotiation {
    limits: Limits,
    scope: OfferScope,
    state: [KeyState; NKEYS],
    replies: [Option<Reply>; NKEYS],
    extra: [Extra; MAX_EXTRA],
    n_extra: usize,
    params: Params,
}

const KEY_NAMES: [&str; NKEYS] = [
    "HeaderDigest",
    "DataDigest",
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
];

const ALL: [Key; NKEYS] = [
    Key::HeaderDigest,
    Key::DataDigest,
    Key::MaxConnections,
    Key::InitialR2T,
    Key::ImmediateData,
    Key::MaxRecvDataSegmentLength,
    Key::MaxBurstLength,
    Key::FirstBurstLength,
    Key::DefaultTime2Wait,
    Key::DefaultTime2Retain,
    Key::MaxOutstandingR2T,
    Key::DataPduInOrder,
    Key::DataSequenceInOrder,
    Key::ErrorRecoveryLevel,
];

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn in_scope(scope: OfferScope, k: Key) -> bool {
    match k {
        Key::HeaderDigest | Key::DataDigest | Key::MaxRecvDataSegmentLength => true,
        Key::Marker => false,
        _ => scope == OfferScope::Leading,
    }
}

impl Negotiation {
    /// Start a negotiation with our offer/limits. Values outside the RFC ranges are clamped
    /// into them, so a bad configuration cannot produce an offer the RFC forbids.
    pub fn new(limits: &Limits, scope: OfferScope) -> Self {
        let mut l = *limits;
        l.max_recv_data_segment_length = l.max_recv_data_segment_length.clamp(512, 0x00ff_ffff);
        l.max_burst_length = l.max_burst_length.clamp(512, 0x00ff_ffff);
        l.first_burst_length = l.first_burst_length.clamp(512, l.max_burst_length);
        l.max_connections = l.max_connections.max(1);
        l.max_outstanding_r2t = l.max_outstanding_r2t.max(1);
        l.default_time2wait = l.default_time2wait.min(3600);
        l.max_time2wait = l.max_time2wait.clamp(l.default_time2wait, 3600);
        l.default_time2retain = l.default_time2retain.min(3600);
        l.error_recovery_level = l.error_recovery_level.min(2);
        let mut params = Params::default();
        params.conn.max_recv_data_segment_length = l.max_recv_data_segment_length;
        Negotiation {
            limits: l,
            scope,
            state: [KeyState::default(); NKEYS],
            replies: [None; NKEYS],
            extra: [([0; MAX_KEY_LEN], 0, ""); MAX_EXTRA],
            n_extra: 0,
            params,
        }
    }

    /// The (clamped) limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Write our offer of every key in scope.
    pub fn write_offer(&mut self, w: &mut TextWriter<'_>) -> Result<(), TextError> {
        let l = self.limits;
        for (i, k) in ALL.iter().enumerate() {
            if !in_scope(self.scope, *k) {
                continue;
            }
            let name = KEY_NAMES.get(i).copied().unwrap_or("");
            match k {
                Key::HeaderDigest => w.push_list(name, l.header_digest.list())?,
                Key::DataDigest => w.push_list(name, l.data_digest.list())?,
                Key::MaxConnections => w.push_u32(name, l.max_connections.into())?,
                Key::InitialR2T => w.push(name, yes_no(l.initial_r2t))?,
                Key::ImmediateData => w.push(name, yes_no(l.immediate_data))?,
                Key::MaxRecvDataSegmentLength => {
                    w.push_u32(name, l.max_recv_data_segment_length)?
                }
                Key::MaxBurstLength => w.push_u32(name, l.max_burst_length)?,
                Key::FirstBurstLength => w.push_u32(name, l.first_burst_length)?,
                Key::DefaultTime2Wait => w.push_u32(name, l.default_time2wait.into())?,
                Key::DefaultTime2Retain => w.push_u32(name, l.default_time2retain.into())?,
                Key::MaxOutstandingR2T => w.push_u32(name, l.max_outstanding_r2t.into())?,
                Key::DataPduInOrder => w.push(name, yes_no(l.data_pdu_in_order))?,
                Key::DataSequenceInOrder => w.push(name, yes_no(l.data_sequence_in_order))?,
                Key::ErrorRecoveryLevel => w.push_u32(name, l.error_recovery_level.into())?,
                _ => {}
            }
            if let Some(s) = self.state.get_mut(i) {
                s.offered = true;
            }
        }
        // A Boolean offer that decides the result by itself needs no answer (RFC 7143 6.2.2):
        // ImmediateData=No (AND), and Yes for the OR keys. LIO leaves ImmediateData=No
        // unanswered; taking its silence for the default (Yes) sent immediate data the target
        // refuses. An answer that does come is checked against the offer all the same.
        let s = &mut self.params.session;
        let offered = |k| in_scope(self.scope, k);
        if offered(Key::ImmediateData) && !l.immediate_data {
            s.immediate_data = false;
        }
        if offered(Key::InitialR2T) && l.initial_r2t {
            s.initial_r2t = true;
        }
        if offered(Key::DataPduInOrder) && l.data_pdu_in_order {
            s.data_pdu_in_order = true;
        }
        if offered(Key::DataSequenceInOrder) && l.data_sequence_in_order {
            s.data_sequence_in_order = true;
        }
        Ok(())
    }

    /// Whether we owe the target answers to keys it proposed.
    pub fn has_replies(&self) -> bool {
        self.n_extra > 0 || self.replies.iter().any(|r| r.is_some())
    }

    /// Write (and forget) the answers we owe the target.
    pub fn write_replies(&mut self, w: &mut TextWriter<'_>) -> Result<(), TextError> {
        for i in 0..NKEYS {
            let Some(r) = self.replies.get(i).copied().flatten() else {
                continue;
            };
            let name = KEY_NAMES.get(i).copied().unwrap_or("");
            match r {
                Reply::Num(n) => w.push_u32(name, n)?,
                Reply::Str(s) => w.push(name, s)?,
            }
            if let Some(x) = self.replies.get_mut(i) {
                *x = None;
            }
        }
        for (k, len, reply) in self.extra.iter().take(self.n_extra) {
            let key = k.get(..usize::from(*len)).unwrap_or(&[]);
            let key = core::str::from_utf8(key).map_err(|_| TextError::BadKey)?;
            w.push(key, reply)?;
        }
        self.n_extra = 0;
        Ok(())
    }

    /// The values negotiated so far (RFC defaults for keys not negotiated), with
    /// FirstBurstLength capped at MaxBurstLength.
    pub fn params(&self) -> Params {
        let mut p = self.params;
        // The target computes FirstBurstLength and MaxBurstLength independently and may leave
        // FirstBurst above MaxBurst; sending less unsolicited data than allowed is always safe.
        if p.session.first_burst_length > p.session.max_burst_length {
            p.session.first_burst_length = p.session.max_burst_length;
        }
        p
    }

    /// Process one key=value from the target (an answer to our offer or its own proposal).
    pub fn handle(&mut self, key: &[u8], value: &[u8]) -> Result<(), TextError> {
        let k = Key::from_name(key);
        match k {
            Key::TargetPortalGroupTag => {
                let n = parse_number(value)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or(TextError::BadValue(k))?;
                self.params.session.target_portal_group_tag = Some(n);
                return Ok(());
            }
            Key::TargetAlias | Key::TargetAddress | Key::TargetName | Key::AuthMethod => {
                return Ok(())
            }
            Key::InitiatorName | Key::InitiatorAlias | Key::SessionType => {
                return Err(TextError::Unexpected(k));
            }
            // Markers are gone from RFC 7143; an RFC 3720 target may still propose them.
            Key::Marker => {
                Self::boolean(k, value)?;
                return self.remember_extra(key, "No");
            }
            Key::MarkInt => return self.remember_extra(key, "Irrelevant"),
            Key::Unknown => return self.remember_extra(key, "NotUnderstood"),
            _ => {}
        }
        let Some(i) = slot(k) else {
            return Err(TextError::Unexpected(k));
        };
        let st = self.state.get(i).copied().unwrap_or_default();
        if st.answered && k != Key::MaxRecvDataSegmentLength {
            return Err(TextError::Unexpected(k));
        }
        let answer = st.offered;
        if let Some(s) = self.state.get_mut(i) {
            s.answered = true;
        }
        // Special answers: the key keeps its default value (RFC 7143 section 6.2).
        match value {
            b"Reject" | b"Irrelevant" | b"NotUnderstood" if answer => {
                let l = &self.limits;
                // Only a target that refuses what we strictly require is fatal.
                let required = match k {
                    Key::HeaderDigest => l.header_digest == DigestPref::Crc32c,
                    Key::DataDigest => l.data_digest == DigestPref::Crc32c,
                    _ => false,
                };
                return if required {
                    Err(TextError::Rejected(k))
                } else {
                    Ok(())
                };
            }
            _ => {}
        }
        if answer {
            self.apply_answer(k, value)
        } else {
            self.answer_proposal(k, i, value)
        }
    }

    fn remember_extra(&mut self, key: &[u8], reply: &'static str) -> Result<(), TextError> {
        let slot = self
            .extra
            .get_mut(self.n_extra)
            .ok_or(TextError::Overflow)?;
        let dst = slot.0.get_mut(..key.len()).ok_or(TextError::BadKey)?;
        dst.copy_from_slice(key);
        slot.1 = u8::try_from(key.len()).map_err(|_| TextError::BadKey)?;
        slot.2 = reply;
        self.n_extra += 1;
        Ok(())
    }

    fn num(k: Key, v: &[u8], lo: u32, hi: u32) -> Result<u32, TextError> {
        let n = parse_number(v).ok_or(TextError::BadValue(k))?;
        let n = u32::try_from(n).map_err(|_| TextError::OutOfRange(k))?;
        if n < lo || n > hi {
            return Err(TextError::OutOfRange(k));
        }
        Ok(n)
    }

    fn boolean(k: Key, v: &[u8]) -> Result<bool, TextError> {
        parse_bool(v).ok_or(TextError::BadValue(k))
    }

    fn digest(k: Key, v: &[u8]) -> Result<bool, TextError> {
        match v {
            b"CRC32C" => Ok(true),
            b"None" => Ok(false),
            _ => Err(TextError::NotOffered(k)),
        }
    }

    /// The target answered a key we offered: the answer must obey the key's rule.
    fn apply_answer(&mut self, k: Key, v: &[u8]) -> Result<(), TextError> {
        let l = self.limits;
        let s = &mut self.params.session;
        let c = &mut self.params.conn;
        match k {
            Key::HeaderDigest | Key::DataDigest => {
                let pref = if k == Key::HeaderDigest {
                    l.header_digest
                } else {
                    l.data_digest
                };
                let crc = Self::digest(k, v)?;
                if !pref.allows(crc) {
                    return Err(TextError::NotOffered(k));
                }
                if k == Key::HeaderDigest {
                    c.header_digest = crc;
                } else {
                    c.data_digest = crc;
                }
            }
            Key::MaxConnections => {
                s.max_connections = Self::num(k, v, 1, l.max_connections.into())? as u16;
            }
            Key::InitialR2T => {
                let b = Self::boolean(k, v)?;
                // OR: an offered Yes cannot come back No.
                if l.initial_r2t && !b {
                    return Err(TextError::OutOfRange(k));
                }
                s.initial_r2t = b;
            }
            Key::ImmediateData | Key::DataPduInOrder | Key::DataSequenceInOrder => {
                let b = Self::boolean(k, v)?;
                let (offered, dst) = match k {
                    Key::ImmediateData => (l.immediate_data, &mut s.immediate_data),
                    Key::DataPduInOrder => (l.data_pdu_in_order, &mut s.data_pdu_in_order),
                    _ => (l.data_sequence_in_order, &mut s.data_sequence_in_order),
                };
                // ImmediateData is AND: an offered No cannot come back Yes. The two ordering
                // keys are OR: an offered Yes cannot come back No.
                let bad = if k == Key::ImmediateData {
                    !offered && b
                } else {
                    offered && !b
                };
                if bad {
                    return Err(TextError::OutOfRange(k));
                }
                *dst = b;
            }
            Key::MaxRecvDataSegmentLength => {
                c.max_xmit_data_segment_length = Self::num(k, v, 512, 0x00ff_ffff)?;
            }
            Key::MaxBurstLength => {
                s.max_burst_length = Self::num(k, v, 512, l.max_burst_length)?;
            }
            Key::FirstBurstLength => {
                s.first_burst_length = Self::num(k, v, 512, l.first_burst_length)?;
            }
            Key::DefaultTime2Wait => {
                s.default_time2wait =
                    Self::num(k, v, l.default_time2wait.into(), l.max_time2wait.into())? as u16;
            }
            Key::DefaultTime2Retain => {
                s.default_time2retain = Self::num(k, v, 0, l.default_time2retain.into())? as u16;
            }
            Key::MaxOutstandingR2T => {
                s.max_outstanding_r2t = Self::num(k, v, 1, l.max_outstanding_r2t.into())? as u16;
            }
            Key::ErrorRecoveryLevel => {
                s.error_recovery_level = Self::num(k, v, 0, l.error_recovery_level.into())? as u8;
            }
            _ => return Err(TextError::Unexpected(k)),
        }
        Ok(())
    }

    /// The target proposed a key we did not offer: compute the result by the key's rule from
    /// its value and our limits, record it and queue our answer.
    fn answer_proposal(&mut self, k: Key, i: usize, v: &[u8]) -> Result<(), TextError> {
        let l = self.limits;
        let s = &mut self.params.session;
        let c = &mut self.params.conn;
        let reply = match k {
            Key::HeaderDigest | Key::DataDigest => {
                let pref = if k == Key::HeaderDigest {
                    l.header_digest
                } else {
                    l.data_digest
                };
                // Pick the first item of the target's list we accept, in its order.
                let mut pick = None;
                for item in v.split(|c| *c == b',') {
                    if let Ok(crc) = Self::digest(k, item) {
                        if pref.allows(crc) {
                            pick = Some(crc);
                            break;
                        }
                    }
                }
                match pick {
                    Some(crc) => {
                        if k == Key::HeaderDigest {
                            c.header_digest = crc;
                        } else {
                            c.data_digest = crc;
                        }
                        Reply::Str(if crc { "CRC32C" } else { "None" })
                    }
                    None => Reply::Str("Reject"),
                }
            }
            Key::MaxRecvDataSegmentLength => {
                // Declarative: the target tells us its receive limit; we owe no answer beyond
                // our own declaration, which the offer carries.
                c.max_xmit_data_segment_length = Self::num(k, v, 512, 0x00ff_ffff)?;
                return Ok(());
            }
            Key::MaxConnections
            | Key::MaxBurstLength
            | Key::FirstBurstLength
            | Key::DefaultTime2Retain
            | Key::MaxOutstandingR2T
            | Key::ErrorRecoveryLevel => {
                let (lo, hi): (u32, u32) = match k {
                    Key::MaxConnections => (1, 65535),
                    Key::MaxBurstLength | Key::FirstBurstLength => (512, 0x00ff_ffff),
                    Key::DefaultTime2Retain => (0, 3600),
                    Key::MaxOutstandingR2T => (1, 65535),
                    _ => (0, 2),
                };
                let theirs = Self::num(k, v, lo, hi)?;
                let ours: u32 = match k {
                    Key::MaxConnections => l.max_connections.into(),
                    Key::MaxBurstLength => l.max_burst_length,
                    Key::FirstBurstLength => l.first_burst_length,
                    Key::DefaultTime2Retain => l.default_time2retain.into(),
                    Key::MaxOutstandingR2T => l.max_outstanding_r2t.into(),
                    _ => l.error_recovery_level.into(),
                };
                let r = theirs.min(ours);
                match k {
                    Key::MaxConnections => s.max_connections = r as u16,
                    Key::MaxBurstLength => s.max_burst_length = r,
                    Key::FirstBurstLength => s.first_burst_length = r,
                    Key::DefaultTime2Retain => s.default_time2retain = r as u16,
                    Key::MaxOutstandingR2T => s.max_outstanding_r2t = r as u16,
                    _ => s.error_recovery_level = r as u8,
                }
                Reply::Num(r)
            }
            Key::DefaultTime2Wait => {
                let theirs = Self::num(k, v, 0, 3600)?;
                let r = theirs.max(l.default_time2wait.into());
                if r > u32::from(l.max_time2wait) {
                    return Err(TextError::OutOfRange(k));
                }
                s.default_time2wait = r as u16;
                Reply::Num(r)
            }
            Key::InitialR2T | Key::DataPduInOrder | Key::DataSequenceInOrder => {
                let theirs = Self::boolean(k, v)?;
                let (ours, dst) = match k {
                    Key::InitialR2T => (l.initial_r2t, &mut s.initial_r2t),
                    Key::DataPduInOrder => (l.data_pdu_in_order, &mut s.data_pdu_in_order),
                    _ => (l.data_sequence_in_order, &mut s.data_sequence_in_order),
                };
                *dst = theirs || ours;
                Reply::Str(yes_no(*dst))
            }
            Key::ImmediateData => {
                let r = Self::boolean(k, v)? && l.immediate_data;
                s.immediate_data = r;
                Reply::Str(yes_no(r))
            }
            _ => return Err(TextError::Unexpected(k)),
        };
        if let Some(r) = self.replies.get_mut(i) {
            *r = Some(reply);
        }
        Ok(())
    }

    /// Feed every pair of a complete text segment.
    pub fn handle_all(&mut self, data: &[u8]) -> Result<(), TextError> {
        for p in pairs(data) {
            let (k, v) = p?;
            self.handle(k, v)?;
        }
        Ok(())
    }
}
