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
