//! Gateway: the use cases of the hub, between the transports (HTTPS today, Flight SQL next) and
//! the core, each the one place where its security decisions and audit facts are made.
//!
//! Owns: one function per use case — [`Gateway::authenticate`], [`Gateway::query`],
//! [`Gateway::lookup`], [`Gateway::datasets`], [`Gateway::me`], and the operators' ones
//! (`policy_in_force`, `versions`, `submit`, `put_in_force`, `explain`, `journal`,
//! `audit_query`, `health`, `operator_only`) — each taking an authenticated [`Caller`] and a
//! typed request, returning a typed outcome or a [`GatewayError`], and writing its own audit
//! record(s) (`record`) before its answer may leave. It also owns readiness (`is_ready` for
//! anyone, `readiness` behind the operators' `health`) and re-exports what transports need
//! (answer formats and streams), so that they never import `engine`, `policy` or `lookup`.
//!
//! Must never: know a transport (no HTTP status, header, gRPC or HTML type), or let a transport
//! reach data without going through one of these functions.
//!
//! ```text
//! transport ──▶ Gateway::authenticate ──▶ Caller ──▶ Gateway::<use case> ──▶ outcome | GatewayError
//!                                                           │
//!                       policy (plan) · engine (lanes) · lookup · audit (record before answer)
//! ```

mod admin;
mod auth;
mod catalog;
mod console;
mod error;
mod lookup;
mod query;
mod record;
mod refusals;
mod seal;
pub mod sessions;
mod statement;
mod tables;

use std::sync::Arc;

use serde_json::{Value, json};

pub use crate::identity::sign_in::{PendingSignIn, SignInStart};
pub use crate::policy::PolicyTexts;
pub use crate::policy::diff::Change;
pub use crate::policy::history::VersionMeta;
pub use admin::{
    Consultation, ExplainRequest, Explanation, HealthView, InForceView, Journal, PolicyInForce,
    PolicySubmission, Readiness, SubmittedVersion, VersionPreview, VersionsView,
};
pub use auth::Authorization;
pub use catalog::{ColumnView, DatasetView, DatasetsView, MeView, TableView, TablesView};
pub use console::{
    AuditFilter, AuditRow, AuditSearch, CitizenJournal, CitizenSignIn, ConsoleSignIn,
    HabilitationRow, SignedInView, TableRow,
};
pub use error::{ErrorKind, GatewayError, RateState};
pub use lookup::{LookupAnswer, LookupRequest};
pub use query::{AnswerStream, QueryAnswer, QueryBody, QueryRequest};
pub use record::RequestRecord;
pub use statement::{Cancellation, MAX_HANDLE_BYTES, PreparedStatement};
pub use tables::{DimensionView, MeasureView, ProfileView, TableInfo};

pub use crate::audit::{AuditKind, Outcome};
pub use crate::engine::Format;
pub use crate::identity::ClientCertificate;
pub use crate::lookup::TraceabilityParams;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::engine::tables::{PublishedTables, TableStatus};
use crate::engine::{Engine, Extracts, HubData};
use crate::identity::{Authenticator, Principal};
use crate::lookup::Lookups;
use crate::policy::history::PolicyHistory;
use crate::policy::{AccessPlan, PolicySet, PolicyStore};
use crate::pseudonym::KeyRing;

/// What the hub has loaded, for readiness and operators.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HubSummary {
    pub datasets: Vec<String>,
}

/// What the hub loaded at start, handed to the gateway in one piece.
pub struct Loaded {
    pub identity: Arc<dyn Authenticator>,
    pub policy: Arc<PolicyStore>,
    pub history: PolicyHistory,
    pub pseudonyms: Arc<KeyRing>,
    pub lookups: Arc<Lookups>,
    /// The hub's bucket when `data.url` is set (the datasets are its objects).
    pub objects: Option<Arc<crate::storage::ObjectData>>,
    pub audit: AuditLog,
    pub hub: HubSummary,
    /// The cluster that runs large queries (`[cluster]`; `None`: all run here).
    pub cluster: Option<Arc<dyn crate::engine::Cluster>>,
}

