//! Random policies (allow, deny, wildcards, profiles, dataset groups, patterns) decided by
//! the gateway (Casbin's enforcer, loaded through passerelle's adapter) and by an independent
//! reference evaluator written here from the documented semantics (docs/policies.md): they
//! must agree on every habilitation × dataset × column × act.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

use passerelle::policy::{Catalog, PolicySet, PolicyTexts};
use proptest::prelude::*;

const MODEL: &str = include_str!("../../policies/model.conf");
const DATASETS: &str = include_str!("../../policies/datasets.toml");
const HABILITATIONS: [&str; 3] = ["h0", "h1", "h2"];
const PROFILES: [&str; 3] = ["pr0", "pr1", "pr2"];
const GROUPS: [&str; 2] = ["gr0", "gr1"];
const PATTERNS: [&str; 3] = ["sante.*", "s*", "fiscal.*"];
// `aggregate` grants tables of the statistical secret only (refused on microdata by `check`):
// its decisions are compared with Casbin's in `policy::decisions_agree_with_casbins_own_enforcer`.
const ACTS: [&str; 2] = ["query", "read"];

/// One generated rule, before it is written as a line.
#[derive(Debug, Clone)]
struct GenRule {
    subject: usize,
    dataset: usize,
    target: usize,
    act: usize,
    deny: bool,
}

#[derive(Debug, Clone)]
struct GenPolicy {
    /// (member, profile) as indices: a member < 3 is a habilitation, else profile member - 3;
    /// a profile only inherits from a later one, so there is no cycle.
    profile_links: Vec<(usize, usize)>,
    /// (dataset or group, group): a member < datasets is a dataset, else a group.
    group_links: Vec<(usize, usize)>,
    rules: Vec<GenRule>,
}

fn habilitations_toml() -> String {
    let mut out = String::from("[operators]\nroles = [\"operateur\"]\n");
    for id in HABILITATIONS {
        write!(
            out,
            r#"
[[habilitations]]
id = "{id}"
title = "Habilitation {id}"
kind = "research"
purpose = "Comparer passerelle à un évaluateur de référence."
legal_basis = {{ nature = "CSP L1461-1", reference = "https://www.legifrance.gouv.fr/" }}
organisations = ["11000400700016"]
members = {{ groups = ["{id}"] }}
start = 2024-01-01
end = 2030-12-31
state = "active"
pseudonymisation_domain = "{id}"
retention_months = 12
contacts = {{ controller = "direction@example.fr", dpo = "dpo@example.fr" }}
"#
        )
        .unwrap();
    }
    out
}

