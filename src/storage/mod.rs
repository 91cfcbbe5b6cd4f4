//! Datasets on S3-compatible object storage (`data.url = "s3://bucket/prefix"`), read through
//! the `object_store` crate DataFusion itself uses.
//!
//! Owns: opening the bucket (endpoint, region and credentials from the standard AWS
//! environment variables or the secret file `data.credentials_file`, never from the
//! configuration text; plain `http://` only to a loopback endpoint), each object's current
//! version (its ETag, looked up again at most every [`VERSION_TTL`]), the Arrow schema of each
//! version, the versions a query is pinned to ([`Pins`], read through [`pinned`]), and local
//! copies of the objects that readers of files need (`<data.dir>/.objects/`, 0600, one per
//! version, downloaded `If-Match` its ETag: lookups, tables of the statistical secret).
//! The policy bucket (`policy.url`) is `policy_bucket`'s, the only module that writes to a
//! bucket.
//! Must never: write to the datasets' bucket, follow a listing (a query reads only the objects
//! its catalog names), or put credentials, object bytes or the store's error text (which names the
//! bucket and the key) in anything a caller sees: callers log it and answer `internal_error`,
//! or `data_changed` when an object was replaced under a query.

mod io;
mod pinned;
pub mod policy_bucket;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::config::DataConfig;
use crate::policy::CatalogFiles;
pub use pinned::is_version_changed;

/// How long an object's version is taken as current without asking the store again: a
/// replaced object is seen by queries planned at most this long after. (A query pinned to the
/// old version that reads after the replacement fails with `data_changed`, retryable.)
pub const VERSION_TTL: Duration = Duration::from_secs(1);
/// A known version this old is asked again in the background when a query uses it.
const REFRESH_AFTER: Duration = Duration::from_millis(750);
/// Free space a file the hub writes for itself (a local copy of an object, a pseudonymised
/// extract) must leave on its disk, which may also hold the other files and the audit trail:
/// one that would leave less is not written.
pub const KEEP_FREE: u64 = 256 * 1024 * 1024;
/// How long a failed background download of a copy (for an extract) is not tried again.
const FETCH_BACKOFF: Duration = Duration::from_secs(600);

/// How long finding the versions (and, for a new version, the schema) of a query's objects may
/// take before the query, check or reload fails.
const PIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the bucket or an object could not be used. The text is for the operator's log and
/// `passerelle check`: never for a caller.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data.url: {0}")]
    Config(String),
    #[error("data.credentials_file: {0}")]
    Credentials(String),
    /// The object is not in the bucket (or the bucket does not exist).
    #[error("`{0}` is not in the bucket")]
    Missing(String),
    /// The object was replaced between two reads of one query or check.
    #[error("`{0}` was replaced while it was read")]
    Changed(String),
    #[error("`{0}`: {1}")]
    Store(String, String),
    #[error("`{0}` is not a readable Parquet file")]
    NotParquet(String),
    /// A local copy of the object would leave less than [`KEEP_FREE`] on its disk.
    #[error("`{0}`: not enough free space in the local folder for a copy (data.dir)")]
    NoRoom(String),
}

/// One object's version: what a query is pinned to.
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    pub meta: ObjectMeta,
    /// Its ETag (an object without one cannot be pinned and is refused).
    pub etag: String,
    pub schema: SchemaRef,
}

impl ObjectVersion {
    /// The version as text, for keys of things built from it (the plan cache).
    pub fn token(&self) -> String {
        format!("{}:{}", self.meta.size, self.etag)
    }
}

/// The hub's bucket: where the catalog's paths are keys under `prefix`.
pub struct ObjectData {
    /// `s3://bucket`: the URL DataFusion's registry knows the store by.
    base: url::Url,
    prefix: ObjectPath,
    store: Arc<dyn ObjectStore>,
    io: io::IoRuntime,
    versions: Mutex<HashMap<ObjectPath, (Instant, ObjectMeta)>>,
    schemas: Mutex<HashMap<(ObjectPath, String), SchemaRef>>,
    /// Where local copies are written (`<data.dir>/.objects`).
    copies_dir: PathBuf,
    /// Each key's complete local copies: the current one, and the one it replaced (kept for
    /// the readers that opened it just before; older ones are removed).
    copies: Mutex<HashMap<ObjectPath, Copies>>,
    /// Keys whose copy is being downloaded in the background ([`PinnedCopy::file`]), or
    /// whose last background download failed (and when).
    fetching: Mutex<HashMap<ObjectPath, Option<Instant>>>,
    /// Keys whose version is being asked again in the background.
    refreshing: Mutex<std::collections::HashSet<ObjectPath>>,
}

/// The local copies of one object.
#[derive(Debug, Default)]
struct Copies {
    current: Option<PathBuf>,
    previous: Option<PathBuf>,
}

