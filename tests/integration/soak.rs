//! The soak: legitimate queries and lookups at a steady rate, mixed with bad tokens and one
//! researcher flooding the hub with the hostile corpus, against the real gateway in a child
//! process. Ignored by `cargo test`; run it with
//!
//! ```text
//! cargo test --test integration soak -- --ignored --nocapture          # 60 s, debug build
//! bash benches/soak.sh                                                  # 10 min, optimised
//! ```
//!
//! Settings (environment): `SOAK_SECS` (60), `SOAK_RATE` (legitimate requests per second, 20),
//! `SOAK_HOSTILE` (concurrent hostile loops, 4), `SOAK_BAD_TOKENS` (per second, 10),
//! `SOAK_CEILING_MB` (the child's `limits.process_memory_mb`, 2048), `PASSERELLE_TEST_BIN` (the
//! gateway binary; this build's by default).
//!
//! It asserts the invariants only (the child never dies, its peak resident size stays under the
//! ceiling, every authenticated request is on the audit trail) and prints the figures: the
//! legitimate share's success rate, p50 and p99 per class, and the audit records against the
//! requests. Rates and times are never asserted (`docs/benchmarks.md` has them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::child::ChildGateway;

const TRACE: &str = "context=Calcul%20du%20QF&recipient=13000170500016&object=soak";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One answered (or failed) request.
#[derive(Debug, Clone)]
struct Sample {
    class: &'static str,
    status: u16,
    latency: Duration,
    request_id: Option<String>,
    /// The problem's code and detail of a legitimate request that failed.
    problem: Option<String>,
}

type Samples = Arc<Mutex<Vec<Sample>>>;

async fn send(
    class: &'static str,
    request: reqwest::RequestBuilder,
    samples: &Samples,
) -> Option<u16> {
    let started = Instant::now();
    let outcome = match request.timeout(Duration::from_secs(60)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let id = r
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            // The whole answer is read: a cut body is a failure.
            match r.bytes().await {
                Ok(body) if status >= 400 && class != "hostile" && class != "bad_token" => {
                    let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    (
                        status,
                        id,
                        Some(format!("{} {}", problem["code"], problem["detail"])),
                    )
                }
                Ok(_) => (status, id, None),
                Err(e) => (0, id, Some(format!("body cut: {e}"))),
            }
        }
        Err(e) => (0, None, Some(format!("no answer: {e}"))),
    };
    let (status, request_id, problem) = outcome;
    samples.lock().unwrap().push(Sample {
        class,
        status,
        latency: started.elapsed(),
        request_id,
        problem,
    });
    Some(status)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak: run it by name (see the module doc)"]
