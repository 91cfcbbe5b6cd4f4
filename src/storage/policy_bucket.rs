//! The policy set and its history in a bucket the gateways share (`policy.url =
//! "s3://bucket/prefix"`): no shared file system, no lock.
//!
//! Owns: the layout under the prefix — `policy-set.json` (the set in force, its five files as
//! one JSON object, so that one write replaces the whole set atomically), `history.json` (the
//! index of the history: every submitted version's metadata) and `history/<number>.json` (each
//! version's files, written once) — and the conditional writes that make them safe to share: a
//! set is replaced only `If-Match` the ETag of the set that was looked at, and put in an empty
//! bucket only `If-None-Match: *` (`passerelle seed-policy`, never a start); a history number
//! is taken `If-None-Match: *`; the index is rewritten `If-Match` its ETag (a writer that comes
//! second reads it again and makes its change again). The bucket must honour these headers (AWS
//! S3 since 2024, MinIO, Ceph RGW, R2; moto in the tests).
//! Must never: list the bucket, put the store's error text (which names the bucket and the
//! key) in a problem a caller may see (it is logged), read an object of unbounded size, or
//! write a set that was not asked for by the policy store or the seed (which validate it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{Bucket, StorageError, io::IoRuntime};
use crate::policy::history::VersionMeta;
use crate::policy::{HistoryPlace, PolicyTexts, Problem, Seen, SetPlace};

/// The object of the set in force, under the prefix.
pub const SET_OBJECT: &str = "policy-set.json";
/// The index of the history, under the prefix.
const INDEX: &str = "history.json";
/// The folder of the history's files, under the prefix.
const HISTORY: &str = "history";
/// Larger objects are refused: a policy set is kilobytes (a large catalog, a few megabytes).
const MAX_OBJECT: u64 = 16 * 1024 * 1024;
/// How many times a conditional write looks again after another writer came first.
const TRIES: usize = 8;

/// A policy bucket: the set in force and the history.
pub struct PolicyBucket {
    /// `s3://bucket/prefix/policy-set.json`, what problems name the place by (outside the
    /// host, by its file name only).
    name: PathBuf,
    prefix: ObjectPath,
    store: Arc<dyn ObjectStore>,
    io: IoRuntime,
}

impl std::fmt::Debug for PolicyBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the store holds credentials: only the bucket's URL is printed.
        f.debug_struct("PolicyBucket")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The files of one version of the history.
#[derive(Serialize, Deserialize)]
struct Stored {
    number: u64,
    files: PolicyTexts,
}

/// The index of the history.
#[derive(Default, Serialize, Deserialize)]
struct Index {
    versions: Vec<VersionMeta>,
}

/// What a seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The bucket now holds the set.
    Written,
    /// The bucket already held a set: nothing written.
    HoldsASet,
    /// The bucket has a history but no set (it lost it): nothing written; a version of the
    /// history must be put back by hand, never an older folder's set.
    HasAHistory,
}

/// What an object held, with the ETag a conditional write is based on.
struct Found {
    bytes: bytes::Bytes,
    etag: String,
}

impl PolicyBucket {
    /// Opens the bucket of `url` (`policy.url`) with the credentials of `credentials_file`
    /// (`policy.credentials_file`, else the AWS environment variables). The error names the
    /// configuration key, never a credential.
    pub fn open(url: &str, credentials_file: Option<&Path>) -> Result<Arc<PolicyBucket>, String> {
        let bucket = Bucket::open(url, credentials_file).map_err(|e| match e {
            StorageError::Config(m) => format!("policy.url: {m}"),
            StorageError::Credentials(m) => format!("policy.credentials_file: {m}"),
            other => format!("policy.url: {other}"),
        })?;
        let set: ObjectPath = bucket
            .prefix
            .parts()
            .chain(ObjectPath::from(SET_OBJECT).parts())
            .collect();
        let name = PathBuf::from(format!(
            "{}/{set}",
            bucket.base.as_str().trim_end_matches('/')
        ));
        Ok(Arc::new(PolicyBucket {
            name,
            prefix: bucket.prefix,
            store: Arc::new(bucket.store),
            io: bucket.io,
        }))
    }

