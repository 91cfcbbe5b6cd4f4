//! Lookups ("tell us once"): one record, or a batch, for administrations; only the fields the
//! habilitation grants, with the legal traceability parameters, a rate limit per organisation
//! and habilitation, and one audit record whose keys are pseudonymised in an audit-only domain.
//!
//! Order of checks (their precedence is part of the API): habilitation and dataset (403),
//! traceability parameters (422, one code per parameter), the number of keys (batches, 422),
//! each key against its column's constraints (422), the rate limit (429), then the records
//! (a single key that no record has: 404).
//!
//! Must never: decide which fields or rows (the plan does), enumerate, or put a raw key in the
//! audit trail.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde_json::{Map, Value};

use super::error::{GatewayError, RateState};
use super::{Caller, Gateway};
use crate::audit::{AuditKey, LookupTrace};
use crate::lookup::{LookupError, Traceability, TraceabilityParams, answer_record, check_key};
use crate::policy::{AccessPlan, DatasetPlan, PolicySet};
use crate::pseudonym::PseudonymDomain;

/// Pseudonymisation domain of keys in audit records (no habilitation can use it: it is not a
/// valid habilitation id).
pub const AUDIT_DOMAIN: &str = "passerelle:audit";

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
/// (habilitation, organisation SIRET).
type LimiterKey = (String, String);

/// One limiter per (habilitation, organisation), created on first use with the habilitation's
/// quota.
#[derive(Default)]
pub(super) struct LookupLimits {
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

/// A lookup of one key, or a batch of keys.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// `schema.table`.
    pub dataset: String,
    pub keys: Vec<String>,
    /// A batch (`POST`): 1 to `limits.lookup_batch_max` keys, a result per key.
    pub batch: bool,
    pub habilitation: Option<String>,
    pub traceability: TraceabilityParams,
}

/// The records found, in the order of the keys asked.
#[derive(Debug, Clone)]
pub struct LookupAnswer {
    pub dataset: String,
    pub habilitation: String,
    pub policy_version: String,
    /// Each key with its granted fields, or `None` when no record has it.
    pub records: Vec<(String, Option<Map<String, Value>>)>,
    /// The rate limit after this lookup.
    pub rate: RateState,
}

/// A lookup that passed every check before reading.
struct Admitted {
    set: Arc<PolicySet>,
    plan: Arc<AccessPlan>,
    dataset_plan: DatasetPlan,
    traceability: Traceability,
    rate: RateState,
}

fn unprocessable(code: &'static str, detail: impl Into<String>) -> GatewayError {
    GatewayError::unprocessable(code, "Invalid lookup", detail)
}

impl Gateway {
    /// Looks up `request.keys` for `caller` (see the module doc); the request's one record is
    /// written before the answer is returned.
    pub async fn lookup(
        &self,
        caller: &Caller,
        request: LookupRequest,
    ) -> Result<LookupAnswer, GatewayError> {
        let result = self.lookup_unrecorded(caller, request).await;
        caller.record.settle(&self.audit, result).await
    }

    async fn lookup_unrecorded(
        &self,
        caller: &Caller,
        request: LookupRequest,
    ) -> Result<LookupAnswer, GatewayError> {
        let admitted = self.admit_lookup(caller, &request)?;
        let records = self.read_records(&admitted, &request.keys).await?;
        let found = records.iter().filter(|r| r.is_some()).count();
        self.trace(caller, &admitted, &request.keys, found);
        if !request.batch && found == 0 {
            let mut e =
                GatewayError::not_found("record_not_found", "No record", "no record has this key");
            e.rate = Some(admitted.rate);
            return Err(e);
        }
        Ok(LookupAnswer {
            dataset: admitted.dataset_plan.name().to_string(),
            habilitation: admitted.plan.habilitation().id.clone(),
            policy_version: admitted.plan.policy_version().to_string(),
            records: request.keys.into_iter().zip(records).collect(),
            rate: admitted.rate,
        })
    }

