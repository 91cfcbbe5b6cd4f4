//! A fresh DataFusion session per request, whose catalog lists only the datasets the
//! `AccessPlan` allows for querying, each as a [`SecureTableProvider`] over its data file, or
//! over its pseudonymised extract when one is ready (see `extracts`).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;

use super::EngineError;
use super::extracts::{Extract, Extracts};
use super::provider::SecureTableProvider;
use crate::policy::{AccessPlan, Catalog, ColumnTreatment, DatasetPlan};
use crate::pseudonym::{KeyRing, PseudonymDomain};

/// Catalog name of the caller's view.
pub const CATALOG: &str = "passerelle";

/// Builds the caller's session with DataFusion's default runtime (tests, benchmarks).
/// `raw_schema` gives each dataset's Parquet schema.
pub fn secure_session(
    plan: &AccessPlan,
    catalog: &Catalog,
    data_dir: &Path,
    keys: &KeyRing,
    today: chrono::NaiveDate,
    raw_schema: &dyn Fn(&Path) -> Result<SchemaRef, EngineError>,
) -> Result<SessionContext, EngineError> {
    secure_session_in(
        Arc::new(RuntimeEnv::default()),
        plan,
        catalog,
        data_dir,
        keys,
        today,
        raw_schema,
        None,
    )
}

/// Builds the caller's session in `runtime` (the query's memory pool and spill policy), reading
/// pseudonymised extracts from `extracts` when they are ready.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site in the server, one in tests"
)]
pub fn secure_session_in(
    runtime: Arc<RuntimeEnv>,
    plan: &AccessPlan,
    catalog: &Catalog,
    data_dir: &Path,
    keys: &KeyRing,
    today: chrono::NaiveDate,
    raw_schema: &dyn Fn(&Path) -> Result<SchemaRef, EngineError>,
    extracts: Option<&Arc<Extracts>>,
) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, "public")
        .with_create_default_catalog_and_schema(true)
        // SECURITY: no information_schema, no URL tables: the catalog is the plan, nothing else.
        .with_information_schema(false)
        .set_bool("datafusion.sql_parser.enable_ident_normalization", true);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let domain = keys
        .domain_on(&plan.habilitation.pseudonymisation_domain, today)
        .map_err(|_| EngineError::Internal("pseudonymisation key unavailable".into()))?;
    let root = ctx
        .catalog(CATALOG)
        .ok_or_else(|| EngineError::Internal("default catalog missing".into()))?;
    for dataset in plan.datasets.iter().filter(|d| d.query) {
        let Some(entry) = catalog.dataset(&dataset.name) else {
            continue;
        };
        let Some((schema_name, table)) = dataset.name.split_once('.') else {
            continue;
        };
        if root.schema(schema_name).is_none() {
            root.register_schema(schema_name, Arc::new(MemorySchemaProvider::new()))
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        let path = data_dir.join(&entry.path);
        let extract = extracts.and_then(|x| with_extract(x, dataset, &path, &domain));
        let provider = match extract {
            Some((extract, plan)) => {
                SecureTableProvider::new(&plan, extract.path, extract.schema, Some(domain.clone()))
            }
            None => SecureTableProvider::new(
                dataset,
                path.clone(),
                raw_schema(&path)?,
                Some(domain.clone()),
            ),
        }
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        ctx.register_table(
            TableReference::partial(schema_name, table),
            Arc::new(provider),
        )
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    }
    Ok(ctx)
}

