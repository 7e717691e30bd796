//! `/etc/initiatorname.iscsi`: `InitiatorName=iqn....`, generated once and kept for life.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::error::{ConfigError, ConfigErrors, Field};
use super::lexer::lex;
use super::names::validate_iscsi_name;

/// The prefix of generated names: `iqn.2005-03.org.core-iscsi:01:`. The naming authority is
/// the one this project uses for generated names (a site owning a domain can pass its own
/// prefix to `initiator-iname -p`); `01` is the scheme version of what follows: 12 random hexadecimal digits (48 bits from the kernel's random
/// source), the same shape as open-iscsi's `iscsi-iname`.
pub const DEFAULT_IQN_PREFIX: &str = "iqn.2005-03.org.core-iscsi:01";

const FIELD: Field = Field(1, "InitiatorName");

/// Parses the text of initiatorname.iscsi: comment lines, blank lines, and exactly one
/// `InitiatorName=NAME` line (shell quoting allowed). Every bad line is reported, one error
/// each, in line order.
pub fn parse_initiator_name(file: &Path, text: impl AsRef<[u8]>) -> Result<String, ConfigErrors> {
    let lexed = lex(file, text.as_ref(), "InitiatorName", false);
    // The lexer's errors and the lines' own, in line order.
    let mut errors: Vec<(usize, ConfigError)> = lexed
        .errors
        .into_iter()
        .map(|e| (e.line_number().unwrap_or(0), e))
        .collect();
    let mut found: Option<(usize, String)> = None;
    for a in lexed.assignments.iter() {
        let problem = if let Some((first, _)) = &found {
            Some(ConfigError::line(
                file,
                a.line,
                format!("InitiatorName is given twice (first on line {first})"),
            ))
        } else if a.words.len() != 1 {
            Some(ConfigError::field(file, a.line, FIELD, "the name must be a single word"))
        } else {
            let name = &a.words[0];
            match validate_iscsi_name(name) {
                Ok(()) => {
                    found = Some((a.line, name.clone()));
                    None
                }
                Err(p) => Some(ConfigError::field(file, a.line, FIELD, p)),
            }
        };
        if let Some(e) = problem {
            errors.push((a.line, e));
        }
    }
    errors.sort_by_key(|(line, _)| *line);
    let errors: Vec<ConfigError> = errors.into_iter().map(|(_, e)| e).collect();
    ConfigErrors::check(errors)?;
    match found {
        Some((_, name)) => Ok(name),
        None => Err(ConfigError::file(file, "has no InitiatorName= line").into()),
    }
}

/// Reads and validates initiatorname.iscsi.
pub fn read_initiator_name(file: &Path) -> Result<String, ConfigErrors> {
    let text = fs::read(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConfigError::file(
            file,
            "does not exist (create it with: initiator-iname --write)",
        ),
        _ => ConfigError::file(file, format!("cannot read: {e}")),
    })?;
    parse_initiator_name(file, &text)
}

/// Generates a new unique initiator name: `PREFIX:` and 12 random hexadecimal digits
/// (`prefix` defaults to [`DEFAULT_IQN_PREFIX`]). The result is validated.
pub fn generate_initiator_name(prefix: Option<&str>) -> Result<String, String> {
    let prefix = prefix.unwrap_or(DEFAULT_IQN_PREFIX);
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| format!("cannot read random bytes: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{prefix}:{hex}");
    validate_iscsi_name(&name)?;
    Ok(name)
}

/// What [`ensure_initiator_name`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnsuredName {
    /// The file existed and holds this valid name; it was not touched.
    Existing(String),
    /// The file did not exist and was created with this new name.
    Created(String),
}

impl EnsuredName {
    /// The initiator name.
    pub fn name(&self) -> &str {
        match self {
            EnsuredName::Existing(n) | EnsuredName::Created(n) => n,
        }
    }
}

/// Makes sure `CONFIG_DIR/initiatorname.iscsi` exists. An existing file is never changed: it is
/// validated and its name returned (an invalid one is an error). A missing one is created with a
/// new name, mode 0644, atomically: written and synced to a temporary file in the same
/// directory, then moved into place with `renameat2(RENAME_NOREPLACE)` (a hard link where the
/// file system lacks it), so a file created meanwhile by someone else is never overwritten.
pub fn ensure_initiator_name(config_dir: &Path) -> Result<EnsuredName, ConfigErrors> {
    let path = config_dir.join("initiatorname.iscsi");
    if fs::symlink_metadata(&path).is_ok() {
        return read_initiator_name(&path).map(EnsuredName::Existing);
    }
    let name = generate_initiator_name(None).map_err(|p| ConfigError::file(&path, p))?;
    let tmp = config_dir.join(format!(".initiatorname.iscsi.{}.tmp", std::process::id()));
    let io =
        |what: &str, e: std::io::Error| ConfigError::file(&path, format!("cannot {what}: {e}"));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| io("create a temporary file", e))?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| io("set mode 0644", e))?;
        write!(
            f,
            "## The iSCSI name of this initiator, generated once by initiator-iname.\n\
             ## Keep it for the life of the host: targets grant access by this name.\n\
             InitiatorName={name}\n"
        )
        .map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        drop(f);
        move_no_replace(&tmp, &path)?;
        if let Ok(d) = fs::File::open(config_dir) {
            let _ = d.sync_all();
        }
        Ok(EnsuredName::Created(name.clone()))
    })();
    let _ = fs::remove_file(&tmp);
    match result {
        Err(ConfigError::File { .. }) if fs::symlink_metadata(&path).is_ok() => {
            // Lost a race with another creator: theirs stands.
            read_initiator_name(&path).map(EnsuredName::Existing)
        }
        other => other.map_err(ConfigErrors::from),
    }
}

fn move_no_replace(from: &Path, to: &Path) -> Result<(), ConfigError> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => fs::hard_link(from, to)
            .map_err(|e| ConfigError::file(to, format!("cannot create: {e}"))),
        Err(e) => Err(ConfigError::file(to, format!("cannot create: {e}"))),
    }
}
