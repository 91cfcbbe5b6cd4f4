//! `GET /v1/me`, `GET /v1/datasets[?habilitation=ID]` and `GET /v1/tables/{id}`: what the
//! caller is and may see, as the gateway's views, in JSON.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::gateway::{DatasetsView, MeView, TableInfo};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DatasetsQuery {
    /// The habilitation to list (needed when the caller holds several).
    #[serde(default)]
    pub habilitation: Option<String>,
}

/// `GET /v1/me`.
#[utoipa::path(
    get, path = "/v1/me", tag = "catalog",
    summary = "Who the caller is and what each of its habilitations lets it do",
    responses((status = OK, description = "The caller as the hub understood its token", body = MeView)),
)]
pub async fn me(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<MeView>, ApiError> {
    Ok(Json(state.gateway.me(&caller).await?))
}

/// `GET /v1/datasets`.
#[utoipa::path(
    get, path = "/v1/datasets", tag = "catalog",
    summary = "The datasets a habilitation opens, as the caller sees them",
    params(DatasetsQuery),
    responses((status = OK, description = "Visible columns only, each with its treatment", body = DatasetsView)),
)]
pub async fn datasets(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<DatasetsQuery>, QueryRejection>,
) -> Result<Json<DatasetsView>, ApiError> {
    let Query(query) = query?;
    Ok(Json(
        state.gateway.datasets(&caller, query.habilitation).await?,
    ))
}

/// `GET /v1/tables/{id}`.
#[utoipa::path(
    get, path = "/v1/tables/{id}", tag = "catalog",
    summary = "A table of the statistical secret: its dimensions, rules, hidden cells and data version",
    params(("id" = String, Path, description = "The table, `schema.table`"), DatasetsQuery),
    responses((status = OK, description = "The table as its habilitation (or an operator) sees it; 404 when no such table is granted to it", body = TableInfo)),
)]
pub async fn table(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<DatasetsQuery>, QueryRejection>,
) -> Result<Json<TableInfo>, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    Ok(Json(
        state.gateway.table(&caller, query.habilitation, id).await?,
    ))
}
