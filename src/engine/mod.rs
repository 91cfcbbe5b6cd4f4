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
//! Leak-proof user predicates on clear columns (comparisons with literals, `IN` lists,
//! `IS NULL`) reach the raw Parquet scan for pruning only (`pushdown`); they are evaluated
//! again above the barrier. Answers stream through the encoders (`encode`, `answer`).
//!
//! Not built yet: EXPLAIN (refused: no safe rendering yet).

mod answer;
mod audit_table;
mod barrier;
mod encode;
mod extracts;
mod filter;
mod limits;
mod masks;
mod provider;
mod pushdown;
mod session;
mod statement;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SessionContext;
use futures::StreamExt;

pub use answer::{Answer, AnswerHead, Chunk};
pub use audit_table::{AuditEventsTable, audit_session};
pub use encode::AnswerInfo;
pub use encode::{Format, negotiate};
pub use extracts::{Extract, Extracts};
pub use filter::row_passes_filters;
pub use limits::{EngineRuntime, QueryLimits};
pub use masks::apply_treatment;
pub use provider::SecureTableProvider;
pub use session::{secure_session, secure_session_in};

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
    /// The query needs more memory (or spill space) than one query may use.
    #[error(
        "the query needs more memory than the hub allows one query ({0} MiB); add filters or aggregate more"
    )]
    ResourcesExhausted(usize),
    /// Logged with the request id; never shown.
    #[error("internal error")]
    Internal(String),
}

/// A planned, checked query whose batches are ready to be pulled.
pub struct RunningQuery {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// Datasets the query reads (`schema.table`), for the audit.
    pub datasets: Vec<String>,
}

/// Parses, gates, plans and starts one read-only query in `ctx` under `limits`. Time limits
/// are the caller's (`answer` applies them to the whole query, streaming included).
pub async fn start_query(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
) -> Result<RunningQuery, EngineError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(EngineError::TooLong(limits.max_sql_bytes));
    }
    let statement =
        statement::parse_read_only(sql, limits.max_sql_nesting, limits.allow_recursive)?;
    let state = ctx.state();
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| user_error(e, limits))?;
    // SECURITY: the plan-level allow-list, whatever front end produced the plan.
    let datasets = statement::check_plan(&plan, limits.allow_recursive)?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| user_error(e, limits))?;
    let schema = frame.schema().inner().clone();
    let stream = frame
        .execute_stream()
        .await
        .map_err(|e| user_error(e, limits))?;
    Ok(RunningQuery {
        schema,
        stream,
        datasets,
    })
}

/// A whole answer collected in memory (tests, benchmarks, the CLI): at most `limits.max_rows`
/// rows, `truncated` when more existed.
#[derive(Debug)]
pub struct QueryOutcome {
    pub batches: Vec<RecordBatch>,
    pub schema: SchemaRef,
    pub rows: usize,
    pub truncated: bool,
}

/// Runs one read-only query to completion under `limits` (timeout included).
pub async fn run_query(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
) -> Result<QueryOutcome, EngineError> {
    let work = async {
        let RunningQuery {
            schema, mut stream, ..
        } = start_query(ctx, sql, limits).await?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| user_error(e, limits))?;
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
pub(crate) fn user_error(
    e: datafusion::error::DataFusionError,
    limits: &QueryLimits,
) -> EngineError {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        // The consumers' names and sizes stay in the log; the caller learns the limit only.
        E::ResourcesExhausted(_) => {
            EngineError::ResourcesExhausted(limits.memory_bytes / (1024 * 1024))
        }
        E::Plan(m) | E::Execution(m) => EngineError::Invalid(m.clone()),
        E::SQL(inner, _) => EngineError::Invalid(inner.to_string()),
        E::SchemaError(inner, _) => EngineError::Invalid(inner.to_string()),
        // A user's regular expression that does not compile. DataFusion reports it in
        // several shapes; the answer names no pattern, only the mistake.
        E::External(inner) if is_regex_error(inner.as_ref()) => bad_regex(),
        E::Internal(m) if m.contains("Regular expression did not compile") => bad_regex(),
        E::ArrowError(inner, _) => match inner.as_ref() {
            ArrowError::ExternalError(e) if is_regex_error(e.as_ref()) => bad_regex(),
            // I/O and other external errors may carry paths: internal.
            ArrowError::IoError(..) | ArrowError::ExternalError(_) => {
                EngineError::Internal(inner.to_string())
            }
            _ => EngineError::Invalid(inner.to_string()),
        },
        E::NotImplemented(m) => EngineError::Invalid(format!("not supported: {m}")),
        other => EngineError::Internal(other.to_string()),
    }
}

fn is_regex_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<regex::Error>().is_some() || e.downcast_ref::<regex_syntax::Error>().is_some()
}

fn bad_regex() -> EngineError {
    EngineError::Invalid("a regular expression in the query does not compile".into())
}
