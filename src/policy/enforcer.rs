//! Casbin at the core: casbin-rs's `Enforcer` decides every allow and deny of a plan.
//!
//! Owns: the adapter through which Casbin loads a policy version (`PolicyAdapter`, casbin's
//! `Adapter` trait over the validated lines of `policy.csv`; shared storage can come through
//! the same door), the enforcer built for one habilitation (a filtered load per dataset: the
//! lines whose subject is the habilitation, one of its profiles or `*`, and whose dataset field
//! covers that dataset), and turning Casbin's answers
//! into a habilitation's `DatasetPlan`s with the lines behind each decision.
//!
//! How a plan is decided, per dataset of the catalog:
//! - `query`, `aggregate`, `lookup` and `filter`: one `enforce_ex` each with column and class
//!   `*`; Casbin's answer is the decision and the rules it names are the reasons;
//! - each column: one `enforce_ex` with its name and `@class` for `read`. Casbin says whether
//!   some rule allows and none denies; among the allowing rules it names, the most specific
//!   gives the treatment (column over class over `*`, then the habilitation's own rule over a
//!   profile's, nearer profiles first, over `*`, then a dataset over a group over a pattern over
//!   `*`, then the most protective treatment).
//!
//! This runs once per policy version and habilitation (`PolicySet` caches the result); no
//! request calls the enforcer.
//!
//! Must never: decide anything Casbin did not answer, or keep a plan when Casbin fails (the
//! caller refuses every dataset).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use casbin::{Adapter, CoreApi, DefaultModel, Enforcer, Filter, Model};

use super::catalog::{Catalog, Dataset, DatasetKind};
use super::habilitation::Habilitation;
use super::hierarchy::MAX_DEPTH;
use super::plan::{ColumnPlan, DatasetPlan, Reason, RowFilter};
use super::rules::{Act, DatasetSelector, Effect, Param, PolicyLines, Rule};
use super::treatment::{ColumnTreatment, TreatmentSpec};

/// Casbin's adapter over one validated policy version: read only (policies change through
/// the versioned policy store, never through Casbin's management API).
pub struct PolicyAdapter {
    lines: Arc<PolicyLines>,
    filtered: bool,
}

impl PolicyAdapter {
    pub fn new(lines: Arc<PolicyLines>) -> PolicyAdapter {
        PolicyAdapter {
            lines,
            filtered: false,
        }
    }

    /// Adds to Casbin's model, in file order, the rules whose subject is `*` or one of
    /// `subjects` and the profile lines of those subjects (`None`: every line), then every
    /// group line.
    fn load(&self, m: &mut dyn Model, subjects: Option<&[String]>, dataset: Option<&str>) {
        let admitted = |name: &String| subjects.is_none_or(|s| s.contains(name));
        for rule in self
            .lines
            .rules_for(subjects)
            .filter(|r| dataset.is_none_or(|d| r.covers.iter().any(|c| c == d)))
        {
            m.add_policy("p", "p", rule.casbin_fields());
        }
        for link in self.lines.profiles.links() {
            if admitted(&link.member) {
                m.add_policy("g", "g", vec![link.member.clone(), link.parent.clone()]);
            }
        }
        for link in self.lines.groups.links() {
            m.add_policy("g", "g2", vec![link.member.clone(), link.parent.clone()]);
        }
    }
}

#[async_trait]
impl Adapter for PolicyAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        self.filtered = false;
        self.load(m, None, None);
        Ok(())
    }

    /// `Filter { p: [habilitation], .. }`: the rules that can apply to that habilitation
    /// (its own, its profiles', `*`), the profile lines of its chain and every group line;
    /// `Filter { p: [habilitation, dataset], .. }`: of those rules, the ones whose dataset
    /// field covers `dataset` (itself, a group or pattern holding it, `*`).
    async fn load_filtered_policy<'a>(
        &mut self,
        m: &mut dyn Model,
        f: Filter<'a>,
    ) -> casbin::Result<()> {
        let Some(habilitation) = f.p.first().copied().filter(|h| !h.is_empty()) else {
            return self.load_policy(m).await;
        };
        self.filtered = true;
        let dataset = f.p.get(1).copied().filter(|d| !d.is_empty());
        let subjects = self.lines.profiles.lineage(habilitation);
        self.load(m, Some(&subjects), dataset);
        Ok(())
    }

    async fn save_policy(&mut self, _m: &mut dyn Model) -> casbin::Result<()> {
        Ok(())
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        Ok(())
    }

    fn is_filtered(&self) -> bool {
        self.filtered
    }

    async fn add_policy(&mut self, _: &str, _: &str, _: Vec<String>) -> casbin::Result<bool> {
        Ok(false)
    }

    async fn add_policies(
        &mut self,
        _: &str,
        _: &str,
        _: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        Ok(false)
    }

    async fn remove_policy(&mut self, _: &str, _: &str, _: Vec<String>) -> casbin::Result<bool> {
        Ok(false)
    }

    async fn remove_policies(
        &mut self,
        _: &str,
        _: &str,
        _: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        Ok(false)
    }

    async fn remove_filtered_policy(
        &mut self,
        _: &str,
        _: &str,
        _: usize,
        _: Vec<String>,
    ) -> casbin::Result<bool> {
        Ok(false)
    }
}

