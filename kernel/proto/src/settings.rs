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

fn number(value: &[u8], min: u64, max: u64) -> Result<u64, SettingError> {
    let n = parse_number(value).ok_or(SettingError::BadValue)?;
    if n < min || n > max {
        return Err(SettingError::OutOfRange);
    }
    Ok(n)
}

fn boolean(value: &[u8]) -> Result<bool, SettingError> {
    parse_bool(value).ok_or(SettingError::BadValue)
}

fn digest(value: &[u8]) -> Result<DigestPref, SettingError> {
    match value {
        b"None" => Ok(DigestPref::None),
        b"CRC32C" => Ok(DigestPref::Crc32c),
        b"CRC32C,None" => Ok(DigestPref::PreferCrc32c),
        b"None,CRC32C" => Ok(DigestPref::PreferNone),
        _ => Err(SettingError::BadValue),
    }
}

// The `as` conversions below cannot truncate: `number` bounds each value to its field's type.
/// Applies one `key=value` to `limits`. The cross-key rule (FirstBurstLength <=
/// MaxBurstLength) is checked by [`apply_list`], once every item is in.
pub fn apply(limits: &mut Limits, key: &[u8], value: &[u8]) -> Result<(), SettingError> {
    const MAX_DSL: u64 = (1 << 24) - 1;
    match key {
        b"HeaderDigest" => limits.header_digest = digest(value)?,
        b"DataDigest" => limits.data_digest = digest(value)?,
        b"MaxRecvDataSegmentLength" => {
            limits.max_recv_data_segment_length = number(value, 512, MAX_DSL)? as u32
        }
        b"MaxConnections" => limits.max_connections = number(value, 1, 65535)? as u16,
        b"InitialR2T" => limits.initial_r2t = boolean(value)?,
        b"ImmediateData" => limits.immediate_data = boolean(value)?,
        b"MaxBurstLength" => limits.max_burst_length = number(value, 512, MAX_DSL)? as u32,
        b"FirstBurstLength" => limits.first_burst_length = number(value, 512, MAX_DSL)? as u32,
        b"DefaultTime2Wait" => limits.default_time2wait = number(value, 0, 3600)? as u16,
        b"DefaultTime2Retain" => limits.default_time2retain = number(value, 0, 3600)? as u16,
        b"MaxOutstandingR2T" => limits.max_outstanding_r2t = number(value, 1, 65535)? as u16,
        b"DataPDUInOrder" => limits.data_pdu_in_order = boolean(value)?,
        b"DataSequenceInOrder" => limits.data_sequence_in_order = boolean(value)?,
        b"ErrorRecoveryLevel" => limits.error_recovery_level = number(value, 0, 2)? as u8,
        // Authentication is configured through the CHAP credentials, not as a raw key.
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
    let digest = |d: DigestPref| match d {
        DigestPref::None => "None",
        DigestPref::Crc32c => "CRC32C",
        DigestPref::PreferCrc32c => "CRC32C,None",
        DigestPref::PreferNone => "None,CRC32C",
    };
    let yn = |b: bool| if b { "Yes" } else { "No" };
    write!(
        out,
        "HeaderDigest={};DataDigest={};MaxRecvDataSegmentLength={};MaxConnections={};\
         InitialR2T={};ImmediateData={};MaxBurstLength={};FirstBurstLength={};\
         DefaultTime2Wait={};DefaultTime2Retain={};MaxOutstandingR2T={};DataPDUInOrder={};\
         DataSequenceInOrder={};ErrorRecoveryLevel={}",
        digest(limits.header_digest),
        digest(limits.data_digest),
        limits.max_recv_data_segment_length,
        limits.max_connections,
        yn(limits.initial_r2t),
        yn(limits.immediate_data),
        limits.max_burst_length,
        limits.first_burst_length,
        limits.default_time2wait,
        limits.default_time2retain,
        limits.max_outstanding_r2t,
        yn(limits.data_pdu_in_order),
        yn(limits.data_sequence_in_order),
        limits.error_recovery_level,
    )
}
