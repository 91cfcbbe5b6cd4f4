//! The console's own use cases (its pages call the operators' use cases for the rest): a
//! sign-in (authorization code with PKCE: started, then finished into a caller), a sign-out,
//! and the dry run of a stored version before it is put in force. Each writes its request's
//! record; the operator right is checked on every call.
//!
//! Must never: open a console session for anyone but an operator, for an access token the hub
//! would not accept as a bearer token, or for an ID token whose subject is not the access
//! token's.

use std::net::IpAddr;

use ::secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::admin::VersionPreview;
use super::auth::Authorization;
use super::error::GatewayError;
use super::record::RequestRecord;
use super::{Caller, Gateway};
use crate::identity::sign_in::{PendingSignIn, SignInStart};

/// A citizen signed in to the journal: the caller, the token the session keeps, and the NIR
/// the issuer asserted (kept server side, never shown in a page or a record).
pub struct CitizenSignIn {
    pub caller: Caller,
    pub access_token: SecretString,
    pub nir: SecretString,
}

/// A citizen's journal: every consultation of a record keyed on their NIR.
#[derive(Debug, Serialize)]
pub struct CitizenJournal {
    /// `(dataset, consultation)`, most recent first.
    pub consultations: Vec<(String, super::admin::Consultation)>,
}

/// A habilitation as the console lists it: what it is for and how long it holds.
#[derive(Debug, Clone, Serialize)]
pub struct HabilitationRow {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub legal_basis: String,
    pub start: String,
    pub end: String,
    /// `active`, `expiring` (within [`EXPIRING_WITHIN_DAYS`]), `expired`, `not_started`,
    /// `revoked` or `obsolete`.
    pub validity: &'static str,
    /// Days until the end date (negative once ended).
    pub days_left: i64,
}

/// A habilitation ending within this many days is `expiring`.
pub const EXPIRING_WITHIN_DAYS: i64 = 30;

/// A table of the statistical secret as the console lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    pub id: String,
    pub title: String,
    pub profile: String,
    /// `published`, `pending`, `refused` or `failed`.
    pub status: &'static str,
    pub cells: usize,
    pub primary: usize,
    pub secondary: usize,
    pub data_version: String,
    /// Why a table is not published (operators only: it may name the source).
    pub reason: String,
}

/// What an operator searches the trail for (every field optional).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// From this day (UTC), inclusive.
    pub from: Option<chrono::NaiveDate>,
    /// Up to this day (UTC), inclusive.
    pub to: Option<chrono::NaiveDate>,
    pub habilitation: Option<String>,
    pub dataset: Option<String>,
    /// `allowed`, `refused` or `error`.
    pub outcome: Option<String>,
}

/// One record of the trail as the console lists it (never a token, a key or a value).
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub time: String,
    pub kind: String,
    pub outcome: String,
    pub who: String,
    pub habilitation: String,
    pub datasets: String,
    pub action: String,
    pub reason: String,
    pub request_id: String,
}

/// A search of the trail: the most recent matches, how many matched, and whether the trail
/// verifies (hash chain and signed head).
#[derive(Debug, Clone, Serialize)]
pub struct AuditSearch {
    pub rows: Vec<AuditRow>,
    pub matched: usize,
    /// `Ok(summary)` when the trail verifies, `Err(problem)` when it does not.
    pub verification: Result<String, String>,
}

/// At most this many records are listed (the most recent).
pub const AUDIT_ROWS: usize = 200;

/// Reads of the whole audit trail (a citizen's journal, the console's audit search) at once,
/// for the whole gateway: each reads every segment, so a flood of them must not take the
/// machine.
pub const TRAIL_SCANS: usize = 2;

/// A person opens their journal at most once per this many seconds.
pub const JOURNAL_INTERVAL_SECS: u64 = 5;

/// At most this many people are remembered for [`JOURNAL_INTERVAL_SECS`] (older entries go
/// first).
const JOURNAL_READERS: usize = 10_000;