async fn soak() {
    let secs = setting("SOAK_SECS", 60);
    let rate = setting("SOAK_RATE", 20).max(1);
    let hostile_loops = setting("SOAK_HOSTILE", 4);
    let bad_rate = setting("SOAK_BAD_TOKENS", 10);
    let ceiling_mb = setting("SOAK_CEILING_MB", 2048);
    let ceiling = ceiling_mb.to_string();
    let mut gw = ChildGateway::start(&[
        ("PASSERELLE_LIMITS__PROCESS_MEMORY_MB", ceiling.as_str()),
        ("PASSERELLE_LIMITS__QUERY_MEMORY_MB", "256"),
        ("PASSERELLE_LIMITS__QUERY_TIMEOUT_SECS", "10"),
        // Lookups at the soak's rate stay within the CAF's quota.
        ("PASSERELLE_LIMITS__LOOKUP_RATE_FACTOR", "1000"),
        // Every client here is loopback, bad tokens included: one source. (Out there the
        // flood's source is rate limited apart from the researchers': see
        // `audit_requests::a_flood_of_bad_tokens_costs_bounded_disk`.)
        ("PASSERELLE_LIMITS__UNAUTHENTICATED_PER_MINUTE", "1000000"),
        // Warnings only, but the line that gives the listening address.
        (
            "RUST_LOG",
            "warn,passerelle::server=info,passerelle::server::middleware=warn",
        ),
    ])
    .await;
    // The legitimate queries come from eight researchers of projet-emploi, a few each per
    // second (one person sending a hundred queries a second would meet their own share).
    let researchers: Vec<String> = (0..8)
        .map(|i| gw.token_as("chercheur-emploi", &format!("soak-chercheur-emploi-{i}")))
        .collect();
    let caf = gw.token("caf");
    let hostile = gw.token("chercheuse-diabete");
    // (The child serves a copy of the shared hub: the same keys.)
    let nirs = Arc::new(crate::support::allocataire_nirs(200));
    let samples: Samples = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    eprintln!(
        "soak: {secs} s, {rate} legitimate req/s, {hostile_loops} hostile loops, {bad_rate} bad tokens/s, ceiling {ceiling_mb} MiB, binary {}",
        crate::support::child::binary()
    );

    // The hostile researcher: the corpus, over and over, `hostile_loops` at once.
    let corpus = Arc::new(crate::hostile::corpus());
    let mut tasks = Vec::new();
    for loop_id in 0..hostile_loops {
        let (client, url, token, samples, stop, corpus) = (
            gw.client.clone(),
            gw.url("/v1/query"),
            hostile.clone(),
            samples.clone(),
            stop.clone(),
            corpus.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = loop_id as usize;
            while !stop.load(Ordering::Relaxed) {
                let (_, sql, _) = &corpus[i % corpus.len()];
                let request = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "sql": sql }));
                if send("hostile", request, &samples).await == Some(503) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                i += 1;
            }
        }));
    }

    // Bad tokens.
    if bad_rate > 0 {
        let (client, url, samples, stop) = (
            gw.client.clone(),
            gw.url("/v1/me"),
            samples.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / bad_rate));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let request = client.get(&url).bearer_auth(format!("eyJnot.a.token{n}"));
                let samples = samples.clone();
                tokio::spawn(async move { send("bad_token", request, &samples).await });
            }
        }));
    }

    // The legitimate share, open loop: a request every 1/rate s whatever the answers do.
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0usize;
    let mut in_flight = Vec::new();
    while Instant::now() < deadline {
        tick.tick().await;
        n += 1;
        let sink = samples.clone();
        let request = match n % 4 {
            0 => (
                "query",
                gw.client
                    .post(gw.url("/v1/query"))
                    .bearer_auth(&researchers[n / 4 % researchers.len()])
                    .json(&json!({"sql": format!(
                        "SELECT region, count(*) AS n FROM sante.sejours WHERE sexe = '{}' GROUP BY region",
                        n % 2 + 1
                    )})),
            ),
            1 => (
                "query",
                gw.client
                    .post(gw.url("/v1/query"))
                    .bearer_auth(&researchers[(n / 4 + 3) % researchers.len()])
                    .json(&json!({"sql": format!(
                        "SELECT id_sejour, diagnostic, cout FROM sante.sejours WHERE id_sejour = {}",
                        n % 1000
                    )})),
            ),
            2 => (
                "lookup",
                gw.client
                    .get(gw.url(&format!(
                        "/v1/lookup/social.allocataires/{}?{TRACE}",
                        nirs[n % nirs.len()]
                    )))
                    .bearer_auth(&caf),
            ),
            _ => ("live", gw.client.get(gw.url("/health/live"))),
        };
        in_flight.push(tokio::spawn(async move {
            send(request.0, request.1, &sink).await;
        }));
        if n.is_multiple_of(50) {
            in_flight.retain(|t| !t.is_finished());
            assert!(gw.alive(), "the gateway died:\n{}", gw.log());
        }
        if (n as u64).is_multiple_of(rate * 60) {
            let done = samples.lock().unwrap().len();
            let memory = gw.memory().unwrap_or_default();
            eprintln!(
                "soak: {:>4.0} s, {done} requests answered, resident {} MiB",
                started.elapsed().as_secs_f64(),
                memory.0 >> 20
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in in_flight.into_iter().chain(tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    }
    let elapsed = started.elapsed();
    assert!(gw.alive(), "the gateway died:\n{}", gw.log());
    let (rss, peak) = gw.memory().unwrap();

    // Figures.
    let samples = samples.lock().unwrap().clone();
    let mut by_class: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in &samples {
        by_class.entry(s.class).or_default().push(s);
    }
    let mut legit_ok = 0usize;
    let mut legit = 0usize;
    eprintln!(
        "soak: {:.0} s, {} requests",
        elapsed.as_secs_f64(),
        samples.len()
    );
    for (class, list) in &by_class {
        let mut latencies: Vec<Duration> = list.iter().map(|s| s.latency).collect();
        latencies.sort();
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for s in list {
            *statuses.entry(s.status).or_default() += 1;
        }
        let ok = list
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .count();
        if matches!(*class, "query" | "lookup" | "live") {
            legit += list.len();
            legit_ok += ok;
        }
        eprintln!(
            "soak: {class:<9} {:>6} requests, {:>6.2} % 2xx, p50 {:>7.2} ms, p99 {:>8.2} ms, statuses {statuses:?}",
            list.len(),
            100.0 * ok as f64 / list.len().max(1) as f64,
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        );
    }
    for s in samples.iter().filter(|s| s.problem.is_some()).take(10) {
        eprintln!(
            "soak: failed {} ({}): {}",
            s.class,
            s.status,
            s.problem.as_deref().unwrap_or_default()
        );
    }
    eprintln!(
        "soak: legitimate share {legit_ok}/{legit} = {:.3} % success; resident {} MiB, peak {} MiB (ceiling {ceiling_mb} MiB)",
        100.0 * legit_ok as f64 / legit.max(1) as f64,
        rss / (1024 * 1024),
        peak / (1024 * 1024),
    );

    // Invariants.
    assert!(
        peak < ceiling_mb * 1024 * 1024,
        "peak resident size {} MiB above the ceiling",
        peak / (1024 * 1024)
    );
    // Every authenticated request (not a bad token, not /health) is on the trail.
    let expected: Vec<String> = samples
        .iter()
        .filter(|s| matches!(s.class, "query" | "lookup" | "hostile") && s.status != 401)
        .filter_map(|s| s.request_id.clone())
        .collect();
    // The trail's request ids (and stages), read once a group commit has had time to land.
    let read_trail = || {
        let mut ids = std::collections::HashSet::new();
        let (mut records, mut decisions, mut outcomes) = (0usize, 0usize, 0usize);
        for entry in std::fs::read_dir(gw.audit_dir())
            .unwrap()
            .filter_map(|e| e.ok())
        {
            if entry.path().extension().is_none_or(|x| x != "jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines() {
                let Ok(record) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                records += 1;
                match record["stage"].as_str() {
                    Some("decision") => decisions += 1,
                    Some("outcome") => outcomes += 1,
                    _ => {}
                }
                if let Some(id) = record["request_id"].as_str() {
                    ids.insert(id.to_string());
                }
            }
        }
        (ids, records, decisions, outcomes)
    };
    let mut trail = read_trail();
    for _ in 0..20 {
        if expected.iter().all(|id| trail.0.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        trail = read_trail();
    }
    let (ids, records, decisions, outcomes) = trail;
    let missing = expected.iter().filter(|id| !ids.contains(*id)).count();
    eprintln!(
        "soak: audit: {records} records ({decisions} decisions, {outcomes} outcomes) for {} authenticated requests; {missing} missing",
        expected.len()
    );
    assert_eq!(
        missing, 0,
        "authenticated requests missing from the audit trail"
    );
    let verify = gw.verify_audit().await;
    assert!(
        verify.status.success(),
        "{}",
        crate::support::child::output_text(&verify)
    );
}
