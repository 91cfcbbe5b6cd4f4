//! `GET /v1/lookup/{dataset}/{key}` and `POST /v1/lookup/{dataset}` (batch): one record at a
//! time for administrations, only the fields the habilitation grants, with traceability
//! parameters, rate limits per organisation and habilitation, and its audit record (keys
//! pseudonymised in an audit-only domain).
//!
//! Order of checks: habilitation and plan (403), traceability parameters (422, one code per
//! parameter), key against the key column's Table Schema (422), rate limit (429), then the
//! record (200, or 404 when no record has the key). It decides nothing itself: the plan says
//! which dataset, key column and fields.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::audit::AuditDraft;
use super::error::ApiError;
use super::query::refusal;
use super::{AppState, Authenticated};
use crate::audit::AuditKey;
use crate::identity::Principal;
use crate::lookup::{LookupError, Traceability, TraceabilityParams, answer_record, check_key};
use crate::policy::{AccessPlan, DatasetPlan, PolicySet};

/// Pseudonymisation domain of keys in audit records (no habilitation can use it: it is not a
/// valid habilitation id).
pub const AUDIT_DOMAIN: &str = "passerelle:audit";

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
/// (habilitation, organisation SIRET).
type LimiterKey = (String, String);

/// One limiter per (habilitation, organisation), created on first use with the habilitation's
/// quota.
#[derive(Default)]
pub struct LookupLimits {
    limiters: Mutex<HashMap<LimiterKey, (u32, Arc<Limiter>)>>,
}

impl LookupLimits {
    fn limiter(&self, habilitation: &str, organisation: &str, per_minute: u32) -> Arc<Limiter> {
        let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        let key = (habilitation.to_string(), organisation.to_string());
        if let Some((quota, limiter)) = map.get(&key)
            && *quota == per_minute
        {
            return limiter.clone();
        }
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let limiter = Arc::new(RateLimiter::direct(Quota::per_minute(n)).with_middleware());
        map.insert(key, (per_minute, limiter.clone()));
        limiter
    }
}

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

fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        "Invalid lookup",
        detail,
    )
}

/// Resolves the habilitation and the dataset's plan; 403 when it grants no lookup there
/// (whether or not the dataset exists: existence is not revealed).
fn dataset_plan(
    set: &PolicySet,
    principal: &Principal,
    habilitation: Option<&str>,
    dataset: &str,
) -> Result<(AccessPlan, DatasetPlan), ApiError> {
    let today = chrono::Utc::now().date_naive();
    let habilitation = set
        .resolve(principal, habilitation, today)
        .map_err(|r| refusal(&r))?;
    let plan = set.plan(principal, habilitation);
    let dataset_plan = plan
        .dataset(dataset)
        .filter(|d| d.refused.is_none() && d.lookup_key.is_some())
        .cloned()
        // SECURITY: no lookup right here (researchers, other datasets, unknown datasets alike).
        .ok_or_else(|| {
            ApiError::forbidden(
                "lookup_not_allowed",
                format!(
                    "habilitation `{}` allows no lookup on `{dataset}`",
                    plan.habilitation.id
                ),
            )
        })?;
    Ok((plan.as_ref().clone(), dataset_plan))
}

fn check_keys(set: &PolicySet, plan: &DatasetPlan, keys: &[String]) -> Result<(), ApiError> {
    let column = plan.lookup_key.as_deref().unwrap_or_default();
    let field = set
        .catalog
        .dataset(&plan.name)
        .and_then(|d| d.field(column))
        .ok_or_else(ApiError::internal)?;
    for key in keys {
        check_key(key, field).map_err(|e| unprocessable(e.code, e.message))?;
    }
    Ok(())
}

/// Applies the (habilitation, organisation) quota for `n` keys; the `RateLimit-*` headers
/// either way, and `Retry-After` with 429.
fn rate_limit(
    state: &AppState,
    plan: &AccessPlan,
    principal: &Principal,
    n: usize,
) -> Result<HeaderMap, Box<(ApiError, HeaderMap)>> {
    let limits = &state.config.limits;
    let set = state.policy.current();
    let expected = set
        .habilitations
        .get(&plan.habilitation.id)
        .and_then(|h| h.expected_volume_per_minute)
        .map(|v| v.saturating_mul(limits.lookup_rate_factor))
        .unwrap_or(limits.lookup_default_per_minute)
        .max(1);
    let organisation = principal.organisation_siret.clone().unwrap_or_default();
    let limiter = state
        .lookup_limits
        .limiter(&plan.habilitation.id, &organisation, expected);
    let mut headers = HeaderMap::new();
    headers.insert("ratelimit-limit", HeaderValue::from(expected));
    let cells = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    let per_cell_secs = 60.0 / f64::from(expected);
    match limiter.check_n(cells) {
        Ok(Ok(snapshot)) => {
            let remaining = snapshot.remaining_burst_capacity();
            headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
            let reset = (f64::from(expected - remaining.min(expected)) * per_cell_secs).ceil();
            headers.insert("ratelimit-reset", HeaderValue::from(reset as u64));
            Ok(headers)
        }
        Ok(Err(not_until)) => {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64;
            headers.insert("ratelimit-remaining", HeaderValue::from(0u32));
            headers.insert("ratelimit-reset", HeaderValue::from(wait));
            headers.insert("retry-after", HeaderValue::from(wait));
            Err(Box::new((too_many(format!("retry in {wait} s")), headers)))
        }
        Err(_) => {
            headers.insert("ratelimit-remaining", HeaderValue::from(0u32));
            headers.insert("retry-after", HeaderValue::from(60u32));
            Err(Box::new((
                too_many(format!(
                    "{n} keys exceed the quota of {expected} lookups per minute"
                )),
                headers,
            )))
        }
    }
}

