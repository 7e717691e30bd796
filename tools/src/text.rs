//! Text that came from a target (names, aliases, INQUIRY strings, reasons) is data, not
//! terminal input: [`printable`] escapes what a terminal would act on before it is printed.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1, and the bidirectional overrides that
/// reorder a line on screen) written as `\xNN` or `\u{NNNN}`, and a backslash as `\\` so an
/// escape cannot be forged. Text without them comes back borrowed.
pub fn printable(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && bad(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if bad(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(
            printable("iqn.2003-01.org.example:t"),
            "iqn.2003-01.org.example:t"
        );
        assert_eq!(
            printable("evil\x1b[2J\x1b]0;owned\x07name"),
            "evil\\x1b[2J\\x1b]0;owned\\x07name"
        );
        assert_eq!(printable("a\r\nb\tc\x7f"), "a\\x0d\\x0ab\\x09c\\x7f");
        assert_eq!(
            printable("x\u{9b}31m\u{202e}txt"),
            "x\\u{009b}31m\\u{202e}txt"
        );
        assert_eq!(printable("back\\x1b"), "back\\\\x1b");
        assert_eq!(printable("café LIO-ORG"), "café LIO-ORG");
    }
}
