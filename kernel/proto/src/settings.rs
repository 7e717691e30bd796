//! An administrator's operational keys (`Key=Value;Key=Value`, the seventh field of a CHANNEL
//! line, also written to a channel's `params` attribute in the module) applied to our login
//! offer, [`Limits`]. One parser for the module and the tools, so both refuse the same input.

use super::text::{parse_bool, parse_number, DigestPref, Limits};
use core::fmt;

/// Why a setting was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingError {
    /// An item without `=`.
    MissingEquals,
    /// A key we do not know, or one that is not the administrator's to set (e.g. `TargetName`).
    UnknownKey,
    /// A value of the wrong syntax for its key (not a number, not Yes/No, not a digest list).
    BadValue,
    /// A number outside the range RFC 7143 allows for its key.
    OutOfRange,
    /// FirstBurstLength greater than MaxBurstLength.
    FirstBurstAboveMaxBurst,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SettingError::MissingEquals => "expected Key=Value",
            SettingError::UnknownKey => "unknown or read-only key",
            SettingError::BadValue => "bad value for this key",
            SettingError::OutOfRange => "value out of the range RFC 7143 allows",
            SettingError::FirstBurstAboveMaxBurst => "FirstBurstLength above MaxBurstLength",
        })
    }
}

/// A refused item of a list: its zero-based position and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListError {
    /// Position of the item in the list.
    pub index: usize,
    /// Why it was refused.
    pub error: SettingError,
}

/// The syntax of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A number (decimal, or hexadecimal after `0x`) in `min..=max`.
    Number {
        /// Smallest value allowed.
        min: u64,
        /// Largest value allowed.
        max: u64,
    },
    /// `Yes` or `No`.
    Boolean,
    /// `None`, `CRC32C`, or both in order of preference (`CRC32C,None`, `None,CRC32C`).
    Digest,
}

/// One key [`apply`] accepts, with the syntax of its value.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key, as RFC 7143 spells it (case-sensitive).
    pub name: &'static str,
    /// Its value syntax.
    pub kind: ValueKind,
    /// Where its value goes in [`Limits`].
    store: Store,
}

/// Settings are the same when they are the same key (names are unique in [`SETTINGS`]).
impl PartialEq for Setting {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Setting {}

/// Stores a value of a setting's kind into its field of [`Limits`]. The `as` casts in
/// [`SETTINGS`] cannot truncate: [`parse_value`] bounds each number to its key's range, which
/// fits the field's type.
#[derive(Debug, Clone, Copy)]
enum Store {
    Number(fn(&mut Limits, u64)),
    Boolean(fn(&mut Limits, bool)),
    Digest(fn(&mut Limits, DigestPref)),
}

const MAX_DSL: u64 = (1 << 24) - 1;
const LENGTH: ValueKind = ValueKind::Number {
    min: 512,
    max: MAX_DSL,
};
const COUNT: ValueKind = ValueKind::Number { min: 1, max: 65535 };
const SECONDS: ValueKind = ValueKind::Number { min: 0, max: 3600 };

/// Every key [`apply`] accepts (RFC 7143 section 13 ranges), in the order [`write`] writes them.
/// Any other key is [`SettingError::UnknownKey`]: AuthMethod in particular, since
/// authentication is configured through the CHAP credentials, not as a raw key.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "HeaderDigest",
        kind: ValueKind::Digest,
        store: Store::Digest(|l, d| l.header_digest = d),
    },
    Setting {
        name: "DataDigest",
        kind: ValueKind::Digest,
        store: Store::Digest(|l, d| l.data_digest = d),
    },
    Setting {
        name: "MaxRecvDataSegmentLength",
        kind: LENGTH,
        store: Store::Number(|l, n| l.max_recv_data_segment_length = n as u32),
    },
    Setting {
        name: "MaxConnections",
        kind: COUNT,
        store: Store::Number(|l, n| l.max_connections = n as u16),
    },
    Setting {
        name: "InitialR2T",
        kind: ValueKind::Boolean,
        store: Store::Boolean(|l, b| l.initial_r2t = b),
    },
    Setting {
        name: "ImmediateData",
        kind: ValueKind::Boolean,
        store: Store::Boolean(|l, b| l.immediate_data = b),
    },
    Setting {
        name: "MaxBurstLength",
        kind: LENGTH,
        store: Store::Number(|l, n| l.max_burst_length = n as u32),
    },
    Setting {
        name: "FirstBurstLength",
        kind: LENGTH,
        store: Store::Number(|l, n| l.first_burst_length = n as u32),
    },
    Setting {
        name: "DefaultTime2Wait",
        kind: SECONDS,
        store: Store::Number(|l, n| l.default_time2wait = n as u16),
    },
    Setting {
        name: "DefaultTime2Retain",
        kind: SECONDS,
        store: Store::Number(|l, n| l.default_time2retain = n as u16),
    },
    Setting {
        name: "MaxOutstandingR2T",
        kind: COUNT,
        store: Store::Number(|l, n| l.max_outstanding_r2t = n as u16),
    },
    Setting {
        name: "DataPDUInOrder",
        kind: ValueKind::Boolean,
        store: Store::Boolean(|l, b| l.data_pdu_in_order = b),
    },
    Setting {
        name: "DataSequenceInOrder",
        kind: ValueKind::Boolean,
        store: Store::Boolean(|l, b| l.data_sequence_in_order = b),
    },
    Setting {
        name: "ErrorRecoveryLevel",
        kind: ValueKind::Number { min: 0, max: 2 },
        store: Store::Number(|l, n| l.error_recovery_level = n as u8),
    },
];

