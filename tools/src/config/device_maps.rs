//! `/etc/sysconfig/iscsi_device_maps`: where the LUNs of a channel are mounted.
//!
//! ```text
//! DEVICE="channel lun partition name"   # comment
//! ```
//!
//! Fields: 1 channel, 2 LUN, 3 partition (0 = the whole device, e.g. a DVD image), 4 name:
//! the mount point is `/<target name>/<name>`, so the name is a single path component.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::error::{ConfigError, ConfigErrors, Field};
use super::lexer::{lex, number};
use super::MAX_CHANNEL_ID;

const F_CHANNEL: Field = Field(1, "channel");
const F_LUN: Field = Field(2, "lun");
const F_PARTITION: Field = Field(3, "partition");
const F_NAME: Field = Field(4, "name");

/// Largest partition number.
pub const MAX_PARTITION: u32 = 255;

/// One DEVICE line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceMap {
    /// The channel.
    pub channel: u32,
    /// The LUN (as the target reports it in REPORT LUNS).
    pub lun: u64,
    /// Partition number; 0 means the whole device.
    pub partition: u32,
    /// Mount point name under `/<target name>/`.
    pub name: String,
    /// The line it is on.
    pub line: usize,
}

/// Parses the text of the device maps file; every error of the file at once.
pub fn parse_device_maps(
    file: &Path,
    text: impl AsRef<[u8]>,
) -> Result<Vec<DeviceMap>, ConfigErrors> {
    let (maps, errors) = parse_device_maps_all(file, text.as_ref());
    ConfigErrors::check(errors)?;
    Ok(maps)
}

/// [`parse_device_maps`]'s work: the good lines and one error per bad line (nothing depends
/// on a DEVICE line, so which channels the bad ones name is not kept).
pub(crate) fn parse_device_maps_all(
    file: &Path,
    text: &[u8],
) -> (Vec<DeviceMap>, Vec<ConfigError>) {
    let mut maps: Vec<DeviceMap> = Vec::new();
    let mut by_key: BTreeMap<(u32, u64, u32), usize> = BTreeMap::new();
    let mut by_name: BTreeMap<(u32, String), usize> = BTreeMap::new();
    let lexed = lex(file, text, "DEVICE", false);
    let mut errors = lexed.errors;
    for a in lexed.assignments {
        match device_line(file, &a.words, a.line, &maps, &mut by_key, &mut by_name) {
            Ok(m) => maps.push(m),
            Err(e) => errors.push(e),
        }
    }
    errors.sort_by_key(|e| e.line_number());
    (maps, errors)
}

fn device_line(
    file: &Path,
    w: &[String],
    line: usize,
    maps: &[DeviceMap],
    by_key: &mut BTreeMap<(u32, u64, u32), usize>,
    by_name: &mut BTreeMap<(u32, String), usize>,
) -> Result<DeviceMap, ConfigError> {
    let err = |f: Field, p: String| ConfigError::field(file, line, f, p);
    let get = |i: usize, f: Field| w.get(i).ok_or_else(|| err(f, "missing".into()));
    let t = get(0, F_CHANNEL)?;
    let channel = number(t, 0, MAX_CHANNEL_ID as u64).ok_or_else(|| {
        err(
            F_CHANNEL,
            format!("\"{t}\" is not a channel id (0-{MAX_CHANNEL_ID})"),
        )
    })? as u32;
    let t = get(1, F_LUN)?;
    let lun =
        number(t, 0, u64::MAX).ok_or_else(|| err(F_LUN, format!("\"{t}\" is not a LUN number")))?;
    let t = get(2, F_PARTITION)?;
    let partition = number(t, 0, MAX_PARTITION as u64).ok_or_else(|| {
        err(
            F_PARTITION,
            format!("\"{t}\" is not a partition number (0-{MAX_PARTITION}, 0 = whole device)"),
        )
    })? as u32;
    let name = get(3, F_NAME)?;
    if name == "."
        || name == ".."
        || name.contains('/')
        || name.len() > 255
        || name.chars().any(char::is_control)
    {
        return Err(err(
            F_NAME,
            format!("\"{name}\" is not a single path component (no '/', not . or ..)"),
        ));
    }
    if let Some(extra) = w.get(4) {
        return Err(err(
            Field(5, "extra"),
            format!("unexpected \"{extra}\" (DEVICE has 4 fields)"),
        ));
    }
    let whole_vs_part = maps
        .iter()
        .find(|m| m.channel == channel && m.lun == lun && (m.partition == 0) != (partition == 0));
    if let Some(m) = whole_vs_part {
        return Err(err(
            F_PARTITION,
            format!(
                "channel {channel} LUN {lun} is mapped both whole (partition 0) and by partition (line {})",
                m.line
            ),
        ));
    }
    if let Some(prev) = by_key.get(&(channel, lun, partition)) {
        return Err(err(
            F_PARTITION,
            format!("channel {channel} LUN {lun} partition {partition} is already mapped on line {prev}"),
        ));
    }
    if let Some(prev) = by_name.get(&(channel, name.clone())) {
        return Err(err(
            F_NAME,
            format!("\"{name}\" is already used for channel {channel} on line {prev}"),
        ));
    }
    by_key.insert((channel, lun, partition), line);
    by_name.insert((channel, name.clone()), line);
    Ok(DeviceMap {
        channel,
        lun,
        partition,
        name: name.clone(),
        line,
    })
}
