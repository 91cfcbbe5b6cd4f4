//! `WideRowGuardExec`: no row wider than the hub allows goes into an operator that copies rows.
//!
//! Joins and window functions copy input values into their output (a cross join repeats one
//! row of the small side once per row of a whole batch of the other side; `first_value(x) OVER
//! ()` puts `x` in every row), and they build a whole output batch at once, outside any memory
//! pool. A row of a few megabytes repeated over a batch of 8 192 rows is tens of gigabytes. The
//! guard, inserted on every input of those operators once the physical plan is final, measures
//! each batch's widest row and fails the query when that width times the batch size would pass
//! the bound (`limits.query_memory_mb` / 2 spread over a batch: 64 KiB a row by default).
//!
//! On the side a join collects before it answers (its first input), the guard also charges each
//! batch's own bookkeeping to the query's pool: a join collecting millions of tiny batches (a
//! cross join of cross joins, with no column to count) held them outside any pool.
//!
//! Owns: the guard operator and the physical optimizer rule that places it.
//! Must never: change a batch (it passes them through or fails the query).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use futures::StreamExt;

use super::memory::VALUE_TOO_LARGE;

/// Operators that copy input values into an output batch built at once.
const COPYING: &[&str] = &[
    "HashJoinExec",
    "NestedLoopJoinExec",
    "CrossJoinExec",
    "SortMergeJoinExec",
    "SymmetricHashJoinExec",
    "WindowAggExec",
    "BoundedWindowAggExec",
];

/// The physical optimizer rule: a guard on every input of a copying operator.
#[derive(Debug)]
pub struct GuardWideRows {
    /// Widest row accepted, in bytes.
    pub max_row_bytes: usize,
}

impl GuardWideRows {
    /// The bound for a query of `memory_bytes` whose batches have `batch_size` rows.
    pub fn new(memory_bytes: usize, batch_size: usize) -> Self {
        Self {
            max_row_bytes: (memory_bytes / 2 / batch_size.max(1)).max(1024),
        }
    }
}

impl PhysicalOptimizerRule for GuardWideRows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch_size = usize::from(config.execution.batch_size).max(1);
        let max = self.max_row_bytes;
        plan.transform_up(|node| {
            if !COPYING.contains(&node.name()) {
                return Ok(Transformed::no(node));
            }
            let is_join = node.name().contains("Join");
            let children = node
                .children()
                .into_iter()
                .enumerate()
                .map(|(i, child)| {
                    Arc::new(WideRowGuardExec {
                        input: child.clone(),
                        max_row_bytes: max,
                        batch_size,
                        charge_batches: is_join && i == 0,
                    }) as Arc<dyn ExecutionPlan>
                })
                .collect();
            // The guards keep their inputs' properties: the node's own stay as they are.
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(node.replace_children(children, keep)?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "passerelle_guard_wide_rows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Bookkeeping of one batch outside its arrays (the batch, its column list, the schema
/// handle), charged on a join's collected side.
const BATCH_OVERHEAD: usize = 128;

/// Passes batches through while their widest row stays within the bound.
#[derive(Debug)]
pub struct WideRowGuardExec {
    input: Arc<dyn ExecutionPlan>,
    max_row_bytes: usize,
    batch_size: usize,
    /// Charge [`BATCH_OVERHEAD`] per batch to the query's pool (a join's collected side).
    charge_batches: bool,
}

impl WideRowGuardExec {
    /// Its bounds: widest row, batch size, and whether it charges batches (the cluster's plan
    /// codec ships them).
    pub(super) fn bounds(&self) -> (usize, usize, bool) {
        (self.max_row_bytes, self.batch_size, self.charge_batches)
    }

    /// A guard with `bounds` over `input` (an executor's copy of a shipped guard).
    pub(super) fn with_bounds(input: Arc<dyn ExecutionPlan>, bounds: (usize, usize, bool)) -> Self {
        let (max_row_bytes, batch_size, charge_batches) = bounds;
        Self {
            input,
            max_row_bytes,
            batch_size,
            charge_batches,
        }
    }
}

impl DisplayAs for WideRowGuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WideRowGuard: max_row_bytes={}", self.max_row_bytes)
    }
}

impl ExecutionPlan for WideRowGuardExec {
    fn name(&self) -> &str {
        "WideRowGuardExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
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
            (Some(input), true) => Ok(Arc::new(WideRowGuardExec {
                input,
                max_row_bytes: self.max_row_bytes,
                batch_size: self.batch_size,
                charge_batches: self.charge_batches,
            })),
            _ => datafusion::common::internal_err!("the row guard has exactly one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let reservation = self.charge_batches.then(|| {
            MemoryConsumer::new("passerelle: a join's collected batches")
                .register(context.memory_pool())
        });
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let max = self.max_row_bytes;
        let checked = input.map(move |batch| {
            let batch = batch?;
            // SECURITY (availability): what the join keeps of each batch counts in the pool.
            if let Some(reservation) = &reservation {
                reservation.try_grow(BATCH_OVERHEAD)?;
            }
            let widest = widest_row(&batch);
            // SECURITY (availability): a row this wide, copied over a batch by a join or a
            // window, would build a batch beyond any memory bound.
            if widest > max {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "{VALUE_TOO_LARGE}: rows of about {widest} bytes cannot go into a join or \
                     a window function on this hub (at most {max}; `limits.query_memory_mb`): \
                     select fewer or narrower columns before joining"
                )));
            }
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked)))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    /// The input's statistics as they are (the guard changes no batch).
    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        match input_stats.first() {
            Some(stats) => Ok(stats.clone()),
            None => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }
}

