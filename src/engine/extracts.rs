//! Pseudonymised extracts: a copy of a dataset file in which the columns a project sees
//! pseudonymised already hold their pseudonyms, so that its queries read pseudonyms instead of
//! computing one HMAC per row and per query.
//!
//! One extract per (data file, pseudonymisation domain, key version, set of pseudonymised
//! columns), in `pseudonymisation.extracts_dir`. The first query that could use a missing or
//! stale extract starts its build in the background (one build at a time) and is answered by
//! computing pseudonyms in the scan, as every query is when extracts are off; queries switch
//! to the extract once it is complete. Every other column is copied as is: row filters, masks,
//! hidden columns and the barrier apply to an extract exactly as to the data file.
//!
//! Owns: building extracts (temporary file, 0600, fsync, rename), recognising a valid one
//! (on disk from an earlier run too), removing extracts of older key versions.
//!
//! Must never: serve an extract whose data file changed since it was built (size and
//! modification time, checked on every use), whose key differs (a probe pseudonym computed
//! with the domain in force is compared with the one stored in the extract), or whose version
//! or column set differ; hold a raw value of a pseudonymised column; name a value, a path or a
//! key in what a caller can see (extracts are never named in answers or errors).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::file_stamp::FileStamp;
use crate::pseudonym::PseudonymDomain;
use crate::pseudonym::kernels::pseudonymise;

/// The value whose pseudonym proves which key built an extract (it is no one's identifier).
const PROBE: &str = "passerelle/extract-probe";
/// Key-value metadata of an extract.
const META_SOURCE: &str = "passerelle.extract.source";
const META_PROBE: &str = "passerelle.extract.probe";
const META_COLUMNS: &str = "passerelle.extract.columns";
/// Rows read and pseudonymised at a time while building.
const BUILD_BATCH: usize = 64 * 1024;

/// An extract ready to be scanned in place of its data file.
#[derive(Debug, Clone)]
pub struct Extract {
    pub path: PathBuf,
    /// Its Arrow schema, without the file's key-value metadata (source stamp, probe).
    pub schema: SchemaRef,
}

/// What is known of one extract.
#[derive(Debug, Clone)]
enum Entry {
    Building,
    Ready {
        source: FileStamp,
        extract: Extract,
    },
    /// Its build failed for this state of the data file: not tried again until it changes.
    Failed {
        source: Option<FileStamp>,
    },
}

/// Which extract: data file, domain, key version, pseudonymised columns (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ExtractKey {
    source: PathBuf,
    domain: String,
    version: u32,
    columns: Vec<String>,
}

/// The extracts of one hub.
#[derive(Debug)]
pub struct Extracts {
    dir: PathBuf,
    entries: Mutex<HashMap<ExtractKey, Entry>>,
    /// Held by the build in progress: one at a time, the hub keeps serving on the other core.
    building: Mutex<()>,
    /// Scans answered from an extract (tests and metrics).
    served: std::sync::atomic::AtomicU64,
}

