//! Warnings on a valid policy set: choices the files allow but that weaken a legal secret,
//! shown by `passerelle check` and with a submitted version; they never refuse a set.
//!
//! Owns: the re-identification patterns an operator should see before a set goes in force:
//! - a pseudonymisation domain shared by habilitations of different projects (different
//!   members): their pseudonyms join across projects, which per-project keys exist to prevent;
//! - a habilitation that can look a dataset up by a clear key and also receive that key's
//!   pseudonyms: with both it can build the table from clear identifiers to pseudonyms.
//!
//! Must never: read data, or turn a warning into a refusal (that is validation's job).

use std::collections::BTreeMap;
use std::path::Path;

use super::habilitation::{Habilitation, HabilitationState, Members};
use super::source::{PolicyFiles, Problem};
use super::{ColumnTreatment, PolicySet};

impl PolicySet {
    /// Every warning on this set, against `habilitations.toml` in `dir` (in file order).
    pub fn warnings(&self, dir: &Path) -> Vec<Problem> {
        let file = dir.join(PolicyFiles::HABILITATIONS);
        let mut warnings = self.shared_domains(&file);
        warnings.extend(self.reidentification_tables(&file));
        warnings.sort_by_key(|w| w.line);
        warnings
    }

    fn shared_domains(&self, file: &Path) -> Vec<Problem> {
        let mut by_domain: BTreeMap<&str, Vec<&Habilitation>> = BTreeMap::new();
        for h in self
            .habilitations
            .list
            .iter()
            .filter(|h| h.state == HabilitationState::Active)
        {
            by_domain
                .entry(&h.pseudonymisation_domain)
                .or_default()
                .push(h);
        }
        let mut warnings = Vec::new();
        for (domain, holders) in by_domain {
            let Some((first, others)) = holders.split_first() else {
                continue;
            };
            for other in others
                .iter()
                .filter(|o| !same_members(&first.members, &o.members))
            {
                warnings.push(Problem::new(
                    file,
                    Some(other.line),
                    format!(
                        "warning: habilitations `{}` and `{}` share the pseudonymisation domain `{domain}` but not their members: their pseudonyms join across projects; give each project its own domain",
                        first.id, other.id
                    ),
                ));
            }
        }
        warnings
    }

    fn reidentification_tables(&self, file: &Path) -> Vec<Problem> {
        let mut warnings = Vec::new();
        for h in self
            .habilitations
            .list
            .iter()
            .filter(|h| h.state == HabilitationState::Active)
        {
            let plans = self.evaluate(h, None);
            for looked_up in plans.iter().filter(|d| d.lookup_allowed()) {
                let Some(key) = looked_up.lookup_key() else {
                    continue;
                };
                // The same key column (by name: a NIR is `nir` in every dataset), pseudonymised
                // anywhere this habilitation can read it.
                let pseudonymised_in = plans.iter().find(|d| {
                    (d.query_allowed() || d.aggregates_allowed() || d.lookup_allowed())
                        && d.visible_columns().any(|c| {
                            c.name() == key
                                && matches!(c.treatment(), ColumnTreatment::Pseudonymised { .. })
                        })
                });
                if let Some(dataset) = pseudonymised_in {
                    warnings.push(Problem::new(
                        file,
                        Some(h.line),
                        format!(
                            "warning: habilitation `{}` looks `{}` up by clear `{key}` and receives `{key}` pseudonymised in `{}`: together they make a table from clear identifiers to pseudonyms; split the uses into two habilitations",
                            h.id,
                            looked_up.name(),
                            dataset.name()
                        ),
                    ));
                    break;
                }
            }
        }
        warnings
    }
}

/// The same people: the same groups, organisations, roles and subjects, in any order.
fn same_members(a: &Members, b: &Members) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    sorted(&a.groups) == sorted(&b.groups)
        && sorted(&a.organisations) == sorted(&b.organisations)
        && sorted(&a.roles) == sorted(&b.roles)
        && sorted(&a.subjects) == sorted(&b.subjects)
}
