//! Writing one Parquet file of the demo hub: writer properties (the hub's layout, Snappy, row
//! groups, provenance metadata), a temporary file renamed once complete, the column helpers, and
//! the progress bar.
//!
//! It must never write outside the data folder it is given, never leave a half-written file
//! under a final name (an interrupted or failed write removes its temporary file), and never
//! touch the network. What the rows contain is the dataset modules' business.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;

/// Rows per data page of lookup datasets: a one-row read walks its page up to the row, for
/// each granted field (the writer checks the limit once per write batch, set to the same).
const LOOKUP_PAGE_ROWS: usize = 256;

/// Datasets the demo policy opens to lookups.
const LOOKUP_DATASETS: &[&str] = &["social.allocataires", "fiscal.revenus"];

use super::{GenerateError, GenerateOptions};

/// Rows per Arrow record batch.
pub(super) const CHUNK: usize = 65_536;
/// Rows per Parquet row group.
const ROW_GROUP: usize = 131_072;

const PROGRESS_TEMPLATE: &str = "{msg} [{bar:40}] {percent:>3}% {pos}/{len} rows, {eta}";

/// The progress bar of a run over `total` rows (hidden unless `enabled`).
pub(super) fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_message("synthetic datasets");
    match ProgressStyle::with_template(PROGRESS_TEMPLATE) {
        Ok(style) => bar.with_style(style.progress_chars("=> ")),
        Err(_) => bar,
    }
}

/// A Parquet file being written under a temporary name; removed unless committed.
pub(super) struct Output {
    tmp: PathBuf,
    target: PathBuf,
    writer: Option<ArrowWriter<BufWriter<File>>>,
}

impl Output {
    pub(super) fn create(
        data_dir: &Path,
        relative: &str,
        schema: &SchemaRef,
        opts: &GenerateOptions,
        dataset: &str,
    ) -> Result<Self, GenerateError> {
        // INVARIANT: `relative` is one of the four constant dataset paths, so every file lands
        // inside `data_dir`.
        let target = data_dir.join(relative);
        let folder = target.parent().unwrap_or(data_dir).to_path_buf();
        fs::create_dir_all(&folder).map_err(|source| GenerateError::Write {
            path: folder.clone(),
            source,
        })?;
        let file_name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("dataset.parquet");
        let tmp = folder.join(format!(".{file_name}.partial"));
        let file = File::create(&tmp).map_err(|source| GenerateError::Write {
            path: tmp.clone(),
            source,
        })?;
        let mut output = Self {
            tmp,
            target,
            writer: None,
        };
        let metadata = vec![
            KeyValue::new("passerelle.dataset".to_string(), dataset.to_string()),
            KeyValue::new("passerelle.synthetic".to_string(), "true".to_string()),
            KeyValue::new("passerelle.seed".to_string(), opts.seed.to_string()),
            KeyValue::new("passerelle.rows".to_string(), opts.rows.to_string()),
        ];
        let lookup = LOOKUP_DATASETS.contains(&dataset);
        let mut props = crate::parquet_layout::writer_properties()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP));
        if lookup {
            // Smaller pages still: a lookup decodes one page per column.
            props = props
                .set_data_page_row_count_limit(LOOKUP_PAGE_ROWS)
                .set_write_batch_size(LOOKUP_PAGE_ROWS);
        }
        let props = props
            // Datasets served by per-record lookups: no dictionary pages, which a one-row read
            // would otherwise decode whole (about 5× more lookups/s at 10 M rows, measured).
            .set_dictionary_enabled(!lookup)
            .set_created_by("passerelle demo".to_string())
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            schema.clone(),
            Some(props),
        )?;
        output.writer = Some(writer);
        Ok(output)
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), GenerateError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.write(batch)?;
        }
        Ok(())
    }

    /// Writes the footer, syncs the file and renames it to its final name.
    pub(super) fn commit(mut self) -> Result<(), GenerateError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let result = (|| {
            let file = writer
                .into_inner()?
                .into_inner()
                .map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&self.tmp, &self.target).map_err(|source| GenerateError::Write {
                path: self.target.clone(),
                source,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            drop(writer);
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

pub(super) fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

pub(super) fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// Appends `value` as exactly `width` decimal digits (zero-padded) to `out`.
pub(super) fn push_digits(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = value;
    for slot in digits.iter_mut().rev().take(width.min(20)) {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &d in digits.iter().skip(20 - width.min(20)) {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_template_is_valid() {
        assert!(ProgressStyle::with_template(PROGRESS_TEMPLATE).is_ok());
    }
}
