//! `PolicySet`: one complete, validated policy version (model, rules, habilitations, catalog),
//! with the decisions Casbin made for each habilitation and the plans bound to callers, both
//! cached for the life of the version.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::catalog::Catalog;
use super::enforcer::decide;
use super::habilitation::{Habilitation, Habilitations, Validity};
use super::model::{ModelFeatures, casbin_model, check_model};
use super::plan::{AccessPlan, DatasetPlan, HabilitationSummary};
use super::rules::{PolicyLines, Rule, parse_rules};
use super::source::{PolicyFiles, Problem};
use super::tables::Tables;
use crate::identity::Principal;

/// Plans kept per policy version before the cache is emptied.
const PLAN_CACHE_LIMIT: usize = 10_000;

/// The files of a policy set, as text (`tables.toml` may be absent: no table).
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
    #[serde(
        rename = "tables.toml",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub tables: String,
}

impl PolicyTexts {
    /// The set of `dir` as it stands; an apply interrupted by a crash reads as the set it
    /// completes (see `policy::folder`), never as a mix of two versions.
    pub fn read(dir: &Path) -> Result<PolicyTexts, Vec<Problem>> {
        super::folder::read(dir)
    }

    /// The files, each read from `path_of(name)` (`tables.toml` may be missing).
    pub(crate) fn read_files(
        mut path_of: impl FnMut(&str) -> std::path::PathBuf,
    ) -> Result<PolicyTexts, Vec<Problem>> {
        let tables = match std::fs::read_to_string(path_of(PolicyFiles::TABLES)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(vec![Problem::new(
                    &path_of(PolicyFiles::TABLES),
                    None,
                    format!("cannot read: {}", e.kind()),
                )]);
            }
        };
        let mut read = |name: &str| {
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
            tables,
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
        // Without tables, a set keeps the version it had before tables.toml existed.
        if !self.tables.is_empty() {
            hash.update((self.tables.len() as u64).to_le_bytes());
            hash.update(self.tables.as_bytes());
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

/// Casbin's parsed model (its matcher compiled once per version; enforcers clone it).
struct CasbinModel(casbin::DefaultModel);

impl std::fmt::Debug for CasbinModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CasbinModel")
    }
}

/// One complete, validated policy version.
#[derive(Debug)]
pub struct PolicySet {
    pub version: String,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    pub texts: PolicyTexts,
    /// Datasets of datasets.toml, then one per table of tables.toml.
    pub catalog: Catalog,
    pub tables: Tables,
    pub habilitations: Habilitations,
    /// What model.conf lets policy.csv say.
    pub features: ModelFeatures,
    model: CasbinModel,
    lines: Arc<PolicyLines>,
    /// Casbin's decisions per habilitation id (filters unbound).
    decisions: RwLock<HashMap<String, Arc<Vec<DatasetPlan>>>>,
    /// Plans bound to callers.
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
        let model_file = dir.join(PolicyFiles::MODEL);
        let mut problems = Vec::new();
        // An unknown model is reported; the rules are still checked (as under the full model)
        // so that the operator sees every problem at once.
        let features = check_model(&model_file, &texts.model).unwrap_or_else(|problem| {
            problems.push(problem);
            ModelFeatures::ALL
        });
        let catalog = Catalog::parse(&dir.join(PolicyFiles::DATASETS), &texts.datasets);
        let habilitations =
            Habilitations::parse(&dir.join(PolicyFiles::HABILITATIONS), &texts.habilitations);
        let (mut catalog, habilitations) = match (catalog, habilitations) {
            (Ok(c), Ok(h)) => (c, h),
            (c, h) => {
                problems.extend(c.err().unwrap_or_default());
                problems.extend(h.err().unwrap_or_default());
                return Err(problems);
            }
        };
        let tables =
            match Tables::parse(&dir.join(PolicyFiles::TABLES), &texts.tables, &mut catalog) {
                Ok(tables) => tables,
                Err(p) => {
                    problems.extend(p);
                    return Err(problems);
                }
            };
        let lines = match parse_rules(
            &dir.join(PolicyFiles::RULES),
            &texts.rules,
            &catalog,
            &habilitations,
            features,
        ) {
            Ok(lines) => lines,
            Err(p) => {
                problems.extend(p);
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        // SECURITY: Casbin parses the family's own text for the member `model.conf` was
        // recognised as, never the file itself: the check compares texts with their spacing
        // removed, and an effect spaced inside a word (`s ome(where …`) passed it, then made
        // Casbin's effector panic at the first decision (found by the parser's property test).
        let model = casbin_model(&super::model::model_text(features)).map_err(|e| {
            vec![Problem::new(
                &model_file,
                None,
                format!("Casbin refuses the model: {e}"),
            )]
        })?;
        let set = PolicySet {
            version: texts.version(),
            loaded_at: chrono::Utc::now(),
            texts,
            catalog,
            tables,
            habilitations,
            features,
            model: CasbinModel(model),
            lines: Arc::new(lines),
            decisions: RwLock::new(HashMap::new()),
            cache: RwLock::new(HashMap::new()),
        };
        let problems = set.aggregate_only_problems(dir);
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems)
        }
    }

