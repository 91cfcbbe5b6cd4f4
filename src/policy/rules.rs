//! Access rules (`policy.csv`, standard Casbin policy lines under `model.conf`), parsed with
//! their line numbers so that every decision can name the rule that made it.
//!
//! Owns: the syntax of `p`, `g` and `g2` lines and their validation against the model,
//! the catalog and the habilitations (unknown names, profiles, groups and patterns,
//! treatments that do not fit, contradictions), each problem at its `file:line`.
//!
//! Must never: decide access. Casbin's enforcer does (`policy::enforcer`).

use std::path::Path;

use serde::Serialize;

use super::catalog::{Catalog, ColumnClass, Dataset, DatasetKind, FieldType};
use super::filter::FilterExpr;
use super::habilitation::Habilitations;
use super::hierarchy::{Hierarchy, Link};
use super::model::ModelFeatures;
use super::source::Problem;
use super::treatment::TreatmentSpec;

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    Query,
    Lookup,
    Aggregate,
    Read,
    Filter,
}

impl Act {
    fn parse(s: &str) -> Option<Act> {
        Some(match s {
            "query" => Act::Query,
            "lookup" => Act::Lookup,
            "aggregate" => Act::Aggregate,
            "read" => Act::Read,
            "filter" => Act::Filter,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Query => "query",
            Act::Lookup => "lookup",
            Act::Aggregate => "aggregate",
            Act::Read => "read",
            Act::Filter => "filter",
        }
    }
    pub fn is_dataset_level(self) -> bool {
        !matches!(self, Act::Read)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// What the third field selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    All,
    Class(ColumnClass),
    Column(String),
}

impl Target {
    /// Higher is more specific: a column rule beats a class rule beats `*`.
    pub fn specificity(&self) -> u8 {
        match self {
            Target::All => 0,
            Target::Class(_) => 1,
            Target::Column(_) => 2,
        }
    }
    pub fn matches(&self, column: &str, class: ColumnClass) -> bool {
        match self {
            Target::All => true,
            Target::Class(c) => *c == class,
            Target::Column(c) => c == column,
        }
    }
}

/// The rule's parameter, by act.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Param {
    None,
    Treatment(TreatmentSpec),
    KeyColumn(String),
    Filter(FilterExpr),
}

/// Which datasets a rule's second field selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetSelector {
    /// `*`: every dataset.
    All,
    /// One dataset of the catalog.
    Dataset(String),
    /// A group of `g2` lines.
    Group(String),
    /// A `keyMatch` pattern: a prefix then `*` (`sante.*`).
    Pattern(String),
}

impl DatasetSelector {
    /// The field as Casbin sees it.
    pub fn as_str(&self) -> &str {
        match self {
            DatasetSelector::All => "*",
            DatasetSelector::Dataset(s)
            | DatasetSelector::Group(s)
            | DatasetSelector::Pattern(s) => s,
        }
    }

    /// The dataset it names, when it names one.
    pub fn dataset(&self) -> Option<&str> {
        match self {
            DatasetSelector::Dataset(name) => Some(name),
            _ => None,
        }
    }

    /// Higher is more specific: a dataset over a group over a pattern over `*`.
    pub fn specificity(&self) -> u8 {
        match self {
            DatasetSelector::All => 0,
            DatasetSelector::Pattern(_) => 1,
            DatasetSelector::Group(_) => 2,
            DatasetSelector::Dataset(_) => 3,
        }
    }
}

/// One policy line.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// 1-based line in policy.csv.
    pub line: usize,
    /// The line as written (for explain and audit).
    pub text: String,
    /// A habilitation or a profile; `None` for `*`.
    pub habilitation: Option<String>,
    pub dataset: DatasetSelector,
    /// The catalog's datasets the selector covers, in catalog order.
    pub covers: Vec<String>,
    pub target: Target,
    pub act: Act,
    pub effect: Effect,
    pub param: Param,
    /// The parameter as written (filter source, treatment name).
    pub param_text: String,
}

