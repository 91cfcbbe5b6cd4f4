//! Real clients of the query endpoint, written in Python: `tests/clients/stream_matrix.py`
//! reads every format whole in every content-coding, over HTTP/1.1 (requests, pyarrow, curl)
//! and HTTP/2 (curl), small and streamed answers; `tests/clients/docs_examples.py` runs every
//! `python` block of `docs/*.md`. Each test serves the shared hub on loopback and runs its
//! script from the repository root. `.ci/run` installs the packages of
//! `tests/clients/requirements.txt` and sets `PASSERELLE_CLIENTS=required`; elsewhere the tests
//! are skipped (with a message) when the packages or curl are missing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{DemoServer, hub};

/// What the scripts import (requirements.txt) and what the matrix runs besides Python.
const IMPORTS: &str = "import requests, urllib3, backports.zstd, pyarrow, pandas, polars";

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
/// `chercheuse-diabete`; fails with the script's output unless it exits 0.
async fn run_script(script: &str, timeout: Duration) {
    let h = DemoServer::start_with(|_| {}).await;
    let started = Instant::now();
    let run = tokio::process::Command::new("python3")
        .arg(repo_root().join("tests/clients").join(script))
        .current_dir(repo_root())
        .env("HUB", &h.server.base)
        .env("CA", hub().layout().ca_cert())
        .env("TOKEN", h.token("chercheuse-diabete"))
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
    h.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pyarrow_and_curl_read_every_format_whole_in_every_coding_over_http1_and_http2() {
    if !clients_available().await {
        return;
    }
    run_script("stream_matrix.py", Duration::from_secs(20 * 60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_python_example_of_the_docs_runs_against_a_real_hub() {
    if !clients_available().await {
        return;
    }
    run_script("docs_examples.py", Duration::from_secs(5 * 60)).await;
}
