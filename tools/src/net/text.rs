//! Text key=value data segments (RFC 7143 §6): build and split.
//!
//! A small owned-String helper for userspace; the rules of each key (list, numeric, boolean,
//! declarative) are applied by the session when it reads the target's answers.

/// An ordered list of key=value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys(pub Vec<(String, String)>);

impl Keys {
    /// Empty list.
    pub fn new() -> Keys {
        Keys(Vec::new())
    }

    /// Append a pair.
    pub fn push(&mut self, k: &str, v: impl Into<String>) {
        self.0.push((k.to_string(), v.into()));
    }

    /// The last value of `k` (a target may repeat a key only for list answers like
    /// SendTargets; for negotiation the last wins).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().rev().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }

    /// Encode as NUL-terminated `key=value` strings.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    /// Decode a complete data segment (all continuation PDUs joined). Empty strings (padding,
    /// a trailing NUL run) are skipped; a string without '=' is a protocol error.
    pub fn decode(data: &[u8]) -> Result<Keys, String> {
        let mut keys = Keys::new();
        for item in data.split(|b| *b == 0) {
            if item.is_empty() {
                continue;
            }
            let s = std::str::from_utf8(item).map_err(|_| "text key=value not UTF-8".to_string())?;
            let (k, v) = s.split_once('=').ok_or_else(|| format!("text item without '=': {s:?}"))?;
            if k.is_empty() || k.len() > 63 {
                return Err(format!("bad text key {k:?}"));
            }
            keys.push(k, v);
        }
        Ok(keys)
    }
}

/// Decode a CHAP binary value: `0x` hex or `0b` base64 (RFC 7143 §6.1).
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h = h.as_bytes();
        // An odd number of digits has an implied leading zero.
        let mut out = Vec::with_capacity(h.len() / 2 + 1);
        let mut i = 0;
        if h.len() % 2 == 1 {
            out.push(hexval(h[0])?);
            i = 1;
        }
        while i < h.len() {
            out.push(hexval(h[i])? << 4 | hexval(h[i + 1])?);
            i += 2;
        }
        if out.is_empty() {
            return None;
        }
        return Some(out);
    }
    if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        return base64_decode(b);
    }
    None
}

/// Encode binary as `0x` hex.
pub fn encode_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut k = Keys::new();
        k.push("InitiatorName", "iqn.x");
        k.push("SessionType", "Discovery");
        let e = k.encode();
        assert_eq!(e, b"InitiatorName=iqn.x\0SessionType=Discovery\0");
        let d = Keys::decode(&e).unwrap();
        assert_eq!(d, k);
        assert_eq!(d.get("SessionType"), Some("Discovery"));
        assert!(Keys::decode(b"novalue\0").is_err());
        assert_eq!(Keys::decode(b"\0\0a=\0").unwrap().get("a"), Some(""));
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![10, 11]));
        assert_eq!(decode_binary("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("0bAQI="), Some(vec![1, 2]));
        assert_eq!(decode_binary("0x"), None);
        assert_eq!(decode_binary("0xzz"), None);
        assert_eq!(decode_binary("12"), None);
        assert_eq!(encode_hex(&[1, 0xff]), "0x01ff");
    }
}
