//! `PolicySet`: one complete, validated policy version (model, rules, habilitations, catalog),
//! indexed for fast decisions, with its plan cache.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::catalog::Catalog;
use super::habilitation::{Habilitation, Habilitations, Validity};
use super::plan::{AccessPlan, DatasetPlan, HabilitationSummary, evaluate};
use super::rules::{Rule, check_model, parse_rules};
use super::source::{PolicyFiles, Problem};
use crate::identity::Principal;

/// Plans kept per policy version before the cache is emptied.
const PLAN_CACHE_LIMIT: usize = 10_000;

/// The four files of a policy set, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyTexts {
    #[serde(rename = "model.conf")]
    pub model: String,
    #[serde(rename = "policy.csv")]
    pub rules: String,
    #[serde(rename = "habilitations.toml")]
    pub habilitations: String,
    #[serde(rename = "datasets.toml")]
    pub datasets: String,
}

impl PolicyTexts {
    /// The set of `dir` as it stands; an apply interrupted by a crash reads as the set it
    /// completes (see `policy::folder`), never as a mix of two versions.
    pub fn read(dir: &Path) -> Result<PolicyTexts, Vec<Problem>> {
        super::folder::read(dir)
    }

    /// The four files, each read from `path_of(name)`.
    pub(crate) fn read_files(
        path_of: impl Fn(&str) -> std::path::PathBuf,
    ) -> Result<PolicyTexts, Vec<Problem>> {
        let read = |name: &str| {
            let file = path_of(name);
            std::fs::read_to_string(&file)
                .map_err(|e| Problem::new(&file, None, format!("cannot read: {}", e.kind())))
        };
        let results = [
            read(PolicyFiles::MODEL),
            read(PolicyFiles::RULES),
            read(PolicyFiles::HABILITATIONS),
            read(PolicyFiles::DATASETS),
        ];
        let problems: Vec<Problem> = results.iter().filter_map(|r| r.clone().err()).collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let [model, rules, habilitations, datasets] = results.map(Result::unwrap_or_default);
        Ok(PolicyTexts {
            model,
            rules,
            habilitations,
            datasets,
        })
    }

    /// Content hash: the policy version.
    pub fn version(&self) -> String {
        let mut hash = sha2::Sha256::new();
        for text in [
            &self.model,
            &self.rules,
            &self.habilitations,
            &self.datasets,
        ] {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// Writes the four files to `dir` so that a crash at any moment leaves the previous set
    /// or this one, whole (staged files, an intent, renames: see `policy::folder`).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        super::folder::write(dir, self)
    }
}

/// Why a principal cannot use a habilitation (mapped to 400/403 by the server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you hold no habilitation on this hub")]
    NoHabilitation,
    #[error("you hold several habilitations: name one in `habilitation` ({})", .0.join(", "))]
    HabilitationRequired(Vec<String>),
    #[error("you do not hold habilitation `{0}`")]
    NotHeld(String),
    #[error("habilitation `{id}` expired on {end}")]
    Expired { id: String, end: NaiveDate },
    #[error("habilitation `{id}` starts on {start}")]
    NotStarted { id: String, start: NaiveDate },
    #[error("habilitation `{0}` was revoked")]
    Revoked(String),
    #[error("habilitation `{0}` is obsolete (replaced by another)")]
    Obsolete(String),
    #[error("habilitation `{0}` requires a token bound to your TLS client certificate")]
    CertificateBindingRequired(String),
}

impl Refusal {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoHabilitation => "no_habilitation",
            Refusal::HabilitationRequired(_) => "habilitation_required",
            Refusal::NotHeld(_) => "habilitation_not_held",
            Refusal::Expired { .. } => "habilitation_expired",
            Refusal::NotStarted { .. } => "habilitation_not_started",
            Refusal::Revoked(_) => "habilitation_revoked",
            Refusal::Obsolete(_) => "habilitation_obsolete",
            Refusal::CertificateBindingRequired(_) => "certificate_binding_required",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    habilitation: String,
    organisation: Option<String>,
    subject: String,
    idp: Option<String>,
}

/// One complete, validated policy version.
#[derive(Debug)]
pub struct PolicySet {
    pub version: String,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    pub texts: PolicyTexts,
    pub catalog: Catalog,
    pub habilitations: Habilitations,
    rules: Vec<Rule>,
    /// Rule indices per habilitation id, and for `*`.
    by_habilitation: HashMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
    cache: RwLock<HashMap<PlanKey, Arc<AccessPlan>>>,
}

impl PolicySet {
    /// Reads and validates the policy folder.
    pub fn load(dir: &Path) -> Result<PolicySet, Vec<Problem>> {
        Self::from_texts(dir, PolicyTexts::read(dir)?)
    }

