//! `audit.events`: the audit trail as a table that only operators' sessions list.
//!
//! A distinct provider type, so that the plan gate admits it by type (like the secure
//! providers) and nothing else: a researcher's session never registers it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, MemorySchemaProvider, Session};
use datafusion::common::{Result, TableReference};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::EngineError;
use super::session::CATALOG;

/// The audit events, in memory for one operator query.
#[derive(Debug)]
pub struct AuditEventsTable(MemTable);

#[async_trait]
impl TableProvider for AuditEventsTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// Registers `audit.events` (and nothing else) in `ctx`, a session of
/// [`super::session::new_session`]: the operators' session, under the same limits as any
/// query.
pub fn audit_session(
    ctx: SessionContext,
    events: RecordBatch,
) -> Result<SessionContext, EngineError> {
    let internal = |e: datafusion::error::DataFusionError| EngineError::Internal(e.to_string());
    let root = ctx
        .catalog(CATALOG)
        .ok_or_else(|| EngineError::Internal("default catalog missing".into()))?;
    if root.schema("audit").is_none() {
        root.register_schema("audit", Arc::new(MemorySchemaProvider::new()))
            .map_err(internal)?;
    }
    let table = MemTable::try_new(events.schema(), vec![vec![events]]).map_err(internal)?;
    ctx.register_table(
        TableReference::partial("audit", "events"),
        Arc::new(AuditEventsTable(table)),
    )
    .map_err(internal)?;
    Ok(ctx)
}
