//! TPC-H on one node and on a Ballista cluster (issue #24), side by side in one run:
//! `cargo bench --bench tpch_cluster` (settings below); figures in docs/benchmarks.md,
//! "One node and a cluster".
//!
//! (b) the secure engine under the allow-all plan on this process (`run_query`), and (e) the
//! same plan shipped to a local cluster — a scheduler and `TPCH_EXECUTORS` executors of this
//! build, child processes on loopback, mutual TLS (`run_query_on`, every query that can go).
//! Interleaved run by run. Also reported per query: the bytes its job wrote to the executors'
//! work folders (the shuffle files every stage writes and the next reads: the data shipped
//! between nodes, the answer included; sampled every 2 ms, so a job faster than that may show
//! less), and whether it ran on the cluster (scalar subqueries stay on the gateway).
//!
//! Settings (environment): `TPCH_SF` (default 1), `TPCH_RUNS` (default 3), `TPCH_THREADS`
//! (gateway threads and partitions, default 2), `TPCH_EXECUTORS` (default 2),
//! `TPCH_EXECUTOR_MB` (memory of each executor, default 4096), `TPCH_QUERIES` (default all),
//! `TPCH_DIR` (default `/var/cache/passerelle/tpch-sf<SF>`: the generation-order files
//! `benches/tpch.rs` makes with `TPCH_LAYOUT=unsorted`; generated once, as there).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark driver"
)]

mod common;
#[path = "../tests/tpch/data.rs"]
#[allow(
    dead_code,
    reason = "the tests' data module; this bench uses part of it"
)]
mod data;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{env_or, median};

use passerelle::cluster::client::ClusterClient;
use passerelle::cluster::local::LocalCluster;
use passerelle::engine::{Cluster, QueryLimits, run_query_on};

/// Bytes of every file under `dir`, by top-level entry (a job's folder).
fn entries(dir: &Path) -> Vec<(String, u64)> {
    fn size(path: &Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(|d| d.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        size(&e.path()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let scale_factor: f64 = env_or("TPCH_SF", 1.0);
    let runs: usize = env_or("TPCH_RUNS", 3);
    let threads: usize = env_or("TPCH_THREADS", 2);
    let executors: usize = env_or("TPCH_EXECUTORS", 2);
    let executor_mb: u64 = env_or("TPCH_EXECUTOR_MB", 4096);
    let queries = common::queries_from_env();
    let dir = common::data_dir(scale_factor);
    common::ensure_data(&dir, scale_factor, |dir| {
        data::generate(dir, scale_factor, &data::Layout::default()).unwrap();
    });

    // The roles read a hub configuration (their limits; the cluster's section comes from
    // their environment): a small demo hub's.
    passerelle::install_crypto_provider();
    let work = tempfile::tempdir().unwrap();
    let hub = work.path().join("hub");
    passerelle::demo::hub::ensure(&hub, 100, 1, false).unwrap();
    let cluster = LocalCluster::start_with_memory(
        Path::new(env!("CARGO_BIN_EXE_passerelle")),
        &passerelle::demo::hub::HubLayout::new(&hub).config(),
        &work.path().join("cluster"),
        executors,
        executor_mb,
    )
    .unwrap();
    let client = ClusterClient::new(&cluster.gateway)
        .unwrap()
        .with_min_input_bytes(0);
    let target: &dyn Cluster = &client;
    let work_dirs: Vec<PathBuf> = (1..=executors)
        .map(|i| work.path().join(format!("cluster/work-{i}")))
        .collect();

    // Every job folder's largest size, sampled every 2 ms.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u64,
    >::new()));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (seen, sampling, work_dirs) = (seen.clone(), sampling.clone(), work_dirs.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                for (name, bytes) in work_dirs.iter().flat_map(|d| entries(d)) {
                    let mut seen = seen.lock().unwrap();
                    let max = seen.entry(name).or_default();
                    *max = (*max).max(bytes);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let limits = QueryLimits {
        max_rows: usize::MAX / 2,
        timeout: Duration::from_secs(3600),
        ..QueryLimits::default()
    };
    let mut lines = Vec::new();
    let (mut single_all, mut cluster_all, mut shipped_all) = (Vec::new(), Vec::new(), 0u64);
    runtime.block_on(async {
        let ctx = data::secure_session(&dir).unwrap();
        ctx.sql(&format!(
            "SET datafusion.execution.target_partitions = {threads}"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        for &n in &queries {
            let sql = data::QUERIES[n - 1];
            let time = |on: Option<&'static str>| {
                let ctx = ctx.clone();
                let cluster = on.map(|_| target);
                let limits = limits.clone();
                async move {
                    let start = Instant::now();
                    let outcome = run_query_on(&ctx, sql, &limits, cluster)
                        .await
                        .unwrap_or_else(|e| panic!("Q{n:02}: {e:?}"));
                    (start.elapsed().as_secs_f64() * 1e3, outcome)
                }
            };
            // Warm-up, and the bytes one run ships (the largest size each new job folder
            // reached: the gateway has them removed once it has read the answer).
            time(None).await;
            let before: Vec<String> = seen.lock().unwrap().keys().cloned().collect();
            let (_, outcome) = time(Some("cluster")).await;
            std::thread::sleep(Duration::from_millis(20));
            let shipped: u64 = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(name, _)| !before.contains(name))
                .map(|(_, bytes)| bytes)
                .sum();
            let (mut single, mut distributed) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                single.push(time(None).await.0);
                distributed.push(time(Some("cluster")).await.0);
            }
            let (s, c) = (median(&mut single), median(&mut distributed));
            single_all.push(s);
            cluster_all.push(c);
            shipped_all += shipped;
            let line = format!(
                "| Q{n:02} | {s:.0} | {c:.0} | {:.2} | {:.1} | {} |",
                c / s,
                shipped as f64 / 1e6,
                if outcome.on_cluster {
                    "cluster"
                } else {
                    "gateway"
                }
            );
            eprintln!("{line}");
            lines.push(line);
        }
    });
    let geo = |v: &[f64]| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp();
    println!(
        "TPC-H SF {scale_factor}: one node ({threads} threads) vs a cluster of {executors} executors \
         ({executor_mb} MiB each) on this machine, {runs} runs after 1 warm-up, medians in ms"
    );
    println!("| query | one node | cluster | cluster/one node | shipped MB | ran on |");
    println!("|---|---|---|---|---|---|");
    for line in &lines {
        println!("{line}");
    }
    println!(
        "| geometric mean | {:.0} | {:.0} | {:.2} | {:.1} (total) | |",
        geo(&single_all),
        geo(&cluster_all),
        geo(&cluster_all) / geo(&single_all),
        shipped_all as f64 / 1e6
    );
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    drop(cluster);
}
