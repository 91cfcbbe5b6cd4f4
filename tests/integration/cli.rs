//! The command line as a newcomer uses it: `demo --generate-only`, `check`, `demo` printing
//! curl lines that work as printed, SIGTERM ending it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::copy_dir;

fn passerelle() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    command
        .env("RUST_LOG", "warn")
        .env_remove("PASSERELLE_LOG_FORMAT");
    command
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["serve", "--help"],
        vec!["check", "--help"],
    ] {
        let out = passerelle().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn generated_hub_is_valid_movable_and_a_broken_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = passerelle()
        .current_dir(dir.path())
        .args(["demo", "--generate-only", "--dir", "hub", "--rows", "500"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "hub/passerelle.toml",
        "hub/policies/datasets.toml",
        "hub/data/sante/sejours.parquet",
        "hub/data/fiscal/revenus.parquet",
        "hub/data/social/allocataires.parquet",
        "hub/data/entreprises/etablissements.parquet",
        "hub/keys/master.key",
        "hub/keys/audit-signing.key",
        "hub/keys/audit-signing.pub",
        "hub/tls/ca.pem",
        "hub/tls/cert.pem",
        "hub/tls/key.pem",
    ] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in [
            "hub/keys/master.key",
            "hub/keys/audit-signing.key",
            "hub/tls/key.pem",
        ] {
            let mode = std::fs::metadata(dir.path().join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{secret} must be private");
        }
    }

    let check = |config: &str| {
        passerelle()
            .current_dir(dir.path())
            .args(["check", "--config", config])
            .output()
            .unwrap()
    };
    let ok = check("hub/passerelle.toml");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Movable: the same hub under another name is valid as is.
    copy_dir(&dir.path().join("hub"), &dir.path().join("moved"));
    let moved = check("moved/passerelle.toml");
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );

    // Broken: a wrong key type and an unknown key are named with file and line.
    let config = dir.path().join("moved/passerelle.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "listen = \"127.0.0.1:8443\"",
            "listen = \"nowhere\"\nlisen = 1",
        ),
    )
    .unwrap();
    let broken = check("moved/passerelle.toml");
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("moved/passerelle.toml:"), "{stderr}");
    assert!(
        stderr.contains("`server.listen`") || stderr.contains("`server.lisen`"),
        "{stderr}"
    );

    // A second run reuses the folder without regenerating.
    let again = passerelle()
        .current_dir(dir.path())
        .args(["demo", "--generate-only", "--dir", "hub", "--rows", "500"])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("reusing"));
}

#[test]
fn check_refuses_a_master_key_readable_by_others() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&crate::support::hub().root, &dir.path().join("hub"));
        let key = dir.path().join("hub/keys/master.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = passerelle()
            .args(["check", "--config"])
            .arg(dir.path().join("hub/passerelle.toml"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("master.key") && stderr.contains("chmod 600"),
            "{stderr}"
        );
    }
}

/// Starts `passerelle demo` in `dir` with `extra` arguments; returns it and the lines it
/// printed up to its tour's last line.
fn start_demo(dir: &Path, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = passerelle()
        .current_dir(dir)
        .args([
            "demo",
            "--dir",
            "demo-hub",
            "--rows",
            "400",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                let done = line.starts_with("Stop with Ctrl-C");
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(_) => break,
        }
    }
    (child, lines)
}

/// Sends SIGTERM to the demo and waits until it exits 0.
fn stop_demo(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_prints_curl_lines_that_work_as_printed_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start_demo(dir.path(), &[]);
    let curls: Vec<&String> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("curl --cacert"))
        .collect();
    assert!(curls.len() >= 6, "printed: {lines:#?}");

    // Readiness comes within seconds (the development issuer's keys load at once).
    let ready_line = curls[0].trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{ready_line} -s -o /dev/null -w '%{{http_code}}'"))
            .current_dir(dir.path())
            .output()
            .expect("curl is needed by this test (.ci/run installs it)");
        if String::from_utf8_lossy(&out.stdout) == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for line in &curls[1..] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{} -s -w '\\n%{{http_code}}'", line.trim()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n200"), "`{line}` gave {text}");
        if line.contains("/metrics") {
            // The metrics listener: no token, metrics only.
            assert!(text.contains("passerelle_http_requests_total"), "{text}");
        } else {
            assert!(text.contains("\"principal\""), "{text}");
        }
    }

    // The operators' console it prints sends a browser to the development issuer's sign-in.
    let console = lines
        .iter()
        .find_map(|l| l.strip_prefix("operators' console (sign in as `operateur`): "))
        .unwrap_or_else(|| panic!("no console line: {lines:#?}"))
        .trim()
        .to_string();
    let out = Command::new("curl")
        .args(["--cacert", "demo-hub/tls/ca.pem", "-s", "-o", "/dev/null"])
        .args([
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("{console}/connexion"),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.starts_with("303 http://127.0.0.1:") && answer.contains("/authorize?"),
        "{answer}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("citizens' journal (sign in as `citoyen`")),
        "{lines:#?}"
    );

    stop_demo(child);
}

