//! Engine: secure DataFusion sessions that apply an `AccessPlan`, and the query runner.
//!
//! Its entries for the use cases are [`Engine::query`] (a [`SecureQuery`]: plan, SQL, format,
//! limits) and [`Engine::query_events`] (the operators' `audit.events`), in `entry`; encoders
//! take a [`Format`] value, never a header.
//!
//! Owns: a fresh session per request whose catalog lists only the datasets the plan allows
//! (`session`); secure table providers whose scan is raw Parquet → row filter → masks → a
//! barrier no user predicate can be pushed beneath (`provider`, `barrier`, `masks`, `filter`);
//! the read-only statement gate on the SQL text and on the logical plan (`statement`); the
//! budgets of planning (`budget`) and the bounded functions (`functions`); resource
//! governance: memory (`memory`), fair admission (`admission`) and the query lanes that plan
//! and run queries away from the HTTP runtime (`executor`, `run`); limits on SQL size, result
//! rows and time.
//!
//! Must never: decide who may see what (it only applies an `AccessPlan` from `policy`), know a
//! transport, let a user expression touch a row the row filter hides, name a hidden column in
//! an error, or run query work on the threads that serve HTTP.
//!
//! Leak-proof user predicates on clear columns (comparisons with literals, `IN` lists,
//! `IS NULL`) are run by the scan itself, with the row filter below the barrier, and prune
//! the raw Parquet scan (`pushdown`); every other predicate runs above the barrier. Answers
//! stream through the encoders (`encode`, `answer`).
//!
//! Tables of the statistical secret are computed here too (`tables`): the hub's own grouping
//! queries over a source's raw file, protected by `secrecy` before anyone reads them.
//!
//! Not built yet: EXPLAIN (refused: no safe rendering yet).

mod admission;
mod answer;
mod audit_table;
mod barrier;
mod budget;
mod distributed;
mod encode;
mod entry;
mod executor;
mod extracts;
mod files;
mod functions;
mod guard;
mod limits;
mod masks;
mod memory;
mod pinned_scan;
mod plan_cache;
mod provider;
mod pushdown;
mod run;
mod session;
mod statement;
pub mod tables;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

pub use admission::{Admission, Busy, Share};
pub use answer::{Answer, AnswerHead, Chunk};
pub use audit_table::{AuditEventsTable, audit_session};
pub use distributed::{
    Cluster, ClusterJobs, PlanCodec, ShippedPlan, TASK_DEADLINE, cluster_function_registry,
    cluster_runtime, cluster_session_config, scheduler_session,
};
pub use encode::AnswerInfo;
pub use encode::Format;
pub use entry::{EventsQuery, SecureQuery};
pub use executor::QueryLanes;
pub use extracts::{Extract, Extracts};
pub use functions::FunctionSet;
pub use limits::{EngineRuntime, QueryLimits};
pub use memory::HubMemory;
pub use plan_cache::PlanCache;
pub use provider::SecureTableProvider;
pub use run::HubData;
pub use run::{AnswerBody, Engine, Piece, QueryEnd, QueryJob, SessionFactory, StartedQuery};
pub use session::{new_session, secure_session};

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
    /// A planning budget (`limits.max_sql_nodes`, `max_plan_nodes`, `planning_timeout_ms`,
    /// `max_value_bytes`) was passed; the message names it.
    #[error("{0}")]
    TooComplex(String),
    /// The query needs more memory (or spill space) than one query may use.
    #[error(
        "the query needs more memory than the hub allows one query ({0} MiB, `limits.query_memory_mb`); add filters or aggregate more"
    )]
    ResourcesExhausted(usize),
    /// The caller's share, a lane or the hub's memory is full: try again later.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// A data file (an object of the hub's bucket) was replaced while the query read it: the
    /// query stopped rather than mix two versions; running it again reads the new one.
    #[error("a dataset was replaced while the query read it: run the query again")]
    DataChanged,
    /// Logged with the request id; never shown.
    #[error("internal error")]
    Internal(String),
}

