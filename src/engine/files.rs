//! Where a session reads each dataset's file: the local data folder, or the object versions a
//! query was pinned to on the hub's bucket ([`crate::storage`]).
//!
//! Owns: a catalog path's location, raw schema and version stamp, alike for both.
//! Must never: read an object the query was not pinned to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::RuntimeEnv;

use super::EngineError;
use crate::file_stamp::FileStamp;
use crate::policy::DatasetKind;
use crate::storage::{PinnedCopy, Pins};

/// The data a session is built from: files under `dir` (their schemas from `schema`) and, on
/// a bucket, the object versions of `pins` for the datasets; tables of the statistical secret
/// are always the hub's own local files, in the tables folder `tables`.
pub(crate) struct DataFiles<'a> {
    pub dir: &'a Path,
    pub tables: &'a Path,
    pub schema: &'a dyn Fn(&Path) -> Result<SchemaRef, EngineError>,
    pub pins: Option<&'a Pins>,
}

/// Where a provider reads its dataset.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    File(PathBuf),
    /// An object's URL and its size, and where the local copy of its pinned version is or
    /// will be (the source of its pseudonymised extracts).
    Object {
        url: String,
        size: u64,
        copy: Option<PinnedCopy>,
    },
}

impl DataFiles<'_> {
    /// The pins that hold catalog path `path` of `kind`, if it is an object.
    fn pinned(&self, kind: DatasetKind) -> Option<&Pins> {
        self.pins.filter(|_| kind == DatasetKind::Microdata)
    }

    /// The local file of catalog path `path` (a table's `.tables/<id>.parquet` is `<id>.parquet`
    /// in the tables folder).
    fn local(&self, path: &Path, kind: DatasetKind) -> PathBuf {
        match (kind, path.file_name()) {
            (DatasetKind::Table, Some(name)) => self.tables.join(name),
            _ => self.dir.join(path),
        }
    }

    /// The location and raw schema of catalog path `path`, of a dataset of `kind`.
    pub(crate) fn open(
        &self,
        path: &Path,
        kind: DatasetKind,
    ) -> Result<(Location, SchemaRef), EngineError> {
        let Some(pins) = self.pinned(kind) else {
            let file = self.local(path, kind);
            let schema = (self.schema)(&file)?;
            return Ok((Location::File(file), schema));
        };
        let path = &*path.to_string_lossy();
        let version = pins
            .version(path)
            .ok_or_else(|| EngineError::Internal(format!("`{path}` was not pinned")))?;
        let url = pins
            .table_url(path)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok((
            Location::Object {
                url,
                size: version.meta.size,
                copy: pins.copy(path),
            },
            version.schema.clone(),
        ))
    }

    /// The version of catalog path `path` (of a dataset of `kind`) as text, `None` when it
    /// cannot be read: what the plan cache keys a plan on.
    pub(crate) fn stamp(&self, path: &Path, kind: DatasetKind) -> Option<String> {
        match self.pinned(kind) {
            None => FileStamp::of(&self.local(path, kind)).map(|s| s.token()),
            Some(pins) => pins.version(&path.to_string_lossy()).map(|v| v.token()),
        }
    }
}

/// The query's runtime with, in its own object store registry, a view of the bucket that
/// reads only the pinned versions.
pub(crate) fn pinned_runtime(
    runtime: &RuntimeEnv,
    pins: &Pins,
) -> Result<Arc<RuntimeEnv>, EngineError> {
    let store = pins
        .store()
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(runtime_with_store(runtime, pins.store_url(), store))
}

/// `runtime` (its memory pool, disks and caches) whose object store registry holds `store`
/// under `url` and nothing else (local files aside).
pub(crate) fn runtime_with_store(
    runtime: &RuntimeEnv,
    url: &url::Url,
    store: Arc<dyn object_store::ObjectStore>,
) -> Arc<RuntimeEnv> {
    let registry = DefaultObjectStoreRegistry::new();
    registry.register_store(url, store);
    Arc::new(RuntimeEnv {
        memory_pool: runtime.memory_pool.clone(),
        disk_manager: runtime.disk_manager.clone(),
        cache_manager: runtime.cache_manager.clone(),
        object_store_registry: Arc::new(registry),
    })
}