impl Rule {
    /// The six fields Casbin holds for this line (`p` left out).
    pub fn casbin_fields(&self) -> Vec<String> {
        vec![
            self.habilitation.clone().unwrap_or_else(|| "*".into()),
            self.dataset.as_str().to_string(),
            match &self.target {
                Target::All => "*".into(),
                Target::Class(c) => format!("@{}", c.as_str()),
                Target::Column(c) => c.clone(),
            },
            self.act.as_str().into(),
            match self.effect {
                Effect::Allow => "allow".into(),
                Effect::Deny => "deny".into(),
            },
            self.param_text.clone(),
        ]
    }
}

/// Everything policy.csv says: access rules (`p`), profiles (`g`) and dataset groups (`g2`).
#[derive(Debug, Clone, Default)]
pub struct PolicyLines {
    pub rules: Vec<Rule>,
    pub profiles: Hierarchy,
    pub groups: Hierarchy,
}

impl PolicyLines {
    /// The rules that can apply to a habilitation whose lineage (itself, then its profiles) is
    /// `subjects` (`None`: every rule): its own, its profiles' and the hub-wide ones, in file
    /// order.
    pub fn rules_for<'a, 's>(
        &'a self,
        subjects: Option<&'s [String]>,
    ) -> impl Iterator<Item = &'a Rule> + use<'a, 's> {
        self.rules
            .iter()
            .filter(move |r| match (&r.habilitation, subjects) {
                (None, _) | (_, None) => true,
                (Some(h), Some(s)) => s.contains(h),
            })
    }
}

/// What the rules of one file are checked against.
struct Context<'a> {
    catalog: &'a Catalog,
    habilitations: &'a Habilitations,
    features: ModelFeatures,
    profiles: &'a Hierarchy,
    groups: &'a Hierarchy,
}

