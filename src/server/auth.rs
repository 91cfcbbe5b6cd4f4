//! The `Authenticated` extractor: the only place where the server touches a bearer token.
//!
//! It reads `Authorization`, removes it from the request (so nothing downstream can log or
//! forward it), hands the token to `identity` and turns any refusal into the one 401 answer.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum_server::tls::TlsInfo;

use super::AppState;
use super::audit::AuditDraft;
use super::error::ApiError;
use crate::identity::{ClientCertificate, Principal, bearer_token};
use crate::telemetry::names;

/// A request whose bearer token was validated.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // SECURITY: the header leaves the request here, before anything else can see it.
        let header_value = parts.headers.remove(header::AUTHORIZATION);
        let client_certificate = parts
            .extensions
            .get::<Arc<TlsInfo>>()
            .and_then(|info| info.peer_certificates.first())
            .map(|der| ClientCertificate::from_der(der));
        let result = match header_value.as_ref().map(|v| v.to_str()) {
            Some(Err(_)) => Err(crate::identity::AuthError::NotBearer),
            other => {
                let raw = other.and_then(Result::ok);
                match bearer_token(raw) {
                    Ok(token) => {
                        state
                            .identity
                            .authenticate(token, client_certificate.as_ref())
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let draft = parts.extensions.get::<AuditDraft>().cloned();
        match result {
            Ok(principal) => {
                if let Some(draft) = draft {
                    draft.authenticated(&principal);
                }
                Ok(Authenticated(principal))
            }
            Err(reason) => {
                if let Some(draft) = draft {
                    draft.token_refused(reason.reason());
                }
                // SECURITY: the cause is logged (with the request id, from the span) and
                // counted, never returned: every refusal gets the same 401.
                tracing::info!(reason = reason.reason(), "token refused");
                metrics::counter!(names::AUTH_FAILURES, "reason" => reason.reason()).increment(1);
                Err(ApiError::unauthorized())
            }
        }
    }
}
