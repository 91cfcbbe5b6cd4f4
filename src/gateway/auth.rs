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
use crate::identity::{AuthError, ClientCertificate, ExchangeError, bearer_token};
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
        self.admit(record, source)?;
        let result = match authorization {
            Authorization::Unreadable => Err(AuthError::NotBearer),
            Authorization::Absent => Err(AuthError::Missing),
            Authorization::Value(value) => match bearer_token(Some(value)) {
                Ok(token) => self.identity.authenticate(token, client_certificate).await,
                Err(e) => Err(e),
            },
        };
        self.authenticated(record, result.map_err(|e| e.reason()), source)
    }

    /// The Flight SQL Handshake's `Basic` value (`encoded`: base64 of `client_id:secret`),
    /// exchanged at `[flight.client_credentials]`'s issuer for an access token, which is then
    /// validated like any bearer token: the [`Caller`] and the token (for the client to send
    /// from then on), or the single refusal. Without that setting, Basic is refused like any
    /// value that is not a bearer token.
    pub async fn exchange_client_credentials(
        &self,
        record: &RequestRecord,
        encoded: &str,
        client_certificate: Option<&ClientCertificate>,
        source: Option<IpAddr>,
    ) -> Result<(Caller, String), GatewayError> {
        self.admit(record, source)?;
        // SECURITY: no configured exchange, no Basic (never a person's password).
        let Some(exchange) = &self.client_credentials else {
            return Err(self.refused(record, source, AuthError::NotBearer.reason()));
        };
        match exchange.exchange(encoded).await {
            Ok(token) => {
                let principal = self
                    .identity
                    .authenticate(&token, client_certificate)
                    .await
                    .map_err(|e| e.reason())
                    // SECURITY: the token must be the exchanging issuer's own.
                    .and_then(|p| {
                        if p.issuer == exchange.issuer() {
                            Ok(p)
                        } else {
                            Err(AuthError::UnknownIssuer.reason())
                        }
                    });
                let caller = self.authenticated(record, principal, source)?;
                Ok((caller, token))
            }
            Err(e @ ExchangeError::Busy) => {
                self.unheard(record, source, e.reason());
                Err(GatewayError::rate_limited(
                    "Too many client-credentials exchanges",
                    "too many client-credentials exchanges in flight: retry in 1 s",
                    1,
                ))
            }
            Err(e @ ExchangeError::Unavailable(_)) => {
                tracing::warn!(cause = %e, "client-credentials exchange failed");
                self.unheard(record, source, e.reason());
                Err(GatewayError::unavailable(
                    "the identity provider's token endpoint cannot be reached: try again later",
                ))
            }
            Err(e) => Err(self.refused(record, source, e.reason())),
        }
    }

    /// Admits the request, unless the audit trail is down or its source spent its budget of
    /// requests without a valid token.
    fn admit(&self, record: &RequestRecord, source: Option<IpAddr>) -> Result<(), GatewayError> {
        // SECURITY: no trail, no answer (every request is refused while it is unavailable).
        if !self.audit.healthy() {
            record.summarised();
            return Err(GatewayError::audit_unavailable());
        }
        // SECURITY (availability): a source that spent its budget of requests without a valid
        // token is not heard until it waits; its token is not even read. (While no source
        // waits, this costs a valid request one atomic load.)
        if self.refusals.any_blocked() {
            let source = source_name(source);
            if let Err(wait) = self.refusals.admit(&source) {
                return Err(self.budget_spent(
                    record,
                    &source,
                    "Too many requests without a valid token",
                    format!(
                        "too many requests without a valid token from this address: retry in {wait} s"
                    ),
                    wait,
                ));
            }
        }
        Ok(())
    }

    /// The refusal of a request whose `source` spent its budget of requests without a valid
    /// token: summarised with the source's refusals (`rate_limited`), 429 after `wait` seconds.
    pub(super) fn budget_spent(
        &self,
        record: &RequestRecord,
        source: &str,
        title: &'static str,
        detail: String,
        wait: u64,
    ) -> GatewayError {
        self.refusals.count(source, refusals::RATE_LIMITED);
        record.summarised();
        metrics::counter!(names::AUTH_FAILURES, "reason" => refusals::RATE_LIMITED).increment(1);
        GatewayError::rate_limited(title, detail, wait)
    }

    /// The caller of an authenticated principal, or the single refusal for `reason`.
    fn authenticated(
        &self,
        record: &RequestRecord,
        result: Result<crate::identity::Principal, &'static str>,
        source: Option<IpAddr>,
    ) -> Result<Caller, GatewayError> {
        match result {
            Ok(principal) => {
                record.authenticated(&principal);
                Ok(Caller {
                    principal,
                    record: record.clone(),
                })
            }
            Err(reason) => Err(self.refused(record, source, reason)),
        }
    }

    /// The single refusal of a request whose credentials were refused for `reason`.
    pub(super) fn refused(
        &self,
        record: &RequestRecord,
        source: Option<IpAddr>,
        reason: &'static str,
    ) -> GatewayError {
        // SECURITY: the cause is logged (with the request id, from the span) and counted,
        // never returned: every refusal gets the same answer. Its evidence is the window's
        // summary record (source, reason, count), so that a flood of bad tokens costs bounded
        // disk.
        tracing::info!(reason, "token refused");
        self.unheard(record, source, reason);
        GatewayError::unauthenticated()
    }

    /// Counts a request that got no caller in the window's summary, for its source.
    fn unheard(&self, record: &RequestRecord, source: Option<IpAddr>, reason: &'static str) {
        metrics::counter!(names::AUTH_FAILURES, "reason" => reason).increment(1);
        self.refusals.count(&source_name(source), reason);
        record.summarised();
    }
}

pub(super) fn source_name(source: Option<IpAddr>) -> String {
    source.map_or_else(|| "unknown".to_string(), refusals::source_of)
}
