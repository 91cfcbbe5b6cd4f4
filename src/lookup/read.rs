//! Reading one indexed row: only the row group and pages that hold it (page index), checked
//! against the asked key before anything is returned.

use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};

use super::index::{KeyIndex, key_bytes};

/// Why a row could not be read (names no path).
#[derive(Debug, thiserror::Error)]
#[error("the record could not be read")]
pub struct ReadError;

/// Which columns of the file a read decodes.
#[derive(Debug, Clone, Copy)]
pub enum Columns<'a> {
    All,
    /// These (by name; unknown names are skipped), and the key column always.
    Only(&'a [&'a str]),
}

/// What looking one key up read: the rows holding the key, and the last row read that did
/// not (a decoy row when the key has no candidate at all).
pub struct Probe {
    pub matches: Vec<RecordBatch>,
    other: Option<RecordBatch>,
}

impl Probe {
    /// The row the lookup stands on: the key's, or else the last row read.
    pub fn read(&self) -> Option<&RecordBatch> {
        self.matches.first().or(self.other.as_ref())
    }
}

/// The rows of `index`'s file whose key equals `key`, with `columns` (and the key column).
///
/// SECURITY (timing): a key with no candidate still reads one row (`KeyIndex::rows_to_read`) and
/// compares its key, so a missing key and a present one take the same path and about the
/// same time; `answer_record` then evaluates the row filters on the row read either way.
pub fn probe(index: &KeyIndex, key: &str, columns: Columns<'_>) -> Result<Probe, ReadError> {
    let mut probe = Probe {
        matches: Vec::new(),
        other: None,
    };
    let rows = index.rows_to_read(key);
    let projection = projection(index, columns);
    for row in rows {
        let batch = read_row(index, row, projection.clone())?;
        let mut text = String::new();
        let key_column = batch
            .schema()
            .index_of(index.key_name())
            .map_err(|_| ReadError)?;
        let stored = key_bytes(batch.column(key_column).as_ref(), 0, &mut text);
        // SECURITY: a hash match is only a candidate; the stored key must equal the asked one.
        if stored == Some(key.as_bytes()) {
            probe.matches.push(batch);
        } else {
            probe.other = Some(batch);
        }
    }
    Ok(probe)
}

fn projection(index: &KeyIndex, columns: Columns<'_>) -> ProjectionMask {
    let schema = index.metadata.parquet_schema();
    match columns {
        Columns::All => ProjectionMask::all(),
        Columns::Only(names) => {
            let arrow = index.metadata.schema();
            let mut roots: Vec<usize> = names
                .iter()
                .filter_map(|name| arrow.index_of(name).ok())
                .collect();
            roots.push(index.key_column);
            ProjectionMask::roots(schema, roots)
        }
    }
}

fn read_row(
    index: &KeyIndex,
    row: u64,
    projection: ProjectionMask,
) -> Result<RecordBatch, ReadError> {
    let group = index
        .group_starts
        .partition_point(|&s| s <= row)
        .saturating_sub(1);
    let offset = row - index.group_starts.get(group).copied().ok_or(ReadError)?;
    super::count_row_read();
    let file = std::fs::File::open(&index.path).map_err(|_| ReadError)?;
    let selection = RowSelection::from(vec![
        RowSelector::skip(offset as usize),
        RowSelector::select(1),
    ]);
    let mut reader =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, index.metadata.clone())
            .with_row_groups(vec![group])
            .with_projection(projection)
            .with_row_selection(selection)
            .with_batch_size(1)
            .build()
            .map_err(|_| ReadError)?;
    match reader.next() {
        Some(Ok(batch)) if batch.num_rows() == 1 => Ok(batch),
        _ => Err(ReadError),
    }
}
