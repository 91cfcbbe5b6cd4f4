//! Liveness, readiness and metrics endpoints. What anyone may reach says live, ready or not,
//! and nothing more (no dataset, issuer, policy version or activity): the details are the
//! operators' (`GET /v1/admin/health`, `/metrics` with an operator's token), and the metrics
//! listener (loopback by default) serves `/metrics` without a token.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::gateway::{HealthView, Readiness};
use crate::telemetry::names;

/// `{"status": "live"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Live {
    #[schema(inline)]
    status: LiveStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum LiveStatus {
    Live,
}

/// `{"status": "ready"}` or `{"status": "not_ready"}`, and nothing more.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    status: Readiness,
}

/// 200 when ready, 503 otherwise.
fn status_of(readiness: Readiness) -> StatusCode {
    match readiness {
        Readiness::Ready => StatusCode::OK,
        Readiness::NotReady => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /health/live`: the process answers.
#[utoipa::path(
    get, path = "/health/live", tag = "health",
    summary = "Liveness: the process answers",
    responses((status = OK, description = "Live", body = Live)),
)]
pub async fn live() -> Json<Live> {
    Json(Live {
        status: LiveStatus::Live,
    })
}

/// `GET /health/ready`: 200 only when every check passes (keys of every trusted issuer
/// loaded, audit trail writable, not shutting down); 503 otherwise. Publicly: ready or not,
/// nothing more.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    summary = "Readiness, and nothing more",
    responses(
        (status = OK, description = "Ready: keys of every issuer loaded, audit trail writable", body = Ready),
        (status = SERVICE_UNAVAILABLE, description = "Not ready (or shutting down)", body = Ready),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.gateway.is_ready(state.shutting_down());
    metrics::gauge!(names::READY).set(if ready { 1.0 } else { 0.0 });
    // SECURITY: the public surface names no dataset, issuer or policy version.
    let body = Ready {
        status: Readiness::of(ready),
    };
    (status_of(body.status), Json(body)).into_response()
}

/// `GET /v1/admin/health`: the operators' readiness view (every check).
#[utoipa::path(
    get, path = "/v1/admin/health", tag = "health",
    summary = "Readiness and every check behind it (operators)",
    responses(
        (status = OK, description = "Ready", body = HealthView),
        (status = SERVICE_UNAVAILABLE, description = "Not ready: the failing checks say why", body = HealthView),
    ),
)]
pub async fn details(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    let body = state.gateway.health(&caller, state.shutting_down()).await?;
    let status = status_of(body.status);
    Ok((status, Json(body)).into_response())
}

/// `GET /metrics` on the main listener: for operators only.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    summary = "Prometheus metrics (operators; the metrics listener serves them without a token)",
    responses((status = OK, description = "Prometheus text exposition",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
pub async fn operators_metrics(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    // SECURITY: the hub's activity is the operators' to see.
    state.gateway.operator_only(&caller).await?;
    Ok(metrics(State(state)).await)
}

/// `GET /metrics` on the metrics listener: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => super::error::ApiError::unavailable("metrics recorder unavailable").into_response(),
    }
}
