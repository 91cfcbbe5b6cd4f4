//! The citizens' journal page (`/moi`).
//!
//! Must never: show a consultation of another person's record, or the NIR itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::pages::{self, page};
use super::{Citizen, refused_page};
use crate::gateway::CitizenJournal;
use crate::server::AppState;

/// `GET /moi`: a citizen's own journal (the NIR the issuer asserted at sign-in, never another).
pub(super) async fn journal(State(state): State<AppState>, citizen: Citizen) -> Response {
    match state
        .gateway
        .citizen_journal(&citizen.caller, &citizen.nir)
        .await
    {
        Ok(CitizenJournal { consultations }) => page(
            StatusCode::OK,
            &pages::JournalPage {
                csrf: citizen.csrf.clone(),
                rows: consultations
                    .into_iter()
                    .map(|(dataset, c)| pages::JournalRow::new(&dataset, c))
                    .collect(),
            },
        ),
        Err(e) => refused_page(&e),
    }
}
