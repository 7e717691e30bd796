//! The shell-variable syntax shared by the sysconfig files: `VAR="word word ..."`, whole-line
//! `#` comments, comments after the closing quote, blank lines, shell quoting (`shell-words`).

use std::path::Path;

use zeroize::Zeroizing;

use super::error::ConfigError;

/// One `VAR="..."` line: its number and the whitespace-separated words of its value.
pub(crate) struct Assignment {
    /// 1-based line number.
    pub(crate) line: usize,
    /// The value's words (zeroed on drop: they may be secrets).
    pub(crate) words: Zeroizing<Vec<String>>,
}

/// Reads every `var=` assignment of `text`. Any other non-comment line is an error. When
/// `sensitive` is set, no error quotes any text of the line.
pub(crate) fn assignments(
    file: &Path,
    text: &str,
    var: &str,
    sensitive: bool,
) -> Result<Vec<Assignment>, ConfigError> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words = Zeroizing::new(shell_words::split(trimmed).map_err(|_| {
            ConfigError::line(file, line, "unterminated quote (expected VAR=\"...\")")
        })?);
        let Some(first) = words.first() else {
            continue; // only a comment after all
        };
        let value = match first
            .strip_prefix(var)
            .and_then(|rest| rest.strip_prefix('='))
        {
            Some(value) => value,
            None => {
                let problem = if sensitive {
                    format!("expected {var}=\"...\"")
                } else {
                    let name = first.split('=').next().unwrap_or("");
                    if first.contains('=') {
                        format!("unknown variable \"{name}\" (expected {var}=\"...\")")
                    } else {
                        format!("expected {var}=\"...\", found \"{first}\"")
                    }
                };
                return Err(ConfigError::line(file, line, problem));
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
            return Err(ConfigError::line(file, line, problem));
        }
        let split: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        if split.is_empty() {
            return Err(ConfigError::line(
                file,
                line,
                format!("{var}= has an empty value"),
            ));
        }
        out.push(Assignment {
            line,
            words: Zeroizing::new(split),
        });
    }
    Ok(out)
}

/// Parses a decimal number made of ASCII digits only (no sign, no spaces), within `min..=max`.
pub(crate) fn number(text: &str, min: u64, max: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = text.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}
