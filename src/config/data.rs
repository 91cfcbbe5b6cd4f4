//! `[data]`: where the datasets' Parquet files are: a local folder, or an S3-compatible
//! bucket.
//!
//! Owns: the keys and their defaults. Must never: read the folder or the bucket (the catalog
//! checks its files at start), or hold credentials (they come from the AWS environment
//! variables or the secret file `credentials_file`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[data]`: where the datasets' Parquet files live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The local folder the catalog's paths are relative to (without `url`); with `url`, the
    /// hub's local working folder.
    pub dir: PathBuf,
    /// `s3://bucket/prefix`: the catalog's paths are keys under `prefix` in `bucket`.
    pub url: Option<String>,
    /// A secret file (0600) of `AWS_ACCESS_KEY_ID=…`, `AWS_SECRET_ACCESS_KEY=…` and
    /// optionally `AWS_SESSION_TOKEN=…` lines; without it, the AWS environment variables.
    pub credentials_file: Option<PathBuf>,
    /// The folder of the published tables of the statistical secret (default
    /// `<dir>/.tables`). Gateways sharing one folder publish each version of a table once.
    pub tables_dir: Option<PathBuf>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: "data".into(),
            url: None,
            credentials_file: None,
            tables_dir: None,
        }
    }
}
