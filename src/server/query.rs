//! `POST /v1/query`: one read-only SQL query under the caller's habilitation, answered as
//! JSON (`{"columns": [...], "rows": [{...}], "row_count": n, "truncated": bool, …}`).
//!
//! The handler resolves the habilitation and the `AccessPlan` (policy), builds the secure
//! session and runs the query (engine); it decides nothing itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::engine::{EngineError, QueryLimits, run_query, secure_session};
use crate::policy::Refusal;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub sql: String,
    #[serde(default)]
    pub habilitation: Option<String>,
}

/// A habilitation that cannot be used: 400 when the caller must choose, 403 otherwise.
pub fn refusal(r: &Refusal) -> ApiError {
    let status = match r {
        Refusal::HabilitationRequired(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    ApiError::new(status, r.code(), "Habilitation refused", r.to_string())
}

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Invalid(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "Invalid query", m)
        }
        EngineError::Refused(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, "query_refused", "Query refused", m)
        }
        EngineError::TooLong(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "query_too_long",
            "Query too long",
            e.to_string(),
        ),
        EngineError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "query_timeout",
            "Query timeout",
            e.to_string(),
        ),
        EngineError::Internal(detail) => {
            tracing::error!(error = %detail, "query failed internally");
            ApiError::internal()
        }
    }
}

pub async fn query(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Json(request): Json<QueryRequest>,
) -> Result<Json<Value>, ApiError> {
    let set = state.policy.current();
    let today = chrono::Utc::now().date_naive();
    let habilitation = set
        .resolve(&principal, request.habilitation.as_deref(), today)
        .map_err(|r| refusal(&r))?;
    let plan = set.plan(&principal, habilitation);
    // SECURITY: a lookup-only habilitation runs no SQL.
    if !plan.datasets.iter().any(|d| d.query) {
        return Err(ApiError::forbidden(
            "query_not_allowed",
            format!("habilitation `{}` allows no SQL queries", habilitation.id),
        ));
    }
    let data_dir = state.config.data.dir.clone();
    let ctx = secure_session(
        &plan,
        &set.catalog,
        &data_dir,
        &state.pseudonyms,
        today,
        &|path| crate::policy::catalog::parquet_arrow_schema(path).map_err(EngineError::Internal),
    )
    .map_err(engine_error)?;
    let limits = QueryLimits::default();
    let outcome = run_query(&ctx, &request.sql, &limits)
        .await
        .map_err(engine_error)?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &outcome.batches {
        writer
            .write(batch)
            .map_err(|e| engine_error(EngineError::Internal(e.to_string())))?;
    }
    writer
        .finish()
        .map_err(|e| engine_error(EngineError::Internal(e.to_string())))?;
    let bytes = writer.into_inner();
    let rows: Value = if bytes.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| engine_error(EngineError::Internal(e.to_string())))?
    };
    let columns: Vec<Value> = outcome
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(Json(json!({
        "habilitation": habilitation.id,
        "policy_version": plan.policy_version,
        "columns": columns,
        "rows": rows,
        "row_count": outcome.rows,
        "truncated": outcome.truncated,
    })))
}
