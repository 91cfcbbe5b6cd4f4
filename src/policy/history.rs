//! Policy version history: every submitted set is kept with its author, time and comment, so
//! operators can review, apply and roll back.
//!
//! Layout in a folder: `<history>/<number>/{model.conf, policy.csv, habilitations.toml,
//! datasets.toml, meta.json}`, numbers increasing from 1 ([`HistoryFolder`]); in the policy
//! bucket: the index `history.json` and each version's files in `history/<number>.json`
//! (`storage::policy_bucket`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The place of the history of submitted versions, shared like the set's.
pub trait HistoryPlace: Send + Sync + std::fmt::Debug {
    /// Every readable version's metadata, in no particular order; an error when the place
    /// cannot say (never an empty history instead).
    fn entries(&self) -> std::io::Result<Vec<VersionMeta>>;
    /// The highest number taken, readable or not (0 when none).
    fn highest_number(&self) -> std::io::Result<u64>;
    /// Version `number`, `None` when there is no readable version of that number.
    fn get(&self, number: u64) -> std::io::Result<Option<(VersionMeta, PolicyTexts)>>;
    /// Stores `texts` as version `meta.number` if that number is free; `Ok(false)` when
    /// another writer took it (the caller tries the next one).
    fn create(&self, meta: &VersionMeta, texts: &PolicyTexts) -> std::io::Result<bool>;
    /// Rewrites version `number`'s metadata with `change` applied; its metadata after, or
    /// `None` when there is no such version.
    fn update(
        &self,
        number: u64,
        change: &mut dyn FnMut(&mut VersionMeta),
    ) -> std::io::Result<Option<VersionMeta>>;
}

/// A history folder (`policy.history_dir`): `<number>/{the set's files, meta.json}`.
#[derive(Debug, Clone)]
pub struct HistoryFolder(pub PathBuf);

impl HistoryFolder {
    /// The entries of the folder; none before the first submission (the folder is created
    /// then).
    fn folders(&self) -> std::io::Result<impl Iterator<Item = std::fs::DirEntry>> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(entries.into_iter().flatten().flatten())
    }

    fn write_meta(&self, meta: &VersionMeta) -> std::io::Result<()> {
        let dir = self.0.join(meta.number.to_string());
        let tmp = dir.join(".meta.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(meta).unwrap_or_default())?;
        std::fs::rename(tmp, dir.join("meta.json"))
    }
}

impl HistoryPlace for HistoryFolder {
    fn entries(&self) -> std::io::Result<Vec<VersionMeta>> {
        Ok(self
            .folders()?
            .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect())
    }

    fn highest_number(&self) -> std::io::Result<u64> {
        Ok(self
            .folders()?
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0))
    }

    fn get(&self, number: u64) -> std::io::Result<Option<(VersionMeta, PolicyTexts)>> {
        let dir = self.0.join(number.to_string());
        let read = || {
            let meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
            let texts = PolicyTexts::read(&dir).ok()?;
            Some((meta, texts))
        };
        Ok(read())
    }

    fn create(&self, meta: &VersionMeta, texts: &PolicyTexts) -> std::io::Result<bool> {
        std::fs::create_dir_all(&self.0)?;
        // Claim the number atomically (two writers never share a version folder).
        let dir = self.0.join(meta.number.to_string());
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        }
        texts.write(&dir)?;
        self.write_meta(meta)?;
        Ok(true)
    }

    fn update(
        &self,
        number: u64,
        change: &mut dyn FnMut(&mut VersionMeta),
    ) -> std::io::Result<Option<VersionMeta>> {
        let Some((mut meta, _)) = self.get(number)? else {
            return Ok(None);
        };
        change(&mut meta);
        self.write_meta(&meta)?;
        Ok(Some(meta))
    }
}
