//! Policy version history on disk (embedded default): every submitted set is kept with its
//! author, time and comment, so operators can review, apply and roll back.
//!
//! Layout: `<history>/<number>/{model.conf, policy.csv, habilitations.toml, datasets.toml,
//! meta.json}`, numbers increasing from 1.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::set::PolicyTexts;

/// What is known of one stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionMeta {
    pub number: u64,
    /// Content hash (the policy version).
    pub version: String,
    pub author: String,
    pub comment: String,
    pub submitted_at: DateTime<Utc>,
    /// Every time this version was put in force, and by whom.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>)]
    pub applied: Vec<(DateTime<Utc>, String)>,
    /// Every operator who approved this version before it was put in force, and when
    /// (`policy.approvals`).
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>)]
    pub approvals: Vec<(DateTime<Utc>, String)>,
}

/// The history folder.
#[derive(Debug, Clone)]
pub struct PolicyHistory {
    dir: PathBuf,
}

impl PolicyHistory {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Every stored version, oldest first.
    pub fn list(&self) -> Vec<VersionMeta> {
        let mut out: Vec<VersionMeta> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        out.sort_by_key(|m| m.number);
        out
    }

    fn highest_number(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0)
    }

    pub fn get(&self, number: u64) -> Option<(VersionMeta, PolicyTexts)> {
        let dir = self.dir.join(number.to_string());
        let meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
        let texts = PolicyTexts::read(&dir).ok()?;
        Some((meta, texts))
    }

    /// Stores a new version (already validated by the caller).
    pub fn submit(
        &self,
        texts: &PolicyTexts,
        author: &str,
        comment: &str,
    ) -> std::io::Result<VersionMeta> {
        std::fs::create_dir_all(&self.dir)?;
        // Claim the next number atomically (two writers never share a version folder).
        let mut number = self.highest_number() + 1;
        let dir = loop {
            let dir = self.dir.join(number.to_string());
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
                Err(e) => return Err(e),
            }
        };
        texts.write(&dir)?;
        let meta = VersionMeta {
            number,
            version: texts.version(),
            author: author.to_string(),
            comment: comment.to_string(),
            submitted_at: Utc::now(),
            applied: Vec::new(),
            approvals: Vec::new(),
        };
        self.write_meta(&meta)?;
        Ok(meta)
    }

    /// Records that `number` was put in force by `author`.
    pub fn mark_applied(&self, number: u64, author: &str) -> std::io::Result<()> {
        if let Some((mut meta, _)) = self.get(number) {
            meta.applied.push((Utc::now(), author.to_string()));
            self.write_meta(&meta)?;
        }
        Ok(())
    }

    /// Makes sure the set in force at start is in the history (so it can be rolled back to).
    /// Records `who`'s approval of version `number`; its metadata after, or `None` when there
    /// is no such version.
    pub fn approve(&self, number: u64, who: &str) -> std::io::Result<Option<VersionMeta>> {
        let Some((mut meta, _)) = self.get(number) else {
            return Ok(None);
        };
        meta.approvals.push((Utc::now(), who.to_string()));
        self.write_meta(&meta)?;
        Ok(Some(meta))
    }

    pub fn ensure_recorded(&self, texts: &PolicyTexts) -> std::io::Result<()> {
        let version = texts.version();
        if self.list().iter().any(|m| m.version == version) {
            return Ok(());
        }
        let meta = self.submit(texts, "policy folder at start", "recorded automatically")?;
        self.mark_applied(meta.number, "policy folder at start")
    }

    fn write_meta(&self, meta: &VersionMeta) -> std::io::Result<()> {
        let dir = self.dir.join(meta.number.to_string());
        let tmp = dir.join(".meta.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(meta).unwrap_or_default())?;
        std::fs::rename(tmp, dir.join("meta.json"))
    }
}
