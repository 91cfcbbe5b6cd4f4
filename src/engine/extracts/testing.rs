//! Test helpers shared by the extracts' unit tests: a small data file, a domain, reading an
//! extract back, waiting for a build.
//!
//! Owns: nothing the hub runs (compiled for tests only).
//!
//! Must never: be used outside `#[cfg(test)]` code, or hold a real identifier (the NIRs are
//! made up).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Extract, Extracts};
use crate::pseudonym::{MasterKey, PseudonymDomain};

pub(super) fn write_source(path: &Path, nirs: &[Option<&str>]) {
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

pub(super) fn domain(key: u8, version: u32) -> Arc<PseudonymDomain> {
    Arc::new(
        PseudonymDomain::derive(&MasterKey::from_bytes([key; 32]), "projet-diabete", version)
            .unwrap(),
    )
}

pub(super) fn read(extract: &Extract) -> RecordBatch {
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
pub(super) fn built(
    extracts: &Arc<Extracts>,
    source: &Path,
    domain: &Arc<PseudonymDomain>,
) -> Extract {
    let columns = ["nir".to_string()];
    if let Some(found) = extracts.find(source, domain, &columns) {
        return found;
    }
    extracts.wait_for_builds();
    extracts.find(source, domain, &columns).expect("built")
}

pub(super) fn nirs(batch: &RecordBatch) -> Vec<Option<String>> {
    let column = batch.column_by_name("nir").unwrap().as_string::<i32>();
    column.iter().map(|v| v.map(str::to_string)).collect()
}
