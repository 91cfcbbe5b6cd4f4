//! `POST /v1/query`: one read-only SQL query under the caller's habilitation, answered in the
//! format `Accept` asks for (JSON by default; NDJSON, CSV, Arrow IPC, Parquet), streamed.
//!
//! Parse, negotiate, call `Gateway::query`, encode: the handler decides nothing and runs no
//! query work.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::error::ApiError;
use super::negotiate::{content_type, negotiate, not_acceptable};
use super::{AppState, Authenticated};
use crate::gateway::{QueryBody, QueryRequest};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBodyJson {
    /// One read-only statement (`SELECT`, `WITH`, `EXPLAIN`) over the habilitation's datasets
    /// (`schema.table`), at most `limits.max_sql_bytes`.
    #[schema(
        min_length = 1,
        example = "SELECT sexe, count(*) AS sejours FROM sante.sejours GROUP BY sexe"
    )]
    pub sql: String,
    /// The habilitation to query under (needed when the caller holds several).
    #[serde(default)]
    pub habilitation: Option<String>,
}

/// The JSON answer of a query (`Accept: application/json`, the default); the other formats
/// carry the same rows. A description only: the engine's encoder writes it as it streams
/// (`engine::encode`), and the fuzzer checks every answer against it.
#[derive(Debug, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "a description of what the encoder writes, never built"
)]
pub struct QueryAnswerJson {
    pub habilitation: String,
    pub policy_version: String,
    pub columns: Vec<AnswerColumn>,
    /// One object per row, by column name; NULL is `null`.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    pub row_count: u64,
    /// True when the answer was cut at `limits.max_rows` or `limits.max_result_bytes`.
    pub truncated: bool,
}

/// One column of an answer.
#[derive(Debug, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "a description of what the encoder writes, never built"
)]
pub struct AnswerColumn {
    pub name: String,
    /// The Arrow type of the column as the caller receives it (`Utf8`, `Int64`, `Date32`, …).
    pub r#type: String,
}

/// `POST /v1/query`.
#[utoipa::path(
    post, path = "/v1/query", tag = "query",
    summary = "One read-only SQL query under the caller's habilitation",
    description = "Answers are streamed in the format `Accept` asks for. Identifying columns come \
        pseudonymised with the habilitation's key, hidden columns do not exist, row filters \
        apply. Refused: writes, functions and plan shapes outside the hub's budgets (422).",
    request_body = QueryBodyJson,
    params(("accept" = Option<String>, Header, description = "application/json (default), \
        application/x-ndjson, text/csv, application/vnd.apache.arrow.stream or \
        application/vnd.apache.parquet")),
    responses((status = OK, description = "The rows the caller may see",
        headers(
            ("passerelle-habilitation" = String, description = "The habilitation the query ran under"),
            ("passerelle-policy-version" = String, description = "The policy version that decided"),
            ("passerelle-pseudonym-key" = String, description = "Id of the pseudonymisation key (not the key)"),
        ),
        content(
            (QueryAnswerJson = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"),
            (Vec<u8> = "application/vnd.apache.parquet"),
        ),
    )),
)]
pub async fn query(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    body: Result<Json<QueryBodyJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        .ok_or_else(not_acceptable)?;
    let answer = state
        .gateway
        .query(
            &caller,
            QueryRequest {
                sql: request.sql,
                habilitation: request.habilitation,
                params: Vec::new(),
                format,
            },
        )
        .await?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(answer.format))
        .header(
            "passerelle-habilitation",
            header_value(&answer.habilitation),
        )
        .header(
            "passerelle-policy-version",
            header_value(&answer.policy_version),
        )
        .header(
            "passerelle-pseudonym-key",
            header_value(&answer.pseudonym_key),
        );
    let body = match answer.body {
        QueryBody::Whole {
            bytes,
            rows,
            truncated,
        } => {
            response = response
                .header("passerelle-row-count", rows)
                .header("passerelle-truncated", truncated.to_string());
            Body::from(bytes)
        }
        // A client that goes away drops the body, which stops the query on its lane.
        QueryBody::Streamed(stream) => super::body::streamed(stream),
    };
    response.body(body).map_err(|_| ApiError::internal())
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}
