//! Liveness, readiness and metrics endpoints (no authentication: they reveal no data).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::telemetry::names;

/// `GET /health/live`: the process answers.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// `GET /health/ready`: 200 only when every check passes (keys of every trusted issuer
/// loaded, audit trail writable, not shutting down); 503 otherwise. Names checks, never
/// secrets or paths.
pub async fn ready(State(state): State<AppState>) -> Response {
    let (ready, checks) = state.gateway.readiness(state.shutting_down());
    metrics::gauge!(names::READY).set(if ready { 1.0 } else { 0.0 });
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
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
