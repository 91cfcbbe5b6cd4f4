//! Lookup: per-record "tell us once" reads for administrations.
//!
//! Owns: the key indexes (`index`: a lookup never scans), reading one indexed row (`read`),
//! traceability parameters and key validation (`params`), and applying the `AccessPlan`'s
//! field scopes, treatments and row filters to the record (`answer_record`).
//!
//! Must never: run arbitrary SQL, enumerate (no wildcard, range, prefix or empty key), or
//! return a field that the habilitation does not grant. It decides nothing: the plan says
//! which dataset, which key column and which fields.
//!
//! Rate limits and the HTTP shape live in `server::lookup`; the audit record is built there
//! from what this module returns.

pub mod index;
pub mod params;
pub mod read;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

pub use index::{IndexError, KeyIndex};
pub use params::{ParamError, Traceability, TraceabilityParams, check_key, is_siret};

use crate::policy::{Catalog, CatalogFiles, ColumnTreatment, DatasetPlan};
use crate::pseudonym::PseudonymDomain;

/// Key indexes of the hub, one per (dataset, key column) that lookups use.
///
/// The key columns that the policy names in its `lookup` rules are indexed before the server
/// answers (`build`); a key column that a reloaded policy names later is indexed on its first
/// lookup (`index`), and so is a data file replaced since it was indexed. Only a column
/// declared `unique` in the catalog can be a key: another column gets no index, so its
/// lookups are refused (fail closed).
#[derive(Debug)]
pub struct Lookups {
    /// Where each dataset's current file is (the data folder, or local copies of the
    /// bucket's objects).
    files: Arc<dyn CatalogFiles>,
    indexes: Mutex<HashMap<(String, String), Slot>>,
}

/// One (dataset, column) index, built once by whoever needs it first.
type Slot = Arc<OnceLock<Result<Arc<KeyIndex>, IndexError>>>;

/// What building the indexes cost (logged at start, documented in benchmarks).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexReport {
    pub dataset: String,
    pub column: String,
    pub rows: usize,
    pub memory_bytes: usize,
    pub build_ms: u128,
}

impl Lookups {
    /// Indexes, now, every (dataset, key column) of `keys` (the policy's:
    /// `PolicySet::lookup_key_columns`).
    pub fn build(
        catalog: &Catalog,
        keys: &[(String, String)],
        files: Arc<dyn CatalogFiles>,
    ) -> Result<(Lookups, Vec<IndexReport>), IndexError> {
        let lookups = Lookups {
            files,
            indexes: Mutex::default(),
        };
        let mut reports = Vec::new();
        for (dataset, column) in keys {
            let started = std::time::Instant::now();
            let index = lookups.index(catalog, dataset, column)?;
            reports.push(IndexReport {
                dataset: dataset.clone(),
                column: column.clone(),
                rows: index.len(),
                memory_bytes: index.memory_bytes(),
                build_ms: started.elapsed().as_millis(),
            });
        }
        Ok((lookups, reports))
    }

    /// True when the index of `dataset.column` is built and current: `index` will then
    /// return at once, without reading the data file.
    pub fn is_built(&self, catalog: &Catalog, dataset: &str, column: &str) -> bool {
        let Some(file) = catalog
            .key_dataset(dataset, column)
            .and_then(|entry| self.files.known_local_file(&entry.path))
        else {
            return false;
        };
        let indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        indexes
            .get(&(dataset.to_string(), column.to_string()))
            .and_then(|slot| slot.get().cloned())
            .is_some_and(|built| built.is_ok_and(|index| index.is_current_for(&file)))
    }

