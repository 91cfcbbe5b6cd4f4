//! Habilitations (`habilitations.toml`), modelled on DataPass: the legal permission of one
//! organisation for one use, who holds it, and until when.

use std::collections::HashSet;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::source::{Problem, line_of};
use crate::identity::Principal;

/// What a habilitation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HabilitationKind {
    Research,
    Administration,
    Statistics,
}

/// DataPass states: `active`, `obsolete` (replaced by another), `revoked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HabilitationState {
    Active,
    Obsolete,
    Revoked,
}

/// Legal framework: nature (e.g. `CRPA L114-8`) and a reference (URL of the text).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalBasis {
    pub nature: String,
    #[serde(default)]
    pub reference: String,
}

/// Who holds a habilitation: every kind listed must match; inside a kind, any value. With
/// `issuer`, only principals of that trusted issuer (its `[[identity.issuers]] name`); it must
/// be named when several trusted issuers could satisfy the rest (see
/// [`super::PolicySet::issuer_problems`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

impl Members {
    /// Who the rule admits, in words (for the dry run's "who is concerned").
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, values) in [
            ("groups", &self.groups),
            ("organisations", &self.organisations),
            ("roles", &self.roles),
            ("subjects", &self.subjects),
        ] {
            if !values.is_empty() {
                parts.push(format!("{name} {}", values.join(", ")));
            }
        }
        let mut text = parts.join("; ");
        if let Some(issuer) = &self.issuer {
            text.push_str(&format!(" (issuer {issuer})"));
        }
        text
    }

    fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.organisations.is_empty()
            && self.roles.is_empty()
            && self.subjects.is_empty()
    }

    /// True when `principal` satisfies every listed kind. A kind whose claim the principal
    /// lacks does not match (a missing claim never defaults).
    pub fn admit(&self, principal: &Principal) -> bool {
        // SECURITY: no criterion at all admits nobody (validation refuses it, too).
        if self.is_empty() {
            return false;
        }
        // SECURITY: a rule bound to an issuer admits that issuer's principals only.
        if !from_issuer(self.issuer.as_deref(), principal) {
            return false;
        }
        let any = |wanted: &[String], held: &[String]| {
            wanted.is_empty() || wanted.iter().any(|w| held.iter().any(|h| h == w))
        };
        let organisation_ok = self.organisations.is_empty()
            || principal
                .organisation_siret
                .as_ref()
                .is_some_and(|s| self.organisations.contains(s));
        let subject_ok = self.subjects.is_empty() || self.subjects.contains(&principal.subject);
        any(&self.groups, &principal.groups)
            && any(&self.roles, &principal.roles)
            && organisation_ok
            && subject_ok
    }
}

/// Whether `principal` comes from the issuer a rule names (any, when it names none).
fn from_issuer(named: Option<&str>, principal: &Principal) -> bool {
    named.is_none_or(|issuer| issuer == principal.issuer_name)
}

/// A trusted issuer as policies see it: its name and the attributes it may assert
/// (`[[identity.issuers]] name` and `claims`; the hub builds these from its configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    pub name: String,
    pub attributes: Vec<String>,
}

impl TrustedIssuer {
    fn asserts_all(&self, attributes: &[&str]) -> bool {
        attributes
            .iter()
            .all(|a| self.attributes.iter().any(|t| t == a))
    }
}

/// The principal attributes a member rule relies on (the subject is every issuer's own).
fn attributes_used(groups: bool, organisations: bool, roles: bool) -> Vec<&'static str> {
    [
        (groups, "groups"),
        (organisations, "organisation"),
        (roles, "roles"),
    ]
    .into_iter()
    .filter_map(|(used, name)| used.then_some(name))
    .collect()
}

/// The problem with one member rule (`what`, e.g. ``habilitation `x` ``) under `issuers`:
/// naming an issuer that is not trusted, or not for what the rule uses; or naming none while
/// several trusted issuers could satisfy it.
pub(super) fn issuer_problem(
    what: &str,
    named: Option<&str>,
    used: &[&str],
    issuers: &[TrustedIssuer],
) -> Option<String> {
    let names = |issuers: &mut dyn Iterator<Item = &TrustedIssuer>| {
        issuers
            .map(|i| format!("`{}`", i.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(name) => match issuers.iter().find(|i| i.name == name) {
            None => Some(format!(
                "{what}: issuer `{name}` is not a trusted issuer (trusted: {})",
                names(&mut issuers.iter())
            )),
            Some(issuer) if !issuer.asserts_all(used) => Some(format!(
                "{what}: issuer `{name}` is not trusted to assert {} (its `claims`): the rule could never match",
                used.join(", ")
            )),
            Some(_) => None,
        },
        None => {
            let able = || issuers.iter().filter(|i| i.asserts_all(used));
            (able().count() > 1).then(|| {
                format!(
                    "{what}: several trusted issuers could satisfy this rule ({}): name one with `issuer = \"…\"` (a principal of one issuer must never pass for another's)",
                    names(&mut able())
                )
            })
        }
    }
}

impl Members {
    /// The attributes this rule relies on.
    pub(super) fn attributes_used(&self) -> Vec<&'static str> {
        attributes_used(
            !self.groups.is_empty(),
            !self.organisations.is_empty(),
            !self.roles.is_empty(),
        )
    }
}

impl Operators {
    /// The attributes this section relies on.
    pub(super) fn attributes_used(&self) -> Vec<&'static str> {
        attributes_used(
            false,
            !self.organisations.is_empty(),
            !self.roles.is_empty(),
        )
    }
}

