//! `GET /v1/datasets[?habilitation=ID]`: the datasets the caller's habilitation opens, as the
//! caller sees them — hidden columns absent, each visible column with its treatment, type and
//! Table Schema description. Built from the `AccessPlan` only; it decides nothing.

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::query::refusal;
use super::{AppState, Authenticated};
use crate::policy::{ColumnTreatment, FieldType};

#[derive(Debug, Deserialize)]
pub struct DatasetsQuery {
    #[serde(default)]
    pub habilitation: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DatasetsView {
    pub habilitation: String,
    pub policy_version: String,
    pub datasets: Vec<DatasetView>,
}

#[derive(Debug, Serialize)]
pub struct DatasetView {
    /// `schema.table`, as written in SQL.
    pub name: String,
    pub title: String,
    pub description: String,
    /// The legal secret covering the data.
    pub secret: String,
    /// SQL queries allowed.
    pub query: bool,
    /// Per-record lookups allowed, by this key column.
    pub lookup_key: Option<String>,
    /// Only aggregates may be asked for.
    pub aggregate_only: bool,
    /// The habilitation restricts which rows are visible.
    pub rows_restricted: bool,
    pub columns: Vec<ColumnView>,
}

#[derive(Debug, Serialize)]
pub struct ColumnView {
    pub name: String,
    pub title: String,
    pub description: String,
    /// Table Schema type of the raw column.
    pub r#type: FieldType,
    /// `clear`, `pseudonymised`, `redacted`, `partial`, `year`, `month`, `departement`,
    /// `rounded`.
    pub treatment: &'static str,
    /// The treatment in words (e.g. "date generalised to the year").
    pub treatment_detail: String,
}

fn treatment_code(t: &ColumnTreatment) -> &'static str {
    use crate::policy::treatment::DateGranularity;
    match t {
        ColumnTreatment::Clear => "clear",
        ColumnTreatment::Pseudonymised { .. } => "pseudonymised",
        ColumnTreatment::Redacted => "redacted",
        ColumnTreatment::Partial { .. } => "partial",
        ColumnTreatment::DateGeneralised {
            granularity: DateGranularity::Year,
        } => "year",
        ColumnTreatment::DateGeneralised {
            granularity: DateGranularity::Month,
        } => "month",
        ColumnTreatment::PostcodeDepartement => "departement",
        ColumnTreatment::Rounded { .. } => "rounded",
        ColumnTreatment::Hidden => "hidden",
    }
}

pub async fn datasets(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Extension(draft): Extension<super::audit::AuditDraft>,
    Query(params): Query<DatasetsQuery>,
) -> Result<Json<DatasetsView>, ApiError> {
    let set = state.policy.current();
    let today = chrono::Utc::now().date_naive();
    let habilitation = set
        .resolve(&principal, params.habilitation.as_deref(), today)
        .map_err(|r| refusal(&r))?;
    let plan = set.plan(&principal, habilitation);
    draft.plan(&plan, None);
    let mut datasets = Vec::new();
    for d in plan.datasets.iter().filter(|d| d.accessible()) {
        let Some(entry) = set.catalog.dataset(&d.name) else {
            continue;
        };
        // SECURITY: only the caller's view: hidden columns are not listed at all.
        let columns = d
            .visible_columns()
            .filter_map(|c| {
                entry.field(&c.name).map(|f| ColumnView {
                    name: c.name.clone(),
                    title: f.title.clone(),
                    description: f.description.clone(),
                    r#type: f.field_type,
                    treatment: treatment_code(&c.treatment),
                    treatment_detail: c.treatment.label(),
                })
            })
            .collect();
        datasets.push(DatasetView {
            name: d.name.clone(),
            title: d.title.clone(),
            description: entry.description.clone(),
            secret: entry.secret.clone(),
            query: d.query,
            lookup_key: d.lookup_key.clone(),
            aggregate_only: d.aggregate,
            rows_restricted: !d.row_filters.is_empty(),
            columns,
        });
    }
    Ok(Json(DatasetsView {
        habilitation: habilitation.id.clone(),
        policy_version: plan.policy_version.clone(),
        datasets,
    }))
}
