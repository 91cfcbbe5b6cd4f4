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
    #[serde(default = "default_audit_dir")]
    pub dir: PathBuf,
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
            signing_key_file: default_audit_signing_key(),
            segment_max_bytes: default_segment_max_bytes(),
            segment_max_age_secs: default_segment_max_age(),
            retention_months: default_retention_months(),
            commit_interval_ms: 0,
            refusal_window_secs: default_refusal_window(),
        }
    }
}
