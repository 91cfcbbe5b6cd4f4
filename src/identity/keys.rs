//! One trusted issuer's signing keys: discovery (issuer and `jwks_uri` only), then a JWKS cache
//! refreshed in the background, refreshed at once when an unknown `kid` arrives (single flight, rate
//! limited), keys that left the JWKS kept for a grace period.
//!
//! Must never: use keys older than `identity.max_key_age_secs` (counted from the last
//! successful JWKS fetch): while the issuer is unreachable, cached keys serve that long, then
//! every token of the issuer is refused and readiness drops until a fetch succeeds.
//!
//! INVARIANT: readers never block on the network: they read an `ArcSwap` snapshot. Only the
//! refresh path (background task, or one caller that met an unknown `kid`) talks to the issuer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Serialize;
use tokio::sync::Mutex;

use super::IdentityError;
use super::http::{self, FetchError};
use crate::config::IdentityConfig;

/// A verification key and the algorithms it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    pub key: DecodingKey,
    /// Algorithms this key may be used with: its JWK `alg` if published, else its family's.
    pub algorithms: Vec<Algorithm>,
    /// When the key left the issuer's JWKS (it is then accepted only for the grace period).
    pub retired_at: Option<Instant>,
}

#[derive(Clone, Default)]
struct KeySet {
    keys: HashMap<String, VerificationKey>,
    loaded: bool,
    /// When this set was fetched from the issuer.
    fetched_at: Option<Instant>,
}

/// What the operators' readiness view (`/v1/admin/health`) shows of an issuer.
#[derive(Debug, Clone, Serialize)]
pub struct IssuerStatus {
    pub issuer: String,
    pub ready: bool,
    pub keys: usize,
    /// Seconds since the last successful JWKS fetch, if any.
    pub last_refresh_secs: Option<u64>,
    /// Keys older than this (since the last successful fetch) are not used.
    pub max_key_age_secs: u64,
    /// The keys are older than `max_key_age_secs`: every token of this issuer is refused.
    pub keys_too_old: bool,
}

