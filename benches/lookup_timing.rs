//! Timing of a "not found" lookup (issue: trust boundaries): a key that the caller's row filter
//! hides and a key that does not exist must not be told apart by the time of their 404. Run with
//! `cargo bench --bench lookup_timing`; figures are in docs/benchmarks.md.
//!
//! On a generated demo hub (`LOOKUP_TIMING_ROWS` stays, default 200 000), the CAF's plan for
//! `social.allocataires` gets the row filter `nombre_enfants >= 3`; hidden keys (records with
//! fewer children) and missing keys (13-digit numbers no record has) are looked up in turn,
//! interleaved, `LOOKUP_TIMING_SAMPLES` each (default 20 000), through `lookup::answer_record`
//! (the whole read path: index, Parquet page read, filter). Prints p50/p90/p99 of each and the
//! ratios of the two distributions' quantiles. No timing is asserted (machines are noisy): the
//! same path is asserted by `lookups::a_hidden_key_and_a_missing_key_take_the_same_path`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup"
)]

use std::time::{Duration, Instant};

use arrow::array::AsArray;
use passerelle::lookup::{LookupError, Lookups, answer_record};
use passerelle::policy::PolicySet;
use passerelle::policy::filter::FilterExpr;
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (NIR, number of children) of every allocataire.
fn allocataires(root: &std::path::Path) -> Vec<(String, i64)> {
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
        let children = arrow::compute::cast(
            batch.column_by_name("nombre_enfants").unwrap(),
            &arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        let children = children.as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..batch.num_rows() {
            out.push((nir.value(i).to_string(), children.value(i)));
        }
    }
    out
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let rows = env_or("LOOKUP_TIMING_ROWS", 200_000);
    let samples = env_or("LOOKUP_TIMING_SAMPLES", 20_000) as usize;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    passerelle::demo::hub::ensure(&root, rows, 7, false).unwrap();
    let set = PolicySet::load(&root.join("policies")).unwrap();
    let principal = passerelle::identity::Principal::for_explain(
        &json!({"sub": "caf-si-prestations", "siret": "13000170500016"}),
    )
    .unwrap();
    let habilitation = set
        .resolve(&principal, None, chrono::Utc::now().date_naive())
        .unwrap();
    let plan = set
        .plan(&principal, habilitation)
        .dataset("social.allocataires")
        .unwrap()
        .clone()
        .with_row_filter(FilterExpr::parse("nombre_enfants >= 3", &["nombre_enfants"]).unwrap());
    let (lookups, _) = Lookups::build(
        &set.catalog,
        &set.lookup_key_columns(),
        std::sync::Arc::new(root.join("data")),
    )
    .unwrap();
    let people = allocataires(&root);
    let known: std::collections::HashSet<&str> = people.iter().map(|(n, _)| n.as_str()).collect();
    // Spread over the whole file, as the decoy rows of missing keys are (the first rows of the
    // file would sit in fewer, warmer pages).
    let all_hidden: Vec<&str> = people
        .iter()
        .filter(|(_, c)| *c < 3)
        .map(|(n, _)| n.as_str())
        .collect();
    let step = (all_hidden.len() / samples).max(1);
    let hidden: Vec<&str> = all_hidden
        .iter()
        .step_by(step)
        .take(samples)
        .copied()
        .collect();
    let missing: Vec<String> = (0..)
        .map(|i: u64| {
            format!(
                "{:013}",
                1_000_000_000_000 + i * 7_919_017 % 999_999_999_999
            )
        })
        .filter(|k| !known.contains(k.as_str()))
        .take(hidden.len())
        .collect();
    let mut times = [Vec::new(), Vec::new()];
    // Warm the page cache and the index the same way for both.
    for i in 0..hidden.len().min(1000) {
        let _ = answer_record(&lookups, &set.catalog, &plan, hidden[i], None);
        let _ = answer_record(&lookups, &set.catalog, &plan, &missing[i], None);
    }
    for i in 0..hidden.len() {
        for (kind, key) in [(0, hidden[i]), (1, missing[i].as_str())] {
            let started = Instant::now();
            let answer = answer_record(&lookups, &set.catalog, &plan, key, None);
            times[kind].push(started.elapsed());
            assert!(matches!(answer, Err(LookupError::NotFound)));
        }
    }
    println!(
        "lookup_timing: {} stays hub, {} hidden and {} missing keys, interleaved",
        rows,
        times[0].len(),
        times[1].len()
    );
    let mut quantiles = Vec::new();
    for (name, t) in ["hidden by the row filter", "missing"]
        .iter()
        .zip(&mut times)
    {
        t.sort();
        let q: Vec<Duration> = [0.5, 0.9, 0.99].iter().map(|&q| quantile(t, q)).collect();
        println!(
            "  {name:<26} p50 {:>8.1} µs  p90 {:>8.1} µs  p99 {:>8.1} µs",
            q[0].as_secs_f64() * 1e6,
            q[1].as_secs_f64() * 1e6,
            q[2].as_secs_f64() * 1e6
        );
        quantiles.push(q);
    }
    println!(
        "  missing / hidden:          p50 {:.3}  p90 {:.3}  p99 {:.3}",
        quantiles[1][0].as_secs_f64() / quantiles[0][0].as_secs_f64(),
        quantiles[1][1].as_secs_f64() / quantiles[0][1].as_secs_f64(),
        quantiles[1][2].as_secs_f64() / quantiles[0][2].as_secs_f64()
    );
}
