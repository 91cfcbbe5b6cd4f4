//! Policy version history: every submitted set is kept with its author, time and comment, so
//! operators can review, apply and roll back.
//!
//! Layout in a folder: `<history>/<number>/{model.conf, policy.csv, habilitations.toml,
//! datasets.toml, meta.json}`, numbers increasing from 1 (`policy::place::HistoryFolder`); in
//! the policy bucket: `history/<number>.json` (`storage::policy_bucket`).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::place::{HistoryFolder, HistoryPlace};
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

/// The history: a folder (`policy.history_dir`) or the policy bucket's `history/`.
#[derive(Debug, Clone)]
pub struct PolicyHistory {
    place: Arc<dyn HistoryPlace>,
}

impl PolicyHistory {
    /// The history folder `dir`.
    pub fn new(dir: &Path) -> Self {
        Self::on(Arc::new(HistoryFolder(dir.to_path_buf())))
    }

    /// The history kept in `place`.
    pub fn on(place: Arc<dyn HistoryPlace>) -> Self {
        Self { place }
    }

    /// Every stored version, oldest first; an error when the place cannot say.
    pub fn list(&self) -> std::io::Result<Vec<VersionMeta>> {
        let mut out = self.place.entries()?;
        out.sort_by_key(|m| m.number);
        Ok(out)
    }

    /// Version `number`, `None` when there is none; an error when the place cannot say.
    pub fn get(&self, number: u64) -> std::io::Result<Option<(VersionMeta, PolicyTexts)>> {
        self.place.get(number)
    }

    /// Stores a new version (already validated by the caller).
    pub fn submit(
        &self,
        texts: &PolicyTexts,
        author: &str,
        comment: &str,
    ) -> std::io::Result<VersionMeta> {
        let mut meta = VersionMeta {
            number: 0,
            version: texts.version(),
            author: author.to_string(),
            comment: comment.to_string(),
            submitted_at: Utc::now(),
            applied: Vec::new(),
            approvals: Vec::new(),
        };
        // Two writers never share a number: the one that loses looks again, and steps over
        // numbers taken but not named in a bucket's index (a write cut between the two);
        // a place that refuses every number is an error after a hundred.
        let mut after = 0;
        for _ in 0..100 {
            meta.number = self.place.highest_number()?.max(after) + 1;
            if self.place.create(&meta, texts)? {
                return Ok(meta);
            }
            after = meta.number;
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "no free number in the policy history",
        ))
    }

    /// Records that `number` was put in force by `author`.
    pub fn mark_applied(&self, number: u64, author: &str) -> std::io::Result<()> {
        self.place
            .update(number, &mut |meta| {
                meta.applied.push((Utc::now(), author.to_string()));
            })
            .map(|_| ())
    }

    /// Records `who`'s approval of version `number`; its metadata after, or `None` when there
    /// is no such version.
    pub fn approve(&self, number: u64, who: &str) -> std::io::Result<Option<VersionMeta>> {
        self.place.update(number, &mut |meta| {
            meta.approvals.push((Utc::now(), who.to_string()));
        })
    }

    /// Makes sure the set in force at start is in the history (so it can be rolled back to).
    pub fn ensure_recorded(&self, texts: &PolicyTexts) -> std::io::Result<()> {
        let version = texts.version();
        if self.list()?.iter().any(|m| m.version == version) {
            return Ok(());
        }
        let meta = self.submit(texts, "policy store", "recorded automatically")?;
        self.mark_applied(meta.number, "policy store")
    }
}