    /// A habilitation whose own rules are all `aggregate` is aggregate-only: it reads tables of
    /// the statistical secret and must never reach microdata, whatever it inherits (a profile,
    /// a rule for `*`). One problem per microdata dataset its decisions would grant.
    fn aggregate_only_problems(&self, dir: &Path) -> Vec<Problem> {
        use super::catalog::DatasetKind;
        use super::rules::Act;
        let mut problems = Vec::new();
        for habilitation in &self.habilitations.list {
            let own: Vec<&Rule> = self
                .lines
                .rules
                .iter()
                .filter(|r| r.habilitation.as_deref() == Some(habilitation.id.as_str()))
                .collect();
            if own.is_empty() || own.iter().any(|r| r.act != Act::Aggregate) {
                continue;
            }
            for d in self.decide_now(habilitation) {
                let microdata = self
                    .catalog
                    .dataset(d.name())
                    .is_some_and(|c| c.kind == DatasetKind::Microdata);
                // SECURITY: aggregate-only means no microdata, ever.
                if microdata && (d.query_allowed() || d.lookup_allowed()) {
                    problems.push(Problem::new(
                        &dir.join(PolicyFiles::HABILITATIONS),
                        Some(habilitation.line),
                        format!(
                            "habilitation `{}` is aggregate-only (its rules are all `aggregate`) but would reach microdata `{}`: remove what grants it (a profile, a rule for `*`)",
                            habilitation.id,
                            d.name()
                        ),
                    ));
                }
            }
        }
        problems
    }

    pub fn rules(&self) -> &[Rule] {
        &self.lines.rules
    }

    /// Every line of policy.csv, parsed: rules, profiles and dataset groups.
    pub fn lines(&self) -> &PolicyLines {
        &self.lines
    }

    /// Casbin's enforcer for this version with the whole policy loaded through
    /// `PolicyAdapter` (what an operator's Casbin tools see; plans use filtered ones).
    pub fn enforcer(&self) -> Result<casbin::Enforcer, String> {
        super::enforcer::enforcer(&self.model.0, &self.lines, None)
    }

