//! The audit record of one request, filled as its use case goes, and written by the use case
//! itself before its answer leaves.
//!
//! Owns: [`RequestRecord`] and the two ways a request is recorded:
//! - **one record** for a request answered at once (`/v1/me`, lookups, operators' calls,
//!   refusals): [`RequestRecord::settle`] writes it, durably, from the use case's result; an
//!   answer is never released when that write fails;
//! - **a decision, then an outcome** for work that runs after its decision (queries):
//!   [`RequestRecord::decide`] writes the decision durably before any work starts and hands back
//!   an [`OutcomeGuard`], which writes the outcome on every way the work ends (answer sent,
//!   error, timeout, client gone, panic — a crash leaves the decision on record).
//!
//! A request that reached authentication but no use case (a body that does not parse) is
//! recorded by [`RequestRecord::settle_unserved`], which a transport calls once it has answered.
//!
//! Must never: hold a token, a raw key or a result value.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::audit::{
    AuditEvent, AuditHabilitation, AuditKind, AuditLog, AuditPrincipal, AuditStage, ColumnAccess,
    DatasetAccess, KeyVersion, LookupTrace, Outcome, SqlText,
};
use crate::engine::QueryEnd;
use crate::identity::Principal;
use crate::policy::AccessPlan;

use super::error::GatewayError;

/// The record of the request being served. Cheap to clone (shared by the transport and the
/// use case).
#[derive(Clone)]
pub struct RequestRecord(Arc<Mutex<Draft>>);

impl std::fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestRecord")
    }
}

struct Draft {
    event: AuditEvent,
    started: Instant,
    /// Authentication was attempted: the request is audited.
    reached_auth: bool,
    /// Its record (or its decision) is written: nothing more for the transport to do.
    written: bool,
}