    fn key(&self, relative: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(relative).parts())
            .collect()
    }

    fn history_key(number: u64) -> String {
        format!("{HISTORY}/{number}.json")
    }

    /// The object `relative`, or `None` when there is none.
    fn fetch(&self, relative: &str) -> std::io::Result<Option<Found>> {
        let key = self.key(relative);
        self.io.block_on(async {
            let got = match self.store.get(&key).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(logged(relative, e)),
            };
            // SECURITY: an object that is not a policy set's size is not read into memory.
            if got.meta.size > MAX_OBJECT {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "larger than a policy set may be",
                ));
            }
            let etag = got.meta.e_tag.clone().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "the store gives objects no ETag",
                )
            })?;
            let bytes = got.bytes().await.map_err(|e| logged(relative, e))?;
            Ok(Some(Found { bytes, etag }))
        })
    }

    /// Writes `bytes` to `relative` only if it holds the version `based_on` (`None`: only if
    /// there is no object): `Ok(false)` when another writer came first.
    fn put_if(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        based_on: Option<String>,
    ) -> std::io::Result<bool> {
        let mode = match based_on {
            None => PutMode::Create,
            Some(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
        };
        let key = self.key(relative);
        self.io.block_on(async {
            match self
                .store
                .put_opts(&key, bytes.into(), PutOptions::from(mode))
                .await
            {
                Ok(_) => Ok(true),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(false),
                Err(e) => Err(logged(relative, e)),
            }
        })
    }

    fn problem(&self, message: impl Into<String>) -> Vec<Problem> {
        vec![Problem::new(&self.name, None, message)]
    }

    /// Puts `texts` in an empty bucket (`If-None-Match: *`: several seeds at once write one),
    /// only if the bucket has no history either. The caller validated `texts`.
    pub fn seed(&self, texts: &PolicyTexts) -> std::io::Result<Seeded> {
        // SECURITY: a bucket that has a history but no set lost its set: seeding it from a
        // folder could put back rules withdrawn since.
        if self.fetch(INDEX)?.is_some() {
            return Ok(if self.fetch(SET_OBJECT)?.is_some() {
                Seeded::HoldsASet
            } else {
                Seeded::HasAHistory
            });
        }
        let bytes = serde_json::to_vec_pretty(texts).map_err(std::io::Error::other)?;
        Ok(if self.put_if(SET_OBJECT, bytes, None)? {
            Seeded::Written
        } else {
            Seeded::HoldsASet
        })
    }

    /// The history's index and its ETag (`None`: no history yet). An index that does not read
    /// is an error, never an empty history.
    fn index(&self) -> std::io::Result<Option<(Index, String)>> {
        let Some(found) = self.fetch(INDEX)? else {
            return Ok(None);
        };
        let index = serde_json::from_slice::<Index>(&found.bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the policy history's index does not read",
            )
        })?;
        Ok(Some((index, found.etag)))
    }

    /// Rewrites the index with `change` made to it (`change` answers whether to write), `If-Match`
    /// the index it read: a writer that came first is read, and `change` made again to its
    /// index. Whether it was written.
    fn change_index(&self, change: &mut dyn FnMut(&mut Index) -> bool) -> std::io::Result<bool> {
        for _ in 0..TRIES {
            let (mut index, based_on) = match self.index()? {
                Some((index, etag)) => (index, Some(etag)),
                None => (Index::default(), None),
            };
            if !change(&mut index) {
                return Ok(false);
            }
            let bytes = serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?;
            if self.put_if(INDEX, bytes, based_on)? {
                return Ok(true);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the policy history kept changing under this write",
        ))
    }

    /// What `found` reads as: the set whole, or its problem.
    fn parse(&self, found: &Found) -> Seen {
        serde_json::from_slice::<PolicyTexts>(&found.bytes).map_err(|e| {
            self.problem(format!(
                "not a policy set (a JSON object of the set's files): line {}",
                e.line()
            ))
        })
    }
}

/// The store's error, logged for the operator (it names the bucket and the key) and returned
/// as its kind only.
fn logged(relative: &str, e: object_store::Error) -> std::io::Error {
    tracing::error!(object = %relative, error = %e, "policy bucket");
    let kind = match e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, "the policy bucket did not answer as expected")
}

impl SetPlace for PolicyBucket {
    fn name(&self) -> &Path {
        &self.name
    }

