//! The `Authenticated` extractor: the only place where the server touches a bearer token.
//!
//! It takes `Authorization` out of the request (so nothing downstream can log or forward it)
//! and the TLS client certificate, and hands both to `Gateway::authenticate`, which answers the
//! caller or the one refusal (recorded there).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum_server::tls::TlsInfo;

use super::AppState;
use super::error::ApiError;
use crate::gateway::{Authorization, Caller, ClientCertificate, RequestRecord};

/// A request whose bearer token was validated.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

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
        let authorization = match header_value.as_ref().map(|v| v.to_str()) {
            None => Authorization::Absent,
            Some(Err(_)) => Authorization::Unreadable,
            Some(Ok(value)) => Authorization::Value(value),
        };
        // SECURITY: a route the audit middleware does not record serves nobody (fail closed).
        let Some(record) = parts.extensions.get::<RequestRecord>().cloned() else {
            tracing::error!("an authenticated route has no audit record: refused");
            return Err(ApiError::internal());
        };
        let source = super::source::client_address(parts, &state.proxies);
        state
            .gateway
            .authenticate(&record, authorization, client_certificate.as_ref(), source)
            .await
            .map(Authenticated)
            .map_err(ApiError::from)
    }
}
