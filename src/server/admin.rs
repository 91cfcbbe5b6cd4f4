//! Operator API under `/v1/admin`: read the policy set in force, submit a new version
//! (validated, with a dry-run diff), apply it, list the history, roll back, explain any
//! principal. Operators only (the `[operators]` section of habilitations.toml); everyone
//! else gets 403.

use std::path::Path;

use axum::Json;
use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Authenticated};
use crate::identity::Principal;
use crate::policy::diff::diff;
use crate::policy::explain::{render_text, views};
use crate::policy::{PolicySet, PolicyTexts, Problem, ReloadOutcome};

/// An authenticated hub operator.
pub struct Operator(pub Principal);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        // SECURITY: the operator API is for operators only; data habilitations do not count.
        if !state.policy.current().is_operator(&principal) {
            return Err(ApiError::forbidden(
                "not_operator",
                "this endpoint is for hub operators",
            ));
        }
        Ok(Operator(principal))
    }
}

fn author(p: &Principal) -> String {
    p.email
        .clone()
        .unwrap_or_else(|| format!("{} ({})", p.subject, p.issuer))
}

/// Problems shown with file names only (never the hub's paths).
fn problem_list(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            let file = p
                .file
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            match p.line {
                Some(line) => format!("{file}:{line}: {}", p.message),
                None => format!("{file}: {}", p.message),
            }
        })
        .collect()
}

fn invalid(problems: &[Problem]) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_invalid",
        "Policy set refused",
        problem_list(problems).join("\n"),
    )
}

/// `GET /v1/admin/policy`: the set in force.
pub async fn policy(State(state): State<AppState>, Operator(_): Operator) -> Json<Value> {
    let set = state.policy.current();
    Json(json!({
        "version": set.version,
        "loaded_at": set.loaded_at,
        "files": set.texts,
        "last_reload_error": state.policy.last_error(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub files: PolicyTexts,
    #[serde(default)]
    pub comment: String,
}

/// `POST /v1/admin/policy/versions`: validate and store a new version (not yet in force);
/// answers its number and the dry-run diff against the set in force.
pub async fn submit(
    State(state): State<AppState>,
    Operator(principal): Operator,
    Json(submission): Json<Submission>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let candidate =
        PolicySet::from_texts(Path::new(""), submission.files.clone()).map_err(|p| invalid(&p))?;
    let current = state.policy.current();
    let changes = diff(&current, &candidate);
    let meta = state
        .history
        .submit(&submission.files, &author(&principal), &submission.comment)
        .map_err(|e| {
            tracing::error!(error = %e.kind(), "cannot store a policy version");
            ApiError::internal()
        })?;
    tracing::info!(number = meta.number, version = %meta.version, author = %meta.author, "policy version submitted");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "version": meta, "diff": changes, "in_force": current.version })),
    ))
}

/// `GET /v1/admin/policy/versions`: the history.
pub async fn versions(State(state): State<AppState>, Operator(_): Operator) -> Json<Value> {
    Json(json!({
        "in_force": state.policy.current().version,
        "versions": state.history.list(),
    }))
}

/// `POST /v1/admin/policy/versions/{number}/apply`: put a stored version in force.
pub async fn apply(
    State(state): State<AppState>,
    Operator(principal): Operator,
    UrlPath(number): UrlPath<u64>,
) -> Result<Json<Value>, ApiError> {
    put_in_force(&state, &principal, number).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub number: u64,
}

/// `POST /v1/admin/policy/rollback`: put an earlier version back in force.
pub async fn rollback(
    State(state): State<AppState>,
    Operator(principal): Operator,
    Json(request): Json<Rollback>,
) -> Result<Json<Value>, ApiError> {
    put_in_force(&state, &principal, request.number).await
}