impl std::fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the store holds credentials: only the bucket's URL is printed.
        f.debug_struct("ObjectData")
            .field("base", &self.base.as_str())
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

impl ObjectData {
    /// The bucket of `config.url`, or `None` when the data are in the local folder
    /// `config.dir`.
    pub fn open(config: &DataConfig) -> Result<Option<Arc<ObjectData>>, StorageError> {
        let Some(text) = &config.url else {
            return Ok(None);
        };
        let Bucket {
            base,
            prefix,
            store,
            io,
        } = Bucket::open(text, config.credentials_file.as_deref())?;
        Ok(Some(Arc::new(ObjectData {
            base,
            prefix,
            store: Arc::new(store),
            io,
            versions: Mutex::default(),
            schemas: Mutex::default(),
            copies_dir: config.dir.join(".objects"),
            copies: Mutex::default(),
            fetching: Mutex::default(),
            refreshing: Mutex::default(),
        })))
    }

    /// The key of catalog path `path` (relative to the prefix).
    fn key(&self, path: &str) -> Result<ObjectPath, StorageError> {
        let relative = ObjectPath::parse(path)
            .map_err(|_| StorageError::Config(format!("`{path}` is not a valid object key")))?;
        Ok(self.prefix.parts().chain(relative.parts()).collect())
    }