    /// The (dataset, column) pairs this set's `lookup` rules use as keys, where the catalog
    /// declares the column unique (the key indexes lookups need).
    pub fn lookup_key_columns(&self) -> Vec<(String, String)> {
        use super::rules::{Act, Effect, Param};
        let mut pairs = Vec::new();
        for rule in self
            .lines
            .rules
            .iter()
            .filter(|r| r.act == Act::Lookup && r.effect == Effect::Allow)
        {
            let Param::KeyColumn(column) = &rule.param else {
                continue;
            };
            for name in rule.covers.iter().cloned() {
                if self.catalog.key_dataset(&name, column).is_some()
                    && !pairs.contains(&(name.clone(), column.clone()))
                {
                    pairs.push((name, column.clone()));
                }
            }
        }
        pairs
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

    /// Every dataset's decisions for `habilitation` (accessible or not): explain's view. Casbin
    /// decides them once per version and habilitation; `principal` binds the row filters
    /// (`None` keeps them unbound, for explain without a caller).
    pub fn evaluate(
        &self,
        habilitation: &Habilitation,
        principal: Option<&Principal>,
    ) -> Vec<DatasetPlan> {
        let decided = self.decisions(habilitation);
        match principal {
            Some(p) => decided.iter().map(|d| d.bind(p)).collect(),
            None => decided.as_ref().clone(),
        }
    }

    /// Casbin's decisions for `habilitation` made now, bypassing the cache (what a plan costs
    /// the first time; benchmarks).
    pub fn decide_now(&self, habilitation: &Habilitation) -> Vec<DatasetPlan> {
        match decide(&self.model.0, &self.lines, &self.catalog, habilitation) {
            Ok(datasets) => datasets,
            Err(error) => {
                // SECURITY: fail closed: a plan Casbin could not decide gives nothing.
                tracing::error!(habilitation = %habilitation.id, %error, "access decision failed: every dataset refused");
                self.catalog
                    .datasets
                    .iter()
                    .map(DatasetPlan::undecidable)
                    .collect()
            }
        }
    }

    /// Casbin's decisions for `habilitation`, from the cache or made now.
    fn decisions(&self, habilitation: &Habilitation) -> Arc<Vec<DatasetPlan>> {
        if let Some(d) = self
            .decisions
            .read()
            .ok()
            .and_then(|c| c.get(&habilitation.id).cloned())
        {
            return d;
        }
        let decided = Arc::new(self.decide_now(habilitation));
        if let Ok(mut cache) = self.decisions.write() {
            cache.insert(habilitation.id.clone(), decided.clone());
        }
        decided
    }
}

#[cfg(test)]
impl PolicyTexts {
    /// The shipped policy set (`policies/`), for the crate's tests.
    pub(crate) fn shipped() -> PolicyTexts {
        PolicyTexts {
            model: include_str!("../../policies/model.conf").into(),
            rules: include_str!("../../policies/policy.csv").into(),
            habilitations: include_str!("../../policies/habilitations.toml").into(),
            datasets: include_str!("../../policies/datasets.toml").into(),
            tables: include_str!("../../policies/tables.toml").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::{ModelFeatures, model_text};

    fn shipped() -> PolicySet {
        PolicySet::from_texts(Path::new("policies"), PolicyTexts::shipped()).unwrap()
    }

    /// Fail closed: when Casbin cannot decide (here a matcher calling `g` that the model does
    /// not define, so every enforcement errs), the habilitation gets nothing.
    #[test]
    fn a_plan_casbin_cannot_decide_gives_nothing() {
        let mut set = shipped();
        let h = set.habilitations.get("projet-emploi").unwrap().clone();
        assert!(set.evaluate(&h, None).iter().any(DatasetPlan::accessible));
        let broken =
            model_text(ModelFeatures::ALL).replace("[role_definition]\ng = _, _\ng2 = _, _\n", "");
        assert!(!broken.contains("role_definition"));
        set.model = CasbinModel(casbin_model(&broken).unwrap());
        set.decisions = RwLock::new(HashMap::new());
        let plans = set.evaluate(&h, None);
        assert_eq!(plans.len(), set.catalog.datasets.len());
        assert!(
            plans
                .iter()
                .all(|d| !d.accessible() && d.refused().is_some() && d.columns().is_empty())
        );
    }

    /// A `model.conf` spaced inside a word still names the family's member (its check ignores
    /// spacing), and Casbin decides from the member's own text: no panic at the first decision
    /// (found by `policy::parser_properties`: Casbin's effector panicked on `s ome(where …`).
    #[test]
    fn a_model_spaced_inside_words_decides_like_the_shipped_one() {
        let texts = PolicyTexts {
            model: include_str!("../../policies/model.conf").replace(
                "some(where (p.eft == allow))",
                "s ome(where (p.eft == allow))",
            ),
            rules: include_str!("../../policies/policy.csv").into(),
            habilitations: include_str!("../../policies/habilitations.toml").into(),
            datasets: include_str!("../../policies/datasets.toml").into(),
            tables: include_str!("../../policies/tables.toml").into(),
        };
        assert!(texts.model.contains("s ome(where"));
        let set = PolicySet::from_texts(Path::new("policies"), texts).unwrap();
        let h = set.habilitations.get("projet-diabete").unwrap().clone();
        assert!(set.evaluate(&h, None).iter().any(DatasetPlan::accessible));
    }

    /// Decisions are made once per habilitation and version: the second plan is the cached one.
    #[test]
    fn decisions_are_cached_per_habilitation() {
        let set = shipped();
        let h = set.habilitations.get("projet-diabete").unwrap();
        let first = set.decisions(h);
        assert!(Arc::ptr_eq(&first, &set.decisions(h)));
    }
}