impl Extracts {
    /// Extracts kept in `dir` (created on first build, 0700).
    pub fn new(dir: PathBuf) -> Arc<Extracts> {
        Arc::new(Extracts {
            dir,
            entries: Mutex::new(HashMap::new()),
            building: Mutex::new(()),
            served: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The extract of `source` with `columns` pseudonymised in `domain`, if one is complete and
    /// still matches the data file; otherwise starts its build (unless one is under way or
    /// failed for this state of the file) and returns `None`: compute in the scan.
    pub fn find(
        self: &Arc<Self>,
        source: &Path,
        domain: &Arc<PseudonymDomain>,
        columns: &[String],
    ) -> Option<Extract> {
        let mut columns = columns.to_vec();
        columns.sort();
        let key = ExtractKey {
            source: source.to_path_buf(),
            domain: domain.id().to_string(),
            version: domain.version(),
            columns,
        };
        // SECURITY: no stamp (the file cannot be read) means no extract.
        let stamp = FileStamp::of(source)?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key) {
            Some(Entry::Building) => return None,
            Some(Entry::Failed { source }) if *source == Some(stamp) => return None,
            // SECURITY: an extract is used only while its data file is the one it was built
            // from, and while the extract file itself is still there.
            Some(Entry::Ready { source, extract })
                if *source == stamp && extract.path.is_file() =>
            {
                self.served
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(extract.clone());
            }
            _ => {}
        }
        // Not known in this process (or stale): an extract left by an earlier run may do.
        let path = self.path_of(&key);
        if let Some(extract) = open_valid(&path, stamp, domain, &key.columns) {
            entries.insert(
                key,
                Entry::Ready {
                    source: stamp,
                    extract: extract.clone(),
                },
            );
            self.served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Some(extract);
        }
        entries.insert(key.clone(), Entry::Building);
        drop(entries);
        let extracts = self.clone();
        let domain = domain.clone();
        let spawned = std::thread::Builder::new()
            .name("extract-build".into())
            .spawn(move || extracts.build_in_background(key, path, domain));
        if spawned.is_err() {
            tracing::warn!("pseudonymised extract: could not start its build");
        }
        None
    }

    /// How many scans read an extract instead of their data file.
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until no build is in progress (tests, benchmarks, `demo` start-up).
    pub fn wait_for_builds(&self) {
        // Every build, queued or running, is an entry saying Building until it ends.
        loop {
            let building = self
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .any(|e| matches!(e, Entry::Building));
            if !building {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn build_in_background(&self, key: ExtractKey, path: PathBuf, domain: Arc<PseudonymDomain>) {
        let _one_at_a_time = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let before = FileStamp::of(&key.source);
        let built = before.ok_or(()).and_then(|stamp| {
            build(&self.dir, &key.source, stamp, &path, &domain, &key.columns).map_err(|e| {
                tracing::warn!(
                    domain = %key.domain,
                    version = key.version,
                    error = %e,
                    "pseudonymised extract could not be built: pseudonyms are computed in the scan"
                );
            })
        });
        // SECURITY: a data file replaced during the build makes the extract stale at once.
        let after = FileStamp::of(&key.source);
        let entry = match (built, before, after) {
            (Ok(extract), Some(before), Some(after)) if before == after => {
                tracing::info!(
                    domain = %key.domain,
                    version = key.version,
                    columns = key.columns.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "pseudonymised extract built"
                );
                self.remove_older_versions(&key);
                Entry::Ready {
                    source: after,
                    extract,
                }
            }
            _ => Entry::Failed { source: before },
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, entry);
    }

    /// `<file stem>.<domain>.v<version>.<hash>.parquet`; the hash covers the data file's path,
    /// the domain, the version and the columns.
    fn path_of(&self, key: &ExtractKey) -> PathBuf {
        let mut hash = Sha256::new();
        hash.update(key.source.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(key.domain.as_bytes());
        hash.update([0]);
        hash.update(key.version.to_be_bytes());
        for c in &key.columns {
            hash.update([0]);
            hash.update(c.as_bytes());
        }
        let hash = hex::encode(&hash.finalize()[..8]);
        self.dir.join(format!(
            "{}.v{}.{hash}.parquet",
            prefix(&key.source, &key.domain),
            key.version
        ))
    }

    /// Removes the extracts of the same data file and domain made with older key versions
    /// (their pseudonyms are no longer served).
    fn remove_older_versions(&self, key: &ExtractKey) {
        let prefix = format!("{}.v", prefix(&key.source, &key.domain));
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for file in listing.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let version = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('.').next())
                .and_then(|v| v.parse::<u32>().ok());
            if version.is_some_and(|v| v < key.version) {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}

/// File-name prefix of an extract: the data file's stem and the domain, letters, digits,
/// `-` and `_` only.
fn prefix(source: &Path, domain: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{}.{}", clean(&stem), clean(domain))
}

/// The extract at `path` if it exists and was built from the data file as it is now
/// (`stamp`), with `domain`'s key (probe) and exactly `columns`.
fn open_valid(
    path: &Path,
    stamp: FileStamp,
    domain: &PseudonymDomain,
    columns: &[String],
) -> Option<Extract> {
    let file = File::open(path).ok()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    let metadata = builder.metadata().file_metadata().key_value_metadata()?;
    let get = |key: &str| {
        metadata
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    // SECURITY: all three must match; anything missing or different means "build again".
    if get(META_SOURCE)? != stamp.token()
        || get(META_PROBE)? != domain.pseudonymise(PROBE)
        || get(META_COLUMNS)? != columns.join(",")
    {
        return None;
    }
    Some(Extract {
        path: path.to_path_buf(),
        schema: Arc::new(Schema::new(builder.schema().fields().clone())),
    })
}

/// Writes the extract of `source` (as of `stamp`) at `path`: every column copied, `columns`
/// replaced by their pseudonyms in `domain`. Temporary file, 0600, fsync, then rename.
fn build(
    dir: &Path,
    source: &Path,
    stamp: FileStamp,
    path: &Path,
    domain: &PseudonymDomain,
    columns: &[String],
) -> Result<Extract, String> {
    create_private_dir(dir).map_err(|e| format!("extracts folder: {}", e.kind()))?;
    let file = File::open(source).map_err(|e| format!("data file: {}", e.kind()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|_| "data file is not readable Parquet".to_string())?;
    let source_meta = reader.metadata().clone();
    let raw_schema = reader.schema().clone();
    let targets: Vec<usize> = columns
        .iter()
        .map(|c| {
            raw_schema
                .index_of(c)
                .map_err(|_| "a pseudonymised column is missing from the data file".to_string())
        })
        .collect::<Result<_, _>>()?;
    let schema = Arc::new(Schema::new(
        raw_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if targets.contains(&i) {
                    Arc::new(Field::new(f.name(), DataType::Utf8, true))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    // Same row groups and compression as the data file, so that pruning works alike.
    let row_group = source_meta
        .row_groups()
        .first()
        .map_or(1 << 20, |rg| rg.num_rows().max(1) as usize);
    let compression = source_meta
        .row_groups()
        .first()
        .and_then(|rg| rg.columns().first())
        .map_or(parquet::basic::Compression::SNAPPY, |c| c.compression());
    let mut props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group))
        .set_created_by("passerelle pseudonymised extract".to_string())
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_SOURCE.to_string(), stamp.token()),
            KeyValue::new(META_PROBE.to_string(), domain.pseudonymise(PROBE)),
            KeyValue::new(META_COLUMNS.to_string(), columns.join(",")),
        ]));
    for c in columns {
        // Random 22-character values: a dictionary would only be abandoned after 1 MiB.
        props = props.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
    }

    // Unique per build, so that two hubs sharing a folder (or two test servers) never write
    // into one temporary file; the last rename wins, and both files are complete.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temporary = path.with_extension(format!(
        "parquet.tmp-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = (|| -> Result<(), String> {
        let out = private_file(&temporary).map_err(|e| format!("extract: {}", e.kind()))?;
        let mut writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, out),
            schema.clone(),
            Some(props.build()),
        )
        .map_err(|e| format!("extract writer: {e}"))?;
        let batches = reader
            .with_batch_size(BUILD_BATCH)
            .build()
            .map_err(|_| "data file is not readable Parquet".to_string())?;
        for batch in batches {
            let batch = batch.map_err(|_| "data file could not be decoded".to_string())?;
            let mut arrays = batch.columns().to_vec();
            for &i in &targets {
                arrays[i] = pseudonymise(domain, arrays[i].as_ref())
                    .map_err(|e| format!("pseudonymise: {e}"))?;
            }
            let batch = RecordBatch::try_new(schema.clone(), arrays)
                .map_err(|e| format!("extract batch: {e}"))?;
            writer
                .write(&batch)
                .map_err(|e| format!("extract write: {e}"))?;
        }
        let mut out = writer
            .into_inner()
            .map_err(|e| format!("extract close: {e}"))?;
        out.flush()
            .map_err(|e| format!("extract flush: {}", e.kind()))?;
        let file = out
            .into_inner()
            .map_err(|e| format!("extract flush: {}", e.error().kind()))?;
        file.sync_all()
            .map_err(|e| format!("extract fsync: {}", e.kind()))?;
        std::fs::rename(&temporary, path).map_err(|e| format!("extract rename: {}", e.kind()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("extracts folder fsync: {}", e.kind()))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(Extract {
        path: path.to_path_buf(),
        schema,
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// A new file readable by the hub's user only (extracts hold every other column raw).
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::MasterKey;
    use arrow::array::{Array, AsArray, Int64Array, StringArray};

    fn write_source(path: &Path, nirs: &[Option<&str>]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("nir", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..nirs.len() as i64)),
                Arc::new(StringArray::from(nirs.to_vec())),
                Arc::new(StringArray::from_iter_values(nirs.iter().map(|_| "84"))),
            ],
        )
        .unwrap();
        let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn domain(key: u8, version: u32) -> Arc<PseudonymDomain> {
        Arc::new(
            PseudonymDomain::derive(&MasterKey::from_bytes([key; 32]), "projet-diabete", version)
                .unwrap(),
        )
    }

    fn read(extract: &Extract) -> RecordBatch {
        let file = File::open(&extract.path).unwrap();
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// `find` until the background build is done.
    fn built(extracts: &Arc<Extracts>, source: &Path, domain: &Arc<PseudonymDomain>) -> Extract {
        let columns = ["nir".to_string()];
        if let Some(found) = extracts.find(source, domain, &columns) {
            return found;
        }
        extracts.wait_for_builds();
        extracts.find(source, domain, &columns).expect("built")
    }

    fn nirs(batch: &RecordBatch) -> Vec<Option<String>> {
        let column = batch.column_by_name("nir").unwrap().as_string::<i32>();
        column.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn an_extract_holds_pseudonyms_and_every_other_column_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(
            &source,
            &[Some("1840375056123"), None, Some("2840375056124")],
        );
        let extracts = Extracts::new(dir.path().join("extracts"));
        let d = domain(1, 1);
        // First use: built in the background, the caller computes in the scan meanwhile.
        assert!(extracts.find(&source, &d, &["nir".to_string()]).is_none());
        let extract = built(&extracts, &source, &d);
        let batch = read(&extract);
        assert_eq!(
            nirs(&batch),
            vec![
                Some(d.pseudonymise("1840375056123")),
                None,
                Some(d.pseudonymise("2840375056124"))
            ]
        );
        let ids = batch.column_by_name("id").unwrap();
        assert_eq!(
            ids.as_primitive::<arrow::datatypes::Int64Type>().values(),
            &[0, 1, 2]
        );
        assert_eq!(batch.column_by_name("region").unwrap().len(), 3);
        assert_eq!(extracts.served(), 1);
    }

    #[test]
    fn an_extract_is_used_only_while_its_data_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let extracts = Extracts::new(dir.path().join("extracts"));
        let d = domain(1, 1);
        built(&extracts, &source, &d);
        // The data file is replaced (another size): the old extract is never read again.
        write_source(&source, &[Some("2990199000001"), Some("2990199000002")]);
        assert!(extracts.find(&source, &d, &["nir".to_string()]).is_none());
        let extract = built(&extracts, &source, &d);
        assert_eq!(
            nirs(&read(&extract)),
            vec![
                Some(d.pseudonymise("2990199000001")),
                Some(d.pseudonymise("2990199000002"))
            ]
        );
        // A missing data file: no extract.
        std::fs::remove_file(&source).unwrap();
        assert!(extracts.find(&source, &d, &["nir".to_string()]).is_none());
    }

    #[test]
    fn an_extract_of_another_key_or_version_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let folder = dir.path().join("extracts");
        let v1 = built(&Extracts::new(folder.clone()), &source, &domain(1, 1));
        // A restart with another master key finds the file and refuses it (probe).
        let other_key = domain(2, 1);
        let restarted = Extracts::new(folder.clone());
        assert!(
            restarted
                .find(&source, &other_key, &["nir".to_string()])
                .is_none()
        );
        let rebuilt = built(&restarted, &source, &other_key);
        assert_eq!(rebuilt.path, v1.path, "same name, rebuilt in place");
        assert_eq!(
            nirs(&read(&rebuilt)),
            vec![Some(other_key.pseudonymise("1840375056123"))]
        );
        // A restart with the same key and a new version: a new extract, the old one removed.
        let v2 = domain(2, 2);
        let restarted = Extracts::new(folder.clone());
        let extract = built(&restarted, &source, &v2);
        assert_ne!(extract.path, v1.path);
        assert!(!v1.path.exists(), "extracts of older versions are removed");
        assert_eq!(
            nirs(&read(&extract)),
            vec![Some(v2.pseudonymise("1840375056123"))]
        );
        // Another column set is another extract.
        assert!(
            restarted
                .find(&source, &v2, &["region".to_string()])
                .is_none()
        );
    }

    #[cfg(unix)]
    #[test]
    fn extracts_are_private_and_leave_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let folder = dir.path().join("extracts");
        let extract = built(&Extracts::new(folder.clone()), &source, &domain(1, 1));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&extract.path), 0o600);
        assert_eq!(mode(&folder), 0o700);
        let names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            names[0].starts_with("sejours.projet-diabete.v1."),
            "{names:?}"
        );
    }

    #[test]
    fn a_file_that_cannot_be_pseudonymised_fails_once_and_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let extracts = Extracts::new(dir.path().join("extracts"));
        let d = domain(1, 1);
        let missing = ["not_a_column".to_string()];
        assert!(extracts.find(&source, &d, &missing).is_none());
        extracts.wait_for_builds();
        assert!(extracts.find(&source, &d, &missing).is_none());
        let entries = extracts.entries.lock().unwrap();
        assert!(entries.values().all(|e| matches!(e, Entry::Failed { .. })));
    }
}
