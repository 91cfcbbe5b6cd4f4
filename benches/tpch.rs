//! TPC-H side by side (issue: benchmarks). Run with `benches/tpch.sh` (installs DuckDB from
//! PyPI, then runs this) or `cargo bench --bench tpch`; figures and goals are in
//! docs/benchmarks.md.
//!
//! The 22 queries of `tests/tpch/queries/` over the same Parquet files (generated once with
//! `tpchgen` into a cache folder outside the repository), each timed in four engines:
//!
//! - (a) **bare**: bare DataFusion, each table registered as a Parquet table;
//! - (b) **allow-all**: passerelle's secure engine (`engine::secure_session`, `run_query`) under
//!   an allow-all plan — every column clear, no row filter: the gateway's fixed cost;
//! - (c) **realistic**: the secure engine under a plan that pseudonymises `c_name`, keeps the
//!   last 4 characters of `c_phone`, redacts `c_address` and filters `customer` on
//!   `c_nationkey` (20 of the 25 nations): answers differ from (a) by design, only times count;
//! - (d) **DuckDB** over the same files (`benches/tpch_duckdb.py`, run as a child process).
//!
//! Same thread count everywhere (`TPCH_THREADS`, default 2: tokio workers and DataFusion's
//! `target_partitions`, DuckDB's `threads`). Every engine runs each query once to warm up, then
//! `TPCH_RUNS` times; (a), (b) and (c) are interleaved run by run, so that a change of load on
//! the machine affects the three alike. Reported: each query's median, the geometric mean of
//! the medians, and the ratios (b)/(a), (c)/(a), (b)/(d).
//!
//! Settings (environment): `TPCH_SF` (scale factor, default 1), `TPCH_RUNS` (default 5),
//! `TPCH_THREADS` (default 2), `TPCH_QUERIES` (e.g. `1,6,18`; default all 22), `TPCH_DIR`
//! (data folder; default `/var/cache/passerelle/tpch-sf<SF>`, else the temporary folder),
//! `TPCH_DUCKDB` (`0` to skip DuckDB), `TPCH_PYTHON` (default `python3`), `TPCH_OUT` (also
//! write the table to this file), and two for experiments:
//!
//! - `TPCH_LAYOUT`: how the files are written, a comma-separated list of `rg=<rows>` (row
//!   group size), `none`/`snappy`/`zstd` (compression), `nodict` (no dictionary), `chunk`
//!   (column-chunk statistics only: no page index), `sorted` (`lineitem` on `l_shipdate`,
//!   `orders` on `o_orderdate`) or `unsorted` (generation order, i.e. key order); the files go
//!   to `<dir>-<layout>`, except `unsorted` alone: `<dir>`. Default `sorted`, the layout
//!   docs/benchmarks.md recommends (measured there against the others): the `ArrowWriter`'s
//!   defaults (no compression, row groups of 1 048 576 rows, dictionary, page statistics),
//!   the two fact tables sorted on their date.
//! - `TPCH_EXPLAIN=1`: print bare DataFusion's `EXPLAIN ANALYZE` of each query (after one
//!   warm-up run) instead of timing anything.
//! - `TPCH_SET`: DataFusion settings for (a), (b) and (c) alike, `key=value` separated by `;`
//!   (e.g. `datafusion.execution.parquet.pushdown_filters=true`), set after the thread count.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark driver"
)]

mod common;
#[path = "../tests/tpch/data.rs"]
mod data;

use common::{env_or, median};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use passerelle::engine::{EngineError, QueryLimits, run_query};
use passerelle::policy::filter::FilterExpr;
use passerelle::policy::{AccessPlan, Catalog, ColumnPlan, ColumnTreatment, DatasetPlan};
use passerelle::pseudonym::{KeyRing, MasterKey};

/// Nations whose customers the realistic plan lets through: all but the five of region
/// MIDDLE EAST (4 EGYPT, 10 IRAN, 11 IRAQ, 13 JORDAN, 20 SAUDI ARABIA), i.e. 80 % of them, so
/// that the filter costs its evaluation without removing most of the work.
const CUSTOMER_FILTER: &str =
    "c_nationkey IN (0, 1, 2, 3, 5, 6, 7, 8, 9, 12, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24)";

struct Settings {
    scale_factor: f64,
    runs: usize,
    threads: usize,
    queries: Vec<usize>,
    dir: PathBuf,
    duckdb: bool,
    python: String,
    out: Option<PathBuf>,
    layout: String,
    set: Vec<(String, String)>,
}