/// The entry of [`SETTINGS`] for `key` (exact, case-sensitive match), if it is one.
pub fn setting(key: &[u8]) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name.as_bytes() == key)
}

/// A value that passed its [`ValueKind`]; it displays in the canonical form [`write`] uses
/// (numbers in decimal, without leading zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A number within its key's range.
    Number(u64),
    /// `Yes` or `No`.
    Boolean(bool),
    /// A digest preference.
    Digest(DigestPref),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Boolean(b) => f.write_str(yes_no(b)),
            Value::Digest(d) => f.write_str(digest_text(d)),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn digest_text(d: DigestPref) -> &'static str {
    match d {
        DigestPref::None => "None",
        DigestPref::Crc32c => "CRC32C",
        DigestPref::PreferCrc32c => "CRC32C,None",
        DigestPref::PreferNone => "None,CRC32C",
    }
}

/// Checks `value` against `kind`: what [`apply`] would store.
pub fn parse_value(kind: ValueKind, value: &[u8]) -> Result<Value, SettingError> {
    match kind {
        ValueKind::Number { min, max } => {
            let n = parse_number(value).ok_or(SettingError::BadValue)?;
            if n < min || n > max {
                return Err(SettingError::OutOfRange);
            }
            Ok(Value::Number(n))
        }
        ValueKind::Boolean => parse_bool(value)
            .map(Value::Boolean)
            .ok_or(SettingError::BadValue),
        ValueKind::Digest => match value {
            b"None" => Ok(Value::Digest(DigestPref::None)),
            b"CRC32C" => Ok(Value::Digest(DigestPref::Crc32c)),
            b"CRC32C,None" => Ok(Value::Digest(DigestPref::PreferCrc32c)),
            b"None,CRC32C" => Ok(Value::Digest(DigestPref::PreferNone)),
            _ => Err(SettingError::BadValue),
        },
    }
}

