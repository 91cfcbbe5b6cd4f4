//! Engine: secure DataFusion sessions that apply an `AccessPlan`, and the query runner.
//!
//! Owns: a fresh session per request whose catalog lists only the datasets the plan allows
//! (`session`); secure table providers whose scan is raw Parquet → row filter → masks → a
//! barrier no user predicate can be pushed beneath (`provider`, `barrier`, `masks`, `filter`);
//! the read-only statement gate on the SQL text and on the logical plan (`statement`); limits
//! on SQL size, result rows and time.
//!
//! Must never: decide who may see what (it only applies an `AccessPlan` from `policy`), let a
//! user expression touch a row the row filter hides, or name a hidden column in an error.
//!
//! Not built yet (secure SQL engine issue, in progress): memory pool and spill limits, leak-proof
//! filter pushdown for Parquet pruning, the NDJSON/CSV/Arrow/Parquet encoders and compression,
//! client-disconnect cancellation, and the 100-query attack corpus.

mod barrier;
mod filter;
mod masks;
mod provider;
mod session;
mod statement;

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SessionContext;
use futures::StreamExt;

pub use provider::SecureTableProvider;
pub use session::secure_session;

/// Per-query limits.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub max_sql_bytes: usize,
    pub max_rows: usize,
    pub timeout: Duration,
    pub allow_recursive: bool,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_sql_bytes: 64 * 1024,
            max_rows: 100_000,
            timeout: Duration::from_secs(60),
            allow_recursive: false,
        }
    }
}

/// Why a query gave no answer. Messages name only what the caller can see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("the query took longer than {0} s")]
    Timeout(u64),
    #[error("the SQL text is longer than {0} bytes")]
    TooLong(usize),
    /// Logged with the request id; never shown.
    #[error("internal error")]
    Internal(String),
}

/// A query's answer, bounded.
#[derive(Debug)]
pub struct QueryOutcome {
    pub batches: Vec<RecordBatch>,
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    pub rows: usize,
    /// True when more rows existed than `max_rows` (the answer says so; never silently cut).
    pub truncated: bool,
}

/// Runs one read-only query in `ctx` under `limits`.
pub async fn run_query(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
) -> Result<QueryOutcome, EngineError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(EngineError::TooLong(limits.max_sql_bytes));
    }
    let statement = statement::parse_read_only(sql, limits.allow_recursive)?;
    let work = async {
        let state = ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(user_error)?;
        statement::check_plan(&plan, limits.allow_recursive)?;
        let frame = ctx.execute_logical_plan(plan).await.map_err(user_error)?;
        let schema = frame.schema().inner().clone();
        let mut stream = frame.execute_stream().await.map_err(user_error)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(user_error)?;
            let room = limits.max_rows - rows;
            if batch.num_rows() > room {
                batches.push(batch.slice(0, room));
                rows += room;
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok(QueryOutcome {
            batches,
            schema,
            rows,
            truncated,
        })
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(EngineError::Timeout(limits.timeout.as_secs())),
    }
}

/// DataFusion errors from the caller's query: planning and execution errors are the caller's
/// (they can only concern what the caller sees: hidden columns do not exist and user
/// expressions run above the barrier); everything else is internal.
fn user_error(e: datafusion::error::DataFusionError) -> EngineError {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::Plan(m) | E::Execution(m) => EngineError::Invalid(m.clone()),
        E::SQL(inner, _) => EngineError::Invalid(inner.to_string()),
        E::SchemaError(inner, _) => EngineError::Invalid(inner.to_string()),
        E::ArrowError(inner, _) => EngineError::Invalid(inner.to_string()),
        E::NotImplemented(m) => EngineError::Invalid(format!("not supported: {m}")),
        other => EngineError::Internal(other.to_string()),
    }
}
