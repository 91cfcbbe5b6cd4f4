//! The operators' use cases: the policy set in force, its history, a new version (validated,
//! with its dry-run diff), putting a version in force or back, explaining any principal, and a
//! person's journal. Each checks the operator right first, every time; each request has one
//! audit record. (The operators' SQL over the trail is `query::audit_query`.)
//!
//! Must never: show the hub's paths (problems name policy files only), or let anyone but an
//! operator through.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ErrorKind, GatewayError};
use super::{Caller, Gateway};
use crate::identity::Principal;
use crate::policy::diff::{Change, diff};
use crate::policy::explain::{HabilitationView, render_text, views};
use crate::policy::history::{PolicyHistory, VersionMeta};
use crate::policy::{ApplyError, PolicySet, PolicyTexts, Problem, ReloadOutcome};

/// A new policy version: its files (by name) and a comment for the history. The names are
/// checked by the use case, so a missing or unknown file is a `policy_invalid` naming it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySubmission {
    /// `model.conf`, `policy.csv`, `habilitations.toml` and `datasets.toml`, by name, and
    /// `tables.toml` when the set has tables.
    #[schema(value_type = PolicyTexts)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub comment: String,
}

/// The four files of a submission, or a problem per missing or unknown name.
fn submitted_texts(files: &BTreeMap<String, String>) -> Result<PolicyTexts, GatewayError> {
    const NAMES: [&str; 4] = [
        "model.conf",
        "policy.csv",
        "habilitations.toml",
        "datasets.toml",
    ];
    let mut problems: Vec<Problem> = NAMES
        .iter()
        .filter(|name| !files.contains_key(**name))
        .map(|name| Problem::new(Path::new(name), None, "missing from the submission"))
        .collect();
    problems.extend(
        files
            .keys()
            .filter(|name| !NAMES.contains(&name.as_str()) && name.as_str() != "tables.toml")
            .map(|name| {
                Problem::new(
                    Path::new("submission"),
                    None,
                    format!(
                        "`{}` is not a policy file (expected {})",
                        name.chars().take(64).collect::<String>(),
                        NAMES.join(", ")
                    ),
                )
            }),
    );
    if !problems.is_empty() {
        return Err(invalid(&problems));
    }
    let text = |name: &str| files.get(name).cloned().unwrap_or_default();
    Ok(PolicyTexts {
        model: text("model.conf"),
        rules: text("policy.csv"),
        habilitations: text("habilitations.toml"),
        datasets: text("datasets.toml"),
        tables: text("tables.toml"),
    })
}

/// The principal to explain.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Claims of the principal to explain (`sub`, `idp_id`, `siret`, `groups`, `roles`).
    #[schema(value_type = Object)]
    pub claims: Value,
    #[serde(default)]
    pub habilitation: Option<String>,
}

/// Ready or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    NotReady,
}

impl Readiness {
    pub fn of(ready: bool) -> Self {
        if ready { Self::Ready } else { Self::NotReady }
    }
}

/// `GET /v1/admin/health`: readiness and every check behind it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    pub status: Readiness,
    /// Per check (`identity`, `data`, `audit`, `policy`, `queries`): `ready` and its details.
    #[schema(value_type = Object)]
    pub checks: Value,
}

/// `GET /v1/admin/policy`: the set in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyInForce {
    /// The policy version (content hash).
    pub version: String,
    pub loaded_at: DateTime<Utc>,
    pub files: PolicyTexts,
    /// Why the last on-disk reload was refused (file names only), while the set above serves.
    pub last_reload_error: Option<String>,
}

/// `POST /v1/admin/policy/versions`: the stored version and what it would change.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmittedVersion {
    pub version: VersionMeta,
    /// The dry run: what each habilitation would gain or lose against the set in force.
    pub diff: Vec<Change>,
    /// The version in force (unchanged by a submission).
    pub in_force: String,
    /// `passerelle check`'s warnings on the new version (file names only).
    pub warnings: Vec<String>,
    /// Who each habilitation of the diff admits (its members rule, in the new version or, for
    /// one it removes, the one in force): the people a change concerns.
    pub concerned: BTreeMap<String, String>,
}

/// A stored version and what putting it in force would change (the console's confirmation).
#[derive(Debug, Serialize)]
pub struct VersionPreview {
    pub version: VersionMeta,
    pub diff: Vec<Change>,
    pub in_force: String,
    /// As [`SubmittedVersion::concerned`].
    pub concerned: BTreeMap<String, String>,
}

/// `GET /v1/admin/policy/versions`: the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionsView {
    pub in_force: String,
    pub versions: Vec<VersionMeta>,
}

