//! The policy set as files, and problems reported against them as `file:line`.

use std::path::{Path, PathBuf};

/// File names inside the policy folder.
pub struct PolicyFiles;

impl PolicyFiles {
    pub const MODEL: &'static str = "model.conf";
    pub const RULES: &'static str = "policy.csv";
    pub const HABILITATIONS: &'static str = "habilitations.toml";
    pub const DATASETS: &'static str = "datasets.toml";
    /// Optional: the tables of the statistical secret.
    pub const TABLES: &'static str = "tables.toml";
}

/// One problem in a policy file, for `passerelle check` and readiness details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// `file:line: message` with the file's name only: what is shown outside the host (API
    /// answers, readiness), which never reveals the hub's paths. (`Display` keeps the whole
    /// path, for `passerelle check` and the operator's log.)
    pub fn named(&self) -> String {
        let file = self
            .file
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        match self.line {
            Some(line) => format!("{file}:{line}: {}", self.message),
            None => format!("{file}: {}", self.message),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// 1-based line of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