/// Parses every line of policy.csv and checks it against the model, the catalog and the
/// habilitations.
pub fn parse_rules(
    file: &Path,
    text: &str,
    catalog: &Catalog,
    habilitations: &Habilitations,
    features: ModelFeatures,
) -> Result<PolicyLines, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut policy_lines = Vec::new();
    let mut profile_links = Vec::new();
    let mut group_links = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let f = match fields(trimmed) {
            Ok(f) => f,
            Err(message) => {
                problems.push(Problem::new(file, Some(line), message));
                continue;
            }
        };
        let link = |f: &[String]| Link {
            line,
            text: trimmed.to_string(),
            member: f[1].clone(),
            parent: f[2].clone(),
        };
        let kind = f[0].clone();
        match (kind.as_str(), f.len()) {
            ("p", _) => policy_lines.push((line, trimmed, f)),
            ("g", 3) if features.profiles => profile_links.push(link(&f)),
            ("g2", 3) if features.groups => group_links.push(link(&f)),
            ("g" | "g2", 3) => problems.push(Problem::new(
                file,
                Some(line),
                format!(
                    "model.conf has no `{} = _, _` role definition: keep the shipped model to use {}",
                    f[0],
                    if f[0] == "g" { "profiles" } else { "dataset groups" }
                ),
            )),
            ("g" | "g2", n) => problems.push(Problem::new(
                file,
                Some(line),
                format!("expected 3 fields `{}, member, parent`, found {n}", f[0]),
            )),
            (other, _) => problems.push(Problem::new(
                file,
                Some(line),
                format!("lines start with `p` (a rule), `g` (a profile) or `g2` (a dataset group), not `{other}`"),
            )),
        }
    }
    let profiles = Hierarchy::new("g", profile_links);
    let groups = Hierarchy::new("g2", group_links);
    problems.extend(check_profiles(file, &profiles, habilitations));
    problems.extend(check_groups(file, &groups, catalog));
    let context = Context {
        catalog,
        habilitations,
        features,
        profiles: &profiles,
        groups: &groups,
    };
    let mut rules = Vec::new();
    for (line, text, f) in policy_lines {
        match parse_line(&f, &context) {
            Ok(rule) => rules.push(Rule {
                line,
                text: text.to_string(),
                ..rule
            }),
            Err(message) => problems.push(Problem::new(file, Some(line), message)),
        }
    }
    problems.extend(contradictions(file, &rules));
    if problems.is_empty() {
        Ok(PolicyLines {
            rules,
            profiles,
            groups,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

/// `g, member, profile`: the member is a habilitation or a profile, the profile is not a
/// habilitation, neither is `*` or a pattern, and the graph has no cycle.
fn check_profiles(
    file: &Path,
    profiles: &Hierarchy,
    habilitations: &Habilitations,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for link in profiles.links() {
        let problem = if link.member.contains('*') || link.parent.contains('*') {
            Some(
                "a profile line names a habilitation and a profile, never `*` or a pattern"
                    .to_string(),
            )
        } else if habilitations.get(&link.parent).is_some() {
            Some(format!(
                "`{}` is a habilitation, not a profile: a habilitation inherits from profiles only (give the profile its own name)",
                link.parent
            ))
        } else if habilitations.get(&link.member).is_none() && !profiles.is_parent(&link.member) {
            Some(format!(
                "unknown habilitation or profile `{}` (see habilitations.toml; a profile is the last name of a `g` line)",
                link.member
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            problems.push(Problem::new(file, Some(link.line), message));
        }
    }
    problems.extend(profiles.problems(file));
    problems
}

/// `g2, member, group`: the member is a dataset or a group, the group is not a dataset,
/// neither is `*` or a pattern, and the graph has no cycle.
fn check_groups(file: &Path, groups: &Hierarchy, catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    for link in groups.links() {
        let problem = if link.member.contains('*') || link.parent.contains('*') {
            Some("a group line names a dataset and a group, never `*` or a pattern".to_string())
        } else if catalog.dataset(&link.parent).is_some() {
            Some(format!(
                "`{}` is a dataset, not a group: give the group its own name",
                link.parent
            ))
        } else if catalog.dataset(&link.member).is_none() && !groups.is_parent(&link.member) {
            Some(format!(
                "unknown dataset or group `{}` (see datasets.toml; a group is the last name of a `g2` line)",
                link.member
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            problems.push(Problem::new(file, Some(link.line), message));
        }
    }
    problems.extend(groups.problems(file));
    problems
}

/// What a rule's dataset field selects, and the catalog datasets it covers.
fn dataset_selector(
    field: &str,
    context: &Context<'_>,
) -> Result<(DatasetSelector, Vec<String>), String> {
    let catalog = context.catalog;
    if field == "*" {
        return Ok((DatasetSelector::All, catalog.names()));
    }
    if catalog.dataset(field).is_some() {
        return Ok((DatasetSelector::Dataset(field.into()), vec![field.into()]));
    }
    if context.groups.is_parent(field) {
        let covers = catalog
            .names()
            .into_iter()
            .filter(|d| context.groups.ancestors(d).iter().any(|(g, _)| g == field))
            .collect();
        return Ok((DatasetSelector::Group(field.into()), covers));
    }
    if let Some(prefix) = field.strip_suffix('*') {
        if !context.features.patterns {
            return Err(format!(
                "`{field}` is a pattern, but model.conf has no `keyMatch`: keep the shipped model to use patterns"
            ));
        }
        if prefix.contains('*') {
            return Err(format!(
                "pattern `{field}`: `*` may only end a pattern (`sante.*`)"
            ));
        }
        let covers: Vec<String> = catalog
            .names()
            .into_iter()
            .filter(|d| casbin::function_map::key_match(d, field))
            .collect();
        if covers.is_empty() {
            return Err(format!(
                "pattern `{field}` matches no dataset of datasets.toml"
            ));
        }
        return Ok((DatasetSelector::Pattern(field.into()), covers));
    }
    if field.contains('*') {
        return Err(format!(
            "pattern `{field}`: `*` may only end a pattern (`sante.*`)"
        ));
    }
    Err(format!(
        "unknown dataset or group `{field}` (see datasets.toml; a group is the last name of a `g2` line)"
    ))
}

fn parse_line(f: &[String], context: &Context<'_>) -> Result<Rule, String> {
    let catalog = context.catalog;
    if f.len() != 7 {
        return Err(format!(
            "expected 7 fields `p, habilitation, dataset, target, act, effect, param`, found {}",
            f.len()
        ));
    }
    let habilitation = match f[1].as_str() {
        "*" => None,
        id if context.habilitations.get(id).is_some() => Some(id.to_string()),
        id if context.profiles.is_parent(id) => Some(id.to_string()),
        id if id.contains('*') => {
            return Err(format!(
                "`{id}`: the habilitation field is a habilitation, a profile or `*`, never a pattern"
            ));
        }
        id => {
            return Err(format!(
                "unknown habilitation or profile `{id}` (see habilitations.toml; a profile is the last name of a `g` line)"
            ));
        }
    };
    let (dataset, covers) = dataset_selector(&f[2], context)?;
    let covered: Vec<&super::catalog::Dataset> =
        covers.iter().filter_map(|d| catalog.dataset(d)).collect();
    let act = Act::parse(&f[4]).ok_or_else(|| {
        format!(
            "unknown act `{}` (query, lookup, aggregate, read, filter)",
            f[4]
        )
    })?;
    // SECURITY: tables of the statistical secret are granted by `aggregate` only, and
    // `aggregate` grants tables only (it gave nothing on microdata and still does not).
    let named = |kind: DatasetKind| {
        matches!(&dataset, DatasetSelector::Dataset(_)) && covered.iter().all(|d| d.kind == kind)
    };
    if act == Act::Aggregate && !covered.iter().any(|d| d.kind == DatasetKind::Table) {
        return Err(format!(
            "`aggregate` grants tables of tables.toml; `{}` covers none (microdata is granted by `query` or `lookup`)",
            f[2]
        ));
    }
    if act != Act::Aggregate && named(DatasetKind::Table) {
        return Err(format!(
            "`{}` is a table of tables.toml: it is granted whole by `aggregate`, never by `{}`",
            f[2],
            act.as_str()
        ));
    }
    let target = match f[3].as_str() {
        "*" => Target::All,
        class if class.starts_with('@') => Target::Class(parse_class(&class[1..])?),
        column => {
            if dataset == DatasetSelector::All {
                return Err(format!("column `{column}` needs a named dataset, not `*`"));
            }
            // A group or pattern may cover datasets without the column: the rule applies
            // where it exists, and must exist somewhere (a typo is not a silent no-op).
            if !covered.iter().any(|d| d.field(column).is_some()) {
                return Err(match &dataset {
                    DatasetSelector::Dataset(name) => {
                        format!("unknown column `{column}` in dataset `{name}`")
                    }
                    other => format!("no dataset of `{}` has a column `{column}`", other.as_str()),
                });
            }
            Target::Column(column.to_string())
        }
    };
    if act.is_dataset_level() && target != Target::All {
        return Err(format!(
            "`{}` rules apply to a whole dataset: target must be `*`",
            act.as_str()
        ));
    }
    let effect = match f[5].as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => return Err(format!("effect must be `allow` or `deny`, found `{other}`")),
    };
    let param_text = f[6].clone();
    let param = match (act, effect) {
        (Act::Read, Effect::Allow) => {
            let spec = TreatmentSpec::parse(&param_text)?;
            check_treatment_fits(&spec, &covered, &target)?;
            Param::Treatment(spec)
        }
        (Act::Lookup, Effect::Allow) => {
            if dataset == DatasetSelector::All {
                return Err("a lookup rule needs a named dataset".into());
            }
            if let Some(d) = covered.iter().find(|d| d.field(&param_text).is_none()) {
                return Err(format!(
                    "lookup key `{param_text}` is not a column of `{}`",
                    d.name()
                ));
            }
            Param::KeyColumn(param_text.clone())
        }
        (Act::Filter, Effect::Allow) => {
            if dataset == DatasetSelector::All {
                return Err("a filter needs a named dataset".into());
            }
            // Columns every covered dataset has: a filter on a group or pattern must make
            // sense on each of them.
            let columns: Vec<&str> = covered
                .first()
                .map(|first| {
                    first
                        .fields
                        .iter()
                        .map(|f| f.name.get_ref().as_str())
                        .filter(|c| covered.iter().all(|d| d.field(c).is_some()))
                        .collect()
                })
                .unwrap_or_default();
            Param::Filter(
                FilterExpr::parse(&param_text, &columns).map_err(|e| format!("filter {e}"))?,
            )
        }
        (Act::Filter, Effect::Deny) => {
            return Err(
                "a filter rule is always `allow` (it narrows rows; deny `query` instead)".into(),
            );
        }
        _ if param_text == "-" || param_text.is_empty() => Param::None,
        _ => {
            return Err(format!(
                "this rule takes no parameter: write `-` instead of `{param_text}`"
            ));
        }
    };
    Ok(Rule {
        line: 0,
        text: String::new(),
        habilitation,
        dataset,
        covers,
        target,
        act,
        effect,
        param,
        param_text,
    })
}

/// Splits a policy line like Casbin does: comma-separated, spaces around fields ignored, a
/// field may be double-quoted (to hold commas; `""` is a quote inside).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek().is_some_and(|c| *c != ',') {
                return Err("text after a quoted field".into());
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("a quote inside an unquoted field".into());
                }
                field.push(c);
                chars.next();
            }
            field = field.trim_end().to_string();
        }
        out.push(field);
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    Ok(out)
}

fn parse_class(name: &str) -> Result<ColumnClass, String> {
    toml::Value::String(name.to_string())
        .try_into::<ColumnClass>()
        .map_err(|_| format!("unknown class `@{name}` (direct_identifier, quasi_identifier, medical_secret, tax_secret, business_secret, public)"))
}

/// A treatment must fit every column its rule can select (e.g. `year` only on dates).
fn check_treatment_fits(
    spec: &TreatmentSpec,
    covered: &[&Dataset],
    target: &Target,
) -> Result<(), String> {
    for d in covered {
        for field in &d.fields {
            if target.matches(field.name.get_ref(), field.class) && !spec.fits(field.field_type) {
                return Err(format!(
                    "treatment `{}` does not fit column `{}.{}` ({})",
                    spec.name(),
                    d.name(),
                    field.name.get_ref(),
                    type_name(field.field_type)
                ));
            }
        }
    }
    Ok(())
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::Date => "date",
        FieldType::Boolean => "boolean",
    }
}

/// (habilitation, dataset, target, act): rules with the same scope.
type ScopeKey<'a> = (&'a Option<String>, &'a DatasetSelector, &'a Target, Act);

