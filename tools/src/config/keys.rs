//! iSCSI login keys an administrator may set in field 7 of a CHANNEL line (RFC 7143 section 13),
//! with each key's value syntax.

use serde::ser::SerializeMap;
use serde::Serialize;

use super::lexer::number;

/// The value syntax of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A decimal number in `min..=max`.
    Numeric {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// `Yes` or `No`.
    Boolean,
    /// A `,`-separated list of the given values, in order of preference, without repeats.
    List(&'static [&'static str]),
    /// Text (1 to 255 bytes, printable, no `,` `;` or `=`).
    Text,
}

/// One settable key: its RFC 7143 name, value syntax and the RFC default.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key name (case-sensitive, as in RFC 7143).
    pub name: &'static str,
    /// Its value syntax.
    pub kind: KeyKind,
    /// The RFC 7143 default, used when the key is not given.
    pub default: &'static str,
}

const DIGESTS: &[&str] = &["None", "CRC32C"];

/// The keys field 7 accepts. Any other key is an error.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "HeaderDigest",
        kind: KeyKind::List(DIGESTS),
        default: "None",
    },
    KeySpec {
        name: "DataDigest",
        kind: KeyKind::List(DIGESTS),
        default: "None",
    },
    KeySpec {
        name: "MaxConnections",
        kind: KeyKind::Numeric { min: 1, max: 65535 },
        default: "1",
    },
    KeySpec {
        name: "InitialR2T",
        kind: KeyKind::Boolean,
        default: "Yes",
    },
    KeySpec {
        name: "ImmediateData",
        kind: KeyKind::Boolean,
        default: "Yes",
    },
    KeySpec {
        name: "MaxRecvDataSegmentLength",
        kind: KeyKind::Numeric {
            min: 512,
            max: 16_777_215,
        },
        default: "8192",
    },
    KeySpec {
        name: "MaxBurstLength",
        kind: KeyKind::Numeric {
            min: 512,
            max: 16_777_215,
        },
        default: "262144",
    },
    KeySpec {
        name: "FirstBurstLength",
        kind: KeyKind::Numeric {
            min: 512,
            max: 16_777_215,
        },
        default: "65536",
    },
    KeySpec {
        name: "DefaultTime2Wait",
        kind: KeyKind::Numeric { min: 0, max: 3600 },
        default: "2",
    },
    KeySpec {
        name: "DefaultTime2Retain",
        kind: KeyKind::Numeric { min: 0, max: 3600 },
        default: "20",
    },
    KeySpec {
        name: "MaxOutstandingR2T",
        kind: KeyKind::Numeric { min: 1, max: 65535 },
        default: "1",
    },
    KeySpec {
        name: "DataPDUInOrder",
        kind: KeyKind::Boolean,
        default: "Yes",
    },
    KeySpec {
        name: "DataSequenceInOrder",
        kind: KeyKind::Boolean,
        default: "Yes",
    },
    KeySpec {
        name: "ErrorRecoveryLevel",
        kind: KeyKind::Numeric { min: 0, max: 2 },
        default: "0",
    },
    KeySpec {
        name: "AuthMethod",
        kind: KeyKind::List(&["CHAP", "None"]),
        default: "None",
    },
    KeySpec {
        name: "InitiatorAlias",
        kind: KeyKind::Text,
        default: "",
    },
];

/// Looks a settable key up by its exact name.
pub fn key_spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// Why a known RFC 7143 key cannot be set in field 7, if it is one of those.
fn not_settable(name: &str) -> Option<&'static str> {
    Some(match name {
        "TargetName" => "is not set here: give the target name as field 9",
        "InitiatorName" => "is not set here: it is read from initiatorname.iscsi",
        "SessionType" | "SendTargets" | "TargetAddress" | "TargetAlias" | "TargetPortalGroupTag" => {
            "is declared during login, not configured"
        }
        "CHAP_A" | "CHAP_I" | "CHAP_C" | "CHAP_N" | "CHAP_R" => {
            "is not set here: CHAP is configured in initiator_auth and the chap_algorithms attribute"
        }
        "OFMarker" | "IFMarker" | "OFMarkInt" | "IFMarkInt" => "is obsolete (removed by RFC 7143)",
        _ => return None,
    })
}

