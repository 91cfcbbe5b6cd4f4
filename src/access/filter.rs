//! Policy row filters (typed trees from `policy::filter`) → DataFusion expressions. Built as
//! expression objects, never as SQL text.

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, Operator, binary_expr, lit};

use crate::policy::filter::{Comparison, FilterExpr, Literal};

fn literal(l: &Literal) -> Expr {
    match l {
        Literal::String(s) => lit(s.clone()),
        Literal::Integer(i) => lit(*i),
        Literal::Float(f) => lit(*f),
        Literal::Boolean(b) => lit(*b),
        Literal::Date(d) => {
            let days = d
                .signed_duration_since(chrono::NaiveDate::default())
                .num_days();
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .map(|e| {
                    e.signed_duration_since(chrono::NaiveDate::default())
                        .num_days()
                })
                .unwrap_or(0);
            Expr::Literal(ScalarValue::Date32(Some((days - epoch) as i32)), None)
        }
        Literal::Null => Expr::Literal(ScalarValue::Null, None),
    }
}

/// The DataFusion form of a bound filter. `Principal` nodes never reach here (they are bound
/// by `policy` first); one that does becomes FALSE (no rows).
pub fn to_expr(f: &FilterExpr) -> Expr {
    match f {
        FilterExpr::Column(name) => Expr::Column(Column::from_name(name.clone())),
        FilterExpr::Literal(l) => literal(l),
        // SECURITY: an unbound principal attribute selects nothing.
        FilterExpr::Principal(_) => lit(false),
        FilterExpr::Compare(l, op, r) => {
            let op = match op {
                Comparison::Eq => Operator::Eq,
                Comparison::NotEq => Operator::NotEq,
                Comparison::Lt => Operator::Lt,
                Comparison::LtEq => Operator::LtEq,
                Comparison::Gt => Operator::Gt,
                Comparison::GtEq => Operator::GtEq,
            };
            binary_expr(to_expr(l), op, to_expr(r))
        }
        FilterExpr::And(l, r) => to_expr(l).and(to_expr(r)),
        FilterExpr::Or(l, r) => to_expr(l).or(to_expr(r)),
        FilterExpr::Not(e) => Expr::Not(Box::new(to_expr(e))),
        FilterExpr::IsNull(e, negated) => {
            if *negated {
                to_expr(e).is_not_null()
            } else {
                to_expr(e).is_null()
            }
        }
        FilterExpr::InList(e, list, negated) => {
            to_expr(e).in_list(list.iter().map(literal).collect(), *negated)
        }
        FilterExpr::Between(e, lo, hi, negated) => {
            if *negated {
                to_expr(e).not_between(literal(lo), literal(hi))
            } else {
                to_expr(e).between(literal(lo), literal(hi))
            }
        }
    }
}

/// True when the one-row `batch` (raw columns) passes every row filter of `plan` (lookups).
pub fn row_passes_filters(
    plan: &crate::policy::DatasetPlan,
    batch: &datafusion::arrow::record_batch::RecordBatch,
) -> datafusion::error::Result<bool> {
    use datafusion::arrow::array::{Array, AsArray};
    let schema = datafusion::common::DFSchema::try_from(batch.schema().as_ref().clone())?;
    // A bare context only to coerce types (`age > 18` on an Int32 column) as SQL would.
    let ctx = datafusion::execution::context::SessionContext::new();
    for filter in plan.row_filters() {
        let expr = to_expr(filter.expr());
        let physical = ctx.create_physical_expr(expr, &schema)?;
        let result = physical.evaluate(batch)?.into_array(batch.num_rows())?;
        let Some(passed) = result.as_boolean_opt() else {
            return Ok(false);
        };
        // SECURITY: NULL (unknown) is not a pass.
        if passed.len() != 1 || !passed.is_valid(0) || !passed.value(0) {
            return Ok(false);
        }
    }
    Ok(true)
}
