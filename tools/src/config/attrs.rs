//! Channel attributes (field 8 of a CHANNEL line): behaviour of the initiator itself, not
//! negotiated with the target. The set and its defaults are documented in initiator(5).

use serde::Serialize;

use super::lexer::number;

/// A CHAP digest algorithm, offered in CHAP_A (RFC 7143 section 12.1.3, RFC 1994, and the
/// algorithm numbers later registered with IANA for SHA-1, SHA-256 and SHA3-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChapAlgorithm {
    /// MD5, CHAP_A=5.
    #[serde(rename = "MD5")]
    Md5,
    /// SHA-1, CHAP_A=6.
    #[serde(rename = "SHA1")]
    Sha1,
    /// SHA-256, CHAP_A=7.
    #[serde(rename = "SHA256")]
    Sha256,
    /// SHA3-256, CHAP_A=8.
    #[serde(rename = "SHA3-256")]
    Sha3_256,
}

impl ChapAlgorithm {
    /// All algorithms, by their attribute spelling.
    pub const ALL: [(&'static str, ChapAlgorithm); 4] = [
        ("MD5", ChapAlgorithm::Md5),
        ("SHA1", ChapAlgorithm::Sha1),
        ("SHA256", ChapAlgorithm::Sha256),
        ("SHA3-256", ChapAlgorithm::Sha3_256),
    ];

    /// The CHAP_A value for this algorithm.
    pub fn chap_a(self) -> u8 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha1 => 6,
            ChapAlgorithm::Sha256 => 7,
            ChapAlgorithm::Sha3_256 => 8,
        }
    }

    /// The attribute spelling (`MD5`, `SHA1`, `SHA256`, `SHA3-256`).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("MD5")
    }
}

/// The channel attributes, with their defaults when not given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelAttrs {
    /// Seconds between NOP-Out pings on an idle connection; 0 disables them. Default 5.
    pub nopout_timeout: u32,
    /// Seconds to wait for the NOP-In answering a ping before the connection is taken as
    /// failed and recovery starts. Default 10.
    pub nopout_response_timeout: u32,
    /// Seconds a login (TCP connect plus all login PDUs) may take. Default 15.
    pub login_timeout: u32,
    /// Seconds I/O stays queued while a failed session is being recovered before it fails
    /// with an error; 0 fails it at once. Default 120.
    pub replacement_timeout: u32,
    /// Seconds the SCSI error handler waits for the answer to a task management request
    /// (ABORT TASK, LUN reset, target reset) before it goes on to the next step. Default 10.
    pub tmf_timeout: u32,
    /// Commands queued per LUN (SCSI device queue depth). Default 32.
    pub queue_depth: u32,
    /// CHAP algorithms offered in CHAP_A, in order of preference. Default `MD5` (the one every
    /// target supports).
    pub chap_algorithms: Vec<ChapAlgorithm>,
}

impl Default for ChannelAttrs {
    fn default() -> Self {
        ChannelAttrs {
            nopout_timeout: 5,
            nopout_response_timeout: 10,
            login_timeout: 15,
            replacement_timeout: 120,
            tmf_timeout: 10,
            queue_depth: 32,
            chap_algorithms: vec![ChapAlgorithm::Md5],
        }
    }
}

/// One attribute: name, range (for numbers), default text, meaning.
#[derive(Debug, Clone, Copy)]
pub struct AttrSpec {
    /// Attribute name.
    pub name: &'static str,
    /// Allowed range for numeric attributes (`None` for chap_algorithms).
    pub range: Option<(u64, u64)>,
    /// Default, as text.
    pub default: &'static str,
}

/// The attributes field 8 accepts. Any other name is an error.
pub const ATTRS: &[AttrSpec] = &[
    AttrSpec {
        name: "nopout_timeout",
        range: Some((0, 3600)),
        default: "5",
    },
    AttrSpec {
        name: "nopout_response_timeout",
        range: Some((1, 3600)),
        default: "10",
    },
    AttrSpec {
        name: "login_timeout",
        range: Some((1, 3600)),
        default: "15",
    },
    AttrSpec {
        name: "replacement_timeout",
        range: Some((0, 86400)),
        default: "120",
    },
    AttrSpec {
        name: "tmf_timeout",
        range: Some((1, 3600)),
        default: "10",
    },
    AttrSpec {
        name: "queue_depth",
        range: Some((1, 1024)),
        default: "32",
    },
    AttrSpec {
        name: "chap_algorithms",
        range: None,
        default: "MD5",
    },
];

