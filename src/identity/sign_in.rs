//! Signing in a person in the browser (the console and the citizens' journal): OpenID Connect
//! authorization code with PKCE, through the `openidconnect` crate, against one trusted issuer.
//!
//! Owns: the authorization URL (state, nonce, S256 challenge), the code exchange, and the ID
//! token's verification (signature with the issuer's published keys, `iss`, `aud`, `exp`,
//! nonce, and the algorithms `[[identity.issuers]]` allows). The access token it returns is
//! not trusted here: the transport hands it to the gateway, which validates it like any bearer
//! token, so a session is never worth more than the token behind it.
//!
//! Must never: log or return a token except to its caller, follow an issuer's redirects, or
//! accept an ID token whose subject differs from the access token's (checked by the caller
//! with [`SignedIn::subject`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::secrecy::{ExposeSecret, SecretString};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::config::{ConsoleConfig, IdentityConfig, IssuerConfig};

/// How long the issuer's discovery document (with its keys) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Why a sign-in failed (logged with the request id; the person sees one message).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the issuer's discovery failed: {0}")]
    Discovery(String),
    #[error("the console's configuration is unusable: {0}")]
    Configuration(String),
    #[error("the token endpoint refused the code: {0}")]
    Exchange(String),
    #[error("the ID token is invalid: {0}")]
    IdToken(String),
}

/// What the browser is sent to, and what must be kept (server side) to finish the sign-in.
pub struct SignInStart {
    pub authorization_url: String,
    /// The `state` sent to the issuer: the key of the pending sign-in.
    pub state: String,
    pub pending: PendingSignIn,
}

/// A sign-in waiting for its callback (kept server side under `state`, in memory or sealed in
/// the shared sessions folder: `gateway::sessions`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PendingSignIn {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    redirect_uri: String,
}

/// A signed-in person: the access token (for the gateway to validate) and what the ID token
/// says of the sign-in.
pub struct SignedIn {
    pub access_token: SecretString,
    /// The ID token's `sub`: must be the access token's.
    pub subject: String,
    /// The ID token's `acr`, when it has one.
    pub acr: Option<String>,
    /// The ID token's `nir` (13 digits), only from an issuer trusted to assert it
    /// (`claims = ["nir"]`): the citizens' journal is keyed on it.
    pub nir: Option<SecretString>,
}

/// The console's OpenID Connect client.
pub struct SignIn {
    issuer: IssuerConfig,
    client_id: String,
    client_secret: Option<SecretString>,
    resource: Option<String>,
    http: reqwest::Client,
    discovered: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl SignIn {
    /// The client of `[console]` (its issuer must be a trusted one: checked by `config`).
    pub fn new(console: &ConsoleConfig, identity: &IdentityConfig) -> Result<Self, SignInError> {
        let issuer = identity
            .issuer_named(&console.issuer)
            .ok_or_else(|| SignInError::Configuration("console.issuer is not trusted".into()))?
            .clone();
        let client_secret = match &console.client_secret_file {
            Some(path) => Some(SecretString::from(
                crate::secret_file::read_private(path)
                    .map_err(|e| {
                        SignInError::Configuration(format!("console.client_secret_file: {e:?}"))
                    })?
                    .trim()
                    .to_string(),
            )),
            None => None,
        };
        let http =
            super::http::client(identity).map_err(|e| SignInError::Configuration(e.to_string()))?;
        Ok(Self {
            issuer,
            client_id: console.client_id.clone(),
            client_secret,
            resource: console.resource.clone(),
            http,
            discovered: Mutex::new(None),
        })
    }

    /// The issuer's metadata, fetched at most every [`DISCOVERY_TTL`].
    async fn metadata(&self) -> Result<CoreProviderMetadata, SignInError> {
        if let Ok(cached) = self.discovered.lock()
            && let Some((at, metadata)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let url = IssuerUrl::new(self.issuer.issuer.clone())
            .map_err(|e| SignInError::Configuration(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(url, &self.http)
            .await
            .map_err(|e| SignInError::Discovery(e.to_string()))?;
        if let Ok(mut cached) = self.discovered.lock() {
            *cached = Some((Instant::now(), metadata.clone()));
        }
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SignInError,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| SignInError::Configuration(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.client_id.clone()),
            self.client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_string())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in that comes back to `redirect_uri`.
    pub async fn start(&self, redirect_uri: &str) -> Result<SignInStart, SignInError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        if let Some(resource) = &self.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let (url, state, nonce) = request.url();
        Ok(SignInStart {
            authorization_url: url.to_string(),
            state: state.secret().clone(),
            pending: PendingSignIn {
                verifier,
                nonce,
                redirect_uri: redirect_uri.to_string(),
            },
        })
    }

    /// Finishes a sign-in: the code for tokens, the ID token verified.
    pub async fn finish(
        &self,
        pending: PendingSignIn,
        code: &str,
    ) -> Result<SignedIn, SignInError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata, &pending.redirect_uri)?;
        let mut exchange = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SignInError::Configuration(e.to_string()))?
            .set_pkce_verifier(pending.verifier);
        if let Some(resource) = &self.resource {
            exchange = exchange.add_extra_param("resource", resource.clone());
        }
        let tokens = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| SignInError::Exchange(e.to_string()))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SignInError::IdToken("the token response has none".into()))?;
        // SECURITY: only the algorithms this issuer is trusted with, never `none` or HMAC.
        let allowed: Vec<CoreJwsSigningAlgorithm> = self
            .issuer
            .algorithms
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect();
        let verifier = client.id_token_verifier().set_allowed_algs(allowed);
        let claims = id_token
            .claims(&verifier, &pending.nonce)
            .map_err(|e| SignInError::IdToken(e.to_string()))?;
        // The access token's hash, when the ID token binds it (`at_hash`).
        if let Some(expected) = claims.access_token_hash() {
            let (Ok(alg), Ok(key)) = (id_token.signing_alg(), id_token.signing_key(&verifier))
            else {
                return Err(SignInError::IdToken("cannot check at_hash".into()));
            };
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| SignInError::IdToken(e.to_string()))?;
            if actual != *expected {
                return Err(SignInError::IdToken("at_hash does not match".into()));
            }
        }
        // The `nir` claim, read from the payload whose signature was just verified (the
        // crate's standard claims have no field for it), and only from an issuer trusted to
        // assert it.
        let nir = if self.issuer.asserts("nir") {
            verified_claim(&id_token.to_string(), "nir")
                .filter(|n| n.len() == 13 && n.bytes().all(|b| b.is_ascii_digit()))
                .map(SecretString::from)
        } else {
            None
        };
        Ok(SignedIn {
            access_token: SecretString::from(tokens.access_token().secret().clone()),
            subject: claims.subject().as_str().to_string(),
            acr: claims.auth_context_ref().map(|a| a.as_str().to_string()),
            nir,
        })
    }
}

/// A string claim of a compact JWT whose signature has been verified by the caller.
fn verified_claim(jwt: &str, name: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}
