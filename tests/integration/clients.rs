//! Real clients of the query endpoint, written in Python: `tests/clients/stream_matrix.py`
//! reads every format whole in every content-coding, over HTTP/1.1 (requests, pyarrow, curl)
//! and HTTP/2 (curl), small and streamed answers; `tests/clients/docs_examples.py` runs every
//! `python` block of `docs/*.md`; `tests/clients/flight_sql.py` speaks Arrow Flight SQL with ADBC,
//! polars and `pyarrow.flight` and compares every answer with HTTPS's. Each test serves the shared hub on loopback and runs its
//! script from the repository root. `.ci/run` installs the packages of
//! `tests/clients/requirements.txt` and sets `PASSERELLE_CLIENTS=required`; elsewhere the tests
//! are skipped (with a message) when the packages or curl are missing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{DemoServer, hub};

/// What the scripts import (requirements.txt) and what the matrix runs besides Python.
const IMPORTS: &str = "import requests, urllib3, backports.zstd, pyarrow, pyarrow.flight, pandas, polars, adbc_driver_flightsql";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether python3 with the clients' packages and curl are here; when they are not, explains
/// why the test is skipped, or fails under `PASSERELLE_CLIENTS=required`.
async fn clients_available() -> bool {
    let required = std::env::var("PASSERELLE_CLIENTS").is_ok_and(|v| v == "required");
    let python = tokio::process::Command::new("python3")
        .args(["-c", IMPORTS])
        .output()
        .await;
    let curl = tokio::process::Command::new("curl")
        .arg("--version")
        .output()
        .await;
    let missing = match (python, curl) {
        (Ok(p), Ok(c)) if p.status.success() && c.status.success() => return true,
        (Ok(p), _) if !p.status.success() => {
            let stderr = String::from_utf8_lossy(&p.stderr);
            format!(
                "python3 cannot `{IMPORTS}`: {}",
                stderr.lines().last().unwrap_or_default()
            )
        }
        (Err(e), _) => format!("no python3: {e}"),
        _ => "no curl".to_string(),
    };
    assert!(!required, "PASSERELLE_CLIENTS=required but {missing}");
    eprintln!(
        "skipped: {missing}; run `pip install -r tests/clients/requirements.txt` (or .ci/run)"
    );
    false
}

/// Runs `tests/clients/<script>` against a fresh server of the shared hub, as the researcher
/// `chercheuse-diabete`; fails with the script's output unless it exits 0. Answers the events
/// of the server's audit trail, as it stands when the script ends.
async fn run_script(script: &str, timeout: Duration) -> Vec<passerelle::audit::AuditEvent> {
    run_script_on(script, timeout, |_| {}, &[]).await
}

