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
use std::path::Path;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

pub use index::{IndexError, KeyIndex};
pub use params::{ParamError, Traceability, TraceabilityParams, check_key, is_siret};

use crate::policy::{Catalog, ColumnTreatment, DatasetPlan};
use crate::pseudonym::PseudonymDomain;

/// Key indexes of the hub: one per dataset column declared `unique` in the catalog.
#[derive(Debug, Default)]
pub struct Lookups {
    indexes: HashMap<(String, String), Arc<KeyIndex>>,
}

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
    /// Indexes every `unique` column of every dataset of `catalog`.
    pub fn build(
        catalog: &Catalog,
        data_dir: &Path,
    ) -> Result<(Lookups, Vec<IndexReport>), IndexError> {
        let mut indexes = HashMap::new();
        let mut reports = Vec::new();
        for name in catalog.names() {
            let Some(dataset) = catalog.dataset(&name) else {
                continue;
            };
            for field in dataset.fields.iter().filter(|f| f.constraints.unique) {
                let started = std::time::Instant::now();
                let index = KeyIndex::build(&data_dir.join(&dataset.path), field.name.get_ref())?;
                reports.push(IndexReport {
                    dataset: name.clone(),
                    column: field.name.get_ref().clone(),
                    rows: index.len(),
                    memory_bytes: index.memory_bytes(),
                    build_ms: started.elapsed().as_millis(),
                });
                indexes.insert((name.clone(), field.name.get_ref().clone()), index);
            }
        }
        Ok((Lookups { indexes }, reports))
    }

    pub fn index(&self, dataset: &str, column: &str) -> Option<&Arc<KeyIndex>> {
        self.indexes.get(&(dataset.to_string(), column.to_string()))
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
    plan: &DatasetPlan,
    key: &str,
    domain: Option<&Arc<PseudonymDomain>>,
) -> Result<Map<String, Value>, LookupError> {
    let key_column = plan.lookup_key.as_deref().ok_or(LookupError::NoIndex)?;
    let index = lookups
        .index(&plan.name, key_column)
        .ok_or(LookupError::NoIndex)?;
    let rows = read::rows_with_key(index, key).map_err(|e| LookupError::Internal(e.to_string()))?;
    let batch = match rows.as_slice() {
        [] => return Err(LookupError::NotFound),
        [one] => one,
        _ => {
            return Err(LookupError::Internal(
                "several records share a unique key".into(),
            ));
        }
    };
    // SECURITY: the plan's row filters apply to lookups too; a filtered-out record is "not found".
    if !plan.row_filters.is_empty() && !passes_row_filters(plan, batch)? {
        return Err(LookupError::NotFound);
    }
    let mut out = Map::new();
    for column in plan.visible_columns() {
        let Some(raw) = batch.column_by_name(&column.name) else {
            return Err(LookupError::Internal("a granted column is missing".into()));
        };
        // SECURITY: each granted field goes through its treatment, as in SQL answers.
        let treated = treat(&column.treatment, domain, raw)?;
        let value = single_json_value(&column.name, treated)?;
        out.insert(column.name.clone(), value);
    }
    Ok(out)
}

fn treat(
    treatment: &ColumnTreatment,
    domain: Option<&Arc<PseudonymDomain>>,
    raw: &ArrayRef,
) -> Result<ArrayRef, LookupError> {
    crate::engine::apply_treatment(treatment, domain, raw)
        .map_err(|e| LookupError::Internal(e.to_string()))
}

fn single_json_value(name: &str, array: ArrayRef) -> Result<Value, LookupError> {
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

fn passes_row_filters(plan: &DatasetPlan, batch: &RecordBatch) -> Result<bool, LookupError> {
    crate::engine::row_passes_filters(plan, batch).map_err(|e| LookupError::Internal(e.to_string()))
}
