//! Size and time budgets of planning: checked on the SQL syntax tree before any planning, on
//! the logical plan before any optimisation, and between optimizer passes.
//!
//! Owns: the syntax-tree count (every reference to a common table expression counted as the
//! copy the planner makes of it, so a chain of CTEs that doubles at each step is refused before
//! it is expanded), the function names a query may call (anything else is refused before
//! planning), the logical plan's size, and the planning deadline rules interleaved with
//! DataFusion's logical and physical optimizer rules.
//!
//! Must never: let planning start on a query that breaks a budget, or let planning run past
//! its deadline by more than one optimizer rule. Each refusal names the limit (`[limits]` key)
//! so the caller knows what to simplify.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ObjectName, Query, Select, Statement, TableFactor, Visit, Visitor,
};

use super::EngineError;
use super::functions::FunctionSet;

/// Marks the planning deadline's error, so it is answered as a timeout of planning.
pub(crate) const PLANNING_DEADLINE: &str = "passerelle: planning deadline passed";

/// Checks the syntax tree of one read-only statement against `max_nodes` and the callable
/// functions, before anything is planned.
pub fn check_syntax(
    statement: &Statement,
    max_nodes: usize,
    functions: &FunctionSet,
) -> Result<(), EngineError> {
    let mut census = Census::new(functions);
    let _ = statement.visit(&mut census);
    if let Some(name) = census.unknown_function {
        return Err(EngineError::Refused(format!(
            "function `{name}` is not available on this hub"
        )));
    }
    // Each CTE's size with its own references expanded, in definition order (a name
    // defined twice at different levels counts as its largest definition: an over-estimate
    // is safe for a budget).
    let mut expanded: HashMap<String, u64> = HashMap::new();
    for cte in &census.ctes {
        let mut inner = Census::new(functions);
        let _ = cte.query.visit(&mut inner);
        let own = inner.nodes;
        let copies: u64 = inner
            .references
            .iter()
            .filter(|r| **r != cte.name)
            .filter_map(|r| expanded.get(r))
            .fold(0u64, |sum, size| sum.saturating_add(*size));
        let size = own.saturating_add(copies);
        let entry = expanded.entry(cte.name.clone()).or_default();
        *entry = (*entry).max(size);
    }
    let copies = census
        .references
        .iter()
        .filter_map(|r| expanded.get(r))
        .fold(0u64, |sum, size| sum.saturating_add(*size));
    let total = census.nodes.saturating_add(copies);
    // SECURITY (availability): a query whose expansion is too large is refused before the
    // planner builds it (a chain of 17 doubling CTEs used to take 16 s and gigabytes).
    if total > max_nodes as u64 {
        return Err(EngineError::TooComplex(format!(
            "the query has {} syntax-tree nodes once its common table expressions are expanded; \
             this hub allows {max_nodes} (`limits.max_sql_nodes`): simplify it",
            if total == u64::MAX {
                "too many".to_string()
            } else {
                total.to_string()
            }
        )));
    }
    Ok(())
}

struct CteDefinition {
    name: String,
    query: Box<Query>,
}

/// Counts nodes, collects CTE definitions and table references, and checks function names.
struct Census<'a> {
    functions: &'a FunctionSet,
    nodes: u64,
    ctes: Vec<CteDefinition>,
    references: Vec<String>,
    unknown_function: Option<String>,
}

impl<'a> Census<'a> {
    fn new(functions: &'a FunctionSet) -> Self {
        Self {
            functions,
            nodes: 0,
            ctes: Vec::new(),
            references: Vec::new(),
            unknown_function: None,
        }
    }

    fn count(&mut self) {
        self.nodes = self.nodes.saturating_add(1);
    }
}

fn last_part(name: &ObjectName) -> String {
    name.0
        .last()
        .map(|p| p.to_string().trim_matches('"').to_lowercase())
        .unwrap_or_default()
}

