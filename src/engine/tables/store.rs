//! Published tables on disk: `<tables folder>/<id>.parquet` (`data.tables_dir`, by default
//! `<data.dir>/.tables`), one file per table, replaced
//! whole (temporary file, fsync, rename) so that a reader sees the previous version or the new
//! one, never a mix, and only ever the current one.
//!
//! Each file records in its key-value metadata what it was built from: the source file's
//! stamp (the data version), the hash of the table's definition, and the summary that
//! `GET /v1/tables/{id}` shows.
//!
//! Beside each published version, the hub keeps what the attacker's audit of the next version
//! needs and no reader may see: the true value of every cell, hidden ones included, and why each
//! is hidden ([`Truth`], `<id>.truth-<definition>-<data version>.json`, 0600, never registered
//! as a dataset). A new version, and every table of the same source, is audited jointly with it.
//!
//! Owns: writing and reading those files and their metadata. Must never: write a table whose
//! protection did not pass (callers hand over a [`PublishedTable`] only), or leave a partial
//! file under the final name.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compute::PublishedTable;
use crate::policy::tables::TableSpec;
use crate::secrecy::{CellFacts, Cube, Dimension, Measure, PrimaryReason, Secret};

const SOURCE_KEY: &str = "passerelle.table.source";
const DEFINITION_KEY: &str = "passerelle.table.definition";
const SUMMARY_KEY: &str = "passerelle.table.summary";

/// What a published version holds, as operators and readers may see it (counts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableSummary {
    /// Cells published, margins included.
    pub cells: usize,
    /// Cells whose values are hidden because they break the profile's rule, by rule.
    pub primary: usize,
    pub primary_too_few_units: usize,
    pub primary_dominance: usize,
    pub primary_empty: usize,
    /// Cells hidden so that no primary cell can be recovered from the margins.
    pub secondary: usize,
    /// Audit rounds until the pattern passed.
    pub audit_rounds: usize,
    /// The data version of the version this one replaced, with which it was audited
    /// (differencing across versions); none for a first publication.
    #[serde(default)]
    pub audited_with_previous: Option<String>,
    /// How many tables of the same source it was audited with (linked tables).
    #[serde(default)]
    pub audited_with_linked: usize,
    /// The data version: a digest of the source file's stamp (never its path).
    pub data_version: String,
    /// When this version was published (RFC 3339).
    pub published_at: String,
}

