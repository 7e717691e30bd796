//! iSCSI login keys an administrator may set in field 7 of a CHANNEL line (RFC 7143 section 13).
//!
//! The keys the module takes are validated by the module's own parser,
//! [`iscsi_proto::settings`] (what `initiator-ctl start` writes to the channel's `params`
//! attribute): a key list passes here exactly when the module accepts it. This file adds only
//! what the module does not see, AuthMethod (CHAP is used when initiator_auth gives credentials)
//! and InitiatorAlias (not sent), the documentation defaults, and the wording of the errors.

use iscsi_proto::settings::{self, ListError, ValueKind};
use iscsi_proto::text::Limits;
use serde::ser::SerializeMap;
use serde::Serialize;

/// The value syntax of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A key the module takes in `params`: syntax and range are those of
    /// [`iscsi_proto::settings::SETTINGS`], which validates it.
    Module,
    /// A `,`-separated list of the given values, in order of preference, without repeats.
    List(&'static [&'static str]),
    /// Text (1 to 255 bytes, printable, no `,` `;` or `=`).
    Text,
}

/// One settable key: its RFC 7143 name, value syntax and default.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key name (case-sensitive, as in RFC 7143).
    pub name: &'static str,
    /// Its value syntax.
    pub kind: KeyKind,
    /// The value used when the key is not given: for a module key, what the module offers
    /// (`iscsi_proto::text::Limits::default()`, checked by a test).
    pub default: &'static str,
}

const fn module(name: &'static str, default: &'static str) -> KeySpec {
    KeySpec {
        name,
        kind: KeyKind::Module,
        default,
    }
}

/// The keys field 7 accepts. Any other key is an error.
pub const KEYS: &[KeySpec] = &[
    module("HeaderDigest", "None,CRC32C"),
    module("DataDigest", "None,CRC32C"),
    module("MaxRecvDataSegmentLength", "262144"),
    // What Limits::default() says; at start the module offers the channel's connection count.
    module("MaxConnections", "1"),
    module("InitialR2T", "No"),
    module("ImmediateData", "Yes"),
    module("MaxBurstLength", "16776192"),
    module("FirstBurstLength", "262144"),
    module("DefaultTime2Wait", "2"),
    module("DefaultTime2Retain", "20"),
    module("MaxOutstandingR2T", "1"),
    module("DataPDUInOrder", "Yes"),
    module("DataSequenceInOrder", "Yes"),
    module("ErrorRecoveryLevel", "0"),
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

/// Validates `name=value`; returns the canonical value text (numbers in decimal, without
/// leading zeros).
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
        if let Some(a) = super::attrs::ATTRS
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "unknown iSCSI key \"{name}\" (the channel attribute is spelt {}, in field 8)",
                a.name
            ));
        }
        return Err(format!("unknown iSCSI key \"{name}\""));
    };
    let canonical = match spec.kind {
        KeyKind::Module => module_value(name, value)?,
        KeyKind::List(allowed) => {
            check_list(name, value, allowed)?;
            value.to_string()
        }
        KeyKind::Text => {
            if value.is_empty() || value.len() > 255 {
                return Err(format!("{name} must be 1 to 255 bytes long"));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(format!("{name} contains a control character"));
            }
            value.to_string()
        }
    };
    Ok((spec, canonical))
}

/// A module key's value, checked by the module's parser and given back in its canonical
/// form; a refusal is explained in the tools' words, by the key's syntax.
fn module_value(name: &str, value: &str) -> Result<String, String> {
    let Some(setting) = settings::setting(name.as_bytes()) else {
        return Err(format!("unknown iSCSI key \"{name}\""));
    };
    settings::parse_value(setting.kind, value.as_bytes())
        .map(|v| v.to_string())
        .map_err(|e| match setting.kind {
            ValueKind::Number { min, max } => {
                format!("{name}=\"{value}\" is not a number in {min}..{max}")
            }
            ValueKind::Boolean
                if value.eq_ignore_ascii_case("yes") || value.eq_ignore_ascii_case("no") =>
            {
                format!("{name}=\"{value}\" is not Yes or No (values are case-sensitive)")
            }
            ValueKind::Boolean => format!("{name}=\"{value}\" is not Yes or No"),
            ValueKind::Digest => match check_list(name, value, &["None", "CRC32C"]) {
                Err(why) => why,
                Ok(()) => format!("{name}=\"{value}\": {e}"),
            },
        })
}