/// The bounds on reading the whole trail (see [`TRAIL_SCANS`], [`JOURNAL_INTERVAL_SECS`]).
pub struct TrailReads {
    scans: tokio::sync::Semaphore,
    last_journal: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Default for TrailReads {
    fn default() -> Self {
        Self {
            scans: tokio::sync::Semaphore::new(TRAIL_SCANS),
            last_journal: Default::default(),
        }
    }
}

impl TrailReads {
    /// A permit to read the whole trail now, or the refusal to try again shortly.
    pub(super) fn scan(&self) -> Result<tokio::sync::SemaphorePermit<'_>, GatewayError> {
        // SECURITY: at most TRAIL_SCANS whole-trail reads at once, whoever asks.
        self.scans.try_acquire().map_err(|_| {
            let mut e = GatewayError::new(
                super::error::ErrorKind::Busy,
                "busy",
                "Busy",
                "the audit trail is being read by other requests: try again in a few seconds",
            );
            e.retry_after = Some(2);
            e
        })
    }

    /// Whether `who` may open their journal now (at most once per JOURNAL_INTERVAL_SECS).
    fn journal(&self, who: &str) -> Result<(), GatewayError> {
        let interval = std::time::Duration::from_secs(JOURNAL_INTERVAL_SECS);
        let mut last = self
            .last_journal
            .lock()
            .map_err(|_| GatewayError::internal())?;
        let now = std::time::Instant::now();
        if last
            .get(who)
            .is_some_and(|t| now.duration_since(*t) < interval)
        {
            return Err(GatewayError::rate_limited(
                "Too many requests",
                format!("the journal can be opened once every {JOURNAL_INTERVAL_SECS} seconds"),
                JOURNAL_INTERVAL_SECS,
            ));
        }
        if last.len() >= JOURNAL_READERS {
            last.retain(|_, t| now.duration_since(*t) < interval);
        }
        if last.len() < JOURNAL_READERS {
            last.insert(who.to_string(), now);
        }
        Ok(())
    }
}

/// Who signed in, for the pages' header (never a token).
#[derive(Debug, Clone, Serialize)]
pub struct SignedInView {
    pub subject: String,
    pub name: String,
    pub organisation: Option<String>,
}

/// An operator signed in: the caller, and the access token the session keeps (validated again
/// on every request).
pub struct ConsoleSignIn {
    pub caller: Caller,
    pub access_token: SecretString,
    pub acr: Option<String>,
}

impl Gateway {
    /// Starts a console sign-in that comes back to `redirect_uri`: where to send the browser.
    /// `source` is the client's address (the request recorded by `record`).
    pub async fn console_sign_in_start(
        &self,
        record: &RequestRecord,
        redirect_uri: &str,
        source: Option<IpAddr>,
    ) -> Result<SignInStart, GatewayError> {
        let sign_in = self.sign_in.as_ref().ok_or_else(GatewayError::internal)?;
        // SECURITY (availability): a start stores a pending sign-in before anyone is known:
        // each spends its source's budget of requests without a valid token
        // (`limits.unauthenticated_per_minute`), so that one source cannot fill the bounded
        // store and push out everyone else's sign-ins in progress. Past it, 429 and the
        // source's refusals summarised as `rate_limited`, like a flood of bad tokens.
        let source = super::auth::source_name(source);
        if let Err(wait) = self.refusals.charge(&source) {
            return Err(self.budget_spent(
                record,
                &source,
                "Too many sign-ins started",
                format!("too many sign-ins started from this address: retry in {wait} s"),
                wait,
            ));
        }
        sign_in.start(redirect_uri).await.map_err(|e| {
            tracing::error!(error = %e, "console sign-in could not start");
            GatewayError::unavailable("the identity provider cannot be reached")
        })
    }

    /// Finishes a console sign-in: the code for tokens, the access token validated like any
    /// bearer token, the ID token's subject compared, the operator right checked; recorded.
    pub async fn console_sign_in_finish(
        &self,
        record: &RequestRecord,
        pending: PendingSignIn,
        code: &str,
        source: Option<IpAddr>,
    ) -> Result<ConsoleSignIn, GatewayError> {
        let (caller, signed_in) = self.signed_in_caller(record, pending, code, source).await?;
        // SECURITY: the ID token and the access token must name the same person.
        if caller.principal.subject != signed_in.subject {
            let refused = Err(GatewayError::forbidden(
                "sign_in_mismatch",
                "the ID token and the access token name different subjects",
            ));
            return caller.record.settle(&self.audit, refused).await;
        }
        // SECURITY: only operators get a console session.
        self.as_operator(&caller, async { Ok(()) }).await?;
        Ok(ConsoleSignIn {
            caller,
            access_token: signed_in.access_token,
            acr: signed_in.acr,
        })
    }