/// [`run_script`] against a server whose configuration `tune` changed, the script given `env`
/// as well.
async fn run_script_on(
    script: &str,
    timeout: Duration,
    tune: impl FnOnce(&mut passerelle::config::Config),
    env: &[(&str, &str)],
) -> Vec<passerelle::audit::AuditEvent> {
    let h = DemoServer::start_with(tune).await;
    // Every persona's token, and one from an issuer the hub does not trust.
    let untrusted = passerelle::demo::DevIssuer::start().await.unwrap();
    let mut tokens = serde_json::Map::new();
    for persona in passerelle::demo::personas::PERSONAS {
        tokens.insert(persona.id.into(), h.token(persona.id).into());
    }
    tokens.insert(
        "untrusted".into(),
        untrusted
            .token_for(&passerelle::demo::personas::PERSONAS[0])
            .unwrap()
            .into(),
    );
    let started = Instant::now();
    let run = tokio::process::Command::new("python3")
        .arg(repo_root().join("tests/clients").join(script))
        .current_dir(repo_root())
        .env("HUB", &h.server.base)
        .env("FLIGHT", h.server.flight_url())
        .env("TOKENS", serde_json::Value::Object(tokens).to_string())
        .env("CA", hub().layout().ca_cert())
        .env("TOKEN", h.token("chercheuse-diabete"))
        .envs(env.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| panic!("{script} still running after {timeout:?}"))
        .unwrap_or_else(|e| panic!("cannot run python3 {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}) after {:.1} s:\n{stdout}\n{stderr}",
        output.status,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{stdout}{stderr}{script}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Every record is durable before its answer (or its stream's clean end): read the trail
    // before the server (and its temporary trail) goes.
    let events = passerelle::audit::read_events(&h.server.audit_dir).unwrap();
    h.server.shutdown(Duration::from_secs(5)).await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pyarrow_and_curl_read_every_format_whole_in_every_coding_over_http1_and_http2() {
    if !clients_available().await {
        return;
    }
    run_script("stream_matrix.py", Duration::from_secs(20 * 60)).await;
}

/// The same clients read large answers whole, gzip and zstd, over HTTP/1.1 (`requests`) and
/// HTTP/2 (`curl`), from a gateway whose queries run on a Ballista cluster of two executors
/// (issue #24): only where the batches come from differs, so the matrix's large compressed
/// cells in JSON and Arrow (`MATRIX=compressed-large`) run there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_compressed_answers_from_a_cluster_arrive_whole_over_http1_and_http2() {
    if !clients_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = crate::support::local_cluster(dir.path(), 2);
    let before = crate::attacks::cluster_queries();
    run_script_on(
        "stream_matrix.py",
        Duration::from_secs(20 * 60),
        |c| {
            c.cluster = Some(cluster.gateway.clone());
            // Every query reading a dataset takes the heavy lane, hence the cluster.
            c.limits.cheap_query_input_mb = 0;
        },
        &[("MATRIX", "compressed-large")],
    )
    .await;
    assert!(
        crate::attacks::cluster_queries() > before,
        "no query ran on the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_python_example_of_the_docs_runs_against_a_real_hub() {
    if !clients_available().await {
        return;
    }
    run_script("docs_examples.py", Duration::from_secs(5 * 60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_pyarrow_flight_and_polars_see_over_flight_sql_what_https_shows() {
    if !clients_available().await {
        return;
    }
    let events = run_script("flight_sql.py", Duration::from_secs(5 * 60)).await;
    // Every Flight call is on the trail, like an HTTPS request: the statements' tickets
    // redeemed with their decision and outcome (rows sent), the refusals with their reason.
    let flight: Vec<_> = events
        .iter()
        .filter(|e| e.action.starts_with("flight "))
        .collect();
    let redeemed: Vec<_> = flight
        .iter()
        .filter(|e| e.action == "flight DoGet TicketStatementQuery")
        .collect();
    assert!(
        redeemed
            .iter()
            .any(|e| e.stage == Some(passerelle::audit::AuditStage::Decision)),
        "no decision record of a redeemed ticket"
    );
    assert!(
        redeemed
            .iter()
            .any(|e| e.outcome == passerelle::audit::Outcome::Allowed
                && e.rows > 0
                && e.sql.is_some()
                && e.habilitation
                    .as_ref()
                    .is_some_and(|h| h.id == "projet-diabete")),
        "no outcome record with rows, SQL and habilitation"
    );
    assert!(
        redeemed
            .iter()
            .any(|e| e.reason.as_deref() == Some("statement_handle_invalid")),
        "the ticket redeemed by another principal is not on the trail"
    );
    for action in [
        "flight GetFlightInfo CommandStatementQuery",
        "flight DoAction CreatePreparedStatement",
        "flight DoGet CommandGetTables",
        "flight Handshake",
    ] {
        assert!(
            flight.iter().any(|e| e.action == action),
            "no audit record of {action}"
        );
    }
    assert!(
        flight
            .iter()
            .any(|e| e.reason.as_deref() == Some("query_not_allowed")),
        "the lookup-only habilitation's refusal is not on the trail"
    );
}