/// Applies one `key=value` to `limits`. The cross-key rule (FirstBurstLength <=
/// MaxBurstLength) is checked by [`apply_list`], once every item is in.
pub fn apply(limits: &mut Limits, key: &[u8], value: &[u8]) -> Result<(), SettingError> {
    let setting = setting(key).ok_or(SettingError::UnknownKey)?;
    match (setting.store, parse_value(setting.kind, value)?) {
        (Store::Number(store), Value::Number(n)) => store(limits, n),
        (Store::Boolean(store), Value::Boolean(b)) => store(limits, b),
        (Store::Digest(store), Value::Digest(d)) => store(limits, d),
        // Not reached: every entry's store takes its kind (tests/settings.rs applies each).
        _ => return Err(SettingError::UnknownKey),
    }
    Ok(())
}

/// Applies a `;`-separated list of `Key=Value` items (empty items are ignored) to a copy of
/// `limits`, and stores the result only if every item is valid: nothing is half-applied.
pub fn apply_list(limits: &mut Limits, list: &[u8]) -> Result<(), ListError> {
    let mut next = *limits;
    for (index, item) in list.split(|&b| b == b';').enumerate() {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        let fail = |error| ListError { index, error };
        let eq = item
            .iter()
            .position(|&b| b == b'=')
            .ok_or(fail(SettingError::MissingEquals))?;
        let key = item.get(..eq).unwrap_or(&[]);
        let value = item.get(eq + 1..).unwrap_or(&[]);
        apply(&mut next, key.trim_ascii(), value.trim_ascii()).map_err(fail)?;
    }
    if next.first_burst_length > next.max_burst_length {
        return Err(ListError {
            index: 0,
            error: SettingError::FirstBurstAboveMaxBurst,
        });
    }
    *limits = next;
    Ok(())
}

/// Writes `limits` as the `Key=Value;...` list [`apply_list`] reads back.
pub fn write(limits: &Limits, out: &mut dyn fmt::Write) -> fmt::Result {
    write!(
        out,
        "HeaderDigest={};DataDigest={};MaxRecvDataSegmentLength={};MaxConnections={};\
         InitialR2T={};ImmediateData={};MaxBurstLength={};FirstBurstLength={};\
         DefaultTime2Wait={};DefaultTime2Retain={};MaxOutstandingR2T={};DataPDUInOrder={};\
         DataSequenceInOrder={};ErrorRecoveryLevel={}",
        digest_text(limits.header_digest),
        digest_text(limits.data_digest),
        limits.max_recv_data_segment_length,
        limits.max_connections,
        yes_no(limits.initial_r2t),
        yes_no(limits.immediate_data),
        limits.max_burst_length,
        limits.first_burst_length,
        limits.default_time2wait,
        limits.default_time2retain,
        limits.max_outstanding_r2t,
        yes_no(limits.data_pdu_in_order),
        yes_no(limits.data_sequence_in_order),
        limits.error_recovery_level,
    )
}

/// An offer this initiator cannot honour, though RFC 7143 allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// ErrorRecoveryLevel above 0: no SNACK, connection recovery or task reassignment.
    ErrorRecoveryLevel,
    /// MaxConnections above 1: the session offers the total of its portals' connection
    /// counts itself (`portals`, `ADDR*N`).
    MaxConnections,
}

impl Unsupported {
    /// The key concerned.
    pub fn key(self) -> &'static str {
        match self {
            Unsupported::ErrorRecoveryLevel => "ErrorRecoveryLevel",
            Unsupported::MaxConnections => "MaxConnections",
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unsupported::ErrorRecoveryLevel => "this initiator does only ErrorRecoveryLevel=0",
            Unsupported::MaxConnections => {
                "MaxConnections comes from the portals' connection counts (ADDR*N in portals)"
            }
        })
    }
}

/// Refuses an offer the initiator would not honour: the module and the tools both ask.
pub fn check_supported(limits: &Limits) -> Result<(), Unsupported> {
    if limits.error_recovery_level > 0 {
        return Err(Unsupported::ErrorRecoveryLevel);
    }
    if limits.max_connections > 1 {
        return Err(Unsupported::MaxConnections);
    }
    Ok(())
}
