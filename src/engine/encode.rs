//! Answer encoders: JSON, NDJSON, CSV, Arrow IPC stream and Parquet (the transport chooses the
//! format; encoders never see a header).
//!
//! Owns: the answer formats ([`Format`]) and one [`Encoder`] per answer, which turns record
//! batches into bytes as they come (bounded memory: each call returns what it produced; Parquet
//! flushes a row group every 64 Ki rows or 16 MiB).
//!
//! Must never: see anything but the caller's view (it encodes batches the secure engine already
//! produced), or buffer a whole answer.
//!
//! The JSON shape: `{"habilitation", "policy_version", "columns": [{"name", "type"}], "rows":
//! [{column: value}], "row_count", "truncated"}`; `row_count` and `truncated` come last, so a
//! streamed answer states at its end whether it was cut. NULLs are written as `null`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::json;

/// An answer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    NdJson,
    Csv,
    ArrowIpc,
    Parquet,
}

impl Format {
    /// True when the format can state truncation in its own bytes (at its end).
    pub fn marks_truncation(self) -> bool {
        matches!(self, Format::Json | Format::Parquet)
    }
}

/// What the JSON answer says about itself besides its rows.
#[derive(Debug, Clone)]
pub struct AnswerInfo {
    pub habilitation: String,
    pub policy_version: String,
}

/// A `Write` whose bytes are taken out after each batch.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Bytes {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Bytes::from(std::mem::take(&mut *inner))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Writer {
    Json { rows_written: bool },
    NdJson,
    Csv(Box<arrow::csv::Writer<SharedBuf>>),
    Ipc(Box<arrow::ipc::writer::StreamWriter<SharedBuf>>),
    Parquet(Box<ArrowWriter<SharedBuf>>),
}

/// Parquet row groups: small enough to keep the encoder's memory bounded.
const PARQUET_ROW_GROUP_ROWS: usize = 64 * 1024;
const PARQUET_FLUSH_BYTES: usize = 16 * 1024 * 1024;

/// Encodes one answer, batch by batch.
pub struct Encoder {
    writer: Writer,
    buf: SharedBuf,
}

impl Encoder {
    /// Starts an answer of `schema` in `format`; the first bytes come with the first `write`.
    pub fn new(format: Format, schema: &SchemaRef, info: &AnswerInfo) -> Result<Self, ArrowError> {
        let buf = SharedBuf::default();
        let writer = match format {
            Format::Json => {
                let columns: Vec<_> = schema
                    .fields()
                    .iter()
                    .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                let head = json!({
                    "habilitation": info.habilitation,
                    "policy_version": info.policy_version,
                    "columns": columns,
                })
                .to_string();
                // `{…, "columns": […]` then `, "rows": [` — the object stays open for the rows.
                let open = head.strip_suffix('}').unwrap_or(&head);
                buf.clone().write_all(open.as_bytes())?;
                buf.clone().write_all(b",\"rows\":[")?;
                Writer::Json {
                    rows_written: false,
                }
            }
            Format::NdJson => Writer::NdJson,
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(buf.clone());
                // The header goes first, so an answer without rows still has it.
                w.write(&RecordBatch::new_empty(schema.clone()))?;
                Writer::Csv(Box::new(w))
            }
            Format::ArrowIpc => Writer::Ipc(Box::new(arrow::ipc::writer::StreamWriter::try_new(
                buf.clone(),
                schema,
            )?)),
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                    .build();
                Writer::Parquet(Box::new(
                    ArrowWriter::try_new(buf.clone(), schema.clone(), Some(props))
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
                ))
            }
        };
        Ok(Self { writer, buf })
    }

    /// Encodes `batch`; returns the bytes ready to send (possibly empty).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        match &mut self.writer {
            Writer::Json { rows_written } => {
                if batch.num_rows() > 0 {
                    let lines = json_lines(batch)?;
                    // One object per line (JSON strings never hold a raw newline): join them
                    // with commas inside the `rows` array.
                    let body = lines.strip_suffix(b"\n").unwrap_or(&lines);
                    let mut out = Vec::with_capacity(body.len() + 1);
                    if *rows_written {
                        out.push(b',');
                    }
                    out.extend(body.iter().map(|&b| if b == b'\n' { b',' } else { b }));
                    *rows_written = true;
                    self.buf.clone().write_all(&out)?;
                }
            }
            Writer::NdJson => {
                let lines = json_lines(batch)?;
                self.buf.clone().write_all(&lines)?;
            }
            Writer::Csv(w) => w.write(batch)?,
            Writer::Ipc(w) => w.write(batch)?,
            Writer::Parquet(w) => {
                w.write(batch).map_err(parquet_error)?;
                if w.in_progress_size() >= PARQUET_FLUSH_BYTES {
                    w.flush().map_err(parquet_error)?;
                }
            }
        }
        Ok(self.buf.take())
    }

    /// Ends the answer; `rows` and `truncated` go into the formats that can carry them.
    pub fn finish(self, rows: usize, truncated: bool) -> Result<Bytes, ArrowError> {
        match self.writer {
            Writer::Json { .. } => {
                let tail = format!("],\"row_count\":{rows},\"truncated\":{truncated}}}");
                self.buf.clone().write_all(tail.as_bytes())?;
            }
            Writer::NdJson => {}
            Writer::Csv(_) => {}
            Writer::Ipc(mut w) => w.finish()?,
            Writer::Parquet(mut w) => {
                w.append_key_value_metadata(KeyValue::new(
                    "passerelle.truncated".to_string(),
                    truncated.to_string(),
                ));
                w.append_key_value_metadata(KeyValue::new(
                    "passerelle.row_count".to_string(),
                    rows.to_string(),
                ));
                w.close().map_err(parquet_error)?;
            }
        }
        Ok(self.buf.take())
    }
}

fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner())
}

fn parquet_error(e: parquet::errors::ParquetError) -> ArrowError {
    ArrowError::ExternalError(Box::new(e))
}