impl Settings {
    fn from_env() -> Settings {
        let scale_factor: f64 = env_or("TPCH_SF", 1.0);
        assert!(scale_factor > 0.0, "TPCH_SF must be positive");
        let queries = common::queries_from_env();
        let layout = std::env::var("TPCH_LAYOUT").unwrap_or_else(|_| "sorted".into());
        let set = std::env::var("TPCH_SET")
            .unwrap_or_default()
            .split(';')
            .filter(|kv| !kv.trim().is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("TPCH_SET: key=value;key=value");
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let dir = common::data_dir(scale_factor);
        Settings {
            scale_factor,
            runs: env_or("TPCH_RUNS", 5usize).max(1),
            threads: env_or("TPCH_THREADS", 2usize).max(1),
            queries,
            duckdb: std::env::var("TPCH_DUCKDB").map_or(true, |v| v != "0"),
            python: std::env::var("TPCH_PYTHON").unwrap_or_else(|_| "python3".into()),
            out: std::env::var("TPCH_OUT").ok().map(PathBuf::from),
            dir: if layout.is_empty() || layout == "unsorted" {
                dir
            } else {
                let name = dir.file_name().unwrap().to_string_lossy();
                let suffix: String = layout
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                dir.with_file_name(format!("{name}-{suffix}"))
            },
            layout,
            set,
        }
    }
}

/// The writer's layout from `TPCH_LAYOUT` (see the module's documentation).
fn layout(spec: &str) -> data::Layout {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    let mut props = WriterProperties::builder();
    let mut sorted = false;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        props = match part {
            "none" => props.set_compression(Compression::UNCOMPRESSED),
            "snappy" => props.set_compression(Compression::SNAPPY),
            "zstd" => props.set_compression(Compression::ZSTD(ZstdLevel::default())),
            "nodict" => props.set_dictionary_enabled(false),
            "chunk" => props.set_statistics_enabled(EnabledStatistics::Chunk),
            "sorted" => {
                sorted = true;
                props
            }
            "unsorted" => {
                sorted = false;
                props
            }
            other => match other.strip_prefix("rg=") {
                Some(rows) => props.set_max_row_group_row_count(Some(rows.parse().unwrap())),
                None => panic!("TPCH_LAYOUT: unknown part `{other}`"),
            },
        };
    }
    data::Layout {
        props: props.build(),
        sorted,
    }
}

/// The Parquet schema of a table folder (as `tests/tpch/data.rs` reads it; private there).
fn raw_schema(folder: &Path) -> Result<SchemaRef, EngineError> {
    let table = folder
        .file_name()
        .ok_or_else(|| EngineError::Internal(format!("{} has no name", folder.display())))?;
    let file = folder.join(Path::new(table).with_extension("parquet"));
    passerelle::policy::catalog::parquet_arrow_schema(&file).map_err(EngineError::Internal)
}

/// The realistic plan: the allow-all plan, with `customer`'s name pseudonymised (domain of
/// the habilitation), phone partially masked, address redacted, and a row filter on nation.
fn realistic_plan(catalog: &Catalog) -> AccessPlan {
    let all = data::allow_all_plan(catalog);
    let mut habilitation = all.habilitation().clone();
    habilitation.title = "TPC-H, customers pseudonymised and filtered".into();
    let datasets = all
        .datasets()
        .map(|d| {
            if d.name() != "public.customer" {
                return d.clone();
            }
            let columns: Vec<ColumnPlan> = d
                .columns()
                .iter()
                .map(|column| {
                    let treatment = match column.name() {
                        "c_name" => ColumnTreatment::Pseudonymised {
                            domain: habilitation.pseudonymisation_domain.clone(),
                        },
                        "c_phone" => ColumnTreatment::Partial { keep_last: 4 },
                        "c_address" => ColumnTreatment::Redacted,
                        _ => column.treatment().clone(),
                    };
                    ColumnPlan::new(column.name(), column.class(), treatment)
                })
                .collect();
            let names: Vec<&str> = columns.iter().map(ColumnPlan::name).collect();
            let expr = FilterExpr::parse(CUSTOMER_FILTER, &names).expect("the filter parses");
            DatasetPlan::new(d.name(), columns).with_row_filter(expr)
        })
        .collect();
    AccessPlan::new(habilitation, "realistic", datasets)
}

fn secure(dir: &Path, plan: &AccessPlan, catalog: &Catalog) -> SessionContext {
    let keys = KeyRing::new(MasterKey::from_bytes([0x5a; 32]), Vec::new());
    let today = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    passerelle::engine::secure_session(plan, catalog, dir, &keys, today, &raw_schema).unwrap()
}

