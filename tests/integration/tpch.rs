//! The 22 TPC-H queries give exactly the same answer through passerelle's secure engine (an
//! allow-all plan: every column clear, no row filter; the statement gate and limits of
//! `engine::run_query`) as through bare DataFusion on the same Parquet files: same column
//! names and types, same rows in the same order, value for value.

#[path = "../tpch/data.rs"]
mod data;

use std::path::Path;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use passerelle::engine::{QueryLimits, run_query};

/// Lineitem has about 600 000 rows: generation and the 22 queries, twice, take about 5 s in a
/// debug build. At 0.01 no row qualifies for Q17 (its answer is one NULL); from 0.02 on every query has a
/// real answer; 0.1 gives the multi-row queries (Q2, Q18, Q20, Q21) more rows to compare.
const SCALE_FACTOR: f64 = 0.1;

/// Nullability is left out on purpose: the secure view declares every column nullable (a
/// masked value may be NULL), where the generated Parquet files declare none nullable.
fn names_and_types(schema: &Schema) -> Vec<(String, DataType)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

fn column(batches: &[RecordBatch], i: usize) -> ArrayRef {
    let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
    concat(&parts).unwrap()
}

/// Runs query `n` in both sessions; `Err` says how the secure engine's answer differs.
async fn compare(dir: &Path, n: usize) -> Result<(), String> {
    let sql = data::QUERIES[n - 1];

    let bare = data::bare_session(dir).await.unwrap();
    let frame = bare.sql(sql).await.unwrap();
    let expected_schema = frame.schema().inner().clone();
    let expected = frame.collect().await.unwrap();
    let expected_rows: usize = expected.iter().map(RecordBatch::num_rows).sum();
    // Every query's validation answer is non-empty, and so is it at this scale factor…
    assert!(
        expected_rows > 0,
        "Q{n:02}: bare DataFusion returned no row"
    );
    // …nor vacuous: an aggregate over no row answers one row of NULLs.
    for (i, field) in expected_schema.fields().iter().enumerate() {
        assert!(
            expected
                .iter()
                .any(|b| b.column(i).null_count() < b.num_rows()),
            "Q{n:02}: column `{}` is NULL in every row (no row qualified)",
            field.name()
        );
    }

    let secure = data::secure_session(dir).unwrap();
    let limits = QueryLimits {
        max_rows: 1_000_000,
        timeout: Duration::from_secs(600),
        ..QueryLimits::default()
    };
    let answer = run_query(&secure, sql, &limits)
        .await
        .map_err(|e| format!("the secure engine gave no answer: {e:?}"))?;
    if answer.truncated {
        return Err("the secure engine's answer was truncated".into());
    }
    let (actual_columns, expected_columns) = (
        names_and_types(&answer.schema),
        names_and_types(&expected_schema),
    );
    if actual_columns != expected_columns {
        return Err(format!(
            "columns differ:\n  secure: {actual_columns:?}\n  bare:   {expected_columns:?}"
        ));
    }
    let actual_text = pretty_format_batches(&answer.batches).unwrap().to_string();
    let expected_text = pretty_format_batches(&expected).unwrap().to_string();
    if answer.rows != expected_rows || actual_text != expected_text {
        return Err(format!(
            "rows differ ({} secure, {expected_rows} bare):\nsecure:\n{actual_text}\nbare:\n{expected_text}",
            answer.rows
        ));
    }
    // Values, not only their text (floating point included: the same engine computes both).
    for (i, field) in expected_schema.fields().iter().enumerate() {
        if column(&answer.batches, i) != column(&expected, i) {
            return Err(format!("column `{}` differs", field.name()));
        }
    }
    Ok(())
}

/// All 22 queries in one test, so that the generated data lives exactly as long as the test
/// (a per-process static would leave it in the temporary folder after every run).
#[tokio::test]
async fn secure_engine_answers_the_22_queries_as_bare_datafusion() {
    let dir = tempfile::tempdir().unwrap();
    data::generate(dir.path(), SCALE_FACTOR, &data::Layout::default()).unwrap();
    let mut failures = Vec::new();
    for n in 1..=data::QUERIES.len() {
        if let Err(why) = compare(dir.path(), n).await {
            failures.push(format!("Q{n:02}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the 22 TPC-H queries answer differently through the secure engine:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The 22 queries answer the same on a Ballista cluster — a scheduler and two executors of
/// this build, on loopback, mutual TLS — as on the single-node secure engine: the gateway
/// ships its own physical plan (secure scans inside) and reads the answer back. Once the
/// cluster is gone, a query sent there fails (it never falls back silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_two_executors_answers_the_22_queries_as_the_single_node_engine() {
    use passerelle::cluster::client::ClusterClient;
    use passerelle::engine::run_query_on;
    let dir = tempfile::tempdir().unwrap();
    data::generate(dir.path(), 0.05, &data::Layout::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let cluster = crate::support::local_cluster(work.path(), 2);
    let target = ClusterClient::new(&cluster.gateway)
        .unwrap()
        .with_min_input_bytes(0);
    let limits = QueryLimits {
        max_rows: 1_000_000,
        timeout: Duration::from_secs(600),
        ..QueryLimits::default()
    };
    let mut failures = Vec::new();
    let mut on_the_gateway = Vec::new();
    for (n, sql) in data::QUERIES.iter().enumerate().map(|(i, q)| (i + 1, q)) {
        let single = run_query(&data::secure_session(dir.path()).unwrap(), sql, &limits)
            .await
            .unwrap();
        let distributed = match run_query_on(
            &data::secure_session(dir.path()).unwrap(),
            sql,
            &limits,
            Some(&target as &dyn passerelle::engine::Cluster),
        )
        .await
        {
            Ok(answer) => answer,
            Err(e) => {
                failures.push(format!("Q{n:02}: the cluster gave no answer: {e:?}"));
                continue;
            }
        };
        if !distributed.on_cluster {
            on_the_gateway.push(n);
        }
        let (a, b) = (
            pretty_format_batches(&single.batches).unwrap().to_string(),
            pretty_format_batches(&distributed.batches)
                .unwrap()
                .to_string(),
        );
        if names_and_types(&single.schema) != names_and_types(&distributed.schema) || a != b {
            failures.push(format!(
                "Q{n:02}: answers differ:\nsingle node:\n{a}\ncluster:\n{b}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the 22 TPC-H queries answer differently on the cluster:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Scalar subqueries stay on the gateway: Ballista 55 cuts a stage inside DataFusion 55's
    // `ScalarSubqueryExec` (`engine::distributed::ship`).
    assert_eq!(
        on_the_gateway,
        [11, 15, 22],
        "queries that did not run on the cluster"
    );
    drop(cluster);
    let gone = run_query_on(
        &data::secure_session(dir.path()).unwrap(),
        data::QUERIES[0],
        &limits,
        Some(&target as &dyn passerelle::engine::Cluster),
    )
    .await;
    assert!(gone.is_err(), "a query sent to a stopped cluster answered");
}
