//! The real server writes one audit record for every request that reaches authentication,
//! before the answer leaves: refusals and bad tokens included, with the principal,
//! habilitation, datasets and treatments, SQL, lookup traceability (keys pseudonymised), key
//! versions; never a token, a raw NIR or a result value. No record, no answer.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{DemoServer, hub};

const TRACE: &str = "context=Calcul%20du%20QF&recipient=13000170500016&object=dossier-2026-0042";

/// Every record of the server's trail, in order.
fn records(h: &DemoServer) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(&h.server.audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn trail_text(h: &DemoServer) -> String {
    std::fs::read_dir(&h.server.audit_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `request`, then checks that exactly one record of its request id is already on disk.
async fn one_record(h: &DemoServer, request: reqwest::RequestBuilder) -> (u16, Value, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let mine: Vec<Value> = records(h)
        .into_iter()
        .filter(|e| e["request_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "one record for {id} ({status} {body})");
    (status, body, mine[0].clone())
}

/// Sends a query `request`: its decision is on disk when the answer arrives, and its outcome
/// follows (group-committed); returns (status, body, decision, outcome).
async fn decision_then_outcome(
    h: &DemoServer,
    request: reqwest::RequestBuilder,
) -> (u16, Value, Value, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let mine = |h: &DemoServer| -> Vec<Value> {
        records(h)
            .into_iter()
            .filter(|e| e["request_id"] == id.as_str())
            .collect()
    };
    let at_answer = mine(h);
    assert!(
        at_answer.first().is_some_and(|e| e["stage"] == "decision"),
        "the decision of {id} is on disk before its answer: {at_answer:?}"
    );
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let mut both = mine(h);
    for _ in 0..100 {
        if both.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        both = mine(h);
    }
    assert_eq!(
        both.len(),
        2,
        "a decision then an outcome for {id}: {both:?}"
    );
    assert_eq!(both[1]["stage"], "outcome");
    (status, body, both[0].clone(), both[1].clone())
}

fn a_nir() -> String {
    crate::support::allocataire_nirs(1).remove(0)
}

#[tokio::test]
async fn every_request_is_on_record_before_its_answer() {
    let h = DemoServer::start_with(|_| {}).await;
    let c = &h.server.client;
    let url = |p: &str| h.server.url(p);
    let researcher = h.token("chercheuse-diabete");
    let caf = h.token("caf");

    // Bad and missing tokens: summarised (see `a_flood_of_bad_tokens_costs_bounded_disk`).
    // /v1/me and /v1/datasets.
    let (status, _, e) = one_record(&h, c.get(url("/v1/me")).bearer_auth(&researcher)).await;
    assert_eq!((status, e["kind"].as_str()), (200, Some("me")));
    assert!(e["principal"]["issuer"].as_str().is_some());
    let (status, _, e) = one_record(&h, c.get(url("/v1/datasets")).bearer_auth(&researcher)).await;
    assert_eq!((status, e["kind"].as_str()), (200, Some("datasets")));
    assert_eq!(e["habilitation"]["id"], "projet-diabete");

    // A query: its decision (habilitation, legal basis, SQL, key version, policy) before any
    // work, then its outcome (datasets and treatments, rows).
    let sql = "SELECT nir, diagnostic FROM sante.sejours LIMIT 3";
    let (status, body, decision, e) = decision_then_outcome(
        &h,
        c.post(url("/v1/query"))
            .bearer_auth(&researcher)
            .json(&json!({ "sql": sql })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (decision["kind"].as_str(), decision["outcome"].as_str()),
        (Some("query"), Some("allowed"))
    );
    assert_eq!(decision["sql"]["text"], sql);
    assert_eq!(decision["habilitation"]["legal_basis"], "CSP L1461-1");
    assert_eq!(
        decision["key_versions"],
        json!([{"domain": "projet-diabete", "version": 1}])
    );
    assert!(decision["policy_version"].is_string());
    assert_eq!(
        (e["kind"].as_str(), e["outcome"].as_str()),
        (Some("query"), Some("allowed"))
    );
    assert_eq!(e["sql"]["text"], sql);
    assert_eq!(e["rows"], 3);
    let sejours = e["datasets"].as_array().unwrap();
    assert_eq!(sejours.len(), 1);
    assert_eq!(sejours[0]["dataset"], "sante.sejours");
    assert!(sejours[0]["columns"].as_array().unwrap().iter().any(|c| {
        c["column"] == "nir"
            && c["treatment"]
                .as_str()
                .unwrap()
                .starts_with("pseudonymised")
    }));
    let pseudonyms: Vec<String> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["nir"].as_str().unwrap().to_string())
        .collect();

    // Refused queries (after their decision) and refused habilitations (before any).
    let (status, _, _, e) = decision_then_outcome(
        &h,
        c.post(url("/v1/query"))
            .bearer_auth(&researcher)
            .json(&json!({"sql": "SELECT nom FROM sante.sejours"})),
    )
    .await;
    assert_eq!(
        (status, e["outcome"].as_str(), e["reason"].as_str()),
        (400, Some("refused"), Some("invalid_query"))
    );
    let (status, _, e) = one_record(
        &h,
        c.post(url("/v1/query"))
            .bearer_auth(h.token("chercheur-expire"))
            .json(&json!({"sql": "SELECT 1"})),
    )
    .await;
    assert_eq!(
        (status, e["reason"].as_str()),
        (403, Some("habilitation_expired"))
    );

    // Lookups: traceability, the key only pseudonymised, the fields served.
    let nir = a_nir();
    let (status, _, e) = one_record(
        &h,
        c.get(url(&format!(
            "/v1/lookup/social.allocataires/{nir}?{TRACE}"
        )))
        .bearer_auth(&caf),
    )
    .await;
    assert_eq!((status, e["kind"].as_str()), (200, Some("lookup")));
    assert_eq!(e["lookup"]["recipient"], "13000170500016");
    assert_eq!(e["lookup"]["object"], "dossier-2026-0042");
    assert_eq!(e["lookup"]["context"], "Calcul du QF");
    let key = e["lookup"]["key"].as_str().unwrap();
    assert_eq!(key.len(), 22);
    assert_ne!(key, nir);
    assert_eq!(e["principal"]["organisation"], "13000170500016");
    let (status, _, e) = one_record(
        &h,
        c.get(url(&format!(
            "/v1/lookup/social.allocataires/{nir}?context=x"
        )))
        .bearer_auth(&caf),
    )
    .await;
    assert_eq!(
        (status, e["reason"].as_str()),
        (422, Some("recipient_missing"))
    );
    // The same person looked up again: the same audit key (a citizen's journal can be built).
    let (_, _, again) = one_record(
        &h,
        c.get(url(&format!("/v1/lookup/fiscal.revenus/{nir}?{TRACE}")))
            .bearer_auth(&caf),
    )
    .await;
    assert_eq!(again["lookup"]["key"].as_str(), Some(key));

    // Operators' requests too.
    let (status, _, e) = one_record(
        &h,
        c.get(url("/v1/admin/policy"))
            .bearer_auth(h.token("operateur")),
    )
    .await;
    assert_eq!((status, e["kind"].as_str()), (200, Some("admin")));

    // Nothing secret in the files: no token, no raw NIR, no pseudonym served to a researcher.
    let text = trail_text(&h);
    for secret in [researcher.as_str(), caf.as_str(), nir.as_str()] {
        assert!(
            !text.contains(secret),
            "a token or raw key is in the audit trail"
        );
    }
    for p in &pseudonyms {
        assert!(
            !text.contains(p.as_str()),
            "a result value is in the audit trail"
        );
    }
    // Health endpoints are not requests on data: no record.
    let before = records(&h).len();
    h.server.get("/health/ready", None).await;
    assert_eq!(records(&h).len(), before);
    // The trail verifies. (It is live: a record written just now may wait a moment for the
    // head that signs it; the writer signs after each batch.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match passerelle::audit::verify_dir(&h.server.audit_dir, None) {
            Ok(_) => break,
            Err(problem) if std::time::Instant::now() < deadline => {
                assert!(
                    problem.message.contains("come after the signed head"),
                    "{problem:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(problem) => panic!("{problem:?}"),
        }
    }
}

#[tokio::test]
async fn a_streamed_answer_is_recorded_then_completed() {
    let h = DemoServer::start_with(|_| {}).await;
    let sql = "SELECT a.id_sejour, b.nir FROM sante.sejours a, sante.sejours b";
    let r = h
        .server
        .client
        .post(h.server.url("/v1/query"))
        .bearer_auth(h.token("chercheuse-diabete"))
        .header("accept", "text/csv")
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let lines = r.text().await.unwrap().lines().count() as u64;
    let mine: Vec<Value> = records(&h)
        .into_iter()
        .filter(|e| e["request_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "the decision, then the outcome");
    assert_eq!(mine[0]["stage"], "decision");
    assert_eq!(mine[1]["stage"], "outcome");
    assert_eq!(mine[1]["rows"].as_u64(), Some(lines - 1));
    assert!(mine[1]["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn no_record_no_answer() {
    let h = DemoServer::start_with(|_| {}).await;
    let token = h.token("chercheuse-diabete");
    let ask = || {
        h.server
            .client
            .post(h.server.url("/v1/query"))
            .bearer_auth(&token)
            .json(&json!({"sql": "SELECT count(*) AS n FROM sante.sejours"}))
            .send()
    };
    let first = ask().await.unwrap();
    assert_eq!(first.status(), 200);
    let id = first.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    // The outcome record follows the answer: on disk before the folder goes.
    let on_record = |h: &DemoServer| {
        records(h)
            .iter()
            .any(|r| r["request_id"] == id.as_str() && r["stage"] == "outcome")
    };
    for _ in 0..100 {
        if on_record(&h) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The trail's folder disappears (a full or failed disk): answers stop, readiness drops.
    // (The writer may still be signing its head: removed again until it is gone.)
    for attempt in 0.. {
        match std::fs::remove_dir_all(&h.server.audit_dir) {
            Ok(()) => break,
            Err(e) if attempt < 50 && e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let r = ask().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(body["rows"].is_null(), "no data without a record: {body}");
    let mut refused = 0;
    for _ in 0..3 {
        if ask().await.unwrap().status() == 503 {
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "every later answer is refused");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.server.get("/health/ready", None).await.status(), 503);
    // A trail removed behind the writer is never recovered by its probes (unlike a full disk):
    // still refused after more than one probe interval, even once the folder exists again.
    std::fs::create_dir_all(&h.server.audit_dir).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ask().await.unwrap().status(), 503);
    assert_eq!(h.server.get("/health/ready", None).await.status(), 503);
}

#[tokio::test]
async fn the_journal_lists_the_cafs_lookups_of_one_person() {
    let h = DemoServer::start_with(|_| {}).await;
    let caf = h.token("caf");
    let nir = a_nir();
    let get = |path: String, token: String| {
        let url = h.server.url(&path);
        let client = h.server.client.clone();
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for object in ["dossier-1", "dossier-2"] {
        let path = format!(
            "/v1/lookup/social.allocataires/{nir}?context=Calcul%20QF&recipient=13000170500016&object={object}"
        );
        assert_eq!(get(path, caf.clone()).await.0, 200);
    }
    let path = format!("/v1/lookup/fiscal.revenus/{nir}?{TRACE}");
    let fiscal_status = get(path, caf.clone()).await.0;
    // A refused lookup (no recipient) is not a consultation.
    let path = format!("/v1/lookup/social.allocataires/{nir}?context=x&object=y");
    assert_eq!(get(path, caf.clone()).await.0, 422);

    let operator = h.token("operateur");
    let (status, journal) = get(
        format!("/v1/admin/journal/social.allocataires/{nir}"),
        operator.clone(),
    )
    .await;
    assert_eq!(status, 200, "{journal}");
    let entries = journal["consultations"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{journal}");
    for (entry, object) in entries.iter().zip(["dossier-1", "dossier-2"]) {
        assert_eq!(entry["organisation"], "13000170500016");
        assert_eq!(entry["habilitation"], "caf-quotient-familial");
        assert_eq!(entry["context"], "Calcul QF");
        assert_eq!(entry["object"], object);
        assert_eq!(
            entry["fields"],
            json!(["quotient_familial", "nombre_enfants"])
        );
    }
    let (_, fiscal) = get(
        format!("/v1/admin/journal/fiscal.revenus/{nir}"),
        operator.clone(),
    )
    .await;
    let expected = usize::from(fiscal_status == 200);
    assert_eq!(fiscal["consultations"].as_array().unwrap().len(), expected);
    let (_, other) = get(
        "/v1/admin/journal/social.allocataires/1999999999999".into(),
        operator.clone(),
    )
    .await;
    assert!(other["consultations"].as_array().unwrap().is_empty());
    // Only operators read journals.
    let (status, _) = get(
        format!("/v1/admin/journal/social.allocataires/{nir}"),
        caf.clone(),
    )
    .await;
    assert_eq!(status, 403);

    // Operators query the trail with SQL through the same gate; nobody else sees it.
    let post = |path: &str, token: String, sql: &str| {
        let request = h
            .server
            .client
            .post(h.server.url(path))
            .bearer_auth(token)
            .json(&json!({ "sql": sql }));
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let sql = "SELECT organisation, count(*) AS n FROM audit.events \
               WHERE kind = 'lookup' AND outcome = 'allowed' AND object LIKE 'dossier-%' \
               GROUP BY organisation";
    let (status, body) = post("/v1/admin/audit/query", operator.clone(), sql).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["organisation"], "13000170500016");
    assert_eq!(body["rows"][0]["n"], 2 + expected);
    for refused in [
        "SELECT * FROM sante.sejours",
        "DELETE FROM audit.events",
        "SELECT * FROM 'audit'",
    ] {
        let (status, _) = post("/v1/admin/audit/query", operator.clone(), refused).await;
        assert_eq!(status, 400, "{refused}");
    }
    let (status, _) = post("/v1/admin/audit/query", caf, "SELECT 1").await;
    assert_eq!(status, 403);
    let (status, _) = post(
        "/v1/query",
        h.token("chercheuse-diabete"),
        "SELECT * FROM audit.events",
    )
    .await;
    assert_eq!(status, 400, "researchers have no audit table");
}

#[tokio::test]
async fn policy_changes_and_refused_reloads_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&hub().root, &dir.path().join("hub"));
    let root = dir.path().join("hub");
    let dev = passerelle::demo::DevIssuer::start().await.unwrap();
    let mut config = passerelle::config::Config::load(&root.join("passerelle.toml")).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.issuers = vec![dev.issuer_config()];
    config.policy.watch_interval_secs = 1;
    let server = crate::support::TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    let rules = root.join("policies/policy.csv");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&rules, format!("{text}\n# reviewed again\n")).unwrap();
    let reloads = |expected: usize| {
        let audit = server.audit_dir.clone();
        async move {
            for _ in 0..100 {
                let events: Vec<_> = passerelle::audit::read_events(&audit)
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.kind == passerelle::audit::AuditKind::PolicyReload)
                    .collect();
                if events.len() >= expected {
                    return events;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no policy event recorded");
        }
    };
    let events = reloads(1).await;
    assert!(events[0].action.contains("replaced by"), "{:?}", events[0]);
    assert_eq!(events[0].outcome, passerelle::audit::Outcome::Allowed);
    std::fs::write(&rules, format!("{text}\np, nonsense\n")).unwrap();
    let events = reloads(2).await;
    assert_eq!(events[1].outcome, passerelle::audit::Outcome::Refused);
    // A live trail may be caught between a record and its signed head: retry briefly.
    let mut verified = passerelle::audit::verify_dir(&server.audit_dir, None);
    for _ in 0..20 {
        if verified.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        verified = passerelle::audit::verify_dir(&server.audit_dir, None);
    }
    verified.unwrap();
}

/// `kill -9` of the real server under load: once the trail is reopened (which repairs a torn
/// last line), it verifies, and every request that got an answer has its record.
#[tokio::test]
async fn a_crash_under_load_loses_no_answered_record() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&hub().root, &dir.path().join("hub"));
    let root = dir.path().join("hub");
    let dev = passerelle::demo::DevIssuer::start().await.unwrap();
    let issuer = dev.issuer_config();
    let config_file = root.join("passerelle.toml");
    let text = std::fs::read_to_string(&config_file).unwrap();
    std::fs::write(
        &config_file,
        format!(
            "{text}\n[[identity.issuers]]\nissuer = \"{}\"\naudience = \"{}\"\nalgorithms = [\"ES256\"]\nclaims = [\"groups\", \"roles\", \"organisation\"]\n",
            issuer.issuer, issuer.audience
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
        .arg(&config_file)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(a) = v["address"].as_str()
            {
                return a.to_string();
            }
        }
        panic!("serve exited without listening");
    })
    .await
    .expect("serve did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = crate::support::client(&hub().ca_pem());
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("https://{address}/health/ready"))
            .send()
            .await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = dev
        .token_for(passerelle::demo::personas::persona("caf").unwrap())
        .unwrap();
    let nir = a_nir();
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, token, answered) = (client.clone(), token.clone(), answered.clone());
        let url = format!("https://{address}/v1/lookup/social.allocataires/{nir}?{TRACE}");
        workers.push(tokio::spawn(async move {
            loop {
                let Ok(r) = client.get(&url).bearer_auth(&token).send().await else {
                    return;
                };
                if r.status() == 200 {
                    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
                    if r.bytes().await.is_ok() {
                        answered.lock().unwrap().push(id);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 10,
        "the load ran ({} answers)",
        answered.len()
    );
    // Reopen as a restarted hub would (repairs a torn tail), then verify.
    let config = passerelle::config::Config::load(&config_file).unwrap();
    drop(passerelle::audit::AuditLog::open(&config.audit).unwrap());
    passerelle::audit::verify_dir(&config.audit.dir, None).unwrap();
    let recorded: std::collections::HashSet<String> =
        passerelle::audit::read_events(&config.audit.dir)
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} answered requests have no record",
        lost.len()
    );
}

/// The record's correlation id is the server's: a client's `X-Request-ID` is kept in its own
/// field, so a client cannot make two requests share an id (or reuse another request's). The
/// statement is kept whole with its SHA-256: a long leading comment (beyond the 8 KiB once
/// kept) cannot push the query out of the record.
#[tokio::test]
async fn the_record_holds_the_servers_id_and_the_whole_statement() {
    use sha2::Digest;
    let h = DemoServer::start_with(|_| {}).await;
    let c = &h.server.client;
    let researcher = h.token("chercheuse-diabete");
    let sql = format!(
        "/* {} */ SELECT count(*) AS n FROM sante.sejours",
        "x".repeat(20_000)
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = c
            .post(h.server.url("/v1/query"))
            .bearer_auth(&researcher)
            .header("x-request-id", "chosen-by-client")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(id, "chosen-by-client");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        ids.push(id);
        r.bytes().await.unwrap();
    }
    assert_ne!(ids[0], ids[1], "each request its own id");
    let decision = records(&h)
        .into_iter()
        .find(|e| e["request_id"] == ids[0].as_str() && e["stage"] == "decision")
        .expect("the decision record");
    assert_eq!(decision["client_request_id"], "chosen-by-client");
    assert_eq!(decision["sql"]["text"], sql.as_str(), "the whole statement");
    assert_eq!(decision["sql"]["truncated"], false);
    assert_eq!(decision["sql"]["bytes"], sql.len());
    assert_eq!(
        decision["sql"]["sha256"],
        hex::encode(sha2::Sha256::digest(sql.as_bytes()))
    );

    // The live trail: its folder 0700, every file 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&h.server.audit_dir), 0o700);
    for entry in std::fs::read_dir(&h.server.audit_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// Requests without a valid token are counted and summarised in the chain (one record per
/// source and reason and window), not written one by one: a flood of bad tokens costs bounded
/// disk and leaves its evidence. Past `limits.unauthenticated_per_minute` the source gets 429
/// before its token is read, still counted; a valid token from elsewhere is served meanwhile.
#[tokio::test]
async fn a_flood_of_bad_tokens_costs_bounded_disk() {
    let h = DemoServer::start_with(|c| {
        c.audit.refusal_window_secs = 1;
        c.limits.unauthenticated_per_minute = 200;
    })
    .await;
    let c = &h.server.client;
    let researcher = h.token("chercheuse-diabete");
    let before = std::fs::read_dir(&h.server.audit_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..400 {
        let request = c.get(h.server.url("/v1/me"));
        let request = if i % 2 == 0 {
            request.bearer_auth(format!("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.{i}"))
        } else {
            request
        };
        let r = request.send().await.unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    // 200 refusals spend the budget (plus what refills while the loop runs; the refusal that
    // finds it spent is still answered), then 429.
    let refused = statuses[&401];
    let limited = statuses[&429];
    assert!((201..=230).contains(&refused), "{statuses:?}");
    assert_eq!(refused + limited, 400, "{statuses:?}");
    // Loopback is one source, but a valid token is still served (its budget is refusals only).
    let r = c
        .get(h.server.url("/v1/me"))
        .bearer_auth(&researcher)
        .send()
        .await;
    assert_eq!(
        r.unwrap().status(),
        429,
        "the spent source waits, whatever it sends"
    );

    // The window closes: one record per reason, with the counts.
    let mut summaries = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        summaries = records(&h)
            .into_iter()
            .filter(|e| e["kind"] == "auth_refused")
            .collect();
        let counted: u64 = summaries.iter().filter_map(|e| e["count"].as_u64()).sum();
        if counted >= 401 {
            break;
        }
    }
    let count_of = |reason: &str| -> u64 {
        summaries
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| {
                assert_eq!(e["source"], "127.0.0.1", "{e}");
                assert!(e["principal"].is_null());
                e["count"].as_u64().unwrap()
            })
            .sum()
    };
    assert!(count_of("missing") > 0, "{summaries:#?}");
    let bad_tokens: u64 = summaries
        .iter()
        .filter(|e| e["reason"] != "missing" && e["reason"] != "rate_limited")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(count_of("missing") + bad_tokens, refused, "{summaries:#?}");
    assert_eq!(count_of("rate_limited"), limited + 1, "{summaries:#?}");
    assert!(
        summaries.len() <= 6,
        "a handful of records for 401 requests: {summaries:#?}"
    );
    let after = std::fs::read_dir(&h.server.audit_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    assert!(
        after - before < 16 * 1024,
        "{} bytes for 401 requests",
        after - before
    );
}
