//! Authentication as a use case: a transport hands over what the request carried (the
//! `Authorization` value, the TLS client certificate), the gateway validates it through
//! `identity` and answers a [`Caller`] or the one refusal, recording a refused token.
//!
//! Must never: tell a caller why its token was refused (the cause is logged and counted), or
//! keep the token anywhere.

use super::error::GatewayError;
use super::record::RequestRecord;
use super::{Caller, Gateway};
use crate::identity::{AuthError, ClientCertificate, bearer_token};
use crate::telemetry::names;

/// What the request carried in `Authorization`.
#[derive(Debug, Clone, Copy)]
pub enum Authorization<'a> {
    /// No header.
    Absent,
    /// A header whose value is not text.
    Unreadable,
    /// The header's value, e.g. `Bearer eyJ…`.
    Value(&'a str),
}

impl Gateway {
    /// Validates the caller's token (and certificate binding) for the request recorded by
    /// `record`: a [`Caller`], or the single refusal (recorded).
    pub async fn authenticate(
        &self,
        record: &RequestRecord,
        authorization: Authorization<'_>,
        client_certificate: Option<&ClientCertificate>,
    ) -> Result<Caller, GatewayError> {
        let result = match authorization {
            Authorization::Unreadable => Err(AuthError::NotBearer),
            Authorization::Absent => Err(AuthError::Missing),
            Authorization::Value(value) => match bearer_token(Some(value)) {
                Ok(token) => self.identity.authenticate(token, client_certificate).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(principal) => {
                record.authenticated(&principal);
                Ok(Caller {
                    principal,
                    record: record.clone(),
                })
            }
            Err(reason) => {
                record.token_refused(reason.reason());
                // SECURITY: the cause is logged (with the request id, from the span) and
                // counted, never returned: every refusal gets the same answer.
                tracing::info!(reason = reason.reason(), "token refused");
                metrics::counter!(names::AUTH_FAILURES, "reason" => reason.reason()).increment(1);
                record
                    .settle(&self.audit, Err(GatewayError::unauthenticated()))
                    .await
            }
        }
    }
}
