//! iSCSI names (RFC 7143 section 4.2.7, RFC 3720 section 3.2.6.3): `iqn.`, `eui.`, `naa.`.

/// Longest iSCSI name in bytes (RFC 7143 section 4.2.7.1).
pub const MAX_ISCSI_NAME_LEN: usize = 223;

/// Whether `s` starts like an iSCSI name (`iqn.`, `eui.` or `naa.`).
pub fn looks_like_iscsi_name(s: &str) -> bool {
    s.starts_with("iqn.") || s.starts_with("eui.") || s.starts_with("naa.")
}

/// Checks the syntax of an iSCSI name. The error text says what is wrong (and quotes the name).
///
/// * `iqn.YYYY-MM.reversed.domain[:anything]`: a month 01-12, a naming authority of one or more
///   dot-separated labels; characters limited to ASCII letters, digits, `-`, `.` and `:`
///   (RFC 3722 also allows other Unicode, which this initiator does not accept). Names compare
///   case-insensitively; the generator writes lowercase.
/// * `eui.` and 16 hexadecimal digits (EUI-64).
/// * `naa.` and 16 or 32 hexadecimal digits.
///
/// At most 223 bytes.
pub fn validate_iscsi_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_ISCSI_NAME_LEN {
        return Err(format!(
            "\"{name}\" is longer than {MAX_ISCSI_NAME_LEN} bytes"
        ));
    }
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = name.strip_prefix("eui.") {
        if rest.len() == 16 && hex(rest) {
            return Ok(());
        }
        return Err(format!(
            "\"{name}\" is not eui. followed by 16 hexadecimal digits"
        ));
    }
    if let Some(rest) = name.strip_prefix("naa.") {
        if (rest.len() == 16 || rest.len() == 32) && hex(rest) {
            return Ok(());
        }
        return Err(format!(
            "\"{name}\" is not naa. followed by 16 or 32 hexadecimal digits"
        ));
    }
    let Some(rest) = name.strip_prefix("iqn.") else {
        let lower = name.to_ascii_lowercase();
        if looks_like_iscsi_name(&lower) {
            return Err(format!(
                "\"{name}\": an iSCSI name starts with lowercase {}",
                &lower[..4]
            ));
        }
        return Err(format!(
            "\"{name}\" is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui. or naa.)"
        ));
    };
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')))
    {
        return Err(format!(
            "\"{name}\" contains {c:?}: use letters, digits, '-', '.' and ':'"
        ));
    }
    let date_ok = rest.len() >= 7
        && rest.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && rest.as_bytes()[4] == b'-'
        && rest.as_bytes()[5..7].iter().all(u8::is_ascii_digit)
        && matches!(rest[5..7].parse::<u8>(), Ok(1..=12));
    if !date_ok {
        return Err(format!(
            "\"{name}\" lacks the date: iqn.YYYY-MM.reversed.domain[:id]"
        ));
    }
    let after = &rest[7..];
    let Some(authority_and_id) = after.strip_prefix('.') else {
        return Err(format!(
            "\"{name}\" lacks the naming authority: iqn.YYYY-MM.reversed.domain[:id]"
        ));
    };
    let authority = authority_and_id.split(':').next().unwrap_or("");
    let labels_ok = !authority.is_empty()
        && authority
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') && l.len() <= 63);
    if !labels_ok {
        return Err(format!(
            "\"{name}\" has no valid naming authority (a reversed domain name such as com.example)"
        ));
    }
    Ok(())
}
