//! `/etc/sysconfig/initiator_auth`: CHAP credentials per channel.
//!
//! ```text
//! AUTH="channel mutual user secret [mutual_user mutual_secret]"
//! ```
//!
//! Fields: 1 channel, 2 mutual (0 or 1), 3 user (CHAP_N sent to the target), 4 secret,
//! 5 mutual user (the name the target must answer with), 6 mutual secret. Fields 5 and 6 are
//! required when field 2 is 1 and forbidden when it is 0.
//!
//! The file must not be readable or writable by group or others, must be owned by root (or by
//! the user running the tool) and must not be a symbolic link. No error or warning about it
//! quotes any of its text; secrets are held in [`Secret`] and zeroed when dropped.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use zeroize::Zeroizing;

use super::error::{Broken, ConfigError, ConfigErrors, Field, Warning};
use super::lexer::{lex, number};
use super::secret::Secret;
use super::MAX_CHANNEL_ID;

const F_CHANNEL: Field = Field(1, "channel");
const F_MUTUAL: Field = Field(2, "mutual");
const F_USER: Field = Field(3, "user");
const F_SECRET: Field = Field(4, "secret");
const F_MUTUAL_USER: Field = Field(5, "mutual user");
const F_MUTUAL_SECRET: Field = Field(6, "mutual secret");

/// Longest CHAP name or secret accepted, in bytes.
pub const MAX_CHAP_LEN: usize = 255;
/// Shortest secret accepted without a warning (RFC 7143 section 12.1.3 asks for at least 96
/// bits, i.e. 12 bytes).
pub const MIN_RECOMMENDED_SECRET_LEN: usize = 12;

/// One direction's CHAP name and secret.
#[derive(Debug, Clone, Serialize)]
pub struct ChapPair {
    /// The CHAP name (CHAP_N).
    pub user: String,
    /// The CHAP secret.
    pub secret: Secret,
}

/// The CHAP credentials of one channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChapCredentials {
    /// The initiator's name and secret (the target authenticates the initiator).
    pub initiator: ChapPair,
    /// The target's name and secret, for mutual CHAP (the initiator authenticates the target).
    pub mutual: Option<ChapPair>,
}

/// One AUTH line.
#[derive(Debug, Clone)]
pub struct AuthEntry {
    /// The channel.
    pub channel: u32,
    /// The line it is on.
    pub line: usize,
    /// Its credentials.
    pub credentials: ChapCredentials,
}

