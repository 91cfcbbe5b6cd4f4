//! The audit record of each request, as the transport starts it. The gateway writes every
//! record; this module only hands it the request.
//!
//! The `audit_trail` middleware creates the gateway's [`RequestRecord`] for the routes that are
//! use cases (with their kind, request id and action); the `Authenticated` extractor hands it
//! to `Gateway::authenticate`, and the use case writes it before its answer. After the answer,
//! the middleware asks the gateway to settle a request that reached authentication but no use
//! case (a body that does not parse): then too, no record, no answer.
//!
//! Must never: decide what a record says beyond the route and the answer's status.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::middleware::{ClientRequestId, RequestId};
use crate::gateway::{AuditKind, Outcome, RequestRecord};

/// The use case kind of a route (none for the public health endpoints: no record; `/metrics`
/// on the main listener is an operator's call).
fn kind_of(route: &str) -> Option<AuditKind> {
    if route.starts_with("/v1/query") {
        Some(AuditKind::Query)
    } else if route.starts_with("/v1/lookup") {
        Some(AuditKind::Lookup)
    } else if route.starts_with("/v1/datasets") || route.starts_with("/v1/tables") {
        Some(AuditKind::Datasets)
    } else if route.starts_with("/v1/me") {
        Some(AuditKind::Me)
    } else if route.starts_with("/v1/admin") || route == "/metrics" {
        Some(AuditKind::Admin)
    } else if (route.starts_with("/console") && !route.starts_with("/console/static"))
        || route.starts_with("/moi")
    {
        Some(AuditKind::Console)
    } else {
        None
    }
}

/// Starts the request's record and settles it if no use case did (see the module doc).
pub async fn audit_trail(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let Some(kind) = route.as_deref().and_then(kind_of) else {
        return next.run(request).await;
    };
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let client_request_id = request
        .extensions()
        .get::<ClientRequestId>()
        .and_then(|c| c.0.clone());
    let action = format!("{} {}", request.method(), route.unwrap_or_default());
    let record =
        RequestRecord::new(kind, request_id, action).with_client_request_id(client_request_id);
    request.extensions_mut().insert(record.clone());
    let response = next.run(request).await;
    let status = response.status();
    let outcome = if status.is_success() {
        Outcome::Allowed
    } else if status.is_server_error() {
        Outcome::Error
    } else {
        Outcome::Refused
    };
    let code = response.extensions().get::<ApiError>().map(|e| e.code);
    // SECURITY: no record, no answer (for a request no use case recorded).
    match record
        .settle_unserved(state.gateway.audit(), outcome, code)
        .await
    {
        Ok(()) => response,
        Err(e) => ApiError::from(e).into_response(),
    }
}
