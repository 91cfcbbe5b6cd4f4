//! Building one extract, in named steps: open the data file, find the columns to pseudonymise,
//! derive the extract's schema and writer properties (same row groups and compression as the
//! data file), write every batch with those columns pseudonymised into a private temporary
//! file, fsync it, then publish it under its name.
//!
//! Owns: the build's steps and its temporary file (unique per build, removed on failure).
//!
//! Must never: write a raw value of a pseudonymised column, leave a partial extract under its
//! final name (only a complete, fsynced file is renamed into place), or name a value or a path
//! in its error (errors are logged; pseudonyms are then computed in the scan).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::Extract;
use super::provenance;
use crate::file_stamp::FileStamp;
use crate::pseudonym::PseudonymDomain;
use crate::pseudonym::kernels::pseudonymise;

/// Rows read and pseudonymised at a time while building.
const BUILD_BATCH: usize = 64 * 1024;

/// Writes the extract of `source` (as of `stamp`) at `path`: every column copied, `columns`
/// replaced by their pseudonyms in `domain`. Temporary file, 0600, fsync, then rename.
pub(super) fn build(
    dir: &Path,
    source: &Path,
    stamp: FileStamp,
    path: &Path,
    domain: &PseudonymDomain,
    columns: &[String],
) -> Result<Extract, String> {
    crate::private_fs::create_dir_all(dir).map_err(|e| format!("extracts folder: {}", e.kind()))?;
    let reader = open_source(source)?;
    let source_meta = reader.metadata().clone();
    let raw_schema = reader.schema().clone();
    let targets = target_columns(&raw_schema, columns)?;
    // SECURITY (availability): an extract never fills the disk it shares with the copies,
    // the tables and perhaps the audit trail: it must fit twice the source's size (pseudonyms
    // are longer than what they replace) and leave `storage::KEEP_FREE`.
    let source_size = std::fs::metadata(source)
        .map_err(|e| format!("extract source: {}", e.kind()))?
        .len();
    let room = crate::storage::leaves_room(dir, source_size.saturating_mul(2))
        .map_err(|e| format!("extracts folder: {}", e.kind()))?;
    if !room {
        return Err("not enough free space in the extracts folder".into());
    }
    let schema = extract_schema(&raw_schema, &targets);
    let props = writer_properties(&source_meta, stamp, domain, columns);
    let temporary = temporary_path(path);
    let written = write_temporary(reader, &schema, props, &targets, domain, &temporary)
        .and_then(|()| publish(&temporary, path, dir));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(Extract {
        path: path.to_path_buf(),
        schema,
    })
}

/// Step 1: the data file, opened as Parquet.
fn open_source(source: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, String> {
    let file = File::open(source).map_err(|e| format!("data file: {}", e.kind()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|_| "data file is not readable Parquet".to_string())
}

/// Step 2: the positions of `columns` in the data file; each must be there.
fn target_columns(raw_schema: &SchemaRef, columns: &[String]) -> Result<Vec<usize>, String> {
    columns
        .iter()
        .map(|c| {
            raw_schema
                .index_of(c)
                .map_err(|_| "a pseudonymised column is missing from the data file".to_string())
        })
        .collect()
}

/// Step 3: the data file's schema, with the `targets` columns now nullable strings (their
/// pseudonyms).
fn extract_schema(raw_schema: &SchemaRef, targets: &[usize]) -> SchemaRef {
    Arc::new(Schema::new(
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
    ))
}

/// Step 4: how the extract is written: the data file's row groups and compression, the hub's
/// pages and dictionary limit, the provenance metadata, no dictionary for the pseudonymised
/// columns.
fn writer_properties(
    source_meta: &ParquetMetaData,
    stamp: FileStamp,
    domain: &PseudonymDomain,
    columns: &[String],
) -> WriterProperties {
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
    // The hub's pages and dictionaries (`parquet_layout`), whatever the data file's.
    let mut props = crate::parquet_layout::writer_properties()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group))
        .set_created_by("passerelle pseudonymised extract".to_string())
        .set_key_value_metadata(Some(provenance::metadata(stamp, domain, columns)));
    for c in columns {
        // Random 22-character values: a dictionary would only be abandoned after 1 MiB.
        props = props.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
    }
    props.build()
}

/// Step 5: a temporary file next to `path`, unique per build.
fn temporary_path(path: &Path) -> PathBuf {
    // Unique per build, so that two hubs sharing a folder (or two test servers) never write
    // into one temporary file; the last rename wins, and both files are complete. Random bytes
    // too: gateways on two hosts (or in two containers) may have the same process id.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut random = [0u8; 8];
    // (Without randomness, the process id and the counter still part two builds of one host.)
    let _ = getrandom::fill(&mut random);
    path.with_extension(format!(
        "parquet.tmp-{}-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        u64::from_le_bytes(random)
    ))
}

/// Step 6: every batch of the data file, `targets` pseudonymised, written to `temporary`
/// (0600), flushed and fsynced.
fn write_temporary(
    reader: ParquetRecordBatchReaderBuilder<File>,
    schema: &SchemaRef,
    props: WriterProperties,
    targets: &[usize],
    domain: &PseudonymDomain,
    temporary: &Path,
) -> Result<(), String> {
    let out =
        crate::private_fs::create_file(temporary).map_err(|e| format!("extract: {}", e.kind()))?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, out),
        schema.clone(),
        Some(props),
    )
    .map_err(|e| format!("extract writer: {e}"))?;
    let batches = reader
        .with_batch_size(BUILD_BATCH)
        .build()
        .map_err(|_| "data file is not readable Parquet".to_string())?;
    for batch in batches {
        let batch = batch.map_err(|_| "data file could not be decoded".to_string())?;
        let batch = pseudonymise_batch(&batch, schema, targets, domain)?;
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
        .map_err(|e| format!("extract fsync: {}", e.kind()))
}

/// One batch of the data file with its `targets` columns replaced by their pseudonyms.
fn pseudonymise_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
    targets: &[usize],
    domain: &PseudonymDomain,
) -> Result<RecordBatch, String> {
    let mut arrays = batch.columns().to_vec();
    for &i in targets {
        arrays[i] =
            pseudonymise(domain, arrays[i].as_ref()).map_err(|e| format!("pseudonymise: {e}"))?;
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| format!("extract batch: {e}"))
}

/// Step 7: the complete temporary file renamed to `path`, and the folder fsynced.
fn publish(temporary: &Path, path: &Path, dir: &Path) -> Result<(), String> {
    std::fs::rename(temporary, path).map_err(|e| format!("extract rename: {}", e.kind()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("extracts folder fsync: {}", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::super::Extracts;
    use super::super::testing::{built, domain, nirs, read, write_source};
    use arrow::array::{Array, AsArray};

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
}