    fn recover(&self) -> std::io::Result<()> {
        // One object is replaced whole: nothing a crash could leave half done.
        Ok(())
    }

    fn read(&self) -> Seen {
        match self.fetch(SET_OBJECT) {
            Ok(Some(found)) => self.parse(&found),
            Ok(None) => Err(self.problem(
                "the bucket holds no policy set: put one there with `passerelle seed-policy`",
            )),
            Err(e) => Err(self.problem(format!("cannot read: {}", e.kind()))),
        }
    }

    fn write_if(
        &self,
        texts: &PolicyTexts,
        may_replace: &mut dyn FnMut(&Seen) -> bool,
    ) -> std::io::Result<bool> {
        let bytes = serde_json::to_vec_pretty(texts).map_err(std::io::Error::other)?;
        for _ in 0..TRIES {
            let found = self.fetch(SET_OBJECT)?;
            // SECURITY: an apply replaces a set, never fills an empty bucket (a bucket that
            // lost its set, a wrong prefix): only the seed does, explicitly.
            let Some(found) = found else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the bucket holds no policy set",
                ));
            };
            if !may_replace(&self.parse(&found)) {
                return Ok(false);
            }
            // SECURITY: the conditional write: only over the very object `may_replace`
            // accepted; another writer's set in between is looked at (and judged) again.
            if self.put_if(SET_OBJECT, bytes.clone(), Some(found.etag))? {
                return Ok(true);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the policy set kept changing under this write",
        ))
    }

    fn reads_may_fail_alone(&self) -> bool {
        true
    }

    fn stamp(&self) -> String {
        let key = self.key(SET_OBJECT);
        self.io.block_on(async {
            match self.store.head(&key).await {
                Ok(meta) => format!("{:?}:{}", meta.e_tag, meta.size),
                Err(object_store::Error::NotFound { .. }) => "none".into(),
                // Read again at the next tick that works (the read reports the problem).
                Err(_) => "unknown".into(),
            }
        })
    }
}

impl HistoryPlace for PolicyBucket {
    fn entries(&self) -> std::io::Result<Vec<VersionMeta>> {
        Ok(self
            .index()?
            .map(|(index, _)| index.versions)
            .unwrap_or_default())
    }

    fn highest_number(&self) -> std::io::Result<u64> {
        Ok(self.entries()?.iter().map(|m| m.number).max().unwrap_or(0))
    }

    fn get(&self, number: u64) -> std::io::Result<Option<(VersionMeta, PolicyTexts)>> {
        let Some(meta) = self.entries()?.into_iter().find(|m| m.number == number) else {
            return Ok(None);
        };
        let Some(found) = self.fetch(&Self::history_key(number))? else {
            return Ok(None);
        };
        let Ok(stored) = serde_json::from_slice::<Stored>(&found.bytes) else {
            return Ok(None);
        };
        // A version's files stored under another number, or not the version the index
        // names, are not this version.
        Ok(
            (stored.number == number && stored.files.version() == meta.version)
                .then_some((meta, stored.files)),
        )
    }

    fn create(&self, meta: &VersionMeta, texts: &PolicyTexts) -> std::io::Result<bool> {
        let stored = Stored {
            number: meta.number,
            files: texts.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
        // SECURITY: a number is taken once (`If-None-Match: *`): two gateways submitting at
        // once get two numbers. (A crash before the index names it leaves the number taken
        // and unnamed: the next submission takes the one after.)
        if !self.put_if(&Self::history_key(meta.number), bytes, None)? {
            return Ok(false);
        }
        self.change_index(&mut |index| {
            if index.versions.iter().any(|m| m.number == meta.number) {
                return false;
            }
            index.versions.push(meta.clone());
            true
        })
    }

    fn update(
        &self,
        number: u64,
        change: &mut dyn FnMut(&mut VersionMeta),
    ) -> std::io::Result<Option<VersionMeta>> {
        let mut after = None;
        // Another gateway's approval or apply recorded meanwhile is kept: the change is made
        // again to the index it wrote.
        self.change_index(&mut |index| {
            let Some(meta) = index.versions.iter_mut().find(|m| m.number == number) else {
                after = None;
                return false;
            };
            change(meta);
            after = Some(meta.clone());
            true
        })?;
        Ok(after)
    }
}