/// The extract `dataset`'s scan may read instead of its data file, and the plan to read it
/// with: the same plan, except that the columns the extract already holds as pseudonyms pass
/// as they are (row filter, masks, hidden columns and barrier unchanged).
fn with_extract(
    extracts: &Arc<Extracts>,
    dataset: &DatasetPlan,
    path: &Path,
    domain: &Arc<PseudonymDomain>,
) -> Option<(Extract, DatasetPlan)> {
    let pseudonymised: Vec<String> = dataset
        .visible_columns()
        .filter(|c| matches!(c.treatment, ColumnTreatment::Pseudonymised { .. }))
        .map(|c| c.name.clone())
        .collect();
    if pseudonymised.is_empty() {
        return None;
    }
    // SECURITY: a row filter that reads a pseudonymised column needs its raw values, which an
    // extract does not have: such a dataset is always read from its data file.
    if dataset
        .row_filters
        .iter()
        .any(|f| pseudonymised.iter().any(|c| f.expr.mentions(c)))
    {
        return None;
    }
    let extract = extracts.find(path, domain, &pseudonymised)?;
    let mut plan = dataset.clone();
    for column in &mut plan.columns {
        if pseudonymised.contains(&column.name) {
            // SECURITY: only because the extract holds this column's pseudonyms, made with
            // this very domain and key version (`Extracts::find` checked the probe).
            column.treatment = ColumnTreatment::Clear;
        }
    }
    Some((extract, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::filter::{FilterExpr, Literal};
    use crate::policy::{ColumnClass, ColumnPlan, Reason, RowFilter};
    use crate::pseudonym::MasterKey;
    use arrow::array::StringArray;
    use datafusion::arrow::datatypes::DataType;

    fn plan(row_filter: FilterExpr) -> DatasetPlan {
        let column = |name: &str, treatment: ColumnTreatment| ColumnPlan {
            name: name.to_string(),
            class: ColumnClass::Public,
            treatment,
            reasons: Vec::new(),
        };
        DatasetPlan {
            name: "sante.sejours".to_string(),
            title: String::new(),
            query: true,
            aggregate: false,
            lookup_key: None,
            row_filters: vec![RowFilter {
                source: String::new(),
                expr: row_filter,
                reason: Reason {
                    source: "default",
                    line: None,
                    text: String::new(),
                },
            }],
            columns: vec![
                column(
                    "nir",
                    ColumnTreatment::Pseudonymised {
                        domain: "projet-diabete".to_string(),
                    },
                ),
                column("region", ColumnTreatment::Clear),
            ],
            reasons: Vec::new(),
            refused: None,
        }
    }

    fn equals(column: &str, value: &str) -> FilterExpr {
        FilterExpr::Compare(
            Box::new(FilterExpr::Column(column.to_string())),
            crate::policy::filter::Comparison::Eq,
            Box::new(FilterExpr::Literal(Literal::String(value.to_string()))),
        )
    }

    /// A row filter on a pseudonymised column needs raw values: never an extract (none is even
    /// built); on another column the extract is built and then read, with the column in clear.
    #[test]
    fn a_row_filter_on_a_pseudonymised_column_keeps_the_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        // A Parquet file with `nir` and `region` columns.
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("nir", DataType::Utf8, true),
            datafusion::arrow::datatypes::Field::new("region", DataType::Utf8, true),
        ]));
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["1840375056123"])),
                Arc::new(StringArray::from(vec!["84"])),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(&source).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let extracts = Extracts::new(dir.path().join("extracts"));
        let domain = Arc::new(
            PseudonymDomain::derive(&MasterKey::from_bytes([3; 32]), "projet-diabete", 1).unwrap(),
        );
        let on_nir = plan(equals("nir", "1840375056123"));
        assert!(with_extract(&extracts, &on_nir, &source, &domain).is_none());
        extracts.wait_for_builds();
        assert!(with_extract(&extracts, &on_nir, &source, &domain).is_none());
        assert!(!dir.path().join("extracts").exists(), "nothing was built");

        let on_region = plan(equals("region", "84"));
        assert!(with_extract(&extracts, &on_region, &source, &domain).is_none());
        extracts.wait_for_builds();
        let (_, read_with) = with_extract(&extracts, &on_region, &source, &domain).unwrap();
        assert_eq!(read_with.columns[0].treatment, ColumnTreatment::Clear);
        assert_eq!(read_with.columns[1].treatment, ColumnTreatment::Clear);
        assert_eq!(
            read_with.row_filters.len(),
            1,
            "the row filter still applies"
        );
    }
}