    /// The checks both lookup forms make, in their order (see the module doc).
    fn admit_lookup(
        &self,
        caller: &Caller,
        request: &LookupRequest,
    ) -> Result<Admitted, GatewayError> {
        let set = self.policy.current();
        let today = chrono::Utc::now().date_naive();
        let habilitation = set
            .resolve(&caller.principal, request.habilitation.as_deref(), today)
            .map_err(|r| GatewayError::refusal(&r))?;
        let plan = set.plan(&caller.principal, habilitation);
        let dataset_plan = plan
            .dataset(&request.dataset)
            .filter(|d| d.lookup_allowed())
            .cloned()
            // SECURITY: no lookup right here (researchers, other datasets, unknown datasets
            // alike: existence is not revealed).
            .ok_or_else(|| {
                GatewayError::forbidden(
                    "lookup_not_allowed",
                    format!(
                        "habilitation `{}` allows no lookup on `{}`",
                        plan.habilitation().id,
                        request.dataset
                    ),
                )
            })?;
        let traceability = request
            .traceability
            .check()
            .map_err(|e| unprocessable(e.code, e.message))?;
        let max = self.config.limits.lookup_batch_max;
        if request.batch && (request.keys.is_empty() || request.keys.len() > max) {
            return Err(unprocessable(
                "keys_invalid",
                format!("send 1 to {max} keys"),
            ));
        }
        let column = dataset_plan.lookup_key().unwrap_or_default();
        let field = set
            .catalog
            .dataset(dataset_plan.name())
            .and_then(|d| d.field(column))
            .ok_or_else(GatewayError::internal)?;
        for key in &request.keys {
            check_key(key, field).map_err(|e| unprocessable(e.code, e.message))?;
        }
        let rate = self.rate_limit(&set, &plan, caller, request.keys.len())?;
        Ok(Admitted {
            set,
            plan,
            dataset_plan,
            traceability,
            rate,
        })
    }

