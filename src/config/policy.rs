//! `[policy]`: the folder (or bucket) of the policy set in force, its history, how often it is
//! watched.
//!
//! Owns: the keys and their defaults. Must never: read a policy file (`policy` does).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[policy]`: the policy set (Casbin model and rules, habilitations, dataset catalog).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy set in force (without `url`); with `url`, the set that seeds an empty
    /// bucket.
    pub dir: PathBuf,
    /// Where submitted policy versions are kept (history, rollback), without `url`.
    #[serde(default = "default_history_dir")]
    pub history_dir: PathBuf,
    /// `s3://bucket/prefix`: the set in force and its history live in this bucket, shared by
    /// the gateways (conditional writes; no shared file system needed).
    #[serde(default)]
    pub url: Option<String>,
    /// A secret file (0600) of the policy bucket's `AWS_…` credentials; without it, the AWS
    /// environment variables.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// How often the policy folder is checked for changes, in seconds (0: never; SIGHUP
    /// still reloads).
    #[serde(default = "default_watch")]
    pub watch_interval_secs: u64,
    /// How many distinct operators must stand behind a version before it is put in force
    /// through the operator API or the console: 1 (the default) lets the operator who applies
    /// it alone; 2 needs another operator's approval first (never the version's author's), 3
    /// two others'. Putting back a version that was in force before needs none.
    #[serde(default = "default_approvals")]
    pub approvals: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: "policies".into(),
            history_dir: default_history_dir(),
            url: None,
            credentials_file: None,
            watch_interval_secs: default_watch(),
            approvals: default_approvals(),
        }
    }
}

fn default_history_dir() -> PathBuf {
    "policy-history".into()
}
fn default_watch() -> u64 {
    2
}
fn default_approvals() -> usize {
    1
}
