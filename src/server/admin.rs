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

use super::error::ApiError;
use super::query::QueryAnswerJson;
use super::{AppState, Authenticated};
use crate::gateway::{
    ExplainRequest, Explanation, InForceView, Journal, PolicyInForce, PolicySubmission,
    SubmittedVersion, VersionMeta, VersionsView,
};

/// `GET /v1/admin/policy`: the set in force.
#[utoipa::path(
    get, path = "/v1/admin/policy", tag = "admin",
    summary = "The policy set in force, and the last refused reload",
    responses((status = OK, description = "Version, load time, the four files", body = PolicyInForce)),
)]
pub async fn policy(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<PolicyInForce>, ApiError> {
    Ok(Json(state.gateway.policy_in_force(&caller).await?))
}

/// `POST /v1/admin/policy/versions`: validate and store a new version (not yet in force).
#[utoipa::path(
    post, path = "/v1/admin/policy/versions", tag = "admin",
    summary = "Validate and store a new policy version (not yet in force), with its dry-run diff",
    request_body = PolicySubmission,
    responses((status = CREATED, description = "Stored; refused sets are 422 `policy_invalid` naming each problem", body = SubmittedVersion)),
)]
pub async fn submit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    submission: Result<Json<PolicySubmission>, JsonRejection>,
) -> Result<(StatusCode, Json<SubmittedVersion>), ApiError> {
    let Json(submission) = submission?;
    let stored = state.gateway.submit(&caller, submission).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /v1/admin/policy/versions`: the history.
#[utoipa::path(
    get, path = "/v1/admin/policy/versions", tag = "admin",
    summary = "The history of policy versions",
    responses((status = OK, description = "Every stored version, with who applied it and when", body = VersionsView)),
)]
pub async fn versions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<VersionsView>, ApiError> {
    Ok(Json(state.gateway.versions(&caller).await?))
}

/// `POST /v1/admin/policy/versions/{number}/apply`: put a stored version in force.
#[utoipa::path(
    post, path = "/v1/admin/policy/versions/{number}/apply", tag = "admin",
    summary = "Put a stored policy version in force",
    params(("number" = u64, Path, description = "The version's number in the history")),
    responses((status = OK, description = "In force, with what changed", body = InForceView)),
)]
pub async fn apply(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    number: Result<Path<u64>, PathRejection>,
) -> Result<Json<InForceView>, ApiError> {
    let Path(number) = number?;
    Ok(Json(state.gateway.put_in_force(&caller, number).await?))
}

/// `POST /v1/admin/policy/versions/{number}/approve`: a second operator's approval.
#[utoipa::path(
    post, path = "/v1/admin/policy/versions/{number}/approve", tag = "admin",
    summary = "Approve a stored policy version (policy.approvals: another operator than its author)",
    params(("number" = u64, Path, description = "The version's number in the history")),
    responses((status = OK, description = "The version with its approvals", body = VersionMeta)),
)]
pub async fn approve(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    number: Result<Path<u64>, PathRejection>,
) -> Result<Json<VersionMeta>, ApiError> {
    let Path(number) = number?;
    Ok(Json(state.gateway.approve(&caller, number).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The number of the stored version to put back in force.
    pub number: u64,
}

/// `POST /v1/admin/policy/rollback`: put an earlier version back in force.
#[utoipa::path(
    post, path = "/v1/admin/policy/rollback", tag = "admin",
    summary = "Put an earlier policy version back in force",
    request_body = Rollback,
    responses((status = OK, description = "In force, with what changed", body = InForceView)),
)]
pub async fn rollback(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<Json<Rollback>, JsonRejection>,
) -> Result<Json<InForceView>, ApiError> {
    let Json(request) = request?;
    Ok(Json(
        state.gateway.put_in_force(&caller, request.number).await?,
    ))
}

/// `POST /v1/admin/explain`: what a principal with these claims can see, and why.
#[utoipa::path(
    post, path = "/v1/admin/explain", tag = "admin",
    summary = "What a principal with these claims can see, column by column, and why",
    request_body = ExplainRequest,
    responses((status = OK, description = "Each habilitation held, with the policy lines that decided", body = Explanation)),
)]
pub async fn explain(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<Json<ExplainRequest>, JsonRejection>,
) -> Result<Json<Explanation>, ApiError> {
    let Json(request) = request?;
    Ok(Json(state.gateway.explain(&caller, request).await?))
}

/// `GET /v1/admin/journal/{dataset}/{key}`: a person's access journal.
#[utoipa::path(
    get, path = "/v1/admin/journal/{dataset}/{key}", tag = "admin",
    summary = "Who consulted one record: a person's or company's access journal",
    params(
        ("dataset" = String, Path, description = "`schema.table`", example = "social.allocataires"),
        ("key" = String, Path, description = "The record's key", example = "185057800608491"),
    ),
    responses((status = OK, description = "Each consultation, oldest first", body = Journal)),
)]
pub async fn journal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    key: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Journal>, ApiError> {
    let Path((dataset, key)) = key?;
    Ok(Json(state.gateway.journal(&caller, dataset, key).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQueryRequest {
    /// One read-only statement over `audit.events`.
    #[schema(
        min_length = 1,
        example = "SELECT kind, count(*) AS n FROM audit.events GROUP BY kind"
    )]
    pub sql: String,
}

/// `POST /v1/admin/audit/query`: operators' SQL over `audit.events`, JSON answer of the
/// `/v1/query` shape.
#[utoipa::path(
    post, path = "/v1/admin/audit/query", tag = "admin",
    summary = "SQL over the audit trail (`audit.events`), under the limits of any query",
    request_body = AuditQueryRequest,
    responses((status = OK, description = "The rows, as `/v1/query` answers in JSON", body = QueryAnswerJson)),
)]
pub async fn audit_query(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<Json<AuditQueryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request?;
    let answer = state.gateway.audit_query(&caller, request.sql).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}