/// Reads the auth file: see [`super::read_protected`] (mode 600 or stricter, owned by root or
/// by the user running the tool, not a symbolic link). A missing file is `Ok(None)` (no channel
/// uses CHAP).
pub fn read_auth_file(file: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, ConfigError> {
    super::read_protected(file, super::Protection::Secrets)
}

/// Parses the text of the auth file. Returns the entries by channel, and warnings (short
/// secrets); or every error of the file.
pub fn parse_auth(
    file: &Path,
    text: impl AsRef<[u8]>,
) -> Result<(BTreeMap<u32, AuthEntry>, Vec<Warning>), ConfigErrors> {
    let (out, warnings, _, errors) = parse_auth_all(file, text.as_ref());
    ConfigErrors::check(errors)?;
    Ok((out, warnings))
}

/// [`parse_auth`]'s work: the good lines' entries, warnings, the channels of bad lines, and one
/// error per bad line.
pub(crate) fn parse_auth_all(
    file: &Path,
    text: &[u8],
) -> (
    BTreeMap<u32, AuthEntry>,
    Vec<Warning>,
    Broken,
    Vec<ConfigError>,
) {
    let mut out: BTreeMap<u32, AuthEntry> = BTreeMap::new();
    let mut warnings = Vec::new();
    let lexed = lex(file, text, "AUTH", true);
    let mut errors = lexed.errors;
    let mut broken = lexed.broken;
    for a in lexed.assignments {
        match auth_line(file, &a.words, a.line, &out, &mut warnings) {
            Ok(entry) => {
                out.insert(entry.channel, entry);
            }
            Err(e) => {
                errors.push(e);
                broken.add(a.words.first().map(String::as_str));
            }
        }
    }
    errors.sort_by_key(|e| e.line_number());
    (out, warnings, broken, errors)
}

fn auth_line(
    file: &Path,
    w: &[String],
    line: usize,
    out: &BTreeMap<u32, AuthEntry>,
    warnings: &mut Vec<Warning>,
) -> Result<AuthEntry, ConfigError> {
    let err = |f: Field, p: &str| ConfigError::field(file, line, f, p);
    let channel = number(&w[0], 0, MAX_CHANNEL_ID as u64).ok_or_else(|| {
        err(
            F_CHANNEL,
            &format!("is not a channel id (0-{MAX_CHANNEL_ID})"),
        )
    })? as u32;
    if let Some(prev) = out.get(&channel) {
        return Err(err(
            F_CHANNEL,
            &format!(
                "channel {channel} already has an AUTH line (line {})",
                prev.line
            ),
        ));
    }
    let mutual = match w.get(1).map(String::as_str) {
        Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(err(F_MUTUAL, "must be 0 (one-way CHAP) or 1 (mutual CHAP)")),
        None => return Err(err(F_MUTUAL, "missing")),
    };
    let user = w.get(2).ok_or_else(|| err(F_USER, "missing"))?;
    check_name(user).map_err(|p| err(F_USER, p))?;
    let secret = w.get(3).ok_or_else(|| err(F_SECRET, "missing"))?;
    check_secret(secret).map_err(|p| err(F_SECRET, p))?;
    let mut line_warnings = Vec::new();
    if secret.len() < MIN_RECOMMENDED_SECRET_LEN {
        line_warnings.push(Warning::new(
            file,
            line,
            Some(F_SECRET),
            short_secret_message(),
        ));
    }
    let initiator = ChapPair {
        user: user.clone(),
        secret: Secret::new(secret.as_bytes().to_vec()),
    };
    let mutual_pair = if mutual {
        let muser = w.get(4).ok_or_else(|| {
            err(
                F_MUTUAL_USER,
                "missing (required when field 2 (mutual) is 1)",
            )
        })?;
        check_name(muser).map_err(|p| err(F_MUTUAL_USER, p))?;
        let msecret = w.get(5).ok_or_else(|| {
            err(
                F_MUTUAL_SECRET,
                "missing (required when field 2 (mutual) is 1)",
            )
        })?;
        check_secret(msecret).map_err(|p| err(F_MUTUAL_SECRET, p))?;
        if w.len() > 6 {
            return Err(ConfigError::line(
                file,
                line,
                format!("{} fields; AUTH has at most 6", w.len()),
            ));
        }
        let msecret = Secret::new(msecret.as_bytes().to_vec());
        if msecret.same_as(&initiator.secret) {
            return Err(err(
                F_MUTUAL_SECRET,
                "must differ from field 4 (secret): RFC 7143 forbids one secret for both directions",
            ));
        }
        if msecret.len() < MIN_RECOMMENDED_SECRET_LEN {
            line_warnings.push(Warning::new(
                file,
                line,
                Some(F_MUTUAL_SECRET),
                short_secret_message(),
            ));
        }
        Some(ChapPair {
            user: muser.clone(),
            secret: msecret,
        })
    } else {
        if w.len() > 4 {
            return Err(err(F_MUTUAL_USER, "not allowed when field 2 (mutual) is 0"));
        }
        None
    };
    warnings.extend(line_warnings);
    Ok(AuthEntry {
        channel,
        line,
        credentials: ChapCredentials {
            initiator,
            mutual: mutual_pair,
        },
    })
}

fn short_secret_message() -> String {
    format!(
        "shorter than {MIN_RECOMMENDED_SECRET_LEN} bytes; RFC 7143 asks for at least 96 bits and some targets (LIO) refuse short secrets"
    )
}

fn check_name(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_CHAP_LEN {
        return Err("longer than 255 bytes");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

fn check_secret(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_CHAP_LEN {
        return Err("longer than 255 bytes");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}
