//! Access rules (`policy.csv`, standard Casbin policy lines under `model.conf`), parsed with
//! their line numbers so that every decision can name the rule that made it.

use std::path::Path;

use serde::Serialize;

use super::catalog::{Catalog, ColumnClass, FieldType};
use super::filter::FilterExpr;
use super::habilitation::Habilitations;
use super::source::Problem;
use super::treatment::TreatmentSpec;

/// The model passerelle evaluates; `model.conf` must say exactly this (comments and spacing
/// aside), so that Casbin's own tools give the same answers as the gateway.
pub const SUPPORTED_MODEL: &str = r#"[request_definition]
r = hab, dataset, column, class, act
[policy_definition]
p = hab, dataset, target, act, eft, param
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = (p.hab == r.hab || p.hab == "*") && (p.dataset == r.dataset || p.dataset == "*") && (p.target == r.column || p.target == r.class || p.target == "*") && p.act == r.act"#;

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

/// One policy line.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// 1-based line in policy.csv.
    pub line: usize,
    /// The line as written (for explain and audit).
    pub text: String,
    /// `None` for `*`.
    pub habilitation: Option<String>,
    /// `None` for `*`.
    pub dataset: Option<String>,
    pub target: Target,
    pub act: Act,
    pub effect: Effect,
    pub param: Param,
    /// The parameter as written (filter source, treatment name).
    pub param_text: String,
}

impl Rule {
    pub fn applies_to(&self, habilitation: &str, dataset: &str) -> bool {
        self.habilitation
            .as_deref()
            .is_none_or(|h| h == habilitation)
            && self.dataset.as_deref().is_none_or(|d| d == dataset)
    }
}

/// Checks `model.conf` against the supported model.
pub fn check_model(file: &Path, text: &str) -> Vec<Problem> {
    if normalise_model(text) == normalise_model(SUPPORTED_MODEL) {
        Vec::new()
    } else {
        vec![Problem::new(
            file,
            None,
            "this is not passerelle's access model: keep model.conf as shipped (see docs/policies.md); rules go in policy.csv",
        )]
    }
}

fn normalise_model(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect::<String>())
        .collect()
}

/// Parses every line of policy.csv and checks it against the catalog and habilitations.
pub fn parse_rules(
    file: &Path,
    text: &str,
    catalog: &Catalog,
    habilitations: &Habilitations,
) -> Result<Vec<Rule>, Vec<Problem>> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(trimmed, catalog, habilitations) {
            Ok(rule) => rules.push(Rule {
                line,
                text: trimmed.to_string(),
                ..rule
            }),
            Err(message) => problems.push(Problem::new(file, Some(line), message)),
        }
    }
    problems.extend(contradictions(file, &rules));
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
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

fn parse_line(
    line: &str,
    catalog: &Catalog,
    habilitations: &Habilitations,
) -> Result<Rule, String> {
    let f = fields(line)?;
    if f.first().map(String::as_str) != Some("p") {
        return Err("policy lines start with `p` (passerelle's model has no role lines)".into());
    }
    if f.len() != 7 {
        return Err(format!(
            "expected 7 fields `p, habilitation, dataset, target, act, effect, param`, found {}",
            f.len()
        ));
    }
    let habilitation = match f[1].as_str() {
        "*" => None,
        id if habilitations.get(id).is_some() => Some(id.to_string()),
        id => {
            return Err(format!(
                "unknown habilitation `{id}` (see habilitations.toml)"
            ));
        }
    };
    let dataset = match f[2].as_str() {
        "*" => None,
        name if catalog.dataset(name).is_some() => Some(name.to_string()),
        name => return Err(format!("unknown dataset `{name}` (see datasets.toml)")),
    };
    let act = Act::parse(&f[4]).ok_or_else(|| {
        format!(
            "unknown act `{}` (query, lookup, aggregate, read, filter)",
            f[4]
        )
    })?;
    let target = match f[3].as_str() {
        "*" => Target::All,
        class if class.starts_with('@') => Target::Class(parse_class(&class[1..])?),
        column => {
            let Some(name) = &dataset else {
                return Err(format!("column `{column}` needs a named dataset, not `*`"));
            };
            let known = catalog
                .dataset(name)
                .is_some_and(|d| d.field(column).is_some());
            if !known {
                return Err(format!("unknown column `{column}` in dataset `{name}`"));
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
            check_treatment_fits(&spec, dataset.as_deref(), &target, catalog)?;
            Param::Treatment(spec)
        }
        (Act::Lookup, Effect::Allow) => {
            let Some(name) = &dataset else {
                return Err("a lookup rule needs a named dataset".into());
            };
            if catalog
                .dataset(name)
                .and_then(|d| d.field(&param_text))
                .is_none()
            {
                return Err(format!(
                    "lookup key `{param_text}` is not a column of `{name}`"
                ));
            }
            Param::KeyColumn(param_text.clone())
        }
        (Act::Filter, Effect::Allow) => {
            let Some(name) = &dataset else {
                return Err("a filter needs a named dataset".into());
            };
            let columns: Vec<&str> = catalog
                .dataset(name)
                .map(|d| d.fields.iter().map(|f| f.name.get_ref().as_str()).collect())
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
        target,
        act,
        effect,
        param,
        param_text,
    })
}

fn parse_class(name: &str) -> Result<ColumnClass, String> {
    toml::Value::String(name.to_string())
        .try_into::<ColumnClass>()
        .map_err(|_| format!("unknown class `@{name}` (direct_identifier, quasi_identifier, medical_secret, tax_secret, business_secret, public)"))
}

/// A treatment must fit every column its rule can select (e.g. `year` only on dates).
fn check_treatment_fits(
    spec: &TreatmentSpec,
    dataset: Option<&str>,
    target: &Target,
    catalog: &Catalog,
) -> Result<(), String> {
    let datasets: Vec<_> = match dataset {
        Some(name) => catalog.dataset(name).into_iter().collect(),
        None => catalog.datasets.iter().collect(),
    };
    for d in datasets {
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
type ScopeKey<'a> = (&'a Option<String>, &'a Option<String>, &'a Target, Act);

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

    #[test]
    fn the_shipped_model_is_the_supported_one() {
        let shipped = include_str!("../../policies/model.conf");
        assert!(check_model(Path::new("model.conf"), shipped).is_empty());
        let changed = shipped.replace("!some(where (p.eft == deny))", "true");
        assert_eq!(check_model(Path::new("model.conf"), &changed).len(), 1);
    }
}
