//! `/etc/sysconfig/initiator`: one `CHANNEL="..."` line per portal of a channel.
//!
//! ```text
//! CHANNEL="id connections [netdev] address port interconnect [keys [attributes...]] [target]"
//! ```
//!
//! Fields (numbered as in initiator(5), whether or not the optional ones are present):
//! 1 channel id, 2 connections, 3 network device (optional), 4 target address, 5 port,
//! 6 network interconnect (0 = TCP), 7 iSCSI keys (`;`-separated `Key=value`), 8 channel
//! attributes (`;`- or `, `-separated `name=value`), 9 target name (`iqn.`/`eui.`/`naa.`).
//!
//! Several lines with the same channel id add portals to that channel. How they merge:
//! the connection counts add up (the howto's two `1 2 ...` lines make a session of four
//! connections); keys and attributes are the union of all lines, and a key or attribute given
//! on two lines must have the same value on both; the target name, if given on several
//! lines, must be the same. A line may omit keys, attributes and target name and inherit them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use iscsi_proto::settings::SettingError;
use serde::Serialize;

use super::attrs::{validate_attr, ChannelAttrs};
use super::error::{Broken, ConfigError, ConfigErrors, Fault, Field};
use super::keys::{validate_key, IscsiKeys};
use super::lexer::{lex, number};
use super::names::{looks_like_iscsi_name, validate_iscsi_name};
use super::ChapCredentials;

pub(crate) const F_CHANNEL: Field = Field(1, "channel");
pub(crate) const F_CONNECTIONS: Field = Field(2, "connections");
pub(crate) const F_NETDEV: Field = Field(3, "network device");
pub(crate) const F_ADDRESS: Field = Field(4, "address");
pub(crate) const F_PORT: Field = Field(5, "port");
pub(crate) const F_INTERCONNECT: Field = Field(6, "interconnect");
pub(crate) const F_KEYS: Field = Field(7, "keys");
pub(crate) const F_ATTRS: Field = Field(8, "attributes");
pub(crate) const F_TARGET: Field = Field(9, "target name");

/// Largest channel id.
pub const MAX_CHANNEL_ID: u32 = 65535;
/// Most TCP connections in one channel (the sum over its lines): the module opens at most
/// this many per session (the total of its `portals` attribute).
pub const MAX_CONNECTIONS_PER_CHANNEL: u32 = 16;
/// Most portals (CHANNEL lines) in one channel: the entries the module's `portals` takes.
pub const MAX_PORTALS_PER_CHANNEL: usize = 8;

/// A target address: an IP address or a host name (resolved when the channel starts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS host name (RFC 1123 syntax).
    Hostname(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "{ip}"),
            Address::Hostname(h) => f.write_str(h),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One network portal of a channel (one CHANNEL line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Portal {
    /// Target address.
    pub address: Address,
    /// TCP port.
    pub port: u16,
    /// Network device named in field 3, if given: the portal's connections are bound to it
    /// (without one, the route to the address decides the interface).
    pub netdev: Option<String>,
    /// The `%interface` of a link-local IPv6 address (a name or an index); `start` writes
    /// the interface's index, which is what the module takes.
    pub scope: Option<String>,
    /// TCP connections to open through this portal (field 2 of its line).
    pub connections: u32,
    /// The line that defined it.
    pub line: usize,
}

impl Portal {
    /// `address:port`, with brackets around an IPv6 address (and its `%scope` as written).
    pub fn endpoint(&self) -> String {
        self.endpoint_with_scope(self.scope.as_deref())
    }

    /// `address:port` with `scope` (an interface index, say) after a `%`.
    pub fn endpoint_with_scope(&self, scope: Option<&str>) -> String {
        match (&self.address, scope) {
            (Address::Ip(IpAddr::V6(ip)), Some(s)) => format!("[{ip}%{s}]:{}", self.port),
            (Address::Ip(IpAddr::V6(ip)), None) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.address, self.port),
        }
    }
}

