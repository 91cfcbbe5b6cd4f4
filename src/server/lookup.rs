//! `GET /v1/lookup/{dataset}/{key}` and `POST /v1/lookup/{dataset}` (batch): parse, call
//! `Gateway::lookup`, encode the record (or the batch's results) as JSON with the
//! `RateLimit-*` fields. The gateway makes every check and writes the record.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, rate_headers};
use super::{AppState, Authenticated};
use crate::gateway::{LookupAnswer, LookupRequest, TraceabilityParams};

#[derive(Debug, Deserialize)]
pub struct LookupQuery {
    #[serde(default)]
    pub habilitation: Option<String>,
    #[serde(flatten)]
    pub trace: TraceabilityParams,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub keys: Vec<String>,
    #[serde(default)]
    pub habilitation: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
}

/// The JSON answer: the common fields and `field` (`record` or `results`), with the rate
/// fields.
fn answer(answer: &LookupAnswer, field: &str, value: Value) -> Response {
    let mut body = json!({
        "dataset": answer.dataset,
        "habilitation": answer.habilitation,
        "policy_version": answer.policy_version,
    });
    body[field] = value;
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    response.headers_mut().extend(rate_headers(&answer.rate));
    response
}

pub async fn lookup(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((dataset, key)): Path<(String, String)>,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::from_status(r.status()))?;
    let found = state
        .gateway
        .lookup(
            &caller,
            LookupRequest {
                dataset,
                keys: vec![key],
                batch: false,
                habilitation: query.habilitation,
                traceability: query.trace,
            },
        )
        .await?;
    let record = found
        .records
        .first()
        .and_then(|(_, record)| record.clone())
        .map_or(Value::Null, Value::Object);
    Ok(answer(&found, "record", record))
}

pub async fn lookup_batch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(dataset): Path<String>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|r| ApiError::from_status(r.status()))?;
    let found = state
        .gateway
        .lookup(
            &caller,
            LookupRequest {
                dataset,
                keys: request.keys,
                batch: true,
                habilitation: request.habilitation,
                traceability: TraceabilityParams {
                    context: request.context,
                    recipient: request.recipient,
                    object: request.object,
                },
            },
        )
        .await?;
    let items: Vec<Value> = found
        .records
        .iter()
        .map(|(key, record)| match record {
            Some(record) => json!({"key": key, "status": 200, "record": record}),
            None => json!({"key": key, "status": 404}),
        })
        .collect();
    Ok(answer(&found, "results", Value::Array(items)))
}