/// The hub's use cases and everything they use; one documented field per dependency.
pub struct Gateway {
    /// The validated configuration.
    config: Config,
    /// Token validation (the only reader of bearer tokens).
    identity: Arc<dyn Authenticator>,
    /// The policy set in force (swapped atomically on reload).
    policy: Arc<PolicyStore>,
    /// Submitted policy versions.
    history: PolicyHistory,
    /// Pseudonymisation keys (the engine applies them; the key never leaves the ring).
    pseudonyms: Arc<KeyRing>,
    /// What was loaded at start.
    hub: HubSummary,
    /// The query engine: caches, memory budget, query lanes, fair admission.
    engine: Engine,
    /// Key indexes for lookups.
    lookups: Arc<Lookups>,
    /// Lookup rate limiters per habilitation and organisation.
    lookup_limits: lookup::LookupLimits,
    /// Requests without a valid token: counted, summarised per window, rate limited per source.
    refusals: Arc<refusals::Refusals>,
    /// Seals the statement handles a transport gives out (Flight SQL tickets).
    sealer: statement::Sealer,
    /// The answers of sealed statements being streamed, for their principal to cancel.
    running: Arc<statement::Running>,
    /// The Flight SQL Handshake's client-credentials exchange, when configured.
    client_credentials: Option<crate::identity::ClientCredentials>,
    /// The console's sign-in (authorization code with PKCE), when `[console]` is set.
    sign_in: Option<crate::identity::sign_in::SignIn>,
    /// The console's and the journal's sessions (in memory, or in `console.sessions_dir`
    /// shared by the gateways), when `[console]` is set.
    sessions: Option<Arc<sessions::Sessions>>,
    /// Bounds on reading the whole audit trail (journals, the console's audit search).
    trail_reads: console::TrailReads,
    /// The audit trail: every request that reaches authentication is recorded before its
    /// answer leaves.
    audit: AuditLog,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// An authenticated caller: its principal (bound to its issuer) and the record of its request.
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Principal,
    record: RequestRecord,
}

impl Caller {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The record of the caller's request (a transport settles it when no use case did).
    pub fn record(&self) -> &RequestRecord {
        &self.record
    }

    /// The person behind the caller, as one text (issuer, identity provider, subject): what
    /// bounds a person's console sessions.
    pub fn person(&self) -> String {
        self.principal_key()
    }

    /// The principal as admission counts it: one per issuer and subject.
    fn share_key(&self) -> String {
        format!("{}\n{}", self.principal.issuer, self.principal.subject)
    }

    /// The principal whole (issuer, identity provider in a federation, subject): what the
    /// plan cache keys a caller's plans by.
    fn principal_key(&self) -> String {
        let p = &self.principal;
        // Each part with its length (no two principals give one text); no idp is not "".
        let idp = p
            .idp_id
            .as_ref()
            .map_or("-".to_string(), |i| format!("{}:{i}", i.len()));
        format!(
            "{}:{} {idp} {}:{}",
            p.issuer.len(),
            p.issuer,
            p.subject.len(),
            p.subject
        )
    }
}

impl Gateway {
    /// The policy set in force and the caller's plan under `habilitation` (or its only one),
    /// resolved today; refused when it is not held, not valid today or ambiguous.
    fn plan_for(
        &self,
        caller: &Caller,
        habilitation: Option<&str>,
    ) -> Result<(Arc<PolicySet>, Arc<AccessPlan>), GatewayError> {
        let set = self.policy.current();
        let today = chrono::Utc::now().date_naive();
        // SECURITY: the habilitation must be held by the caller and valid today.
        let held = set
            .resolve(&caller.principal, habilitation, today)
            .map_err(|r| GatewayError::refusal(&r))?;
        let plan = set.plan(&caller.principal, held);
        Ok((set, plan))
    }

    /// Starts writing the summaries of requests without a valid token, one batch per
    /// `audit.refusal_window_secs` (call once, inside the runtime).
    pub fn spawn_refusal_summaries(&self) -> tokio::task::JoinHandle<()> {
        refusals::spawn_summaries(
            self.refusals.clone(),
            self.audit.clone(),
            std::time::Duration::from_secs(self.config.audit.refusal_window_secs.max(1)),
        )
    }

    /// Keeps the tables of the statistical secret current: at start, then every
    /// `TABLE_REFRESH` (a new policy version or a replaced source file is noticed within it),
    /// rebuilding what is stale one table at a time (call once, inside the runtime).
    ///
    /// Every publication and refusal is an audit record (`table_publication`): which version of
    /// which table readers may see, and why one may not be seen.
    pub fn spawn_table_refresher(&self) -> tokio::task::JoinHandle<()> {
        let tables = self.engine.tables().clone();
        let policy = self.policy.clone();
        let audit = self.audit.clone();
        tokio::spawn(async move {
            let mut recorded: std::collections::HashMap<String, TableStatus> = Default::default();
            loop {
                let set = policy.current();
                tables.refresh(&set).await;
                for spec in &set.tables.list {
                    let Some(status) = tables.status(&spec.id) else {
                        continue;
                    };
                    if recorded.get(&spec.id) == Some(&status) {
                        continue;
                    }
                    if let Some(event) = publication_event(&spec.id, &status)
                        && let Err(e) = audit.record(event).await
                    {
                        tracing::error!(error = %e, table = %spec.id, "table publication could not be recorded in the audit trail");
                        // Tried again at the next pass.
                        continue;
                    }
                    recorded.insert(spec.id.clone(), status);
                }
                tokio::time::sleep(TABLE_REFRESH).await;
            }
        })
    }

