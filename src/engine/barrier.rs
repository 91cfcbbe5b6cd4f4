//! `BarrierExec`: the line no user predicate, join filter or expression crosses.
//!
//! It wraps the secure scan (raw scan → row filter → masks) and passes its batches through
//! unchanged. It marks every parent filter unsupported, swaps with no projection and accepts
//! no limit: nothing the user wrote can be evaluated on rows the row filter hides or on values
//! before their mask. The one exception is DataFusion's own dynamic filters (a hash join's
//! build-side bounds, a top-k threshold) on columns the plan leaves clear: they only prune
//! rows that the operator above would drop anyway, and cannot fail.
//! (Checked on DataFusion 55: without such a wrapper, physical filter pushdown moves a parent
//! `FilterExec` into the provider's plan and `CAST(b AS INT)` fails on a hidden row.)

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterDescription, FilterDescription, FilterPushdownPhase,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};

/// Passes batches through; refuses every pushdown from above but one: a join's or a top-k's
/// dynamic filter on clear columns.
#[derive(Debug)]
pub struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
    /// For each output column, whether it is the raw column unchanged (no mask).
    clear: Vec<bool>,
}

impl BarrierExec {
    /// A barrier that admits nothing from above.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            clear: Vec::new(),
        }
    }

    /// A barrier whose output columns flagged `clear` carry raw values unchanged: dynamic
    /// filters on those columns only may cross it.
    pub fn with_clear_columns(input: Arc<dyn ExecutionPlan>, clear: Vec<bool>) -> Self {
        Self { input, clear }
    }

    /// Whether `filter` may be evaluated below the barrier: only a dynamic filter (the bounds
    /// or the set of a hash join's build side, or a top-k's threshold: a comparison that
    /// cannot fail and that only drops rows the operator above drops anyway) whose every
    /// column is a clear column of this output.
    fn admits(&self, filter: &Arc<dyn PhysicalExpr>) -> bool {
        if filter.downcast_ref::<DynamicFilterPhysicalExpr>().is_none() {
            return false;
        }
        let schema = self.schema();
        let columns = collect_columns(filter);
        !columns.is_empty()
            && columns.iter().all(|c| {
                self.clear.get(c.index()).copied().unwrap_or(false)
                    && schema
                        .fields()
                        .get(c.index())
                        .is_some_and(|f| f.name() == c.name())
            })
    }
}

impl DisplayAs for BarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecureBarrier")
    }
}

impl ExecutionPlan for BarrierExec {
    fn name(&self) -> &str {
        "SecureBarrier"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(BarrierExec {
                input,
                clear: self.clear.clone(),
            })),
            _ => datafusion::common::internal_err!("the secure barrier has exactly one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    /// The input's statistics, for the size estimates below.
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    /// Size estimates only (rows and bytes, inexact), so that joins put the smaller input on
    /// their build side as they would over bare files; no column statistics (their minimum
    /// and maximum would be raw values before masks and row filters).
    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let mut out = Statistics::new_unknown(&self.schema());
        // SECURITY: estimates steer the join order only; they are never shown (EXPLAIN is
        // refused by the statement gate) and carry no value of any row.
        if let Some(input) = input_stats.first() {
            out.num_rows = input.num_rows.to_inexact();
            out.total_byte_size = input.total_byte_size.to_inexact();
        }
        Ok(Arc::new(out))
    }

    /// SECURITY: every filter from above stays above (a user predicate could fail, or read a
    /// value, on a row the row filter hides), except, after the plan is built, a dynamic
    /// filter on clear columns (see `admits`); it prunes the raw scan, and the operator that
    /// made it still applies its own condition above.
    fn gather_filters_for_pushdown(
        &self,
        phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        // All or nothing: in the `Post` phase the filters from above are the operators' own
        // dynamic filters; a set with anything else in it stays above, whole.
        let child = if phase == FilterPushdownPhase::Post
            && !parent_filters.is_empty()
            && parent_filters.iter().all(|f| self.admits(f))
        {
            let clear: HashSet<usize> = (0..self.clear.len()).filter(|&i| self.clear[i]).collect();
            ChildFilterDescription::from_child_with_allowed_indices(
                &parent_filters,
                clear,
                &self.input,
            )?
        } else {
            ChildFilterDescription::all_unsupported(&parent_filters)
        };
        Ok(FilterDescription::new().with_child(child))
    }

    // SECURITY: no `try_swapping_with_projection`, `supports_limit_pushdown` or `with_fetch`
    // override: the defaults refuse them all.
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::stats::Precision;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::statistics::StatisticsContext;

    /// Joins get the size of each side; no minimum, maximum or distinct count crosses.
    #[test]
    fn only_inexact_sizes_cross_the_barrier() {
        let schema = Arc::new(Schema::new(vec![Field::new("age", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(vec![17, 42, 99]))],
        )
        .unwrap();
        let source = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
        let below = StatisticsContext::new()
            .compute(source.as_ref(), &StatisticsArgs::new())
            .unwrap();
        assert_eq!(below.num_rows, Precision::Exact(3));
        assert_eq!(below.column_statistics[0].null_count, Precision::Exact(0));

        let barrier = BarrierExec::new(source);
        let above = StatisticsContext::new()
            .compute(&barrier, &StatisticsArgs::new())
            .unwrap();
        assert_eq!(above.num_rows, Precision::Inexact(3));
        assert!(above.total_byte_size.get_value().is_some());
        let column = &above.column_statistics[0];
        assert_eq!(column.max_value, Precision::Absent);
        assert_eq!(column.min_value, Precision::Absent);
        assert_eq!(column.distinct_count, Precision::Absent);
        assert_eq!(column.null_count, Precision::Absent);
    }

    /// Only a dynamic filter, and only on clear columns, may cross; a user predicate never.
    #[test]
    fn only_dynamic_filters_on_clear_columns_cross() {
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{BinaryExpr, Column, lit};
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", DataType::Int32, false),
            Field::new("nir", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![17])),
                Arc::new(Int32Array::from(vec![1])),
            ],
        )
        .unwrap();
        let source = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
        // `age` clear, `nir` masked.
        let barrier = BarrierExec::with_clear_columns(source, vec![true, false]);
        let column =
            |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
        let dynamic = |c: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
            let bound: Arc<dyn PhysicalExpr> =
                Arc::new(BinaryExpr::new(c.clone(), Operator::Gt, lit(10)));
            Arc::new(DynamicFilterPhysicalExpr::new(vec![c], bound))
        };
        assert!(barrier.admits(&dynamic(column("age", 0))));
        assert!(!barrier.admits(&dynamic(column("nir", 1))));
        // A column index that does not match its name, or is out of range: refused.
        assert!(!barrier.admits(&dynamic(column("age", 1))));
        assert!(!barrier.admits(&dynamic(column("age", 7))));
        // A plain predicate, even on a clear column, stays above.
        let plain: Arc<dyn PhysicalExpr> =
            Arc::new(BinaryExpr::new(column("age", 0), Operator::Gt, lit(10)));
        assert!(!barrier.admits(&plain));
        // A barrier built without its clear columns admits nothing.
        let source = MemorySourceConfig::try_new_exec(&[vec![]], barrier.schema(), None).unwrap();
        assert!(!BarrierExec::new(source).admits(&dynamic(column("age", 0))));
    }
}
