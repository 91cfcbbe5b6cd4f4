//! The policy set and its history in a bucket the gateways share (`policy.url =
//! "s3://bucket/prefix"`): no shared file system, no lock.
//!
//! Owns: the layout under the prefix — `policy-set.json` (the set in force, its five files as
//! one JSON object, so that one write replaces the whole set atomically) and
//! `history/<number>.json` (a submitted version: its metadata and files) — and the conditional
//! writes that make them safe to share: a set is replaced only `If-Match` the ETag of the set
//! that was looked at (or created `If-None-Match: *` in an empty bucket), a history number is
//! taken `If-None-Match: *`, a version's metadata rewritten `If-Match` its ETag (a writer that
//! comes second looks again). The bucket must honour these headers (AWS S3 since 2024, MinIO,
//! Ceph RGW, R2; moto in the tests).
//! Must never: list the bucket (history numbers are probed: see `highest_number`), put the
//! store's error text (which names the bucket and the key) in a problem
//! a caller may see (it is logged), read an object of unbounded size, or write a set that was
//! not asked for by the policy store (which validates every set before and after).

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
/// The folder of the history, under the prefix.
const HISTORY: &str = "history";
/// Larger objects are refused: a policy set is kilobytes (a large catalog, a few megabytes).
const MAX_OBJECT: u64 = 16 * 1024 * 1024;
/// How many times a conditional write looks again after another writer came first.
const TRIES: usize = 8;

/// A policy bucket: the set in force and the history.
pub struct PolicyBucket {
    /// `s3://bucket/prefix`, what problems name the place by.
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

/// One stored version in the history.
#[derive(Serialize, Deserialize)]
struct Stored {
    meta: VersionMeta,
    files: PolicyTexts,
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
        let name = PathBuf::from(format!(
            "{}/{}",
            bucket.base.as_str().trim_end_matches('/'),
            bucket.prefix
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
        vec![Problem::new(&self.name.join(SET_OBJECT), None, message)]
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

    fn holds_a_set(&self) -> std::io::Result<bool> {
        let key = self.key(SET_OBJECT);
        self.io.block_on(async {
            match self.store.head(&key).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(logged(SET_OBJECT, e)),
            }
        })
    }

    fn read(&self) -> Seen {
        match self.fetch(SET_OBJECT) {
            Ok(Some(found)) => self.parse(&found),
            Ok(None) => Err(self.problem("the bucket holds no policy set")),
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
            let seen = match &found {
                Some(found) => self.parse(found),
                None => Err(self.problem("the bucket holds no policy set")),
            };
            if !may_replace(&seen) {
                return Ok(false);
            }
            // SECURITY: the conditional write: only over the very object `may_replace`
            // accepted; another writer's set in between is looked at (and judged) again.
            if self.put_if(SET_OBJECT, bytes.clone(), found.map(|f| f.etag))? {
                return Ok(true);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the policy set kept changing under this write",
        ))
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
        let mut metas = Vec::new();
        for number in 1..=self.highest_number()? {
            if let Some((_, stored)) = self.stored(number)? {
                metas.push(stored.meta);
            }
        }
        Ok(metas)
    }

    /// Numbers are taken one after the other from 1 (`If-None-Match: *`, the loser takes the
    /// next), so the highest is found by asking whether numbers exist (about 2 log2 n
    /// requests): the bucket is never listed, and its credentials need not allow listing.
    fn highest_number(&self) -> std::io::Result<u64> {
        let (mut present, mut absent) = (0u64, 1u64);
        while self.exists(absent)? {
            present = absent;
            absent = absent.checked_mul(2).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "too many versions")
            })?;
        }
        while absent - present > 1 {
            let middle = present + (absent - present) / 2;
            if self.exists(middle)? {
                present = middle;
            } else {
                absent = middle;
            }
        }
        Ok(present)
    }

    fn get(&self, number: u64) -> std::io::Result<Option<(VersionMeta, PolicyTexts)>> {
        Ok(self
            .stored(number)?
            .map(|(_, stored)| (stored.meta, stored.files)))
    }

    fn create(&self, meta: &VersionMeta, texts: &PolicyTexts) -> std::io::Result<bool> {
        let stored = Stored {
            meta: meta.clone(),
            files: texts.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
        // SECURITY: a number is taken once (`If-None-Match: *`): two gateways submitting at
        // once get two numbers.
        self.put_if(&Self::history_key(meta.number), bytes, None)
    }

    fn update(
        &self,
        number: u64,
        change: &mut dyn FnMut(&mut VersionMeta),
    ) -> std::io::Result<Option<VersionMeta>> {
        let relative = Self::history_key(number);
        for _ in 0..TRIES {
            let Some(found) = self.fetch(&relative)? else {
                return Ok(None);
            };
            let Ok(mut stored) = serde_json::from_slice::<Stored>(&found.bytes) else {
                return Ok(None);
            };
            change(&mut stored.meta);
            let bytes = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
            // Another gateway's approval or apply recorded meanwhile is kept: look again.
            if self.put_if(&relative, bytes, Some(found.etag))? {
                return Ok(Some(stored.meta));
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the version's record kept changing under this write",
        ))
    }
}

impl PolicyBucket {
    /// Version `number` of the history and the ETag it was read at; `None` when there is no
    /// such object, or it is not a version stored under that number.
    fn stored(&self, number: u64) -> std::io::Result<Option<(String, Stored)>> {
        let Some(found) = self.fetch(&Self::history_key(number))? else {
            return Ok(None);
        };
        let Ok(stored) = serde_json::from_slice::<Stored>(&found.bytes) else {
            return Ok(None);
        };
        Ok((stored.meta.number == number).then_some((found.etag, stored)))
    }

    /// Whether history number `number` is taken.
    fn exists(&self, number: u64) -> std::io::Result<bool> {
        let relative = Self::history_key(number);
        let key = self.key(&relative);
        self.io.block_on(async {
            match self.store.head(&key).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(logged(&relative, e)),
            }
        })
    }
}
