//! `GET /v1/me` and `GET /v1/datasets[?habilitation=ID]`: what the caller is and may see, as
//! the gateway's views, in JSON.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::gateway::{DatasetsView, MeView};

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
