//! `AccessPlan`: for one principal under one habilitation, every dataset it may touch, each
//! column's treatment, the row filters and the allowed actions — with the policy lines that
//! decided each item. The engine and lookups apply it; they never decide anything themselves.
//!
//! Plans are decided by Casbin's enforcer (`policy::enforcer`), once per policy version and
//! habilitation; binding a plan's row filters to a caller (`DatasetPlan::bind`) is the only
//! per-caller work.

use serde::Serialize;

use super::catalog::{ColumnClass, Dataset};
use super::filter::FilterExpr;
use super::habilitation::{Habilitation, HabilitationKind, LegalBasis};
use super::hierarchy::Via;
use super::rules::Rule;
use super::treatment::ColumnTreatment;
use crate::identity::Principal;

/// Why a decision was made: the policy line, or the default.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reason {
    /// `policy.csv`, `habilitations.toml` or `default`.
    pub source: &'static str,
    pub line: Option<usize>,
    pub text: String,
    /// For a rule inherited from a profile (`g`) or written for a dataset group (`g2`): the
    /// chain of lines through which it applies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<Via>,
}

impl Reason {
    pub(super) fn rule(rule: &Rule, via: Vec<Via>) -> Reason {
        Reason {
            source: "policy.csv",
            line: Some(rule.line),
            text: rule.text.clone(),
            via,
        }
    }
    pub(super) fn default_deny(what: &str) -> Reason {
        Reason {
            source: "default",
            line: None,
            text: format!("no rule allows {what}: denied by default"),
            via: Vec::new(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.source, line, self.text)?,
            None => write!(f, "{}", self.text)?,
        }
        for via in &self.via {
            write!(f, " {via}")?;
        }
        Ok(())
    }
}

/// One column of a dataset in a plan.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ColumnPlan {
    name: String,
    class: ColumnClass,
    treatment: ColumnTreatment,
    reasons: Vec<Reason>,
}

impl ColumnPlan {
    /// A column decided by hand (tests, benchmarks); the hub's plans come from
    /// `PolicySet::plan`.
    pub fn new(name: impl Into<String>, class: ColumnClass, treatment: ColumnTreatment) -> Self {
        Self {
            name: name.into(),
            class,
            treatment,
            reasons: Vec::new(),
        }
    }

    pub(super) fn decided(
        name: &str,
        class: ColumnClass,
        treatment: ColumnTreatment,
        reasons: Vec<Reason>,
    ) -> Self {
        Self {
            name: name.to_string(),
            class,
            treatment,
            reasons,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn class(&self) -> ColumnClass {
        self.class
    }

    pub fn treatment(&self) -> &ColumnTreatment {
        &self.treatment
    }

    /// The policy lines (or the default) that decided the treatment.
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }
}

/// A row filter, bound to the principal's attributes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowFilter {
    /// The predicate as written in policy.csv.
    source: String,
    /// The predicate bound to the principal's attributes (a tree; `source` is its text).
    #[schema(value_type = Object)]
    expr: FilterExpr,
    reason: Reason,
}

impl RowFilter {
    pub(super) fn new(source: String, expr: FilterExpr, reason: Reason) -> Self {
        Self {
            source,
            expr,
            reason,
        }
    }

    /// The predicate as written in policy.csv.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The predicate, bound to the principal's attributes.
    pub fn expr(&self) -> &FilterExpr {
        &self.expr
    }

    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

/// One dataset in a plan.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DatasetPlan {
    name: String,
    title: String,
    query: bool,
    aggregate: bool,
    /// Key column of per-record lookups, when lookups are allowed.
    lookup_key: Option<String>,
    /// Row filters, all applied (AND).
    row_filters: Vec<RowFilter>,
    /// Every column of the catalog, in order; hidden ones say so (the engine drops them).
    columns: Vec<ColumnPlan>,
    /// Reasons of the dataset-level decisions (query, lookup, aggregate).
    reasons: Vec<Reason>,
    /// Set when the dataset is refused for this principal although rules allow it (e.g. a
    /// filter needs a claim the token lacks).
    refused: Option<String>,
}

impl DatasetPlan {
    /// A dataset open to queries, decided by hand (tests, benchmarks); the hub's plans come
    /// from `PolicySet::plan`.
    pub fn new(name: impl Into<String>, columns: Vec<ColumnPlan>) -> Self {
        Self {
            name: name.into(),
            title: String::new(),
            query: true,
            aggregate: false,
            lookup_key: None,
            row_filters: Vec::new(),
            columns,
            reasons: Vec::new(),
            refused: None,
        }
    }

    /// The same plan with one more row filter (tests, benchmarks).
    pub fn with_row_filter(mut self, expr: FilterExpr) -> Self {
        self.row_filters.push(RowFilter {
            source: String::new(),
            expr,
            reason: Reason {
                source: "default",
                line: None,
                text: String::new(),
                via: Vec::new(),
            },
        });
        self
    }

    /// A dataset as Casbin decided it for a habilitation (filters not yet bound).
    pub(super) fn decided(
        dataset: &Dataset,
        query: bool,
        aggregate: bool,
        lookup_key: Option<String>,
        row_filters: Vec<RowFilter>,
        columns: Vec<ColumnPlan>,
        reasons: Vec<Reason>,
    ) -> Self {
        Self {
            name: dataset.name().to_string(),
            title: dataset.title.clone(),
            query,
            aggregate,
            lookup_key,
            row_filters,
            columns,
            reasons,
            refused: None,
        }
    }

