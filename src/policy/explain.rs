//! "Who can see this column, and why": per habilitation, per dataset and column, the
//! treatment and the policy lines that decided it. Shared by `passerelle explain`, `/v1/me`
//! and the operator API.

use std::fmt::Write;

use chrono::NaiveDate;
use serde::Serialize;

use super::habilitation::{Habilitation, Validity};
use super::plan::DatasetPlan;
use super::set::PolicySet;
use crate::identity::Principal;

/// Days before its end date from which a habilitation carries a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One habilitation as seen by a principal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HabilitationView {
    pub id: String,
    pub title: String,
    pub kind: super::habilitation::HabilitationKind,
    pub legal_basis: super::habilitation::LegalBasis,
    pub purpose: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub validity: Validity,
    /// Set when the end date is within 30 days, or past.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Only when the habilitation is active: what it lets the principal do.
    pub datasets: Vec<DatasetPlan>,
}

/// Everything a principal holds, for `/v1/me` and `passerelle explain`.
pub fn views(
    set: &PolicySet,
    principal: &Principal,
    only: Option<&str>,
    today: NaiveDate,
) -> Vec<HabilitationView> {
    set.held_by(principal)
        .into_iter()
        .filter(|h| only.is_none_or(|id| h.id == id))
        .map(|h| view(set, h, principal, today))
        .collect()
}

fn view(
    set: &PolicySet,
    h: &Habilitation,
    principal: &Principal,
    today: NaiveDate,
) -> HabilitationView {
    let validity = h.validity(today);
    let days = h.days_left(today);
    let warning = match validity {
        Validity::Active if days <= EXPIRY_WARNING_DAYS => Some(format!(
            "habilitation `{}` ends on {} ({} day{} left): ask for its renewal",
            h.id,
            h.end,
            days,
            if days == 1 { "" } else { "s" }
        )),
        Validity::Expired => Some(format!("habilitation `{}` expired on {}", h.id, h.end)),
        Validity::Revoked => Some(format!("habilitation `{}` was revoked", h.id)),
        Validity::NotStarted => Some(format!("habilitation `{}` starts on {}", h.id, h.start)),
        Validity::Obsolete => Some(format!("habilitation `{}` is obsolete", h.id)),
        Validity::Active => None,
    };
    let datasets = if validity == Validity::Active {
        set.evaluate(h, Some(principal))
            .into_iter()
            .filter(DatasetPlan::accessible)
            .collect()
    } else {
        Vec::new()
    };
    HabilitationView {
        id: h.id.clone(),
        title: h.title.clone(),
        kind: h.kind,
        legal_basis: h.legal_basis.clone(),
        purpose: h.purpose.clone(),
        start: h.start,
        end: h.end,
        validity,
        warning,
        datasets,
    }
}

/// Human-readable explanation, column by column, with the deciding lines.
pub fn render_text(
    set: &PolicySet,
    principal: &Principal,
    only: Option<&str>,
    today: NaiveDate,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy version {}", set.version);
    let _ = writeln!(
        out,
        "principal: subject `{}`, organisation {}, groups [{}], roles [{}]",
        principal.subject,
        principal.organisation_siret.as_deref().unwrap_or("(none)"),
        principal.groups.join(", "),
        principal.roles.join(", ")
    );
    if set.is_operator(principal) {
        let _ = writeln!(out, "hub operator: /v1/admin (no data)");
    }
    let held = set.held_by(principal);
    if held.is_empty() {
        let _ = writeln!(out, "\nholds no habilitation: no data");
        return out;
    }
    for h in held
        .into_iter()
        .filter(|h| only.is_none_or(|id| h.id == id))
    {
        let v = h.validity(today);
        let _ = writeln!(
            out,
            "\nhabilitation {} — {} ({:?}, {} {}), {} to {}: {:?}",
            h.id, h.title, h.kind, h.legal_basis.nature, h.legal_basis.reference, h.start, h.end, v
        );
        let _ = writeln!(out, "  member through habilitations.toml:{}", h.line);
        if v != Validity::Active {
            let _ = writeln!(
                out,
                "  refused: nothing is accessible under this habilitation"
            );
            continue;
        }
        for d in set.evaluate(h, Some(principal)) {
            let mut acts = Vec::new();
            if d.query_allowed() {
                acts.push("query".to_string());
            }
            if d.aggregates_allowed() {
                acts.push("aggregate".to_string());
            }
            if let Some(k) = d.lookup_key() {
                acts.push(format!("lookup by {k}"));
            }
            if !d.accessible() {
                let why = d
                    .refused()
                    .map(str::to_string)
                    .or_else(|| d.reasons().first().map(ToString::to_string))
                    .unwrap_or_default();
                let _ = writeln!(out, "  {}: no access — {}", d.name(), why);
                continue;
            }
            let _ = writeln!(out, "  {} ({}): {}", d.name(), d.title(), acts.join(", "));
            for r in d.reasons() {
                let _ = writeln!(out, "      because {r}");
            }
            for f in d.row_filters() {
                let _ = writeln!(out, "    rows where {}   ({})", f.source(), f.reason());
            }
            for c in d.columns() {
                let why = c
                    .reasons()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ");
                let _ = writeln!(
                    out,
                    "    {:<26} {:<44} {}",
                    c.name(),
                    c.treatment().label(),
                    why
                );
            }
        }
    }
    out
}