fn too_many(detail: String) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many lookups",
        detail,
    )
}

/// The JSON answer, its size (and the records found) noted for the audit.
fn json_answer(draft: &AuditDraft, found: usize, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    draft.sent(found as u64, bytes.len() as u64);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

fn with_headers(mut response: Response, headers: HeaderMap) -> Response {
    response.headers_mut().extend(headers);
    response
}

/// Fills the audit draft: plan, dataset and granted fields, traceability, and the keys
/// pseudonymised in the audit-only domain.
fn trace(
    state: &AppState,
    draft: &AuditDraft,
    plan: &AccessPlan,
    dataset: &DatasetPlan,
    traceability: &Traceability,
    keys: &[String],
    found: usize,
) {
    let audit_domain = state.pseudonyms.domain(AUDIT_DOMAIN, 1).ok();
    // SECURITY: the audit never sees a raw key; without the audit domain, no key at all.
    let audit_keys: Vec<AuditKey> = keys
        .iter()
        .filter_map(|k| {
            audit_domain
                .as_ref()
                .and_then(|d| AuditKey::new(d.pseudonymise(k)).ok())
        })
        .collect();
    let today = chrono::Utc::now().date_naive();
    draft.plan(
        plan,
        Some(
            state
                .pseudonyms
                .version_on(&plan.habilitation.pseudonymisation_domain, today),
        ),
    );
    draft.datasets(plan, [dataset.name.as_str()]);
    let single = keys.len() == 1;
    draft.lookup(crate::audit::LookupTrace {
        context: traceability.context.clone(),
        recipient: traceability.recipient.clone(),
        object: traceability.object.clone(),
        key: if single {
            audit_keys.first().cloned()
        } else {
            None
        },
        keys: if single { Vec::new() } else { audit_keys },
    });
    draft.sent(found as u64, 0);
}

fn domain_of(
    state: &AppState,
    plan: &AccessPlan,
) -> Option<Arc<crate::pseudonym::PseudonymDomain>> {
    let today = chrono::Utc::now().date_naive();
    state
        .pseudonyms
        .domain_on(&plan.habilitation.pseudonymisation_domain, today)
        .ok()
}

/// A rate-limit refusal with its `RateLimit-*` and `Retry-After` headers.
fn refused_response((error, headers): (ApiError, HeaderMap)) -> Response {
    with_headers(error.into_response(), headers)
}

/// Each key's granted record (or `None`), read off the async runtime (file I/O).
async fn lookup_keys(
    state: &AppState,
    set: &Arc<PolicySet>,
    plan: &AccessPlan,
    dataset_plan: &DatasetPlan,
    keys: Vec<String>,
) -> Result<Vec<Option<Map<String, Value>>>, ApiError> {
    let domain = domain_of(state, plan);
    // One key whose index is built reads one page of a file the page cache holds (tens of
    // µs): here, rather than through the blocking pool, whose thread hand-offs took 11 % of
    // the CPU at saturation. Batches and index builds go to the blocking pool.
    if let [key] = keys.as_slice()
        && let Some(column) = dataset_plan.lookup_key.as_deref()
        && state.lookups.is_built(&dataset_plan.name, column)
    {
        return Ok(vec![lookup_one(
            state,
            set,
            dataset_plan,
            key,
            domain.as_ref(),
        )?]);
    }
    let (state, set, dataset_plan) = (state.clone(), set.clone(), dataset_plan.clone());
    tokio::task::spawn_blocking(move || {
        keys.iter()
            .map(|k| lookup_one(&state, &set, &dataset_plan, k, domain.as_ref()))
            .collect()
    })
    .await
    .map_err(|_| ApiError::internal())?
}

fn lookup_one(
    state: &AppState,
    set: &PolicySet,
    dataset: &DatasetPlan,
    key: &str,
    domain: Option<&Arc<crate::pseudonym::PseudonymDomain>>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match answer_record(&state.lookups, &set.catalog, dataset, key, domain) {
        Ok(record) => Ok(Some(record)),
        Err(LookupError::NotFound) => Ok(None),
        Err(LookupError::NoIndex) => Err(ApiError::unavailable(
            "lookups on this dataset are not available (no key index)",
        )),
        Err(LookupError::Internal(detail)) => {
            tracing::error!(error = %detail, "lookup failed internally");
            Err(ApiError::internal())
        }
    }
}

/// A lookup request that passed every check before reading: the caller's plan for the
/// dataset, valid traceability parameters and keys, and room in the rate limit.
struct Admitted {
    set: Arc<PolicySet>,
    plan: AccessPlan,
    dataset_plan: DatasetPlan,
    traceability: Traceability,
    /// `RateLimit-*` headers for the answer.
    headers: HeaderMap,
}

/// What [`admit`] decided when no check failed.
enum Admission {
    Admitted(Box<Admitted>),
    /// Over the rate limit: the 429 answer, with its headers.
    Limited(Response),
}

/// The checks both lookup forms make, in this order (their error precedence is part of the
/// API): habilitation and dataset (403), traceability parameters (422), the number of keys
/// (batches, 422), each key against its column's constraints (422), the rate limit (429).
fn admit(
    state: &AppState,
    principal: &Principal,
    habilitation: Option<&str>,
    dataset: &str,
    trace: &TraceabilityParams,
    keys: &[String],
    max_keys: Option<usize>,
) -> Result<Admission, ApiError> {
    let set = state.policy.current();
    let (plan, dataset_plan) = dataset_plan(&set, principal, habilitation, dataset)?;
    let traceability = trace
        .check()
        .map_err(|e| unprocessable(e.code, e.message))?;
    if let Some(max) = max_keys
        && (keys.is_empty() || keys.len() > max)
    {
        return Err(unprocessable(
            "keys_invalid",
            format!("send 1 to {max} keys"),
        ));
    }
    check_keys(&set, &dataset_plan, keys)?;
    let headers = match rate_limit(state, &plan, principal, keys.len()) {
        Ok(headers) => headers,
        Err(refused) => return Ok(Admission::Limited(refused_response(*refused))),
    };
    Ok(Admission::Admitted(Box::new(Admitted {
        set,
        plan,
        dataset_plan,
        traceability,
        headers,
    })))
}

impl Admitted {
    /// Each key's granted record (or `None`), traced in the request's audit record.
    async fn read(
        &self,
        state: &AppState,
        draft: &AuditDraft,
        keys: &[String],
    ) -> Result<(Vec<Option<Map<String, Value>>>, usize), ApiError> {
        let records = lookup_keys(
            state,
            &self.set,
            &self.plan,
            &self.dataset_plan,
            keys.to_vec(),
        )
        .await?;
        let found = records.iter().filter(|r| r.is_some()).count();
        trace(
            state,
            draft,
            &self.plan,
            &self.dataset_plan,
            &self.traceability,
            keys,
            found,
        );
        Ok((records, found))
    }

    /// The answer: the common fields and `field` (`record` or `results`), with the rate headers.
    fn answer(self, draft: &AuditDraft, found: usize, field: &str, value: Value) -> Response {
        let mut body = json!({
            "dataset": self.dataset_plan.name,
            "habilitation": self.plan.habilitation.id,
            "policy_version": self.plan.policy_version,
        });
        body[field] = value;
        with_headers(json_answer(draft, found, &body), self.headers)
    }
}

pub async fn lookup(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Extension(draft): Extension<AuditDraft>,
    Path((dataset, key)): Path<(String, String)>,
    Query(query): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    let keys = [key];
    let admitted = match admit(
        &state,
        &principal,
        query.habilitation.as_deref(),
        &dataset,
        &query.trace,
        &keys,
        None,
    )? {
        Admission::Admitted(admitted) => admitted,
        Admission::Limited(response) => return Ok(response),
    };
    let (mut records, found) = admitted.read(&state, &draft, &keys).await?;
    match records.pop().flatten() {
        Some(record) => Ok(admitted.answer(&draft, found, "record", Value::Object(record))),
        None => Ok(with_headers(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "record_not_found",
                "No record",
                "no record has this key",
            )
            .into_response(),
            admitted.headers,
        )),
    }
}

pub async fn lookup_batch(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Extension(draft): Extension<AuditDraft>,
    Path(dataset): Path<String>,
    Json(request): Json<BatchRequest>,
) -> Result<Response, ApiError> {
    let trace = TraceabilityParams {
        context: request.context.clone(),
        recipient: request.recipient.clone(),
        object: request.object.clone(),
    };
    let admitted = match admit(
        &state,
        &principal,
        request.habilitation.as_deref(),
        &dataset,
        &trace,
        &request.keys,
        Some(state.config.limits.lookup_batch_max),
    )? {
        Admission::Admitted(admitted) => admitted,
        Admission::Limited(response) => return Ok(response),
    };
    let (records, found) = admitted.read(&state, &draft, &request.keys).await?;
    let items: Vec<Value> = request
        .keys
        .iter()
        .zip(records)
        .map(|(key, record)| match record {
            Some(record) => json!({"key": key, "status": 200, "record": record}),
            None => json!({"key": key, "status": 404}),
        })
        .collect();
    Ok(admitted.answer(&draft, found, "results", Value::Array(items)))
}
