//! Row filters: SQL predicates written by operators in `policy.csv`, parsed against the
//! dataset's columns with an allow-list of expression kinds, and kept as a small typed tree
//! ([`FilterExpr`]) that the engine turns into a DataFusion expression. Never a string that is
//! concatenated into SQL.
//!
//! Allowed: column references, literals (string, number, boolean, NULL, `DATE '…'`),
//! comparisons, `AND`, `OR`, `NOT`, `IS [NOT] NULL`, `[NOT] IN (literals)`,
//! `[NOT] BETWEEN literal AND literal`, and principal attributes (`principal.organisation`,
//! `principal.subject`, `principal.idp`) which are replaced by the caller's values — a caller
//! who lacks one gets no rows of that dataset.

use serde::Serialize;
use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::identity::Principal;

/// Deepest nesting accepted in a filter.
const MAX_DEPTH: usize = 32;

/// A literal value in a filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Literal {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Date(chrono::NaiveDate),
    Null,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A principal attribute usable in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalAttribute {
    /// The organisation SIRET (`principal.organisation`).
    Organisation,
    /// The subject (`principal.subject`).
    Subject,
    /// The identity provider (`principal.idp`).
    Idp,
}

impl PrincipalAttribute {
    pub fn claim(self) -> &'static str {
        match self {
            PrincipalAttribute::Organisation => "organisation (siret)",
            PrincipalAttribute::Subject => "subject (sub)",
            PrincipalAttribute::Idp => "identity provider (idp_id)",
        }
    }
}

/// A validated filter expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterExpr {
    Column(String),
    Literal(Literal),
    Principal(PrincipalAttribute),
    Compare(Box<FilterExpr>, Comparison, Box<FilterExpr>),
    And(Box<FilterExpr>, Box<FilterExpr>),
    Or(Box<FilterExpr>, Box<FilterExpr>),
    Not(Box<FilterExpr>),
    IsNull(Box<FilterExpr>, bool),
    InList(Box<FilterExpr>, Vec<Literal>, bool),
    Between(Box<FilterExpr>, Literal, Literal, bool),
}

/// Why a filter is refused (for `check`, with the rule's line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("does not parse as a SQL predicate: {0}")]
    Syntax(String),
    #[error("`{0}` is not a column of this dataset")]
    UnknownColumn(String),
    #[error("{0} is not allowed in a row filter")]
    Forbidden(String),
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
}

impl FilterExpr {
    /// Parses `text` and checks it against `columns` (the dataset's column names).
    pub fn parse(text: &str, columns: &[&str]) -> Result<FilterExpr, FilterError> {
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(text)
            .map_err(|e| FilterError::Syntax(e.to_string()))?;
        let expr = parser
            .parse_expr()
            .map_err(|e| FilterError::Syntax(e.to_string()))?;
        if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
            return Err(FilterError::Syntax(
                "unexpected text after the predicate".into(),
            ));
        }
        convert(&expr, columns, 0)
    }

    /// The principal attributes this filter needs.
    pub fn needs(&self) -> Vec<PrincipalAttribute> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let FilterExpr::Principal(a) = e
                && !out.contains(a)
            {
                out.push(*a);
            }
        });
        out
    }

    /// True when the filter reads `column`.
    pub fn mentions(&self, column: &str) -> bool {
        let mut found = false;
        self.visit(&mut |e| found |= matches!(e, FilterExpr::Column(c) if c == column));
        found
    }

    /// Replaces principal attributes by the caller's values; `Err` names the missing claim.
    pub fn bind(&self, principal: &Principal) -> Result<FilterExpr, PrincipalAttribute> {
        Ok(match self {
            FilterExpr::Principal(a) => {
                let value = match a {
                    PrincipalAttribute::Organisation => principal.organisation_siret.clone(),
                    PrincipalAttribute::Subject => Some(principal.subject.clone()),
                    PrincipalAttribute::Idp => principal.idp_id.clone(),
                };
                // SECURITY: a missing claim is never defaulted: the dataset is refused.
                FilterExpr::Literal(Literal::String(value.ok_or(*a)?))
            }
            FilterExpr::Column(_) | FilterExpr::Literal(_) => self.clone(),
            FilterExpr::Compare(l, op, r) => FilterExpr::Compare(
                Box::new(l.bind(principal)?),
                *op,
                Box::new(r.bind(principal)?),
            ),
            FilterExpr::And(l, r) => {
                FilterExpr::And(Box::new(l.bind(principal)?), Box::new(r.bind(principal)?))
            }
            FilterExpr::Or(l, r) => {
                FilterExpr::Or(Box::new(l.bind(principal)?), Box::new(r.bind(principal)?))
            }
            FilterExpr::Not(e) => FilterExpr::Not(Box::new(e.bind(principal)?)),
            FilterExpr::IsNull(e, n) => FilterExpr::IsNull(Box::new(e.bind(principal)?), *n),
            FilterExpr::InList(e, l, n) => {
                FilterExpr::InList(Box::new(e.bind(principal)?), l.clone(), *n)
            }
            FilterExpr::Between(e, lo, hi, n) => {
                FilterExpr::Between(Box::new(e.bind(principal)?), lo.clone(), hi.clone(), *n)
            }
        })
    }

    fn visit(&self, f: &mut impl FnMut(&FilterExpr)) {
        f(self);
        match self {
            FilterExpr::Compare(l, _, r) | FilterExpr::And(l, r) | FilterExpr::Or(l, r) => {
                l.visit(f);
                r.visit(f);
            }
            FilterExpr::Not(e)
            | FilterExpr::IsNull(e, _)
            | FilterExpr::InList(e, _, _)
            | FilterExpr::Between(e, _, _, _) => e.visit(f),
            FilterExpr::Column(_) | FilterExpr::Literal(_) | FilterExpr::Principal(_) => {}
        }
    }
}

