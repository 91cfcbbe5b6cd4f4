//! Authentication as a use case: a transport hands over what the request carried (the
//! `Authorization` value, the TLS client certificate), the gateway validates it through
//! `identity` and answers a [`Caller`] or the one refusal, counting a refused token in the
//! window's summary (`refusals`) and rate limiting its source.
//!
//! Must never: tell a caller why its token was refused (the cause is logged and counted), or
//! keep the token anywhere.

use std::net::IpAddr;

use super::error::GatewayError;
use super::record::RequestRecord;
use super::{Caller, Gateway, refusals};
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
    /// `record`, coming from `source` (the client's address as the transport knows it): a
    /// [`Caller`], or the single refusal. A refusal is counted in the window's summary of
    /// requests without a valid token (`refusals`), not written one by one.
    pub async fn authenticate(
        &self,
        record: &RequestRecord,
        authorization: Authorization<'_>,
        client_certificate: Option<&ClientCertificate>,
        source: Option<IpAddr>,
    ) -> Result<Caller, GatewayError> {
        // SECURITY: no trail, no answer (every request is refused while it is unavailable).
        if !self.audit.healthy() {
            record.summarised();
            return Err(GatewayError::audit_unavailable());
        }
        let source_of = || source.map_or_else(|| "unknown".to_string(), refusals::source_of);
        // SECURITY (availability): a source that spent its budget of requests without a valid
        // token is not heard until it waits; its token is not even read. (While no source
        // waits, this costs a valid request one atomic load.)
        if self.refusals.any_blocked() {
            let source = source_of();
            if let Err(wait) = self.refusals.admit(&source) {
                self.refusals.count(&source, refusals::RATE_LIMITED);
                record.summarised();
                metrics::counter!(names::AUTH_FAILURES, "reason" => refusals::RATE_LIMITED)
                    .increment(1);
                return Err(GatewayError::rate_limited(
                    "Too many requests without a valid token",
                    format!(
                        "too many requests without a valid token from this address: retry in {wait} s"
                    ),
                    wait,
                ));
            }
        }
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
                // SECURITY: the cause is logged (with the request id, from the span) and
                // counted, never returned: every refusal gets the same answer. Its evidence is
                // the window's summary record (source, reason, count), so that a flood of bad
                // tokens costs bounded disk.
                tracing::info!(reason = reason.reason(), "token refused");
                metrics::counter!(names::AUTH_FAILURES, "reason" => reason.reason()).increment(1);
                self.refusals.count(&source_of(), reason.reason());
                record.summarised();
                Err(GatewayError::unauthenticated())
            }
        }
    }
}
