//! Liveness, readiness and metrics endpoints. What anyone may reach says live, ready or not,
//! and nothing more (no dataset, issuer, policy version or activity): the details are the
//! operators' (`GET /v1/admin/health`, `/metrics` with an operator's token), and the metrics
//! listener (loopback by default) serves `/metrics` without a token.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::telemetry::names;

/// `GET /health/live`: the process answers.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// `GET /health/ready`: 200 only when every check passes (keys of every trusted issuer
/// loaded, audit trail writable, not shutting down); 503 otherwise. Publicly: ready or not,
/// nothing more.
pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.gateway.is_ready(state.shutting_down());
    metrics::gauge!(names::READY).set(if ready { 1.0 } else { 0.0 });
    // SECURITY: the public surface names no dataset, issuer or policy version.
    let body = json!({ "status": if ready { "ready" } else { "not_ready" } });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /v1/admin/health`: the operators' readiness view (every check).
pub async fn details(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    let body = state.gateway.health(&caller, state.shutting_down()).await?;
    let status = if body["status"] == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /metrics` on the main listener: for operators only.
pub async fn operators_metrics(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    // SECURITY: the hub's activity is the operators' to see.
    state.gateway.metrics_access(&caller).await?;
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
