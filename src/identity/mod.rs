//! Identity: turns `Authorization: Bearer …` into a [`Principal`], or refuses.
//!
//! Owns: the trusted issuers (OIDC discovery, JWKS caches and their rotation), access-token
//! validation (signature, algorithm allow-list, `iss`, `aud`, `exp`, `nbf`, `iat`, `sub`, size),
//! claim mapping per issuer, and the RFC 8705 certificate binding check.
//!
//! Must never: know about datasets or habilitations, default a missing claim (a missing claim
//! stays missing, so rules that need it deny), log or return a token, or tell a client *why* a
//! token was refused (every refusal is the same 401; the cause is logged with the request id).

mod exchange;
mod http;
mod keys;
pub mod sign_in;
mod token;
mod verified;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::config::IdentityConfig;
pub use exchange::{ClientCredentials, ExchangeError};
pub use keys::{IssuerStatus, JwksKeyStore};
pub use token::TokenValidator;

/// Who is calling: the result of a successful authentication.
///
/// The unique key of a person is (`issuer`, `idp_id`, `subject`): `sub` is unique only per
/// identity provider in a federation such as ProConnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub issuer: String,
    /// The issuer's name in policies (`[[identity.issuers]] name`, or its URL): a principal is
    /// (issuer, idp, subject), and every policy decision is bound to its issuer.
    pub issuer_name: String,
    /// Identity provider inside a federation (`idp_id`), when the issuer is one.
    pub idp_id: Option<String>,
    pub subject: String,
    /// Organisation SIRET (14 digits), when the token carries one.
    pub organisation_siret: Option<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub email: Option<String>,
    /// OAuth2 client that obtained the token (`client_id` or `azp`), if any.
    pub client_id: Option<String>,
    /// SHA-256 thumbprint (base64url) of the TLS client certificate, when one was presented.
    pub client_certificate: Option<String>,
    /// True when the token is bound to that certificate (RFC 8705 `cnf.x5t#S256`, verified).
    pub certificate_bound: bool,
    /// Token expiry (seconds since the epoch).
    pub expires_at: i64,
}

/// Why a token was refused. Logged and counted, never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("authorization header is not a bearer token")]
    NotBearer,
    #[error("token larger than allowed")]
    TooLarge,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    #[error("algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    #[error("token has no key id")]
    MissingKeyId,
    #[error("no key with this id, even after refresh")]
    UnknownKey,
    #[error("the issuer's keys are older than the maximum key age (issuer unreachable)")]
    KeysTooOld,
    #[error("the key's own algorithm does not match the token's")]
    KeyAlgorithmMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong audience")]
    WrongAudience,
    #[error("token type is not the one this issuer must send (`require_typ`)")]
    WrongType,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("required claim missing: {0}")]
    MissingClaim(&'static str),
    #[error("claim has an unexpected type: {0}")]
    BadClaim(&'static str),
    #[error("token is bound to another client certificate")]
    CertificateBindingMismatch,
    #[error("token invalid")]
    Invalid,
}

impl AuthError {
    /// Short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::NotBearer => "not_bearer",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::MissingKeyId => "missing_kid",
            AuthError::UnknownKey => "unknown_kid",
            AuthError::KeysTooOld => "keys_too_old",
            AuthError::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongType => "wrong_type",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::BadClaim(_) => "bad_claim",
            AuthError::CertificateBindingMismatch => "certificate_binding_mismatch",
            AuthError::Invalid => "invalid",
        }
    }
}

/// The TLS client certificate presented on the connection, if any (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// base64url(SHA-256(DER)), the RFC 8705 `x5t#S256` form.
    pub thumbprint: String,
}

impl ClientCertificate {
    pub fn from_der(der: &[u8]) -> Self {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(der);
        Self {
            thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        }
    }
}

/// What the server needs from identity: authenticate a token, and say whether it is ready.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        client_certificate: Option<&'a ClientCertificate>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;

    /// True once every trusted issuer has usable keys.
    fn is_ready(&self) -> bool;

    /// Per-issuer status for readiness details (no keys, no URLs of secrets).
    fn status(&self) -> Vec<IssuerStatus>;
}

