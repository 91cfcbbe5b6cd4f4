//! Which version of each table is published, and keeping them current.
//!
//! A table is servable only when its published file was built from the current definition
//! and from the source file as it is now (same stamp), and the file is the one written: a
//! source replaced since, a changed definition or a file replaced behind the hub's back makes
//! it unreadable until it is rebuilt. [`PublishedTables::refresh`] rebuilds what is stale, one
//! table at a time; a table whose protection fails is refused (the operator sees why in
//! `GET /v1/tables/{id}`) and stays unreadable.
//!
//! Owns: the status of each table, the decision that a table may be read. Must never: let a
//! table be read that is not the current, audited version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::compute::{Beside, TableError, build};
use super::store::{self, TableSummary};
use crate::file_stamp::FileStamp;
use crate::policy::{CatalogFiles, DatasetKind, PolicySet, TableSpec};

/// Where a table stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TableStatus {
    /// Not built for the current data and definition yet (being built, or waiting its turn).
    Pending,
    /// The current version, readable.
    Published { summary: TableSummary },
    /// Its protection failed: not published. `reason` is for operators.
    Refused { reason: String },
    /// It could not be computed: not published. `reason` is for operators.
    Failed { reason: String },
}

#[derive(Debug, Clone)]
struct TableState {
    definition: String,
    source_stamp: Option<String>,
    /// The published file's stamp once written or adopted.
    file: Option<FileStamp>,
    status: TableStatus,
}

/// The hub's published tables.
#[derive(Debug)]
pub struct PublishedTables {
    /// The tables folder (`data.tables_dir`, by default `<data.dir>/.tables`).
    dir: PathBuf,
    /// Where each source's current file is (the data folder, or local copies of the bucket's
    /// objects, made by `refresh`).
    files: Arc<dyn CatalogFiles>,
    states: Mutex<HashMap<String, TableState>>,
    /// The data version of each source file, while its stamp is unchanged.
    versions: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
    /// One build at a time (a build holds a whole table's cells and solves linear programs).
    building: tokio::sync::Mutex<()>,
}

impl PublishedTables {
    /// Tables written in `<data_dir>/.tables`, their sources read in `data_dir`.
    pub fn new(data_dir: PathBuf) -> PublishedTables {
        Self::with_files(
            crate::policy::tables::default_tables_dir(&data_dir),
            Arc::new(data_dir),
        )
    }

    /// Tables written in the folder `dir`, their sources' current files found by `files`.
    pub fn with_files(dir: PathBuf, files: Arc<dyn CatalogFiles>) -> PublishedTables {
        PublishedTables {
            dir,
            files,
            states: Mutex::default(),
            versions: Mutex::default(),
            building: tokio::sync::Mutex::new(()),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, TableState>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The source file of `spec` and its data version now.
    fn source(&self, set: &PolicySet, spec: &TableSpec) -> Option<(PathBuf, String)> {
        let dataset = set
            .catalog
            .dataset(&spec.source)
            .filter(|d| d.kind == DatasetKind::Microdata)?;
        // (No I/O here: on a bucket, the local copy `refresh` made, or nothing yet.)
        let path = self.files.known_local_file(&dataset.path)?;
        let stamp = FileStamp::of(&path)?;
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, version)) = versions.get(&path)
            && *known == stamp
        {
            return Some((path, version.clone()));
        }
        let version = content_version(&path)?;
        // SECURITY: a file replaced while it was read gets no version (tried again later).
        if FileStamp::of(&path) != Some(stamp) {
            return None;
        }
        versions.insert(path.clone(), (stamp, version.clone()));
        Some((path, version))
    }

    /// Whether table `id` of `set` may be read now: published from the current definition and
    /// source, from the very file written.
    pub fn servable(&self, set: &PolicySet, id: &str) -> bool {
        let Some(spec) = set.tables.get(id) else {
            return false;
        };
        let Some((_, stamp)) = self.source(set, spec) else {
            return false;
        };
        let definition = store::definition_hash(spec);
        let file = FileStamp::of(&store::path_in(&self.dir, spec));
        // SECURITY: only the current, audited version of a table is read.
        self.locked().get(id).is_some_and(|s| {
            matches!(s.status, TableStatus::Published { .. })
                && s.definition == definition
                && s.source_stamp.as_deref() == Some(stamp.as_str())
                && s.file.is_some()
                && s.file == file
        })
    }