impl EngineError {
    /// A stable code for the audit trail and the problem answer.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Invalid(_) => "invalid_query",
            EngineError::Refused(_) => "query_refused",
            EngineError::Timeout(_) => "query_timeout",
            EngineError::TooLong(_) => "query_too_long",
            EngineError::TooComplex(_) => "query_too_complex",
            EngineError::ResourcesExhausted(_) => "query_too_costly",
            EngineError::Busy(_) => "busy",
            EngineError::DataChanged => "data_changed",
            EngineError::Internal(_) => "internal_error",
        }
    }
}

/// A planned, checked query whose batches are ready to be pulled.
pub struct RunningQuery {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// Datasets the query reads (`schema.table`), for the audit.
    pub datasets: Vec<String>,
    /// It runs on the cluster (`[cluster]`), not in this process.
    pub on_cluster: bool,
}

/// A query parsed, checked against every budget, bound to the bounded functions and
/// optimised: what remains is physical planning and execution ([`PlannedQuery::start`]).
pub struct PlannedQuery {
    state: SessionState,
    logical: LogicalPlan,
    /// Datasets the query reads (`schema.table`), for the audit.
    pub datasets: Vec<String>,
    /// Bytes of data files the query's datasets hold (an upper bound of what it reads).
    pub input_bytes: u64,
    /// It joins two relations without any equality (a cross or nested-loop join).
    pub unbounded_join: bool,
    /// It calls a function the optimizer fixed at planning time (`now()`, …): never kept.
    reads_the_clock: bool,
    /// On a bucket, the object versions the query was planned on (shipped with its plan when
    /// it runs on the cluster).
    pins: Option<crate::storage::Pins>,
}

impl PlannedQuery {
    /// What the plan cache keeps of this query (`None` when it may not be kept).
    fn to_cache(&self) -> Option<plan_cache::CachedPlan> {
        (!self.reads_the_clock).then(|| plan_cache::CachedPlan {
            logical: self.logical.clone(),
            datasets: self.datasets.clone(),
            input_bytes: self.input_bytes,
            unbounded_join: self.unbounded_join,
        })
    }

    /// A kept plan, to be planned physically in `ctx` (a fresh session of the query's runtime
    /// and limits: the plan's tables are in it already).
    fn from_cache(ctx: &SessionContext, cached: &plan_cache::CachedPlan) -> Self {
        Self {
            state: ctx.state(),
            logical: cached.logical.clone(),
            datasets: cached.datasets.clone(),
            input_bytes: cached.input_bytes,
            unbounded_join: cached.unbounded_join,
            reads_the_clock: false,
            pins: None,
        }
    }

    /// The object versions the query was planned on (on a bucket): its plan carries them
    /// if it runs on the cluster.
    pub(crate) fn with_pins(mut self, pins: Option<crate::storage::Pins>) -> Self {
        self.pins = pins;
        self
    }

    /// Cheap under `limits`: little data, and no join that multiplies rows without bound.
    pub fn is_cheap(&self, limits: &QueryLimits) -> bool {
        self.input_bytes <= limits.cheap_input_bytes && !self.unbounded_join
    }

