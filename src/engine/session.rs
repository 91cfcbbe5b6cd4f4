//! A fresh DataFusion session per request, whose catalog lists only the datasets the
//! `AccessPlan` allows for querying, each as a [`SecureTableProvider`] over its data file, or
//! over its pseudonymised extract when one is ready (see `extracts`).
//!
//! Every session of the hub (researchers' and operators' alike) starts from [`new_session`]:
//! the reviewed, bounded functions only (no table function, no lambda), the query's memory
//! pool and value cap within reach of every function call, and a planning deadline between
//! every two optimizer rules.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;

use super::budget::PlanningClock;
use super::extracts::Extracts;
use super::files::DataFiles;
use super::functions::{CallBudget, FunctionSet};
use super::guard::GuardWideRows;
use super::provider::SecureTableProvider;
use super::{EngineError, QueryLimits};
use crate::policy::{AccessPlan, Catalog, ColumnTreatment, DatasetKind, DatasetPlan};
use crate::pseudonym::KeyRing;

/// Catalog name of the caller's view.
pub const CATALOG: &str = "passerelle";

/// A session of the hub in `runtime` (the query's memory pool and spill policy): catalog
/// `passerelle` (empty), no `information_schema`, the reviewed functions only, each bounded by
/// `limits.max_value_bytes` and the pool, and the planning deadline rules.
pub fn new_session(runtime: Arc<RuntimeEnv>, limits: &QueryLimits) -> SessionContext {
    let clock = Arc::new(PlanningClock::default());
    let budget = CallBudget {
        pool: Some(runtime.memory_pool.clone()),
        max_value_bytes: limits.max_value_bytes,
    };
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, "public")
        .with_create_default_catalog_and_schema(true)
        // SECURITY: no information_schema, no URL tables: the catalog is the plan, nothing else.
        .with_information_schema(false)
        .set_bool("datafusion.sql_parser.enable_ident_normalization", true)
        // SECURITY: a failing rule (the planning deadline) fails the query, it is not skipped.
        .set_bool("datafusion.optimizer.skip_failed_rules", false)
        // SECURITY: no Bloom filter is read (the secure scans also force it off:
        // `provider`). Pruning a row group because a caller's value is
        // not in its filter would time a value hidden by the row filter (its row group is
        // read) apart from one that does not exist (nothing is read): a membership test per
        // value, finer than the row-group ranges of min/max statistics. (The hub's own files
        // have no filter to read: reading them cost every query its time.)
        .set_bool("datafusion.execution.parquet.bloom_filter_on_read", false)
        .with_option_extension(budget)
        .with_extension(clock.clone());
    let functions = FunctionSet::get();
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        // The SQL planner's expression planners only: DataFusion's default functions would be
        // built per session and thrown away (the reviewed ones replace them below), and its
        // file formats and table factories serve statements the gate refuses (`CREATE
        // EXTERNAL TABLE`, `COPY`).
        .with_expr_planners(SessionStateDefaults::default_expr_planners())
        // SECURITY: only the reviewed functions exist in a session; no table function (files,
        // series), no lambda.
        .with_scalar_functions(functions.scalars())
        .with_aggregate_functions(functions.aggregates())
        .with_window_functions(functions.windows())
        .with_higher_order_functions(Vec::new())
        .with_table_functions(std::collections::HashMap::new())
        .with_optimizer_rules(clock.logical_rules(datafusion::optimizer::Optimizer::new().rules))
        .with_physical_optimizer_rules({
            let mut rules = clock.physical_rules(
                datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules,
            );
            // SECURITY (availability): last, once the plan is final: no row wider than the
            // bound goes into a join or a window (see `guard`).
            rules.push(Arc::new(GuardWideRows::new(
                limits.memory_bytes,
                SessionConfig::new().batch_size(),
            )));
            rules
        })
        .build();
    SessionContext::new_with_state(state)
}

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
        new_session(Arc::new(RuntimeEnv::default()), &QueryLimits::default()),
        plan,
        catalog,
        &DataFiles {
            dir: data_dir,
            tables: &crate::policy::tables::default_tables_dir(data_dir),
            schema: raw_schema,
            pins: None,
        },
        keys,
        today,
        None,
        None,
    )
}