    /// The index of `dataset.column`, built on first use (blocking: call it off the async
    /// runtime). `NoIndex` when the catalog does not declare the column unique.
    pub fn index(
        &self,
        catalog: &Catalog,
        dataset: &str,
        column: &str,
    ) -> Result<Arc<KeyIndex>, IndexError> {
        let Some(entry) = catalog.key_dataset(dataset, column) else {
            return Err(IndexError::NotUnique);
        };
        // The dataset's current file: on a bucket, the local copy of the object's current
        // version (another version, another file).
        let file = self.files.local_file(&entry.path).map_err(|e| {
            tracing::error!(dataset, column, error = %e, "lookup data file unavailable");
            IndexError::Unreadable
        })?;
        let slot = {
            let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
            let slot = indexes
                .entry((dataset.to_string(), column.to_string()))
                .or_default();
            // SECURITY: a replaced data file is never read through the old file's index (its
            // offsets would point at other rows): a fresh slot rebuilds it.
            // A failed build is tried again by the next lookup rather than kept.
            let stale = match slot.get() {
                Some(Ok(index)) => !index.is_current_for(&file),
                Some(Err(_)) => true,
                None => false,
            };
            if stale {
                *slot = Slot::default();
            }
            slot.clone()
        };
        // One build per column, whoever asks first; the others wait for it.
        slot.get_or_init(|| {
            let started = std::time::Instant::now();
            let index = KeyIndex::build(&file, column);
            match &index {
                Ok(index) => tracing::info!(
                    dataset,
                    column,
                    rows = index.len(),
                    memory_bytes = index.memory_bytes(),
                    build_ms = started.elapsed().as_millis() as u64,
                    "lookup index built"
                ),
                Err(e) => tracing::error!(dataset, column, error = %e, "lookup index failed"),
            }
            index
        })
        .clone()
    }
}

/// Why a lookup gave no record.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no record for this key")]
    NotFound,
    /// No index for the plan's key column (a catalog without `unique` on it): fail closed.
    #[error("lookups on this dataset are not available")]
    NoIndex,
    #[error("internal error")]
    Internal(String),
}

/// The granted fields of the record with key `key` in `plan`'s dataset, treatments applied.
/// Fields the plan hides are absent (not null). Several rows with the key (a non-unique key
/// column) are refused rather than merged.
pub fn answer_record(
    lookups: &Lookups,
    catalog: &Catalog,
    plan: &DatasetPlan,
    key: &str,
    domain: Option<&Arc<PseudonymDomain>>,
) -> Result<Map<String, Value>, LookupError> {
    let key_column = plan.lookup_key().ok_or(LookupError::NoIndex)?;
    let index = match lookups.index(catalog, plan.name(), key_column) {
        Ok(index) => index,
        Err(IndexError::NotUnique) => return Err(LookupError::NoIndex),
        Err(e) => return Err(LookupError::Internal(e.to_string())),
    };
    // Only the granted fields are decoded; row filters may need any column.
    let visible: Vec<&str> = plan.visible_columns().map(|c| c.name()).collect();
    let columns = if plan.row_filters().is_empty() {
        read::Columns::Only(&visible)
    } else {
        read::Columns::All
    };
    let probe =
        read::probe(&index, key, columns).map_err(|e| LookupError::Internal(e.to_string()))?;
    // SECURITY (timing): the row filters are evaluated on the row read, the key's or a decoy:
    // a key the caller's filter hides and a key that does not exist take the same path (one
    // row read, one filter evaluation) and both end as "not found".
    let passes = match probe.read() {
        Some(row) if !plan.row_filters().is_empty() => passes_row_filters(plan, row)?,
        _ => true,
    };
    let batch = match probe.matches.as_slice() {
        [] => return Err(LookupError::NotFound),
        [one] => one,
        _ => {
            return Err(LookupError::Internal(
                "several records share a unique key".into(),
            ));
        }
    };
    // SECURITY: the plan's row filters apply to lookups too; a filtered-out record is "not found".
    if !passes {
        return Err(LookupError::NotFound);
    }
    let mut out = Map::new();
    for column in plan.visible_columns() {
        let Some(raw) = batch.column_by_name(column.name()) else {
            return Err(LookupError::Internal("a granted column is missing".into()));
        };
        // SECURITY: each granted field goes through its treatment, as in SQL answers.
        let treated = treat(column.treatment(), domain, raw)?;
        let value = single_json_value(column.name(), treated)?;
        out.insert(column.name().to_string(), value);
    }
    Ok(out)
}

fn treat(
    treatment: &ColumnTreatment,
    domain: Option<&Arc<PseudonymDomain>>,
    raw: &ArrayRef,
) -> Result<ArrayRef, LookupError> {
    crate::access::apply_treatment(treatment, domain, raw)
        .map_err(|e| LookupError::Internal(e.to_string()))
}