/// Validates `name=value`; returns the canonical value text (numbers without leading zeros).
pub(crate) fn validate_key(name: &str, value: &str) -> Result<(&'static KeySpec, String), String> {
    let Some(spec) = key_spec(name) else {
        if let Some(why) = not_settable(name) {
            return Err(format!("{name} {why}"));
        }
        if let Some(k) = KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "unknown iSCSI key \"{name}\" (keys are case-sensitive: {})",
                k.name
            ));
        }
        return Err(format!("unknown iSCSI key \"{name}\""));
    };
    let canonical = validate_value(name, spec.kind, value)?;
    Ok((spec, canonical))
}

pub(crate) fn validate_value(name: &str, kind: KeyKind, value: &str) -> Result<String, String> {
    match kind {
        KeyKind::Numeric { min, max } => match number(value, min, max) {
            Some(n) => Ok(n.to_string()),
            None => Err(format!(
                "{name}=\"{value}\" is not a number in {min}..{max}"
            )),
        },
        KeyKind::Boolean => match value {
            "Yes" | "No" => Ok(value.to_string()),
            _ if value.eq_ignore_ascii_case("yes") || value.eq_ignore_ascii_case("no") => Err(
                format!("{name}=\"{value}\" is not Yes or No (values are case-sensitive)"),
            ),
            _ => Err(format!("{name}=\"{value}\" is not Yes or No")),
        },
        KeyKind::List(allowed) => {
            let mut seen: Vec<&str> = Vec::new();
            for item in value.split(',') {
                if item.is_empty() {
                    return Err(format!("{name}=\"{value}\" has an empty list item"));
                }
                if !allowed.contains(&item) {
                    let hint = match allowed.iter().find(|a| a.eq_ignore_ascii_case(item)) {
                        Some(a) => format!(" (values are case-sensitive: {a})"),
                        None => match (name, item) {
                            ("AuthMethod", "KRB5" | "SPKM1" | "SPKM2" | "SRP") => {
                                " (not supported)".to_string()
                            }
                            _ => String::new(),
                        },
                    };
                    return Err(format!(
                        "{name}: \"{item}\" is not one of {}{hint}",
                        allowed.join(", ")
                    ));
                }
                if seen.contains(&item) {
                    return Err(format!("{name}: \"{item}\" is listed twice"));
                }
                seen.push(item);
            }
            Ok(value.to_string())
        }
        KeyKind::Text => {
            if value.is_empty() || value.len() > 255 {
                return Err(format!("{name} must be 1 to 255 bytes long"));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(format!("{name} contains a control character"));
            }
            Ok(value.to_string())
        }
    }
}

/// The iSCSI keys an administrator gave for one channel, in the order first given, validated
/// (each with its canonical value). Keys not given take the RFC 7143 default at login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IscsiKeys {
    pairs: Vec<(&'static str, String)>,
}

/// The authentication methods of AuthMethod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthMethod {
    /// CHAP (RFC 1994 as profiled by RFC 7143).
    Chap,
    /// No authentication.
    None,
}

impl IscsiKeys {
    /// The keys given, in order: `(name, canonical value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The value given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value for `name`, or its RFC 7143 default (`None` for a name not in [`KEYS`]).
    pub fn get_or_default(&self, name: &str) -> Option<&str> {
        self.get(name).or_else(|| key_spec(name).map(|k| k.default))
    }

    /// A numeric key's value or default.
    pub fn numeric(&self, name: &str) -> Option<u64> {
        self.get_or_default(name)?.parse().ok()
    }

    /// AuthMethod as given (default `None`), in order of preference.
    pub fn auth_methods(&self) -> Vec<AuthMethod> {
        self.get_or_default("AuthMethod")
            .unwrap_or("None")
            .split(',')
            .map(|m| {
                if m == "CHAP" {
                    AuthMethod::Chap
                } else {
                    AuthMethod::None
                }
            })
            .collect()
    }

    /// Whether AuthMethod offers CHAP.
    pub fn offers_chap(&self) -> bool {
        self.auth_methods().contains(&AuthMethod::Chap)
    }

    /// Whether AuthMethod offers None (no authentication).
    pub fn offers_none(&self) -> bool {
        self.auth_methods().contains(&AuthMethod::None)
    }

    /// Number of keys given.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no key was given.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub(crate) fn insert(&mut self, name: &'static str, value: String) {
        match self.pairs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((name, value)),
        }
    }
}

impl Serialize for IscsiKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.pairs.len()))?;
        for (k, v) in &self.pairs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
