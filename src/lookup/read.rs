//! Reading one indexed row: only the row group and pages that hold it (page index), checked
//! against the asked key before anything is returned.

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};

use super::index::{KeyIndex, key_bytes};

/// Why a row could not be read (names no path).
#[derive(Debug, thiserror::Error)]
#[error("the record could not be read")]
pub struct ReadError;

/// The rows of `index`'s file whose key equals `key` (all columns).
pub fn rows_with_key(index: &KeyIndex, key: &str) -> Result<Vec<RecordBatch>, ReadError> {
    let mut out = Vec::new();
    for row in index.candidates(key) {
        let batch = read_row(index, row)?;
        let mut text = String::new();
        let stored = key_bytes(batch.column(index.key_column).as_ref(), 0, &mut text);
        // SECURITY: a hash match is only a candidate; the stored key must equal the asked one.
        if stored == Some(key.as_bytes()) {
            out.push(batch);
        }
    }
    Ok(out)
}

fn read_row(index: &KeyIndex, row: u64) -> Result<RecordBatch, ReadError> {
    let group = index
        .group_starts
        .partition_point(|&s| s <= row)
        .saturating_sub(1);
    let offset = row - index.group_starts.get(group).copied().ok_or(ReadError)?;
    let file = std::fs::File::open(&index.path).map_err(|_| ReadError)?;
    let selection = RowSelection::from(vec![
        RowSelector::skip(offset as usize),
        RowSelector::select(1),
    ]);
    let mut reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, index.metadata.clone())
            .with_row_groups(vec![group])
            .with_row_selection(selection)
            .with_batch_size(1)
            .build()
            .map_err(|_| ReadError)?;
    match reader.next() {
        Some(Ok(batch)) if batch.num_rows() == 1 => Ok(batch),
        _ => Err(ReadError),
    }
}
