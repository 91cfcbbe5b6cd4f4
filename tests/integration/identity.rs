//! Authentication attacks and key lifecycle, against the real server and the in-test issuer.
//! Every refusal must be the same 401 with `WWW-Authenticate: Bearer error="invalid_token"`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::issuer::{KeyKind, TestIssuer, TestKey};
use crate::support::{TestServer, trust};

struct Setup {
    issuer: TestIssuer,
    server: TestServer,
}

async fn setup() -> Setup {
    let issuer = TestIssuer::start().await;
    let server = TestServer::start(vec![trust(&issuer.issuer())]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    Setup { issuer, server }
}

/// Asserts the one 401 answer, and returns its body without the request id.
async fn assert_refused(server: &TestServer, token: &str) -> Value {
    let response = server.get("/v1/me", Some(token)).await;
    assert_eq!(response.status(), 401, "token should be refused");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let mut body: Value = response.json().await.unwrap();
    body.as_object_mut().unwrap().remove("request_id");
    body
}

async fn assert_accepted(server: &TestServer, token: &str) -> Value {
    let response = server.get("/v1/me", Some(token)).await;
    assert_eq!(response.status(), 200, "token should be accepted");
    response.json().await.unwrap()
}

fn unsigned(header: Value, claims: &serde_json::Map<String, Value>, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(Value::Object(claims.clone()).to_string()),
        signature
    )
}

#[tokio::test]
async fn valid_tokens_of_each_key_kind_are_accepted_and_mapped() {
    let s = setup().await;
    let mut claims = s.issuer.claims("agent-1");
    claims.insert("idp_id".into(), json!("idp-a"));
    claims.insert("siret".into(), json!("13000170500016"));
    claims.insert("groups".into(), json!(["projet-diabete"]));
    claims.insert("roles".into(), json!(["operateur"]));
    claims.insert("email".into(), json!("a@example.fr"));
    for kid in ["rsa-1", "ec-1", "ed-1"] {
        let body = assert_accepted(&s.server, &s.issuer.sign(kid, &claims)).await;
        let p = &body["principal"];
        assert_eq!(p["subject"], "agent-1");
        assert_eq!(p["idp_id"], "idp-a");
        assert_eq!(p["organisation_siret"], "13000170500016");
        assert_eq!(p["groups"], json!(["projet-diabete"]));
        assert_eq!(p["roles"], json!(["operateur"]));
        assert_eq!(p["issuer"], s.issuer.issuer());
    }
    // PS256 with the RSA key (its JWK has no `alg`, so RSA's family applies).
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("rsa-1".into());
    assert_accepted(
        &s.server,
        &s.issuer.sign_with_header("rsa-1", &header, &claims),
    )
    .await;
}

#[tokio::test]
async fn missing_claims_stay_missing() {
    let s = setup().await;
    let body = assert_accepted(&s.server, &s.issuer.sign("ec-1", &s.issuer.claims("x"))).await;
    assert!(body["principal"]["organisation_siret"].is_null());
    assert!(body["principal"]["idp_id"].is_null());
    assert_eq!(body["principal"]["groups"], json!([]));
}

#[tokio::test]
async fn malformed_siret_claim_stays_missing() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.insert("siret".into(), json!("13000170500016 OR 1=1"));
    let body = assert_accepted(&s.server, &s.issuer.sign("ec-1", &claims)).await;
    assert!(body["principal"]["organisation_siret"].is_null());
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = setup().await;
    let claims = s.issuer.claims("attacker");
    for alg in ["none", "None", "NONE"] {
        let token = unsigned(json!({"alg": alg, "kid": "ec-1"}), &claims, "");
        assert_refused(&s.server, &token).await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let s = setup().await;
    let key = s.issuer.key("rsa-1");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &s.issuer.claims("attacker"),
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .unwrap();
    assert_refused(&s.server, &token).await;
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let s = setup().await;
    let token = s.issuer.sign("ec-1", &s.issuer.claims("citizen"));
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = s.issuer.claims("citizen");
    claims.insert("roles".into(), json!(["operateur"]));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(Value::Object(claims).to_string()),
        parts[2]
    );
    assert_refused(&s.server, &forged).await;
}

