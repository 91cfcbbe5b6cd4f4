//! The statement gate: exactly one read-only query, checked twice — on the SQL text (one
//! `SELECT`/`WITH`/`VALUES` statement, no table functions, no recursive CTE) and on the
//! logical plan (an allow-list of plan nodes, every scan a secure provider — or the audit
//! table, which only operators' sessions hold). The plan-level
//! check is the one every future front end (Flight SQL) must go through.

use std::ops::ControlFlow;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{SetExpr, Statement, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;

use super::EngineError;
use super::audit_table::AuditEventsTable;
use super::provider::SecureTableProvider;

/// Parses `sql` (nested at most `max_nesting` deep) and returns the single read-only query it
/// holds.
pub fn parse_read_only(
    sql: &str,
    max_nesting: usize,
    allow_recursive: bool,
) -> Result<DfStatement, EngineError> {
    let dialect = GenericDialect {};
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(max_nesting)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    // SECURITY: deep nesting is refused before planning (stack and planner time).
    let mut statements = parsed.map_err(|e| match e.find_root() {
        datafusion::error::DataFusionError::SQL(inner, _)
            if matches!(inner.as_ref(), ParserError::RecursionLimitExceeded) =>
        {
            EngineError::Refused(format!(
                "the SQL is nested more than {max_nesting} levels deep"
            ))
        }
        _ => EngineError::Invalid(format!("the SQL does not parse: {e}")),
    })?;
    if statements.len() != 1 {
        return Err(EngineError::Refused(
            "send exactly one statement per request".into(),
        ));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| EngineError::Refused("no statement".into()))?;
    let DfStatement::Statement(inner) = &statement else {
        return Err(EngineError::Refused(
            "only read-only queries (SELECT, WITH, VALUES) are accepted".into(),
        ));
    };
    let Statement::Query(query) = inner.as_ref() else {
        return Err(EngineError::Refused(
            "only read-only queries (SELECT, WITH, VALUES) are accepted".into(),
        ));
    };
    if let Some(with) = &query.with
        && with.recursive
        && !allow_recursive
    {
        return Err(EngineError::Refused(
            "recursive common table expressions are not allowed".into(),
        ));
    }
    if matches!(
        query.body.as_ref(),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
    ) {
        return Err(EngineError::Refused(
            "only read-only queries are accepted".into(),
        ));
    }
    // SECURITY: table functions (`range(…)`, file readers) and exotic relations are refused.
    struct Relations(Option<String>);
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let refused = match factor {
                TableFactor::Table { args: Some(_), .. } => Some("table functions are not allowed"),
                TableFactor::Table { .. }
                | TableFactor::Derived { .. }
                | TableFactor::NestedJoin { .. } => None,
                _ => Some("this kind of relation is not allowed (tables and subqueries only)"),
            };
            match refused {
                Some(why) => {
                    self.0 = Some(why.to_string());
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(()),
            }
        }
    }
    let mut relations = Relations(None);
    let _ = inner.visit(&mut relations);
    if let Some(why) = relations.0 {
        return Err(EngineError::Refused(why));
    }
    Ok(statement)
}