/// Validates `name=value`; returns the canonical value text.
pub(crate) fn validate_attr(
    name: &str,
    value: &str,
) -> Result<(&'static AttrSpec, String), String> {
    let Some(spec) = ATTRS.iter().find(|a| a.name == name) else {
        let hint = if super::keys::key_spec(name).is_some() {
            " (iSCSI keys belong in field 7, before the attributes)".to_string()
        } else if let Some(k) = super::keys::KEYS
            .iter()
            .find(|k| k.name.eq_ignore_ascii_case(name))
        {
            format!(
                " (the iSCSI key is spelt {}: keys are case-sensitive)",
                k.name
            )
        } else if let Some(a) = ATTRS.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
            format!(" (attribute names are lowercase: {})", a.name)
        } else {
            String::new()
        };
        return Err(format!("unknown channel attribute \"{name}\"{hint}"));
    };
    match spec.range {
        Some((min, max)) => match number(value, min, max) {
            Some(n) => Ok((spec, n.to_string())),
            None => Err(format!(
                "{name}=\"{value}\" is not a number in {min}..{max}"
            )),
        },
        None => {
            let algs = parse_chap_algorithms(value)?;
            Ok((
                spec,
                algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(","),
            ))
        }
    }
}

fn parse_chap_algorithms(value: &str) -> Result<Vec<ChapAlgorithm>, String> {
    let mut out = Vec::new();
    for item in value.split(',') {
        let Some((_, alg)) = ChapAlgorithm::ALL.iter().find(|(n, _)| *n == item) else {
            return Err(format!(
                "chap_algorithms: \"{item}\" is not one of MD5, SHA1, SHA256, SHA3-256"
            ));
        };
        if out.contains(alg) {
            return Err(format!("chap_algorithms: \"{item}\" is listed twice"));
        }
        out.push(*alg);
    }
    Ok(out)
}

impl ChannelAttrs {
    /// Sets one attribute from its validated canonical text.
    pub(crate) fn set(&mut self, name: &str, canonical: &str) {
        let n = || canonical.parse::<u32>().unwrap_or(0);
        match name {
            "nopout_timeout" => self.nopout_timeout = n(),
            "nopout_response_timeout" => self.nopout_response_timeout = n(),
            "login_timeout" => self.login_timeout = n(),
            "replacement_timeout" => self.replacement_timeout = n(),
            "tmf_timeout" => self.tmf_timeout = n(),
            "queue_depth" => self.queue_depth = n(),
            "chap_algorithms" => {
                if let Ok(algs) = parse_chap_algorithms(canonical) {
                    self.chap_algorithms = algs;
                }
            }
            _ => {}
        }
    }

    /// One attribute's value as canonical text: what [`set`](Self::set) takes (the two
    /// name-to-field maps side by side, so a new attribute goes into both).
    pub(crate) fn text(&self, name: &str) -> String {
        match name {
            "nopout_timeout" => self.nopout_timeout.to_string(),
            "nopout_response_timeout" => self.nopout_response_timeout.to_string(),
            "login_timeout" => self.login_timeout.to_string(),
            "replacement_timeout" => self.replacement_timeout.to_string(),
            "tmf_timeout" => self.tmf_timeout.to_string(),
            "queue_depth" => self.queue_depth.to_string(),
            "chap_algorithms" => self
                .chap_algorithms
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(","),
            // Not an attribute (`validate_attr` refuses it first): no text.
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every attribute field 8 accepts is in both maps: set, then read back, a value other
    /// than its default.
    #[test]
    fn every_attribute_sets_and_reads_back() {
        for spec in ATTRS {
            let value = match spec.range {
                Some((_, max)) => max.to_string(),
                None => "SHA256,MD5".to_string(),
            };
            assert_ne!(value, spec.default, "{}", spec.name);
            let (_, canonical) = validate_attr(spec.name, &value).unwrap();
            let mut a = ChannelAttrs::default();
            a.set(spec.name, &canonical);
            assert_eq!(a.text(spec.name), canonical, "{}", spec.name);
            assert_ne!(a, ChannelAttrs::default(), "{} changed nothing", spec.name);
        }
    }
}