#[tokio::test]
async fn unknown_kid_is_refused_after_one_refresh() {
    let s = setup().await;
    let stranger = TestKey::generate(KeyKind::Ec, "not-published");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("not-published".into());
    let token = jsonwebtoken::encode(&header, &s.issuer.claims("x"), &stranger.encoding).unwrap();
    assert_refused(&s.server, &token).await;
}

#[tokio::test]
async fn unknown_kid_floods_do_not_hammer_the_issuer() {
    let issuer = TestIssuer::start().await;
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&issuer.issuer())];
    config.identity.jwks_min_refresh_secs = 60;
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let before = issuer.jwks_hits();
    for i in 0..20 {
        let stranger = TestKey::generate(KeyKind::Ec, &format!("flood-{i}"));
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(format!("flood-{i}"));
        let token = jsonwebtoken::encode(&header, &issuer.claims("x"), &stranger.encoding).unwrap();
        assert_refused(&server, &token).await;
    }
    assert!(
        issuer.jwks_hits() - before <= 1,
        "unknown kids caused {} JWKS fetches",
        issuer.jwks_hits() - before
    );
}

#[tokio::test]
async fn embedded_jwk_header_is_ignored() {
    let s = setup().await;
    let attacker = TestKey::generate(KeyKind::Ec, "ec-1");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    header.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
    header.jku = Some(format!("{}/jwks", s.issuer.issuer()));
    let token = jsonwebtoken::encode(&header, &s.issuer.claims("x"), &attacker.encoding).unwrap();
    assert_refused(&s.server, &token).await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    let now = chrono::Utc::now().timestamp();
    claims.insert("exp".into(), json!(now - 120));
    claims.insert("iat".into(), json!(now - 900));
    claims.insert("nbf".into(), json!(now - 900));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

/// A token accepted once is remembered (no second signature check), but never past its
/// `exp`: the same bytes are refused once expired.
#[tokio::test]
async fn a_token_accepted_before_is_refused_once_expired() {
    let issuer = TestIssuer::start().await;
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&issuer.issuer())];
    config.identity.leeway_secs = 0;
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let mut claims = issuer.claims("x");
    let now = chrono::Utc::now().timestamp();
    claims.insert("exp".into(), json!(now + 2));
    let token = issuer.sign("ec-1", &claims);
    assert_accepted(&server, &token).await;
    assert_accepted(&server, &token).await;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_refused(&server, &token).await;
}