fn single_json_value(name: &str, array: ArrayRef) -> Result<Value, LookupError> {
    if let Some(value) = plain_json_value(&array) {
        return Ok(value);
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new(name, array.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(schema, vec![array])
        .map_err(|e| LookupError::Internal(e.to_string()))?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    writer
        .write(&batch)
        .and_then(|_| writer.finish())
        .map_err(|e| LookupError::Internal(e.to_string()))?;
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(&writer.into_inner())
        .map_err(|e| LookupError::Internal(e.to_string()))?;
    rows.into_iter()
        .next()
        .and_then(|mut r| r.remove(name))
        .ok_or_else(|| LookupError::Internal("empty record".into()))
}

/// The JSON of the first value of a plain column (what the Arrow JSON writer would write),
/// without building a batch; `None` for other types (the writer handles them).
fn plain_json_value(array: &ArrayRef) -> Option<Value> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType as D, Float64Type, Int32Type, Int64Type};
    if array.is_empty() {
        return None;
    }
    if array.is_null(0) {
        return Some(Value::Null);
    }
    Some(match array.data_type() {
        D::Utf8 => Value::from(array.as_string::<i32>().value(0)),
        D::LargeUtf8 => Value::from(array.as_string::<i64>().value(0)),
        D::Utf8View => Value::from(array.as_string_view().value(0)),
        D::Int32 => Value::from(array.as_primitive::<Int32Type>().value(0)),
        D::Int64 => Value::from(array.as_primitive::<Int64Type>().value(0)),
        D::Boolean => Value::from(array.as_boolean().value(0)),
        // Non-finite numbers have no JSON form: left to the writer.
        D::Float64 => serde_json::Number::from_f64(array.as_primitive::<Float64Type>().value(0))
            .map(Value::Number)?,
        _ => return None,
    })
}

fn passes_row_filters(plan: &DatasetPlan, batch: &RecordBatch) -> Result<bool, LookupError> {
    tally(|w| w.filter_evaluations += 1);
    crate::access::row_passes_filters(plan, batch).map_err(|e| LookupError::Internal(e.to_string()))
}

/// The work lookups did on the calling thread: rows read from data files and row-filter
/// evaluations. Tests compare the path two keys take (a lookup runs on one thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    pub rows_read: u64,
    pub filter_evaluations: u64,
}

thread_local! {
    static WORK: std::cell::Cell<Work> = const { std::cell::Cell::new(Work { rows_read: 0, filter_evaluations: 0 }) };
}

/// What lookups did on this thread so far (see [`Work`]).
pub fn work_on_this_thread() -> Work {
    WORK.with(std::cell::Cell::get)
}

pub(crate) fn count_row_read() {
    tally(|w| w.rows_read += 1);
}

fn tally(count: impl FnOnce(&mut Work)) {
    WORK.with(|cell| {
        let mut work = cell.get();
        count(&mut work);
        cell.set(work);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    };

    /// The direct path writes what the Arrow JSON writer writes.
    #[test]
    fn plain_values_are_written_like_the_arrow_json_writer() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("Zoé \"2A\"")])),
            Arc::new(StringArray::from(vec![None::<&str>])),
            Arc::new(Int32Array::from(vec![-42])),
            Arc::new(Int64Array::from(vec![i64::MAX])),
            Arc::new(BooleanArray::from(vec![true])),
            Arc::new(Float64Array::from(vec![1234.0])),
            Arc::new(Float64Array::from(vec![0.1 + 0.2])),
            Arc::new(Date32Array::from(vec![19_000])),
        ];
        for column in columns {
            let direct = single_json_value("x", column.clone()).unwrap();
            let schema = Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("x", column.data_type().clone(), true),
            ]));
            let batch = RecordBatch::try_new(schema, vec![column]).unwrap();
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(Vec::new());
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
            let rows: Vec<Map<String, Value>> =
                serde_json::from_slice(&writer.into_inner()).unwrap();
            assert_eq!(direct, rows[0]["x"]);
        }
    }
}
