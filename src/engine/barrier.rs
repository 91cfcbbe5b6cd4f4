//! `BarrierExec`: the line no user predicate, join filter or expression crosses.
//!
//! It wraps the secure scan (raw scan → row filter → masks) and passes its batches through
//! unchanged. It keeps DataFusion's default `gather_filters_for_pushdown`, which marks every
//! parent filter unsupported, swaps with no projection and accepts no limit: nothing the user
//! wrote can be evaluated on rows the row filter hides or on values before their mask.
//! (Checked on DataFusion 55: without such a wrapper, physical filter pushdown moves a parent
//! `FilterExec` into the provider's plan and `CAST(b AS INT)` fails on a hidden row.)

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};

/// Passes batches through; refuses every pushdown from above.
#[derive(Debug)]
pub struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
}

impl BarrierExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
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
            (Some(input), true) => Ok(Arc::new(BarrierExec { input })),
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

    // SECURITY: no `gather_filters_for_pushdown`, `try_swapping_with_projection`,
    // `supports_limit_pushdown` or `with_fetch` override: the defaults refuse them all.
}