/// Contacts of a habilitation (DataPass: controller, DPO, technical, business).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technical: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHabilitation {
    id: Spanned<String>,
    title: String,
    kind: HabilitationKind,
    #[serde(default)]
    purpose: String,
    legal_basis: Option<LegalBasis>,
    #[serde(default)]
    organisations: Vec<String>,
    #[serde(default)]
    members: Members,
    start: Option<toml::value::Datetime>,
    end: Option<toml::value::Datetime>,
    state: HabilitationState,
    pseudonymisation_domain: Option<String>,
    retention_months: Option<u32>,
    #[serde(default)]
    retention_justification: Option<String>,
    #[serde(default)]
    contacts: Contacts,
    #[serde(default)]
    expected_volume_per_minute: Option<u32>,
    #[serde(default)]
    require_certificate_bound_token: bool,
}

/// One habilitation, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Habilitation {
    pub id: String,
    pub title: String,
    pub kind: HabilitationKind,
    pub purpose: String,
    pub legal_basis: LegalBasis,
    pub organisations: Vec<String>,
    pub members: Members,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub state: HabilitationState,
    pub pseudonymisation_domain: String,
    pub retention_months: u32,
    pub contacts: Contacts,
    pub expected_volume_per_minute: Option<u32>,
    /// The token must be bound to the TLS client certificate (RFC 8705).
    pub require_certificate_bound_token: bool,
    /// Line of the `id` in habilitations.toml, for reasons and problems.
    #[serde(skip)]
    pub line: usize,
}

/// Whether a habilitation can be used today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    Active,
    Expired,
    NotStarted,
    Revoked,
    Obsolete,
}

impl Habilitation {
    /// Validity on `today`: the end date is the last valid day.
    pub fn validity(&self, today: NaiveDate) -> Validity {
        match self.state {
            HabilitationState::Revoked => Validity::Revoked,
            HabilitationState::Obsolete => Validity::Obsolete,
            HabilitationState::Active if today < self.start => Validity::NotStarted,
            HabilitationState::Active if today > self.end => Validity::Expired,
            HabilitationState::Active => Validity::Active,
        }
    }

    /// Days until the end date (negative once ended).
    pub fn days_left(&self, today: NaiveDate) -> i64 {
        (self.end - today).num_days()
    }
}

/// Who operates the hub: `/v1/admin` only, never data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operators {
    /// The trusted issuer whose principals may operate (its name), when several are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub organisations: Vec<String>,
}

