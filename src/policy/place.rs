//! Where the policy set in force and its history are kept: a folder on disk ([`Folder`], over
//! `policy::folder`'s crash-safe files and `policy::history`'s numbered folders), or a bucket
//! shared by the gateways (`storage::policy_bucket`, `policy.url`).
//!
//! Owns: the two small interfaces the policy store and the history are written against
//! ([`SetPlace`], [`HistoryPlace`]) and their folder implementations. Must never: decide
//! whether a set may replace another (the store's `may_replace` does), or validate a set (the
//! store validates every set it reads before it serves it).

use std::path::{Path, PathBuf};

use super::history::VersionMeta;
use super::set::PolicyTexts;
use super::source::Problem;

/// What the set of a place reads as, given to a conditional write's `may_replace`.
pub type Seen = Result<PolicyTexts, Vec<Problem>>;

/// The place of the policy set in force, shared by every gateway that points at it.
pub trait SetPlace: Send + Sync + std::fmt::Debug {
    /// What problems name the place by: the folder, or `s3://bucket/prefix` (never a
    /// credential; shown outside the host by file name only: `Problem::named`).
    fn name(&self) -> &Path;
    /// Finishes or undoes what a crash during a write left (a folder's staged files); nothing
    /// to do where a write is one atomic object.
    fn recover(&self) -> std::io::Result<()>;
    /// The set as it stands, whole: never files of two versions.
    fn read(&self) -> Seen;
    /// Writes `texts` only if `may_replace` accepts what the place holds at the moment of the
    /// write (looked at again, and asked again, when another writer came first): the
    /// conditional write under which two operators applying at once cannot both win.
    /// `Ok(false)`: refused, nothing written. A bucket without a set is an error (only its
    /// seed fills it).
    fn write_if(
        &self,
        texts: &PolicyTexts,
        may_replace: &mut dyn FnMut(&Seen) -> bool,
    ) -> std::io::Result<bool>;
    /// A cheap stamp that changes when the set may have changed (sizes and times of the
    /// files, an object's ETag): the watcher reads the set again only when it moves.
    fn stamp(&self) -> String;
    /// Whether a read may fail while the stamp says the set is there (a bucket that answered
    /// the stamp's request but not the read's): the watcher then reads again at every tick
    /// until a read works. A folder's failed read (a missing file) is read again only when
    /// a file moves.
    fn reads_may_fail_alone(&self) -> bool {
        false
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

/// A policy folder (`policy.dir`), as `policy::folder` writes and reads it.
#[derive(Debug, Clone)]
pub struct Folder(pub PathBuf);

impl SetPlace for Folder {
    fn name(&self) -> &Path {
        &self.0
    }

    fn recover(&self) -> std::io::Result<()> {
        super::folder::recover(&self.0).map(|_| ())
    }

    fn read(&self) -> Seen {
        super::folder::read(&self.0)
    }

    fn write_if(
        &self,
        texts: &PolicyTexts,
        may_replace: &mut dyn FnMut(&Seen) -> bool,
    ) -> std::io::Result<bool> {
        super::folder::write_if(&self.0, texts, may_replace)
    }

    fn stamp(&self) -> String {
        format!("{:?}", super::folder::fingerprint(&self.0))
    }
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