async fn put_in_force(
    state: &AppState,
    principal: &Principal,
    number: u64,
) -> Result<Json<Value>, ApiError> {
    let (meta, texts) = state.history.get(number).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "policy_version_not_found",
            "Not found",
            format!("no stored policy version {number}"),
        )
    })?;
    let before = state.policy.current();
    let outcome = state.policy.apply(texts).await.map_err(|p| invalid(&p))?;
    let after = state.policy.current();
    let changes = diff(&before, &after);
    if let Err(e) = state.history.mark_applied(number, &author(principal)) {
        tracing::error!(error = %e.kind(), "cannot record a policy application");
    }
    tracing::info!(number, version = %meta.version, author = %author(principal), "policy version put in force");
    let applied = matches!(outcome, ReloadOutcome::Applied { .. });
    Ok(Json(json!({
        "in_force": after.version,
        "number": number,
        "changed": applied,
        "diff": changes,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Claims of the principal to explain (`sub`, `idp_id`, `siret`, `groups`, `roles`).
    pub claims: Value,
    #[serde(default)]
    pub habilitation: Option<String>,
}

/// `POST /v1/admin/explain`: what a principal with these claims can see, and why.
pub async fn explain(
    State(state): State<AppState>,
    Operator(_): Operator,
    Json(request): Json<ExplainRequest>,
) -> Result<Json<Value>, ApiError> {
    let principal = Principal::for_explain(&request.claims).map_err(|m| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_claims",
            "Invalid claims",
            m,
        )
    })?;
    let set = state.policy.current();
    let today = chrono::Utc::now().date_naive();
    Ok(Json(json!({
        "policy_version": set.version,
        "principal": principal,
        "operator": set.is_operator(&principal),
        "habilitations": views(&set, &principal, request.habilitation.as_deref(), today),
        "text": render_text(&set, &principal, request.habilitation.as_deref(), today),
    })))
}

/// `GET /v1/admin/journal/{dataset}/{key}`: which organisations consulted one record, when,
/// under which habilitation, context, recipient and object — the basis of a citizen's access
/// journal. The key is pseudonymised in the audit-only domain before the trail is searched.
pub async fn journal(
    State(state): State<AppState>,
    Operator(_): Operator,
    UrlPath((dataset, key)): UrlPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let domain = state
        .pseudonyms
        .domain(super::lookup::AUDIT_DOMAIN, 1)
        .map_err(|_| ApiError::internal())?;
    let audit_key =
        crate::audit::AuditKey::new(domain.pseudonymise(&key)).map_err(|_| ApiError::internal())?;
    let dir = state.config.audit.dir.clone();
    let found = {
        let dataset = dataset.clone();
        tokio::task::spawn_blocking(move || crate::audit::journal(&dir, &dataset, &audit_key))
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "journal could not be read");
                ApiError::internal()
            })?
    };
    let entries: Vec<Value> = found
        .iter()
        .map(|e| {
            json!({
                "time": e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "organisation": e.principal.as_ref().and_then(|p| p.organisation.clone()),
                "habilitation": e.habilitation.as_ref().map(|h| h.id.clone()),
                "legal_basis": e.habilitation.as_ref().map(|h| h.legal_basis.clone()),
                "context": e.lookup.as_ref().map(|l| l.context.clone()),
                "recipient": e.lookup.as_ref().map(|l| l.recipient.clone()),
                "object": e.lookup.as_ref().map(|l| l.object.clone()),
                "fields": e.datasets.iter().flat_map(|d| d.columns.iter().map(|c| c.column.clone())).collect::<Vec<_>>(),
                "request_id": e.request_id,
            })
        })
        .collect();
    Ok(Json(
        json!({ "dataset": dataset, "consultations": entries }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQueryRequest {
    pub sql: String,
}

/// `POST /v1/admin/audit/query`: operators' SQL over `audit.events` (the whole trail, one row
/// per record), through the same statement gate and limits as researchers' queries. JSON
/// answer of the `/v1/query` shape. Example: which organisations looked up a person last month
/// (`lookup_key` is the key's audit-only pseudonym, see `/v1/admin/journal`).
pub async fn audit_query(
    State(state): State<AppState>,
    Operator(operator): Operator,
    axum::Extension(draft): axum::Extension<super::audit::AuditDraft>,
    Json(request): Json<AuditQueryRequest>,
) -> Result<axum::response::Response, ApiError> {
    use crate::audit::Outcome;
    use crate::engine::{
        AnswerBody, AnswerInfo, Format, QueryEnd, QueryJob, QueryLimits, SessionFactory,
        audit_session, new_session,
    };
    let to_api = super::query::engine_error;
    draft.sql(&request.sql);
    // SECURITY (availability): operators' SQL runs under the same shares, lanes and limits as
    // any query.
    let share = state
        .engine
        .admit(&super::query::principal_key(&operator), "operator")
        .await
        .map_err(|busy| to_api(busy.into()))?;
    let outcome = draft
        .decide(&state.audit)
        .await
        .map_err(|e| super::query::audit_unavailable(&state, &e))?;
    let dir = state.config.audit.dir.clone();
    let batch = tokio::task::spawn_blocking(move || {
        crate::audit::read_events(&dir)
            .map_err(|e| e.to_string())
            .and_then(|events| crate::audit::events_batch(&events).map_err(|e| e.to_string()))
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| {
        tracing::error!(error = %e, "audit trail could not be read for a query");
        ApiError::internal()
    })?;
    let limits = QueryLimits::from(&state.config.limits);
    let session: SessionFactory = {
        let limits = limits.clone();
        Box::new(move |runtime| audit_session(new_session(runtime, &limits), batch))
    };
    let job = QueryJob {
        sql: request.sql,
        format: Format::Json,
        info: AnswerInfo {
            habilitation: "operator".into(),
            policy_version: state.policy.current().version.clone(),
        },
        deadline: tokio::time::Instant::now() + limits.timeout,
        limits,
        // The whole answer, in memory (bounded by `limits.max_result_bytes`).
        head_bytes: usize::MAX,
        session,
    };
    let started = match state.engine.run(job, share).await {
        Ok(started) => started,
        Err(e) => return Err(super::query::failed(outcome, e)),
    };
    let AnswerBody::Whole(body) = started.body else {
        outcome.finish(Outcome::Error, Some("internal_error"), QueryEnd::default());
        return Err(ApiError::internal());
    };
    let end = QueryEnd {
        rows: started.head.rows as u64,
        bytes: body.len() as u64,
        truncated: started.head.truncated,
    };
    draft.sent(end.rows, end.bytes);
    outcome.finish(Outcome::Allowed, end.truncated.then_some("truncated"), end);
    axum::response::Response::builder()
        .header(
            axum::http::header::CONTENT_TYPE,
            Format::Json.content_type(),
        )
        .body(axum::body::Body::from(body))
        .map_err(|_| ApiError::internal())
}
