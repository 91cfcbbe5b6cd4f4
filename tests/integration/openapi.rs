//! The published API document and its fuzzer.
//!
//! - `GET /openapi.json` serves, without a token, the document kept in `docs/openapi.json`
//!   (regenerate it with `cargo run -- openapi > docs/openapi.json` after changing a handler).
//! - schemathesis (PyPI, `tests/clients/requirements.txt`) calls every operation of that
//!   document against the real binary serving a copy of the demo hub, once per demo persona
//!   with a real token of the development issuer, and once without a token: every check but
//!   `positive_data_acceptance` (a schema cannot say which SQL a policy accepts), so no server
//!   error, no status, content type, header or body outside the document, schema-invalid
//!   input refused, and no operation that answers without a token. `.ci/run` installs it and
//!   sets `PASSERELLE_CLIENTS=required`; elsewhere the test is skipped when it is missing.

use std::time::{Duration, Instant};

use crate::support::child::ChildGateway;
use crate::support::{DemoServer, hub};

fn docs_document() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_one_in_docs_and_needs_no_token() {
    let h = DemoServer::start_with(|_| {}).await;
    let answer = h.server.get("/openapi.json", None).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "application/json",
        "{:?}",
        answer.headers()
    );
    let served = answer.text().await.unwrap();
    assert!(
        served == docs_document(),
        "docs/openapi.json differs from the document the hub serves: run \
         `cargo run -- openapi > docs/openapi.json` and review the diff"
    );
    let document: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    // SECURITY: the public document is the same for every hub: no software version, no
    // issuer, no policy version of this one.
    assert_eq!(document["info"]["version"], "1");
    let config = hub().config();
    for issuer in &config.identity.issuers {
        assert!(!served.contains(&issuer.issuer), "{}", issuer.issuer);
    }
    assert!(!served.contains(env!("CARGO_PKG_VERSION")));
    h.server.shutdown(Duration::from_secs(5)).await;
}