    /// Plans the physical execution (one partition when `single_partition`, so that the
    /// whole query runs in the task that polls it) and starts it.
    /// A query the cheap lane runs on one partition never goes to `cluster`; another goes
    /// there when it reads at least its `min_input_bytes` and the cluster can decode its plan.
    pub async fn start(
        mut self,
        single_partition: bool,
        limits: &QueryLimits,
        cluster: Option<&dyn Cluster>,
    ) -> Result<RunningQuery, EngineError> {
        if single_partition {
            self.state
                .config_mut()
                .options_mut()
                .execution
                .target_partitions = 1;
        }
        // Physical planning has its own planning budget (a heavy query may have waited for
        // its slot since its logical planning).
        if let Some(clock) = self.state.config().get_extension::<budget::PlanningClock>() {
            clock.start(limits.planning_timeout);
        }
        let for_cluster =
            cluster.filter(|c| !single_partition && self.input_bytes >= c.min_input_bytes());
        if for_cluster.is_some() {
            distributed::prepare(self.state.config_mut().options_mut());
        }
        let physical = self
            .state
            .query_planner()
            .create_physical_plan(&self.logical, &self.state)
            .await
            .map_err(|e| user_error(e, limits))?;
        let schema = self.logical.schema().inner().clone();
        if let Some((target, shipped)) = for_cluster.and_then(|target| {
            distributed::ship(&physical, limits.max_rows, self.pins.as_ref())
                .map(|shipped| (target, shipped))
        }) {
            // SECURITY: what is shipped is this physical plan, secure scans inside, each
            // partition bounded (`distributed::ship`); the cluster's errors are logged by kind,
            // never shown (they may name files and nodes). The job has the query's time; past
            // it, or when the caller goes away, it is cancelled on the cluster
            // (`cluster::client`), and each of its tasks stops at its executor's own time limit
            // (`cluster::deadline`).
            // (`passerelle_cluster_queries_total`, described in `telemetry`: every query sent,
            // answered or failed there.)
            metrics::counter!("passerelle_cluster_queries_total").increment(1);
            let stream = tokio::time::timeout(
                limits.timeout,
                distributed::run_on_cluster(target, shipped, &self.state),
            )
            .await
            .map_err(|_| EngineError::Timeout(limits.timeout.as_secs()))?
            .map_err(|e| user_error(distributed::cluster_error(e), limits))?;
            return Ok(RunningQuery {
                schema,
                stream,
                datasets: self.datasets,
                on_cluster: true,
            });
        }
        let stream = datafusion::physical_plan::execute_stream(physical, self.state.task_ctx())
            .map_err(|e| user_error(e, limits))?;
        Ok(RunningQuery {
            schema,
            stream,
            datasets: self.datasets,
            on_cluster: false,
        })
    }
}

/// Parses, gates, budgets, plans and optimises one read-only query in `ctx` under `limits`.
/// Time limits of the whole query are the caller's; planning has its own deadline.
pub async fn plan_query(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
) -> Result<PlannedQuery, EngineError> {
    plan_query_with(ctx, sql, &[], limits).await
}

/// [`plan_query`] with values for the statement's placeholders (`$1`, `$2`, …), bound into the
/// plan before any check, so that every gate sees the plan that runs.
pub async fn plan_query_with(
    ctx: &SessionContext,
    sql: &str,
    params: &[ScalarValue],
    limits: &QueryLimits,
) -> Result<PlannedQuery, EngineError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(EngineError::TooLong(limits.max_sql_bytes));
    }
    let functions = FunctionSet::get();
    let statement =
        statement::parse_read_only(sql, limits.max_sql_nesting, limits.allow_recursive)?;
    if let datafusion::sql::parser::Statement::Statement(inner) = &statement {
        // SECURITY (availability): the syntax tree's size, CTE expansion included, and the
        // functions it calls are checked before anything is planned.
        budget::check_syntax(inner, limits.max_sql_nodes, functions)?;
    }
    let state = ctx.state();
    if let Some(clock) = state.config().get_extension::<budget::PlanningClock>() {
        clock.start(limits.planning_timeout);
    }
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| user_error(e, limits))?;
    // SECURITY: parameters are literals put in the plan before every check below.
    let plan = if params.is_empty() {
        plan
    } else {
        plan.with_param_values(params.to_vec())
            .map_err(|e| user_error(e, limits))?
    };
    budget::check_plan_size(&plan, limits.max_plan_nodes)?;
    let reads_the_clock = plan_cache::reads_the_clock(&plan);
    // SECURITY: the plan-level allow-list, whatever front end produced the plan.
    let datasets = statement::check_plan(&plan, limits.allow_recursive)?;
    // SECURITY: every function call is a reviewed, bounded one (the SQL planner builds some
    // calls itself, e.g. `EXTRACT` or `[1, 2]`).
    let plan = functions.bind(plan)?;
    let optimised = state.optimize(&plan).map_err(|e| user_error(e, limits))?;
    FunctionSet::verify_bound(&optimised)?;
    let (input_bytes, unbounded_join) = statement::cost_of(&optimised);
    Ok(PlannedQuery {
        state,
        logical: optimised,
        datasets,
        input_bytes,
        unbounded_join,
        reads_the_clock,
        pins: None,
    })
}

