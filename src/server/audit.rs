//! One audit record per request that reaches authentication, durable before the answer leaves.
//!
//! The `audit_trail` middleware puts an [`AuditDraft`] in the request; the `Authenticated`
//! extractor fills the principal (or marks the token refused), handlers fill the habilitation,
//! datasets and treatments, SQL, lookup traceability and key versions. When the handler has
//! answered, the middleware completes the outcome (from the status and the problem code) and
//! waits for [`AuditLog::record`]: only then does the answer leave. If the record cannot be
//! written the caller gets 503 and readiness drops — no access without a record.
//!
//! Streamed query answers: the decision is recorded before the first byte as above; when the
//! stream ends, a second record of the same request (`action` "query completed") gives the rows
//! and bytes sent, and the last chunk leaves only once it is durable.
//!
//! Must never: put a token, a raw key or a result value into a draft.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::middleware::RequestId;
use crate::audit::{
    AuditEvent, AuditHabilitation, AuditKind, AuditPrincipal, ColumnAccess, DatasetAccess,
    KeyVersion, Outcome,
};
use crate::identity::Principal;
use crate::policy::AccessPlan;

/// The record of the request being served, filled as it goes.
#[derive(Clone)]
pub struct AuditDraft(Arc<Mutex<Draft>>);

struct Draft {
    event: AuditEvent,
    /// Authentication was attempted: the request is audited.
    reached_auth: bool,
}

impl AuditDraft {
    fn new(event: AuditEvent) -> Self {
        Self(Arc::new(Mutex::new(Draft {
            event,
            reached_auth: false,
        })))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Draft) -> R) -> R {
        let mut draft = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut draft)
    }

    /// A validated token's principal (never the token).
    pub fn authenticated(&self, principal: &Principal) {
        self.with(|d| {
            d.reached_auth = true;
            d.event.principal = Some(AuditPrincipal {
                issuer: principal.issuer.clone(),
                idp: principal.idp_id.clone(),
                subject: principal.subject.clone(),
                organisation: principal.organisation_siret.clone(),
            });
        });
    }

    /// A refused token: the event kind becomes `auth_refused`.
    pub fn token_refused(&self, reason: &str) {
        self.with(|d| {
            d.reached_auth = true;
            d.event.kind = AuditKind::AuthRefused;
            d.event.reason = Some(reason.to_string());
        });
    }

    /// The habilitation and policy version a decision was taken under, and the key version of
    /// its pseudonymisation domain.
    pub fn plan(&self, plan: &AccessPlan, key_version: Option<u32>) {
        self.with(|d| {
            d.event.habilitation = Some(AuditHabilitation {
                id: plan.habilitation.id.clone(),
                legal_basis: plan.habilitation.legal_basis.nature.clone(),
                purpose: plan.habilitation.purpose.clone(),
            });
            d.event.policy_version = Some(plan.policy_version.clone());
            if let Some(version) = key_version {
                d.event.key_versions = vec![KeyVersion {
                    domain: plan.habilitation.pseudonymisation_domain.clone(),
                    version,
                }];
            }
        });
    }

    /// Datasets touched, with every visible column and its treatment.
    pub fn datasets<'a>(&self, plan: &AccessPlan, names: impl IntoIterator<Item = &'a str>) {
        let accesses: Vec<DatasetAccess> = names
            .into_iter()
            .filter_map(|name| plan.dataset(name))
            .map(|d| DatasetAccess {
                dataset: d.name.clone(),
                columns: d
                    .visible_columns()
                    .map(|c| ColumnAccess {
                        column: c.name.clone(),
                        treatment: c.treatment.label(),
                    })
                    .collect(),
            })
            .collect();
        self.with(|d| d.event.datasets = accesses);
    }

    pub fn sql(&self, sql: &str) {
        self.with(|d| d.event.sql = Some(crate::audit::SqlText::bounded(sql)));
    }

    pub fn lookup(&self, trace: crate::audit::LookupTrace) {
        self.with(|d| d.event.lookup = Some(trace));
    }

    /// Rows and bytes sent (for answers known whole before they leave).
    pub fn sent(&self, rows: u64, bytes: u64) {
        self.with(|d| {
            d.event.rows = rows;
            d.event.bytes = bytes;
        });
    }

    /// The completion record of a streamed answer (same request, rows and bytes sent).
    pub fn completion(
        &self,
        rows: u64,
        bytes: u64,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> AuditEvent {
        self.with(|d| {
            let mut event = d.event.clone();
            event.time = chrono::Utc::now();
            event.action = "query completed".into();
            event.rows = rows;
            event.bytes = bytes;
            event.outcome = outcome;
            event.reason = reason.map(str::to_string);
            event
        })
    }
}

fn kind_of(route: &str) -> Option<AuditKind> {
    if route.starts_with("/v1/query") {
        Some(AuditKind::Query)
    } else if route.starts_with("/v1/lookup") {
        Some(AuditKind::Lookup)
    } else if route.starts_with("/v1/datasets") {
        Some(AuditKind::Datasets)
    } else if route.starts_with("/v1/me") {
        Some(AuditKind::Me)
    } else if route.starts_with("/v1/admin") {
        Some(AuditKind::Admin)
    } else {
        None
    }
}

/// Records the request's event before its answer leaves (see the module doc).
pub async fn audit_trail(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let Some(kind) = route.as_deref().and_then(kind_of) else {
        return next.run(request).await;
    };
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let action = format!("{} {}", request.method(), route.unwrap_or_default());
    let draft = AuditDraft::new(AuditEvent::new(kind, request_id, action));
    request.extensions_mut().insert(draft.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    let (reached, mut event) = draft.with(|d| (d.reached_auth, d.event.clone()));
    if !reached {
        return response;
    }
    let status = response.status();
    let code = response.extensions().get::<ApiError>().map(|e| e.code);
    event.outcome = if status.is_success() {
        Outcome::Allowed
    } else if status.is_server_error() {
        Outcome::Error
    } else {
        Outcome::Refused
    };
    if event.reason.is_none() {
        event.reason = code.map(str::to_string);
    }
    event.duration_ms = started.elapsed().as_millis() as u64;
    // SECURITY: no record, no answer.
    match state.audit.record(event).await {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(error = %e, "audit record failed: answer withheld");
            metrics::counter!("passerelle_audit_failures_total").increment(1);
            ApiError::unavailable("the audit trail cannot be written: no access without a record")
                .into_response()
        }
    }
}