/// Registers the caller's datasets in `ctx` (from [`new_session`]), reading pseudonymised
/// extracts from `extracts` when they are ready, and the tables `tables` says are servable.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, `Engine::query` (entry.rs); `secure_session` for tests and benchmarks"
)]
pub(crate) fn secure_session_in(
    ctx: SessionContext,
    plan: &AccessPlan,
    catalog: &Catalog,
    files: &DataFiles<'_>,
    keys: &KeyRing,
    today: chrono::NaiveDate,
    extracts: Option<&Arc<Extracts>>,
    tables: Option<&dyn Fn(&str) -> bool>,
) -> Result<SessionContext, EngineError> {
    let domain = keys
        .domain_on(&plan.habilitation().pseudonymisation_domain, today)
        .map_err(|_| EngineError::Internal("pseudonymisation key unavailable".into()))?;
    let root = ctx
        .catalog(CATALOG)
        .ok_or_else(|| EngineError::Internal("default catalog missing".into()))?;
    for dataset in plan.datasets().filter(|d| d.query_allowed()) {
        let Some(entry) = catalog.dataset(dataset.name()) else {
            continue;
        };
        // SECURITY: a table of the statistical secret is registered only while its current,
        // audited version is published (`tables` says which); without that, never.
        if entry.kind == DatasetKind::Table
            && !tables.is_some_and(|servable| servable(entry.name()))
        {
            continue;
        }
        let Some((schema_name, table)) = dataset.name().split_once('.') else {
            continue;
        };
        if root.schema(schema_name).is_none() {
            root.register_schema(schema_name, Arc::new(MemorySchemaProvider::new()))
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        let (location, raw_schema) = files.open(&entry.path, entry.kind)?;
        let mut provider =
            SecureTableProvider::at(dataset, location, raw_schema, Some(domain.clone()))
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Some(extracts) = extracts
            && let Some(columns) = extract_columns(dataset)
        {
            provider = provider.with_extracts(extracts.clone(), columns);
        }
        ctx.register_table(
            TableReference::partial(schema_name, table),
            Arc::new(provider),
        )
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    }
    Ok(ctx)
}

/// The columns an extract of `dataset` would hold as pseudonyms, when an extract can serve
/// this plan: it has pseudonymised columns and no row filter reads one of them.
fn extract_columns(dataset: &DatasetPlan) -> Option<Vec<String>> {
    let pseudonymised: Vec<String> = dataset
        .visible_columns()
        .filter(|c| matches!(c.treatment(), ColumnTreatment::Pseudonymised { .. }))
        .map(|c| c.name().to_string())
        .collect();
    if pseudonymised.is_empty() {
        return None;
    }
    // SECURITY: a row filter that reads a pseudonymised column needs its raw values, which an
    // extract does not have: such a dataset is always read from its data file.
    if dataset
        .row_filters()
        .iter()
        .any(|f| pseudonymised.iter().any(|c| f.expr().mentions(c)))
    {
        return None;
    }
    Some(pseudonymised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::filter::{FilterExpr, Literal};
    use crate::policy::{ColumnClass, ColumnPlan};

    fn plan(row_filter: FilterExpr, nir: ColumnTreatment) -> DatasetPlan {
        DatasetPlan::new(
            "sante.sejours",
            vec![
                ColumnPlan::new("nir", ColumnClass::Public, nir),
                ColumnPlan::new("region", ColumnClass::Public, ColumnTreatment::Clear),
            ],
        )
        .with_row_filter(row_filter)
    }

    fn pseudonymised() -> ColumnTreatment {
        ColumnTreatment::Pseudonymised {
            domain: "projet-diabete".to_string(),
        }
    }

    fn equals(column: &str, value: &str) -> FilterExpr {
        FilterExpr::Compare(
            Box::new(FilterExpr::Column(column.to_string())),
            crate::policy::filter::Comparison::Eq,
            Box::new(FilterExpr::Literal(Literal::String(value.to_string()))),
        )
    }

    /// No session of the hub reads Parquet Bloom filters (a per-value timing oracle on rows
    /// the row filter hides).
    #[test]
    fn sessions_read_no_bloom_filter() {
        let ctx = new_session(Arc::new(RuntimeEnv::default()), &QueryLimits::default());
        let options = ctx.state().config().options().clone();
        assert!(!options.execution.parquet.bloom_filter_on_read);
    }

    /// A row filter on a pseudonymised column needs raw values: never an extract; on another
    /// column, an extract can serve the plan (its row filter still applies to the extract).
    #[test]
    fn a_row_filter_on_a_pseudonymised_column_keeps_the_data_file() {
        assert_eq!(
            extract_columns(&plan(equals("nir", "1840375056123"), pseudonymised())),
            None
        );
        assert_eq!(
            extract_columns(&plan(equals("region", "84"), pseudonymised())),
            Some(vec!["nir".to_string()])
        );
        let clear = plan(equals("region", "84"), ColumnTreatment::Clear);
        assert_eq!(extract_columns(&clear), None, "nothing to precompute");
    }
}
