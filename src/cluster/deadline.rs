//! Every task an executor runs has a deadline: `limits.query_timeout_secs` of the executor's
//! configuration. In Ballista's pull mode the scheduler cannot reach an executor to stop a
//! cancelled job's running tasks: this bound is what stops them.
//!
//! Owns: [`DeadlineEngine`], Ballista's default execution engine with that bound.
//! Must never: let a task run past its deadline.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::JobId;
use ballista_core::serde::protobuf::{
    RuntimeStatsReport, ShuffleWritePartition, TaskColumnStats, WindowStateReport,
};
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::SessionConfig;

/// Ballista's default engine, each task bounded by `limit`.
pub struct DeadlineEngine {
    inner: DefaultExecutionEngine,
    limit: Duration,
}

impl DeadlineEngine {
    pub fn new(limit: Duration) -> Self {
        Self {
            inner: DefaultExecutionEngine::default(),
            limit,
        }
    }
}

impl ExecutionEngine for DeadlineEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(DeadlineStage {
            inner,
            limit: self.limit,
        }))
    }
}

/// One stage's task, stopped at its deadline.
#[derive(Debug)]
struct DeadlineStage {
    inner: Arc<dyn QueryStageExecutor>,
    limit: Duration,
}

impl fmt::Display for DeadlineStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (deadline {} s)", self.inner, self.limit.as_secs())
    }
}

#[async_trait::async_trait]
impl QueryStageExecutor for DeadlineStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        // SECURITY (availability): dropping the task's future drops its streams, which stops
        // DataFusion's work (its spawned tasks are aborted with them).
        tokio::time::timeout(self.limit, self.inner.execute_query_stage(task_id, context))
            .await
            .map_err(|_| {
                DataFusionError::ResourcesExhausted(format!(
                    "{} ({} s: `limits.query_timeout_secs`)",
                    crate::engine::TASK_DEADLINE,
                    self.limit.as_secs()
                ))
            })?
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}
