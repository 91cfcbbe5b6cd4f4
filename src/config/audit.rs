//! `[audit]`: where the audit trail is written, with which signing key, how segments are cut,
//! kept and committed.
//!
//! Owns: the keys and their defaults. Must never: read the signing key (`audit` does, and
//! refuses it if group or others can read it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[audit]`: where the audit trail is written, and how (see `docs/operations.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The trail folder; with `node`, the folder holding every node's trail.
    #[serde(default = "default_audit_dir")]
    pub dir: PathBuf,
    /// This gateway's name when several serve one hub: its trail is `<dir>/<node>/`, signed by
    /// its own key, and readers (journals, audit search) read every node's trail under `dir`.
    #[serde(default)]
    pub node: Option<String>,
    /// Ed25519 seed (64 hex characters) signing the head; refused if group or others can read it.
    #[serde(default = "default_audit_signing_key")]
    pub signing_key_file: PathBuf,
    /// A new segment starts before a record would make the current one larger than this.
    #[serde(default = "default_segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// A new segment starts once the current one's first record is this old, in seconds.
    #[serde(default = "default_segment_max_age")]
    pub segment_max_age_secs: u64,
    /// Whole segments whose last record is older than this many months are removed (a signed
    /// anchor keeps the rest verifiable); 0 keeps everything.
    #[serde(default = "default_retention_months")]
    pub retention_months: u32,
    /// How long the writer waits for more events before committing a batch, in ms (0: commit
    /// as soon as the queue is empty).
    #[serde(default)]
    pub commit_interval_ms: u64,
    /// Requests without a valid token are not recorded one by one: they are counted per source
    /// and reason, and each count is one record per window of this many seconds.
    #[serde(default = "default_refusal_window")]
    pub refusal_window_secs: u64,
}

fn default_audit_dir() -> PathBuf {
    "audit".into()
}
fn default_audit_signing_key() -> PathBuf {
    "keys/audit-signing.key".into()
}
fn default_segment_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_segment_max_age() -> u64 {
    24 * 3600
}
fn default_refusal_window() -> u64 {
    60
}
fn default_retention_months() -> u32 {
    12
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: default_audit_dir(),
            node: None,
            signing_key_file: default_audit_signing_key(),
            segment_max_bytes: default_segment_max_bytes(),
            segment_max_age_secs: default_segment_max_age(),
            retention_months: default_retention_months(),
            commit_interval_ms: 0,
            refusal_window_secs: default_refusal_window(),
        }
    }
}

impl AuditConfig {
    /// The folder this process writes its trail in: `dir`, or `dir/<node>` with `node`.
    pub fn trail_dir(&self) -> PathBuf {
        match &self.node {
            Some(node) => self.dir.join(node),
            None => self.dir.clone(),
        }
    }

    /// Checks that need nothing but the configuration: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.refusal_window_secs == 0 {
            problems.push((
                "audit.refusal_window_secs".into(),
                "must be at least 1".into(),
            ));
        }
        // SECURITY: the node name is a folder under `dir`: one plain name, nothing that
        // leaves it or lands on another node's trail by another spelling.
        if let Some(node) = &self.node
            && !is_node_name(node)
        {
            problems.push((
                "audit.node".into(),
                "must be 1 to 64 characters among a-z, 0-9 and `-`, starting with a letter or digit".into(),
            ));
        }
        problems
    }
}

/// A node name: 1 to 64 of `a-z`, `0-9`, `-`, not starting with `-`.
pub fn is_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_name_is_one_plain_folder_name() {
        for good in ["gw-1", "a", "paris-2", &"x".repeat(64)] {
            assert!(is_node_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../b",
            "a/b",
            "-a",
            "GW1",
            "a.b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!is_node_name(bad), "{bad}");
        }
    }
}
