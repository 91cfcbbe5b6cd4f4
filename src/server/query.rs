//! `POST /v1/query`: one read-only SQL query under the caller's habilitation, answered in the
//! format `Accept` asks for (JSON by default; NDJSON, CSV, Arrow IPC, Parquet), streamed.
//!
//! The handler resolves the habilitation and the `AccessPlan` (policy), builds the secure
//! session and runs the query (engine); it decides nothing itself.

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;

use super::audit::AuditDraft;
use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::audit::Outcome;
use crate::engine::{
    Answer, AnswerInfo, EngineError, QueryLimits, negotiate, secure_session_in, start_query,
};
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

pub fn engine_error(e: EngineError) -> ApiError {
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
        EngineError::ResourcesExhausted(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query_too_costly",
            "Query too costly",
            e.to_string(),
        ),
        EngineError::Internal(detail) => {
            tracing::error!(error = %detail, "query failed internally");
            ApiError::internal()
        }
    }
}

/// Encoded answer gathered before the status line: small answers are sent whole (with
/// `Content-Length`, row count and truncation in headers); larger ones stream.
const HEAD_BYTES: usize = 256 * 1024;

pub async fn query(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Extension(draft): Extension<AuditDraft>,
    headers: HeaderMap,
    Json(request): Json<QueryRequest>,
) -> Result<Response, ApiError> {
    draft.sql(&request.sql);
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        .ok_or_else(not_acceptable)?;
    let set = state.policy.current();
    let today = chrono::Utc::now().date_naive();
    let habilitation = set
        .resolve(&principal, request.habilitation.as_deref(), today)
        .map_err(|r| refusal(&r))?;
    let plan = set.plan(&principal, habilitation);
    let key_version = state
        .pseudonyms
        .version_on(&plan.habilitation.pseudonymisation_domain, today);
    draft.plan(&plan, Some(key_version));
    // SECURITY: a lookup-only habilitation runs no SQL.
    if !plan.datasets.iter().any(|d| d.query) {
        return Err(ApiError::forbidden(
            "query_not_allowed",
            format!("habilitation `{}` allows no SQL queries", habilitation.id),
        ));
    }
    let limits = QueryLimits::from(&state.config.limits);
    let deadline = Instant::now() + limits.timeout;
    // A slot for the whole query, streaming included; waiting counts against the timeout.
    let slot = tokio::time::timeout_at(deadline, state.query_slots.clone().acquire_owned())
        .await
        .map_err(|_| engine_error(EngineError::Timeout(limits.timeout.as_secs())))?
        .map_err(|_| ApiError::unavailable("the hub is shutting down"))?;
    let running_gauge = RunningQueryGauge::start();
    let runtime = state
        .engine
        .for_query(&limits)
        .map_err(|e| engine_error(EngineError::Internal(e.to_string())))?;
    let data_dir = state.config.data.dir.clone();
    let ctx = secure_session_in(
        runtime,
        &plan,
        &set.catalog,
        &data_dir,
        &state.pseudonyms,
        today,
        &|path| crate::policy::catalog::parquet_arrow_schema(path).map_err(EngineError::Internal),
        state.extracts.as_ref(),
    )
    .map_err(engine_error)?;
    let running = tokio::time::timeout_at(deadline, start_query(&ctx, &request.sql, &limits))
        .await
        .map_err(|_| engine_error(EngineError::Timeout(limits.timeout.as_secs())))?
        .map_err(engine_error)?;
    let info = AnswerInfo {
        habilitation: habilitation.id.clone(),
        policy_version: plan.policy_version.clone(),
    };
    let mut answer =
        Answer::new(running, format, &info, &limits, deadline).map_err(engine_error)?;
    draft.datasets(&plan, answer.datasets().iter().map(String::as_str));
    let head = answer.fill_head(HEAD_BYTES).await.map_err(engine_error)?;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .header("passerelle-habilitation", header_value(&info.habilitation))
        .header(
            "passerelle-policy-version",
            header_value(&info.policy_version),
        )
        .header(
            "passerelle-pseudonym-key",
            header_value(&format!(
                "{};version={key_version}",
                plan.habilitation.pseudonymisation_domain,
            )),
        );
    if head.complete {
        response = response
            .header("passerelle-row-count", head.rows)
            .header("passerelle-truncated", head.truncated.to_string());
        let body = answer.take_complete().unwrap_or_default();
        draft.sent(head.rows as u64, body.len() as u64);
        metrics::counter!("passerelle_query_rows_total").increment(head.rows as u64);
        drop((slot, running_gauge));
        return response
            .body(Body::from(body))
            .map_err(|e| engine_error(EngineError::Internal(e.to_string())));
    }
    // Streaming: the slot, the gauge and the DataFusion stream live in the body; a client that
    // goes away drops the body, which cancels the query.
    let body = streamed_body(answer, (slot, running_gauge), draft, state.audit.clone());
    response
        .body(body)
        .map_err(|e| engine_error(EngineError::Internal(e.to_string())))
}

/// The body of a streamed answer: chunks as they are computed, then the completion record
/// (see `server::audit`); `held` (query slot, gauge) is released when the body ends or drops.
fn streamed_body(
    answer: Answer,
    held: (tokio::sync::OwnedSemaphorePermit, RunningQueryGauge),
    draft: AuditDraft,
    audit: crate::audit::AuditLog,
) -> Body {
    let stream = futures::stream::unfold(Some((answer, held)), move |held| {
        let draft = draft.clone();
        let audit = audit.clone();
        async move {
            let (mut answer, held) = held?;
            match answer.next_chunk().await {
                Some(Ok(chunk)) => Some((Ok(chunk), Some((answer, held)))),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, rows = answer.rows(), "query answer aborted while streaming");
                    let event = draft.completion(
                        answer.rows() as u64,
                        answer.bytes() as u64,
                        Outcome::Error,
                        Some("aborted"),
                    );
                    let _ = audit.record(event).await;
                    Some((Err(std::io::Error::other("answer aborted")), None))
                }
                None => {
                    // SECURITY: the stream ends cleanly only once its completion record is
                    // durable; otherwise the transfer is aborted.
                    let event = draft.completion(
                        answer.rows() as u64,
                        answer.bytes() as u64,
                        Outcome::Allowed,
                        answer.truncated().then_some("truncated"),
                    );
                    match audit.record(event).await {
                        Ok(_) => None,
                        Err(e) => {
                            tracing::error!(error = %e, "audit completion record failed: answer aborted");
                            Some((Err(std::io::Error::other("audit unavailable")), None))
                        }
                    }
                }
            }
        }
    });
    super::body::streamed(stream)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn not_acceptable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "format_not_acceptable",
        "Format not acceptable",
        "answers come as application/json, application/x-ndjson, text/csv, \
         application/vnd.apache.arrow.stream or application/vnd.apache.parquet",
    )
}

/// `passerelle_queries_running`: up while a query holds its slot.
struct RunningQueryGauge;

impl RunningQueryGauge {
    fn start() -> Self {
        metrics::gauge!("passerelle_queries_running").increment(1.0);
        RunningQueryGauge
    }
}

impl Drop for RunningQueryGauge {
    fn drop(&mut self) {
        metrics::gauge!("passerelle_queries_running").decrement(1.0);
    }
}