/// One channel: one iSCSI session to one target, through one or more portals.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    /// Channel id (field 1).
    pub id: u32,
    /// Total TCP connections of the session (sum of field 2 over the channel's lines).
    pub connections: u32,
    /// Its portals, in file order.
    pub portals: Vec<Portal>,
    /// Target name (field 9); `None` means: discovered with SendTargets at start.
    pub target_name: Option<String>,
    /// iSCSI keys given (field 7); others take their RFC 7143 defaults.
    pub keys: IscsiKeys,
    /// Channel attributes (field 8), defaults filled in.
    pub attrs: ChannelAttrs,
    /// CHAP credentials from initiator_auth, when AuthMethod offers CHAP.
    pub auth: Option<ChapCredentials>,
    /// The first line of the channel.
    pub line: usize,
    /// The line that gave AuthMethod, if any.
    #[serde(skip)]
    pub(crate) auth_method_line: Option<usize>,
}

/// Parses the text of the initiator file into channels; every error of the file at once.
pub fn parse_initiator(
    file: &Path,
    text: impl AsRef<[u8]>,
) -> Result<BTreeMap<u32, Channel>, ConfigErrors> {
    let (channels, _, errors) = parse_initiator_all(file, text.as_ref());
    ConfigErrors::check(errors)?;
    Ok(channels)
}

/// The channel ids an initiator file uses, bad lines included when their id can be made out
/// (for `discover` to number new channels after them).
pub fn parse_initiator_lenient(file: &Path, text: &[u8]) -> std::collections::BTreeSet<u32> {
    let (channels, broken, _) = parse_initiator_all(file, text);
    channels.keys().copied().chain(broken.ids).collect()
}

