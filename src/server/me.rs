//! `GET /v1/me`: who the caller is, as the gateway understood their token, and what each of
//! their habilitations lets them do (with end dates, and a warning within 30 days of the end).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{AppState, Authenticated};
use crate::identity::Principal;
use crate::policy::explain::{HabilitationView, views};

#[derive(Debug, Serialize)]
pub struct Me {
    pub principal: Principal,
    pub policy_version: String,
    /// True when the caller may use `/v1/admin`.
    pub operator: bool,
    pub habilitations: Vec<HabilitationView>,
    /// Warnings to act on (habilitations ending soon, expired or revoked).
    pub warnings: Vec<String>,
}

pub async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Json<Me> {
    let set = state.policy.current();
    let today = chrono::Utc::now().date_naive();
    let habilitations = views(&set, &principal, None, today);
    let warnings = habilitations
        .iter()
        .filter_map(|h| h.warning.clone())
        .collect();
    Json(Me {
        operator: set.is_operator(&principal),
        policy_version: set.version.clone(),
        principal,
        habilitations,
        warnings,
    })
}
