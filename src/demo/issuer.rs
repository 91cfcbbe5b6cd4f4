//! The demo's local development issuer: OpenID discovery and a JWKS on loopback, signed
//! access tokens for every demo persona, and a sign-in page for the console (authorization
//! code with PKCE, [`super::login`]).
//!
//! It exists only under `passerelle demo`: its key is generated in memory at each start and
//! never written to disk, it binds 127.0.0.1 only, and nothing in `config` can name it, so
//! `passerelle serve` has no way to start or trust it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::DemoError;
pub(super) use super::personas::{PERSONAS, Persona, persona};
use crate::config::IssuerConfig;

/// Audience of the tokens the development issuer signs.
pub const DEMO_AUDIENCE: &str = "passerelle";

/// The console's client id at the development issuer (a public client: PKCE alone).
pub const CONSOLE_CLIENT: &str = "passerelle-console";

/// How long a demo token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

pub(super) struct Signer {
    pub(super) issuer: String,
    kid: String,
    key: EncodingKey,
    jwks: Value,
    /// Authorization codes waiting for the token endpoint (bounded, short-lived).
    pub(super) grants: super::login::Grants,
    /// The NIR the citizen persona's ID token asserts, once the demo has chosen one.
    citizen_nir: std::sync::RwLock<Option<String>>,
}

/// A running development issuer.
pub struct DevIssuer {
    signer: std::sync::Arc<Signer>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DevIssuer {
    /// Generates an ES256 key in memory and serves discovery + JWKS on 127.0.0.1.
    pub async fn start() -> Result<Self, DemoError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| DemoError::Issuer(format!("cannot bind loopback: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| DemoError::Issuer(e.to_string()))?;
        let issuer = format!("http://{addr}");
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| DemoError::Issuer(format!("key generation failed: {e}")))?;
        let key = EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes())
            .map_err(|e| DemoError::Issuer(format!("signing key refused: {e}")))?;
        let point = key_pair.public_key_raw();
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        if point.len() != 65 || point[0] != 4 {
            return Err(DemoError::Issuer("unexpected public key encoding".into()));
        }
        let kid = {
            use sha2::Digest;
            URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(point)[..12])
        };
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let signer = std::sync::Arc::new(Signer {
            issuer,
            kid,
            key,
            jwks,
            grants: Default::default(),
            citizen_nir: std::sync::RwLock::new(None),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks_handler))
            .route("/token/{persona}", get(token_handler))
            .route(
                "/authorize",
                get(super::login::authorize_page).post(super::login::authorize),
            )
            .route("/oauth/token", axum::routing::post(super::login::token))
            .with_state(signer.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "development issuer stopped");
            }
        });
        Ok(Self { signer, addr, task })
    }

    pub fn issuer(&self) -> &str {
        &self.signer.issuer
    }

    /// The `[[identity.issuers]]` entry that trusts this issuer (in memory only).
    pub fn issuer_config(&self) -> IssuerConfig {
        // Named `demo` in policies, and trusted for every attribute its personas carry.
        let mut config = IssuerConfig::new(self.signer.issuer.clone(), DEMO_AUDIENCE)
            .asserting("demo", crate::config::ATTRIBUTES);
        config.algorithms = vec!["ES256".into()];
        // Its tokens are RFC 9068 access tokens: nothing else is taken for one.
        config.require_typ = Some("at+jwt".into());
        config
    }

    /// The `[console]` that signs in with this issuer, for a gateway served at `public_url`
    /// (its sign-in page lists the personas).
    pub fn console_config(&self, public_url: &str) -> crate::config::ConsoleConfig {
        crate::config::ConsoleConfig::new("demo", CONSOLE_CLIENT, public_url)
    }

    /// The NIR the citizen persona (`citoyen`) asserts when it signs in (a person of the hub's
    /// data, so that its journal has something to show).
    pub fn set_citizen_nir(&self, nir: &str) {
        if let Ok(mut slot) = self.signer.citizen_nir.write() {
            *slot = Some(nir.to_string());
        }
    }

    /// A signed access token for `persona`.
    pub fn token_for(&self, persona: &Persona) -> Result<String, DemoError> {
        self.signer.sign(persona)
    }

    /// Tokens for every persona, in tour order.
    pub fn all_tokens(&self) -> Result<Vec<(&'static Persona, String)>, DemoError> {
        PERSONAS
            .iter()
            .map(|p| Ok((p, self.token_for(p)?)))
            .collect()
    }
}

impl Signer {
    /// An OpenID Connect ID token for `persona`, for the console `client_id` (five minutes).
    pub(super) fn sign_id_token(
        &self,
        persona: &Persona,
        client_id: &str,
        nonce: &str,
    ) -> Result<String, DemoError> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(client_id));
        claims.insert("sub".into(), json!(persona.subject));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 300));
        claims.insert("nonce".into(), json!(nonce));
        claims.insert("acr".into(), json!(persona.acr.unwrap_or("eidas1")));
        if persona.id == super::personas::CITIZEN
            && let Ok(nir) = self.citizen_nir.read()
            && let Some(nir) = nir.as_ref()
        {
            claims.insert("nir".into(), json!(nir));
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| DemoError::Issuer(format!("signing failed: {e}")))
    }

    pub(super) fn sign(&self, persona: &Persona) -> Result<String, DemoError> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(DEMO_AUDIENCE));
        claims.insert("sub".into(), json!(persona.subject));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + TOKEN_LIFETIME.as_secs() as i64));
        claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
        if let Some(idp) = persona.idp_id {
            claims.insert("idp_id".into(), json!(idp));
        }
        if let Some(siret) = persona.siret {
            claims.insert("siret".into(), json!(siret));
        }
        if !persona.groups.is_empty() {
            claims.insert("groups".into(), json!(persona.groups));
        }
        if !persona.roles.is_empty() {
            claims.insert("roles".into(), json!(persona.roles));
        }
        for (name, value) in [
            ("email", persona.email),
            ("given_name", persona.given_name),
            ("usual_name", persona.usual_name),
            ("client_id", persona.client_id),
        ] {
            if let Some(value) = value {
                claims.insert(name.into(), json!(value));
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| DemoError::Issuer(format!("signing failed: {e}")))
    }
}

pub(super) type SignerState = State<std::sync::Arc<Signer>>;

async fn discovery(State(signer): SignerState) -> Json<Value> {
    let issuer = &signer.issuer;
    // Access tokens by persona, and the console's sign-in: authorization code with PKCE
    // (S256 only), for loopback redirect URIs only.
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid"],
        "grant_types_supported": ["authorization_code"],
        "acr_values_supported": ["eidas1", "eidas2", "eidas3"],
    }))
}

async fn jwks_handler(State(signer): SignerState) -> Json<Value> {
    Json(signer.jwks.clone())
}

/// `GET /token/{persona}`: a fresh token, for scripts whose printed token expired.
async fn token_handler(State(signer): SignerState, Path(id): Path<String>) -> Response {
    match persona(&id).map(|p| signer.sign(p)) {
        Some(Ok(token)) => Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs(),
        }))
        .into_response(),
        Some(Err(_)) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": "unknown persona",
                "personas": PERSONAS.iter().map(|p| p.id).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
    }
}
