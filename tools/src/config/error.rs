//! Errors and warnings of the configuration layer.
//!
//! Every error is exactly one line, and names where the problem is:
//!
//! * `FILE:LINE: field N (NAME): problem` when one field of a line is at fault,
//! * `FILE:LINE: problem` when the line as a whole is (bad quoting, unknown variable),
//! * `FILE: problem` when the file is (unreadable, wrong permissions).
//!
//! Fields are numbered as in the file format's documentation (initiator(5) and friends), not by
//! their position in the line: the CHANNEL port is always "field 5 (port)", whether or not the
//! optional network device (field 3) was given. No error or warning ever contains a CHAP secret,
//! and errors about `initiator_auth` never quote any text of the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// One field of a line: its number in the format's documentation and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field(pub u8, pub &'static str);

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {} ({})", self.0, self.1)
    }
}

/// A configuration error. Its `Display` is the single line shown to the administrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file as a whole: cannot be read, missing, not UTF-8, empty where it must not be.
    #[error("{}: {problem}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A secrets file that group or others may read or write.
    #[error(
        "{}: mode {mode:04o} lets group or others read or write this file of CHAP secrets; run: chmod 600 {}",
        file.display(),
        file.display()
    )]
    Permissions {
        /// The file.
        file: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// A line as a whole (quoting, unknown variable, trailing text).
    #[error("{}:{line}: {problem}", file.display())]
    Line {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// One field of a line.
    #[error("{}:{line}: {field}: {problem}", file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field at fault.
        field: Field,
        /// What is wrong.
        problem: String,
    },
}

impl ConfigError {
    pub(crate) fn file(file: &Path, problem: impl Into<String>) -> Self {
        ConfigError::File {
            file: file.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn line(file: &Path, line: usize, problem: impl Into<String>) -> Self {
        ConfigError::Line {
            file: file.to_path_buf(),
            line,
            problem: problem.into(),
        }
    }

    pub(crate) fn field(
        file: &Path,
        line: usize,
        field: Field,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError::Field {
            file: file.to_path_buf(),
            line,
            field,
            problem: problem.into(),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::File { file, .. }
            | ConfigError::Permissions { file, .. }
            | ConfigError::Line { file, .. }
            | ConfigError::Field { file, .. } => file,
        }
    }

    /// The 1-based line the error is about, if any.
    pub fn line_number(&self) -> Option<usize> {
        match self {
            ConfigError::Line { line, .. } | ConfigError::Field { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Every error of a configuration, in file and line order: what `check-config` and `start`
/// report in one run. Its `Display` is one line per error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// `Err` with these errors unless there are none.
    pub(crate) fn check(errors: Vec<ConfigError>) -> Result<(), ConfigErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The channels a file has an error about: checks that depend on them are not made, so one
/// mistake is reported once, not again as "channel N is not defined" in the next file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Broken {
    /// Channel ids of lines with an error.
    pub(crate) ids: std::collections::BTreeSet<u32>,
    /// A line with an error whose channel id could not be made out (or the whole file).
    pub(crate) unknown: bool,
}

impl Broken {
    /// Every channel: the file could not be read at all.
    pub(crate) fn all() -> Self {
        Broken {
            unknown: true,
            ..Broken::default()
        }
    }

    /// Records a broken line whose first word is `id_text`.
    pub(crate) fn add(&mut self, id_text: Option<&str>) {
        match id_text.and_then(|t| super::lexer::number(t, 0, u64::from(super::MAX_CHANNEL_ID))) {
            Some(id) => {
                self.ids.insert(id as u32);
            }
            None => self.unknown = true,
        }
    }

    /// Whether checks about channel `id` should be left out.
    pub(crate) fn covers(&self, id: u32) -> bool {
        self.unknown || self.ids.contains(&id)
    }
}

/// A problem with one field, before the file and line are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) field: Field,
    pub(crate) problem: String,
}

impl Fault {
    pub(crate) fn new(field: Field, problem: impl Into<String>) -> Self {
        Fault {
            field,
            problem: problem.into(),
        }
    }

    pub(crate) fn at(self, file: &Path, line: usize) -> ConfigError {
        ConfigError::field(file, line, self.field, self.problem)
    }
}

/// A warning: the configuration works, but probably not as the administrator meant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number, if the warning is about a line.
    pub line: Option<usize>,
    /// The field, as `field N (NAME)`, if the warning is about one field.
    pub field: Option<String>,
    /// What is probably wrong.
    pub message: String,
}

impl Warning {
    pub(crate) fn new(
        file: &Path,
        line: usize,
        field: Option<Field>,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            file: file.to_path_buf(),
            line: Some(line),
            field: field.map(|f| f.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": warning: {}", self.message)
    }
}