/// Extracts the token from an `Authorization` header value. Only `Bearer` is accepted.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// The production authenticator: several trusted OIDC issuers at once.
pub struct OidcAuthenticator {
    issuers: HashMap<String, Arc<TokenValidator>>,
    max_token_bytes: usize,
}

impl OidcAuthenticator {
    /// Builds the key stores and starts their background discovery/refresh tasks. Returns at
    /// once: issuers that are down are retried with backoff and readiness stays false until
    /// every issuer has keys.
    pub fn start(config: &IdentityConfig) -> Result<Arc<Self>, IdentityError> {
        let client = http::client(config)?;
        let mut issuers = HashMap::new();
        for issuer in &config.issuers {
            let store = JwksKeyStore::new(issuer.issuer.clone(), client.clone(), config)?;
            store.spawn_refresh();
            let validator = TokenValidator::new(issuer.clone(), store, config)?;
            issuers.insert(
                issuer.issuer.trim_end_matches('/').to_string(),
                Arc::new(validator),
            );
        }
        if issuers.is_empty() {
            tracing::warn!(
                "no trusted issuer configured: every request with a token will be refused"
            );
        }
        Ok(Arc::new(Self {
            issuers,
            max_token_bytes: config.max_token_bytes,
        }))
    }

    /// Waits (bounded) until every issuer has keys; for tests and for `serve` start-up logs.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.is_ready() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.is_ready()
    }
}

impl Authenticator for OidcAuthenticator {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        client_certificate: Option<&'a ClientCertificate>,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(async move {
            // SECURITY: bound the work done on attacker input before any parsing.
            if token.len() > self.max_token_bytes {
                return Err(AuthError::TooLarge);
            }
            let claimed_issuer = token::unverified_issuer(token)?;
            // SECURITY: the issuer is chosen by exact match on `iss`; the signature is then
            // checked with that issuer's keys only, and `iss` is checked again by validation.
            let validator = self
                .issuers
                .get(claimed_issuer.trim_end_matches('/'))
                .ok_or(AuthError::UnknownIssuer)?;
            validator.validate(token, client_certificate).await
        })
    }

    fn is_ready(&self) -> bool {
        self.issuers.values().all(|v| v.store().has_keys())
    }

    fn status(&self) -> Vec<IssuerStatus> {
        let mut status: Vec<_> = self.issuers.values().map(|v| v.store().status()).collect();
        status.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        status
    }
}

/// Why identity could not be set up (configuration-level problems).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity: cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("identity: cannot read `identity.ca_file`: {0}")]
    CaFile(String),
    #[error("identity: issuer `{0}`: {1}")]
    Issuer(String, String),
}

impl Principal {
    /// A principal built from a claims object with the contract's default claim names, for
    /// `explain` only: nothing is verified, so it must never authorise a request.
    pub fn for_explain(claims: &Value) -> Result<Principal, String> {
        let object = claims.as_object().ok_or("claims must be a JSON object")?;
        let bad = |e: AuthError| match e {
            AuthError::BadClaim(name) => format!("claim `{name}` has an unexpected type"),
            other => other.to_string(),
        };
        let string = |name: &'static str| token::optional_string(object, name, name).map_err(bad);
        let list = |name: &'static str| token::string_list(object, name, name).map_err(bad);
        Ok(Principal {
            issuer: string("iss")?.unwrap_or_else(|| "(explain)".into()),
            // The issuer's policy name, for rules bound to one (`"issuer": "demo"`).
            issuer_name: string("issuer")?.unwrap_or_else(|| "(explain)".into()),
            idp_id: string("idp_id")?,
            subject: string("sub")?.unwrap_or_else(|| "(explain)".into()),
            organisation_siret: string("siret")?,
            groups: list("groups")?,
            roles: list("roles")?,
            email: string("email")?,
            client_id: None,
            client_certificate: None,
            certificate_bound: false,
            expires_at: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_scheme_is_accepted() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), Err(AuthError::NotBearer));
        assert_eq!(bearer_token(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("Bearer")), Err(AuthError::NotBearer));
        assert_eq!(bearer_token(None), Err(AuthError::Missing));
    }

    #[test]
    fn certificate_thumbprint_is_base64url_sha256() {
        let cert = ClientCertificate::from_der(b"abc");
        // SHA-256("abc") in base64url without padding
        assert_eq!(
            cert.thumbprint,
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
