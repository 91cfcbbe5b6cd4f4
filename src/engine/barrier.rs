//! `BarrierExec`: the line no user predicate, join filter or expression crosses.
//!
//! It wraps the secure scan (raw scan → row filter → masks) and passes its batches through
//! unchanged. It keeps DataFusion's default `gather_filters_for_pushdown`, which marks every
//! parent filter unsupported, and swaps with no projection: nothing the user wrote can be
//! evaluated on rows the row filter hides or on values before their mask. A limit passes
//! down as a count of rows (no expression): the row filter stops once it has that many rows,
//! the reader of an unfiltered dataset reads no more.
//! (Checked on DataFusion 55: without such a wrapper, physical filter pushdown moves a parent
//! `FilterExec` into the provider's plan and `CAST(b AS INT)` fails on a hidden row.)

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};

/// Passes batches through; refuses every pushdown from above.
#[derive(Debug)]
pub struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
    /// Per output column: may its statistics (inexact) go up for planning?
    column_stats: Vec<bool>,
}

impl BarrierExec {
    /// A barrier that lets only size estimates up.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            column_stats: Vec::new(),
        }
    }

    /// A barrier that also lets up the statistics of the columns marked `true`: the caller
    /// marks only columns whose statistics describe exactly what the user can see anyway
    /// (in clear, in a dataset without row filter).
    pub fn with_column_stats(input: Arc<dyn ExecutionPlan>, column_stats: Vec<bool>) -> Self {
        Self {
            input,
            column_stats,
        }
    }
}

impl BarrierExec {
    /// The columns whose statistics go up (the cluster's plan codec ships them).
    pub(super) fn column_stats(&self) -> &[bool] {
        &self.column_stats
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
                column_stats: self.column_stats.clone(),
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

    /// Size estimates (rows and bytes, inexact), so that joins put the smaller input on their
    /// build side as they would over bare files; column statistics (inexact) only for the
    /// columns the provider marked: elsewhere their minimum and maximum would be raw values
    /// before masks, or cover rows a row filter hides.
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
            // SECURITY: only marked columns (in clear, no row filter): their statistics are
            // those of the caller's own view; join cardinality estimates need them.
            for ((slot, below), &allowed) in out
                .column_statistics
                .iter_mut()
                .zip(&input.column_statistics)
                .zip(&self.column_stats)
            {
                if allowed {
                    *slot = below.clone().to_inexact();
                }
            }
        }
        Ok(Arc::new(out))
    }

    /// A limit passes: it keeps the first rows of the stream the barrier lets through, whatever
    /// their values, and carries no expression. Below, it stops at the row filter (a
    /// `FilterExec` takes it as its own fetch) or reaches the reader of an unfiltered dataset.
    fn supports_limit_pushdown(&self) -> bool {
        // SECURITY: a count of rows, not a predicate: the answer's rows are the same first
        // rows of the filtered, masked stream; only less is read.
        true
    }

    // SECURITY: no `gather_filters_for_pushdown` or `try_swapping_with_projection` override:
    // the defaults refuse every parent filter and projection.
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::stats::Precision;
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::statistics::StatisticsContext;

    /// Marked columns' statistics cross (inexact); unmarked ones stay absent.
    #[test]
    fn only_marked_columns_statistics_cross_the_barrier() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", DataType::Int32, false),
            Field::new("income", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![17, 42, 99])),
                Arc::new(Int32Array::from(vec![1000, 2000, 3000])),
            ],
        )
        .unwrap();
        let source = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
        let barrier = BarrierExec::with_column_stats(source, vec![true, false]);
        let above = StatisticsContext::new()
            .compute(&barrier, &StatisticsArgs::new())
            .unwrap();
        let [age, income] = &above.column_statistics[..] else {
            panic!("two columns")
        };
        assert_eq!(age.null_count, Precision::Inexact(0));
        assert!(!age.null_count.is_exact().unwrap_or(true));
        assert_eq!(income.null_count, Precision::Absent);
        assert_eq!(income.max_value, Precision::Absent);
        assert_eq!(income.min_value, Precision::Absent);
    }

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
}