impl TableSummary {
    fn of(table: &PublishedTable, source_stamp: &str) -> TableSummary {
        let count = |reason: PrimaryReason| {
            table
                .protection
                .secrets
                .iter()
                .filter(|s| **s == Some(Secret::Primary(reason)))
                .count()
        };
        let (primary, secondary) = table.protection.counts();
        TableSummary {
            cells: table.cube.len(),
            primary,
            primary_too_few_units: count(PrimaryReason::TooFewUnits),
            primary_dominance: count(PrimaryReason::Dominance),
            primary_empty: count(PrimaryReason::Empty),
            secondary,
            audit_rounds: table.protection.rounds,
            audited_with_previous: table.previous.as_deref().map(data_version),
            audited_with_linked: table.linked.len(),
            data_version: data_version(source_stamp),
            published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// The data version shown for a source stamp (a digest: the stamp itself says nothing useful).
pub fn data_version(source_stamp: &str) -> String {
    hex::encode(&Sha256::digest(source_stamp.as_bytes())[..8])
}

/// The hash of a table's definition (a new definition is a new table).
pub fn definition_hash(spec: &TableSpec) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// What a published file records of its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub source_stamp: String,
    pub definition: String,
    pub summary: TableSummary,
}

/// The file of table `spec` in the tables folder `dir`.
pub fn path_in(dir: &Path, spec: &TableSpec) -> PathBuf {
    dir.join(format!("{}.parquet", spec.id))
}

/// A published version's cells as the hub computed them (hidden values included) and why each
/// is hidden: what the audits of the tables read beside it need. Never shown to anyone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    /// The definition this version was built from.
    pub spec: TableSpec,
    pub source_stamp: String,
    pub dims: Vec<Dimension>,
    pub measures: Vec<Measure>,
    pub cells: Vec<CellFacts>,
    pub hidden: Vec<bool>,
    pub primaries: Vec<Option<PrimaryReason>>,
}

impl Truth {
    fn of(spec: &TableSpec, table: &PublishedTable, source_stamp: &str) -> Truth {
        let cube = &table.cube;
        Truth {
            spec: spec.clone(),
            source_stamp: source_stamp.to_string(),
            dims: cube.dims().to_vec(),
            measures: cube.measures().to_vec(),
            cells: (0..cube.len()).map(|c| cube.cell(c).clone()).collect(),
            hidden: table.protection.hidden(),
            primaries: table
                .protection
                .secrets
                .iter()
                .map(|s| match s {
                    Some(Secret::Primary(reason)) => Some(*reason),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The table of cells again (checked as when it was built).
    pub fn cube(&self) -> Option<Cube> {
        let probe = Cube::new(
            self.dims.clone(),
            self.measures.clone(),
            std::iter::empty::<(Vec<usize>, CellFacts)>(),
        )
        .ok()?;
        if self.cells.len() != probe.len()
            || self.hidden.len() != probe.len()
            || self.primaries.len() != probe.len()
        {
            return None;
        }
        Cube::new(
            self.dims.clone(),
            self.measures.clone(),
            self.cells
                .iter()
                .enumerate()
                .map(|(i, c)| (probe.coords(i), c.clone())),
        )
        .ok()
    }
}

/// The truth file of the version of `spec`'s table built from `definition` and `source_stamp`.
fn truth_path(dir: &Path, id: &str, definition: &str, source_stamp: &str) -> PathBuf {
    dir.join(format!(
        "{id}.truth-{definition}-{}.json",
        data_version(source_stamp)
    ))
}

/// The truth of the version of table `id` that `provenance` describes, if it was kept.
pub fn read_truth(dir: &Path, id: &str, provenance: &Provenance) -> Option<Truth> {
    let path = truth_path(dir, id, &provenance.definition, &provenance.source_stamp);
    let truth: Truth = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (truth.spec.id == id
        && truth.source_stamp == provenance.source_stamp
        && definition_hash(&truth.spec) == provenance.definition)
        .then_some(truth)
}

/// Writes `bytes` under `path`: temporary file (0600), fsync, rename, fsync of the folder.
fn replace_file(
    path: &Path,
    write: impl FnOnce(std::fs::File) -> Result<std::fs::File, String>,
) -> Result<(), String> {
    let dir = path.parent().ok_or("no folder for published tables")?;
    crate::private_fs::create_dir_all(dir).map_err(|e| format!("tables folder: {}", e.kind()))?;
    // Unique per build: several hubs (or test servers) may share a data folder; the last
    // rename wins, and every file is whole.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temporary = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = (|| -> Result<(), String> {
        let file = crate::private_fs::create_file(&temporary)
            .map_err(|e| format!("table file: {}", e.kind()))?;
        let file = write(file)?;
        file.sync_all()
            .map_err(|e| format!("table file: {}", e.kind()))?;
        std::fs::rename(&temporary, path).map_err(|e| format!("table file: {}", e.kind()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("tables folder: {}", e.kind()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Writes `table` as the published version of `spec` (built from a source of version
/// `source_stamp`): its truth first, then the table itself (temporary file, 0600, fsync,
/// rename over the previous version); the truths of older versions are then removed.
pub fn write(
    dir: &Path,
    spec: &TableSpec,
    table: &PublishedTable,
    source_stamp: &str,
) -> Result<Provenance, String> {
    let path = path_in(dir, spec);
    let summary = TableSummary::of(table, source_stamp);
    let provenance = Provenance {
        source_stamp: source_stamp.to_string(),
        definition: definition_hash(spec),
        summary,
    };
    let truth =
        serde_json::to_vec(&Truth::of(spec, table, source_stamp)).map_err(|e| e.to_string())?;
    let truth_file = truth_path(dir, &spec.id, &provenance.definition, source_stamp);
    replace_file(&truth_file, |mut file| {
        use std::io::Write;
        file.write_all(&truth)
            .map_err(|e| format!("truth file: {}", e.kind()))?;
        Ok(file)
    })?;
    let summary_json = serde_json::to_string(&provenance.summary).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_created_by("passerelle published table".to_string())
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SOURCE_KEY.into(), provenance.source_stamp.clone()),
            KeyValue::new(DEFINITION_KEY.into(), provenance.definition.clone()),
            KeyValue::new(SUMMARY_KEY.into(), summary_json),
        ]))
        .build();
    replace_file(&path, |file| {
        let mut writer =
            ArrowWriter::try_new(BufWriter::new(file), table.batch.schema(), Some(props))
                .map_err(|e| e.to_string())?;
        writer.write(&table.batch).map_err(|e| e.to_string())?;
        writer
            .into_inner()
            .map_err(|e| e.to_string())?
            .into_inner()
            .map_err(|e| e.to_string())
    })?;
    // The truths of versions no reader can see any more.
    if let (Some(dir), Some(keep)) = (truth_file.parent(), truth_file.file_name())
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let prefix = format!("{}.truth-", spec.id);
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name != keep && name.to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(provenance)
}

/// The lock of the published tables' folder: an advisory `flock` on its `.build-lock`,
/// held while one gateway builds and writes a table, so that gateways sharing the data folder
/// publish each version once (the others adopt the file) and never audit a version against a
/// truth another one is replacing. The kernel releases it when its holder dies.
pub struct BuildLock {
    _file: std::fs::File,
}

/// Why the build lock was not taken.
#[derive(Debug)]
pub enum LockRefused {
    /// Another gateway held it for the whole wait (tried again at the next refresh).
    Busy,
    /// The lock file cannot be opened or locked.
    Unusable(String),
}

impl BuildLock {
    /// Takes the lock of the tables folder `dir`, waiting up to `wait` for another holder (a
    /// holder that died holds nothing; one that hangs, or a lock a network file system keeps
    /// until its lease ends, costs this refresh, not the next ones).
    pub async fn take(dir: &Path, wait: std::time::Duration) -> Result<BuildLock, LockRefused> {
        let unusable = |what: &str, e: std::io::Error| {
            LockRefused::Unusable(format!("tables folder{what}: {}", e.kind()))
        };
        crate::private_fs::create_dir_all(dir).map_err(|e| unusable("", e))?;
        crate::private_fs::warn_if_open(dir, "published tables");
        let path = dir.join(BUILD_LOCK);
        // SECURITY: the lock is a plain file of the folder, never a link to elsewhere.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_file()) {
            return Err(LockRefused::Unusable(
                "tables folder lock: not a plain file".into(),
            ));
        }
        let file = crate::private_fs::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unusable(" lock", e))?;
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(BuildLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= wait {
                        return Err(LockRefused::Busy);
                    }
                    if !told && started.elapsed() >= std::time::Duration::from_secs(1) {
                        tracing::info!("waiting for another gateway's table build");
                        told = true;
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(unusable(" lock", e)),
            }
        }
    }
}

/// How long a gateway waits for another one's table build before trying again at its next
/// refresh.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The lock file in the tables folder (a dot name: never a table's).
pub const BUILD_LOCK: &str = ".build-lock";

const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// What the published file of `spec` records, if there is a readable one.
pub fn read(dir: &Path, spec: &TableSpec) -> Option<Provenance> {
    let file = std::fs::File::open(path_in(dir, spec)).ok()?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let get = |key: &str| {
        kv.iter()
            .find(|k| k.key == key)
            .and_then(|k| k.value.clone())
    };
    Some(Provenance {
        source_stamp: get(SOURCE_KEY)?,
        definition: get(DEFINITION_KEY)?,
        summary: serde_json::from_str(&get(SUMMARY_KEY)?).ok()?,
    })
}

/// The published batch of `spec`, if there is a readable file.
pub fn read_batch(dir: &Path, spec: &TableSpec) -> Option<arrow::array::RecordBatch> {
    let file = std::fs::File::open(path_in(dir, spec)).ok()?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .ok()?
        .build()
        .ok()?;
    let batches: Vec<_> = reader.collect::<Result<_, _>>().ok()?;
    let schema = batches.first()?.schema();
    arrow::compute::concat_batches(&schema, &batches).ok()
}