    /// The URL DataFusion reads catalog path `path` at (`s3://bucket/prefix/path`).
    pub fn table_url(&self, path: &str) -> Result<String, StorageError> {
        Ok(format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            self.key(path)?
        ))
    }

    /// The current version of each of `paths` and its schema: what a query is planned on and
    /// pinned to.
    pub async fn pin(self: &Arc<Self>, paths: &[&str]) -> Result<Pins, StorageError> {
        let mut unique: Vec<&str> = paths.to_vec();
        unique.sort_unstable();
        unique.dedup();
        // All at once, within PIN_TIMEOUT: a store that stalls fails the query, not a lane.
        let all = futures::future::try_join_all(unique.iter().map(|path| async move {
            Ok::<_, StorageError>((path.to_string(), self.version(path).await?))
        }));
        let versions = tokio::time::timeout(PIN_TIMEOUT, all).await.map_err(|_| {
            StorageError::Store(unique.join(", "), "no answer within 15 s".into())
        })??;
        Ok(Pins {
            data: self.clone(),
            versions: versions.into_iter().collect(),
        })
    }

    /// [`Self::pin`] from code that is not async (start-up and reload checks).
    pub fn pin_blocking(self: &Arc<Self>, paths: &[&str]) -> Result<Pins, StorageError> {
        self.io.block_on(self.pin(paths))
    }

    async fn version(self: &Arc<Self>, path: &str) -> Result<ObjectVersion, StorageError> {
        let key = self.key(path)?;
        let known = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .map(|(at, meta)| (at.elapsed(), meta.clone()))
            .filter(|(age, _)| *age < VERSION_TTL);
        let meta = match known {
            Some((age, meta)) => {
                // Asked again before it expires, so that a steady flow of queries never
                // waits for the store.
                if age >= REFRESH_AFTER {
                    self.refresh_in_background(&key);
                }
                meta
            }
            None => {
                let asked = Instant::now();
                let meta = self
                    .store
                    .head(&key)
                    .await
                    .map_err(|e| store_error(path, e))?;
                self.remember(&key, asked, meta.clone());
                meta
            }
        };
        // SECURITY: an object without an ETag cannot be pinned: refused, never read unpinned.
        let etag = meta.e_tag.clone().ok_or_else(|| {
            StorageError::Store(path.to_string(), "the object has no ETag".into())
        })?;
        let schema = self.schema(path, &key, &meta, &etag).await?;
        Ok(ObjectVersion { meta, etag, schema })
    }

    /// Keeps `meta` as `key`'s version as it was when `asked` (the time the store was asked,
    /// not answered: a replacement during the request is seen at most [`VERSION_TTL`] after
    /// it), unless an answer to a later request is already kept.
    fn remember(&self, key: &ObjectPath, asked: Instant, meta: ObjectMeta) {
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if versions.get(key).is_some_and(|(at, _)| *at > asked) {
            return;
        }
        // A hub has a handful of objects; bound the map anyway.
        if versions.len() > 4096 {
            versions.clear();
        }
        versions.insert(key.clone(), (asked, meta));
    }

    /// Asks `key`'s version again on the I/O runtime (once at a time per key); a failure
    /// leaves the known version to expire (the next query then asks, and fails, itself).
    fn refresh_in_background(self: &Arc<Self>, key: &ObjectPath) {
        if !self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let (data, key) = (self.clone(), key.clone());
        self.io.handle().spawn(async move {
            let asked = Instant::now();
            if let Ok(meta) = data.store.head(&key).await {
                data.remember(&key, asked, meta);
            }
            data.refreshing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    /// The Arrow schema of one version, read from its footer (pinned to its ETag) once.
    async fn schema(
        &self,
        path: &str,
        key: &ObjectPath,
        meta: &ObjectMeta,
        etag: &str,
    ) -> Result<SchemaRef, StorageError> {
        let cache_key = (key.clone(), etag.to_string());
        if let Some(schema) = self
            .schemas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
        {
            return Ok(schema.clone());
        }
        let store = pinned::PinnedStore::new(
            self.store.clone(),
            HashMap::from([(key.clone(), meta.clone())]),
        );
        let schema =
            datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata::new(
                &store, meta,
            )
            .fetch_schema()
            .await
            .map_err(|e| match pinned::is_version_changed(&e) {
                true => {
                    self.forget(key);
                    StorageError::Changed(path.to_string())
                }
                false => StorageError::NotParquet(path.to_string()),
            })?;
        let schema: SchemaRef = Arc::new(schema);
        let mut schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        if schemas.len() > 4096 {
            schemas.clear();
        }
        schemas.insert(cache_key, schema.clone());
        Ok(schema)
    }

    /// The current version of `path` as a local file: its copy in `<data.dir>/.objects/`,
    /// downloaded on first need (pinned to its ETag, written 0600 beside, then renamed).
    /// Blocking.
    pub fn local_copy(self: &Arc<Self>, path: &str) -> Result<PathBuf, StorageError> {
        if let Some(file) = self.known_copy(path, true) {
            return Ok(file);
        }
        self.io.block_on(self.download(path))
    }

    /// The copy of `path`'s last known version, without any I/O: `None` when there is none
    /// yet, or, with `fresh`, when its version was asked more than [`VERSION_TTL`] ago.
    pub fn known_copy(&self, path: &str, fresh: bool) -> Option<PathBuf> {
        let key = self.key(path).ok()?;
        let etag = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, _)| !fresh || at.elapsed() < VERSION_TTL)
            .and_then(|(_, meta)| meta.e_tag.clone())?;
        let file = self.copy_path(&key, &etag);
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        (copies.get(&key)?.current.as_ref() == Some(&file)).then_some(file)
    }

    /// Downloads the current version of `path` on a thread of its own, unless a download of
    /// it started in the background is under way.
    ///
    /// A download that failed is not tried again in the background before
    /// [`FETCH_BACKOFF`]: a query asked again and again never makes the gateway download an
    /// object that cannot be copied (too large for the disk or the time) over and over.
    fn fetch_in_background(self: &Arc<Self>, path: &str) {
        let Ok(key) = self.key(path) else {
            return;
        };
        {
            let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            match fetching.get(&key) {
                Some(None) => return,
                Some(Some(failed)) if failed.elapsed() < FETCH_BACKOFF => return,
                _ => {}
            }
            fetching.insert(key.clone(), None);
        }
        /// Ends a background download's entry however it ends (a failure is remembered).
        struct Fetching {
            data: Arc<ObjectData>,
            key: ObjectPath,
            done: bool,
        }
        impl Drop for Fetching {
            fn drop(&mut self) {
                let mut fetching = self.data.fetching.lock().unwrap_or_else(|p| p.into_inner());
                if self.done {
                    fetching.remove(&self.key);
                } else {
                    fetching.insert(self.key.clone(), Some(Instant::now()));
                }
            }
        }
        let entry = Fetching {
            data: self.clone(),
            key,
            done: false,
        };
        let (data, path) = (self.clone(), path.to_string());
        let started = std::thread::Builder::new()
            .name("passerelle-object-copy".into())
            .spawn(move || {
                // (The whole entry moves to the thread: it ends when the download does.)
                let mut entry = entry;
                match data.local_copy(&path) {
                    Ok(_) => entry.done = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "a local copy for an extract could not be made");
                    }
                }
            });
        if started.is_err() {
            tracing::warn!("no thread for a local copy");
        }
    }

    /// One file per key and version, named by hashes (no key text on the local disk).
    fn copy_path(&self, key: &ObjectPath, etag: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let short = |text: &str| {
            Sha256::digest(text.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        self.copies_dir
            .join(format!("{}-{}.parquet", short(key.as_ref()), short(etag)))
    }

    async fn download(self: &Arc<Self>, path: &str) -> Result<PathBuf, StorageError> {
        let version = self.version(path).await?;
        let key = self.key(path)?;
        let file = self.copy_path(&key, &version.etag);
        if !file.exists() {
            let io = |e: std::io::Error| {
                StorageError::Store(path.to_string(), format!("local copy: {}", e.kind()))
            };
            crate::private_fs::create_dir_all(&self.copies_dir).map_err(io)?;
            // SECURITY (availability): a copy never fills the disk it shares with the
            // extracts, the tables and perhaps the audit trail (whose failure refuses every
            // answer): it must leave `KEEP_FREE`. (Two downloads at once may both pass: the
            // margin is there for that.)
            if !leaves_room(&self.copies_dir, version.meta.size).map_err(io)? {
                return Err(StorageError::NoRoom(path.to_string()));
            }
            let store = pinned::PinnedStore::new(
                self.store.clone(),
                HashMap::from([(key.clone(), version.meta.clone())]),
            );
            let mut stream = store
                .get(&key)
                .await
                .map_err(|e| self.read_error(path, &key, e))?
                .into_stream();
            let mut suffix = [0u8; 8];
            getrandom::fill(&mut suffix).map_err(|_| {
                StorageError::Store(path.to_string(), "no randomness for a file name".into())
            })?;
            let temporary = file.with_extension(format!(
                "partial-{}",
                suffix
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ));
            let written = async {
                use futures::StreamExt;
                use std::io::Write;
                let mut out = crate::private_fs::create_file(&temporary).map_err(io)?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.read_error(path, &key, e))?;
                    out.write_all(&chunk).map_err(io)?;
                }
                out.sync_all().map_err(io)?;
                // SECURITY: a copy is whole or absent; its bytes are the pinned version's
                // (the download carried If-Match), and its size is checked before it takes
                // its name.
                if out.metadata().map_err(io)?.len() != version.meta.size {
                    return Err(StorageError::Changed(path.to_string()));
                }
                // Never over a copy another download of the same version made meanwhile: its
                // readers (an extract's source stamp among them) keep the file they know.
                // (A file system without hard links: renamed, the last download's file wins.)
                match std::fs::hard_link(&temporary, &file) {
                    Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                        std::fs::rename(&temporary, &file).map_err(io)
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(e)),
                    _ => Ok(()),
                }
            }
            .await;
            let _ = std::fs::remove_file(&temporary);
            written?;
        }
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        let first = !copies.contains_key(&key);
        let entry = copies.entry(key).or_default();
        if first {
            // The first copy of this object since start: no reader of this process holds an
            // older one, so the copies a previous run left (and partial downloads) go.
            remove_other_copies(&file);
        }
        if entry.current.as_ref() != Some(&file) {
            if let Some(old) = entry.previous.take()
                && old != file
            {
                let _ = std::fs::remove_file(old);
            }
            entry.previous = entry.current.replace(file.clone());
        }
        Ok(file)
    }

    /// A read of `key` failed: a replaced object's version is forgotten (the next query
    /// asks again).
    fn read_error(&self, path: &str, key: &ObjectPath, e: object_store::Error) -> StorageError {
        if matches!(e, object_store::Error::Precondition { .. }) {
            self.forget(key);
        }
        store_error(path, e)
    }

    /// Forgets what is known of `key`'s version (it was replaced): the next query asks.
    fn forget(&self, key: &ObjectPath) {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Removes the other files of `keep`'s object in its folder (`<key hash>-…`): older copies
/// and partial downloads.
fn remove_other_copies(keep: &std::path::Path) {
    let (Some(dir), Some(name)) = (keep.parent(), keep.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Some((object, _)) = name.split_once('-') else {
        return;
    };
    let prefix = format!("{object}-");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        if path == keep || !file.starts_with(&prefix) {
            continue;
        }
        // A partial download may be another request's, under way: only an old one goes.
        let abandoned = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(600)))
        };
        if !file.contains(".partial-") || abandoned() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where the catalog's files are: the bucket when there is one, else the folder `dir`.
