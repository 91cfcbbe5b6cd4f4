//! The client-credentials exchange: a client's `client_id` and secret (the Flight SQL
//! Handshake's `Basic` value) sent to one trusted issuer's token endpoint with the OAuth 2.0
//! `client_credentials` grant (RFC 6749 §4.4), for an access token the gateway then validates
//! like any other.
//!
//! Owns: decoding the `Basic` value, finding the token endpoint (the issuer's discovery
//! document, which must name this very issuer), the grant request (bounded answer, no
//! redirects, the identity client's timeouts) and the cap on exchanges in flight.
//!
//! Must never: send any other grant (a person's password is never exchanged), keep or log the
//! secret or the token, tell the client why an exchange failed (a refusal is one answer), or
//! let unauthenticated callers make the gateway send more than `max_concurrent` requests to the
//! issuer at once.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::{OnceCell, Semaphore};

use super::IdentityError;
use super::http::{self, FetchError};
use crate::config::{ClientCredentialsConfig, IdentityConfig};

/// Longest `client_id` or secret taken from a `Basic` value.
const MAX_CREDENTIAL_BYTES: usize = 512;

/// Why an exchange gave no token. Logged and counted; the client only learns "refused",
/// "busy" or "unavailable".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The value is not `Basic base64(client_id:secret)` with printable, bounded parts.
    #[error("the Basic value is not client_id:secret")]
    Malformed,
    /// The issuer refused the credentials (any 4xx answer).
    #[error("the issuer refused the client's credentials")]
    Refused,
    /// Every exchange slot is taken.
    #[error("too many exchanges in flight")]
    Busy,
    /// The issuer could not be reached or answered something that is not a token.
    #[error("the issuer's token endpoint is unavailable: {0}")]
    Unavailable(String),
}

impl ExchangeError {
    /// Short, stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ExchangeError::Malformed => "basic_malformed",
            ExchangeError::Refused => "client_credentials_refused",
            ExchangeError::Busy => "exchange_busy",
            ExchangeError::Unavailable(_) => "token_endpoint_unavailable",
        }
    }
}

/// Exchanges client credentials at one trusted issuer.
pub struct ClientCredentials {
    client: reqwest::Client,
    /// The issuer's URL, as configured (the token must carry it as `iss`).
    issuer: String,
    resource: Option<String>,
    scope: Option<String>,
    /// The token endpoint, found once by discovery.
    endpoint: OnceCell<String>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// The exchange described by `exchange`, whose issuer must be one of `identity`'s.
    pub fn new(
        identity: &IdentityConfig,
        exchange: &ClientCredentialsConfig,
    ) -> Result<Self, IdentityError> {
        let issuer = identity.issuer_named(&exchange.issuer).ok_or_else(|| {
            IdentityError::Issuer(exchange.issuer.clone(), "not a trusted issuer".into())
        })?;
        Ok(Self {
            client: http::client(identity)?,
            issuer: issuer.issuer.clone(),
            resource: exchange.resource.clone(),
            scope: exchange.scope.clone(),
            endpoint: OnceCell::new(),
            slots: Arc::new(Semaphore::new(exchange.max_concurrent.max(1))),
        })
    }