struct RefreshState {
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

/// The key cache of one issuer.
pub struct JwksKeyStore {
    issuer: String,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    refresh: Mutex<RefreshState>,
    /// Incremented by every successful refresh, so a waiting caller knows one happened.
    generation: AtomicU64,
    refresh_every: Duration,
    min_refresh_gap: Duration,
    grace: Duration,
    max_age: Duration,
}

impl JwksKeyStore {
    pub fn new(
        issuer: String,
        client: reqwest::Client,
        config: &IdentityConfig,
    ) -> Result<Arc<Self>, IdentityError> {
        crate::config::check_issuer_url(&issuer)
            .map_err(|message| IdentityError::Issuer(issuer.clone(), message))?;
        Ok(Arc::new(Self {
            issuer,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            refresh: Mutex::new(RefreshState {
                jwks_uri: None,
                last_attempt: None,
            }),
            generation: AtomicU64::new(0),
            refresh_every: Duration::from_secs(config.jwks_refresh_secs.max(1)),
            min_refresh_gap: Duration::from_secs(config.jwks_min_refresh_secs),
            grace: Duration::from_secs(config.retired_key_grace_secs),
            max_age: Duration::from_secs(config.max_key_age_secs),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn has_keys(&self) -> bool {
        let set = self.keys.load();
        set.loaded && self.fresh(&set) && set.keys.values().any(|k| k.retired_at.is_none())
    }

    /// Whether `set` was fetched less than `max_key_age_secs` ago.
    fn fresh(&self, set: &KeySet) -> bool {
        // SECURITY: keys the issuer has not confirmed for longer than the maximum age are not
        // used (fail closed during a long outage: a revoked key would otherwise live forever).
        set.fetched_at
            .is_some_and(|at| at.elapsed() <= self.max_age)
    }

    /// Keys were loaded once but are now older than the maximum age.
    pub fn keys_too_old(&self) -> bool {
        let set = self.keys.load();
        set.loaded && !self.fresh(&set)
    }

    pub fn status(&self) -> IssuerStatus {
        let set = self.keys.load();
        IssuerStatus {
            issuer: self.issuer.clone(),
            ready: self.has_keys(),
            keys: set.keys.len(),
            last_refresh_secs: set.fetched_at.map(|t| t.elapsed().as_secs()),
            max_key_age_secs: self.max_age.as_secs(),
            keys_too_old: set.loaded && !self.fresh(&set),
        }
    }

    /// The key for `kid`, if known, not past its grace period, and the set not older than the
    /// maximum key age.
    pub fn key(&self, kid: &str) -> Option<VerificationKey> {
        let set = self.keys.load();
        if !self.fresh(&set) {
            return None;
        }
        let key = set.keys.get(kid)?;
        match key.retired_at {
            Some(at) if at.elapsed() > self.grace => None,
            _ => Some(key.clone()),
        }
    }

    /// Whether `kid` is known and not past its grace period (what [`Self::key`] checks,
    /// without copying the key).
    pub fn has_key(&self, kid: &str) -> bool {
        let set = self.keys.load();
        self.fresh(&set)
            && set
                .keys
                .get(kid)
                .is_some_and(|key| key.retired_at.is_none_or(|at| at.elapsed() <= self.grace))
    }

    /// Called when a token names a `kid` we do not have: refresh now, unless a refresh
    /// happened very recently (rate limit) or another caller is already refreshing (single
    /// flight: we wait for its result instead of calling the issuer again).
    pub async fn refresh_for_unknown_kid(&self) {
        let seen = self.generation.load(Ordering::Acquire);
        let mut state = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return; // someone refreshed while we waited
        }
        if state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_refresh_gap)
        {
            return; // SECURITY: unknown kids cannot make us hammer the issuer
        }
        if let Err(e) = self.refresh_locked(&mut state).await {
            tracing::warn!(issuer = %self.issuer, error = %e, "jwks refresh for unknown kid failed");
        }
    }

    /// Starts the background task: discovery and first keys with backoff, then periodic
    /// refresh. Failures keep the cached keys.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let Some(store) = weak.upgrade() else { return };
                let result = {
                    let mut state = store.refresh.lock().await;
                    store.refresh_locked(&mut state).await
                };
                let wait = match result {
                    Ok(()) => {
                        backoff = Duration::from_millis(250);
                        store.refresh_every
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %store.issuer, error = %e, retry_in_ms = backoff.as_millis() as u64, "issuer keys could not be loaded");
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        if store.has_keys() {
                            store.refresh_every.min(wait.max(Duration::from_secs(5)))
                        } else {
                            wait
                        }
                    }
                };
                drop(store);
                tokio::time::sleep(wait).await;
            }
        });
    }

    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<(), KeyStoreError> {
        state.last_attempt = Some(Instant::now());
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = http::get_bounded(&self.client, &jwks_uri).await?;
        let fresh = parse_jwks(&body)?;
        if fresh.is_empty() {
            return Err(KeyStoreError::NoUsableKey);
        }
        let old = self.keys.load();
        let mut keys = fresh;
        // Keys that left the JWKS stay for the grace period (tokens signed just before a
        // rotation remain valid until then).
        let now = Instant::now();
        for (kid, key) in &old.keys {
            if !keys.contains_key(kid) {
                let retired_at = key.retired_at.unwrap_or(now);
                if retired_at.elapsed() <= self.grace {
                    let mut key = key.clone();
                    key.retired_at = Some(retired_at);
                    keys.insert(kid.clone(), key);
                }
            }
        }
        self.keys.store(Arc::new(KeySet {
            keys,
            loaded: true,
            fetched_at: Some(now),
        }));
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(issuer = %self.issuer, "issuer keys refreshed");
        Ok(())
    }

    /// Discovery (`{issuer}/.well-known/openid-configuration`): checks that the document names
    /// this very issuer and returns its `jwks_uri`. A resource server needs nothing else: the
    /// relying-party fields (`authorization_endpoint`, `response_types_supported`, …) are not
    /// required, so an issuer for client credentials only (no authorization endpoint) is
    /// trusted like any other.
    async fn discover(&self) -> Result<String, KeyStoreError> {
        let url = discovery_url(&self.issuer);
        let body = http::get_bounded(&self.client, &url)
            .await
            .map_err(|e| KeyStoreError::Discovery(format!("request failed: {e}")))?;
        let jwks_uri = jwks_uri_of(&self.issuer, &body).map_err(KeyStoreError::Discovery)?;
        // SECURITY: the JWKS must be served by the same scheme rules as the issuer itself.
        crate::config::check_issuer_url(jwks_uri.as_str())
            .or_else(|_| {
                let mut base = jwks_uri.clone();
                base.set_query(None);
                crate::config::check_issuer_url(base.as_str())
            })
            .map_err(|m| KeyStoreError::Discovery(format!("jwks_uri refused: {m}")))?;
        Ok(jwks_uri.to_string())
    }
}

/// `{issuer}/.well-known/openid-configuration` (one slash between them, as OIDC Discovery 4).
pub(super) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The `jwks_uri` of a discovery document that names `issuer` exactly.
fn jwks_uri_of(issuer: &str, body: &[u8]) -> Result<reqwest::Url, String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        issuer: String,
        jwks_uri: String,
    }
    let metadata: Metadata = serde_json::from_slice(body)
        .map_err(|_| "document does not parse (it needs `issuer` and `jwks_uri`)".to_string())?;
    // SECURITY: a document that names another issuer (OIDC Discovery 4.3) is refused.
    if metadata.issuer != issuer {
        return Err("document refused: it names another issuer".into());
    }
    reqwest::Url::parse(&metadata.jwks_uri).map_err(|_| "jwks_uri is not a URL".to_string())
}

