//! An in-test OpenID Connect issuer: discovery and JWKS on loopback, RSA, EC and Ed25519
//! keys, key rotation, an outage switch and a slow-JWKS switch. Test keys only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

/// Key kinds the test issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ec,
    Ed,
}

/// One signing key with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub kind: KeyKind,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// PEM of the public key (for the HS256-with-public-key attack).
    pub public_pem: String,
}

impl TestKey {
    pub fn generate(kind: KeyKind, kid: &str) -> TestKey {
        let (alg, jwk_alg) = match kind {
            KeyKind::Rsa => (&rcgen::PKCS_RSA_SHA256, "RS256"),
            KeyKind::Ec => (&rcgen::PKCS_ECDSA_P256_SHA256, "ES256"),
            KeyKind::Ed => (&rcgen::PKCS_ED25519, "EdDSA"),
        };
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let pem = pair.serialize_pem();
        let raw = pair.public_key_raw().to_vec();
        let public_pem = pair.public_key_pem();
        let (encoding, mut jwk) = match kind {
            KeyKind::Rsa => {
                let (n, e) = rsa_components(&raw);
                (
                    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                    json!({"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)}),
                )
            }
            KeyKind::Ec => (
                EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}),
            ),
            KeyKind::Ed => (
                EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&raw)}),
            ),
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if kind != KeyKind::Rsa {
            jwk["alg"] = json!(jwk_alg);
        }
        TestKey {
            kid: kid.to_string(),
            kind,
            encoding,
            jwk,
            public_pem,
        }
    }

    pub fn default_algorithm(&self) -> Algorithm {
        match self.kind {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec => Algorithm::ES256,
            KeyKind::Ed => Algorithm::EdDSA,
        }
    }
}

/// PKCS#1 RSAPublicKey DER (SEQUENCE { INTEGER n, INTEGER e }) → (n, e) without leading zeros.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read_len(bytes: &[u8], pos: &mut usize) -> usize {
        let first = bytes[*pos];
        *pos += 1;
        if first < 0x80 {
            return first as usize;
        }
        let n = (first & 0x7f) as usize;
        let mut len = 0usize;
        for _ in 0..n {
            len = (len << 8) | bytes[*pos] as usize;
            *pos += 1;
        }
        len
    }
    fn read_int(bytes: &[u8], pos: &mut usize) -> Vec<u8> {
        assert_eq!(bytes[*pos], 0x02, "INTEGER expected");
        *pos += 1;
        let len = read_len(bytes, pos);
        let mut value = bytes[*pos..*pos + len].to_vec();
        *pos += len;
        while value.len() > 1 && value[0] == 0 {
            value.remove(0);
        }
        value
    }
    let mut pos = 0;
    assert_eq!(der[pos], 0x30, "SEQUENCE expected");
    pos += 1;
    let _ = read_len(der, &mut pos);
    let n = read_int(der, &mut pos);
    let e = read_int(der, &mut pos);
    (n, e)
}

struct IssuerState {
    issuer: String,
    keys: Mutex<Vec<Arc<TestKey>>>,
    down: AtomicBool,
    jwks_delay_ms: AtomicU64,
    jwks_hits: AtomicUsize,
}

/// A running test issuer.
pub struct TestIssuer {
    state: Arc<IssuerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    /// Starts with one RSA, one EC and one Ed25519 key.
    pub async fn start() -> TestIssuer {
        Self::start_with(vec![
            TestKey::generate(KeyKind::Rsa, "rsa-1"),
            TestKey::generate(KeyKind::Ec, "ec-1"),
            TestKey::generate(KeyKind::Ed, "ed-1"),
        ])
        .await
    }

    pub async fn start_with(keys: Vec<TestKey>) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(IssuerState {
            issuer: format!("http://{addr}"),
            keys: Mutex::new(keys.into_iter().map(Arc::new).collect()),
            down: AtomicBool::new(false),
            jwks_delay_ms: AtomicU64::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestIssuer { state, task }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    pub fn key(&self, kid: &str) -> Arc<TestKey> {
        self.state
            .keys
            .lock()
            .unwrap()
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
            .unwrap_or_else(|| panic!("no test key {kid}"))
    }

    /// Replaces the published keys (rotation).
    pub fn publish(&self, keys: Vec<TestKey>) {
        *self.state.keys.lock().unwrap() = keys.into_iter().map(Arc::new).collect();
    }

    /// Adds a key to the published set.
    pub fn add_key(&self, key: TestKey) {
        self.state.keys.lock().unwrap().push(Arc::new(key));
    }

    /// Outage switch: every endpoint answers 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn set_jwks_delay(&self, delay: Duration) {
        self.state
            .jwks_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Standard valid claims for `sub`, audience `passerelle`, valid for 10 minutes.
    pub fn claims(&self, sub: &str) -> Map<String, Value> {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer(), "aud": "passerelle", "sub": sub,
            "iat": now, "nbf": now, "exp": now + 600,
        })
        .as_object()
        .unwrap()
        .clone()
    }

    /// Signs `claims` with the key `kid` and its default algorithm.
    pub fn sign(&self, kid: &str, claims: &Map<String, Value>) -> String {
        let key = self.key(kid);
        let mut header = Header::new(key.default_algorithm());
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// Signs with an explicit header.
    pub fn sign_with_header(
        &self,
        kid: &str,
        header: &Header,
        claims: &Map<String, Value>,
    ) -> String {
        jsonwebtoken::encode(header, claims, &self.key(kid).encoding).unwrap()
    }
}

async fn discovery(State(state): State<Arc<IssuerState>>) -> Response {
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = &state.issuer;
    // Metadata of a server for client credentials only (RFC 8414): no authorization endpoint,
    // none of a relying party's fields; the gateway needs the issuer and the JWKS only.
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": ["client_credentials"],
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<IssuerState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = state.jwks_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys: Vec<Value> = state
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|k| k.jwk.clone())
        .collect();
    Json(json!({ "keys": keys })).into_response()
}
