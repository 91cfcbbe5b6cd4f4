//! `GET /v1/me`: who the caller is, as the gateway understood their token.

use axum::Json;
use serde::Serialize;

use super::Authenticated;
use crate::identity::Principal;

#[derive(Debug, Serialize)]
pub struct Me {
    pub principal: Principal,
}

pub async fn me(Authenticated(principal): Authenticated) -> Json<Me> {
    Json(Me { principal })
}