    /// The code for tokens, then the access token validated like any bearer token: the caller
    /// and what the ID token said. A refused exchange is counted with the other refusals (no
    /// principal: no record of its own).
    async fn signed_in_caller(
        &self,
        record: &RequestRecord,
        pending: PendingSignIn,
        code: &str,
        source: Option<IpAddr>,
    ) -> Result<(Caller, crate::identity::sign_in::SignedIn), GatewayError> {
        let sign_in = self.sign_in.as_ref().ok_or_else(GatewayError::internal)?;
        let signed_in = match sign_in.finish(pending, code).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in refused");
                return Err(self.refused(record, source, "sign_in_failed"));
            }
        };
        let bearer = format!("Bearer {}", signed_in.access_token.expose_secret());
        let caller = self
            .authenticate(record, Authorization::Value(&bearer), None, source)
            .await?;
        Ok((caller, signed_in))
    }

    /// Finishes a citizen's sign-in to the journal: the access token validated like any
    /// bearer token, the ID token's subject compared, its `acr` at least `min_acr`, and a NIR
    /// asserted by an issuer trusted for it; recorded.
    pub async fn citizen_sign_in_finish(
        &self,
        record: &RequestRecord,
        pending: PendingSignIn,
        code: &str,
        source: Option<IpAddr>,
    ) -> Result<CitizenSignIn, GatewayError> {
        let (caller, signed_in) = self.signed_in_caller(record, pending, code, source).await?;
        let min_acr = self
            .config
            .console
            .as_ref()
            .map_or("eidas1", |c| c.citizen_acr.as_str());
        let level = |acr: &str| crate::config::ACR_LEVELS.iter().position(|l| *l == acr);
        let checked = if caller.principal.subject != signed_in.subject {
            // SECURITY: the ID token and the access token must name the same person.
            Err(GatewayError::forbidden(
                "sign_in_mismatch",
                "the ID token and the access token name different subjects",
            ))
        } else if signed_in.acr.as_deref().and_then(level) < level(min_acr) {
            // SECURITY: below the configured assurance level (or none said): no journal.
            Err(GatewayError::forbidden(
                "assurance_too_low",
                format!("the journal needs a sign-in at level {min_acr} or above"),
            ))
        } else if signed_in.nir.is_none() {
            // SECURITY: only a NIR asserted by an issuer trusted for it opens a journal.
            Err(GatewayError::forbidden(
                "no_nir",
                "the identity provider did not assert a NIR it is trusted for",
            ))
        } else {
            Ok(())
        };
        caller.record.settle(&self.audit, checked).await?;
        let nir = signed_in.nir.ok_or_else(GatewayError::internal)?;
        Ok(CitizenSignIn {
            caller,
            access_token: signed_in.access_token,
            nir,
        })
    }

    /// A citizen's own journal: the lookups that read a record keyed on `nir` (the session's,
    /// asserted at sign-in), whatever the dataset; recorded without the NIR.
    pub async fn citizen_journal(
        &self,
        caller: &Caller,
        nir: &SecretString,
    ) -> Result<CitizenJournal, GatewayError> {
        let work = async {
            // SECURITY: a journal reads the whole trail: once per person per few seconds, and
            // a bounded number at once for the gateway.
            self.trail_reads.journal(&format!(
                "{}\n{}",
                caller.principal.issuer, caller.principal.subject
            ))?;
            let _permit = self.trail_reads.scan()?;
            let key = self.audit_key(nir.expose_secret())?;
            let dir = self.config.audit.dir.clone();
            let found =
                tokio::task::spawn_blocking(move || crate::audit::journal_of_key(&dir, &key))
                    .await
                    .map_err(|_| GatewayError::internal())?
                    .map_err(|e| {
                        tracing::error!(error = %e, "journal could not be read");
                        GatewayError::internal()
                    })?;
            let mut consultations: Vec<(String, super::admin::Consultation)> = found
                .iter()
                .flat_map(|e| {
                    let consultation = super::admin::Consultation::of(e);
                    e.datasets
                        .iter()
                        .map(move |d| (d.dataset.clone(), consultation.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            consultations.sort_by(|a, b| b.1.time.cmp(&a.1.time));
            Ok(CitizenJournal { consultations })
        };
        let result = work.await;
        caller.record.settle(&self.audit, result).await
    }

    /// Every habilitation of the set in force with its validity today (operators).
    pub async fn habilitations_overview(
        &self,
        caller: &Caller,
    ) -> Result<Vec<HabilitationRow>, GatewayError> {
        use crate::policy::habilitation::Validity;
        self.as_operator(caller, async {
            let set = self.policy.current();
            let today = chrono::Utc::now().date_naive();
            Ok(set
                .habilitations
                .list
                .iter()
                .map(|h| {
                    let days_left = (h.end - today).num_days();
                    let validity = match h.validity(today) {
                        Validity::Active if days_left <= EXPIRING_WITHIN_DAYS => "expiring",
                        Validity::Active => "active",
                        Validity::Expired => "expired",
                        Validity::NotStarted => "not_started",
                        Validity::Revoked => "revoked",
                        Validity::Obsolete => "obsolete",
                    };
                    HabilitationRow {
                        id: h.id.clone(),
                        title: h.title.clone(),
                        kind: format!("{:?}", h.kind).to_lowercase(),
                        legal_basis: h.legal_basis.nature.clone(),
                        start: h.start.to_string(),
                        end: h.end.to_string(),
                        validity,
                        days_left,
                    }
                })
                .collect())
        })
        .await
    }

    /// Every table of the statistical secret with where it stands (operators).
    pub async fn tables_overview(&self, caller: &Caller) -> Result<Vec<TableRow>, GatewayError> {
        use crate::engine::tables::TableStatus;
        self.as_operator(caller, async {
            let set = self.policy.current();
            Ok(set
                .tables
                .list
                .iter()
                .map(|spec| {
                    let mut row = TableRow {
                        id: spec.id.clone(),
                        title: spec.title.clone(),
                        profile: spec.profile_name.clone(),
                        status: "pending",
                        cells: 0,
                        primary: 0,
                        secondary: 0,
                        data_version: String::new(),
                        reason: String::new(),
                    };
                    match self.engine.tables().status(&spec.id) {
                        Some(TableStatus::Published { summary }) => {
                            row.status = "published";
                            row.cells = summary.cells;
                            row.primary = summary.primary;
                            row.secondary = summary.secondary;
                            row.data_version = summary.data_version.clone();
                        }
                        Some(TableStatus::Refused { reason }) => {
                            row.status = "refused";
                            row.reason = reason;
                        }
                        Some(TableStatus::Failed { reason }) => {
                            row.status = "failed";
                            row.reason = reason;
                        }
                        Some(TableStatus::Pending) | None => {}
                    }
                    row
                })
                .collect())
        })
        .await
    }

    /// The trail's records matching `filter`, most recent first (at most [`AUDIT_ROWS`]), and
    /// the trail's verification (operators).
    pub async fn audit_search(
        &self,
        caller: &Caller,
        filter: AuditFilter,
    ) -> Result<AuditSearch, GatewayError> {
        self.as_operator(caller, async {
            let _permit = self.trail_reads.scan()?;
            let dir = self.config.audit.dir.clone();
            tokio::task::spawn_blocking(move || search_trail(&dir, &filter))
                .await
                .map_err(|_| GatewayError::internal())?
        })
        .await
    }

    /// Who the caller is, for the pages (no record: the page's own use case writes it).
    pub fn signed_in(&self, caller: &Caller) -> SignedInView {
        let p = &caller.principal;
        SignedInView {
            subject: p.subject.clone(),
            name: p.email.clone().unwrap_or_else(|| p.subject.clone()),
            organisation: p.organisation_siret.clone(),
        }
    }

    /// A console sign-out (recorded; the transport closes the session whatever happens).
    pub async fn console_sign_out(&self, caller: &Caller) -> Result<(), GatewayError> {
        caller.record.settle(&self.audit, Ok(())).await
    }

    /// The dry run of stored version `number` against the set in force: what each habilitation
    /// would gain or lose if it were put in force (an apply, or a rollback to it).
    pub async fn preview_version(
        &self,
        caller: &Caller,
        number: u64,
    ) -> Result<VersionPreview, GatewayError> {
        self.as_operator(caller, async {
            let (meta, texts) = self.stored_version(number).await?;
            let current = self.policy.current();
            let in_force = current.version.clone();
            let (changes, concerned) = tokio::task::spawn_blocking(move || {
                crate::policy::PolicySet::from_texts(std::path::Path::new(""), texts)
                    .map(|candidate| super::admin::delta(&current, &candidate))
            })
            .await
            .map_err(|_| GatewayError::internal())?
            .map_err(|p| super::admin::invalid(&p))?;
            Ok(VersionPreview {
                in_force,
                version: meta,
                diff: changes,
                concerned,
            })
        })
        .await
    }
}

/// Reads the trail, keeps what `filter` asks for, verifies the chain.
fn search_trail(dir: &std::path::Path, filter: &AuditFilter) -> Result<AuditSearch, GatewayError> {
    let events = crate::audit::read_events(dir).map_err(|e| {
        tracing::error!(error = %e, "the audit trail could not be read");
        GatewayError::internal()
    })?;
    let wanted = |e: &crate::audit::AuditEvent| {
        let day = e.time.date_naive();
        filter.from.is_none_or(|from| day >= from)
            && filter.to.is_none_or(|to| day <= to)
            && filter
                .habilitation
                .as_ref()
                .is_none_or(|h| e.habilitation.as_ref().is_some_and(|x| &x.id == h))
            && filter
                .dataset
                .as_ref()
                .is_none_or(|d| e.datasets.iter().any(|x| &x.dataset == d))
            && filter.outcome.as_ref().is_none_or(|o| {
                serde_json::to_value(e.outcome).is_ok_and(|v| v.as_str() == Some(o.as_str()))
            })
    };
    let matched: Vec<&crate::audit::AuditEvent> = events.iter().filter(|e| wanted(e)).collect();
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let rows = matched
        .iter()
        .rev()
        .take(AUDIT_ROWS)
        .map(|e| AuditRow {
            time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: name(serde_json::to_value(e.kind)),
            outcome: name(serde_json::to_value(e.outcome)),
            who: e
                .principal
                .as_ref()
                .map_or_else(String::new, |p| match &p.organisation {
                    Some(o) => format!("{} (SIRET {o})", p.subject),
                    None => p.subject.clone(),
                }),
            habilitation: e
                .habilitation
                .as_ref()
                .map(|h| h.id.clone())
                .unwrap_or_default(),
            datasets: e
                .datasets
                .iter()
                .map(|d| d.dataset.clone())
                .collect::<Vec<_>>()
                .join(", "),
            action: e.action.clone(),
            reason: e.reason.clone().unwrap_or_default(),
            request_id: e.request_id.clone(),
        })
        .collect();
    // Every trail the rows come from (each gateway's, `audit.node`), or the first problem.
    let verdicts = crate::audit::verify_trails(dir, None);
    let verification = match verdicts.iter().find(|(_, v)| v.is_err()) {
        Some((name, Err(problem))) if name == "." => Err(problem.to_string()),
        Some((name, Err(problem))) => Err(format!("node {name}: {problem}")),
        _ => Ok(verdicts
            .iter()
            .filter_map(|(name, v)| {
                let report = v.as_ref().ok()?;
                Some(if name == "." {
                    report.to_string()
                } else {
                    format!("node {name}: {report}")
                })
            })
            .collect::<Vec<_>>()
            .join("; ")),
    };
    Ok(AuditSearch {
        rows,
        matched: matched.len(),
        verification,
    })
}
