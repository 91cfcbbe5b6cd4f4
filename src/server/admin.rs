//! Operator API under `/v1/admin`: the policy set in force, a new version (validated, with a
//! dry-run diff), applying it, the history, a rollback, explaining any principal, a person's
//! journal, SQL over the audit trail. Parse, call the gateway's operators' use cases (which
//! check the operator right every time and write the record), encode.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::gateway::{ExplainRequest, PolicySubmission};

fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(t)| t)
        .map_err(|r| ApiError::from_status(r.status()))
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(t)| t)
        .map_err(|r| ApiError::from_status(r.status()))
}

/// `GET /v1/admin/policy`: the set in force.
pub async fn policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.gateway.policy_in_force(&caller).await?))
}

/// `POST /v1/admin/policy/versions`: validate and store a new version (not yet in force).
pub async fn submit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    submission: Result<Json<PolicySubmission>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let submission = body(submission)?;
    let stored = state.gateway.submit(&caller, submission).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /v1/admin/policy/versions`: the history.
pub async fn versions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.gateway.versions(&caller).await?))
}

/// `POST /v1/admin/policy/versions/{number}/apply`: put a stored version in force.
pub async fn apply(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    number: Result<Path<u64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let number = path(number)?;
    Ok(Json(state.gateway.put_in_force(&caller, number).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub number: u64,
}

/// `POST /v1/admin/policy/rollback`: put an earlier version back in force.
pub async fn rollback(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<Json<Rollback>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    Ok(Json(
        state.gateway.put_in_force(&caller, request.number).await?,
    ))
}

/// `POST /v1/admin/explain`: what a principal with these claims can see, and why.
pub async fn explain(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<Json<ExplainRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    Ok(Json(state.gateway.explain(&caller, request).await?))
}

/// `GET /v1/admin/journal/{dataset}/{key}`: a person's access journal.
pub async fn journal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    key: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (dataset, key) = path(key)?;
    Ok(Json(state.gateway.journal(&caller, dataset, key).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQueryRequest {
    pub sql: String,
}

/// `POST /v1/admin/audit/query`: operators' SQL over `audit.events`, JSON answer of the
/// `/v1/query` shape.
pub async fn audit_query(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<Json<AuditQueryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let answer = state.gateway.audit_query(&caller, request.sql).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}