/// Two `allow` rules with the same habilitation, dataset and target but different treatments
/// (or lookup keys) contradict each other: the operator must say which one holds.
fn contradictions(file: &Path, rules: &[Rule]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut first: std::collections::HashMap<ScopeKey<'_>, &Rule> =
        std::collections::HashMap::new();
    for rule in rules.iter().filter(|r| r.effect == Effect::Allow) {
        let key = (&rule.habilitation, &rule.dataset, &rule.target, rule.act);
        match first.get(&key) {
            None => {
                first.insert(key, rule);
            }
            Some(earlier) => {
                let differ = match (&earlier.param, &rule.param) {
                    (Param::Treatment(x), Param::Treatment(y)) => x != y,
                    (Param::KeyColumn(x), Param::KeyColumn(y)) => x != y,
                    _ => false,
                };
                if differ {
                    problems.push(Problem::new(
                        file,
                        Some(rule.line),
                        format!(
                            "contradicts line {}: same habilitation, dataset and target, but `{}` instead of `{}`",
                            earlier.line, rule.param_text, earlier.param_text
                        ),
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_like_casbin() {
        assert_eq!(
            fields(r#"p, a, b, *, filter, allow, "region IN ('84', '93')""#).unwrap(),
            vec![
                "p",
                "a",
                "b",
                "*",
                "filter",
                "allow",
                "region IN ('84', '93')"
            ]
        );
        assert_eq!(
            fields(r#"p, "say ""hi""""#).unwrap(),
            vec!["p", r#"say "hi""#]
        );
        assert!(fields(r#"p, "open"#).is_err());
        assert!(fields(r#"p, a"b"#).is_err());
    }
}