    /// Every dataset refused: what a habilitation gets when its plan cannot be decided.
    pub(super) fn undecidable(dataset: &Dataset) -> Self {
        Self {
            name: dataset.name().to_string(),
            title: dataset.title.clone(),
            query: false,
            aggregate: false,
            lookup_key: None,
            row_filters: Vec::new(),
            columns: Vec::new(),
            reasons: vec![Reason::default_deny(&format!(
                "any use of {}",
                dataset.name()
            ))],
            refused: Some("the access decision could not be made: nothing is accessible".into()),
        }
    }

    /// This dataset's decisions with its row filters bound to `principal`'s attributes; a
    /// filter that needs a claim the caller lacks refuses the dataset.
    pub fn bind(&self, principal: &Principal) -> DatasetPlan {
        let mut bound = self.clone();
        for filter in &mut bound.row_filters {
            match filter.expr.bind(principal) {
                Ok(expr) => filter.expr = expr,
                Err(missing) => {
                    // SECURITY: a filter that needs a claim the caller lacks refuses the dataset.
                    if bound.refused.is_none() {
                        bound.refused = Some(format!(
                            "the row filter at policy.csv:{} needs the caller's {}, which the token does not carry",
                            filter.reason.line.unwrap_or(0),
                            missing.claim()
                        ));
                    }
                }
            }
        }
        bound
    }

    /// `schema.table`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// True when the principal may do anything with this dataset.
    pub fn accessible(&self) -> bool {
        self.refused.is_none() && (self.query || self.aggregate || self.lookup_key.is_some())
    }

    /// SQL queries are allowed on it.
    pub fn query_allowed(&self) -> bool {
        self.query
    }

    /// Aggregate outputs may be asked for (the `aggregate` act).
    pub fn aggregates_allowed(&self) -> bool {
        self.aggregate
    }

    /// Per-record lookups are allowed on it (and not refused for this principal).
    pub fn lookup_allowed(&self) -> bool {
        self.refused.is_none() && self.lookup_key.is_some()
    }

    /// The key column of per-record lookups, when lookups are allowed.
    pub fn lookup_key(&self) -> Option<&str> {
        self.lookup_key.as_deref()
    }

    /// The row filters, all applied (AND).
    pub fn row_filters(&self) -> &[RowFilter] {
        &self.row_filters
    }

    /// Its visible rows are restricted by a row filter.
    pub fn rows_restricted(&self) -> bool {
        !self.row_filters.is_empty()
    }

    /// Every column of the catalog, in order, hidden ones included (they say so).
    pub fn columns(&self) -> &[ColumnPlan] {
        &self.columns
    }

    pub fn visible_columns(&self) -> impl Iterator<Item = &ColumnPlan> {
        self.columns.iter().filter(|c| !c.treatment.is_hidden())
    }

    /// The reasons of the dataset-level decisions (query, lookup, aggregate).
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    /// Why the dataset is refused to this principal although rules allow it.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

/// The habilitation a plan was built under (what audit and `/v1/me` show).
#[derive(Debug, Clone, Serialize)]
pub struct HabilitationSummary {
    pub id: String,
    pub title: String,
    pub kind: HabilitationKind,
    pub legal_basis: LegalBasis,
    pub purpose: String,
    pub end: chrono::NaiveDate,
    pub pseudonymisation_domain: String,
}

/// What one principal may do under one habilitation.
#[derive(Debug, Clone, Serialize)]
pub struct AccessPlan {
    habilitation: HabilitationSummary,
    policy_version: String,
    /// Accessible datasets only.
    datasets: Vec<DatasetPlan>,
}

impl AccessPlan {
    /// A plan of `datasets` under `habilitation`, for policy version `policy_version`.
    pub fn new(
        habilitation: HabilitationSummary,
        policy_version: impl Into<String>,
        datasets: Vec<DatasetPlan>,
    ) -> Self {
        Self {
            habilitation,
            policy_version: policy_version.into(),
            datasets,
        }
    }

    /// The habilitation the plan was built under.
    pub fn habilitation(&self) -> &HabilitationSummary {
        &self.habilitation
    }

    /// The policy set version the plan was built from.
    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// The datasets the principal may touch.
    pub fn datasets(&self) -> impl Iterator<Item = &DatasetPlan> {
        self.datasets.iter()
    }

    pub fn dataset(&self, name: &str) -> Option<&DatasetPlan> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// Some dataset is open to SQL queries.
    pub fn allows_queries(&self) -> bool {
        self.datasets.iter().any(|d| d.query)
    }
}

impl HabilitationSummary {
    pub fn of(h: &Habilitation) -> Self {
        Self {
            id: h.id.clone(),
            title: h.title.clone(),
            kind: h.kind,
            legal_basis: h.legal_basis.clone(),
            purpose: h.purpose.clone(),
            end: h.end,
            pseudonymisation_domain: h.pseudonymisation_domain.clone(),
        }
    }
}