/// Whether schemathesis can run here; when it cannot, explains why the test is skipped, or
/// fails under `PASSERELLE_CLIENTS=required`.
async fn schemathesis_available() -> bool {
    let required = std::env::var("PASSERELLE_CLIENTS").is_ok_and(|v| v == "required");
    let probe = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .await;
    let missing = match probe {
        Ok(p) if p.status.success() => return true,
        Ok(p) => String::from_utf8_lossy(&p.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string(),
        Err(e) => format!("no python3: {e}"),
    };
    assert!(
        !required,
        "PASSERELLE_CLIENTS=required but schemathesis: {missing}"
    );
    eprintln!(
        "skipped: schemathesis cannot run ({missing}); \
         `pip install -r tests/clients/requirements.txt` (or .ci/run)"
    );
    false
}

/// Examples per operation and phase (`PASSERELLE_FUZZ_EXAMPLES`, 40 by default).
fn examples() -> String {
    std::env::var("PASSERELLE_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_outside_the_document_for_any_persona() {
    if !schemathesis_available().await {
        return;
    }
    // The fuzzer's unauthenticated calls are the point here, not the flood limit.
    let mut gw =
        ChildGateway::start(&[("PASSERELLE_LIMITS__UNAUTHENTICATED_PER_MINUTE", "1000000")]).await;
    let ca = hub().layout().ca_cert();
    let work = tempfile::tempdir().unwrap();
    let personas = [
        None,
        Some("chercheuse-diabete"),
        Some("chercheur-emploi"),
        Some("chercheur-expire"),
        Some("caf"),
        Some("operateur"),
    ];
    let mut failures = Vec::new();
    // One more run for a persona whose only error is Hypothesis's own flakiness (its
    // `FlakyFailure` inside schemathesis, raised while generating, before any request): a
    // failed check or any other error is never retried.
    let mut attempts: Vec<Option<&str>> = personas.to_vec();
    let mut retried = std::collections::HashSet::new();
    while let Some(persona) = attempts.pop() {
        let started = Instant::now();
        let mut command = tokio::process::Command::new("python3");
        command
            .args(["-m", "schemathesis.cli", "run"])
            .arg(gw.url("/openapi.json"))
            .arg("--tls-verify")
            .arg(&ca)
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--max-examples", &examples()])
            .args([
                "--generation-database",
                "none",
                "--no-color",
                "--workers",
                "2",
            ])
            .current_dir(work.path())
            .kill_on_drop(true);
        if let Some(persona) = persona {
            command
                .arg("--header")
                .arg(format!("Authorization: Bearer {}", gw.token(persona)));
        }
        let output = tokio::time::timeout(Duration::from_secs(600), command.output())
            .await
            .unwrap_or_else(|_| panic!("schemathesis still running after 10 min"))
            .expect("python3 -m schemathesis.cli");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let who = persona.unwrap_or("no token");
        let summary = stdout
            .lines()
            .rev()
            .find(|l| l.contains(" in ") && l.contains('='))
            .unwrap_or_default();
        println!(
            "schemathesis as {who}: {} in {:.1} s",
            summary.trim_matches(|c| c == '=' || c == ' '),
            started.elapsed().as_secs_f64()
        );
        let generator_flake = stdout.contains("hypothesis.errors.FlakyFailure")
            && stdout.contains("Runtime Error")
            && !stdout.contains("FAILURES");
        if !output.status.success() && generator_flake && retried.insert(who.to_string()) {
            println!(
                "schemathesis as {who}: Hypothesis's own FlakyFailure while generating, run again"
            );
            attempts.push(persona);
            continue;
        }
        if !output.status.success() {
            failures.push(format!(
                "as {who} ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        gw.alive(),
        "the gateway died under the fuzzer:\n{}",
        gw.log()
    );
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One TLS connection speaking HTTP/1.1 by hand: each request is written whole, then its
/// answer read (status line and headers, and a `Content-Length` body); `Err` once the
/// connection fails.
fn one_http1_connection(base: &str, requests: &[String]) -> Vec<Result<String, String>> {
    use std::io::{BufRead, BufReader, Read, Write};
    passerelle::install_crypto_provider();
    let addr = base.trim_start_matches("https://");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &hub().ca_pem()[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = BufReader::new(rustls::StreamOwned::new(tls, tcp));
    let mut answers = Vec::new();
    for request in requests {
        let answer = (|| {
            stream
                .get_mut()
                .write_all(request.as_bytes())
                .map_err(|e| e.to_string())?;
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".to_string());
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            stream.read_exact(&mut body).map_err(|e| e.to_string())?;
            Ok(head)
        })();
        let failed = answer.is_err();
        answers.push(answer);
        if failed {
            break;
        }
    }
    answers
}

/// Found by the fuzzer: a 401 answered from the headers alone left the request body unread
/// and the server closed the HTTP/1.1 connection, resetting it while the client still sent
/// (a TLS EOF instead of the 401), or failing the client's next request on it. The rest of
/// the body is now read and dropped (bounded) before the answer: the answer arrives and the
/// connection carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_before_the_body_is_read_keeps_the_http1_connection_usable() {
    let h = DemoServer::start_with(|_| {}).await;
    let body = format!("{{\"sql\": \"SELECT 1 -- {}\"}}", "x".repeat(256 * 1024));
    let unauthenticated = format!(
        "POST /v1/query HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let wrong_type = unauthenticated
        .replace("application/json", "text/plain")
        .replace(
            "host: 127.0.0.1\r\n",
            &format!(
                "host: 127.0.0.1\r\nauthorization: Bearer {}\r\n",
                h.token("chercheuse-diabete")
            ),
        );
    let live = "GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".to_string();
    let base = h.server.base.clone();
    let requests = vec![unauthenticated, live.clone(), wrong_type, live];
    let answers = tokio::task::spawn_blocking(move || one_http1_connection(&base, &requests))
        .await
        .unwrap();
    let statuses: Vec<_> = answers
        .iter()
        .map(|a| match a {
            Ok(head) => head.lines().next().unwrap_or_default().to_string(),
            Err(e) => format!("failed: {e}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 401 Unauthorized",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 415 Unsupported Media Type",
            "HTTP/1.1 200 OK"
        ]
    );
    h.server.shutdown(Duration::from_secs(5)).await;
}
