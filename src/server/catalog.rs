//! `GET /v1/me` and `GET /v1/datasets[?habilitation=ID]`: what the caller is and may see, as
//! the gateway's views, in JSON.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::gateway::{DatasetsView, MeView};

#[derive(Debug, Deserialize)]
pub struct DatasetsQuery {
    #[serde(default)]
    pub habilitation: Option<String>,
}

pub async fn me(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<MeView>, ApiError> {
    Ok(Json(state.gateway.me(&caller).await?))
}

pub async fn datasets(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    query: Result<Query<DatasetsQuery>, QueryRejection>,
) -> Result<Json<DatasetsView>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::from_status(r.status()))?;
    Ok(Json(
        state.gateway.datasets(&caller, query.habilitation).await?,
    ))
}