#[tokio::test]
async fn leeway_tolerates_small_clock_skew() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    let now = chrono::Utc::now().timestamp();
    claims.insert("exp".into(), json!(now - 20));
    claims.insert("nbf".into(), json!(now + 20));
    claims.insert("iat".into(), json!(now + 20));
    assert_accepted(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn not_yet_valid_token_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.insert("nbf".into(), json!(chrono::Utc::now().timestamp() + 600));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn token_issued_in_the_future_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.insert("iat".into(), json!(chrono::Utc::now().timestamp() + 600));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn token_without_iat_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.remove("iat");
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.insert("iss".into(), json!("https://evil.example"));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

/// Issuer confusion: a second trusted issuer, trusted for subjects only, mints a token whose
/// `groups`, `roles` and `siret` are a researcher's and the operator's: they are ignored (its
/// principal has none), so it gets no habilitation and no operator right, while the same
/// claims from the issuer trusted for them work. A hub whose rules two issuers could satisfy
/// does not start.
#[tokio::test]
async fn attributes_count_only_from_an_issuer_trusted_for_them() {
    let trusted = TestIssuer::start().await;
    let other = TestIssuer::start().await;
    let mut subjects_only = trust(&other.issuer());
    subjects_only.claims.clear();
    subjects_only.name = Some("partenaire".into());
    let server = TestServer::start(vec![trust(&trusted.issuer()), subjects_only.clone()]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let claims = |issuer: &TestIssuer| {
        let mut claims = issuer.claims("same-subject");
        claims.insert("groups".into(), json!(["projet-diabete"]));
        claims.insert("roles".into(), json!(["operateur"]));
        claims.insert("siret".into(), json!("11000400700016"));
        claims
    };
    let from_trusted = trusted.sign("ec-1", &claims(&trusted));
    let me = assert_accepted(&server, &from_trusted).await;
    assert_eq!(me["principal"]["groups"], json!(["projet-diabete"]), "{me}");
    let r = server.get("/v1/admin/policy", Some(&from_trusted)).await;
    assert_eq!(r.status(), 200, "the trusted issuer's operator");

    let from_other = other.sign("ec-1", &claims(&other));
    let me = assert_accepted(&server, &from_other).await;
    assert_eq!(me["principal"]["groups"], json!([]), "{me}");
    assert_eq!(me["principal"]["roles"], json!([]), "{me}");
    assert!(me["principal"]["organisation_siret"].is_null(), "{me}");
    assert_eq!(me["habilitations"], json!([]), "{me}");
    let r = server.get("/v1/admin/policy", Some(&from_other)).await;
    assert_eq!(r.status(), 403, "roles from an issuer not trusted for them");
    let r = server
        .client
        .post(server.url("/v1/query"))
        .bearer_auth(&from_other)
        .json(&json!({"sql": "SELECT count(*) FROM sante.sejours"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Both trusted for the attributes the demo rules use: refused at start, naming the rules.
    let mut both = subjects_only;
    both.claims = vec!["groups".into(), "roles".into(), "organisation".into()];
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&trusted.issuer()), both];
    let refused = passerelle::hub::start(config)
        .await
        .err()
        .expect("an ambiguous hub does not start");
    let text = refused.to_string();
    assert!(
        text.contains("several trusted issuers could satisfy this rule")
            && text.contains("`partenaire`")
            && text.contains("habilitation `projet-diabete`"),
        "{text}"
    );
}

#[tokio::test]
async fn token_of_one_trusted_issuer_cannot_claim_another() {
    // Two trusted issuers: a token signed by A's key but naming B as `iss` is checked with
    // B's keys only, and fails.
    let a = TestIssuer::start().await;
    let b = TestIssuer::start().await;
    // B authenticates subjects only (the demo rules are not bound to an issuer: only one
    // trusted issuer may assert what they use).
    let mut subjects_only = trust(&b.issuer());
    subjects_only.claims.clear();
    let server = TestServer::start(vec![trust(&a.issuer()), subjects_only]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    assert_accepted(&server, &a.sign("ec-1", &a.claims("from-a"))).await;
    assert_accepted(&server, &b.sign("ec-1", &b.claims("from-b"))).await;
    let mut claims = a.claims("x");
    claims.insert("iss".into(), json!(b.issuer()));
    assert_refused(&server, &a.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.insert("aud".into(), json!("another-api"));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

/// With `require_typ = "at+jwt"` (RFC 9068), only access tokens: an ID token or any other JWT
/// the issuer signs (`typ` absent, `JWT`) is refused; `application/at+jwt` is the same type.
#[tokio::test]
async fn require_typ_refuses_other_token_types() {
    let issuer = TestIssuer::start().await;
    let mut config = trust(&issuer.issuer());
    config.require_typ = Some("at+jwt".into());
    let server = TestServer::start(vec![config]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let claims = issuer.claims("x");
    let with_typ = |typ: Option<&str>| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        header.typ = typ.map(str::to_string);
        issuer.sign_with_header("ec-1", &header, &claims)
    };
    assert_accepted(&server, &with_typ(Some("at+jwt"))).await;
    assert_accepted(&server, &with_typ(Some("application/AT+JWT"))).await;
    assert_refused(&server, &with_typ(Some("JWT"))).await;
    assert_refused(&server, &with_typ(None)).await;
    // Without the setting (the default), any type goes.
    let s = setup().await;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    header.typ = Some("JWT".into());
    assert_accepted(
        &s.server,
        &s.issuer
            .sign_with_header("ec-1", &header, &s.issuer.claims("x")),
    )
    .await;
}

#[tokio::test]
async fn missing_audience_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.remove("aud");
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn missing_sub_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.remove("sub");
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
    claims.insert("sub".into(), json!(""));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn claim_of_unexpected_type_is_refused() {
    let s = setup().await;
    let mut claims = s.issuer.claims("x");
    claims.insert("groups".into(), json!({"admin": true}));
    assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await;
}

#[tokio::test]
async fn oversized_token_is_refused() {
    // Over `identity.max_token_bytes`: refused before any parsing, with the usual 401.
    let issuer = TestIssuer::start().await;
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&issuer.issuer())];
    config.identity.max_token_bytes = 4096;
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let mut claims = issuer.claims("x");
    claims.insert("padding".into(), json!("A".repeat(4_000)));
    assert_refused(&server, &issuer.sign("ec-1", &claims)).await;
    // Far larger than any header limit: refused by the HTTP layer (431), never served.
    claims.insert("padding".into(), json!("A".repeat(40_000)));
    let huge = server
        .get("/v1/me", Some(&issuer.sign("ec-1", &claims)))
        .await;
    assert!(
        huge.status() == 431 || huge.status() == 401,
        "{}",
        huge.status()
    );
}

#[tokio::test]
async fn token_in_the_query_string_is_refused() {
    let s = setup().await;
    let token = s.issuer.sign("ec-1", &s.issuer.claims("x"));
    for name in ["access_token", "token", "bearer"] {
        let response = s
            .server
            .client
            .get(s.server.url(&format!("/v1/me?{name}={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
}

#[tokio::test]
async fn garbage_and_other_schemes_are_refused_identically() {
    let s = setup().await;
    let reference = assert_refused(&s.server, "garbage").await;
    for token in ["a.b.c", "....", "eyJ.eyJ.sig", "%00%0a", &"x".repeat(5000)] {
        assert_eq!(assert_refused(&s.server, token).await, reference);
    }
    // Other schemes and no header at all: the same answer.
    let basic = s
        .server
        .client
        .get(s.server.url("/v1/me"))
        .header("Authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let mut body: Value = basic.json().await.unwrap();
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(body, reference);
    let none = s.server.get("/v1/me", None).await;
    assert_eq!(none.status(), 401);
    let mut body: Value = none.json().await.unwrap();
    body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(body, reference);
    // An expired but well-signed token gets the very same body too.
    let mut claims = s.issuer.claims("x");
    claims.insert("exp".into(), json!(chrono::Utc::now().timestamp() - 3600));
    assert_eq!(
        assert_refused(&s.server, &s.issuer.sign("ec-1", &claims)).await,
        reference
    );
}

#[tokio::test]
async fn algorithm_outside_the_issuer_allow_list_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut entry = trust(&issuer.issuer());
    entry.algorithms = vec!["ES256".into()];
    let server = TestServer::start(vec![entry]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    assert_accepted(&server, &issuer.sign("ec-1", &issuer.claims("x"))).await;
    assert_refused(&server, &issuer.sign("rsa-1", &issuer.claims("x"))).await;
    assert_refused(&server, &issuer.sign("ed-1", &issuer.claims("x"))).await;
}

#[tokio::test]
async fn key_used_with_another_algorithm_than_its_own_is_refused() {
    // The EC key is published with alg ES256: an RS256 header naming it must fail, and the
    // RSA key's token relabelled ES256 too.
    let s = setup().await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".into());
    let token = s
        .issuer
        .sign_with_header("rsa-1", &header, &s.issuer.claims("x"));
    assert_refused(&s.server, &token).await;
}

#[tokio::test]
async fn key_rotation_is_picked_up_without_restart() {
    let s = setup().await;
    let old_token = s.issuer.sign("ec-1", &s.issuer.claims("before"));
    assert_accepted(&s.server, &old_token).await;
    s.issuer
        .publish(vec![TestKey::generate(KeyKind::Ec, "ec-2")]);
    let new_token = s.issuer.sign("ec-2", &s.issuer.claims("after"));
    assert_accepted(&s.server, &new_token).await;
    // The retired key stays valid for the grace period.
    assert_accepted(&s.server, &old_token).await;
}

#[tokio::test]
async fn retired_key_is_refused_after_its_grace_period() {
    let issuer = TestIssuer::start().await;
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&issuer.issuer())];
    config.identity.retired_key_grace_secs = 0;
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let old_token = issuer.sign("ec-1", &issuer.claims("before"));
    assert_accepted(&server, &old_token).await;
    issuer.publish(vec![TestKey::generate(KeyKind::Ec, "ec-2")]);
    assert_accepted(&server, &issuer.sign("ec-2", &issuer.claims("after"))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_refused(&server, &old_token).await;
}

#[tokio::test]
async fn issuer_outage_keeps_serving_with_cached_keys() {
    let s = setup().await;
    s.issuer.set_down(true);
    assert_accepted(&s.server, &s.issuer.sign("rsa-1", &s.issuer.claims("x"))).await;
    // Unknown kid while the issuer is down: 401.
    s.issuer.add_key(TestKey::generate(KeyKind::Ec, "ec-new"));
    assert_refused(&s.server, &s.issuer.sign("ec-new", &s.issuer.claims("x"))).await;
    assert_eq!(s.server.get("/health/ready", None).await.status(), 200);
}

/// `identity.max_key_age_secs`: while the issuer is unreachable its cached keys serve for
/// that long after the last successful JWKS fetch (an unknown `kid` is refused meanwhile);
/// then every token of the issuer is refused, even one verified before, and readiness drops,
/// until the issuer answers again.
#[tokio::test]
async fn cached_keys_serve_an_outage_only_up_to_their_maximum_age() {
    let issuer = TestIssuer::start().await;
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&issuer.issuer())];
    config.identity.jwks_refresh_secs = 1;
    config.identity.max_key_age_secs = 3;
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let token = issuer.sign("ec-1", &issuer.claims("x"));
    assert_accepted(&server, &token).await;

    issuer.set_down(true);
    let down = std::time::Instant::now();
    // Within the maximum age: cached keys serve, a new kid is refused.
    assert_accepted(&server, &token).await;
    assert_accepted(&server, &issuer.sign("rsa-1", &issuer.claims("y"))).await;
    issuer.add_key(TestKey::generate(KeyKind::Ec, "ec-new"));
    assert_refused(&server, &issuer.sign("ec-new", &issuer.claims("x"))).await;
    let ready = server.get("/health/ready", None).await;
    assert_eq!(ready.status(), 200);
    let body: Value = server.readiness();
    let status = &body["checks"]["identity"]["issuers"][0];
    assert_eq!(status["max_key_age_secs"], 3, "{body}");
    assert_eq!(status["keys_too_old"], false, "{body}");
    assert!(
        down.elapsed() < Duration::from_secs(2),
        "the test ran too slowly"
    );

    // Past it: fail closed.
    let mut body = Value::Null;
    for _ in 0..100 {
        body = server.readiness();
        if body["checks"]["identity"]["issuers"][0]["keys_too_old"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = &body["checks"]["identity"]["issuers"][0];
    assert_eq!(status["keys_too_old"], true, "{body}");
    assert_eq!(status["ready"], false, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert!(status["last_refresh_secs"].as_u64().unwrap() >= 3, "{body}");
    assert_refused(&server, &token).await;
    assert_refused(&server, &issuer.sign("rsa-1", &issuer.claims("z"))).await;

    // The issuer is back: keys are fresh again.
    issuer.set_down(false);
    server.wait_ready(Duration::from_secs(10)).await;
    assert_accepted(&server, &token).await;
}

#[test]
fn the_maximum_key_age_must_exceed_the_refresh_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passerelle.toml");
    std::fs::write(
        &path,
        "[server]\ntls_cert = \"c\"\ntls_key = \"k\"\n\n[identity]\njwks_refresh_secs = 300\nmax_key_age_secs = 300\n",
    )
    .unwrap();
    let err = passerelle::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("identity.max_key_age_secs"), "{err}");
    assert!(err.contains("jwks_refresh_secs"), "{err}");
    let config: passerelle::config::Config =
        toml::from_str("[server]\ntls_cert = \"c\"\ntls_key = \"k\"\n").unwrap();
    assert_eq!(
        config.identity.max_key_age_secs,
        24 * 3600,
        "default: a day"
    );
}

#[tokio::test]
async fn issuer_down_at_start_means_not_ready_until_keys_load() {
    let issuer = TestIssuer::start().await;
    issuer.set_down(true);
    let server = TestServer::start(vec![trust(&issuer.issuer())]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = server.get("/health/ready", None).await;
    assert_eq!(ready.status(), 503);
    let body: Value = server.readiness();
    assert_eq!(body["checks"]["identity"]["ready"], false);
    assert_refused(&server, &issuer.sign("ec-1", &issuer.claims("x"))).await;
    issuer.set_down(false);
    server.wait_ready(Duration::from_secs(15)).await;
    assert_accepted(&server, &issuer.sign("ec-1", &issuer.claims("x"))).await;
}

#[tokio::test]
async fn untrusted_plain_http_issuer_in_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passerelle.toml");
    std::fs::write(
        &path,
        "[server]\ntls_cert = \"c\"\ntls_key = \"k\"\n\n[[identity.issuers]]\nissuer = \"http://auth.example.gouv.fr\"\naudience = \"passerelle\"\n",
    )
    .unwrap();
    let err = passerelle::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("identity.issuers[0].issuer"), "{err}");
    assert!(err.contains("passerelle.toml:6"), "{err}");
}

struct ClientCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn client_ca(name: &str) -> ClientCa {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    ClientCa {
        issuer: rcgen::Issuer::new(params, key),
        pem: cert.pem(),
    }
}

/// A client certificate signed by `ca`: (identity PEM, DER of the certificate).
fn client_cert(ca: &ClientCa, name: &str) -> (Vec<u8>, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec![format!("{name}.example")]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    (pem.into_bytes(), cert.der().to_vec())
}

fn mtls_client(identity_pem: Option<&[u8]>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().add_root_certificate(
        reqwest::Certificate::from_pem(&crate::support::hub().ca_pem()).unwrap(),
    );
    if let Some(pem) = identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn certificate_bound_token_needs_the_presented_certificate() {
    let issuer = TestIssuer::start().await;
    let ca = client_ca("administrations CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![trust(&issuer.issuer())];
    config.server.client_ca = Some(ca_path);
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;

    let (a_pem, a_der) = client_cert(&ca, "caf-server-a");
    let (b_pem, _) = client_cert(&ca, "other-server-b");
    let thumbprint = passerelle::identity::ClientCertificate::from_der(&a_der).thumbprint;
    let mut claims = issuer.claims("caf-si");
    claims.insert("cnf".into(), json!({ "x5t#S256": thumbprint }));
    let bound = issuer.sign("ec-1", &claims);

    let me = |client: reqwest::Client, token: String| {
        let url = server.url("/v1/me");
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let with_a = me(mtls_client(Some(&a_pem)), bound.clone()).await;
    assert_eq!(with_a.status(), 200);
    let body: Value = with_a.json().await.unwrap();
    assert_eq!(body["principal"]["certificate_bound"], true);
    assert_eq!(body["principal"]["client_certificate"], json!(thumbprint));

    // Replayed from another certificate, or without one: refused.
    assert_eq!(
        me(mtls_client(Some(&b_pem)), bound.clone()).await.status(),
        401
    );
    assert_eq!(me(mtls_client(None), bound).await.status(), 401);

    // An unbound token still works without a certificate (researchers need none).
    let plain = issuer.sign("ec-1", &issuer.claims("chercheur"));
    let body: Value = me(mtls_client(None), plain).await.json().await.unwrap();
    assert_eq!(body["principal"]["certificate_bound"], false);

    // A certificate from a CA the hub does not trust fails the handshake.
    let stranger_ca = client_ca("unknown CA");
    let (s_pem, _) = client_cert(&stranger_ca, "stranger");
    let result = mtls_client(Some(&s_pem))
        .get(server.url("/health/live"))
        .send()
        .await;
    assert!(
        result.is_err(),
        "an untrusted client certificate must fail the handshake"
    );
}
