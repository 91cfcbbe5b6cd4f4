//! Where the policy set in force is kept: a folder on disk ([`Folder`], over `policy::folder`'s
//! crash-safe files), or a bucket shared by the gateways (`storage::policy_bucket`,
//! `policy.url`).
//!
//! Owns: the interface the policy store is written against ([`SetPlace`]) and its folder
//! implementation (the history's, `HistoryPlace`, is beside the history in `policy::history`).
//! Must never: decide whether a set may replace another (the store's `may_replace` does), or
//! validate a set (the store validates every set it reads before it serves it).

use std::path::{Path, PathBuf};

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