/// [`parse_initiator`]'s work: the channels of the good lines, the channels with a bad line,
/// and one error per bad line.
pub(crate) fn parse_initiator_all(
    file: &Path,
    text: &[u8],
) -> (BTreeMap<u32, Channel>, Broken, Vec<ConfigError>) {
    let mut channels: BTreeMap<u32, Channel> = BTreeMap::new();
    // Where each key / attribute was first given, per channel: (channel, name) -> line.
    let mut given: BTreeMap<(u32, &'static str), usize> = BTreeMap::new();
    let lexed = lex(file, text, "CHANNEL", false);
    let mut errors = lexed.errors;
    let mut broken = lexed.broken;
    for a in lexed.assignments {
        let line = a.line;
        let r =
            parse_line(&a.words).and_then(|parsed| merge(&mut channels, &mut given, parsed, line));
        if let Err(f) = r {
            errors.push(f.at(file, line));
            broken.add(a.words.first().map(String::as_str));
        }
    }
    // Last, once the lines are known to be well-formed: what RFC 7143 allows but this
    // initiator does not do. The module refuses the same in its `params` attribute at start.
    for ch in channels.values() {
        if broken.ids.contains(&ch.id) {
            continue;
        }
        if let Some((name, why)) = unsupported(ch) {
            let line = given.get(&(ch.id, name)).copied().unwrap_or(ch.line);
            let value = ch.keys.get(name).unwrap_or_default();
            errors.push(
                Fault::new(F_KEYS, format!("{name}={value} is not supported: {why}"))
                    .at(file, line),
            );
        }
    }
    errors.sort_by_key(|e| e.line_number());
    (channels, broken, errors)
}

/// One parsed CHANNEL line.
struct Line {
    id: u32,
    portal: Portal,
    keys: Vec<(&'static str, String)>,
    attrs: Vec<(&'static str, String)>,
    target: Option<String>,
}

fn parse_line(words: &[String]) -> Result<Line, Fault> {
    let missing = |f: Field| Fault::new(f, "missing");
    let id_text = words.first().ok_or(missing(F_CHANNEL))?;
    let id = number(id_text, 0, MAX_CHANNEL_ID as u64).ok_or_else(|| {
        Fault::new(
            F_CHANNEL,
            format!("\"{id_text}\" is not a channel id (0-{MAX_CHANNEL_ID})"),
        )
    })? as u32;
    let conn_text = words.get(1).ok_or(missing(F_CONNECTIONS))?;
    let connections = number(conn_text, 1, MAX_CONNECTIONS_PER_CHANNEL as u64).ok_or_else(|| {
        Fault::new(
            F_CONNECTIONS,
            format!("\"{conn_text}\" is not a connection count (1-{MAX_CONNECTIONS_PER_CHANNEL})"),
        )
    })? as u32;
    let head = read_head(words)?;
    let mut rest = &words[head.next..];
    let mut target = None;
    if let Some((last, init)) = rest.split_last() {
        // Field 9 is the last word that is not name=value (a bare key or attribute name is a
        // broken field 7 or 8, reported there).
        if looks_like_iscsi_name(last) || (!last.contains('=') && !is_setting_name(last)) {
            validate_iscsi_name(last).map_err(|p| Fault::new(F_TARGET, p))?;
            target = Some(last.clone());
            rest = init;
        }
    }
    let mut keys: Vec<(&'static str, String)> = Vec::new();
    let mut attrs: Vec<(&'static str, String)> = Vec::new();
    let mut in_attrs = false;
    for word in rest {
        if looks_like_iscsi_name(word) {
            return Err(Fault::new(
                F_TARGET,
                format!("\"{word}\": the target name must be the last field"),
            ));
        }
        // Keys come first and are CamelCase (RFC 7143); attributes are lower_case.
        if !word.starts_with(|c: char| c.is_ascii_uppercase()) {
            in_attrs = true;
        }
        let field = if in_attrs { F_ATTRS } else { F_KEYS };
        for item in split_items(word) {
            let Some((name, value)) = item.split_once('=') else {
                let what = if in_attrs { "name=value" } else { "Key=value" };
                return Err(Fault::new(field, format!("\"{item}\" is not {what}")));
            };
            if in_attrs {
                let (spec, v) = validate_attr(name, value).map_err(|p| Fault::new(field, p))?;
                if attrs.iter().any(|(n, _)| *n == spec.name) {
                    return Err(Fault::new(field, format!("{name} is given twice")));
                }
                attrs.push((spec.name, v));
            } else {
                let (spec, v) = validate_key(name, value).map_err(|p| Fault::new(field, p))?;
                if keys.iter().any(|(n, _)| *n == spec.name) {
                    return Err(Fault::new(field, format!("{name} is given twice")));
                }
                keys.push((spec.name, v));
            }
        }
    }
    Ok(Line {
        id,
        portal: Portal {
            address: head.address,
            port: head.port,
            netdev: head.netdev,
            scope: head.scope,
            connections,
            line: 0,
        },
        keys,
        attrs,
        target,
    })
}

/// Fields 3 to 6 of a line: the portal, and where the words after it start.
struct Head {
    netdev: Option<String>,
    address: Address,
    scope: Option<String>,
    port: u16,
    next: usize,
}

/// Reads fields 3 to 6. The network device (field 3) is optional. An IP address in field 3
/// is the address, and one in field 4 is the address after a device (an address is never a
/// port). Otherwise the words alone do not say whether a device is there: a correct line
/// reads one way only (the interconnect is 0, a port is not), and a broken one is read both
/// ways and blamed by the reading with fewer problems, so that a typo'd port after a host
/// name (`1 1 host 326O 0`) is reported as the port, not read as a device, an address and a
/// port of "0". A tie goes to the device when the word after field 3 is not a bare number.
fn read_head(words: &[String]) -> Result<Head, Fault> {
    let first = |mut faults: Vec<Fault>| faults.remove(0);
    let third = words.get(2).ok_or(Fault::new(F_ADDRESS, "missing"))?;
    if is_ip_literal(third) {
        return read_portal(words, None).map_err(first);
    }
    // A bad device name still leaves fields 4 to 6 to read after it.
    let mut device_faults: Vec<Fault> = validate_netdev(third).err().into_iter().collect();
    let with = match read_portal(words, Some(third)) {
        Ok(head) if device_faults.is_empty() => Ok(head),
        Ok(_) => Err(device_faults),
        Err(faults) => {
            device_faults.extend(faults);
            Err(device_faults)
        }
    };
    if words.get(3).is_some_and(|w| is_ip_literal(w)) {
        return with.map_err(first);
    }
    let device_first = words
        .get(3)
        .is_some_and(|w| !w.bytes().all(|b| b.is_ascii_digit()));
    match (with, read_portal(words, None)) {
        (Ok(head), _) | (_, Ok(head)) => Ok(head),
        (Err(w), Err(wo)) => {
            let use_with = w.len() < wo.len() || (w.len() == wo.len() && device_first);
            Err(first(if use_with { w } else { wo }))
        }
    }
}

/// Whether `word` is an IP address, with or without brackets and a `%scope` (valid or not:
/// field 4 reports a bad one).
fn is_ip_literal(word: &str) -> bool {
    let bare = word.split('%').next().unwrap_or(word);
    let bare = bare.strip_prefix('[').unwrap_or(bare);
    parse_ip(bare.strip_suffix(']').unwrap_or(bare)).is_some()
}

/// Fields 4 to 6 after field 3 as `netdev` (already checked) or as the address: every
/// problem found, in field order, so that two readings of a line can be compared.
fn read_portal(words: &[String], netdev: Option<&String>) -> Result<Head, Vec<Fault>> {
    let at = if netdev.is_some() { 3 } else { 2 };
    let missing = |f: Field| Fault::new(f, "missing");
    let mut faults = Vec::new();
    let address = words
        .get(at)
        .ok_or(missing(F_ADDRESS))
        .and_then(|w| parse_scoped_address(w))
        .map_err(|f| faults.push(f))
        .ok();
    let port = words
        .get(at + 1)
        .ok_or(missing(F_PORT))
        .and_then(|w| {
            number(w, 1, 65535).map(|n| n as u16).ok_or_else(|| {
                Fault::new(F_PORT, format!("\"{w}\" is not a port number (1-65535)"))
            })
        })
        .map_err(|f| faults.push(f))
        .ok();
    let interconnect = match words.get(at + 2) {
        None => Err(missing(F_INTERCONNECT)),
        Some(ic) => match number(ic, 0, u64::MAX) {
            Some(0) => Ok(()),
            Some(_) => Err(Fault::new(
                F_INTERCONNECT,
                format!("\"{ic}\" is not supported (only 0, TCP)"),
            )),
            None => Err(Fault::new(
                F_INTERCONNECT,
                format!("\"{ic}\" is not a number (0 = TCP)"),
            )),
        },
    };
    if let Err(f) = interconnect {
        faults.push(f);
    }
    match (address, port) {
        (Some((address, scope)), Some(port)) if faults.is_empty() => Ok(Head {
            netdev: netdev.cloned(),
            address,
            scope,
            port,
            next: at + 3,
        }),
        _ => Err(faults),
    }
}

/// Splits a word of field 7 or 8 into `name=value` items: `;` separates items, and so does a
/// `,` that is followed by a new `name=` (or that ends the word, as in the howto's
/// `nopout_timeout=10, nopout_response_timeout=10`); any other `,` belongs to a list value
/// (`AuthMethod=CHAP,None`).
fn split_items(word: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for piece in word.split(';').filter(|p| !p.is_empty()) {
        let segments: Vec<&str> = piece.split(',').collect();
        let n = segments.len();
        for (j, seg) in segments.into_iter().enumerate() {
            if seg.is_empty() && j + 1 == n && j > 0 {
                continue; // trailing ", " separator
            }
            match items.last_mut() {
                Some(prev) if j > 0 && !seg.contains('=') => {
                    prev.push(',');
                    prev.push_str(seg);
                }
                _ => items.push(seg.to_string()),
            }
        }
    }
    items
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<IpAddr>().ok()
}

/// Whether `word` is the name of a key or attribute, in any case (`ImmediateData` alone).
fn is_setting_name(word: &str) -> bool {
    super::keys::KEYS
        .iter()
        .any(|k| k.name.eq_ignore_ascii_case(word))
        || super::attrs::ATTRS
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(word))
}

/// An address with an optional `%scope`, which only a link-local IPv6 address takes and
/// which a link-local one needs (which interface the address is on).
fn parse_scoped_address(text: &str) -> Result<(Address, Option<String>), Fault> {
    let (bare, scope) = match text.split_once('%') {
        Some((a, s)) => {
            let a = a.strip_prefix('[').unwrap_or(a);
            let s = s.strip_suffix(']').unwrap_or(s);
            (a, Some(s))
        }
        None => (text, None),
    };
    let address = parse_address(bare)?;
    let link_local = matches!(address, Address::Ip(IpAddr::V6(ip)) if ip.is_unicast_link_local());
    match (link_local, scope) {
        (true, Some(s)) => {
            let numeric = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !numeric {
                validate_netdev(s).map_err(|_| {
                    Fault::new(
                        F_ADDRESS,
                        format!("\"{text}\": \"{s}\" after % is not a network interface name or index"),
                    )
                })?;
            }
            Ok((address, Some(s.to_string())))
        }
        (true, None) => Err(Fault::new(
            F_ADDRESS,
            format!(
                "\"{text}\" is a link-local IPv6 address, which needs its interface: write {bare}%eth0 (with your interface's name)"
            ),
        )),
        (false, Some(_)) => Err(Fault::new(
            F_ADDRESS,
            format!("\"{text}\": only a link-local IPv6 address (fe80::/10) takes a %interface"),
        )),
        (false, None) => Ok((address, None)),
    }
}

fn parse_address(text: &str) -> Result<Address, Fault> {
    if let Some(ip) = parse_ip(text) {
        return Ok(Address::Ip(ip));
    }
    if text.starts_with('[') || text.contains(':') {
        return Err(Fault::new(
            F_ADDRESS,
            format!(
                "\"{text}\" is not an IPv6 address (the port is field 5, not part of the address)"
            ),
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && text.parse::<Ipv4Addr>().is_err() {
        return Err(Fault::new(
            F_ADDRESS,
            format!("\"{text}\" is not an IPv4 address"),
        ));
    }
    let labels_ok = text.len() <= 253
        && text.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return Err(Fault::new(
            F_ADDRESS,
            format!("\"{text}\" is not an IPv4 address, IPv6 address or host name"),
        ));
    }
    Ok(Address::Hostname(text.to_string()))
}

/// Linux's rule for interface names (dev_valid_name): 1-15 bytes, not `.` or `..`, no `/`,
/// `:` or white space.
fn validate_netdev(name: &str) -> Result<(), Fault> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Fault::new(
            F_NETDEV,
            format!("\"{name}\" is not a network device name (1-15 characters, no '/' or ':')"),
        ))
    }
}

/// Adds a line to its channel, or changes nothing: a refused line is reported once, and not
/// again through the lines after it (its connections, portal, target name and keys are not
/// counted against them).
fn merge(
    channels: &mut BTreeMap<u32, Channel>,
    given: &mut BTreeMap<(u32, &'static str), usize>,
    parsed: Line,
    line: usize,
) -> Result<(), Fault> {
    let Line {
        id,
        mut portal,
        keys,
        attrs,
        target,
    } = parsed;
    portal.line = line;
    // Each key and attribute appears once in a line (`parse_line`), so `given` holds only
    // earlier lines' while this one is checked.
    let mut staged: Vec<(&'static str, usize)> = Vec::new();
    let mut ch = channels.get(&id).cloned().unwrap_or_else(|| Channel {
        id,
        connections: 0,
        portals: Vec::new(),
        target_name: None,
        keys: IscsiKeys::default(),
        attrs: ChannelAttrs::default(),
        auth: None,
        line,
        auth_method_line: None,
    });
    if let Some(prev) = ch
        .portals
        .iter()
        .find(|p| p.address == portal.address && p.port == portal.port)
    {
        return Err(Fault::new(
            F_ADDRESS,
            format!(
                "portal {} is already defined for channel {id} on line {}",
                portal.endpoint(),
                prev.line
            ),
        ));
    }
    if ch.portals.len() == MAX_PORTALS_PER_CHANNEL {
        return Err(Fault::new(
            F_ADDRESS,
            format!(
                "channel {id} would have {} portals (at most {MAX_PORTALS_PER_CHANNEL} per session)",
                ch.portals.len() + 1
            ),
        ));
    }
    ch.connections += portal.connections;
    if ch.connections > MAX_CONNECTIONS_PER_CHANNEL {
        return Err(Fault::new(
            F_CONNECTIONS,
            format!(
                "channel {id} would have {} connections (at most {MAX_CONNECTIONS_PER_CHANNEL} per session)",
                ch.connections
            ),
        ));
    }
    ch.portals.push(portal);
    if let Some(t) = target {
        match &ch.target_name {
            Some(old) if !old.eq_ignore_ascii_case(&t) => {
                return Err(Fault::new(
                    F_TARGET,
                    format!(
                    "\"{t}\" differs from the target name \"{old}\" given earlier for channel {id}"
                ),
                ))
            }
            Some(_) => {}
            None => ch.target_name = Some(t),
        }
    }
    for (name, value) in keys {
        if let Some(old) = ch.keys.get(name) {
            if old != value {
                let first = given.get(&(id, name)).copied().unwrap_or(0);
                return Err(Fault::new(
                    F_KEYS,
                    format!("{name}={value} conflicts with {name}={old} given for channel {id} on line {first}"),
                ));
            }
            continue;
        }
        staged.push((name, line));
        if name == "AuthMethod" {
            ch.auth_method_line = Some(line);
        }
        ch.keys.insert(name, value);
    }
    for (name, value) in attrs {
        if let Some(&first) = given.get(&(id, name)) {
            let old = ch.attrs.text(name);
            if old != value {
                return Err(Fault::new(
                    F_ATTRS,
                    format!("{name}={value} conflicts with {name}={old} given for channel {id} on line {first}"),
                ));
            }
            continue;
        }
        staged.push((name, line));
        ch.attrs.set(name, &value);
    }
    check_keys(&ch)?;
    channels.insert(id, ch);
    given.extend(staged.into_iter().map(|(name, line)| ((id, name), line)));
    Ok(())
}

/// A key whose value this initiator does not implement, with the reason (the same check as
/// the module's `store_params`: `iscsi_proto::settings::check_supported`).
fn unsupported(ch: &Channel) -> Option<(&'static str, String)> {
    let limits = ch.keys.module_limits().ok()?;
    let why = iscsi_proto::settings::check_supported(&limits).err()?;
    Some((
        why.key(),
        format!("{why} (the module would refuse it at start)"),
    ))
}

/// Rules between keys, checked on the channel as merged so far.
fn check_keys(ch: &Channel) -> Result<(), Fault> {
    if let Err(e) = ch.keys.module_limits() {
        // Each key was checked on its own (validate_key), so only the rule between keys is
        // left for apply_list to refuse.
        let message = match e.error {
            SettingError::FirstBurstAboveMaxBurst => {
                let value = |name: &str| ch.keys.get_or_default(name).unwrap_or_default();
                let default = |name: &str| {
                    if ch.keys.get(name).is_some() {
                        ""
                    } else {
                        ", the default"
                    }
                };
                format!(
                    "FirstBurstLength ({}{}) must not exceed MaxBurstLength ({}{})",
                    value("FirstBurstLength"),
                    default("FirstBurstLength"),
                    value("MaxBurstLength"),
                    default("MaxBurstLength"),
                )
            }
            other => format!("the module would refuse these keys: {other}"),
        };
        return Err(Fault::new(F_KEYS, message));
    }
    if let Some(mc) = ch
        .keys
        .get("MaxConnections")
        .and_then(|v| v.parse::<u32>().ok())
    {
        if ch.connections > mc {
            return Err(Fault::new(
                F_CONNECTIONS,
                format!(
                    "channel {} has {} connections but MaxConnections={mc}",
                    ch.id, ch.connections
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_items;

    #[test]
    fn items() {
        assert_eq!(
            split_items("AuthMethod=CHAP,None;MaxRecvDataSegmentLength=8192"),
            ["AuthMethod=CHAP,None", "MaxRecvDataSegmentLength=8192"]
        );
        assert_eq!(split_items("nopout_timeout=10,"), ["nopout_timeout=10"]);
        assert_eq!(split_items("a=1,b=2;c=3;"), ["a=1", "b=2", "c=3"]);
        assert_eq!(
            split_items("chap_algorithms=SHA256,MD5,queue_depth=4"),
            ["chap_algorithms=SHA256,MD5", "queue_depth=4"]
        );
        assert_eq!(
            split_items("AuthMethod=CHAP,,None"),
            ["AuthMethod=CHAP,,None"]
        );
    }
}
