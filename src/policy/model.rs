//! The access model (`model.conf`): the one family of Casbin models passerelle accepts.
//!
//! Owns: the family's text (built from three switches: profiles `g`, dataset groups `g2`,
//! patterns `keyMatch`), the check that `model.conf` is one of its members, and the parsed
//! Casbin model the enforcer clones.
//!
//! Must never: accept a matcher outside the family. An arbitrary matcher can be slow (every
//! decision evaluates it once per policy line) or say something the plans, explain and diffs
//! do not understand; `passerelle check` refuses it.

use std::path::Path;

use super::source::Problem;

/// What a member of the family can express beyond the base model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelFeatures {
    /// `[role_definition] g = _, _`: a habilitation inherits the rules of a profile.
    pub profiles: bool,
    /// `g2 = _, _`: dataset groups, usable wherever a dataset is.
    pub groups: bool,
    /// `keyMatch(r.dataset, p.dataset)`: patterns on dataset names (`sante.*`).
    pub patterns: bool,
}

impl ModelFeatures {
    /// Everything: the shipped model.
    pub const ALL: ModelFeatures = ModelFeatures {
        profiles: true,
        groups: true,
        patterns: true,
    };

    fn every() -> impl Iterator<Item = ModelFeatures> {
        (0..8u8).map(|bits| ModelFeatures {
            profiles: bits & 1 != 0,
            groups: bits & 2 != 0,
            patterns: bits & 4 != 0,
        })
    }
}

/// The text of the family's member with `features` (what `model.conf` must say, comments
/// and spacing aside).
pub fn model_text(features: ModelFeatures) -> String {
    let mut roles = Vec::new();
    if features.profiles {
        roles.push("g = _, _");
    }
    if features.groups {
        roles.push("g2 = _, _");
    }
    let role_definition = if roles.is_empty() {
        String::new()
    } else {
        format!("[role_definition]\n{}\n", roles.join("\n"))
    };
    let habilitation = if features.profiles {
        r#"(g(r.hab, p.hab) || p.hab == "*")"#
    } else {
        r#"(p.hab == r.hab || p.hab == "*")"#
    };
    let dataset = match (features.groups, features.patterns) {
        (false, false) => r#"(p.dataset == r.dataset || p.dataset == "*")"#,
        (true, false) => r#"(g2(r.dataset, p.dataset) || p.dataset == "*")"#,
        (false, true) => "keyMatch(r.dataset, p.dataset)",
        (true, true) => "(g2(r.dataset, p.dataset) || keyMatch(r.dataset, p.dataset))",
    };
    format!(
        r#"[request_definition]
r = hab, dataset, column, class, act
[policy_definition]
p = hab, dataset, target, act, eft, param
{role_definition}[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = {habilitation} && {dataset} && (p.target == r.column || p.target == r.class || p.target == "*") && p.act == r.act"#
    )
}

/// Which member of the family `text` is, or the problem to report.
pub fn check_model(file: &Path, text: &str) -> Result<ModelFeatures, Problem> {
    let given = normalise(text);
    ModelFeatures::every()
        .find(|f| normalise(&model_text(*f)) == given)
        .ok_or_else(|| {
            Problem::new(
                file,
                None,
                "this is not one of passerelle's access models: keep model.conf as shipped (profiles, dataset groups and patterns may be left out; see docs/policies.md); rules go in policy.csv",
            )
        })
}

/// Parses a checked model for Casbin (once per policy version; enforcers clone it).
pub fn casbin_model(text: &str) -> Result<casbin::DefaultModel, String> {
    futures::executor::block_on(casbin::DefaultModel::from_str(text)).map_err(|e| e.to_string())
}

fn normalise(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<String>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_is_the_whole_family() {
        let shipped = include_str!("../../policies/model.conf");
        assert_eq!(
            check_model(Path::new("model.conf"), shipped).unwrap(),
            ModelFeatures::ALL
        );
        let changed = shipped.replace("!some(where (p.eft == deny))", "true");
        assert!(check_model(Path::new("model.conf"), &changed).is_err());
        let regex = shipped.replace("keyMatch(", "regexMatch(");
        assert!(check_model(Path::new("model.conf"), &regex).is_err());
    }

    #[test]
    fn every_member_parses_in_casbin_and_is_recognised() {
        for features in ModelFeatures::every() {
            let text = model_text(features);
            casbin_model(&text).unwrap();
            assert_eq!(check_model(Path::new("m"), &text).unwrap(), features);
        }
    }
}