/// Explains what is wrong with a `,`-separated list of `allowed` values without repeats.
fn check_list(name: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
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
    Ok(())
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

    /// The keys the module takes, as `initiator-ctl start` writes them to the channel's
    /// `params` attribute (`Key=Value;...`): every key given except AuthMethod and
    /// InitiatorAlias, which the module does not take, and MaxConnections, which the module
    /// offers itself: the channel's connection count, from its `portals` (the file's value is
    /// only a bound on that count, checked when the file is loaded).
    pub fn module_params(&self) -> String {
        self.iter()
            .filter(|(k, _)| *k != "MaxConnections" && settings::setting(k.as_bytes()).is_some())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// What the module makes of [`Self::module_params`]: its offer with these keys applied, or
    /// its refusal (with `iscsi_proto::settings::apply_list`, as the module runs it).
    pub fn module_limits(&self) -> Result<Limits, ListError> {
        let mut limits = Limits::default();
        settings::apply_list(&mut limits, self.module_params().as_bytes())?;
        Ok(limits)
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

#[cfg(test)]
mod tests {
    use super::*;
    use iscsi_proto::settings::SETTINGS;

    /// The module keys here are exactly the keys the module's parser accepts, and their
    /// documented defaults are what the module offers when they are not given.
    #[test]
    fn module_keys_are_the_modules() {
        let ours: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.kind == KeyKind::Module)
            .map(|k| k.name)
            .collect();
        let proto: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(ours, proto);
        let mut offer = String::new();
        settings::write(&Limits::default(), &mut offer).unwrap();
        let defaults: Vec<String> = KEYS
            .iter()
            .filter(|k| k.kind == KeyKind::Module)
            .map(|k| format!("{}={}", k.name, k.default))
            .collect();
        assert_eq!(offer, defaults.join(";"));
    }

    /// What `start` writes to `params` is what the module accepts, without AuthMethod (and
    /// without MaxConnections, which the module derives from `portals`).
    #[test]
    fn module_params_are_accepted_by_the_module() {
        let mut keys = IscsiKeys::default();
        for (k, v) in [
            ("AuthMethod", "CHAP,None"),
            ("MaxRecvDataSegmentLength", "0x2000"),
            ("InitiatorAlias", "host1"),
            ("HeaderDigest", "CRC32C,None"),
            ("MaxConnections", "4"),
            ("ImmediateData", "No"),
        ] {
            let (spec, v) = validate_key(k, v).unwrap();
            keys.insert(spec.name, v);
        }
        let params = keys.module_params();
        assert_eq!(
            params,
            "MaxRecvDataSegmentLength=8192;HeaderDigest=CRC32C,None;ImmediateData=No"
        );
        let mut l = Limits::default();
        settings::apply_list(&mut l, params.as_bytes()).unwrap();
        assert_eq!(keys.module_limits(), Ok(l));
        assert_eq!(l.max_recv_data_segment_length, 8192);
    }

    /// A module key passes validate_key exactly when the module's apply accepts it.
    #[test]
    fn same_verdict_as_the_module() {
        let values = [
            "",
            "0",
            "1",
            "2",
            "3",
            "511",
            "512",
            "0x200",
            "0512",
            "3600",
            "3601",
            "65535",
            "65536",
            "16777215",
            "16777216",
            "-1",
            "x",
            "Yes",
            "No",
            "yes",
            "None",
            "CRC32C",
            "CRC32C,None",
            "None,CRC32C",
            "None,None",
            "crc32c",
            "CRC32C,",
            ",None",
        ];
        for s in SETTINGS {
            for v in values {
                let module =
                    settings::apply(&mut Limits::default(), s.name.as_bytes(), v.as_bytes());
                let tools = validate_key(s.name, v);
                assert_eq!(module.is_ok(), tools.is_ok(), "{}={v}: {tools:?}", s.name);
            }
        }
    }
}