pub fn catalog_files(
    dir: &std::path::Path,
    objects: Option<&Arc<ObjectData>>,
) -> Arc<dyn CatalogFiles> {
    match objects {
        Some(objects) => Arc::new(objects.clone()),
        None => Arc::new(dir.to_path_buf()),
    }
}

/// The bucket checked against the catalog (start-up, reloads, `passerelle check`): each
/// path's current version and schema, or why it cannot be read (named by its URL).
impl CatalogFiles for Arc<ObjectData> {
    fn schema_of(&self, path: &std::path::Path) -> (std::path::PathBuf, Result<SchemaRef, String>) {
        let path = &*path.to_string_lossy();
        let place = self
            .table_url(path)
            .unwrap_or_else(|_| path.to_string())
            .into();
        let schema = self
            .pin_blocking(&[path])
            .map_err(|e| e.to_string())
            .and_then(|pins| {
                pins.version(path)
                    .map(|v| v.schema.clone())
                    .ok_or_else(|| "not pinned".to_string())
            });
        (place, schema)
    }

    fn local_file(&self, path: &std::path::Path) -> Result<PathBuf, String> {
        self.local_copy(&path.to_string_lossy())
            .map_err(|e| e.to_string())
    }

    fn known_local_file(&self, path: &std::path::Path) -> Option<PathBuf> {
        self.known_copy(&path.to_string_lossy(), false)
    }
}

