//! `[pseudonymisation]` and `[[pseudonymisation.rotations]]`: where the master secret comes
//! from, the key rotations of each domain, the pseudonymised extracts.
//!
//! Owns: the keys, their defaults and the checks that need nothing but the configuration.
//! Must never: hold or read the master secret itself (only its file or variable is *named*
//! here; `pseudonym` loads it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[pseudonymisation]`: where the master secret comes from (never the secret itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymisationConfig {
    /// File holding the master secret (must not be readable by group or others).
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the master secret (hex), used instead of a file.
    #[serde(default)]
    pub master_key_env: Option<String>,
    /// Key rotations: from `from` on, `domain` uses key `version` (new pseudonyms).
    #[serde(default)]
    pub rotations: Vec<RotationConfig>,
    /// Keep pseudonymised extracts (a copy of a dataset per domain and key version whose
    /// pseudonymised columns hold their pseudonyms), built in the background on first use, so
    /// that queries read pseudonyms instead of computing them (see `docs/operations.md`).
    #[serde(default = "default_true")]
    pub extracts: bool,
    /// Where extracts are kept (0700; each as large as its dataset).
    #[serde(default = "default_extracts_dir")]
    pub extracts_dir: PathBuf,
}

fn default_extracts_dir() -> PathBuf {
    "extracts".into()
}

fn default_true() -> bool {
    true
}

/// `[[pseudonymisation.rotations]]`: a new key version of a domain from a date on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    pub domain: String,
    /// 2 or more (version 1 is every domain's first key).
    pub version: u32,
    /// First day of the new version, `"YYYY-MM-DD"`.
    pub from: chrono::NaiveDate,
}

impl Default for PseudonymisationConfig {
    fn default() -> Self {
        Self {
            master_key_file: Some("keys/master.key".into()),
            master_key_env: None,
            rotations: Vec::new(),
            extracts: true,
            extracts_dir: default_extracts_dir(),
        }
    }
}

impl PseudonymisationConfig {
    /// Checks that need nothing but this section: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut seen_versions = std::collections::HashSet::new();
        for (i, r) in self.rotations.iter().enumerate() {
            let key = format!("pseudonymisation.rotations[{i}]");
            if r.version < 2 {
                problems.push((
                    format!("{key}.version"),
                    "rotations start at version 2 (version 1 is the first key)".into(),
                ));
            }
            if !seen_versions.insert((r.domain.clone(), r.version)) {
                problems.push((
                    format!("{key}.version"),
                    format!("version {} of `{}` is listed twice", r.version, r.domain),
                ));
            }
            let later_but_older = self
                .rotations
                .iter()
                .any(|o| o.domain == r.domain && o.version < r.version && o.from >= r.from);
            if later_but_older {
                problems.push((
                    format!("{key}.from"),
                    "a higher version must start after the lower ones".into(),
                ));
            }
        }
        match (&self.master_key_file, &self.master_key_env) {
            (None, None) => problems.push((
                "pseudonymisation.master_key_file".into(),
                "set `master_key_file` or `master_key_env`".into(),
            )),
            (Some(_), Some(_)) => problems.push((
                "pseudonymisation.master_key_env".into(),
                "set only one of `master_key_file` and `master_key_env`".into(),
            )),
            _ => {}
        }
        problems
    }
}
