//! `GET /v1/lookup/{dataset}/{key}` and `POST /v1/lookup/{dataset}` (batch): parse, call
//! `Gateway::lookup`, encode the record (or the batch's results) as JSON with the
//! `RateLimit-*` fields. The gateway makes every check and writes the record.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, rate_headers};
use super::{AppState, Authenticated};
use crate::gateway::{LookupRequest, TraceabilityParams};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// The habilitation to look up under (needed when the caller holds several).
    #[serde(default)]
    #[param(example = "caf-quotient-familial")]
    pub habilitation: Option<String>,
    /// Traceability (required): the procedure the record is needed for.
    #[serde(default)]
    #[param(example = "Calcul du QF")]
    pub context: Option<String>,
    /// Traceability (required): the SIRET of the organisation the record is for.
    #[serde(default)]
    #[param(example = "13000170500016")]
    pub recipient: Option<String>,
    /// Traceability (required): the case or file number.
    #[serde(default)]
    #[param(example = "dossier-42")]
    pub object: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Keys to look up (at most `limits.lookup_batch_max`).
    #[schema(min_items = 1, example = json!(["185057800608491"]))]
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

/// A record as the caller may see it: its visible columns, by name.
type Record = serde_json::Map<String, Value>;

/// `GET /v1/lookup/{dataset}/{key}`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LookupRecord<'a> {
    pub dataset: &'a str,
    pub habilitation: &'a str,
    pub policy_version: &'a str,
    /// The record, or `null` when no record has this key (or the caller may not see it).
    #[schema(value_type = Option<Object>)]
    pub record: Option<&'a Record>,
}

/// `POST /v1/lookup/{dataset}`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LookupResults<'a> {
    pub dataset: &'a str,
    pub habilitation: &'a str,
    pub policy_version: &'a str,
    /// One result per key, in the order asked.
    pub results: Vec<LookupResult<'a>>,
}

/// One key of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LookupResult<'a> {
    pub key: &'a str,
    /// 200 with `record`, or 404.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub record: Option<&'a Record>,
}

/// JSON with the rate fields.
fn answer(rate: &crate::gateway::RateState, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    response.headers_mut().extend(rate_headers(rate));
    response
}

/// The `RateLimit-*` fields of a lookup answer (draft-ietf-httpapi-ratelimit-headers).
const RATE_NOTE: &str = "`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` give the \
    caller's lookup budget; a refused batch uses none of it.";

/// `GET /v1/lookup/{dataset}/{key}`.
#[utoipa::path(
    get, path = "/v1/lookup/{dataset}/{key}", tag = "lookup",
    summary = "One record by its key",
    description = RATE_NOTE,
    params(
        ("dataset" = String, Path, description = "`schema.table`", example = "social.allocataires"),
        ("key" = String, Path, description = "The record's key (a NIR, a SIRET, …)", example = "185057800608491"),
        LookupQuery,
    ),
    responses((status = OK, description = "The record, or `record: null`", body = LookupRecord,
        headers(
            ("ratelimit-limit" = u32, description = "Lookups allowed per window"),
            ("ratelimit-remaining" = u32, description = "Lookups left in this window"),
            ("ratelimit-reset" = u32, description = "Seconds until the window ends"),
        ))),
)]
pub async fn lookup(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((dataset, key)) = path?;
    let Query(query) = query?;
    let found = state
        .gateway
        .lookup(
            &caller,
            LookupRequest {
                dataset,
                keys: vec![key],
                batch: false,
                habilitation: query.habilitation,
                traceability: TraceabilityParams {
                    context: query.context,
                    recipient: query.recipient,
                    object: query.object,
                },
            },
        )
        .await?;
    let body = LookupRecord {
        dataset: &found.dataset,
        habilitation: &found.habilitation,
        policy_version: &found.policy_version,
        record: found
            .records
            .first()
            .and_then(|(_, record)| record.as_ref()),
    };
    Ok(answer(&found.rate, &body))
}

/// `POST /v1/lookup/{dataset}`.
#[utoipa::path(
    post, path = "/v1/lookup/{dataset}", tag = "lookup",
    summary = "Several records by their keys",
    description = RATE_NOTE,
    params(("dataset" = String, Path, description = "`schema.table`", example = "social.allocataires")),
    request_body = BatchRequest,
    responses((status = OK, description = "One result per key", body = LookupResults,
        headers(
            ("ratelimit-limit" = u32, description = "Lookups allowed per window"),
            ("ratelimit-remaining" = u32, description = "Lookups left in this window"),
            ("ratelimit-reset" = u32, description = "Seconds until the window ends"),
        ))),
)]
pub async fn lookup_batch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(dataset) = path?;
    let Json(request) = body?;
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
    let results = found
        .records
        .iter()
        .map(|(key, record)| LookupResult {
            key,
            status: if record.is_some() { 200 } else { 404 },
            record: record.as_ref(),
        })
        .collect();
    let body = LookupResults {
        dataset: &found.dataset,
        habilitation: &found.habilitation,
        policy_version: &found.policy_version,
        results,
    };
    Ok(answer(&found.rate, &body))
}