/// Parses a JWKS, keeping every usable signing key and skipping the rest (one odd key, e.g.
/// an encryption key, must not make the whole set unusable).
pub fn parse_jwks(body: &[u8]) -> Result<HashMap<String, VerificationKey>, KeyStoreError> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(|_| KeyStoreError::BadJwks)?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        if value
            .get("use")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue; // SECURITY: keys are selected by kid only
        };
        let Some(algorithms) = key_algorithms(&jwk) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.insert(
            kid,
            VerificationKey {
                key,
                algorithms,
                retired_at: None,
            },
        );
    }
    Ok(keys)
}

/// The algorithms a JWK may verify: its own `alg` when published (and asymmetric), otherwise
/// the asymmetric algorithms of its family. Symmetric (`oct`) keys are never usable.
fn key_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(family),
        Some(alg) => {
            let alg = match alg {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            family.contains(&alg).then(|| vec![alg])
        }
    }
}

/// Why keys could not be loaded (logged, never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("jwks: {0}")]
    Fetch(#[from] FetchError),
    #[error("jwks does not parse")]
    BadJwks,
    #[error("jwks has no usable signing key")]
    NoUsableKey,
}

#[cfg(test)]
mod tests {
    #[test]
    fn discovery_needs_this_issuer_and_a_jwks_uri_only() {
        let issuer = "https://auth.example.gouv.fr";
        assert_eq!(
            super::discovery_url("https://auth.example.gouv.fr/realms/x/"),
            "https://auth.example.gouv.fr/realms/x/.well-known/openid-configuration"
        );
        // A client-credentials-only server (RFC 8414 metadata: no authorization endpoint).
        let minimal = br#"{"issuer":"https://auth.example.gouv.fr","jwks_uri":"https://auth.example.gouv.fr/jwks","token_endpoint":"https://auth.example.gouv.fr/token","grant_types_supported":["client_credentials"]}"#;
        assert_eq!(
            super::jwks_uri_of(issuer, minimal).unwrap().as_str(),
            "https://auth.example.gouv.fr/jwks"
        );
        // Another issuer's document, or one without a JWKS: refused.
        let other = br#"{"issuer":"https://evil.example","jwks_uri":"https://evil.example/jwks"}"#;
        assert!(super::jwks_uri_of(issuer, other).is_err());
        let slash = br#"{"issuer":"https://auth.example.gouv.fr/","jwks_uri":"https://auth.example.gouv.fr/jwks"}"#;
        assert!(super::jwks_uri_of(issuer, slash).is_err(), "exact match");
        assert!(
            super::jwks_uri_of(issuer, br#"{"issuer":"https://auth.example.gouv.fr"}"#).is_err()
        );
    }

    use super::*;

    #[test]
    fn jwks_skips_symmetric_keyless_and_encryption_keys() {
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "ec1",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"}
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ec1"]);
        assert_eq!(keys["ec1"].algorithms, vec![Algorithm::ES256]);
    }

    #[test]
    fn keys_older_than_the_maximum_age_are_not_used() {
        crate::install_crypto_provider();
        let config = IdentityConfig {
            max_key_age_secs: 60,
            ..IdentityConfig::default()
        };
        let store = JwksKeyStore::new(
            "https://issuer.example".into(),
            reqwest::Client::new(),
            &config,
        )
        .unwrap();
        let body = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec1",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let fetched = |ago: u64| Instant::now().checked_sub(Duration::from_secs(ago));
        store.keys.store(Arc::new(KeySet {
            keys: keys.clone(),
            loaded: true,
            fetched_at: fetched(59),
        }));
        assert!(store.key("ec1").is_some() && store.has_key("ec1") && store.has_keys());
        assert!(!store.keys_too_old() && !store.status().keys_too_old);
        store.keys.store(Arc::new(KeySet {
            keys,
            loaded: true,
            fetched_at: fetched(61),
        }));
        assert!(store.key("ec1").is_none());
        assert!(!store.has_key("ec1"), "the verified-token cache asks this");
        assert!(!store.has_keys(), "readiness drops");
        assert!(store.keys_too_old());
        let status = store.status();
        assert!(status.keys_too_old && !status.ready);
        assert_eq!(status.max_key_age_secs, 60);
        assert_eq!(status.last_refresh_secs, Some(61));
    }

    #[test]
    fn jwk_alg_must_fit_its_family() {
        let body = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-claims-rs", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        assert!(parse_jwks(body.to_string().as_bytes()).unwrap().is_empty());
    }
}