/// Bytes of the widest row of `batch` (each column's widest value, summed).
fn widest_row(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(widest_value).sum()
}

fn widest_value(array: &ArrayRef) -> usize {
    if array.is_empty() {
        return 0;
    }
    match array.data_type() {
        DataType::Utf8 => max_span(array.as_string::<i32>().offsets().windows(2)),
        DataType::LargeUtf8 => max_span64(array.as_string::<i64>().offsets().windows(2)),
        DataType::Binary => max_span(array.as_binary::<i32>().offsets().windows(2)),
        DataType::LargeBinary => max_span64(array.as_binary::<i64>().offsets().windows(2)),
        DataType::Utf8View => view_max(array.as_string_view().views()),
        DataType::BinaryView => view_max(array.as_binary_view().views()),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let per_element = per_element(list.values());
            max_span(list.offsets().windows(2)).saturating_mul(per_element)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let per_element = per_element(list.values());
            max_span64(list.offsets().windows(2)).saturating_mul(per_element)
        }
        other => match other.primitive_width() {
            Some(width) => width,
            // Structures and the rest: their average row, a fair estimate for them.
            None => array.get_array_memory_size() / array.len(),
        },
    }
}

/// Bytes an element of `values` takes at most (its widest value, or its average).
fn per_element(values: &ArrayRef) -> usize {
    if values.is_empty() {
        return 1;
    }
    widest_value(values).max(1)
}

fn max_span<'a>(pairs: impl Iterator<Item = &'a [i32]>) -> usize {
    pairs
        .map(|w| usize::try_from(w[1] - w[0]).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn max_span64<'a>(pairs: impl Iterator<Item = &'a [i64]>) -> usize {
    pairs
        .map(|w| usize::try_from(w[1] - w[0]).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn view_max(views: &[u128]) -> usize {
    views
        .iter()
        .map(|v| (*v as u32) as usize)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn the_widest_row_counts_every_column_at_its_widest() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
            Field::new("c", DataType::Utf8View, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["x", &"y".repeat(1000)])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringViewArray::from(vec![&"z".repeat(300), "w"])),
            ],
        )
        .unwrap();
        assert_eq!(widest_row(&batch), 1000 + 8 + 300);
    }

    #[test]
    fn the_bound_is_half_the_query_memory_over_a_batch() {
        assert_eq!(
            GuardWideRows::new(1024 * 1024 * 1024, 8192).max_row_bytes,
            64 * 1024
        );
    }
}