/// `passerelle demo --cluster 2`: a scheduler and two executors start beside the demo, its
/// queries answer from the cluster (its metrics count them), and the cluster's processes stop
/// with the demo.
#[test]
fn demo_with_a_cluster_answers_there_and_stops_its_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start_demo(dir.path(), &["--cluster", "2"]);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Cluster: scheduler https://127.0.0.1:")),
        "{lines:#?}"
    );
    // The first researcher of the tour queries her project's stays.
    let me = lines
        .iter()
        .find(|l| l.trim_start().starts_with("curl --cacert") && l.contains("/v1/me"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    for sql in [
        "SELECT count(*) AS n FROM sante.sejours",
        "SELECT * FROM sante.sejours ORDER BY 1 LIMIT 5",
    ] {
        let line = format!(
            "{} -H 'Content-Type: application/json' -d '{{\"sql\": \"{sql}\"}}'",
            me.trim().replace("/v1/me", "/v1/query")
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{line} -s -w '\\n%{{http_code}}'"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("\n200") && text.contains("rows"),
            "`{sql}` gave {text}"
        );
    }
    // The demo's metrics listener counts the queries it sent to the cluster.
    let metrics = lines
        .iter()
        .find(|l| l.trim_start().starts_with("curl --cacert") && l.contains("/metrics"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{} -s", metrics.trim()))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let shipped = text
        .lines()
        .find_map(|l| l.strip_prefix("passerelle_cluster_queries_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(shipped >= 2.0, "queries on the cluster: {shipped}\n{text}");
    let scheduler: std::net::SocketAddr = lines
        .iter()
        .find_map(|l| l.strip_prefix("Cluster: scheduler https://"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let cluster_dir = dir.path().join("demo-hub/cluster");
    stop_demo(child);
    // The scheduler and executors went with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let executors = Command::new("pgrep")
            .args(["-f", &cluster_dir.to_string_lossy()])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        let scheduler_up = std::net::TcpStream::connect(scheduler).is_ok();
        if !executors && !scheduler_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster's processes outlived the demo"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `passerelle serve` reloads its policy set on SIGHUP (file polling off), trusting only the
/// issuers in its configuration.
#[tokio::test]
async fn serve_reloads_policies_on_sighup_and_never_logs_tokens() {
    use crate::support::issuer::TestIssuer;
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&crate::support::hub().root, &dir.path().join("hub"));
    let config = dir.path().join("hub/passerelle.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("watch_interval_secs = 2", "watch_interval_secs = 0");
    std::fs::write(
        &config,
        format!(
            "{text}\n[[identity.issuers]]\nissuer = \"{}\"\naudience = \"passerelle\"\nclaims = [\"groups\"]\n",
            issuer.issuer()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--flight-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(a) = v["address"].as_str()
            {
                return a.to_string();
            }
        }
        panic!("serve exited without listening");
    })
    .await
    .expect("serve did not start");
    let logged = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = logged.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });

    let client = crate::support::client(&crate::support::hub().ca_pem());
    let mut claims = issuer.claims("chercheur");
    claims.insert("groups".into(), serde_json::json!(["projet-emploi"]));
    let token = issuer.sign("ec-1", &claims);
    let me = || {
        let (client, token) = (client.clone(), token.clone());
        let url = format!("https://{address}/v1/me");
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        if let Ok(r) = client
            .get(format!("https://{address}/health/ready"))
            .send()
            .await
            && r.status() == 200
        {
            break me().await;
        }
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        before["habilitations"][0]["datasets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let rules = dir.path().join("hub/policies/policy.csv");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(
        &rules,
        text.replace("g, projet-emploi, profil-recherche-sante\n", ""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        me().await["policy_version"],
        before["policy_version"],
        "no polling: nothing changes before SIGHUP"
    );
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = me().await;
        if now["policy_version"] != before["policy_version"] {
            assert!(
                now["habilitations"][0]["datasets"]
                    .as_array()
                    .unwrap()
                    .is_empty()
            );
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
