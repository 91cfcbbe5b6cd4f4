//! `[policy]`: the folder of the policy set in force, its history, how often it is watched.
//!
//! Owns: the keys and their defaults. Must never: read a policy file (`policy` does).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[policy]`: the policy set (Casbin model and rules, habilitations, dataset catalog).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy set in force.
    pub dir: PathBuf,
    /// Where submitted policy versions are kept (history, rollback).
    #[serde(default = "default_history_dir")]
    pub history_dir: PathBuf,
    /// How often the policy folder is checked for changes, in seconds (0: never; SIGHUP
    /// still reloads).
    #[serde(default = "default_watch")]
    pub watch_interval_secs: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: "policies".into(),
            history_dir: default_history_dir(),
            watch_interval_secs: default_watch(),
        }
    }
}

fn default_history_dir() -> PathBuf {
    "policy-history".into()
}
fn default_watch() -> u64 {
    2
}
