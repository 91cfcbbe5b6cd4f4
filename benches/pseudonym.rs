//! Pseudonymisation (issue: pseudonymisation). Run with `cargo bench --bench pseudonym`;
//! figures and goals are in docs/benchmarks.md.
//!
//! Measured:
//! - the kernels on one core, over columns of 1 048 576 values: pseudonymising 13-character
//!   NIRs (goal ≥ 10 million values per second per core), `partial:4`, postcode → département;
//!   criterion reports the time per column and the throughput in elements per second;
//! - the query-time cost of pseudonymisation: the same queries over `sante.sejours` (1 million
//!   synthetic stays, generated into a temporary folder at start-up) through passerelle's
//!   secure engine (`SecureTableProvider`, `run_query`), once with `nir` pseudonymised and once
//!   with `nir` in clear, and once reading `nir` from the pseudonymised extract that the server
//!   keeps (`engine::Extracts`); same data, same run (goal: pseudonymised ≤ 1.3 × clear). After the
//!   criterion measurements, an interleaved run (clear, pseudonymised, clear, …) prints the
//!   median of each and their ratio, which a busy machine disturbs less than two separate runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use passerelle::demo::data::{GenerateOptions, SEJOURS, generate_datasets};
use passerelle::engine::{Extracts, QueryLimits, SecureTableProvider, run_query};
use passerelle::policy::catalog::parquet_arrow_schema;
use passerelle::policy::{ColumnClass, ColumnPlan, ColumnTreatment, DatasetPlan};
use passerelle::pseudonym::domain::PSEUDONYM_LEN;
use passerelle::pseudonym::kernels::{partial, postcode_departement, pseudonymise};
use passerelle::pseudonym::{MasterKey, PseudonymDomain};

/// Values per column in the kernel benchmarks.
const N: usize = 1 << 20;
/// Stays in the generated `sante.sejours`.
const STAYS: u64 = 1_000_000;
/// The queries compared, with a short name.
const QUERIES: &[(&str, &str)] = &[
    (
        "group by nir",
        "SELECT nir, count(*) AS n FROM sante.sejours GROUP BY nir",
    ),
    ("scan nir, cout", "SELECT nir, cout FROM sante.sejours"),
];
/// Rounds of the interleaved comparison.
const ROUNDS: usize = 15;

fn domain() -> PseudonymDomain {
    PseudonymDomain::derive(&MasterKey::from_bytes([9; 32]), "projet-diabete", 1).unwrap()
}

fn nirs() -> StringArray {
    (0..N as u64)
        .map(|i| {
            Some(format!(
                "{}{:02}{:02}{:08}",
                1 + i % 2,
                i % 100,
                1 + i % 12,
                i
            ))
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let domain = domain();
    let column = nirs();
    let postcodes: StringArray = (0..N)
        .map(|i| Some(format!("{:05}", 1000 + (i * 7) % 95000)))
        .collect();
    let mut group = c.benchmark_group("pseudonym kernels (1 Mi values, one core)");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("pseudonymise NIR (HMAC-SHA-256, base64url)", |b| {
        b.iter(|| pseudonymise(&domain, &column).unwrap())
    });
    // The same HMAC one value at a time (no lanes): the lanes' gain, side by side.
    group.bench_function("pseudonymise NIR, one value at a time", |b| {
        b.iter(|| {
            let mut out = [0u8; PSEUDONYM_LEN];
            let mut acc = 0u8;
            for i in 0..column.len() {
                domain.pseudonymise_into(column.value(i).as_bytes(), &mut out);
                acc ^= out[0];
            }
            acc
        })
    });
    group.bench_function("partial:4", |b| b.iter(|| partial(&column, 4).unwrap()));
    group.bench_function("postcode to departement", |b| {
        b.iter(|| postcode_departement(&postcodes).unwrap())
    });
    group.finish();
}

/// `sante.sejours` as a habilitation sees it: every column in clear but `nir`.
fn plan(schema: &SchemaRef, nir: ColumnTreatment) -> DatasetPlan {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "nir" {
                ColumnPlan::new(f.name().clone(), ColumnClass::DirectIdentifier, nir.clone())
            } else {
                ColumnPlan::new(
                    f.name().clone(),
                    ColumnClass::Public,
                    ColumnTreatment::Clear,
                )
            }
        })
        .collect();
    DatasetPlan::new(SEJOURS.0, columns)
}

