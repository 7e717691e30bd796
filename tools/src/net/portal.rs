//! Portal strings: `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT`, `V6` (bare IPv6, default port),
//! and SendTargets' `TargetAddress` form `HOST[:PORT][,TPGT]`.

use super::error::{NetError, Result};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The well-known iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;

/// A portal: host (name or address, without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Portal {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Portal {
    /// Parse `HOST[:PORT]`, `[V6][:PORT]` or a bare IPv6 address.
    pub fn parse(s: &str) -> Result<Portal> {
        let bad = |reason: &str| NetError::Portal { portal: s.to_string(), reason: reason.to_string() };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']').ok_or_else(|| bad("missing ']'"))?;
            let host = &rest[..end];
            let after = &rest[end + 1..];
            let port = match after {
                "" => DEFAULT_PORT,
                p => p
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected ':PORT' after ']'"))?
                    .parse()
                    .map_err(|_| bad("bad port"))?,
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address inside [ ]"));
            }
            return Ok(Portal { host: host.to_string(), port });
        }
        if s.parse::<IpAddr>().is_ok() {
            return Ok(Portal { host: s.to_string(), port: DEFAULT_PORT });
        }
        match s.rsplit_once(':') {
            Some((h, p)) => {
                if h.is_empty() {
                    return Err(bad("empty host"));
                }
                if h.contains(':') {
                    return Err(bad("IPv6 address with a port must be written [ADDR]:PORT"));
                }
                let port = p.parse::<u16>().map_err(|_| bad("bad port"))?;
                if port == 0 {
                    return Err(bad("port 0"));
                }
                Ok(Portal { host: h.to_string(), port })
            }
            None => Ok(Portal { host: s.to_string(), port: DEFAULT_PORT }),
        }
    }

    /// Parse a SendTargets `TargetAddress` value: `HOST[:PORT],TPGT`. Returns the portal and
    /// the portal group tag (if present).
    pub fn parse_target_address(s: &str) -> Result<(Portal, Option<u16>)> {
        let (addr, tpgt) = match s.rsplit_once(',') {
            Some((a, t)) => (a, Some(t.trim().parse::<u16>().map_err(|_| NetError::Portal {
                portal: s.to_string(),
                reason: "bad portal group tag".into(),
            })?)),
            None => (s, None),
        };
        Ok((Portal::parse(addr)?, tpgt))
    }

    /// Resolve to socket addresses (IPv4 and IPv6).
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| NetError::Portal { portal: self.to_string(), reason: format!("cannot resolve: {e}") })?
            .collect();
        if addrs.is_empty() {
            return Err(NetError::Portal { portal: self.to_string(), reason: "resolves to no address".into() });
        }
        Ok(addrs)
    }
}

impl std::fmt::Display for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        assert_eq!(Portal::parse("10.0.0.1").unwrap(), Portal { host: "10.0.0.1".into(), port: 3260 });
        assert_eq!(Portal::parse("h:3261").unwrap(), Portal { host: "h".into(), port: 3261 });
        assert_eq!(Portal::parse("[::1]:99").unwrap(), Portal { host: "::1".into(), port: 99 });
        assert_eq!(Portal::parse("[::1]").unwrap(), Portal { host: "::1".into(), port: 3260 });
        assert_eq!(Portal::parse("fe80::1").unwrap(), Portal { host: "fe80::1".into(), port: 3260 });
        assert!(Portal::parse("").is_err());
        assert!(Portal::parse("h:x").is_err());
        assert!(Portal::parse("h:0").is_err());
        assert!(Portal::parse("[::1").is_err());
        assert!(Portal::parse("[nope]:1").is_err());
        assert!(Portal::parse("[::1]x").is_err());
        assert_eq!(Portal::parse("[::1]:3260").unwrap().to_string(), "[::1]:3260");
    }

    #[test]
    fn parses_target_address() {
        let (p, t) = Portal::parse_target_address("127.0.0.1:3260,1").unwrap();
        assert_eq!((p.host.as_str(), p.port, t), ("127.0.0.1", 3260, Some(1)));
        let (p, t) = Portal::parse_target_address("[::1]:3261,2").unwrap();
        assert_eq!((p.host.as_str(), p.port, t), ("::1", 3261, Some(2)));
        let (p, t) = Portal::parse_target_address("host").unwrap();
        assert_eq!((p.host.as_str(), p.port, t), ("host", 3260, None));
        assert!(Portal::parse_target_address("h:1,x").is_err());
    }
}