fn convert(expr: &Expr, columns: &[&str], depth: usize) -> Result<FilterExpr, FilterError> {
    if depth > MAX_DEPTH {
        return Err(FilterError::TooDeep);
    }
    let next = |e: &Expr| convert(e, columns, depth + 1).map(Box::new);
    Ok(match expr {
        Expr::Identifier(ident) => {
            let name = ident.value.as_str();
            if !columns.contains(&name) {
                return Err(FilterError::UnknownColumn(name.to_string()));
            }
            FilterExpr::Column(name.to_string())
        }
        Expr::CompoundIdentifier(parts) => {
            let names: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            match names.as_slice() {
                ["principal", "organisation"] => {
                    FilterExpr::Principal(PrincipalAttribute::Organisation)
                }
                ["principal", "subject"] => FilterExpr::Principal(PrincipalAttribute::Subject),
                ["principal", "idp"] => FilterExpr::Principal(PrincipalAttribute::Idp),
                _ => {
                    return Err(FilterError::Forbidden(format!(
                        "`{}` (only columns and principal.organisation, principal.subject, principal.idp)",
                        names.join(".")
                    )));
                }
            }
        }
        Expr::Value(v) => FilterExpr::Literal(literal(&v.value)?),
        Expr::TypedString(typed) => date_literal(typed)?,
        Expr::Nested(inner) => convert(inner, columns, depth + 1)?,
        Expr::BinaryOp { left, op, right } => {
            let comparison = match op {
                BinaryOperator::And => return Ok(FilterExpr::And(next(left)?, next(right)?)),
                BinaryOperator::Or => return Ok(FilterExpr::Or(next(left)?, next(right)?)),
                BinaryOperator::Eq => Comparison::Eq,
                BinaryOperator::NotEq => Comparison::NotEq,
                BinaryOperator::Lt => Comparison::Lt,
                BinaryOperator::LtEq => Comparison::LtEq,
                BinaryOperator::Gt => Comparison::Gt,
                BinaryOperator::GtEq => Comparison::GtEq,
                other => return Err(FilterError::Forbidden(format!("operator `{other}`"))),
            };
            FilterExpr::Compare(next(left)?, comparison, next(right)?)
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => FilterExpr::Not(next(expr)?),
        Expr::IsNull(e) => FilterExpr::IsNull(next(e)?, false),
        Expr::IsNotNull(e) => FilterExpr::IsNull(next(e)?, true),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let values = list
                .iter()
                .map(|item| match convert(item, columns, depth + 1)? {
                    FilterExpr::Literal(l) => Ok(l),
                    _ => Err(FilterError::Forbidden("a non-literal inside IN (…)".into())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            FilterExpr::InList(next(expr)?, values, *negated)
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let bound = |e: &Expr| match convert(e, columns, depth + 1)? {
                FilterExpr::Literal(l) => Ok(l),
                _ => Err(FilterError::Forbidden("a non-literal BETWEEN bound".into())),
            };
            FilterExpr::Between(next(expr)?, bound(low)?, bound(high)?, *negated)
        }
        Expr::Function(_) => return Err(FilterError::Forbidden("a function call".into())),
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            return Err(FilterError::Forbidden("a subquery".into()));
        }
        Expr::Cast { .. } => return Err(FilterError::Forbidden("a cast".into())),
        _ => return Err(FilterError::Forbidden("this kind of expression".into())),
    })
}

fn literal(value: &Value) -> Result<Literal, FilterError> {
    Ok(match value {
        Value::SingleQuotedString(s) => Literal::String(s.clone()),
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Literal::Integer(i),
            Err(_) => Literal::Float(
                n.parse::<f64>()
                    .map_err(|_| FilterError::Syntax(format!("`{n}` is not a number")))?,
            ),
        },
        Value::Boolean(b) => Literal::Boolean(*b),
        Value::Null => Literal::Null,
        other => return Err(FilterError::Forbidden(format!("the literal `{other}`"))),
    })
}

fn date_literal(typed: &sqlparser::ast::TypedString) -> Result<FilterExpr, FilterError> {
    let is_date = matches!(typed.data_type, sqlparser::ast::DataType::Date);
    let text = match &typed.value.value {
        Value::SingleQuotedString(s) => s.clone(),
        _ => String::new(),
    };
    match (
        is_date,
        chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d"),
    ) {
        (true, Ok(d)) => Ok(FilterExpr::Literal(Literal::Date(d))),
        _ => Err(FilterError::Forbidden(
            "a typed literal other than DATE 'YYYY-MM-DD'".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[&str] = &["region", "siret", "cout", "date_entree"];

    #[test]
    fn accepts_the_allow_list() {
        for text in [
            "region = '84'",
            "region IN ('84', '93') AND cout > 10.5",
            "NOT (region <> '11') OR cout IS NULL",
            "cout BETWEEN 0 AND 1000",
            "date_entree >= DATE '2023-01-01'",
            "siret = principal.organisation",
        ] {
            assert!(FilterExpr::parse(text, COLUMNS).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for (text, why) in [
            ("nom = 'x'", "UnknownColumn"),
            ("lower(region) = '84'", "Forbidden"),
            ("region = (SELECT max(region) FROM t)", "Forbidden"),
            ("CAST(cout AS INT) > 1", "Forbidden"),
            ("region = '84'; DROP TABLE x", "Syntax"),
            ("region = '84' --", "ok-comment"),
            ("principal.email = 'x'", "Forbidden"),
            ("region LIKE '8%'", "Forbidden"),
            ("cout + 1 > 2", "Forbidden"),
        ] {
            let result = FilterExpr::parse(text, COLUMNS);
            match why {
                "ok-comment" => assert!(result.is_ok(), "{text}"),
                "UnknownColumn" => assert!(
                    matches!(result, Err(FilterError::UnknownColumn(_))),
                    "{text}: {result:?}"
                ),
                "Forbidden" => assert!(
                    matches!(result, Err(FilterError::Forbidden(_))),
                    "{text}: {result:?}"
                ),
                _ => assert!(
                    matches!(result, Err(FilterError::Syntax(_))),
                    "{text}: {result:?}"
                ),
            }
        }
    }

    #[test]
    fn principal_attributes_bind_or_refuse() {
        let f = FilterExpr::parse("siret = principal.organisation", COLUMNS).unwrap();
        assert_eq!(f.needs(), vec![PrincipalAttribute::Organisation]);
        let mut p = crate::policy::tests_support::principal(&[], None);
        assert_eq!(f.bind(&p), Err(PrincipalAttribute::Organisation));
        p.organisation_siret = Some("13000170500016".into());
        assert_eq!(
            f.bind(&p).unwrap(),
            FilterExpr::Compare(
                Box::new(FilterExpr::Column("siret".into())),
                Comparison::Eq,
                Box::new(FilterExpr::Literal(Literal::String(
                    "13000170500016".into()
                )))
            )
        );
    }
}
