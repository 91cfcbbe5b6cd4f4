//! Lookups with the durable audit trail vs the same server with a null audit sink, side by
//! side in one run (audit issue: durable within 10 % of the null sink at 5 000 lookups/s).
//!
//! `cargo bench --bench audit` generates a small demo hub in a temporary folder, starts two
//! servers in this process (durable trail / null sink), and alternates saturation runs of
//! `CONNECTIONS` concurrent HTTPS keep-alive clients against each; it prints requests/s,
//! p50 and p99 per mode and the ratio. The load generator shares the two cores with the
//! servers, so absolute figures are lower bounds; the ratio is the point.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use passerelle::audit::AuditLog;
use passerelle::config::Config;

const CONNECTIONS: usize = 32;
const RUN: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;

struct Mode {
    name: &'static str,
    base: String,
    rates: Vec<f64>,
    latencies: Vec<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    passerelle::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    passerelle::demo::hub::ensure(&root, 20_000, 7, false).unwrap();
    let dev = passerelle::demo::DevIssuer::start().await.unwrap();
    let mut config = Config::load(&root.join("passerelle.toml")).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.issuers = vec![dev.issuer_config()];
    // The CAF declares 250 lookups a minute: lift the quota, the limiter is not measured.
    config.limits.lookup_rate_factor = 1_000_000;
    let durable_log = AuditLog::open(&config.audit).unwrap();
    let durable = passerelle::hub::start_with_audit(config.clone(), durable_log)
        .await
        .unwrap();
    let null = passerelle::hub::start_with_audit(config.clone(), AuditLog::null())
        .await
        .unwrap();
    let ca = std::fs::read(root.join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let token = dev
        .token_for(passerelle::demo::personas::persona("caf").unwrap())
        .unwrap();
    let nirs = Arc::new(allocataires(&root));
    let mut modes = [
        Mode {
            name: "durable audit",
            base: format!("https://{}", durable.addr),
            rates: Vec::new(),
            latencies: Vec::new(),
        },
        Mode {
            name: "null sink",
            base: format!("https://{}", null.addr),
            rates: Vec::new(),
            latencies: Vec::new(),
        },
    ];
    for mode in &modes {
        wait_ready(&client, &mode.base).await;
    }
    // Warm-up, then alternate the modes so drift affects both alike.
    for mode in &mut modes {
        load(&client, &token, &nirs, &mode.base, Duration::from_secs(1)).await;
    }
    for _ in 0..ROUNDS {
        for mode in &mut modes {
            let (rate, mut latencies) = load(&client, &token, &nirs, &mode.base, RUN).await;
            mode.rates.push(rate);
            mode.latencies.append(&mut latencies);
        }
    }
    println!(
        "\nlookups over HTTPS, {CONNECTIONS} connections, {ROUNDS} × {} s per mode",
        RUN.as_secs()
    );
    let saturation: Vec<(&str, Vec<f64>, Vec<Duration>)> = modes
        .iter_mut()
        .map(|m| {
            (
                m.name,
                std::mem::take(&mut m.rates),
                std::mem::take(&mut m.latencies),
            )
        })
        .collect();
    let medians = print_table("requests/s (median)", saturation);
    println!("durable / null throughput: {:.3}", medians[0] / medians[1]);

    // The point: at an offered 5 000 lookups/s (`AUDIT_BENCH_RATE`), does the durable
    // trail keep up with the null sink? Alternated like the saturation runs.
    let rate: f64 = std::env::var("AUDIT_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_000.0);
    let mut paced: Vec<(&str, Vec<f64>, Vec<Duration>)> = modes
        .iter()
        .map(|m| (m.name, Vec::new(), Vec::new()))
        .collect();
    for _ in 0..ROUNDS {
        for (mode, out) in modes.iter().zip(paced.iter_mut()) {
            let (achieved, mut latencies) =
                load_paced(&client, &token, &nirs, &mode.base, RUN, Some(rate)).await;
            out.1.push(achieved);
            out.2.append(&mut latencies);
        }
    }
    println!(
        "\nat {rate:.0} lookups/s offered, {CONNECTIONS} connections, {ROUNDS} × {} s per mode",
        RUN.as_secs()
    );
    let achieved = print_table("requests/s achieved (median)", paced);
    println!(
        "durable / null throughput at {rate:.0}/s offered: {:.3}",
        achieved[0] / achieved[1]
    );
    durable.stop_now();
    null.stop_now();
}

/// Prints one row per mode (median rate, p50, p99); returns the medians.
fn print_table(rate_title: &str, modes: Vec<(&str, Vec<f64>, Vec<Duration>)>) -> Vec<f64> {
    println!("| mode | {rate_title} | p50 | p99 |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (name, mut rates, mut latencies) in modes {
        rates.sort_by(f64::total_cmp);
        latencies.sort();
        let median = rates[rates.len() / 2];
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
        println!(
            "| {name} | {median:.0} | {:.2} ms | {:.2} ms |",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
        medians.push(median);
    }
    medians
}

fn allocataires(root: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(root.join("data/social/allocataires.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let nir = batch
            .column_by_name("nir")
            .unwrap()
            .as_string::<i32>()
            .clone();
        out.extend(nir.iter().map(|v| v.unwrap().to_string()));
    }
    out
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} not ready");
}

/// Saturation load for `run`: requests/s and every latency.
async fn load(
    client: &reqwest::Client,
    token: &str,
    nirs: &Arc<Vec<String>>,
    base: &str,
    run: Duration,
) -> (f64, Vec<Duration>) {
    load_paced(client, token, nirs, base, run, None).await
}

/// Load for `run`, at `rate` requests/s in all (spread over the connections, each request
/// sent at its scheduled time or as soon as its connection is free), or as fast as possible
/// with `None`: requests/s achieved and every latency.
async fn load_paced(
    client: &reqwest::Client,
    token: &str,
    nirs: &Arc<Vec<String>>,
    base: &str,
    run: Duration,
    rate: Option<f64>,
) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (client, token, nirs, base) = (
            client.clone(),
            token.to_string(),
            nirs.clone(),
            base.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = c;
            while started.elapsed() < run {
                if let Some(rate) = rate {
                    // Request number `i` (over all connections) is due at i / rate.
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    if started.elapsed() >= run {
                        break;
                    }
                }
                let nir = &nirs[i % nirs.len()];
                i += CONNECTIONS;
                let url = format!(
                    "{base}/v1/lookup/social.allocataires/{nir}?context=QF&recipient=13000170500016&object=bench"
                );
                let t = Instant::now();
                let r = client.get(url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, all)
}