/// A stored version put in force (apply or rollback).
#[derive(Debug, Serialize, ToSchema)]
pub struct InForceView {
    pub in_force: String,
    pub number: u64,
    /// False when that version was already in force.
    pub changed: bool,
    pub diff: Vec<Change>,
}

/// `POST /v1/admin/explain`: what a principal can see, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub policy_version: String,
    pub principal: Principal,
    pub operator: bool,
    pub habilitations: Vec<HabilitationView>,
    /// The same, as text (what `passerelle explain` prints).
    pub text: String,
}

/// `GET /v1/admin/journal/{dataset}/{key}`: who consulted one record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Journal {
    pub dataset: String,
    pub consultations: Vec<Consultation>,
}

/// One consultation of a record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consultation {
    /// RFC 3339, milliseconds, UTC.
    pub time: String,
    /// SIRET of the consulting organisation.
    pub organisation: Option<String>,
    pub habilitation: Option<String>,
    pub legal_basis: Option<String>,
    pub context: Option<String>,
    pub recipient: Option<String>,
    pub object: Option<String>,
    /// The fields the consultation read.
    pub fields: Vec<String>,
    pub request_id: String,
}

impl Consultation {
    /// The consultation an allowed lookup's record describes.
    pub(super) fn of(e: &crate::audit::AuditEvent) -> Self {
        Consultation {
            time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            organisation: e.principal.as_ref().and_then(|p| p.organisation.clone()),
            habilitation: e.habilitation.as_ref().map(|h| h.id.clone()),
            legal_basis: e.habilitation.as_ref().map(|h| h.legal_basis.clone()),
            context: e.lookup.as_ref().map(|l| l.context.clone()),
            recipient: e.lookup.as_ref().map(|l| l.recipient.clone()),
            object: e.lookup.as_ref().map(|l| l.object.clone()),
            fields: e
                .datasets
                .iter()
                .flat_map(|d| d.columns.iter().map(|c| c.column.clone()))
                .collect(),
            request_id: e.request_id.clone(),
        }
    }
}

fn author(p: &Principal) -> String {
    p.email
        .clone()
        .unwrap_or_else(|| format!("{} ({})", p.subject, p.issuer))
}

/// Problems shown with file names only (never the hub's paths).
fn problem_list(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(Problem::named).collect()
}

/// What putting `new` in force instead of `old` would change, and who each habilitation of the
/// diff admits (its members rule in `new`, or in `old` for one `new` removes).
pub(super) fn delta(old: &PolicySet, new: &PolicySet) -> (Vec<Change>, BTreeMap<String, String>) {
    let changes = diff(old, new);
    let concerned = changes
        .iter()
        .filter_map(|c| {
            let h = new
                .habilitations
                .get(&c.habilitation)
                .or_else(|| old.habilitations.get(&c.habilitation))?;
            Some((c.habilitation.clone(), h.members.describe()))
        })
        .collect();
    (changes, concerned)
}

pub(super) fn invalid(problems: &[Problem]) -> GatewayError {
    GatewayError::unprocessable(
        "policy_invalid",
        "Policy set refused",
        problem_list(problems).join("\n"),
    )
}

impl Gateway {
    /// SECURITY: the operators' use cases are for operators only; data habilitations do not
    /// count. Checked on every call.
    pub(super) fn require_operator(&self, caller: &Caller) -> Result<(), GatewayError> {
        if self.policy.current().is_operator(&caller.principal) {
            Ok(())
        } else {
            Err(GatewayError::forbidden(
                "not_operator",
                "this endpoint is for hub operators",
            ))
        }
    }

    /// Runs an operator's use case and records it (one record).
    pub(super) async fn as_operator<T>(
        &self,
        caller: &Caller,
        work: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let result = match self.require_operator(caller) {
            Ok(()) => work.await,
            Err(e) => Err(e),
        };
        caller.record.settle(&self.audit, result).await
    }

    /// The operators' readiness view: every check behind `/health/ready` (issuers, datasets,
    /// audit, policy version, queries and memory), which the public endpoint does not show.
    pub async fn health(
        &self,
        caller: &Caller,
        shutting_down: bool,
    ) -> Result<HealthView, GatewayError> {
        self.as_operator(caller, async {
            let (ready, checks) = self.readiness(shutting_down);
            Ok(HealthView {
                status: Readiness::of(ready),
                checks,
            })
        })
        .await
    }

    /// An operator's request that reads nothing through the gateway, recorded: the hub's
    /// metrics on the main listener (the metrics listener, on loopback by default, needs no
    /// token), a console form. `Ok` lets the transport render it.
    pub async fn operator_only(&self, caller: &Caller) -> Result<(), GatewayError> {
        self.as_operator(caller, async { Ok(()) }).await
    }