    /// Validates a whole set given as texts (`dir` names the files in problems). Every problem
    /// is reported, each with its file and line.
    pub fn from_texts(dir: &Path, texts: PolicyTexts) -> Result<PolicySet, Vec<Problem>> {
        let mut problems = check_model(&dir.join(PolicyFiles::MODEL), &texts.model);
        let catalog = Catalog::parse(&dir.join(PolicyFiles::DATASETS), &texts.datasets);
        let habilitations =
            Habilitations::parse(&dir.join(PolicyFiles::HABILITATIONS), &texts.habilitations);
        let (catalog, habilitations) = match (catalog, habilitations) {
            (Ok(c), Ok(h)) => (c, h),
            (c, h) => {
                problems.extend(c.err().unwrap_or_default());
                problems.extend(h.err().unwrap_or_default());
                return Err(problems);
            }
        };
        let rules = match parse_rules(
            &dir.join(PolicyFiles::RULES),
            &texts.rules,
            &catalog,
            &habilitations,
        ) {
            Ok(rules) => rules,
            Err(p) => {
                problems.extend(p);
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut by_habilitation: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.habilitation {
                Some(h) => by_habilitation.entry(h.clone()).or_default().push(i),
                None => wildcard.push(i),
            }
        }
        Ok(PolicySet {
            version: texts.version(),
            loaded_at: chrono::Utc::now(),
            texts,
            catalog,
            habilitations,
            rules,
            by_habilitation,
            wildcard,
            cache: RwLock::new(HashMap::new()),
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The (dataset, column) pairs this set's `lookup` rules use as keys, where the catalog
    /// declares the column unique (the key indexes lookups need).
    pub fn lookup_key_columns(&self) -> Vec<(String, String)> {
        use super::rules::{Act, Effect, Param};
        let mut pairs = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.act == Act::Lookup && r.effect == Effect::Allow)
        {
            let Param::KeyColumn(column) = &rule.param else {
                continue;
            };
            let datasets = match &rule.dataset {
                Some(name) => vec![name.clone()],
                None => self.catalog.names(),
            };
            for name in datasets {
                if self.catalog.key_dataset(&name, column).is_some()
                    && !pairs.contains(&(name.clone(), column.clone()))
                {
                    pairs.push((name, column.clone()));
                }
            }
        }
        pairs
    }

    /// The rules that can apply to a habilitation, in file order.
    fn rules_for(&self, habilitation: &str) -> Vec<&Rule> {
        let mut idx: Vec<usize> = self
            .by_habilitation
            .get(habilitation)
            .into_iter()
            .flatten()
            .chain(&self.wildcard)
            .copied()
            .collect();
        idx.sort_unstable();
        idx.into_iter().map(|i| &self.rules[i]).collect()
    }

    /// Habilitations whose members include `principal` (whatever their validity).
    pub fn held_by(&self, principal: &Principal) -> Vec<&Habilitation> {
        self.habilitations
            .list
            .iter()
            .filter(|h| h.members.admit(principal))
            .collect()
    }

    pub fn is_operator(&self, principal: &Principal) -> bool {
        self.habilitations.operators.admit(principal)
    }

    /// Chooses the habilitation a request runs under and checks it can be used `today`.
    pub fn resolve(
        &self,
        principal: &Principal,
        requested: Option<&str>,
        today: NaiveDate,
    ) -> Result<&Habilitation, Refusal> {
        let held = self.held_by(principal);
        let habilitation = match requested {
            Some(id) => *held
                .iter()
                .find(|h| h.id == id)
                // SECURITY: unknown and not-held answer the same, so ids cannot be probed.
                .ok_or_else(|| Refusal::NotHeld(id.to_string()))?,
            None => match held.as_slice() {
                [] => return Err(Refusal::NoHabilitation),
                [only] => *only,
                many => {
                    return Err(Refusal::HabilitationRequired(
                        many.iter().map(|h| h.id.clone()).collect(),
                    ));
                }
            },
        };
        // SECURITY: an expired, not yet valid, revoked or obsolete habilitation gives nothing.
        match habilitation.validity(today) {
            Validity::Active => {}
            Validity::Expired => {
                return Err(Refusal::Expired {
                    id: habilitation.id.clone(),
                    end: habilitation.end,
                });
            }
            Validity::NotStarted => {
                return Err(Refusal::NotStarted {
                    id: habilitation.id.clone(),
                    start: habilitation.start,
                });
            }
            Validity::Revoked => return Err(Refusal::Revoked(habilitation.id.clone())),
            Validity::Obsolete => return Err(Refusal::Obsolete(habilitation.id.clone())),
        }
        if habilitation.require_certificate_bound_token && !principal.certificate_bound {
            return Err(Refusal::CertificateBindingRequired(habilitation.id.clone()));
        }
        Ok(habilitation)
    }

    /// The access plan of `principal` under `habilitation` (already resolved), cached per
    /// (habilitation, principal attributes used by filters) for this policy version.
    pub fn plan(&self, principal: &Principal, habilitation: &Habilitation) -> Arc<AccessPlan> {
        let key = PlanKey {
            habilitation: habilitation.id.clone(),
            organisation: principal.organisation_siret.clone(),
            subject: principal.subject.clone(),
            idp: principal.idp_id.clone(),
        };
        if let Some(plan) = self.cache.read().ok().and_then(|c| c.get(&key).cloned()) {
            return plan;
        }
        let datasets = self
            .evaluate(habilitation, Some(principal))
            .into_iter()
            .filter(DatasetPlan::accessible)
            .collect();
        let plan = Arc::new(AccessPlan::new(
            HabilitationSummary::of(habilitation),
            self.version.clone(),
            datasets,
        ));
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= PLAN_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, plan.clone());
        }
        plan
    }

    /// Every dataset's decisions for `habilitation` (accessible or not): explain's view.
    pub fn evaluate(
        &self,
        habilitation: &Habilitation,
        principal: Option<&Principal>,
    ) -> Vec<DatasetPlan> {
        evaluate(
            habilitation,
            &self.rules_for(&habilitation.id),
            &self.catalog.datasets,
            principal,
        )
    }
}
