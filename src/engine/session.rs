//! A fresh DataFusion session per request, whose catalog lists only the datasets the
//! `AccessPlan` allows for querying, each as a [`SecureTableProvider`].

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;

use super::EngineError;
use super::provider::SecureTableProvider;
use crate::policy::{AccessPlan, Catalog};
use crate::pseudonym::KeyRing;

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
    )
}

/// Builds the caller's session in `runtime` (the query's memory pool and spill policy).
pub fn secure_session_in(
    runtime: Arc<RuntimeEnv>,
    plan: &AccessPlan,
    catalog: &Catalog,
    data_dir: &Path,
    keys: &KeyRing,
    today: chrono::NaiveDate,
    raw_schema: &dyn Fn(&Path) -> Result<SchemaRef, EngineError>,
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
        let provider = SecureTableProvider::new(
            dataset,
            path.clone(),
            raw_schema(&path)?,
            Some(domain.clone()),
        )
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        ctx.register_table(
            TableReference::partial(schema_name, table),
            Arc::new(provider),
        )
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    }
    Ok(ctx)
}
