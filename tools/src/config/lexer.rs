//! The shell-variable syntax shared by the sysconfig files: `VAR="word word ..."`, whole-line
//! `#` comments, comments after the closing quote, blank lines, shell quoting (`shell-words`),
//! CRLF line ends, tabs or spaces between words.

use std::path::Path;

use zeroize::Zeroizing;

use super::error::{Broken, ConfigError};

/// One `VAR="..."` line: its number and the whitespace-separated words of its value.
pub(crate) struct Assignment {
    /// 1-based line number.
    pub(crate) line: usize,
    /// The value's words (zeroed on drop: they may be secrets).
    pub(crate) words: Zeroizing<Vec<String>>,
}

/// What [`lex`] made of a file: the good assignments, the lines it refused and why.
pub(crate) struct Lexed {
    /// The `VAR="..."` lines that were read.
    pub(crate) assignments: Vec<Assignment>,
    /// The channels of refused lines, from the first word of their value when it can be made
    /// out (so that checks about that channel are not made and fail again).
    pub(crate) broken: Broken,
    /// One error per refused line (and one for a byte order mark).
    pub(crate) errors: Vec<ConfigError>,
}

/// Typographic quotes that editors and web pages put where a shell quote belongs.
const CURLY_QUOTES: &[char] = &[
    '\u{201C}', '\u{201D}', '\u{201E}', '\u{201F}', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}',
    '\u{00AB}', '\u{00BB}', '\u{2033}', '\u{2032}',
];

/// The first word of a line's value as written, before any quoting is understood
/// (`CHANNEL="0 1 ...` gives `0`).
fn first_word_guess(raw: &str) -> Option<String> {
    let value = raw.split_once('=')?.1;
    let w = value
        .trim_start_matches(|c: char| {
            c == '"' || c == '\'' || c.is_whitespace() || CURLY_QUOTES.contains(&c)
        })
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || CURLY_QUOTES.contains(&c))
        .next()?;
    (!w.is_empty()).then(|| w.to_string())
}

/// Reads every `var=` assignment of `bytes`, and every problem on the way: a UTF-8 byte order
/// mark, a byte that is not UTF-8 (tolerated in a comment line), a curly quote, bad quoting,
/// another variable, text after the closing quote, an empty value. A refused line is reported
/// once and left out. When `sensitive` is set, no error quotes any text of the line.
pub(crate) fn lex(file: &Path, bytes: &[u8], var: &str, sensitive: bool) -> Lexed {
    let mut out = Lexed {
        assignments: Vec::new(),
        broken: Broken::default(),
        errors: Vec::new(),
    };
    let mut bytes = bytes;
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        out.errors.push(ConfigError::line(
            file,
            1,
            "the file starts with a UTF-8 byte order mark (BOM, bytes EF BB BF): save it without one",
        ));
        bytes = rest;
    }
    for (index, raw_bytes) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = index + 1;
        let raw_bytes = raw_bytes.strip_suffix(b"\r").unwrap_or(raw_bytes);
        let lossy;
        let raw: &str = match std::str::from_utf8(raw_bytes) {
            Ok(t) => t,
            Err(e) => {
                lossy = String::from_utf8_lossy(raw_bytes);
                if lossy.trim_start().starts_with('#') {
                    continue; // a comment in another encoding does no harm
                }
                let at = e.valid_up_to();
                let problem = if sensitive {
                    format!(
                        "byte {} of the line is not UTF-8 (save the file as UTF-8 or ASCII)",
                        at + 1
                    )
                } else {
                    format!(
                        "byte 0x{:02X} (at column {}) is not UTF-8: save the file as UTF-8 or ASCII",
                        raw_bytes[at],
                        at + 1
                    )
                };
                out.errors.push(ConfigError::line(file, line, problem));
                out.broken.add(first_word_guess(&lossy).as_deref());
                continue;
            }
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut refuse = |problem: String| {
            out.errors.push(ConfigError::line(file, line, problem));
            out.broken.add(first_word_guess(trimmed).as_deref());
        };
        // A curly quote is what most likely broke a line that does not parse, and is an error
        // anywhere in the files that hold no secret; in a secret that parses it is data (and
        // is never named: the message would show a character of the secret).
        let curly = trimmed.chars().find(|c| CURLY_QUOTES.contains(c));
        if let (Some(c), false) = (curly, sensitive) {
            refuse(curly_problem(Some(c)));
            continue;
        }
        // Only where no straight double quote is left: one inside a quoted secret is data,
        // and the line's error is another.
        let replaced = curly.filter(|_| !trimmed.contains('"'));
        let mut refuse =
            |problem: String| refuse(replaced.map_or(problem, |_| curly_problem(None)));
        let words = match shell_words::split(trimmed) {
            Ok(w) => Zeroizing::new(w),
            Err(_) => {
                refuse("unterminated quote (expected VAR=\"...\")".to_string());
                continue;
            }
        };
        let Some(first) = words.first() else {
            continue; // only a comment after all
        };
        let value = match first
            .strip_prefix(var)
            .and_then(|rest| rest.strip_prefix('='))
        {
            Some(value) => value,
            None => {
                let name = first.split('=').next().unwrap_or("");
                let spaced = first == var && words.get(1).is_some_and(|w| w.starts_with('='));
                let problem = if spaced {
                    format!("a space before = (write {var}=\"...\")")
                } else if name.eq_ignore_ascii_case(var) {
                    format!("\"{name}\": variable names are case-sensitive, write {var}=\"...\"")
                } else if sensitive {
                    format!("expected {var}=\"...\"")
                } else if first.contains('=') {
                    format!("unknown variable \"{name}\" (expected {var}=\"...\")")
                } else {
                    format!("expected {var}=\"...\", found \"{first}\"")
                };
                refuse(problem);
                continue;
            }
        };
        if words.len() > 1 {
            let problem = if sensitive {
                "unexpected text after the closing quote (quote the whole value; comments start with #)"
                    .to_string()
            } else {
                format!(
                    "unexpected text \"{}\" after the closing quote (quote the whole value; comments start with #)",
                    words[1]
                )
            };
            refuse(problem);
            continue;
        }
        let split: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        if split.is_empty() {
            refuse(format!("{var}= has an empty value"));
            continue;
        }
        out.assignments.push(Assignment {
            line,
            words: Zeroizing::new(split),
        });
    }
    out
}

/// The error for a line with a curly quote: which one, when the file holds no secret.
fn curly_problem(c: Option<char>) -> String {
    const WHY: &str = "where a straight quote \" belongs (a word processor or web page replaced it)";
    match c {
        Some(c) => format!("curly quote {c} (U+{:04X}) {WHY}", c as u32),
        None => format!("a curly quote {WHY}"),
    }
}

/// Parses a decimal number made of ASCII digits only (no sign, no spaces), within `min..=max`.
pub(crate) fn number(text: &str, min: u64, max: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = text.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}