impl RequestRecord {
    /// The record of a request of `kind`, e.g. `POST /v1/query` with its request id.
    pub fn new(kind: AuditKind, request_id: impl Into<String>, action: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(Draft {
            event: AuditEvent::new(kind, request_id, action),
            started: Instant::now(),
            reached_auth: false,
            written: false,
        })))
    }

    /// Keeps the client's own `X-Request-ID` beside the server's id.
    pub fn with_client_request_id(self, id: Option<String>) -> Self {
        self.with(|d| d.event.client_request_id = id);
        self
    }

    fn with<R>(&self, f: impl FnOnce(&mut Draft) -> R) -> R {
        let mut draft = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut draft)
    }

    /// The request id (`X-Request-ID`).
    pub fn request_id(&self) -> String {
        self.with(|d| d.event.request_id.clone())
    }

    /// A validated token's principal (never the token).
    pub(super) fn authenticated(&self, principal: &Principal) {
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

    /// A request without a valid token, counted in the refusal summaries instead of a record
    /// of its own: nothing is left for the transport to write.
    pub(super) fn summarised(&self) {
        self.with(|d| {
            d.reached_auth = true;
            d.written = true;
        });
    }

    /// The habilitation and policy version a decision was taken under, and the key version of
    /// its pseudonymisation domain.
    pub(super) fn plan(&self, plan: &AccessPlan, key_version: Option<u32>) {
        let habilitation = plan.habilitation();
        self.with(|d| {
            d.event.habilitation = Some(AuditHabilitation {
                id: habilitation.id.clone(),
                legal_basis: habilitation.legal_basis.nature.clone(),
                purpose: habilitation.purpose.clone(),
            });
            d.event.policy_version = Some(plan.policy_version().to_string());
            if let Some(version) = key_version {
                d.event.key_versions = vec![KeyVersion {
                    domain: habilitation.pseudonymisation_domain.clone(),
                    version,
                }];
            }
        });
    }

    /// Datasets touched, with every visible column and its treatment.
    pub(super) fn datasets<'a>(&self, plan: &AccessPlan, names: impl IntoIterator<Item = &'a str>) {
        let accesses: Vec<DatasetAccess> = names
            .into_iter()
            .filter_map(|name| plan.dataset(name))
            .map(|d| DatasetAccess {
                dataset: d.name().to_string(),
                columns: d
                    .visible_columns()
                    .map(|c| ColumnAccess {
                        column: c.name().to_string(),
                        treatment: c.treatment().label(),
                    })
                    .collect(),
            })
            .collect();
        self.with(|d| d.event.datasets = accesses);
    }

    /// The statement, whole when it is at most `keep` bytes (the hub's `max_sql_bytes`: a
    /// longer one is refused and kept cut), with its SHA-256.
    pub(super) fn sql(&self, sql: &str, keep: usize) {
        self.with(|d| d.event.sql = Some(SqlText::new(sql, keep)));
    }

    pub(super) fn lookup(&self, trace: LookupTrace) {
        self.with(|d| d.event.lookup = Some(trace));
    }

    /// Rows and bytes sent (for answers known whole before they leave).
    pub(super) fn sent(&self, rows: u64, bytes: u64) {
        self.with(|d| {
            d.event.rows = rows;
            d.event.bytes = bytes;
        });
    }

    /// The single record of a request answered at once, written durably from `result`: allowed,
    /// refused (the caller's mistake) or error (the hub's). An answer whose record cannot be
    /// written is replaced by the audit refusal.
    pub(super) async fn settle<T>(
        &self,
        audit: &AuditLog,
        result: Result<T, GatewayError>,
    ) -> Result<T, GatewayError> {
        let (outcome, reason) = match &result {
            Ok(_) => (Outcome::Allowed, None),
            Err(e) if e.is_the_hubs() => (Outcome::Error, Some(e.code)),
            Err(e) => (Outcome::Refused, Some(e.code)),
        };
        self.write(audit, outcome, reason).await?;
        result
    }

    /// The record of an authenticated request that reached no use case (its transport refused
    /// it, e.g. a body that does not parse), with the transport's code; nothing when its use
    /// case wrote its own record or it never reached authentication. `Err`: the answer must be
    /// withheld (no record, no answer).
    pub async fn settle_unserved(
        &self,
        audit: &AuditLog,
        outcome: Outcome,
        code: Option<&str>,
    ) -> Result<(), GatewayError> {
        let pending = self.with(|d| d.reached_auth && !d.written);
        if !pending {
            return Ok(());
        }
        self.write(audit, outcome, code).await
    }

    async fn write(
        &self,
        audit: &AuditLog,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> Result<(), GatewayError> {
        let event = self.with(|d| {
            d.written = true;
            let mut event = d.event.clone();
            event.outcome = outcome;
            if event.reason.is_none() {
                event.reason = reason.map(str::to_string);
            }
            event.duration_ms = d.started.elapsed().as_millis() as u64;
            event
        });
        // SECURITY: no record, no answer.
        audit.record(event).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit record failed: answer withheld");
            metrics::counter!("passerelle_audit_failures_total").increment(1);
            GatewayError::audit_unavailable()
        })
    }

    /// Records the decision to run the request's work (durable on return), and hands back the
    /// guard that will record its outcome. `Err`: nothing may run.
    pub(super) async fn decide(&self, audit: &AuditLog) -> Result<OutcomeGuard, GatewayError> {
        let event = self.with(|d| {
            let mut event = d.event.clone();
            event.stage = Some(AuditStage::Decision);
            event.outcome = Outcome::Allowed;
            event
        });
        // SECURITY: the decision is on the trail before any work starts.
        audit.record(event).await.map_err(|e| {
            tracing::error!(error = %e, healthy = audit.healthy(), "audit decision record failed: nothing runs");
            metrics::counter!("passerelle_audit_failures_total").increment(1);
            GatewayError::audit_unavailable()
        })?;
        self.with(|d| d.written = true);
        Ok(OutcomeGuard {
            record: self.clone(),
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
    record: RequestRecord,
    audit: AuditLog,
    started: Instant,
    done: bool,
}

impl OutcomeGuard {
    fn event(&mut self, outcome: Outcome, reason: Option<&str>, end: QueryEnd) -> AuditEvent {
        self.done = true;
        let mut event = self.record.outcome(outcome, reason, end);
        event.duration_ms = self.started.elapsed().as_millis() as u64;
        event
    }

    /// The outcome, group-committed (the answer does not wait for it).
    pub fn finish(mut self, outcome: Outcome, reason: Option<&str>, end: QueryEnd) {
        let event = self.event(outcome, reason, end);
        self.audit.record_detached(event);
    }

    /// A failure's outcome (refused for the caller's mistakes, error for the hub's), and the
    /// error to answer.
    pub fn failed(self, e: GatewayError) -> GatewayError {
        let kind = if e.is_the_hubs() {
            Outcome::Error
        } else {
            Outcome::Refused
        };
        self.finish(kind, Some(e.code), QueryEnd::default());
        e
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
