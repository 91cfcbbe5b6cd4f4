//! `POST /v1/query`: one read-only SQL query under the caller's habilitation, answered in the
//! format `Accept` asks for (JSON by default; NDJSON, CSV, Arrow IPC, Parquet), streamed.
//!
//! The handler resolves the habilitation and the `AccessPlan` (policy), takes the caller's
//! share (admission), records the decision (audit), and hands the query to the engine's lanes;
//! it decides nothing itself and runs no query work on the HTTP runtime.

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tokio::time::Instant;

use super::audit::{AuditDraft, OutcomeGuard};
use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::audit::Outcome;
use crate::engine::{
    AnswerBody, AnswerInfo, EngineError, Piece, QueryEnd, QueryJob, QueryLimits, SessionFactory,
    negotiate, new_session, secure_session_in,
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
        EngineError::TooComplex(m) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query_too_complex",
            "Query too complex",
            m,
        ),
        EngineError::Busy(busy) => ApiError::busy(&busy),
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
    // SECURITY (availability): a share per principal and per habilitation (503 past a short grace).
    let share = state
        .engine
        .admit(&principal_key(&principal), &habilitation.id)
        .await
        .map_err(|busy| engine_error(busy.into()))?;
    let outcome = draft
        .decide(&state.audit)
        .await
        .map_err(|e| audit_unavailable(&state, &e))?;
    let limits = QueryLimits::from(&state.config.limits);
    let info = AnswerInfo {
        habilitation: habilitation.id.clone(),
        policy_version: plan.policy_version.clone(),
    };
    let session: SessionFactory = {
        let plan = plan.clone();
        let set = set.clone();
        let data_dir = state.config.data.dir.clone();
        let keys = state.pseudonyms.clone();
        let extracts = state.extracts.clone();
        let limits = limits.clone();
        Box::new(move |runtime| {
            secure_session_in(
                new_session(runtime, &limits),
                &plan,
                &set.catalog,
                &data_dir,
                &keys,
                today,
                &|path| {
                    crate::policy::catalog::parquet_arrow_schema(path)
                        .map_err(EngineError::Internal)
                },
                extracts.as_ref(),
            )
        })
    };
    let job = QueryJob {
        sql: request.sql,
        format,
        info: info.clone(),
        deadline: Instant::now() + limits.timeout,
        limits,
        head_bytes: HEAD_BYTES,
        session,
    };
    let started = match state.engine.run(job, share).await {
        Ok(started) => started,
        Err(e) => return Err(failed(outcome, e)),
    };
    draft.datasets(&plan, started.datasets.iter().map(String::as_str));
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
    let head = started.head;
    let body = match started.body {
        AnswerBody::Whole(body) => {
            response = response
                .header("passerelle-row-count", head.rows)
                .header("passerelle-truncated", head.truncated.to_string());
            draft.sent(head.rows as u64, body.len() as u64);
            metrics::counter!("passerelle_query_rows_total").increment(head.rows as u64);
            outcome.finish(
                Outcome::Allowed,
                head.truncated.then_some("truncated"),
                QueryEnd {
                    rows: head.rows as u64,
                    bytes: body.len() as u64,
                    truncated: head.truncated,
                },
            );
            Body::from(body)
        }
        // A client that goes away drops the body, which closes the channel and stops the query
        // on its lane; the guard then records the outcome.
        AnswerBody::Streamed(pieces) => streamed_answer(pieces, outcome),
    };
    response
        .body(body)
        .map_err(|e| engine_error(EngineError::Internal(e.to_string())))
}

/// A query that failed after its decision: its outcome (refused for the caller's mistakes,
/// error for the hub's), and the problem to answer.
pub(super) fn failed(outcome: OutcomeGuard, e: EngineError) -> ApiError {
    let problem = engine_error(e);
    let kind = if problem.status.is_server_error() {
        Outcome::Error
    } else {
        Outcome::Refused
    };
    outcome.finish(kind, Some(problem.code), QueryEnd::default());
    problem
}

/// The principal as admission counts it: one per issuer and subject.
pub(super) fn principal_key(principal: &crate::identity::Principal) -> String {
    format!("{}\n{}", principal.issuer, principal.subject)
}

pub(super) fn audit_unavailable(state: &AppState, e: &crate::audit::AuditError) -> ApiError {
    tracing::error!(error = %e, healthy = state.audit.healthy(), "audit decision record failed: nothing runs");
    metrics::counter!("passerelle_audit_failures_total").increment(1);
    ApiError::unavailable("the audit trail cannot be written: no access without a record")
}

/// The body of a streamed answer: pieces as the lane computes them; the answer ends cleanly
/// only once its outcome is durable, and with a transport error when it failed (so a cut
/// answer never looks whole).
fn streamed_answer(pieces: tokio::sync::mpsc::Receiver<Piece>, outcome: OutcomeGuard) -> Body {
    let stream = futures::stream::unfold(Some((pieces, outcome)), |state| async move {
        let (mut pieces, outcome) = state?;
        match pieces.recv().await {
            Some(Piece::Data(chunk)) => Some((Ok(chunk), Some((pieces, outcome)))),
            Some(Piece::End(end)) => {
                metrics::counter!("passerelle_query_rows_total").increment(end.rows);
                // SECURITY: the stream ends cleanly only once its outcome record is durable;
                // otherwise the transfer is aborted.
                let reason = end.truncated.then_some("truncated");
                match outcome.finish_durable(Outcome::Allowed, reason, end).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "audit outcome record failed: answer aborted");
                        Some((Err(std::io::Error::other("audit unavailable")), None))
                    }
                }
            }
            Some(Piece::Failed(e, end)) => {
                tracing::warn!(error = %e, rows = end.rows, "query answer aborted while streaming");
                outcome.finish(Outcome::Error, Some("aborted"), end);
                Some((Err(std::io::Error::other("answer aborted")), None))
            }
            None => {
                // The lane stopped without a last piece: a panic, or a client too slow to read
                // its answer before the deadline.
                outcome.finish(Outcome::Error, Some("aborted"), QueryEnd::default());
                Some((Err(std::io::Error::other("answer aborted")), None))
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
