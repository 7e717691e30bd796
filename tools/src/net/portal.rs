//! Portal strings: `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT`, `V6` (bare IPv6, default port),
//! and SendTargets' `TargetAddress` form `HOST[:PORT][,TPGT]`.

use super::error::{NetError, Result};
use iscsi_proto::sendtargets::{self, SendTargetsError};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The well-known iSCSI port.
pub use iscsi_proto::sendtargets::DEFAULT_PORT;

/// A portal: host (name or address, without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Portal {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

fn address_error(s: &str, e: SendTargetsError) -> NetError {
    let reason = match e {
        SendTargetsError::NotUtf8 => "not UTF-8",
        _ => "expected HOST, HOST:PORT, [IPV6] or [IPV6]:PORT with a port of 1 to 65535",
    };
    NetError::Portal {
        portal: s.to_string(),
        reason: reason.to_string(),
    }
}

impl Portal {
    /// Parse `HOST[:PORT]`, `[V6][:PORT]` or a bare IPv6 address (the address syntax is proto's
    /// `sendtargets::parse_address`; a user's portal has no `,TPGT`).
    pub fn parse(s: &str) -> Result<Portal> {
        let bad = |reason: &str| NetError::Portal {
            portal: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        // A link-local IPv6 address carries its interface: [fe80::1%eth0]:3260. The host
        // keeps it (fe80::1%eth0), which getaddrinfo turns into the scope id.
        if let Some((before, after)) = t.split_once('%') {
            let (scope, unscoped) = match after.split_once(']') {
                Some((scope, rest)) => (scope, format!("{before}]{rest}")),
                None => (after, before.to_string()),
            };
            let mut p = Portal::parse_unscoped(s, &unscoped)?;
            let ip: std::net::Ipv6Addr = p
                .host
                .parse()
                .map_err(|_| bad("only an IPv6 address takes a %interface"))?;
            if !ip.is_unicast_link_local() {
                return Err(bad(
                    "only a link-local IPv6 address (fe80::/10) takes a %interface",
                ));
            }
            if scope.is_empty() || scope.contains(['/', ':', ' ']) || scope.len() > 15 {
                return Err(bad("the %interface is not an interface name or index"));
            }
            p.host = format!("{}%{scope}", p.host);
            return Ok(p);
        }
        let p = Portal::parse_unscoped(s, t)?;
        if p.host
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_unicast_link_local())
        {
            return Err(bad(&format!(
                "a link-local IPv6 address needs its interface: [{}%eth0]:{} (with your interface's name)",
                p.host, p.port
            )));
        }
        Ok(p)
    }

    /// [`Portal::parse`] of `t` without a `%scope` (`s` is what the user wrote).
    fn parse_unscoped(s: &str, t: &str) -> Result<Portal> {
        let (p, tpgt) = Portal::parse_target_address(t)?;
        if tpgt.is_some() {
            return Err(NetError::Portal {
                portal: s.to_string(),
                reason: "a portal group tag (,TPGT) is not part of a portal".into(),
            });
        }
        Ok(p)
    }

    /// Parse a SendTargets `TargetAddress` value: `HOST[:PORT],TPGT`. Returns the portal and
    /// the portal group tag (if present).
    pub fn parse_target_address(s: &str) -> Result<(Portal, Option<u16>)> {
        let a = sendtargets::parse_address(s.as_bytes()).map_err(|e| address_error(s, e))?;
        // Brackets hold an IPv6 address only; a colon in a bare host is only valid in an IPv6
        // address (which needs brackets to carry a port).
        let v6 = a.host.parse::<std::net::Ipv6Addr>().is_ok();
        let reason = if s.starts_with('[') && !v6 {
            "not an IPv6 address inside [ ]"
        } else if a.host.contains(':') && !v6 {
            "IPv6 address with a port must be written [ADDR]:PORT"
        } else {
            return Ok((
                Portal {
                    host: a.host.to_string(),
                    port: a.port,
                },
                a.tpgt,
            ));
        };
        Err(NetError::Portal {
            portal: s.to_string(),
            reason: reason.into(),
        })
    }

    /// Resolve to socket addresses (IPv4 and IPv6).
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| NetError::Portal {
                portal: self.to_string(),
                reason: format!("cannot resolve: {e}"),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(NetError::Portal {
                portal: self.to_string(),
                reason: "resolves to no address".into(),
            });
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
        assert_eq!(
            Portal::parse("10.0.0.1").unwrap(),
            Portal {
                host: "10.0.0.1".into(),
                port: 3260
            }
        );
        assert_eq!(
            Portal::parse("h:3261").unwrap(),
            Portal {
                host: "h".into(),
                port: 3261
            }
        );
        assert_eq!(
            Portal::parse("[::1]:99").unwrap(),
            Portal {
                host: "::1".into(),
                port: 99
            }
        );
        assert_eq!(
            Portal::parse("[::1]").unwrap(),
            Portal {
                host: "::1".into(),
                port: 3260
            }
        );
        assert_eq!(
            Portal::parse("fe80::1%lo").unwrap(),
            Portal {
                host: "fe80::1%lo".into(),
                port: 3260
            }
        );
        assert!(Portal::parse("").is_err());
        assert!(Portal::parse("h:x").is_err());
        assert!(Portal::parse("h:0").is_err());
        assert!(Portal::parse("[::1").is_err());
        assert!(Portal::parse("[nope]:1").is_err());
        assert!(Portal::parse("[::1]x").is_err());
        assert_eq!(
            Portal::parse("[::1]:3260").unwrap().to_string(),
            "[::1]:3260"
        );
    }

    #[test]
    fn link_local_needs_and_keeps_its_interface() {
        let p = Portal::parse("[fe80::1%lo]:3261").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("fe80::1%lo", 3261));
        assert_eq!(p.to_string(), "[fe80::1%lo]:3261");
        // getaddrinfo turns the name into the interface's index.
        let a = p.resolve().unwrap();
        match a[0] {
            std::net::SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), 1, "lo is interface 1"),
            _ => panic!("{a:?}"),
        }
        let e = Portal::parse("[fe80::1]:3260").unwrap_err().to_string();
        assert!(
            e.ends_with("a link-local IPv6 address needs its interface: [fe80::1%eth0]:3260 (with your interface's name)"),
            "{e}"
        );
        assert!(Portal::parse("[2001:db8::1%lo]:3260").is_err());
        assert!(Portal::parse("10.0.0.1%lo").is_err());
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