    /// The set in force: version, load time, files, last refused reload.
    pub async fn policy_in_force(&self, caller: &Caller) -> Result<PolicyInForce, GatewayError> {
        self.as_operator(caller, async {
            let set = self.policy.current();
            Ok(PolicyInForce {
                version: set.version.clone(),
                loaded_at: set.loaded_at,
                files: set.texts.clone(),
                last_reload_error: self.policy.last_error(),
            })
        })
        .await
    }

    /// Validates and stores a new version (not yet in force); its number and the dry-run diff
    /// against the set in force.
    pub async fn submit(
        &self,
        caller: &Caller,
        submission: PolicySubmission,
    ) -> Result<SubmittedVersion, GatewayError> {
        self.as_operator(caller, async {
            let texts = submitted_texts(&submission.files)?;
            let current = self.policy.current();
            // Parsing, validating and deciding every habilitation's plan twice (for the diff)
            // takes tens of milliseconds on a large set: off the async workers.
            let (changes, warnings, concerned) = {
                let (store, texts, current) = (self.policy.clone(), texts.clone(), current.clone());
                tokio::task::spawn_blocking(move || {
                    let candidate =
                        PolicySet::from_texts(Path::new(""), texts).map_err(|p| invalid(&p))?;
                    // SECURITY: member rules must be bound to the trusted issuers (as at apply).
                    store.check_issuers(&candidate).map_err(|p| invalid(&p))?;
                    let warnings = problem_list(&candidate.warnings(Path::new("")));
                    let (changes, concerned) = delta(&current, &candidate);
                    Ok::<_, GatewayError>((changes, warnings, concerned))
                })
                .await
                .map_err(|_| GatewayError::internal())??
            };
            let (stored, who, comment) = (
                texts.clone(),
                author(&caller.principal),
                submission.comment.clone(),
            );
            let meta = self
                .with_history("cannot store a policy version", move |h| {
                    h.submit(&stored, &who, &comment)
                })
                .await?;
            tracing::info!(number = meta.number, version = %meta.version, author = %meta.author, "policy version submitted");
            Ok(SubmittedVersion {
                version: meta,
                diff: changes,
                in_force: current.version.clone(),
                warnings,
                concerned,
            })
        })
        .await
    }

    /// The history of versions.
    pub async fn versions(&self, caller: &Caller) -> Result<VersionsView, GatewayError> {
        self.as_operator(caller, async {
            Ok(VersionsView {
                in_force: self.policy.current().version.clone(),
                versions: self
                    .with_history("cannot read the policy history", |h| h.list())
                    .await?,
            })
        })
        .await
    }

    /// Puts stored version `number` in force (an apply, or a rollback to an earlier one).
    pub async fn put_in_force(
        &self,
        caller: &Caller,
        number: u64,
    ) -> Result<InForceView, GatewayError> {
        self.as_operator(caller, async {
            let (meta, texts) = self.stored_version(number).await?;
            // SECURITY: four eyes when the hub asks for them: a version never in force before
            // needs `policy.approvals` distinct operators, the one applying it included.
            let needed = self.config.policy.approvals;
            let who = author(&caller.principal);
            if needed > 1 && meta.applied.is_empty() {
                let mut behind: Vec<&str> =
                    meta.approvals.iter().map(|(_, a)| a.as_str()).collect();
                behind.push(&who);
                behind.sort_unstable();
                behind.dedup();
                if behind.len() < needed {
                    return Err(GatewayError::forbidden(
                        "approval_missing",
                        format!(
                            "policy version {number} needs the approval of {} operator(s) besides the one who applies it (policy.approvals = {needed}); it has {}",
                            needed - 1,
                            behind.len() - 1
                        ),
                    ));
                }
            }
            let before = self.policy.current();
            let outcome = self.policy.apply(texts).await.map_err(|e| match e {
                ApplyError::Invalid(problems) => invalid(&problems),
                ApplyError::Unavailable(_) => GatewayError::unavailable(
                    "the policy folder or bucket cannot be written: nothing was put in force; try again later",
                ),
                ApplyError::Conflict { based_on, found } => GatewayError::new(
                    ErrorKind::Conflict,
                    "policy_conflict",
                    "Policy changed meanwhile",
                    format!(
                        "this gateway had version {based_on} in force, but the policy folder (or bucket) now holds version {found}, put in force meanwhile (by another gateway, or by an edit): nothing was written; GET /v1/admin/policy shows what this gateway serves now; look at the difference and apply again"
                    ),
                ),
            })?;
            let after = self.policy.current();
            let changes = diff(&before, &after);
            let applier = who.clone();
            // (Logged when it fails: the set is in force whatever the history says.)
            let _ = self
                .with_history("cannot record a policy application", move |h| {
                    h.mark_applied(number, &applier)
                })
                .await;
            tracing::info!(number, version = %meta.version, author = %who, "policy version put in force");
            let applied = matches!(outcome, ReloadOutcome::Applied { .. });
            Ok(InForceView {
                in_force: after.version.clone(),
                number,
                changed: applied,
                diff: changes,
            })
        })
        .await
    }

