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
/// loaded, data and policies loaded); 503 otherwise. Names checks, never secrets or paths.
pub async fn ready(State(state): State<AppState>) -> Response {
    let issuers = state.identity.status();
    let identity_ready = state.identity.is_ready();
    let audit_ready = state.audit.healthy();
    let ready = identity_ready && audit_ready && !state.shutting_down();
    metrics::gauge!(names::READY).set(if ready { 1.0 } else { 0.0 });
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "identity": { "ready": identity_ready, "issuers": issuers },
            "data": { "ready": true, "datasets": state.hub.datasets },
            "audit": { "ready": audit_ready },
            // A refused reload keeps the previous set serving: ready, but operators must look.
            "policy": {
                "ready": true,
                "version": state.policy.current().version,
                "last_reload_refused": state.policy.last_error().is_some(),
            },
            "queries": queries(&state),
            "shutting_down": state.shutting_down(),
        }
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The query lanes' load and the process's memory, for readiness.
fn queries(state: &AppState) -> serde_json::Value {
    let admission = state.engine.admission();
    let (cheap, heavy) = admission.running();
    let (cheap_slots, heavy_slots) = admission.slots();
    let memory = state.engine.runtime().memory();
    json!({
        "running": cheap + heavy,
        "slots": heavy_slots,
        "cheap": { "running": cheap, "slots": cheap_slots },
        "heavy": { "running": heavy, "slots": heavy_slots },
        "memory": {
            "resident_mb": memory.resident() / (1024 * 1024),
            "ceiling_mb": memory.ceiling() / (1024 * 1024),
            "queries_mb": memory.used() / (1024 * 1024),
        },
    })
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