/// A session configured like `secure_session`'s, with `sante.sejours` under `plan`.
fn session(plan: &DatasetPlan, path: &Path, schema: &SchemaRef) -> SessionContext {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema("passerelle", "public")
        .with_create_default_catalog_and_schema(true)
        .with_information_schema(false)
        .set_bool("datafusion.sql_parser.enable_ident_normalization", true);
    let ctx = SessionContext::new_with_config(config);
    let provider = SecureTableProvider::new(
        plan,
        path.to_path_buf(),
        schema.clone(),
        Some(Arc::new(domain())),
    )
    .unwrap();
    let root = ctx.catalog("passerelle").unwrap();
    root.register_schema("sante", Arc::new(MemorySchemaProvider::new()))
        .unwrap();
    ctx.register_table(
        TableReference::partial("sante", "sejours"),
        Arc::new(provider),
    )
    .unwrap();
    ctx
}

/// The generated data folder (removed on drop) and the three sessions: clear, pseudonymised
/// in the scan, pseudonymised read from the extract.
struct Hub {
    _dir: tempfile::TempDir,
    clear: SessionContext,
    pseudonymised: SessionContext,
    extract: SessionContext,
}

fn hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let started = Instant::now();
    let written = generate_datasets(
        &data,
        &GenerateOptions {
            rows: STAYS,
            seed: passerelle::demo::DEFAULT_SEED,
            progress: false,
        },
    )
    .unwrap();
    let rows = written.iter().find(|d| d.name == SEJOURS.0).unwrap().rows;
    assert_eq!(rows, STAYS);
    eprintln!(
        "generated {rows} stays (and the other demo datasets) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let path = data.join(SEJOURS.1);
    let schema = parquet_arrow_schema(&path).unwrap();
    let pseudonymised = ColumnTreatment::Pseudonymised {
        domain: "projet-diabete".to_string(),
    };
    // The extract, built as the server builds it (`engine::Extracts`), then read as the
    // server reads it: its `nir` already holds the pseudonyms, so the plan passes it as is.
    let extracts = Extracts::new(dir.path().join("extracts"));
    let domain = Arc::new(domain());
    let columns = ["nir".to_string()];
    let started = Instant::now();
    assert!(extracts.find(&path, &domain, &columns).is_none());
    extracts.wait_for_builds();
    let extract = extracts.find(&path, &domain, &columns).unwrap();
    eprintln!(
        "built the pseudonymised extract of {rows} stays in {:.2} s ({} MB)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&extract.path).unwrap().len() / 1_000_000
    );
    Hub {
        clear: session(&plan(&schema, ColumnTreatment::Clear), &path, &schema),
        pseudonymised: session(&plan(&schema, pseudonymised), &path, &schema),
        extract: session(
            &plan(&extract.schema, ColumnTreatment::Clear),
            &extract.path,
            &extract.schema,
        ),
        _dir: dir,
    }
}

fn limits() -> QueryLimits {
    QueryLimits {
        max_rows: usize::MAX,
        timeout: Duration::from_secs(600),
        ..QueryLimits::default()
    }
}

async fn rows(ctx: &SessionContext, sql: &str) -> usize {
    let outcome = run_query(ctx, sql, &limits()).await.unwrap();
    assert!(!outcome.truncated);
    outcome.rows
}

fn query_time(c: &mut Criterion) {
    let hub = hub();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sessions = [
        ("clear", &hub.clear),
        ("nir pseudonymised in the scan", &hub.pseudonymised),
        ("nir from the extract", &hub.extract),
    ];
    // Every view gives the same number of rows (pseudonyms neither merge nor split NIRs).
    for (_, sql) in QUERIES {
        let counts: Vec<usize> = sessions
            .iter()
            .map(|(_, ctx)| runtime.block_on(rows(ctx, sql)))
            .collect();
        assert!(counts.iter().all(|n| *n == counts[0]), "{sql}");
    }

    let mut group = c.benchmark_group("query sante.sejours (1 M stays, secure engine)");
    group.throughput(Throughput::Elements(STAYS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, sql) in QUERIES {
        for (label, ctx) in sessions {
            group.bench_function(format!("{name} / {label}"), |b| {
                b.to_async(&runtime).iter(|| rows(ctx, sql))
            });
        }
    }
    group.finish();

    // Interleaved comparison: clear, in the scan and extract alternate, so that a change in
    // the machine's load touches all alike.
    eprintln!("\ninterleaved, {ROUNDS} rounds, median wall time:");
    for (name, sql) in QUERIES {
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (k, (_, ctx)) in sessions.iter().enumerate() {
                let started = Instant::now();
                runtime.block_on(rows(ctx, sql));
                times[k].push(started.elapsed().as_secs_f64());
            }
        }
        let [clear, in_scan, extract] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        });
        eprintln!(
            "  {name:<16} clear {:>6.1} ms   in the scan {:>6.1} ms (ratio {:.2})   extract {:>6.1} ms (ratio {:.2})",
            clear * 1e3,
            in_scan * 1e3,
            in_scan / clear,
            extract * 1e3,
            extract / clear
        );
    }
}

criterion_group!(benches, kernels, query_time);
criterion_main!(benches);