    /// Each table's state (`pending`, `published`, `refused`, `failed`), for operators.
    pub fn states(&self) -> std::collections::BTreeMap<String, &'static str> {
        self.locked()
            .iter()
            .map(|(id, s)| {
                let state = match s.status {
                    TableStatus::Pending => "pending",
                    TableStatus::Published { .. } => "published",
                    TableStatus::Refused { .. } => "refused",
                    TableStatus::Failed { .. } => "failed",
                };
                (id.clone(), state)
            })
            .collect()
    }

    /// Where table `id` stands (none: not a table of the sets seen so far).
    pub fn status(&self, id: &str) -> Option<TableStatus> {
        self.locked().get(id).map(|s| s.status.clone())
    }

    /// Brings every table of `set` up to date: adopts a published file built from the current
    /// definition and source (after a restart), rebuilds the others, one at a time.
    pub async fn refresh(&self, set: &PolicySet) {
        // On a bucket, each source's current version is copied locally first (off the async
        // runtime); a source that cannot be copied stays without version: its tables pending.
        for spec in &set.tables.list {
            let Some(dataset) = set.catalog.dataset(&spec.source) else {
                continue;
            };
            let (files, path) = (self.files.clone(), dataset.path.clone());
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || files.local_file(&path)).await {
                tracing::warn!(table = %spec.id, error = %e, "table source unavailable");
            }
        }
        for spec in &set.tables.list {
            let definition = store::definition_hash(spec);
            let source = self.source(set, spec);
            let stamp = source.as_ref().map(|(_, s)| s.clone());
            let file = FileStamp::of(&store::path_in(&self.dir, spec));
            let current = self.locked().get(&spec.id).is_some_and(|s| {
                s.definition == definition
                    && s.source_stamp == stamp
                    && match s.status {
                        TableStatus::Published { .. } => s.file.is_some() && s.file == file,
                        TableStatus::Refused { .. } | TableStatus::Failed { .. } => true,
                        TableStatus::Pending => false,
                    }
            });
            if current {
                continue;
            }
            let Some((source_path, stamp)) = source else {
                self.set(
                    spec,
                    &definition,
                    None,
                    None,
                    TableStatus::Failed {
                        reason: format!("the source `{}` cannot be read", spec.source),
                    },
                );
                continue;
            };
            if self.adopt(spec, &definition, &stamp) {
                continue;
            }
            self.set(
                spec,
                &definition,
                Some(stamp.clone()),
                None,
                TableStatus::Pending,
            );
            let _one_at_a_time = self.building.lock().await;
            // SECURITY: one build at a time across the gateways sharing the data folder: a
            // version is audited against the truths beside it while no other gateway replaces
            // them, and published once (the others adopt it).
            let _shared = match store::BuildLock::take(&self.dir, store::LOCK_WAIT).await {
                Ok(lock) => lock,
                // Still pending: the next refresh tries again (or adopts what the other built).
                Err(store::LockRefused::Busy) => {
                    tracing::warn!(table = %spec.id, "another gateway holds the tables folder's build lock; tried again at the next refresh");
                    continue;
                }
                Err(store::LockRefused::Unusable(reason)) => {
                    let status = TableStatus::Failed { reason };
                    self.set(spec, &definition, Some(stamp), None, status);
                    continue;
                }
            };
            if self.adopt(spec, &definition, &stamp) {
                tracing::info!(table = %spec.id, "table adopted: another gateway published this version");
                continue;
            }
            let started = std::time::Instant::now();
            let status = match self.beside(set, spec) {
                // SECURITY: a version that cannot be audited with what readers saw beside it
                // is not published.
                Err(reason) => TableStatus::Refused { reason },
                Ok((beside, previous, linked)) => {
                    let names = beside_names(&previous, &linked);
                    match build(spec, &source_path, beside).await {
                        Ok(mut table) => {
                            table.previous = previous;
                            table.linked = linked;
                            match store::write(&self.dir, spec, &table, &stamp) {
                                Ok(provenance) => TableStatus::Published {
                                    summary: provenance.summary,
                                },
                                Err(reason) => TableStatus::Failed { reason },
                            }
                        }
                        Err(TableError::Unprotected(_, e)) => TableStatus::Refused {
                            reason: format!("{e}{names}"),
                        },
                        Err(e) => TableStatus::Failed {
                            reason: e.to_string(),
                        },
                    }
                }
            };
            match &status {
                TableStatus::Published { summary } => tracing::info!(
                    table = %spec.id,
                    cells = summary.cells,
                    primary = summary.primary,
                    secondary = summary.secondary,
                    rounds = summary.audit_rounds,
                    with_previous = summary.audited_with_previous.is_some(),
                    with_linked = summary.audited_with_linked,
                    ms = started.elapsed().as_millis() as u64,
                    "table published"
                ),
                TableStatus::Refused { reason } | TableStatus::Failed { reason } => {
                    tracing::error!(table = %spec.id, %reason, "table not published")
                }
                TableStatus::Pending => {}
            }
            let file = FileStamp::of(&store::path_in(&self.dir, spec));
            self.set(spec, &definition, Some(stamp), file, status);
        }
    }

    /// Takes the published file of `spec` as its current version if it was built from
    /// `definition` and the source's version `stamp` (after a restart, or by another gateway
    /// sharing the data folder). `false`: none such.
    fn adopt(&self, spec: &TableSpec, definition: &str, stamp: &str) -> bool {
        let path = store::path_in(&self.dir, spec);
        let file = FileStamp::of(&path);
        let Some(p) = store::read(&self.dir, spec) else {
            return false;
        };
        // SECURITY: the file read is the one stamped (not replaced between the two reads).
        if p.definition != definition || p.source_stamp != stamp || FileStamp::of(&path) != file {
            return false;
        }
        let status = TableStatus::Published { summary: p.summary };
        self.set(spec, definition, Some(stamp.to_string()), file, status);
        true
    }

    /// The published versions `spec`'s new version is read beside, which its audit must
    /// cover: the version it replaces (whatever its definition or data), then the current
    /// tables of its source; with the replaced version's source stamp and the linked tables'
    /// ids. Refused (fail closed) when one of them is published but its truth cannot be read.
    fn beside(&self, set: &PolicySet, spec: &TableSpec) -> Result<ReadBeside, String> {
        let truth_of = |table: &TableSpec, what: &str| -> Result<Option<Beside>, String> {
            let Some(provenance) = store::read(&self.dir, table) else {
                return Ok(None);
            };
            store::read_truth(&self.dir, &table.id, &provenance)
                .and_then(|truth| truth.cube().map(|cube| (truth, cube)))
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "{what} `{}` is published but its cells were not kept, so this version cannot be audited with it; remove `{}.parquet` from the tables folder to publish without it",
                        table.id, table.id
                    )
                })
        };
        let mut beside = Vec::new();
        let previous = truth_of(spec, "the version it replaces of")?;
        // SECURITY: a table related to one beside it by sums the joint audit does not tie
        // (other bands or prefixes of a shared column) is not published.
        if let Some(reason) = previous
            .as_ref()
            .and_then(|(truth, _)| super::linked::incompatible(spec, &truth.spec))
        {
            return Err(format!("the version it replaces: {reason}"));
        }
        let previous_stamp = previous.as_ref().map(|(t, _)| t.source_stamp.clone());
        beside.extend(previous);
        let mut linked = Vec::new();
        for other in set
            .tables
            .list
            .iter()
            .filter(|o| o.id != spec.id && o.source == spec.source)
        {
            // Only current neighbours: a stale one is rebuilt (and audited with this one) in
            // its turn.
            if !self.servable(set, &other.id) {
                continue;
            }
            if let Some(reason) = super::linked::incompatible(spec, other) {
                return Err(reason);
            }
            let Some(truth) = truth_of(other, "the linked table")? else {
                return Err(format!(
                    "the linked table `{}` cannot be read, so this version cannot be audited with it",
                    other.id
                ));
            };
            beside.push(truth);
            linked.push(other.id.clone());
        }
        Ok((beside, previous_stamp, linked))
    }

    fn set(
        &self,
        spec: &TableSpec,
        definition: &str,
        source_stamp: Option<String>,
        file: Option<FileStamp>,
        status: TableStatus,
    ) {
        let file = match status {
            TableStatus::Published { .. } => file,
            _ => None,
        };
        self.locked().insert(
            spec.id.clone(),
            TableState {
                definition: definition.to_string(),
                source_stamp,
                file,
                status,
            },
        );
    }

    /// The folder the published files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A data file's version: its length and a digest of its last 64 KiB (a Parquet file's footer:
/// row groups, sizes, statistics), so that a copy of the same file keeps its version while any
/// rewrite changes it.
fn content_version(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::with_capacity(TAIL as usize);
    file.read_to_end(&mut tail).ok()?;
    Some(format!(
        "{len}:{}",
        hex::encode(&Sha256::digest(&tail)[..16])
    ))
}

/// What a new version is audited with: the published versions beside it, the source stamp of
/// the version it replaces, and the linked tables' ids.
type ReadBeside = (Vec<Beside>, Option<String>, Vec<String>);

/// For a refusal: the tables the audit read together.
fn beside_names(previous: &Option<String>, linked: &[String]) -> String {
    let mut with = Vec::new();
    if previous.is_some() {
        with.push("the version it replaces".to_string());
    }
    with.extend(linked.iter().map(|id| format!("`{id}`")));
    if with.is_empty() {
        String::new()
    } else {
        format!(" (audited together with {})", with.join(", "))
    }
}
