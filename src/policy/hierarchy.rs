//! Inheritance lines of `policy.csv`: `g, habilitation, profile` (a habilitation inherits a
//! profile's rules) and `g2, dataset, group` (a dataset belongs to a group), as graphs.
//!
//! Owns: the graph of one kind of line, its validation (cycles, depth), the ancestors of a
//! name with their distance, and the chain of lines from a name to an ancestor (what explain
//! shows). Casbin's role manager decides whether a rule applies; this module only says how
//! far and through which lines, and refuses graphs Casbin would walk differently (a cycle,
//! or more levels than its role manager follows).
//!
//! Must never: decide access.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use serde::Serialize;

use super::source::Problem;

/// Levels of inheritance allowed (Casbin's default role manager follows 10).
pub const MAX_DEPTH: usize = 8;

/// One `g` or `g2` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// 1-based line in policy.csv.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// The habilitation (or profile) that inherits; the dataset (or group) that belongs.
    pub member: String,
    /// The profile inherited; the group belonged to.
    pub parent: String,
}

/// The chain through which an inherited rule applies, for explain and `/v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Via {
    /// `g` (profiles) or `g2` (dataset groups).
    pub relation: &'static str,
    /// From the habilitation (or dataset) to the profile (or group) the rule names.
    pub names: Vec<String>,
    /// The policy.csv lines of each step.
    pub lines: Vec<usize>,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self
            .lines
            .iter()
            .map(|l| format!("policy.csv:{l}"))
            .collect();
        write!(
            f,
            "via {} {} ({})",
            self.relation,
            self.names.join(" → "),
            lines.join(", ")
        )
    }
}

/// The graph of one kind of inheritance line.
#[derive(Debug, Clone, Default)]
pub struct Hierarchy {
    relation: &'static str,
    links: Vec<Link>,
    /// member → indices of its links, in file order.
    parents: HashMap<String, Vec<usize>>,
}

impl Hierarchy {
    pub fn new(relation: &'static str, links: Vec<Link>) -> Hierarchy {
        let mut parents: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, link) in links.iter().enumerate() {
            parents.entry(link.member.clone()).or_default().push(i);
        }
        Hierarchy {
            relation,
            links,
            parents,
        }
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Names that something inherits from (profiles, groups).
    pub fn is_parent(&self, name: &str) -> bool {
        self.links.iter().any(|l| l.parent == name)
    }

    /// Every ancestor of `name` with its distance (1 for a direct parent), nearest first.
    pub fn ancestors(&self, name: &str) -> Vec<(String, usize)> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([(name.to_string(), 0usize)]);
        let mut out = Vec::new();
        while let Some((current, depth)) = queue.pop_front() {
            for &i in self.parents.get(&current).into_iter().flatten() {
                let parent = &self.links[i].parent;
                if parent != name && !seen.contains_key(parent) {
                    seen.insert(parent.clone(), depth + 1);
                    out.push((parent.clone(), depth + 1));
                    queue.push_back((parent.clone(), depth + 1));
                }
            }
        }
        out
    }

    /// `name` and every ancestor of it.
    pub fn lineage(&self, name: &str) -> Vec<String> {
        let mut lineage = vec![name.to_string()];
        lineage.extend(self.ancestors(name).into_iter().map(|(a, _)| a));
        lineage
    }

    /// The shortest chain of lines from `member` to its ancestor `ancestor`.
    pub fn chain(&self, member: &str, ancestor: &str) -> Option<Via> {
        let mut came_from: HashMap<String, usize> = HashMap::new();
        let mut queue = VecDeque::from([member.to_string()]);
        while let Some(current) = queue.pop_front() {
            if current == ancestor {
                let mut lines = Vec::new();
                let mut names = vec![current.clone()];
                let mut at = current;
                while let Some(&i) = came_from.get(&at) {
                    let link = &self.links[i];
                    lines.push(link.line);
                    names.push(link.member.clone());
                    at = link.member.clone();
                    if at == member {
                        break;
                    }
                }
                names.reverse();
                lines.reverse();
                return Some(Via {
                    relation: self.relation,
                    names,
                    lines,
                });
            }
            for &i in self.parents.get(&current).into_iter().flatten() {
                let parent = &self.links[i].parent;
                if parent != member && !came_from.contains_key(parent) {
                    came_from.insert(parent.clone(), i);
                    queue.push_back(parent.clone());
                }
            }
        }
        None
    }

    /// Cycles and chains longer than `MAX_DEPTH`, each at the line that closes or passes it.
    pub fn problems(&self, file: &Path) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut reported_cycle = false;
        for link in &self.links {
            if !reported_cycle && self.chain(&link.parent, &link.member).is_some() {
                reported_cycle = true;
                let back = self.chain(&link.parent, &link.member).unwrap_or(Via {
                    relation: self.relation,
                    names: Vec::new(),
                    lines: Vec::new(),
                });
                problems.push(Problem::new(
                    file,
                    Some(link.line),
                    format!(
                        "`{}` lines make a cycle: {} → {} (an inheritance must end somewhere)",
                        self.relation,
                        link.member,
                        back.names.join(" → ")
                    ),
                ));
            }
        }
        if reported_cycle {
            return problems;
        }
        for link in &self.links {
            let deepest = self
                .ancestors(&link.member)
                .into_iter()
                .map(|(_, d)| d)
                .max()
                .unwrap_or(0);
            if deepest > MAX_DEPTH {
                problems.push(Problem::new(
                    file,
                    Some(link.line),
                    format!(
                        "`{}` chain from `{}` is {deepest} levels deep: at most {MAX_DEPTH}",
                        self.relation, link.member
                    ),
                ));
                break;
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(line: usize, member: &str, parent: &str) -> Link {
        Link {
            line,
            text: format!("g, {member}, {parent}"),
            member: member.into(),
            parent: parent.into(),
        }
    }

    #[test]
    fn ancestors_chains_and_cycles() {
        let h = Hierarchy::new(
            "g",
            vec![link(1, "a", "p1"), link(2, "p1", "p2"), link(3, "a", "p3")],
        );
        assert_eq!(
            h.ancestors("a"),
            vec![("p1".into(), 1), ("p3".into(), 1), ("p2".into(), 2)]
        );
        let via = h.chain("a", "p2").unwrap();
        assert_eq!(via.names, vec!["a", "p1", "p2"]);
        assert_eq!(via.lines, vec![1, 2]);
        assert_eq!(
            via.to_string(),
            "via g a → p1 → p2 (policy.csv:1, policy.csv:2)"
        );
        assert!(h.problems(Path::new("policy.csv")).is_empty());

        let cyclic = Hierarchy::new("g", vec![link(1, "a", "b"), link(2, "b", "a")]);
        let problems = cyclic.problems(Path::new("policy.csv"));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("cycle"), "{problems:?}");

        let deep: Vec<Link> = (0..=MAX_DEPTH)
            .map(|i| link(i + 1, &format!("n{i}"), &format!("n{}", i + 1)))
            .collect();
        assert_eq!(Hierarchy::new("g", deep).problems(Path::new("p")).len(), 1);
    }
}