/// The plan-level allow-list: read-only relational nodes only, every scan a secure provider.
/// Returns the datasets the plan scans (for the audit).
pub fn check_plan(plan: &LogicalPlan, allow_recursive: bool) -> Result<Vec<String>, EngineError> {
    let mut refusal: Option<String> = None;
    let mut scanned: Vec<String> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        let why = match node {
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Subquery(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Distinct(_) => None,
            // SECURITY (availability): one row of a long list becomes that many rows, with
            // every other column copied into each, in one batch: unbounded.
            LogicalPlan::Unnest(_) => Some("`UNNEST` is not available on this hub".to_string()),
            LogicalPlan::RecursiveQuery(_) if allow_recursive => None,
            LogicalPlan::TableScan(scan) => {
                let secure = source_as_provider(&scan.source).ok().is_some_and(|p| {
                    let any = p.as_ref() as &dyn std::any::Any;
                    any.downcast_ref::<SecureTableProvider>().is_some()
                        || any.downcast_ref::<AuditEventsTable>().is_some()
                });
                let name = scan.table_name.to_string();
                if secure && !scanned.contains(&name) {
                    scanned.push(name);
                }
                // SECURITY: a scan of anything but a secure provider is refused.
                (!secure).then(|| format!("table `{}` is not available", scan.table_name))
            }
            other => Some(format!(
                "`{}` is not allowed",
                other
                    .display()
                    .to_string()
                    .split(':')
                    .next()
                    .unwrap_or("this statement")
            )),
        };
        match why {
            Some(why) => {
                refusal = Some(why);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    match refusal {
        Some(why) => Err(EngineError::Refused(why)),
        None => Ok(scanned),
    }
}

/// What a checked, optimised plan may cost: the bytes its scans read (the compressed columns
/// each reads, counted once per appearance: `SecureTableProvider::read_bytes`), and whether
/// it joins two relations without any equality (a cross or nested-loop join, whose output can
/// be the product of its inputs).
pub fn cost_of(plan: &LogicalPlan) -> (u64, bool) {
    let mut bytes = 0u64;
    let mut unbounded_join = false;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                if let Ok(p) = source_as_provider(&scan.source) {
                    let any = p.as_ref() as &dyn std::any::Any;
                    if let Some(secure) = any.downcast_ref::<SecureTableProvider>() {
                        let read = secure.read_bytes(scan.projection.as_ref(), &scan.filters);
                        bytes = bytes.saturating_add(read);
                    }
                }
            }
            LogicalPlan::Join(join) if join.on.is_empty() => unbounded_join = true,
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (bytes, unbounded_join)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The accepted statement is one read-only query, never recursive.
    fn is_one_query(statement: &DfStatement) -> bool {
        matches!(statement, DfStatement::Statement(inner)
            if matches!(inner.as_ref(), Statement::Query(q)
                if !q.with.as_ref().is_some_and(|w| w.recursive)))
    }

    proptest! {
        /// Any text: an answer (never a panic), and what is accepted is one read-only query.
        #[test]
        fn any_text_is_answered_and_only_queries_pass(sql in "\\PC{0,200}") {
            if let Ok(statement) = parse_read_only(&sql, 40, false) {
                prop_assert!(is_one_query(&statement), "{sql}");
            }
        }

        /// The gate's own words, shuffled: the same.
        #[test]
        fn sql_words_in_any_order_are_answered_and_only_queries_pass(
            words in proptest::collection::vec(proptest::sample::select(vec![
                "SELECT", "WITH", "RECURSIVE", "a", "AS", "(", ")", "FROM", "t", "*", ",", ";",
                "INSERT", "INTO", "VALUES", "1", "UPDATE", "SET", "=", "DELETE", "CREATE",
                "TABLE", "EXTERNAL", "COPY", "TO", "'x'", "UNION", "ALL", "range", "JOIN", "ON",
                "WHERE", "EXPLAIN", "DROP", "PREPARE", "EXECUTE", "LATERAL", "UNNEST",
            ]), 0..24),
        ) {
            let sql = words.join(" ");
            if let Ok(statement) = parse_read_only(&sql, 40, false) {
                prop_assert!(is_one_query(&statement), "{sql}");
            }
        }

        /// A write, alone or after a query, is refused.
        #[test]
        fn a_write_is_refused_alone_or_after_a_query(
            prefix in proptest::sample::select(vec!["", "SELECT 1", "WITH a AS (SELECT 1) SELECT * FROM a"]),
            separator in proptest::sample::select(vec![";", "; ", ";\n", " ; "]),
            write in proptest::sample::select(vec![
                "INSERT INTO t VALUES (1)", "DELETE FROM t", "UPDATE t SET a = 1",
                "CREATE TABLE t (a INT)", "COPY t TO 'x'", "DROP TABLE t", "SET x = 1",
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "EXPLAIN SELECT 1", "PREPARE p AS SELECT 1",
            ]),
        ) {
            let alone = parse_read_only(write, 40, false);
            prop_assert!(alone.is_err(), "{write}");
            let sql = format!("{prefix}{separator}{write}");
            prop_assert!(parse_read_only(&sql, 40, false).is_err(), "{sql}");
        }

        /// Nesting past the limit is refused, never a stack overflow.
        #[test]
        fn nesting_past_the_limit_is_refused(depth in 41usize..400) {
            let sql = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
            let refused = matches!(parse_read_only(&sql, 40, false), Err(EngineError::Refused(_)));
            prop_assert!(refused, "depth {depth}");
        }
    }
}