    /// Writes the current window's summaries now (at shutdown: no count is lost).
    pub async fn flush_refusal_summaries(&self) {
        self.refusals.flush(&self.audit).await;
    }
}

/// The trusted issuers as policies see them (name and asserted attributes), from the
/// configuration: the hub binds every policy set's member rules to them.
pub fn trusted_issuers(
    identity: &crate::config::IdentityConfig,
) -> Vec<crate::policy::TrustedIssuer> {
    identity
        .issuers
        .iter()
        .map(|i| crate::policy::TrustedIssuer {
            name: i.policy_name().to_string(),
            attributes: i.claims.clone(),
        })
        .collect()
}

/// What a publication was audited with, for its audit record.
fn joint_audit(summary: &crate::engine::tables::TableSummary) -> String {
    let mut with = Vec::new();
    if let Some(previous) = &summary.audited_with_previous {
        with.push(format!("the version it replaces (data version {previous})"));
    }
    if summary.audited_with_linked > 0 {
        with.push(format!(
            "{} linked table(s) of the same source",
            summary.audited_with_linked
        ));
    }
    if with.is_empty() {
        String::new()
    } else {
        format!(", audited together with {}", with.join(" and "))
    }
}

/// The audit record of a table's new status (none while it is pending).
fn publication_event(id: &str, status: &TableStatus) -> Option<crate::audit::AuditEvent> {
    use crate::audit::{AuditEvent, AuditKind, Outcome};
    match status {
        TableStatus::Pending => None,
        TableStatus::Published { summary } => Some(AuditEvent::new(
            AuditKind::TablePublication,
            "",
            format!(
                "table {id} published: {} cells, {} primary and {} secondary secrets, data version {}{}",
                summary.cells,
                summary.primary,
                summary.secondary,
                summary.data_version,
                joint_audit(summary)
            ),
        )),
        TableStatus::Refused { reason } => Some(
            AuditEvent::new(
                AuditKind::TablePublication,
                "",
                format!("table {id} not published: {reason}"),
            )
            .with_outcome(Outcome::Refused, Some("table_refused")),
        ),
        TableStatus::Failed { reason } => Some(
            AuditEvent::new(
                AuditKind::TablePublication,
                "",
                format!("table {id} not published: {reason}"),
            )
            .with_outcome(Outcome::Error, Some("table_failed")),
        ),
    }
}

/// How often the tables of the statistical secret are checked against their sources.
pub const TABLE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

