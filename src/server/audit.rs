//! One audit record per request that reaches authentication, durable before the answer leaves.
//!
//! The `audit_trail` middleware puts an [`AuditDraft`] in the request; the `Authenticated`
//! extractor fills the principal (or marks the token refused), handlers fill the habilitation,
//! datasets and treatments, SQL, lookup traceability and key versions. When the handler has
//! answered, the middleware completes the outcome (from the status and the problem code) and
//! waits for [`AuditLog::record`]: only then does the answer leave. If the record cannot be
//! written the caller gets 503 and readiness drops — no access without a record.
//!
//! Queries, whose work can be long, costly or fatal, get two records of the same request id: a
//! **decision** (`stage` `decision`: who, habilitation, policy version, SQL), durable before
//! any planning starts, then an **outcome** (`stage` `outcome`: datasets and treatments, rows,
//! bytes, error) written by an [`OutcomeGuard`] on every way the query can end — answer sent,
//! error, timeout, client gone, panic (a crash leaves the decision on record). The outcome of a
//! whole answer is group-committed with the next batch; a streamed answer's last chunk leaves
//! only once its outcome is durable. The middleware then writes nothing more for the request.
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
    AuditEvent, AuditHabilitation, AuditKind, AuditPrincipal, AuditStage, ColumnAccess,
    DatasetAccess, KeyVersion, Outcome,
};
use crate::engine::QueryEnd;
use crate::identity::Principal;
use crate::policy::AccessPlan;

/// The record of the request being served, filled as it goes.
#[derive(Clone)]
pub struct AuditDraft(Arc<Mutex<Draft>>);

struct Draft {
    event: AuditEvent,
    /// Authentication was attempted: the request is audited.
    reached_auth: bool,
    /// The handler recorded a decision: its outcome is the guard's, not the middleware's.
    decided: bool,
}

impl AuditDraft {
    fn new(event: AuditEvent) -> Self {
        Self(Arc::new(Mutex::new(Draft {
            event,
            reached_auth: false,
            decided: false,
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

    /// Records the decision to run the request's work (durable on return), and hands back the
    /// guard that will record its outcome. `Err`: nothing may run (503).
    pub async fn decide(
        &self,
        audit: &crate::audit::AuditLog,
    ) -> Result<OutcomeGuard, crate::audit::AuditError> {
        let event = self.with(|d| {
            let mut event = d.event.clone();
            event.stage = Some(AuditStage::Decision);
            event.outcome = Outcome::Allowed;
            event
        });
        // SECURITY: the decision is on the trail before any work starts.
        audit.record(event).await?;
        self.with(|d| d.decided = true);
        Ok(OutcomeGuard {
            draft: self.clone(),
            audit: audit.clone(),
            started: Instant::now(),
            done: false,
        })
    }

    fn outcome(&self, outcome: Outcome, reason: Option<&str>, end: QueryEnd) -> AuditEvent {
        self.with(|d| {
            let mut event = d.event.clone();
            event.time = chrono::Utc::now();
            event.stage = Some(AuditStage::Outcome);
            event.rows = end.rows;
            event.bytes = end.bytes;
            event.outcome = outcome;
            event.reason = reason.map(str::to_string);
            event
        })
    }
}

/// Records the outcome of a decided request exactly once, whatever way it ends: by one of its
/// methods, or when dropped (client gone, panic, runtime shut down) as an error.
pub struct OutcomeGuard {
    draft: AuditDraft,
    audit: crate::audit::AuditLog,
    started: Instant,
    done: bool,
}

impl OutcomeGuard {
    fn event(&mut self, outcome: Outcome, reason: Option<&str>, end: QueryEnd) -> AuditEvent {
        self.done = true;
        let mut event = self.draft.outcome(outcome, reason, end);
        event.duration_ms = self.started.elapsed().as_millis() as u64;
        event
    }

    /// The outcome, group-committed (the answer does not wait for it).
    pub fn finish(mut self, outcome: Outcome, reason: Option<&str>, end: QueryEnd) {
        let event = self.event(outcome, reason, end);
        self.audit.record_detached(event);
    }

    /// The outcome, durable on return (the last chunk of a streamed answer waits for it).
    pub async fn finish_durable(
        mut self,
        outcome: Outcome,
        reason: Option<&str>,
        end: QueryEnd,
    ) -> Result<(), crate::audit::AuditError> {
        let event = self.event(outcome, reason, end);
        self.audit.record(event).await.map(|_| ())
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // SECURITY: every decided request gets an outcome, even one that never finished.
        let reason = if std::thread::panicking() {
            "panic"
        } else {
            "abandoned"
        };
        let event = self.event(Outcome::Error, Some(reason), QueryEnd::default());
        self.audit.record_detached(event);
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
    let (reached, decided, mut event) =
        draft.with(|d| (d.reached_auth, d.decided, d.event.clone()));
    // A decided request's records are its decision and its guard's outcome.
    if !reached || decided {
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