    /// The issuer whose tokens this exchange gives (its URL).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Exchanges the `Basic` credentials in `encoded` (the header value without its scheme)
    /// for an access token. The token is not validated here: the caller validates it like any
    /// other bearer token.
    pub async fn exchange(&self, encoded: &str) -> Result<String, ExchangeError> {
        let (client_id, secret) = decode_basic(encoded)?;
        // SECURITY (availability): callers are not authenticated yet, so the number of
        // requests they can make the gateway send to the issuer at once is capped.
        let _slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ExchangeError::Busy)?;
        let endpoint = self
            .endpoint
            .get_or_try_init(|| self.discover())
            .await
            .map_err(ExchangeError::Unavailable)?;
        // RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding.
        let form_encoded =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        let basic = STANDARD.encode(format!(
            "{}:{}",
            form_encoded(&client_id),
            form_encoded(&secret)
        ));
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let body = match http::post_form_bounded(&self.client, endpoint, &basic, &form).await {
            Ok(body) => body,
            Err(FetchError::Status(400..=499)) => return Err(ExchangeError::Refused),
            Err(e) => return Err(ExchangeError::Unavailable(e.to_string())),
        };
        token_of(&body)
            .ok_or_else(|| ExchangeError::Unavailable("the answer holds no bearer token".into()))
    }

    /// The `token_endpoint` of the issuer's discovery document, which must name this issuer.
    async fn discover(&self) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            token_endpoint: String,
        }
        let url = super::keys::discovery_url(&self.issuer);
        let body = http::get_bounded(&self.client, &url)
            .await
            .map_err(|e| format!("discovery failed: {e}"))?;
        let metadata: Metadata = serde_json::from_slice(&body)
            .map_err(|_| "discovery has no `issuer` and `token_endpoint`".to_string())?;
        // SECURITY: a document that names another issuer (OIDC Discovery 4.3) is refused, and
        // the endpoint obeys the issuers' scheme rules (https, or http on loopback).
        if metadata.issuer != self.issuer {
            return Err("discovery names another issuer".into());
        }
        crate::config::check_issuer_url(&metadata.token_endpoint)
            .map_err(|m| format!("token_endpoint refused: {m}"))?;
        Ok(metadata.token_endpoint)
    }
}

/// `client_id` and secret from `base64(client_id:secret)`: printable, non-empty id, bounded.
fn decode_basic(encoded: &str) -> Result<(String, String), ExchangeError> {
    if encoded.len() > 4 * MAX_CREDENTIAL_BYTES {
        return Err(ExchangeError::Malformed);
    }
    // Go's Flight client (ADBC's driver) sends the value without padding: both are taken.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = lenient
        .decode(encoded.trim())
        .map_err(|_| ExchangeError::Malformed)?;
    let text = String::from_utf8(bytes).map_err(|_| ExchangeError::Malformed)?;
    let (id, secret) = text.split_once(':').ok_or(ExchangeError::Malformed)?;
    let fits = |s: &str| s.len() <= MAX_CREDENTIAL_BYTES && !s.chars().any(char::is_control);
    if id.is_empty() || secret.is_empty() || !fits(id) || !fits(secret) {
        return Err(ExchangeError::Malformed);
    }
    Ok((id.to_string(), secret.to_string()))
}

/// The `access_token` of a token answer whose `token_type` is Bearer (RFC 6749 §5.1).
fn token_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: String,
        token_type: String,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    (answer.token_type.eq_ignore_ascii_case("bearer") && !answer.access_token.is_empty())
        .then_some(answer.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_values_are_client_id_and_secret_or_nothing() {
        let enc = |s: &str| STANDARD.encode(s);
        assert_eq!(
            decode_basic(&enc("caf-si:s3cret:with:colons")),
            Ok(("caf-si".into(), "s3cret:with:colons".into()))
        );
        // Unpadded, as Go's Flight client (ADBC) sends it.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("caf-si:ab");
        assert!(!unpadded.ends_with('='));
        assert_eq!(decode_basic(&unpadded), Ok(("caf-si".into(), "ab".into())));
        for bad in [
            "not base64!".to_string(),
            enc("no-colon"),
            enc(":secret"),
            enc("id:"),
            enc("id:se\ncret"),
            enc(&format!("id:{}", "x".repeat(MAX_CREDENTIAL_BYTES + 1))),
            "A".repeat(4 * MAX_CREDENTIAL_BYTES + 4),
        ] {
            assert_eq!(decode_basic(&bad), Err(ExchangeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn only_bearer_answers_give_a_token() {
        assert_eq!(
            token_of(br#"{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":600}"#),
            Some("eyJ.a.b".into())
        );
        assert_eq!(
            token_of(br#"{"access_token":"x","token_type":"DPoP"}"#),
            None
        );
        assert_eq!(
            token_of(br#"{"access_token":"","token_type":"bearer"}"#),
            None
        );
        assert_eq!(token_of(br#"{"error":"invalid_client"}"#), None);
    }
}
