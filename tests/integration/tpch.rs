//! The 22 TPC-H queries give exactly the same answer through passerelle's secure engine (an
//! allow-all plan: every column clear, no row filter; the statement gate and limits of
//! `engine::run_query`) as through bare DataFusion on the same Parquet files: same column
//! names and types, same rows in the same order, value for value.

#[path = "../tpch/data.rs"]
mod data;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use passerelle::engine::{QueryLimits, run_query};

/// Lineitem has about 600 000 rows: the 22 queries run twice in about 7 s in a debug build.
/// At 0.01 no row qualifies for Q17 (its answer is one NULL); from 0.02 on every query has a
/// real answer; 0.1 gives the multi-row queries (Q2, Q18, Q20, Q21) more rows to compare.
const SCALE_FACTOR: f64 = 0.1;

static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();

/// The TPC-H tables, generated once per test run.
fn data_dir() -> &'static Path {
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        data::generate(dir.path(), SCALE_FACTOR).unwrap();
        dir
    })
    .path()
}

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

async fn check(n: usize) {
    let dir = data_dir();
    let sql = data::QUERIES[n - 1];

    let bare = data::bare_session(dir).await.unwrap();
    let frame = bare.sql(sql).await.unwrap();
    let expected_schema = frame.schema().inner().clone();
    let expected = frame.collect().await.unwrap();
    let expected_rows: usize = expected.iter().map(RecordBatch::num_rows).sum();
    // Every query's validation answer is non-empty, and so is it at this scale factor.
    assert!(
        expected_rows > 0,
        "Q{n:02}: bare DataFusion returned no row"
    );
    // …nor a vacuous one: an aggregate over no row answers one row of NULLs.
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
    let answer = match run_query(&secure, sql, &limits).await {
        Ok(answer) => answer,
        Err(e) => panic!("Q{n:02}: the secure engine gave no answer: {e:?}"),
    };
    assert!(!answer.truncated, "Q{n:02}: truncated");

    assert_eq!(
        names_and_types(&answer.schema),
        names_and_types(&expected_schema),
        "Q{n:02}: column names or types differ"
    );
    assert_eq!(answer.rows, expected_rows, "Q{n:02}: row counts differ");
    let actual_text = pretty_format_batches(&answer.batches).unwrap().to_string();
    let expected_text = pretty_format_batches(&expected).unwrap().to_string();
    assert_eq!(
        actual_text, expected_text,
        "Q{n:02}: rows differ (secure engine left, bare DataFusion right)"
    );
    // Values, not only their text (floating point included: the same engine computes both).
    for (i, field) in expected_schema.fields().iter().enumerate() {
        assert!(
            column(&answer.batches, i) == column(&expected, i),
            "Q{n:02}: column `{}` differs",
            field.name()
        );
    }
}

macro_rules! tpch_queries {
    ($($name:ident => $n:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                check($n).await;
            }
        )*
    };
}

tpch_queries!(
    q01 => 1, q02 => 2, q03 => 3, q04 => 4, q05 => 5, q06 => 6, q07 => 7, q08 => 8,
    q09 => 9, q10 => 10, q11 => 11, q12 => 12, q13 => 13, q14 => 14, q15 => 15, q16 => 16,
    q17 => 17, q18 => 18, q19 => 19, q20 => 20, q21 => 21, q22 => 22,
);