/// The object versions one query is planned on: its session reads exactly these, and fails
/// with `data_changed` if one is replaced while it runs.
#[derive(Debug, Clone)]
pub struct Pins {
    data: Arc<ObjectData>,
    versions: HashMap<String, ObjectVersion>,
}

impl Pins {
    /// The pinned version of catalog path `path`.
    pub fn version(&self, path: &str) -> Option<&ObjectVersion> {
        self.versions.get(path)
    }

    /// The URL DataFusion reads `path` at.
    pub fn table_url(&self, path: &str) -> Result<String, StorageError> {
        self.data.table_url(path)
    }

    /// A store for DataFusion's registry under [`Self::store_url`] that reads only these
    /// versions (every read carries `If-Match: <ETag>`).
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let mut pins = HashMap::new();
        for (path, version) in &self.versions {
            pins.insert(self.data.key(path)?, version.meta.clone());
        }
        Ok(Arc::new(
            pinned::PinnedStore::new(self.data.store.clone(), pins).forgetting(self.data.clone()),
        ))
    }

    /// The URL of the bucket in DataFusion's object store registry.
    pub fn store_url(&self) -> &url::Url {
        &self.data.base
    }

    /// Where the local copy of `path`'s pinned version is, or will be.
    pub fn copy(&self, path: &str) -> Option<PinnedCopy> {
        let version = self.versions.get(path)?;
        let key = self.data.key(path).ok()?;
        Some(PinnedCopy {
            file: self.data.copy_path(&key, &version.etag),
            size: version.meta.size,
            data: self.data.clone(),
            path: path.to_string(),
        })
    }

    /// These versions as a shipped plan carries them to the cluster's executors (keys, sizes,
    /// ETags, times: no credentials, no schema).
    pub fn to_wire(&self) -> Result<Vec<PinnedObject>, StorageError> {
        let mut objects = Vec::with_capacity(self.versions.len());
        for (path, version) in &self.versions {
            objects.push(PinnedObject {
                key: self.data.key(path)?.to_string(),
                size: version.meta.size,
                etag: version.etag.clone(),
                modified_ns: version
                    .meta
                    .last_modified
                    .timestamp_nanos_opt()
                    .unwrap_or_default(),
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// The local copy of one pinned object version, as a scan looks for it (the source of the
/// object's pseudonymised extracts).
#[derive(Debug, Clone)]
pub struct PinnedCopy {
    data: Arc<ObjectData>,
    path: String,
    /// The copy of exactly the pinned version (its name is the key's and the ETag's hashes).
    file: PathBuf,
    /// The pinned version's size.
    size: u64,
}

impl PinnedCopy {
    /// The complete local copy of exactly the pinned version when it is on disk (a copy takes
    /// its name whole, its bytes read with `If-Match`); otherwise `None`, and a
    /// download of the object's current version starts in the background.
    pub fn file(&self) -> Option<PathBuf> {
        if std::fs::symlink_metadata(&self.file).is_ok_and(|m| m.is_file() && m.len() == self.size)
        {
            return Some(self.file.clone());
        }
        self.data.fetch_in_background(&self.path);
        None
    }
}

/// A store that refuses every call (no object is readable, nothing can be written or listed):
/// what a node that must read no data (the cluster's scheduler) finds under any URL.
pub fn no_data_store() -> Arc<dyn ObjectStore> {
    Arc::new(pinned::PinnedStore::new(
        Arc::new(object_store::memory::InMemory::new()),
        HashMap::new(),
    ))
}

/// One object version a shipped plan reads, as it travels to an executor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinnedObject {
    /// The object's key in the bucket (the prefix included).
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// Its modification time, in nanoseconds since the epoch.
    pub modified_ns: i64,
}

impl ObjectData {
    /// A view of this bucket that reads only `objects`, each at its version (every read
    /// `If-Match` its ETag): what an executor reads a shipped scan through. Refused when a key
    /// is not a valid object path under the hub's prefix.
    pub fn pinned_view(
        &self,
        objects: &[PinnedObject],
    ) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let mut pins = HashMap::with_capacity(objects.len());
        for o in objects {
            // SECURITY: only the hub's own objects (under its prefix), each key as written.
            let location = ObjectPath::parse(&o.key)
                .ok()
                .filter(|key| key.prefix_match(&self.prefix).is_some())
                .ok_or_else(|| {
                    StorageError::Config(
                        "a shipped scan names an object outside the hub's prefix".into(),
                    )
                })?;
            let meta = ObjectMeta {
                location: location.clone(),
                last_modified: chrono::DateTime::from_timestamp_nanos(o.modified_ns),
                size: o.size,
                e_tag: Some(o.etag.clone()),
                version: None,
            };
            pins.insert(location, meta);
        }
        Ok(Arc::new(pinned::PinnedStore::new(self.store.clone(), pins)))
    }

    /// The URL of the bucket in DataFusion's object store registry (`s3://bucket`).
    pub fn store_url(&self) -> &url::Url {
        &self.base
    }

    /// A bucket `s3://<bucket>/<prefix>` served by `store` (tests).
    #[cfg(test)]
    pub(crate) fn over(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) -> Arc<ObjectData> {
        Arc::new(ObjectData {
            base: url::Url::parse(&format!("s3://{bucket}")).unwrap_or_else(|_| unreachable!()),
            prefix: ObjectPath::from(prefix),
            store,
            io: io::IoRuntime::start().unwrap_or_else(|_| unreachable!()),
            versions: Mutex::default(),
            schemas: Mutex::default(),
            copies_dir: PathBuf::new(),
            copies: Mutex::default(),
            fetching: Mutex::default(),
            refreshing: Mutex::default(),
        })
    }
}

/// Whether writing `bytes` in `dir` still leaves [`KEEP_FREE`] of what an unprivileged
/// process may write on its file system.
pub fn leaves_room(dir: &std::path::Path, bytes: u64) -> std::io::Result<bool> {
    let stat = rustix::fs::statvfs(dir)?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    Ok(free >= bytes.saturating_add(KEEP_FREE))
}

/// A bucket opened from an `s3://bucket/prefix` URL: the datasets' (`data.url`) or the policy
/// set's (`policy.url`).
struct Bucket {
    /// `s3://bucket`: the URL DataFusion's registry knows the store by.
    base: url::Url,
    prefix: ObjectPath,
    store: object_store::aws::AmazonS3,
    io: io::IoRuntime,
}

impl Bucket {
    /// Opens the bucket of `text` with the credentials of `credentials_file` (else the AWS
    /// environment variables).
    fn open(
        text: &str,
        credentials_file: Option<&std::path::Path>,
    ) -> Result<Bucket, StorageError> {
        let url = url::Url::parse(text).map_err(|_| StorageError::Config("not a URL".into()))?;
        if url.scheme() != "s3" {
            return Err(StorageError::Config(format!(
                "scheme `{}` is not supported (use s3://bucket/prefix)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            // SECURITY: credentials never live in the configuration text.
            return Err(StorageError::Config(
                "carries no credentials and no query: credentials come from the AWS \
                 environment variables or a credentials file"
                    .into(),
            ));
        }
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StorageError::Config("names no bucket".into()))?
            .to_string();
        let prefix = ObjectPath::parse(url.path().trim_matches('/'))
            .map_err(|_| StorageError::Config("the prefix is not a valid object path".into()))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(file) = credentials_file {
            builder = with_credentials_file(builder, file)?;
        }
        let allow_http = http_allowed(&builder)?;
        let io = io::IoRuntime::start().map_err(|e| StorageError::Config(e.to_string()))?;
        let store = builder
            // A store that does not answer fails the query in seconds, not after minutes of
            // retries (object_store's default retries for up to 3 minutes).
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            )
            // (After the client options, which hold it.)
            .with_allow_http(allow_http)
            .with_http_connector(object_store::client::SpawnedReqwestConnector::new(
                io.handle(),
            ))
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        let base = url::Url::parse(&format!("s3://{bucket}"))
            .map_err(|_| StorageError::Config("names no valid bucket".into()))?;
        Ok(Bucket {
            base,
            prefix,
            store,
            io,
        })
    }
}

/// Whether the endpoint the store will use is plain HTTP (then on a loopback address only).
fn http_allowed(builder: &AmazonS3Builder) -> Result<bool, StorageError> {
    // SECURITY: requests are signed with the hub's credentials: plain HTTP only to a
    // loopback endpoint (a local test server), whatever AWS_ALLOW_HTTP says. object_store
    // prefers `AWS_ENDPOINT_URL_S3` to `AWS_ENDPOINT_URL`: the one used is the one checked.
    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    match endpoint.as_deref().map(url::Url::parse) {
        None => Ok(false),
        Some(Ok(e)) if e.scheme() == "https" => Ok(false),
        Some(Ok(e)) if e.scheme() == "http" && crate::config::is_loopback_host(&e) => Ok(true),
        Some(Ok(_)) => Err(StorageError::Config(
            "the endpoint (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3) must be https://, or http:// \
             on a loopback address"
                .into(),
        )),
        Some(Err(_)) => Err(StorageError::Config(
            "the endpoint (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3) is not a URL".into(),
        )),
    }
}

fn store_error(path: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::Missing(path.to_string()),
        object_store::Error::Precondition { .. } => StorageError::Changed(path.to_string()),
        other => StorageError::Store(path.to_string(), other.to_string()),
    }
}

/// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`,
/// `AWS_ENDPOINT_URL` and `AWS_REGION` (`NAME=value` lines, `#` comments) from a secret file
/// (mode 0600 or stricter); they take precedence over the environment.
fn with_credentials_file(
    mut builder: AmazonS3Builder,
    file: &std::path::Path,
) -> Result<AmazonS3Builder, StorageError> {
    let text = crate::secret_file::read_private(file).map_err(|e| {
        StorageError::Credentials(match e {
            crate::secret_file::SecretFileError::Io(kind) => format!("cannot read: {kind}"),
            crate::secret_file::SecretFileError::TooOpen => {
                "group or others may read it: chmod 600".into()
            }
        })
    })?;
    let (mut id, mut secret) = (false, false);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // SECURITY: a line's value is never repeated in an error.
        let Some((name, value)) = line.split_once('=') else {
            return Err(StorageError::Credentials(format!(
                "line {}: expected NAME=value",
                n + 1
            )));
        };
        let value = value.trim();
        builder = match name.trim() {
            "AWS_ACCESS_KEY_ID" => {
                id = true;
                builder.with_access_key_id(value)
            }
            "AWS_SECRET_ACCESS_KEY" => {
                secret = true;
                builder.with_secret_access_key(value)
            }
            "AWS_SESSION_TOKEN" => builder.with_token(value),
            // Not secrets, but where they go: kept beside the keys when convenient.
            "AWS_ENDPOINT_URL" | "AWS_ENDPOINT" => builder
                .with_endpoint(value)
                .with_config(AmazonS3ConfigKey::S3Endpoint, value),
            "AWS_REGION" | "AWS_DEFAULT_REGION" => builder.with_region(value),
            other => {
                // SECURITY: a name is repeated only when it looks like one (a pasted token
                // holds `=` too).
                let plain = !other.is_empty()
                    && other.len() <= 64
                    && other
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                let name = if plain {
                    format!("`{other}`")
                } else {
                    "the name".into()
                };
                return Err(StorageError::Credentials(format!(
                    "line {}: {name} is not AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                     AWS_SESSION_TOKEN, AWS_ENDPOINT_URL or AWS_REGION",
                    n + 1
                )));
            }
        };
    }
    if !(id && secret) {
        return Err(StorageError::Credentials(
            "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        ));
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> DataConfig {
        DataConfig {
            url: Some(url.into()),
            ..DataConfig::default()
        }
    }

    fn refused(url: &str) -> String {
        ObjectData::open(&config(url)).unwrap_err().to_string()
    }

    /// A bucket URL carries no credentials, names a bucket, and is `s3://`.
    #[test]
    fn bucket_urls_carry_no_credentials() {
        assert!(refused("s3://key:secret@bucket/prefix").contains("no credentials"));
        assert!(refused("s3://bucket/prefix?secret=1").contains("no credentials"));
        assert!(refused("gs://bucket/prefix").contains("not supported"));
        assert!(refused("file:///data").contains("not supported"));
    }

    /// Requests are signed with the hub's credentials: plain HTTP only to a loopback
    /// endpoint; a credentials file names only the known variables and never echoes a value.
    #[test]
    fn plain_http_only_on_loopback_and_credentials_files_echo_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str, text: &str| {
            let file = dir.path().join(name);
            crate::secret_file::write_new_private(&file, text.as_bytes()).unwrap();
            ObjectData::open(&DataConfig {
                url: Some("s3://hub/data".into()),
                credentials_file: Some(file),
                ..DataConfig::default()
            })
        };
        let keys = "AWS_ACCESS_KEY_ID=id\nAWS_SECRET_ACCESS_KEY=s3cr3t-value\n";
        for (name, endpoint) in [
            ("remote-http", "http://s3.example.org"),
            ("private-http", "http://10.0.0.8:9000"),
        ] {
            let e = open(name, &format!("{keys}AWS_ENDPOINT_URL={endpoint}\n")).unwrap_err();
            assert!(e.to_string().contains("loopback"), "{e}");
        }
        for (name, endpoint) in [
            ("loopback", "http://127.0.0.1:9000"),
            ("tls", "https://s3.example.org"),
        ] {
            assert!(open(name, &format!("{keys}AWS_ENDPOINT_URL={endpoint}\n")).is_ok());
        }
        let e = open(
            "unknown",
            "AWS_SECRET_ACCESS_KEY=s3cr3t-value\nPASSWORD=s3cr3t-value\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`PASSWORD`") && !e.contains("s3cr3t"), "{e}");
        let e = open("no-equals", "s3cr3t-value\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("s3cr3t"), "{e}");
        let e = open("half", "AWS_ACCESS_KEY_ID=id\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs"), "{e}");
    }

    /// A version in use is asked again in the background before it expires, so that queries
    /// do not wait for the store, and a replacement is still seen within [`VERSION_TTL`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_in_use_is_asked_again_before_it_expires() {
        use object_store::ObjectStoreExt;
        let parquet = |values: &[i64]| {
            use arrow::array::Int64Array;
            use arrow::datatypes::{DataType, Field, Schema};
            let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
            let batch = arrow::record_batch::RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(values.to_vec()))],
            )
            .unwrap_or_else(|_| unreachable!());
            let mut out = Vec::new();
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)
                .unwrap_or_else(|_| unreachable!());
            writer.write(&batch).unwrap_or_else(|_| unreachable!());
            writer.close().unwrap_or_else(|_| unreachable!());
            out
        };
        let memory = Arc::new(object_store::memory::InMemory::new());
        let key = ObjectPath::from("hub/x.parquet");
        let put = |values: Vec<i64>| {
            let (memory, key) = (memory.clone(), key.clone());
            async move {
                memory
                    .put(&key, parquet(&values).into())
                    .await
                    .unwrap_or_else(|_| unreachable!())
            }
        };
        put(vec![1]).await;
        let bucket = ObjectData::over(memory.clone(), "hub-bucket", "hub");
        let etag = |v: &ObjectVersion| v.etag.clone();
        let first = etag(
            &bucket
                .version("x.parquet")
                .await
                .unwrap_or_else(|_| unreachable!()),
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        put(vec![2, 3]).await;
        // Known for 0.8 s: still served (and asked again in the background)...
        let cached = bucket
            .version("x.parquet")
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(etag(&cached), first);
        // ...so that, well before the known version expires, queries get the new one.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refreshed = bucket
            .version("x.parquet")
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_ne!(etag(&refreshed), first, "asked again in the background");
        assert_eq!(
            refreshed.meta.size,
            memory.head(&key).await.map_or(0, |m| m.size)
        );
    }

    /// The S3-specific endpoint, which object_store prefers, is the one checked: a loopback
    /// generic endpoint cannot let signed requests go in clear to another host.
    #[test]
    fn the_endpoint_checked_is_the_one_used() {
        let builder = AmazonS3Builder::new()
            .with_endpoint("http://127.0.0.1:9000")
            .with_config(AmazonS3ConfigKey::S3Endpoint, "http://s3.example.org");
        assert!(http_allowed(&builder).is_err());
        let builder = AmazonS3Builder::new()
            .with_endpoint("http://s3.example.org")
            .with_config(AmazonS3ConfigKey::S3Endpoint, "https://s3.example.org");
        assert!(!http_allowed(&builder).unwrap());
    }

    /// The first copy of an object since start removes what a previous run left of that
    /// object (older copies, partial downloads), and nothing of another object.
    #[test]
    fn a_first_copy_removes_the_leftovers_of_its_object_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "aaaa-0001.parquet",
            "aaaa-0002.parquet",
            "aaaa-0002.partial-77",
            "bbbb-0001.parquet",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let left = || {
            let mut left: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            left
        };
        remove_other_copies(&dir.path().join("aaaa-0002.parquet"));
        // (A partial download of the last ten minutes may be under way: kept.)
        assert_eq!(
            left(),
            [
                "aaaa-0002.parquet",
                "aaaa-0002.partial-77",
                "bbbb-0001.parquet"
            ]
        );
        let old = std::fs::File::options()
            .write(true)
            .open(dir.path().join("aaaa-0002.partial-77"))
            .unwrap();
        old.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        remove_other_copies(&dir.path().join("aaaa-0002.parquet"));
        assert_eq!(left(), ["aaaa-0002.parquet", "bbbb-0001.parquet"]);
    }

    /// Keys are the prefix's parts, then the catalog path's.
    #[test]
    fn catalog_paths_are_keys_under_the_prefix() {
        let data = ObjectData::open(&config("s3://hub/sante/v1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            data.table_url("sejours/2024.parquet").unwrap(),
            "s3://hub/sante/v1/sejours/2024.parquet"
        );
        let root = ObjectData::open(&config("s3://hub")).unwrap().unwrap();
        assert_eq!(root.table_url("a.parquet").unwrap(), "s3://hub/a.parquet");
        assert!(data.table_url("../escape.parquet").is_err());
    }
}