/// Casbin's enforcer for one policy version, loaded through `PolicyAdapter`: the whole
/// policy, or (`habilitation`) only what can apply to it.
pub fn enforcer(
    model: &DefaultModel,
    lines: &Arc<PolicyLines>,
    habilitation: Option<&str>,
) -> Result<Enforcer, String> {
    let mut enforcer = empty_enforcer(model, lines)?;
    futures::executor::block_on(async {
        match habilitation {
            Some(h) => {
                enforcer
                    .load_filtered_policy(Filter {
                        p: vec![h],
                        g: Vec::new(),
                    })
                    .await
            }
            None => enforcer.load_policy().await,
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(enforcer)
}

/// An enforcer over `lines` with nothing loaded yet.
fn empty_enforcer(model: &DefaultModel, lines: &Arc<PolicyLines>) -> Result<Enforcer, String> {
    let adapter = PolicyAdapter::new(lines.clone());
    let mut enforcer = futures::executor::block_on(Enforcer::new_raw(model.clone(), adapter))
        .map_err(|e| e.to_string())?;
    // SECURITY: Casbin's own logger stays off: it would print every request (habilitation,
    // dataset, column) and the rules it matched to stderr, outside passerelle's logging.
    enforcer.enable_log(false);
    Ok(enforcer)
}

/// Every dataset's decisions for `habilitation`, through Casbin; filters are left unbound
/// (`DatasetPlan::bind` binds them to a caller).
pub fn decide(
    model: &DefaultModel,
    lines: &Arc<PolicyLines>,
    catalog: &Catalog,
    habilitation: &Habilitation,
) -> Result<Vec<DatasetPlan>, String> {
    // One enforcer, loaded for each dataset with only the rules that cover it: Casbin
    // evaluates its matcher on every loaded line, so the smaller load is the faster decision.
    let mut decider = Decider::new(empty_enforcer(model, lines)?, lines, habilitation);
    catalog
        .datasets
        .iter()
        .map(|dataset| {
            decider.load(dataset.name())?;
            decider.dataset(dataset)
        })
        .collect()
}

/// One habilitation's enforcer and what is needed to read its answers.
struct Decider<'a> {
    enforcer: Enforcer,
    lines: &'a PolicyLines,
    habilitation: &'a Habilitation,
    /// Casbin's fields of a rule → the first rule with them (Casbin keeps one of identical
    /// lines).
    by_fields: HashMap<Vec<String>, &'a Rule>,
    /// Profile → its distance from the habilitation (1 for a direct profile).
    depth: HashMap<String, usize>,
}

impl<'a> Decider<'a> {
    fn new(enforcer: Enforcer, lines: &'a PolicyLines, habilitation: &'a Habilitation) -> Self {
        // Only the rules Casbin loaded for this habilitation can be named (a scan of every
        // line would cost more than the whole decision on a large set).
        let lineage = lines.profiles.lineage(&habilitation.id);
        let mut by_fields = HashMap::new();
        for rule in lines.rules_for(Some(&lineage)) {
            by_fields.entry(rule.casbin_fields()).or_insert(rule);
        }
        let depth = lines
            .profiles
            .ancestors(&habilitation.id)
            .into_iter()
            .collect();
        Decider {
            enforcer,
            lines,
            habilitation,
            by_fields,
            depth,
        }
    }

    /// Loads the rules of this habilitation that cover `dataset` (and every group line).
    fn load(&mut self, dataset: &str) -> Result<(), String> {
        futures::executor::block_on(self.enforcer.load_filtered_policy(Filter {
            p: vec![self.habilitation.id.as_str(), dataset],
            g: Vec::new(),
        }))
        .map_err(|e| e.to_string())
    }

    /// Casbin's decision and the rules it names, in file order.
    fn enforce(
        &self,
        dataset: &str,
        column: &str,
        class: &str,
        act: Act,
    ) -> Result<(bool, Vec<&'a Rule>), String> {
        let (allowed, named) = self
            .enforcer
            .enforce_ex((
                self.habilitation.id.as_str(),
                dataset,
                column,
                class,
                act.as_str(),
            ))
            .map_err(|e| e.to_string())?;
        let rules = named
            .iter()
            .map(|fields| {
                self.by_fields
                    .get(fields)
                    .copied()
                    .ok_or_else(|| "Casbin named a rule that is not in policy.csv".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((allowed, rules))
    }

    /// Higher is more specific (see the module doc).
    fn rank(&self, rule: &Rule) -> (u8, usize, u8, u8) {
        let protection = match &rule.param {
            Param::Treatment(t) => t.protection(),
            _ => 0,
        };
        let subject = match &rule.habilitation {
            None => 0,
            Some(h) if *h == self.habilitation.id => MAX_DEPTH + 2,
            Some(profile) => MAX_DEPTH + 1 - self.depth.get(profile).copied().unwrap_or(MAX_DEPTH),
        };
        (
            rule.target.specificity(),
            subject,
            rule.dataset.specificity(),
            protection,
        )
    }

    /// A rule as a reason, with the chains through which it applies to this habilitation
    /// and `dataset`.
    fn reason(&self, rule: &Rule, dataset: &str) -> Reason {
        let mut via = Vec::new();
        if let Some(profile) = rule.habilitation.as_ref()
            && *profile != self.habilitation.id
        {
            via.extend(self.lines.profiles.chain(&self.habilitation.id, profile));
        }
        if let DatasetSelector::Group(group) = &rule.dataset {
            via.extend(self.lines.groups.chain(dataset, group));
        }
        Reason::rule(rule, via)
    }

    fn dataset(&self, dataset: &Dataset) -> Result<DatasetPlan, String> {
        let name = dataset.name();
        let mut reasons = Vec::new();
        let mut decide = |act: Act| -> Result<(bool, Vec<&'a Rule>), String> {
            let (allowed, rules) = self.enforce(name, "*", "*", act)?;
            reasons.extend(rules.iter().map(|r| self.reason(r, name)));
            Ok((allowed, rules))
        };
        let (query, _) = decide(Act::Query)?;
        let (aggregate, _) = decide(Act::Aggregate)?;
        let (lookup, lookup_rules) = decide(Act::Lookup)?;
        if reasons.is_empty() {
            reasons.push(Reason::default_deny(&format!("any use of {name}")));
        }
        let lookup_key = if lookup {
            lookup_rules
                .iter()
                .filter(|r| r.effect == Effect::Allow)
                .max_by_key(|r| self.rank(r))
                .and_then(|r| match &r.param {
                    Param::KeyColumn(k) => Some(k.clone()),
                    _ => None,
                })
        } else {
            None
        };

        let (filtered, filter_rules) = self.enforce(name, "*", "*", Act::Filter)?;
        let row_filters = if filtered {
            filter_rules
                .iter()
                .filter(|r| r.effect == Effect::Allow)
                .filter_map(|r| match &r.param {
                    Param::Filter(expr) => Some(RowFilter::new(
                        r.param_text.clone(),
                        expr.clone(),
                        self.reason(r, name),
                    )),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };

        let columns = dataset
            .fields
            .iter()
            .map(|field| self.column(name, field))
            .collect::<Result<Vec<_>, String>>()?;

        if dataset.kind == DatasetKind::Table {
            // SECURITY: a table of the statistical secret is read under `aggregate` only,
            // whole (every cell of it passed the attacker's audit), and nothing else grants
            // it: `check` refuses `query`, `lookup`, `read` and `filter` rules on a table.
            let columns = dataset
                .fields
                .iter()
                .map(|field| {
                    let treatment = if aggregate {
                        ColumnTreatment::Clear
                    } else {
                        ColumnTreatment::Hidden
                    };
                    ColumnPlan::decided(field.name.get_ref(), field.class, treatment, Vec::new())
                })
                .collect();
            return Ok(DatasetPlan::decided(
                dataset,
                aggregate,
                aggregate,
                None,
                Vec::new(),
                columns,
                reasons,
            ));
        }

        Ok(DatasetPlan::decided(
            dataset,
            query,
            // `aggregate` grants tables only: on microdata it gives nothing.
            false,
            lookup_key,
            row_filters,
            columns,
            reasons,
        ))
    }

    fn column(&self, name: &str, field: &super::catalog::Field) -> Result<ColumnPlan, String> {
        let column = field.name.get_ref();
        let class = format!("@{}", field.class.as_str());
        let (allowed, rules) = self.enforce(name, column, &class, Act::Read)?;
        let (treatment, reasons) = if allowed {
            let best = rules
                .iter()
                .copied()
                .filter(|r| r.effect == Effect::Allow)
                .max_by_key(|r| self.rank(r))
                .ok_or_else(|| "Casbin allowed a read without naming a rule".to_string())?;
            let spec = match &best.param {
                Param::Treatment(t) => t.clone(),
                _ => TreatmentSpec::Hide,
            };
            (
                ColumnTreatment::from_spec(&spec, &self.habilitation.pseudonymisation_domain),
                vec![self.reason(best, name)],
            )
        } else {
            let denies: Vec<Reason> = rules
                .iter()
                .filter(|r| r.effect == Effect::Deny)
                .map(|r| self.reason(r, name))
                .collect();
            if denies.is_empty() {
                // SECURITY: default deny: a column no rule grants does not exist.
                (
                    ColumnTreatment::Hidden,
                    vec![Reason::default_deny(&format!("reading {name}.{column}"))],
                )
            } else {
                // SECURITY: deny overrides any allow (Casbin's effect).
                (ColumnTreatment::Hidden, denies)
            }
        };
        Ok(ColumnPlan::decided(column, field.class, treatment, reasons))
    }
}