    /// Applies the (habilitation, organisation) quota for `n` keys.
    fn rate_limit(
        &self,
        set: &PolicySet,
        plan: &AccessPlan,
        caller: &Caller,
        n: usize,
    ) -> Result<RateState, GatewayError> {
        let limits = &self.config.limits;
        let habilitation = &plan.habilitation().id;
        // SECURITY: the quota is the hub's; with several gateways (`limits.gateways`) each
        // enforces its share, so that together they never allow more.
        let expected = limits.gateway_share(
            set.habilitations
                .get(habilitation)
                .and_then(|h| h.expected_volume_per_minute)
                .map(|v| v.saturating_mul(limits.lookup_rate_factor))
                .unwrap_or(limits.lookup_default_per_minute),
        );
        let organisation = caller
            .principal
            .organisation_siret
            .clone()
            .unwrap_or_default();
        let limiter = self
            .lookup_limits
            .limiter(habilitation, &organisation, expected);
        let cells =
            NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let per_cell_secs = 60.0 / f64::from(expected);
        let too_many = |detail: String, rate: RateState, retry: u64| {
            let mut e = GatewayError::rate_limited("Too many lookups", detail, retry);
            e.rate = Some(rate);
            e
        };
        // `RateLimit-Reset` means one thing on every answer: seconds until the quota is whole
        // again. `Retry-After` (refusals only) is when the refused request could pass.
        let whole_in = |remaining: u32| {
            (f64::from(expected - remaining.min(expected)) * per_cell_secs).ceil() as u64
        };
        match limiter.check_n(cells) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(RateState {
                    limit: expected,
                    remaining: Some(remaining),
                    reset_secs: Some(whole_in(remaining)),
                })
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                // GCRA: n cells conform after (n - remaining) emission intervals, so what
                // remains now is n less the intervals still to wait (a refused batch of 100
                // may leave 99).
                let short = (wait.as_secs_f64() / per_cell_secs).ceil() as u64;
                let remaining = u32::try_from((n as u64).saturating_sub(short))
                    .unwrap_or(0)
                    .min(expected);
                let retry = wait.as_secs_f64().ceil().max(1.0) as u64;
                let rate = RateState {
                    limit: expected,
                    remaining: Some(remaining),
                    reset_secs: Some(whole_in(remaining).max(retry)),
                };
                Err(too_many(format!("retry in {retry} s"), rate, retry))
            }
            Err(_) => {
                // More keys than the whole quota: no wait makes it pass, and the limiter
                // cannot tell what remains without spending it, so nothing is claimed.
                let rate = RateState {
                    limit: expected,
                    remaining: None,
                    reset_secs: None,
                };
                Err(too_many(
                    format!("{n} keys exceed the quota of {expected} lookups per minute"),
                    rate,
                    60,
                ))
            }
        }
    }

    /// Each key's granted record (or `None`), read off the async runtime (file I/O).
    async fn read_records(
        &self,
        admitted: &Admitted,
        keys: &[String],
    ) -> Result<Vec<Option<Map<String, Value>>>, GatewayError> {
        let domain = self.domain_of(&admitted.plan);
        // One key whose index is built reads one page of a file the page cache holds (tens of
        // µs): here, rather than through the blocking pool, whose thread hand-offs took 11 % of
        // the CPU at saturation. Batches and index builds go to the blocking pool.
        if let [key] = keys
            && let Some(column) = admitted.dataset_plan.lookup_key()
            && self
                .lookups
                .is_built(&admitted.set.catalog, admitted.dataset_plan.name(), column)
        {
            return Ok(vec![self.read_one(
                &admitted.set,
                &admitted.dataset_plan,
                key,
                domain.as_ref(),
            )?]);
        }
        let lookups = self.lookups.clone();
        let (set, dataset_plan) = (admitted.set.clone(), admitted.dataset_plan.clone());
        let keys = keys.to_vec();
        tokio::task::spawn_blocking(move || {
            keys.iter()
                .map(|k| read_with(&lookups, &set, &dataset_plan, k, domain.as_ref()))
                .collect()
        })
        .await
        .map_err(|_| GatewayError::internal())?
    }

    fn read_one(
        &self,
        set: &PolicySet,
        dataset: &DatasetPlan,
        key: &str,
        domain: Option<&Arc<PseudonymDomain>>,
    ) -> Result<Option<Map<String, Value>>, GatewayError> {
        read_with(&self.lookups, set, dataset, key, domain)
    }

    fn domain_of(&self, plan: &AccessPlan) -> Option<Arc<PseudonymDomain>> {
        let today = chrono::Utc::now().date_naive();
        self.pseudonyms
            .domain_on(&plan.habilitation().pseudonymisation_domain, today)
            .ok()
    }

    /// Fills the request's record: plan, dataset and granted fields, traceability, and the
    /// keys pseudonymised in the audit-only domain.
    fn trace(&self, caller: &Caller, admitted: &Admitted, keys: &[String], found: usize) {
        let audit_domain = self.pseudonyms.domain(AUDIT_DOMAIN, 1).ok();
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
        let record = &caller.record;
        record.plan(
            &admitted.plan,
            Some(
                self.pseudonyms
                    .version_on(&admitted.plan.habilitation().pseudonymisation_domain, today),
            ),
        );
        record.datasets(&admitted.plan, [admitted.dataset_plan.name()]);
        let single = keys.len() == 1;
        let traceability = &admitted.traceability;
        record.lookup(LookupTrace {
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
        record.sent(found as u64, 0);
    }

    /// The audit-only pseudonym of a lookup key (operators' journals search by it).
    pub(super) fn audit_key(&self, key: &str) -> Result<AuditKey, GatewayError> {
        let domain = self
            .pseudonyms
            .domain(AUDIT_DOMAIN, 1)
            .map_err(|_| GatewayError::internal())?;
        AuditKey::new(domain.pseudonymise(key)).map_err(|_| GatewayError::internal())
    }
}

fn read_with(
    lookups: &crate::lookup::Lookups,
    set: &PolicySet,
    dataset: &DatasetPlan,
    key: &str,
    domain: Option<&Arc<PseudonymDomain>>,
) -> Result<Option<Map<String, Value>>, GatewayError> {
    match answer_record(lookups, &set.catalog, dataset, key, domain) {
        Ok(record) => Ok(Some(record)),
        Err(LookupError::NotFound) => Ok(None),
        Err(LookupError::NoIndex) => Err(GatewayError::unavailable(
            "lookups on this dataset are not available (no key index)",
        )),
        Err(LookupError::Internal(detail)) => {
            tracing::error!(error = %detail, "lookup failed internally");
            Err(GatewayError::internal())
        }
    }
}