impl Operators {
    /// An operator holds one of the roles AND (when organisations are listed) belongs to one.
    pub fn admit(&self, principal: &Principal) -> bool {
        // SECURITY: an empty operators section admits nobody; a named issuer binds the role.
        !self.roles.is_empty()
            && from_issuer(self.issuer.as_deref(), principal)
            && principal.roles.iter().any(|r| self.roles.contains(r))
            && (self.organisations.is_empty()
                || principal
                    .organisation_siret
                    .as_ref()
                    .is_some_and(|s| self.organisations.contains(s)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HabilitationsFile {
    #[serde(default)]
    operators: Operators,
    #[serde(default)]
    habilitations: Vec<RawHabilitation>,
}

/// All habilitations and the operators section.
#[derive(Debug, Clone, Default)]
pub struct Habilitations {
    pub operators: Operators,
    pub list: Vec<Habilitation>,
}

impl Habilitations {
    pub fn get(&self, id: &str) -> Option<&Habilitation> {
        self.list.iter().find(|h| h.id == id)
    }

    /// Parses and validates `text` (from `file`); every problem is reported.
    pub fn parse(file: &Path, text: &str) -> Result<Habilitations, Vec<Problem>> {
        let parsed: HabilitationsFile = toml::from_str(text).map_err(|e| {
            vec![Problem::new(
                file,
                e.span().map(|s| line_of(text, s.start)),
                e.message().to_string(),
            )]
        })?;
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        for raw in parsed.habilitations {
            let line = line_of(text, raw.id.span().start);
            let id = raw.id.get_ref().clone();
            let mut problem = |m: String| {
                problems.push(Problem::new(
                    file,
                    Some(line),
                    format!("habilitation `{id}`: {m}"),
                ))
            };
            if !is_identifier(&id) {
                problem("ids use a-z, 0-9 and `-`".into());
            }
            if !seen.insert(id.clone()) {
                problem("declared twice".into());
            }
            let legal_basis = match raw.legal_basis {
                Some(l) if !l.nature.trim().is_empty() => Some(l),
                _ => {
                    problem("a legal basis (`legal_basis.nature`) is required".into());
                    None
                }
            };
            let start = match raw.start.map(date_of) {
                Some(Some(d)) => Some(d),
                Some(None) => {
                    problem("`start` must be a date (YYYY-MM-DD)".into());
                    None
                }
                None => {
                    problem("a start date (`start`) is required".into());
                    None
                }
            };
            let end = match raw.end.map(date_of) {
                Some(Some(d)) => Some(d),
                Some(None) => {
                    problem("`end` must be a date (YYYY-MM-DD)".into());
                    None
                }
                None => {
                    problem("an end date (`end`) is required: every habilitation expires".into());
                    None
                }
            };
            if let (Some(s), Some(e)) = (start, end)
                && e < s
            {
                problem("`end` is before `start`".into());
            }
            if raw.members.is_empty() {
                problem(
                    "`members` must list at least one of groups, organisations, roles, subjects"
                        .into(),
                );
            }
            for siret in raw.members.organisations.iter().chain(&raw.organisations) {
                if !is_siret(siret) {
                    problem(format!(
                        "`{siret}` is not a valid SIRET (14 digits, Luhn key)"
                    ));
                }
            }
            let retention = raw.retention_months.unwrap_or(0);
            if raw.retention_months.is_none() {
                problem("`retention_months` is required".into());
            } else if retention > 36
                && raw
                    .retention_justification
                    .as_ref()
                    .is_none_or(|j| j.trim().is_empty())
            {
                problem("a retention over 36 months needs `retention_justification`".into());
            }
            let domain = raw.pseudonymisation_domain.unwrap_or_else(|| id.clone());
            if !is_identifier(&domain) {
                problem("`pseudonymisation_domain` uses a-z, 0-9 and `-`".into());
            }
            if let (Some(legal_basis), Some(start), Some(end)) = (legal_basis, start, end) {
                list.push(Habilitation {
                    id,
                    title: raw.title,
                    kind: raw.kind,
                    purpose: raw.purpose,
                    legal_basis,
                    organisations: raw.organisations,
                    members: raw.members,
                    start,
                    end,
                    state: raw.state,
                    pseudonymisation_domain: domain,
                    retention_months: retention,
                    contacts: raw.contacts,
                    expected_volume_per_minute: raw.expected_volume_per_minute,
                    require_certificate_bound_token: raw.require_certificate_bound_token,
                    line,
                });
            }
        }
        for siret in &parsed.operators.organisations {
            if !is_siret(siret) {
                problems.push(Problem::new(
                    file,
                    None,
                    format!("`[operators]`: `{siret}` is not a valid SIRET (14 digits, Luhn key)"),
                ));
            }
        }
        if parsed.operators.roles.is_empty() {
            problems.push(Problem::new(
                file,
                None,
                "`[operators]` must list at least one role (no operator could use /v1/admin)",
            ));
        }
        if problems.is_empty() {
            Ok(Habilitations {
                operators: parsed.operators,
                list,
            })
        } else {
            Err(problems)
        }
    }

    /// Reads and parses the file.
    pub fn load(file: &Path) -> Result<Habilitations, Vec<Problem>> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            vec![Problem::new(
                file,
                None,
                format!("cannot read: {}", e.kind()),
            )]
        })?;
        Self::parse(file, &text)
    }
}

fn date_of(value: toml::value::Datetime) -> Option<NaiveDate> {
    match (value.date, value.time) {
        (Some(d), None) => {
            NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        }
        _ => None,
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A SIRET: 14 digits with a valid Luhn key (La Poste's establishments, SIREN 356000000, use
/// another rule and are accepted too).
pub fn is_siret(s: &str) -> bool {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if s.starts_with("356000000") {
        return s.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() % 5 == 0;
    }
    luhn(s)
}

pub(crate) fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
