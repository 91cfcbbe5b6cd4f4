//! `[data]`: the folder holding the datasets' Parquet files.
//!
//! Owns: the key and its default. Must never: read the folder (the catalog checks its files at
//! start).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[data]`: where the datasets' Parquet files live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { dir: "data".into() }
    }
}