impl Visitor for Census<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.count();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.push(CteDefinition {
                    name: cte.alias.name.value.to_lowercase(),
                    query: cte.query.clone(),
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, _select: &Select) -> ControlFlow<()> {
        self.count();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        self.count();
        if let TableFactor::Table { name, .. } = factor
            && name.0.len() == 1
        {
            self.references.push(last_part(name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
        self.count();
        if let SqlExpr::Function(f) = expr {
            let name = last_part(&f.name);
            // SECURITY: only reviewed functions can be called (the others do not exist in the
            // session either); checked before planning, so nothing unknown is ever evaluated.
            if !self.functions.callable(&name) {
                self.unknown_function = Some(name);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Checks that `plan` (subqueries included) has at most `max_nodes` plan nodes and expression
/// nodes; stops counting at the first node over the budget.
pub fn check_plan_size(plan: &LogicalPlan, max_nodes: usize) -> Result<(), EngineError> {
    let mut nodes = 0usize;
    let mut over = false;
    let _ = plan.apply_with_subqueries(|node| {
        nodes += 1;
        let _ = node.apply_expressions(|expr| {
            expr.apply(|_| {
                nodes += 1;
                Ok(if nodes > max_nodes {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        });
        over = nodes > max_nodes;
        Ok(if over {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    // SECURITY (availability): plan size bounds what every optimizer pass walks.
    if over {
        return Err(EngineError::TooComplex(format!(
            "the query's plan has more than {max_nodes} nodes \
             (`limits.max_plan_nodes`): simplify it"
        )));
    }
    Ok(())
}

/// The planning deadline of one session, started when planning starts and checked between
/// optimizer rules.
#[derive(Debug, Default)]
pub struct PlanningClock {
    deadline: std::sync::Mutex<Option<Instant>>,
}

impl PlanningClock {
    /// Planning starts now and may last `budget`.
    pub fn start(&self, budget: Duration) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + budget);
    }

    fn check(&self) -> Result<()> {
        let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        // SECURITY (availability): planning stops between two rules once its time is up.
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(DataFusionError::ResourcesExhausted(
                PLANNING_DEADLINE.to_string(),
            ));
        }
        Ok(())
    }

    /// DataFusion's logical optimizer rules with a deadline check after each.
    pub fn logical_rules(
        self: &Arc<Self>,
        rules: Vec<Arc<dyn OptimizerRule + Send + Sync>>,
    ) -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
        interleave(Arc::new(LogicalCheck(self.clone())), rules)
    }

    /// DataFusion's physical optimizer rules with a deadline check after each.
    pub fn physical_rules(
        self: &Arc<Self>,
        rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    ) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
        interleave(Arc::new(PhysicalCheck(self.clone())), rules)
    }
}

/// `check`, then each rule followed by `check`.
fn interleave<R: ?Sized>(check: Arc<R>, rules: Vec<Arc<R>>) -> Vec<Arc<R>> {
    let mut out = Vec::with_capacity(rules.len() * 2 + 1);
    out.push(check.clone());
    for rule in rules {
        out.push(rule);
        out.push(check.clone());
    }
    out
}

#[derive(Debug)]
struct LogicalCheck(Arc<PlanningClock>);

impl OptimizerRule for LogicalCheck {
    fn name(&self) -> &str {
        "passerelle_planning_deadline"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        self.0.check()?;
        Ok(Transformed::no(plan))
    }
}

#[derive(Debug)]
struct PhysicalCheck(Arc<PlanningClock>);

impl PhysicalOptimizerRule for PhysicalCheck {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.check()?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "passerelle_planning_deadline"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};

    fn statement(sql: &str) -> Statement {
        let mut parsed = DFParserBuilder::new(sql)
            .build()
            .unwrap()
            .parse_statements()
            .unwrap();
        match parsed.pop_front().unwrap() {
            DfStatement::Statement(s) => *s,
            other => panic!("not a statement: {other:?}"),
        }
    }

    /// `c0` then `cN = c(N-1) UNION ALL c(N-1)`: the planner's tree doubles at each level.
    pub(crate) fn doubling_ctes(levels: usize) -> String {
        let mut sql = String::from("WITH c0 AS (SELECT 1 AS x)");
        for i in 1..=levels {
            sql.push_str(&format!(
                ", c{i} AS (SELECT x FROM c{p} UNION ALL SELECT x FROM c{p})",
                p = i - 1
            ));
        }
        sql.push_str(&format!(" SELECT count(*) FROM c{levels}"));
        sql
    }

    #[test]
    fn doubling_ctes_are_refused_before_planning() {
        let functions = FunctionSet::for_tests();
        assert!(check_syntax(&statement(&doubling_ctes(3)), 10_000, functions).is_ok());
        let e = check_syntax(&statement(&doubling_ctes(17)), 10_000, functions).unwrap_err();
        assert!(
            matches!(&e, EngineError::TooComplex(m) if m.contains("limits.max_sql_nodes")),
            "{e}"
        );
        // Saturates instead of overflowing on absurd chains.
        assert!(check_syntax(&statement(&doubling_ctes(120)), 10_000, functions).is_err());
    }

    #[test]
    fn ordinary_queries_fit_the_default_budget() {
        let functions = FunctionSet::for_tests();
        let sql = "WITH a AS (SELECT region, count(*) AS n FROM sante.sejours GROUP BY region), \
                   b AS (SELECT * FROM a WHERE n > 10) \
                   SELECT a.region, b.n FROM a JOIN b ON a.region = b.region \
                   WHERE a.region IN ('11', '84') ORDER BY 1";
        check_syntax(&statement(sql), 200, functions).unwrap();
    }

    #[test]
    fn unknown_functions_are_refused_by_name() {
        let functions = FunctionSet::for_tests();
        let e = check_syntax(
            &statement("SELECT input_file_name() FROM t"),
            10_000,
            functions,
        )
        .unwrap_err();
        assert_eq!(
            e,
            EngineError::Refused("function `input_file_name` is not available on this hub".into())
        );
        check_syntax(&statement("SELECT upper(x) FROM t"), 10_000, functions).unwrap();
    }

    #[test]
    fn a_passed_deadline_fails_the_next_check() {
        let clock = PlanningClock::default();
        assert!(clock.check().is_ok(), "no deadline before planning starts");
        clock.start(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        let e = clock.check().unwrap_err();
        assert!(e.to_string().contains(PLANNING_DEADLINE));
        clock.start(Duration::from_secs(60));
        assert!(clock.check().is_ok());
    }
}
