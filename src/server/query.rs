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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBodyJson {
    pub sql: String,
    #[serde(default)]
    pub habilitation: Option<String>,
}

pub async fn query(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    body: Result<Json<QueryBodyJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|r| ApiError::from_status(r.status()))?;
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        .ok_or_else(not_acceptable)?;
    let answer = state
        .gateway
        .query(
            &caller,
            QueryRequest {
                sql: request.sql,
                habilitation: request.habilitation,
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
