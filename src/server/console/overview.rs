//! The console's read-only pages: habilitations and their validity, who sees what, the
//! protected tables, and the audit trail searched with its verification.
//!
//! Must never: show a token, a key or a value of the trail beyond what the gateway's views
//! carry.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::pages::{self, page};
use super::{Operator, SignedForm, refused_page};
use crate::gateway::ErrorKind;
use crate::server::AppState;

/// `GET /console/habilitations`: every habilitation with its validity.
pub(super) async fn habilitations(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.habilitations_overview(&operator.caller).await {
        Ok(rows) => {
            let frame = operator.frame(&state, "habilitations");
            let count = |v: &str| rows.iter().filter(|h| h.validity == v).count();
            let (expiring, expired) = (count("expiring"), count("expired"));
            page(
                StatusCode::OK,
                &pages::Habilitations {
                    frame,
                    rows: rows.into_iter().map(pages::HabilitationLine).collect(),
                    expiring,
                    expired,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `GET /console/tableaux`: the tables of the statistical secret and their hidden cells.
pub(super) async fn tables(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.tables_overview(&operator.caller).await {
        Ok(rows) => {
            let frame = operator.frame(&state, "tables");
            page(
                StatusCode::OK,
                &pages::Tables {
                    frame,
                    rows: rows.into_iter().map(pages::TableLine).collect(),
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `GET /console/qui-voit-quoi`: the form (checked as an operator's request: it is recorded).
pub(super) async fn explain_form(State(state): State<AppState>, operator: Operator) -> Response {
    // The form alone reads nothing; the operator right is checked like every page's.
    if let Err(e) = state.gateway.operator_only(&operator.caller).await {
        return refused_page(&e);
    }
    let frame = operator.frame(&state, "explain");
    page(
        StatusCode::OK,
        &pages::Explain {
            frame,
            form: pages::ExplainForm::default(),
            answer: None,
            problem: None,
        },
    )
}

/// `POST /console/qui-voit-quoi`: what a principal with these claims sees, and why.
pub(super) async fn explain(
    State(state): State<AppState>,
    SignedForm {
        who: operator,
        fields: mut form,
    }: SignedForm<Operator>,
) -> Response {
    let mut take = |name: &str| form.remove(name).unwrap_or_default().trim().to_string();
    let typed = pages::ExplainForm {
        issuer: take("issuer"),
        sub: take("sub"),
        siret: take("siret"),
        groups: take("groups"),
        roles: take("roles"),
        habilitation: take("habilitation"),
    };
    let list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut claims = serde_json::Map::new();
    for (name, value) in [
        ("issuer", &typed.issuer),
        ("sub", &typed.sub),
        ("siret", &typed.siret),
    ] {
        if !value.is_empty() {
            claims.insert(name.into(), serde_json::Value::String(value.clone()));
        }
    }
    claims.insert("groups".into(), list(&typed.groups).into());
    claims.insert("roles".into(), list(&typed.roles).into());
    let request = crate::gateway::ExplainRequest {
        claims: serde_json::Value::Object(claims),
        habilitation: (!typed.habilitation.is_empty()).then(|| typed.habilitation.clone()),
    };
    let (answer, problem, status) = match state.gateway.explain(&operator.caller, request).await {
        Ok(e) => (Some(e.text), None, StatusCode::OK),
        Err(e) if e.kind == ErrorKind::Forbidden => return refused_page(&e),
        Err(e) => (None, Some(e.detail), StatusCode::UNPROCESSABLE_ENTITY),
    };
    let frame = operator.frame(&state, "explain");
    page(
        status,
        &pages::Explain {
            frame,
            form: typed,
            answer,
            problem,
        },
    )
}

/// `GET /console/audit`: the trail searched by day, habilitation, dataset and outcome, with
/// its verification.
pub(super) async fn audit(
    State(state): State<AppState>,
    operator: Operator,
    Query(mut query): Query<HashMap<String, String>>,
) -> Response {
    let mut take = |name: &str| query.remove(name).unwrap_or_default().trim().to_string();
    let form = pages::AuditForm {
        from: take("du"),
        to: take("au"),
        habilitation: take("habilitation"),
        dataset: take("jeu"),
        outcome: take("issue"),
    };
    let day = |text: &str| -> Result<Option<chrono::NaiveDate>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("« {text} » n'est pas une date AAAA-MM-JJ"))
    };
    let (from, to) = match (day(&form.from), day(&form.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(p), _) | (_, Err(p)) => {
            let frame = operator.frame(&state, "audit");
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &pages::Audit {
                    frame,
                    form,
                    rows: Vec::new(),
                    matched: 0,
                    verification: None,
                    problem: Some(p),
                },
            );
        }
    };
    let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let filter = crate::gateway::AuditFilter {
        from,
        to,
        habilitation: optional(&form.habilitation),
        dataset: optional(&form.dataset),
        outcome: optional(&form.outcome),
    };
    match state.gateway.audit_search(&operator.caller, filter).await {
        Ok(found) => {
            let frame = operator.frame(&state, "audit");
            page(
                StatusCode::OK,
                &pages::Audit {
                    frame,
                    form,
                    rows: found.rows,
                    matched: found.matched,
                    verification: Some(found.verification),
                    problem: None,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}
