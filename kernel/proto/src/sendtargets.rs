//! SendTargets=All response parsing (RFC 7143 appendix C): `TargetName=` followed by its
//! `TargetAddress=host[:port][,tpgt]` lines, without allocation.

use super::text;

/// Default iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;

/// SendTargets parse errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTargetsError {
    /// Bad key=value text.
    Text(text::TextError),
    /// A TargetAddress before any TargetName.
    AddressWithoutTarget,
    /// A TargetAddress that does not parse.
    BadAddress,
    /// A name or address that is not UTF-8.
    NotUtf8,
}

/// A portal address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portal<'a> {
    /// Host name or IP address (IPv6 without the brackets).
    pub host: &'a str,
    /// TCP port (3260 when not given).
    pub port: u16,
    /// Target portal group tag, when given.
    pub tpgt: Option<u16>,
}

/// Parse `host[:port][,tpgt]`, IPv6 as `[addr]`; an IPv6 literal without brackets is taken
/// whole as the host (its colons cannot be told from a port separator).
pub fn parse_address(v: &[u8]) -> Result<Portal<'_>, SendTargetsError> {
    let s = core::str::from_utf8(v).map_err(|_| SendTargetsError::NotUtf8)?;
    let (addr, tpgt) = match s.rfind(',') {
        Some(i) => {
            let t = s.get(i + 1..).ok_or(SendTargetsError::BadAddress)?;
            let t = text::parse_number(t.as_bytes())
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(SendTargetsError::BadAddress)?;
            (s.get(..i).ok_or(SendTargetsError::BadAddress)?, Some(t))
        }
        None => (s, None),
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let close = rest.find(']').ok_or(SendTargetsError::BadAddress)?;
        let host = rest.get(..close).ok_or(SendTargetsError::BadAddress)?;
        let after = rest.get(close + 1..).ok_or(SendTargetsError::BadAddress)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(SendTargetsError::BadAddress)?),
        };
        (host, port)
    } else {
        match addr.find(':') {
            Some(i) if addr.rfind(':') == Some(i) => (
                addr.get(..i).ok_or(SendTargetsError::BadAddress)?,
                addr.get(i + 1..),
            ),
            _ => (addr, None),
        }
    };
    if host.is_empty() {
        return Err(SendTargetsError::BadAddress);
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(SendTargetsError::BadAddress);
            }
            text::parse_number(p.as_bytes())
                .and_then(|n| u16::try_from(n).ok())
                .filter(|p| *p != 0)
                .ok_or(SendTargetsError::BadAddress)?
        }
    };
    Ok(Portal { host, port, tpgt })
}

/// One target of a SendTargets response.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Its iSCSI name.
    pub name: &'a str,
    rest: &'a [u8],
}

impl<'a> Target<'a> {
    /// Its portals (none means: the portal the discovery session used).
    pub fn portals(&self) -> Portals<'a> {
        Portals {
            pairs: text::pairs(self.rest),
        }
    }
}

/// Iterator over a target's portals.
#[derive(Debug, Clone)]
pub struct Portals<'a> {
    pairs: text::Pairs<'a>,
}

impl<'a> Iterator for Portals<'a> {
    type Item = Result<Portal<'a>, SendTargetsError>;

    fn next(&mut self) -> Option<Self::Item> {
        for p in self.pairs.by_ref() {
            match p {
                Err(e) => return Some(Err(SendTargetsError::Text(e))),
                Ok((b"TargetName", _)) => return None,
                Ok((b"TargetAddress", v)) => return Some(parse_address(v)),
                Ok(_) => continue,
            }
        }
        None
    }
}

/// Iterator over the targets of a SendTargets response.
#[derive(Debug, Clone)]
pub struct Targets<'a> {
    pairs: text::Pairs<'a>,
    first: bool,
    done: bool,
}

/// Iterate the targets in a (complete) SendTargets text response.
pub fn targets(data: &[u8]) -> Targets<'_> {
    Targets {
        pairs: text::pairs(data),
        first: true,
        done: false,
    }
}

impl<'a> Iterator for Targets<'a> {
    type Item = Result<Target<'a>, SendTargetsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let Some(p) = self.pairs.next() else {
                self.done = true;
                return None;
            };
            let r = match p {
                Err(e) => Err(SendTargetsError::Text(e)),
                Ok((b"TargetName", v)) => match core::str::from_utf8(v) {
                    Ok(name) => {
                        self.first = false;
                        Ok(Target {
                            name,
                            rest: self.pairs.remaining(),
                        })
                    }
                    Err(_) => Err(SendTargetsError::NotUtf8),
                },
                Ok((b"TargetAddress", _)) if self.first => {
                    Err(SendTargetsError::AddressWithoutTarget)
                }
                Ok(_) => continue,
            };
            if r.is_err() {
                self.done = true;
            }
            return Some(r);
        }
    }
}