/// Plans and starts one read-only query in `ctx` under `limits`, on the caller's task (tests,
/// benchmarks, the CLI; the server goes through [`Engine::run`]).
pub async fn start_query(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
) -> Result<RunningQuery, EngineError> {
    start_query_on(ctx, sql, limits, None).await
}

/// [`start_query`], sent to `cluster` when it reads at least its `min_input_bytes` (tests and
/// benchmarks of the cluster).
pub async fn start_query_on(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
    cluster: Option<&dyn Cluster>,
) -> Result<RunningQuery, EngineError> {
    plan_query(ctx, sql, limits)
        .await?
        .start(false, limits, cluster)
        .await
}

/// A whole answer collected in memory (tests, benchmarks, the CLI): at most `limits.max_rows`
/// rows, `truncated` when more existed.
#[derive(Debug)]
pub struct QueryOutcome {
    pub batches: Vec<RecordBatch>,
    pub schema: SchemaRef,
    pub rows: usize,
    pub truncated: bool,
    /// It ran on the cluster.
    pub on_cluster: bool,
}

/// Runs one read-only query to completion under `limits` (timeout included).
pub async fn run_query(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
) -> Result<QueryOutcome, EngineError> {
    run_query_on(ctx, sql, limits, None).await
}

/// [`run_query`], sent to `cluster` when it reads at least its `min_input_bytes`.
pub async fn run_query_on(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
    cluster: Option<&dyn Cluster>,
) -> Result<QueryOutcome, EngineError> {
    let work = async {
        let RunningQuery {
            schema,
            mut stream,
            on_cluster,
            ..
        } = start_query_on(ctx, sql, limits, cluster).await?;
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
            on_cluster,
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
    // SECURITY: a read refused because the object's version changed stops the query whole
    // (never a mix of two versions); the caller may run it again.
    if crate::storage::is_version_changed(&e) {
        return EngineError::DataChanged;
    }
    match e.find_root() {
        E::ResourcesExhausted(m) if m.contains(memory::HUB_MEMORY_FULL) => {
            EngineError::Busy(Busy::Memory)
        }
        // A task of the query on the cluster reached its executor's deadline.
        E::ResourcesExhausted(m) if m.contains(distributed::TASK_DEADLINE) => {
            EngineError::Timeout(limits.timeout.as_secs())
        }
        E::ResourcesExhausted(m) if m.contains(budget::PLANNING_DEADLINE) => {
            EngineError::TooComplex(format!(
                "planning the query took longer than {} ms (`limits.planning_timeout_ms`): \
                 simplify it",
                limits.planning_timeout.as_millis()
            ))
        }
        E::ResourcesExhausted(m) if m.contains(memory::VALUE_TOO_LARGE) => EngineError::TooComplex(
            m.split_once(memory::VALUE_TOO_LARGE)
                .map_or(m.as_str(), |(_, rest)| rest.trim_start_matches(": "))
                .to_string(),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A read refused because an object was replaced (however DataFusion wraps it) stops the
    /// query as `data_changed`, which the caller may retry; other store errors are internal.
    #[test]
    fn a_replaced_object_is_data_changed_and_other_store_errors_internal() {
        use datafusion::error::DataFusionError as E;
        let precondition = || object_store::Error::Precondition {
            path: "bucket/key".into(),
            source: "412".into(),
        };
        let limits = QueryLimits::default();
        for e in [
            E::ObjectStore(Box::new(precondition())),
            E::External(Box::new(precondition())),
            E::Context(
                "scan".into(),
                Box::new(E::ParquetError(Box::new(
                    parquet::errors::ParquetError::External(Box::new(precondition())),
                ))),
            ),
        ] {
            let mapped = user_error(e, &limits);
            assert!(matches!(mapped, EngineError::DataChanged), "{mapped:?}");
            assert_eq!(mapped.code(), "data_changed");
        }
        let other = user_error(
            E::ObjectStore(Box::new(object_store::Error::NotFound {
                path: "bucket/key".into(),
                source: "404".into(),
            })),
            &limits,
        );
        assert!(matches!(other, EngineError::Internal(_)), "{other:?}");
    }
}