/// The catalog as (dataset, [(column, class)]).
fn catalog() -> Vec<(String, Vec<(String, String)>)> {
    let catalog = Catalog::parse(Path::new("datasets.toml"), DATASETS).unwrap();
    catalog
        .datasets
        .iter()
        .map(|d| {
            (
                d.name().to_string(),
                d.fields
                    .iter()
                    .map(|f| (f.name.get_ref().clone(), f.class.as_str().to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// Links whose member is a leaf (a habilitation, a dataset) or a parent somewhere in the
/// kept links: a profile or group nobody declares would be refused as unknown.
fn keep_declared(links: Vec<(String, String)>, leaves: &[String]) -> Vec<(String, String)> {
    let mut links = links;
    loop {
        let parents: BTreeSet<String> = links.iter().map(|(_, p)| p.clone()).collect();
        let before = links.len();
        links.retain(|(m, _)| leaves.contains(m) || parents.contains(m));
        if links.len() == before {
            return links;
        }
    }
}

/// A generated policy written down.
struct Written {
    text: String,
    /// (subject, dataset, target, act, effect, treatment) per rule, for the reference.
    rules: Vec<[String; 6]>,
    profiles: Vec<(String, String)>,
    groups: Vec<(String, String)>,
}

fn write_policy(policy: &GenPolicy, cat: &[(String, Vec<(String, String)>)]) -> Written {
    let mut text = String::new();
    let member_name = |m: usize| {
        if m < HABILITATIONS.len() {
            HABILITATIONS[m].to_string()
        } else {
            PROFILES[m - HABILITATIONS.len()].to_string()
        }
    };
    let habilitations: Vec<String> = HABILITATIONS.iter().map(|h| h.to_string()).collect();
    let profiles = keep_declared(
        policy
            .profile_links
            .iter()
            .map(|&(m, p)| (member_name(m), PROFILES[p].to_string()))
            .collect(),
        &habilitations,
    );
    let dataset_names: Vec<String> = cat.iter().map(|(d, _)| d.clone()).collect();
    let groups = keep_declared(group_links(cat, &policy.group_links), &dataset_names);
    for (member, profile) in &profiles {
        writeln!(text, "g, {member}, {profile}").unwrap();
    }
    for (member, group) in &groups {
        writeln!(text, "g2, {member}, {group}").unwrap();
    }
    let profiles_used: BTreeSet<&String> = profiles.iter().map(|(_, p)| p).collect();
    let groups_used: BTreeSet<&String> = groups.iter().map(|(_, g)| g).collect();
    // Subjects: *, the habilitations, the profiles some line declares.
    let mut subjects = vec!["*".to_string()];
    subjects.extend(HABILITATIONS.iter().map(|h| h.to_string()));
    subjects.extend(profiles_used.iter().map(|p| p.to_string()));
    // Datasets: *, each dataset, the groups some line declares, the patterns.
    let mut selectors = vec!["*".to_string()];
    selectors.extend(cat.iter().map(|(d, _)| d.clone()));
    selectors.extend(groups_used.iter().map(|g| g.to_string()));
    selectors.extend(PATTERNS.iter().map(|p| p.to_string()));
    let targets = [
        "*",
        "@direct_identifier",
        "@quasi_identifier",
        "@public",
        "@tax_secret",
        "nir",
        "region",
        "commune",
    ];
    let mut rules = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &policy.rules {
        let subject = subjects[r.subject % subjects.len()].clone();
        let dataset = selectors[r.dataset % selectors.len()].clone();
        let act = ACTS[r.act % ACTS.len()];
        let target = if act == "read" {
            targets[r.target % targets.len()]
        } else {
            "*"
        };
        // A column needs a named dataset, group or pattern that has it somewhere.
        if !target.starts_with('@') && target != "*" {
            if dataset == "*" {
                continue;
            }
            let covered = covered(&dataset, cat, &groups);
            if !covered.iter().any(|d| {
                cat.iter()
                    .any(|(n, cols)| n == d && cols.iter().any(|(c, _)| c == target))
            }) {
                continue;
            }
        }
        let effect = if r.deny { "deny" } else { "allow" };
        // One treatment per scope, so that no two allows contradict each other.
        let treatment = if act != "read" || r.deny {
            "-".to_string()
        } else {
            let scope = format!("{subject}|{dataset}|{target}");
            let k = scope.bytes().map(usize::from).sum::<usize>();
            ["clear", "redact", "hide"][k % 3].to_string()
        };
        if !seen.insert((
            subject.clone(),
            dataset.clone(),
            target.to_string(),
            act,
            effect,
        )) {
            continue;
        }
        writeln!(
            text,
            "p, {subject}, {dataset}, {target}, {act}, {effect}, {treatment}"
        )
        .unwrap();
        rules.push([
            subject,
            dataset,
            target.to_string(),
            act.to_string(),
            effect.to_string(),
            treatment,
        ]);
    }
    Written {
        text,
        rules,
        profiles,
        groups,
    }
}

/// Group names a dataset (or group) belongs to, with their distance; by hand, breadth first.
fn ancestors(name: &str, links: &[(String, String)]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut queue = VecDeque::from([(name.to_string(), 0)]);
    while let Some((at, depth)) = queue.pop_front() {
        for (member, parent) in links {
            if *member == at && !out.contains_key(parent) {
                out.insert(parent.clone(), depth + 1);
                queue.push_back((parent.clone(), depth + 1));
            }
        }
    }
    out
}

fn group_links(
    cat: &[(String, Vec<(String, String)>)],
    links: &[(usize, usize)],
) -> Vec<(String, String)> {
    links
        .iter()
        .map(|&(m, g)| {
            let member = if m < cat.len() {
                cat[m].0.clone()
            } else {
                GROUPS[m - cat.len()].to_string()
            };
            (member, GROUPS[g].to_string())
        })
        .collect()
}

fn covered(
    selector: &str,
    cat: &[(String, Vec<(String, String)>)],
    links: &[(String, String)],
) -> Vec<String> {
    cat.iter()
        .map(|(d, _)| d.clone())
        .filter(|d| dataset_matches(selector, d, links))
        .collect()
}

fn dataset_matches(selector: &str, dataset: &str, groups: &[(String, String)]) -> bool {
    selector == "*"
        || selector == dataset
        || selector
            .strip_suffix('*')
            .is_some_and(|prefix| dataset.starts_with(prefix))
        || ancestors(dataset, groups).contains_key(selector)
}

/// The reference decision: (allowed, treatment label when read is allowed).
#[allow(
    clippy::too_many_arguments,
    reason = "the request fields of the model, one by one"
)]
fn reference(
    rules: &[[String; 6]],
    profiles: &[(String, String)],
    groups: &[(String, String)],
    habilitation: &str,
    dataset: &str,
    column: &str,
    class: &str,
    act: &str,
) -> (bool, &'static str) {
    let inherited = ancestors(habilitation, profiles);
    let subject_level = |s: &str| -> Option<usize> {
        if s == "*" {
            Some(0)
        } else if s == habilitation {
            Some(100)
        } else {
            inherited.get(s).map(|d| 100 - d)
        }
    };
    let matching: Vec<&[String; 6]> = rules
        .iter()
        .filter(|r| subject_level(&r[0]).is_some())
        .filter(|r| dataset_matches(&r[1], dataset, groups))
        .filter(|r| r[2] == "*" || r[2] == column || r[2] == format!("@{class}"))
        .filter(|r| r[3] == act)
        .collect();
    let allowed =
        matching.iter().any(|r| r[4] == "allow") && !matching.iter().any(|r| r[4] == "deny");
    if !allowed {
        return (false, "hidden");
    }
    let best = matching
        .iter()
        .max_by_key(|r| {
            let target = if r[2] == "*" {
                0
            } else if r[2].starts_with('@') {
                1
            } else {
                2
            };
            let dataset_level = if r[1] == dataset {
                3
            } else if r[1] == "*" {
                0
            } else if r[1].ends_with('*') {
                1
            } else {
                2
            };
            let protection = match r[5].as_str() {
                "hide" => 2,
                "redact" => 1,
                _ => 0,
            };
            (
                target,
                subject_level(&r[0]).unwrap_or(0),
                dataset_level,
                protection,
            )
        })
        .unwrap();
    let label = match best[5].as_str() {
        "hide" => "hidden",
        "redact" => "redacted",
        _ => "clear",
    };
    (true, label)
}

fn policy_strategy() -> impl Strategy<Value = GenPolicy> {
    let datasets = 4usize;
    let profile_link = (0..HABILITATIONS.len() + PROFILES.len(), 0..PROFILES.len())
        .prop_filter_map(
            "a profile inherits from a later one only",
            |(member, profile)| {
                let ok = member < HABILITATIONS.len() || member - HABILITATIONS.len() < profile;
                ok.then_some((member, profile))
            },
        );
    let group_link = (0..datasets + GROUPS.len(), 0..GROUPS.len()).prop_filter_map(
        "a group belongs to a later one only",
        move |(member, group)| {
            let ok = member < datasets || member - datasets < group;
            ok.then_some((member, group))
        },
    );
    let rule = (
        0..16usize,
        0..16usize,
        0..8usize,
        0..3usize,
        proptest::bool::weighted(0.25),
    )
        .prop_map(|(subject, dataset, target, act, deny)| GenRule {
            subject,
            dataset,
            target,
            act,
            deny,
        });
    (
        proptest::collection::vec(profile_link, 0..6),
        proptest::collection::vec(group_link, 0..5),
        proptest::collection::vec(rule, 1..30),
    )
        .prop_map(|(profile_links, group_links, rules)| GenPolicy {
            profile_links,
            group_links,
            rules,
        })
}

fn cases() -> u32 {
    std::env::var("PASSERELLE_POLICY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Casbin's decisions through passerelle equal the reference evaluator's, for every
    /// habilitation, dataset, column and act of a random policy.
    #[test]
    fn random_policies_decide_like_the_reference_evaluator(policy in policy_strategy()) {
        let cat = catalog();
        let Written { text: rules_text, rules, profiles, groups } = write_policy(&policy, &cat);
        let texts = PolicyTexts {
            model: MODEL.into(),
            rules: rules_text.clone(),
            habilitations: habilitations_toml(),
            datasets: DATASETS.into(),
            tables: String::new(),
        };
        let set = match PolicySet::from_texts(Path::new("policies"), texts) {
            Ok(set) => set,
            Err(problems) => panic!("generated policy refused:\n{rules_text}\n{problems:#?}"),
        };
        for h in &set.habilitations.list {
            for d in set.evaluate(h, None) {
                for (act, ours) in [("query", d.query_allowed()), ("aggregate", d.aggregates_allowed())] {
                    let (theirs, _) = reference(&rules, &profiles, &groups, &h.id, d.name(), "*", "*", act);
                    prop_assert_eq!(ours, theirs, "{} {} {}\n{}", h.id, d.name(), act, rules_text);
                }
                let columns = &cat.iter().find(|(n, _)| n == d.name()).unwrap().1;
                for c in d.columns() {
                    let class = &columns.iter().find(|(n, _)| n == c.name()).unwrap().1;
                    let (_, label) = reference(&rules, &profiles, &groups, &h.id, d.name(), c.name(), class, "read");
                    prop_assert_eq!(c.treatment().label(), label, "{} {}.{}\n{}", h.id, d.name(), c.name(), rules_text);
                }
            }
        }
    }
}
