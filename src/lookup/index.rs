//! The key index of one dataset column: key → row numbers, so a lookup reads one page of the
//! Parquet file instead of scanning it.
//!
//! Layout: one sorted `Vec<u64>` whose entries pack a 32-bit hash of the key (high half) and
//! the row number (low half): 8 bytes per row, about 80 MB for 10 million rows. A hash match is
//! only a candidate: the reader compares the stored key before answering, so collisions cost a
//! read, never a wrong record. The file's metadata (with its page index) is loaded once and
//! reused by every read.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::PageIndexPolicy;

use crate::file_stamp::FileStamp;

/// Why an index could not be built (names no path).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IndexError {
    #[error("the catalog does not declare this column unique: it is no lookup key")]
    NotUnique,
    #[error("the key column `{0}` is missing or not a string or integer column")]
    KeyColumn(String),
    #[error("the dataset file cannot be read")]
    Unreadable,
    #[error("more than 4 294 967 295 rows: too many to index")]
    TooManyRows,
}

/// Key → rows of one column of one Parquet file.
#[derive(Debug)]
pub struct KeyIndex {
    pub(super) path: PathBuf,
    pub(super) metadata: ArrowReaderMetadata,
    pub(super) key_column: usize,
    /// `hash << 32 | row`, sorted.
    entries: Vec<u64>,
    /// First global row of each row group (and the total at the end).
    pub(super) group_starts: Vec<u64>,
    /// The file as it was when indexed: a replaced file makes the index stale.
    stamp: Option<FileStamp>,
}

/// The 32-bit hash of a key (SipHash with fixed keys: the index is internal, never shown).
pub(super) fn key_hash(key: &[u8]) -> u32 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(key);
    (h.finish() >> 32) as u32
}

impl KeyIndex {
    /// Reads the key column of `path` and builds the index.
    pub fn build(path: &Path, column: &str) -> Result<Arc<KeyIndex>, IndexError> {
        // Taken first: a file replaced while it is read makes the index stale at once.
        let stamp = FileStamp::of(path);
        let open = || std::fs::File::open(path).map_err(|_| IndexError::Unreadable);
        let metadata = ArrowReaderMetadata::load(
            &open()?,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .map_err(|_| IndexError::Unreadable)?;
        let key_column = metadata
            .schema()
            .index_of(column)
            .map_err(|_| IndexError::KeyColumn(column.to_string()))?;
        let mask = ProjectionMask::roots(metadata.parquet_schema(), [key_column]);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(open()?, metadata.clone())
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|_| IndexError::Unreadable)?;
        let total = metadata.metadata().file_metadata().num_rows() as u64;
        if total > u64::from(u32::MAX) {
            return Err(IndexError::TooManyRows);
        }
        let mut entries = Vec::with_capacity(total as usize);
        let mut row = 0u64;
        let mut text = String::new();
        for batch in reader {
            let batch = batch.map_err(|_| IndexError::Unreadable)?;
            let keys = batch.column(0);
            for i in 0..keys.len() {
                if keys.is_valid(i) {
                    let hash = match key_bytes(keys.as_ref(), i, &mut text) {
                        Some(bytes) => key_hash(bytes),
                        None => return Err(IndexError::KeyColumn(column.to_string())),
                    };
                    entries.push((u64::from(hash) << 32) | row);
                }
                row += 1;
            }
        }
        entries.sort_unstable();
        let mut group_starts = Vec::with_capacity(metadata.metadata().num_row_groups() + 1);
        let mut start = 0u64;
        for g in metadata.metadata().row_groups() {
            group_starts.push(start);
            start += g.num_rows() as u64;
        }
        group_starts.push(start);
        Ok(Arc::new(KeyIndex {
            path: path.to_path_buf(),
            metadata,
            key_column,
            entries,
            group_starts,
            stamp,
        }))
    }

    /// The rows to read for `key`: its candidates (hash matches; the reader checks the key
    /// itself), or, when it has none, a decoy: the row of the key's neighbour in the index (a
    /// position in the file as random as a real key's), so that a missing key costs the read a
    /// present one does. Empty only for an empty file. One search either way.
    pub fn rows_to_read(&self, key: &str) -> Vec<u64> {
        let hash = u64::from(key_hash(key.as_bytes())) << 32;
        let first = self.entries.partition_point(|&e| e < hash);
        let candidates: Vec<u64> = self.entries[first..]
            .iter()
            .take_while(|&&e| e & !0xffff_ffff == hash)
            .map(|&e| e & 0xffff_ffff)
            .collect();
        if !candidates.is_empty() {
            return candidates;
        }
        let neighbour = self.entries.get(first).or_else(|| self.entries.last());
        neighbour.map(|e| e & 0xffff_ffff).into_iter().collect()
    }

    /// Whether the file is still the one indexed (same size and modification time).
    pub fn is_current(&self) -> bool {
        self.stamp.is_some() && FileStamp::of(&self.path) == self.stamp
    }

    /// Whether `file` is the dataset's current file and still the one indexed.
    pub fn is_current_for(&self, file: &Path) -> bool {
        self.path == file && self.is_current()
    }

    /// The name of the key column.
    pub fn key_name(&self) -> &str {
        self.metadata.schema().field(self.key_column).name()
    }

    /// Rows indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Heap bytes held by the index entries.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u64>()
    }
}

/// The bytes of key `i` of a string or integer column (integers as decimal text).
pub(super) fn key_bytes<'a>(
    keys: &'a dyn Array,
    i: usize,
    text: &'a mut String,
) -> Option<&'a [u8]> {
    use arrow::datatypes::DataType as D;
    match keys.data_type() {
        D::Utf8 => Some(keys.as_string::<i32>().value(i).as_bytes()),
        D::LargeUtf8 => Some(keys.as_string::<i64>().value(i).as_bytes()),
        D::Utf8View => Some(keys.as_string_view().value(i).as_bytes()),
        D::Int64 | D::Int32 | D::UInt32 | D::UInt64 | D::Int16 => {
            let cast = arrow::compute::cast(&keys.slice(i, 1), &D::Utf8).ok()?;
            text.clear();
            text.push_str(cast.as_string::<i32>().value(0));
            Some(text.as_bytes())
        }
        _ => None,
    }
}
