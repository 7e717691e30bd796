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
