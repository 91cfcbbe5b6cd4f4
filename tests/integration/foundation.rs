//! The skeleton: HTTPS only, HTTP/1.1 and HTTP/2, request ids, problem answers, health,
//! metrics, graceful shutdown, and `serve` never trusting the demo's development issuer.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::issuer::TestIssuer;
use crate::support::{TestServer, hub, trust};

#[tokio::test]
async fn health_answers_over_tls_with_http2_and_http1() {
    let server = TestServer::start(vec![]).await;
    let live = server.get("/health/live", None).await;
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.version(),
        reqwest::Version::HTTP_2,
        "ALPN should pick h2"
    );

    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&hub().ca_pem()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let live = http1.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn plain_http_gets_no_http_answer() {
    let server = TestServer::start(vec![]).await;
    let addr = server.base.trim_start_matches("https://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a plain HTTP request must not get an HTTP answer"
    );
}

#[tokio::test]
async fn ready_is_true_with_no_issuer_and_says_nothing_more() {
    let server = TestServer::start(vec![]).await;
    let ready = server.get("/health/ready", None).await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    // SECURITY: publicly, ready or not and nothing more (see
    // `the_public_surface_says_ready_or_not_and_the_details_are_the_operators`).
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    let details = server.readiness();
    let datasets = details["checks"]["data"]["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 4, "{details}");
}

#[tokio::test]
async fn the_public_surface_says_ready_or_not_and_the_details_are_the_operators() {
    let h = crate::support::DemoServer::start_with(|_| {}).await;
    let server = &h.server;
    // Public: no dataset, issuer, policy version or activity.
    let public = server
        .get("/health/ready", None)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(public, r#"{"status":"ready"}"#);
    for secret in ["sante", "fiscal", "issuer", "version", "http"] {
        assert!(!public.contains(secret), "{public}");
    }
    // The operators' view.
    let operator = h.token("operateur");
    let details = server.get("/v1/admin/health", Some(&operator)).await;
    assert_eq!(details.status(), 200);
    let details: serde_json::Value = details.json().await.unwrap();
    assert_eq!(details["status"], "ready");
    assert_eq!(
        details["checks"]["data"]["datasets"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(details["checks"]["policy"]["version"].as_str().is_some());
    assert!(
        details["checks"]["identity"]["issuers"][0]["issuer"].is_string(),
        "{details}"
    );
    let researcher = h.token("chercheuse-diabete");
    assert_eq!(
        server
            .get("/v1/admin/health", Some(&researcher))
            .await
            .status(),
        403
    );
    assert_eq!(server.get("/v1/admin/health", None).await.status(), 401);

    // Metrics: on the main listener for operators only; on the metrics listener (loopback).
    assert_eq!(server.get("/metrics", None).await.status(), 401);
    assert_eq!(
        server.get("/metrics", Some(&researcher)).await.status(),
        403
    );
    let metrics = server.get("/metrics", Some(&operator)).await;
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("passerelle_http_requests_total")
    );
    let listener = server
        .client
        .get(server.metrics_url())
        .send()
        .await
        .unwrap();
    assert_eq!(listener.status(), 200);
    assert!(
        listener
            .text()
            .await
            .unwrap()
            .contains("passerelle_http_requests_total")
    );
    // … and nothing else there.
    let other = server
        .client
        .get(server.metrics_url().replace("/metrics", "/v1/me"));
    assert_eq!(other.send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn the_request_id_is_always_the_servers() {
    // A client's own id is never echoed in its place (the audit keeps it apart: see
    // `audit_requests::the_record_holds_the_servers_id_and_the_whole_statement`).
    let server = TestServer::start(vec![]).await;
    let mut seen = Vec::new();
    for sent in [
        "client-abc-123",
        "client-abc-123",
        "<script>alert(1)</script>",
    ] {
        let r = server
            .client
            .get(server.url("/health/live"))
            .header("X-Request-ID", sent)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a generated UUID: {id}");
        assert!(!seen.contains(&id));
        seen.push(id);
    }
    let generated = server.get("/health/live", None).await;
    assert!(generated.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn errors_are_problem_json_with_code_and_request_id() {
    let server = TestServer::start(vec![]).await;
    let response = server
        .client
        .get(server.url("/no/such/route"))
        .header("X-Request-ID", "probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["code"], "not_found");
    assert_eq!(
        body["request_id"],
        response_id.as_str(),
        "the body carries the server's id, as the header does"
    );
    assert!(body["type"].as_str().unwrap().ends_with("/not_found"));

    let wrong_method = server
        .client
        .post(server.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_route_templates() {
    let server = TestServer::start(vec![]).await;
    server.get("/health/live", None).await;
    let metrics = server
        .client
        .get(server.metrics_url())
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("passerelle_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/health/live\""), "{text}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    // A request held in flight by a slow JWKS refresh (the token names a new key id).
    let issuer = TestIssuer::start().await;
    let server = TestServer::start(vec![trust(&issuer.issuer())]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    issuer.add_key(crate::support::issuer::TestKey::generate(
        crate::support::issuer::KeyKind::Ec,
        "ec-late",
    ));
    issuer.set_jwks_delay(Duration::from_millis(1500));
    let token = issuer.sign("ec-late", &issuer.claims("slow-caller"));
    let request = server
        .client
        .get(server.url("/v1/me"))
        .bearer_auth(token)
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = server.client.clone();
    let url = server.url("/health/live");
    server.shutdown(Duration::from_secs(10)).await;
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200, "the in-flight request completed");
    assert!(
        client.get(url).send().await.is_err(),
        "no new connection after shutdown"
    );
}

#[tokio::test]
async fn serve_never_trusts_the_demo_development_issuer() {
    // `serve` trusts only configured issuers: a token minted by a running development issuer
    // is refused by a hub whose configuration does not list it.
    let dev = passerelle::demo::DevIssuer::start().await.unwrap();
    let persona = passerelle::demo::personas::persona("chercheuse-diabete").unwrap();
    let token = dev.token_for(persona).unwrap();
    let server = TestServer::start(vec![]).await;
    let me = server.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status(), 401);

    // ...and no configuration key can ask for it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passerelle.toml");
    std::fs::write(
        &path,
        "[server]\ntls_cert = \"c\"\ntls_key = \"k\"\n[identity]\ndevelopment_issuer = true\n",
    )
    .unwrap();
    let err = passerelle::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("development_issuer"), "{err}");
}

#[tokio::test]
async fn demo_issuer_tokens_work_when_trusted_like_demo_does() {
    let dev = passerelle::demo::DevIssuer::start().await.unwrap();
    let server = TestServer::start(vec![dev.issuer_config()]).await;
    server.wait_ready(Duration::from_secs(10)).await;
    for (persona, token) in dev.all_tokens().unwrap() {
        let me = server.get("/v1/me", Some(&token)).await;
        assert_eq!(me.status(), 200, "{}", persona.id);
        let body: serde_json::Value = me.json().await.unwrap();
        assert_eq!(body["principal"]["subject"], persona.subject);
        assert_eq!(
            body["principal"]["organisation_siret"].as_str(),
            persona.siret
        );
    }
}

/// A panic must unwind (so that one query's panic fails that query alone): no profile of the
/// crate builds with `panic = "abort"`.
#[test]
fn nothing_builds_with_panic_abort() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    let profiles = manifest.get("profile").and_then(|p| p.as_table());
    for (name, profile) in profiles.into_iter().flatten() {
        assert_ne!(
            profile.get("panic").and_then(|p| p.as_str()),
            Some("abort"),
            "profile `{name}` aborts on panic"
        );
    }
    let config = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.cargo/config.toml"));
    if let Ok(text) = std::fs::read_to_string(config) {
        assert!(
            !text.contains("panic=abort"),
            ".cargo/config.toml aborts on panic"
        );
    }
    assert!(
        !std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .contains("panic=abort"),
        "RUSTFLAGS abort on panic"
    );
}