/// The thread count, then `TPCH_SET`'s settings.
async fn configure(ctx: &SessionContext, threads: usize, set: &[(String, String)]) {
    let target = (
        "datafusion.execution.target_partitions".to_string(),
        threads.to_string(),
    );
    for (key, value) in std::iter::once(&target).chain(set) {
        ctx.sql(&format!("SET {key} = {value}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
    }
}

#[derive(Clone, Copy)]
enum Engine {
    Bare,
    AllowAll,
    Realistic,
}

/// Runs one query to the end; returns its time and row count.
async fn time_one(ctx: &SessionContext, engine: Engine, sql: &str, n: usize) -> (Duration, usize) {
    let limits = QueryLimits {
        max_rows: usize::MAX / 2,
        timeout: Duration::from_secs(3600),
        ..QueryLimits::default()
    };
    let start = Instant::now();
    let rows = match engine {
        Engine::Bare => {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            batches.iter().map(RecordBatch::num_rows).sum()
        }
        Engine::AllowAll | Engine::Realistic => {
            let outcome = run_query(ctx, sql, &limits)
                .await
                .unwrap_or_else(|e| panic!("Q{n:02}: the secure engine refused: {e:?}"));
            outcome.rows
        }
    };
    (start.elapsed(), rows)
}

fn geomean(values: &[f64]) -> f64 {
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// DuckDB's medians (ms) by query number, from `benches/tpch_duckdb.py`.
fn run_duckdb(settings: &Settings) -> Result<(String, BTreeMap<usize, f64>), String> {
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    let queries_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tpch/queries");
    let list: Vec<String> = settings.queries.iter().map(ToString::to_string).collect();
    let output = Command::new(&settings.python)
        .arg(bench_dir.join("tpch_duckdb.py"))
        .args(["--dir", &settings.dir.to_string_lossy()])
        .args(["--queries-dir", &queries_dir.to_string_lossy()])
        .args(["--runs", &settings.runs.to_string()])
        .args(["--threads", &settings.threads.to_string()])
        .args(["--queries", &list.join(",")])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", settings.python))?;
    if !output.status.success() {
        return Err(format!("tpch_duckdb.py exited with {}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("tpch_duckdb.py output: {e}"))?;
    let version = value["version"].as_str().unwrap_or("?").to_string();
    let mut medians = BTreeMap::new();
    if let Some(map) = value["medians_ms"].as_object() {
        for (k, v) in map {
            if let (Ok(n), Some(ms)) = (k.parse::<usize>(), v.as_f64()) {
                medians.insert(n, ms);
            }
        }
    }
    Ok((version, medians))
}

fn ratio(num: f64, den: Option<f64>) -> String {
    match den {
        Some(d) if d > 0.0 => format!("{:.3}", num / d),
        _ => "—".into(),
    }
}

fn main() {
    let settings = Settings::from_env();
    // `cargo bench` passes `--bench`; a filter argument is not supported (use TPCH_QUERIES).
    let layout = layout(&settings.layout);
    common::ensure_data(&settings.dir, settings.scale_factor, |dir| {
        data::generate(dir, settings.scale_factor, &layout).unwrap();
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .enable_all()
        .build()
        .unwrap();

    let catalog = data::catalog().unwrap();
    let realistic = realistic_plan(&catalog);

    // (engine, query) → times in ms
    let mut times: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    let mut rows: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut session_ms = Vec::new();
    runtime.block_on(async {
        let bare = data::bare_session(&settings.dir).await.unwrap();
        // What the server does per request (plan → session): timed a few times for the report.
        for _ in 0..5 {
            let start = Instant::now();
            let s = secure(&settings.dir, &realistic, &catalog);
            session_ms.push(start.elapsed().as_secs_f64() * 1e3);
            drop(s);
        }
        let sessions = [
            (Engine::Bare, bare),
            (Engine::AllowAll, data::secure_session(&settings.dir).unwrap()),
            (
                Engine::Realistic,
                secure(&settings.dir, &realistic, &catalog),
            ),
        ];
        for (_, ctx) in &sessions {
            configure(ctx, settings.threads, &settings.set).await;
        }
        if std::env::var("TPCH_EXPLAIN").is_ok_and(|v| v == "1") {
            let bare = &sessions[0].1;
            for &n in &settings.queries {
                let sql = data::QUERIES[n - 1];
                bare.sql(sql).await.unwrap().collect().await.unwrap();
                let explained = bare
                    .sql(&format!("EXPLAIN ANALYZE {sql}"))
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                println!("Q{n:02}");
                for batch in &explained {
                    let plans = batch.column(1);
                    let plans = datafusion::arrow::array::AsArray::as_string_opt::<i32>(plans)
                        .expect("EXPLAIN gives its plans as text");
                    plans.iter().flatten().for_each(|plan| println!("{plan}"));
                }
            }
            std::process::exit(0);
        }
        for &n in &settings.queries {
            let sql = data::QUERIES[n - 1];
            // Warm-up: one run each (file listing, footers, page cache).
            for (i, (engine, ctx)) in sessions.iter().enumerate() {
                let (_, r) = time_one(ctx, *engine, sql, n).await;
                rows.insert((i, n), r);
            }
            for _ in 0..settings.runs {
                for (i, (engine, ctx)) in sessions.iter().enumerate() {
                    let (t, _) = time_one(ctx, *engine, sql, n).await;
                    times
                        .entry((i, n))
                        .or_default()
                        .push(t.as_secs_f64() * 1e3);
                }
            }
            let m = |i: usize| median(&mut times[&(i, n)].clone());
            eprintln!(
                "Q{n:02}: bare {:8.1} ms | allow-all {:8.1} ms | realistic {:8.1} ms (rows {} / {} / {})",
                m(0),
                m(1),
                m(2),
                rows[&(0, n)],
                rows[&(1, n)],
                rows[&(2, n)],
            );
        }
    });
    drop(runtime);

    let duck = if settings.duckdb {
        match run_duckdb(&settings) {
            Ok(d) => Some(d),
            Err(why) => {
                eprintln!("DuckDB skipped: {why} (run benches/tpch.sh, or pip install duckdb)");
                None
            }
        }
    } else {
        None
    };

    let mut table = String::new();
    let _ = writeln!(
        table,
        "TPC-H SF {}{}{}, {} threads, {} runs after 1 warm-up, medians in ms{}",
        settings.scale_factor,
        if settings.layout.is_empty() {
            String::new()
        } else {
            format!(", layout `{}`", settings.layout)
        },
        settings
            .set
            .iter()
            .map(|(k, v)| format!(", `{k} = {v}`"))
            .collect::<String>(),
        settings.threads,
        settings.runs,
        duck.as_ref()
            .map(|(v, _)| format!(", DuckDB {v}"))
            .unwrap_or_default()
    );
    let _ = writeln!(table);
    let _ = writeln!(
        table,
        "| query | (a) bare | (b) allow-all | (c) realistic | (d) DuckDB | (b)/(a) | (c)/(a) | (b)/(d) |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut cols: [Vec<f64>; 3] = Default::default();
    let mut duck_col = Vec::new();
    for &n in &settings.queries {
        let meds: Vec<f64> = (0..3)
            .map(|i| median(&mut times[&(i, n)].clone()))
            .collect();
        for i in 0..3 {
            cols[i].push(meds[i]);
        }
        let d = duck.as_ref().and_then(|(_, m)| m.get(&n).copied());
        if let Some(d) = d {
            duck_col.push(d);
        }
        let _ = writeln!(
            table,
            "| Q{n:02} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            meds[0],
            meds[1],
            meds[2],
            d.map_or("—".into(), |d| format!("{d:.1}")),
            ratio(meds[1], Some(meds[0])),
            ratio(meds[2], Some(meds[0])),
            ratio(meds[1], d),
        );
    }
    let g: Vec<f64> = cols.iter().map(|c| geomean(c)).collect();
    // DuckDB's geomean only when it answered every query (else the ratio would mislead).
    let gd = (duck_col.len() == settings.queries.len()).then(|| geomean(&duck_col));
    let _ = writeln!(
        table,
        "| **geomean** | **{:.1}** | **{:.1}** | **{:.1}** | **{}** | **{}** | **{}** | **{}** |",
        g[0],
        g[1],
        g[2],
        gd.map_or("—".into(), |d| format!("{d:.1}")),
        ratio(g[1], Some(g[0])),
        ratio(g[2], Some(g[0])),
        ratio(g[1], gd),
    );
    let _ = writeln!(table);
    let _ = writeln!(
        table,
        "Goals: (b)/(a) ≤ 1.03 → {}; (c)/(a) ≤ 1.15 → {}; (b)/(d) ≤ 1.3 → {}. \
         Building a secure session (realistic plan; the server builds one per request): median {:.2} ms.",
        verdict(g[1] / g[0], 1.03),
        verdict(g[2] / g[0], 1.15),
        gd.map_or("not measured".into(), |d| verdict(g[1] / d, 1.3)),
        median(&mut session_ms),
    );
    println!("{table}");
    if let Some(out) = &settings.out {
        std::fs::write(out, &table).unwrap();
    }
}

fn verdict(value: f64, goal: f64) -> String {
    if value <= goal {
        format!("{value:.3}, met")
    } else {
        format!("{value:.3}, **missed**")
    }
}