    /// Stored version `number`, or the not-found every operator use case answers.
    pub(super) async fn stored_version(
        &self,
        number: u64,
    ) -> Result<(VersionMeta, PolicyTexts), GatewayError> {
        self.with_history("cannot read a policy version", move |h| h.get(number))
            .await?
            .ok_or_else(|| {
                GatewayError::not_found(
                    "policy_version_not_found",
                    "Not found",
                    format!("no stored policy version {number}"),
                )
            })
    }

    /// Runs `work` on the policy history off the async workers (a bucket's requests wait on
    /// the network): its answer, or 503 when the history cannot be reached (`what` logged with
    /// the cause).
    async fn with_history<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&PolicyHistory) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, GatewayError> {
        let history = self.history.clone();
        match tokio::task::spawn_blocking(move || work(&history)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                tracing::error!(error = %e.kind(), "{what}");
                Err(GatewayError::unavailable(
                    "the policy history cannot be reached: try again later",
                ))
            }
            Err(_) => Err(GatewayError::internal()),
        }
    }

    /// Records the caller's approval of stored version `number` (`policy.approvals`): never its
    /// author's, once per operator.
    pub async fn approve(&self, caller: &Caller, number: u64) -> Result<VersionMeta, GatewayError> {
        self.as_operator(caller, async {
            let (meta, _) = self.stored_version(number).await?;
            let who = author(&caller.principal);
            // SECURITY: the second pair of eyes is never the author's own.
            if meta.author == who {
                return Err(GatewayError::forbidden(
                    "own_version",
                    "an operator cannot approve a version they submitted",
                ));
            }
            if meta.approvals.iter().any(|(_, a)| *a == who) {
                return Err(GatewayError::forbidden(
                    "already_approved",
                    "this operator has already approved this version",
                ));
            }
            let approver = who.clone();
            let meta = self
                .with_history("cannot record a policy approval", move |h| {
                    h.approve(number, &approver)
                })
                .await?
                .ok_or_else(GatewayError::internal)?;
            tracing::info!(number, version = %meta.version, approver = %who, "policy version approved");
            Ok(meta)
        })
        .await
    }

    /// What a principal with these claims can see, and why.
    pub async fn explain(
        &self,
        caller: &Caller,
        request: ExplainRequest,
    ) -> Result<Explanation, GatewayError> {
        self.as_operator(caller, async {
            let principal = Principal::for_explain(&request.claims).map_err(|m| {
                GatewayError::new(
                    ErrorKind::Unprocessable,
                    "invalid_claims",
                    "Invalid claims",
                    m,
                )
            })?;
            let set = self.policy.current();
            let today = chrono::Utc::now().date_naive();
            let habilitation = request.habilitation.as_deref();
            Ok(Explanation {
                policy_version: set.version.clone(),
                operator: set.is_operator(&principal),
                habilitations: views(&set, &principal, habilitation, today),
                text: render_text(&set, &principal, habilitation, today),
                principal,
            })
        })
        .await
    }

    /// Which organisations consulted one record, when, under which habilitation, context,
    /// recipient and object — the basis of a citizen's access journal. The key is
    /// pseudonymised in the audit-only domain before the trail is searched.
    pub async fn journal(
        &self,
        caller: &Caller,
        dataset: String,
        key: String,
    ) -> Result<Journal, GatewayError> {
        self.as_operator(caller, async {
            let _permit = self.trail_reads.scan()?;
            let audit_key = self.audit_key(&key)?;
            let dir = self.config.audit.dir.clone();
            let found = {
                let dataset = dataset.clone();
                tokio::task::spawn_blocking(move || {
                    crate::audit::journal(&dir, &dataset, &audit_key)
                })
                .await
                .map_err(|_| GatewayError::internal())?
                .map_err(|e| {
                    tracing::error!(error = %e, "journal could not be read");
                    GatewayError::internal()
                })?
            };
            let consultations = found.iter().map(Consultation::of).collect();
            Ok(Journal {
                dataset,
                consultations,
            })
        })
        .await
    }
}