impl Gateway {
    /// Assembles the hub; fails only when the query lanes' threads cannot start.
    pub fn new(config: Config, loaded: Loaded) -> std::io::Result<Self> {
        let Loaded {
            identity,
            policy,
            history,
            pseudonyms,
            lookups,
            objects,
            audit,
            hub,
            cluster,
        } = loaded;
        let extracts = config
            .pseudonymisation
            .extracts
            .then(|| Extracts::new(config.pseudonymisation.extracts_dir.clone()));
        let files = crate::storage::catalog_files(&config.data.dir, objects.as_ref());
        let tables_dir = config
            .data
            .tables_dir
            .clone()
            .unwrap_or_else(|| crate::policy::tables::default_tables_dir(&config.data.dir));
        let data = HubData {
            dir: config.data.dir.clone(),
            objects,
            keys: pseudonyms.clone(),
            extracts,
            tables: Arc::new(PublishedTables::with_files(tables_dir, files)),
            cluster,
        };
        let engine = Engine::start(&config.limits, data)?;
        let refusals = Arc::new(refusals::Refusals::new(
            config.limits.unauthenticated_per_minute,
        ));
        // SECURITY: no key for statement handles, no gateway (never a default key).
        let sealer = pseudonyms
            .purpose_key("statement handles")
            .and_then(|key| statement::Sealer::new(&key))
            .ok_or_else(|| std::io::Error::other("cannot derive the statement handles' key"))?;
        let sign_in = config.console.as_ref().and_then(|console| {
            crate::identity::sign_in::SignIn::new(console, &config.identity)
                .map_err(|e| tracing::error!(error = %e, "the console cannot sign anyone in"))
                .ok()
        });
        let sessions = config
            .console
            .as_ref()
            .map(|console| console_sessions(console, &pseudonyms).map(Arc::new))
            .transpose()?;
        let client_credentials = config
            .flight
            .client_credentials
            .as_ref()
            .map(|exchange| crate::identity::ClientCredentials::new(&config.identity, exchange))
            .transpose()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            config,
            identity,
            policy,
            history,
            pseudonyms,
            hub,
            engine,
            lookups,
            lookup_limits: lookup::LookupLimits::default(),
            refusals,
            sealer,
            running: Arc::default(),
            client_credentials,
            sign_in,
            sessions,
            trail_reads: console::TrailReads::default(),
            audit,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The console's and the journal's sessions, when `[console]` is set.
    pub fn sessions(&self) -> Option<Arc<sessions::Sessions>> {
        self.sessions.clone()
    }

    /// The audit trail (a transport settles the record of a request that reached no use case).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The hub's pseudonymised extracts (tests observe which scans read them).
    pub fn extracts(&self) -> Option<&Arc<Extracts>> {
        self.engine.extracts()
    }

    /// The engine's plan cache (tests observe which queries share a kept plan).
    pub fn plans(&self) -> &Arc<crate::engine::PlanCache> {
        self.engine.plans()
    }

    /// Ready or not, and nothing more: what anyone may know (load balancers, probes).
    pub fn is_ready(&self, shutting_down: bool) -> bool {
        self.identity.is_ready() && self.audit.healthy() && !shutting_down
    }

    /// Readiness and the checks behind it (no secrets, no paths): for operators only (see
    /// [`Gateway::health`]); tests read it in process.
    pub fn readiness(&self, shutting_down: bool) -> (bool, Value) {
        let identity_ready = self.identity.is_ready();
        let audit_ready = self.audit.healthy();
        let ready = self.is_ready(shutting_down);
        let admission = self.engine.admission();
        let (cheap, heavy) = admission.running();
        let (cheap_slots, heavy_slots) = admission.slots();
        let memory = self.engine.runtime().memory();
        let details = json!({
            "identity": { "ready": identity_ready, "issuers": self.identity.status() },
            "data": {
                "ready": true,
                "datasets": self.hub.datasets,
                // Tables of the statistical secret: a table not published is unreadable, the
                // hub stays ready.
                "tables": self.engine.tables().states(),
            },
            "audit": { "ready": audit_ready },
            // A refused reload keeps the previous set serving: ready, but operators must look.
            "policy": {
                "ready": true,
                "version": self.policy.current().version,
                "last_reload_refused": self.policy.last_error().is_some(),
            },
            "queries": {
                "running": cheap + heavy,
                "slots": heavy_slots,
                "cheap": { "running": cheap, "slots": cheap_slots },
                "heavy": { "running": heavy, "slots": heavy_slots },
                "memory": {
                    "resident_mb": memory.resident() / (1024 * 1024),
                    "ceiling_mb": memory.ceiling() / (1024 * 1024),
                    "queries_mb": memory.used() / (1024 * 1024),
                },
                // This gateway's jobs on the cluster (`null` without `[cluster]`).
                "cluster_jobs": self.engine.cluster_jobs(),
            },
            "shutting_down": shutting_down,
        });
        (ready, details)
    }
}

/// The sessions `[console]` describes: in memory, or sealed in its shared `sessions_dir`.
fn console_sessions(
    console: &crate::config::ConsoleConfig,
    keys: &KeyRing,
) -> std::io::Result<sessions::Sessions> {
    let idle = std::time::Duration::from_secs(console.idle_timeout_secs);
    let absolute = std::time::Duration::from_secs(console.absolute_timeout_secs);
    let Some(dir) = &console.sessions_dir else {
        return Ok(sessions::Sessions::in_memory(idle, absolute));
    };
    // SECURITY: no key for the sessions folder, no gateway (never a default key).
    let sealed = keys
        .purpose_key("console sessions")
        .and_then(|key| seal::SealedBox::new(&key))
        .ok_or_else(|| std::io::Error::other("cannot derive the console sessions' key"))?;
    let people = keys
        .purpose_key("console people")
        .ok_or_else(|| std::io::Error::other("cannot derive the console people's key"))?;
    sessions::Sessions::in_folder(dir, sealed, people, idle, absolute).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("console.sessions_dir {}: {e}", dir.display()),
        )
    })
}
