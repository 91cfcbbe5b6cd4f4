//! TPC-H for passerelle's tests and benchmarks: the eight tables generated with `tpchgen` as
//! Parquet (one folder per table), the 22 queries (`queries/qNN.sql`, written from the TPC-H
//! specification with its validation parameters), and the two sessions to compare: bare
//! DataFusion, and passerelle's secure engine under an allow-all access plan.
//!
//! Included with `#[path]` by `tests/integration/tpch.rs` (and a future `benches/tpch.rs`).
//! Nothing here unwraps: the includer decides what a failure is.

use std::error::Error;
use std::fs::File;
use std::path::Path;

use datafusion::arrow::compute::{
    SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatchReader;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use passerelle::engine::EngineError;
use passerelle::policy::habilitation::{HabilitationKind, LegalBasis};
use passerelle::policy::plan::HabilitationSummary;
use passerelle::policy::{AccessPlan, Catalog, ColumnPlan, ColumnTreatment, DatasetPlan};
use passerelle::pseudonym::{KeyRing, MasterKey};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The eight TPC-H tables; each is the folder `<dir>/<table>/` holding `<table>.parquet`.
pub const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// The 22 TPC-H queries, `QUERIES[0]` being Q1.
pub const QUERIES: [&str; 22] = [
    include_str!("queries/q01.sql"),
    include_str!("queries/q02.sql"),
    include_str!("queries/q03.sql"),
    include_str!("queries/q04.sql"),
    include_str!("queries/q05.sql"),
    include_str!("queries/q06.sql"),
    include_str!("queries/q07.sql"),
    include_str!("queries/q08.sql"),
    include_str!("queries/q09.sql"),
    include_str!("queries/q10.sql"),
    include_str!("queries/q11.sql"),
    include_str!("queries/q12.sql"),
    include_str!("queries/q13.sql"),
    include_str!("queries/q14.sql"),
    include_str!("queries/q15.sql"),
    include_str!("queries/q16.sql"),
    include_str!("queries/q17.sql"),
    include_str!("queries/q18.sql"),
    include_str!("queries/q19.sql"),
    include_str!("queries/q20.sql"),
    include_str!("queries/q21.sql"),
    include_str!("queries/q22.sql"),
];

/// The Arrow generator of `table` at `scale_factor` (one part).
fn generator(table: &str, scale_factor: f64) -> Result<Box<dyn RecordBatchReader + Send>> {
    let reader: Box<dyn RecordBatchReader + Send> = match table {
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(scale_factor, 1, 1))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(scale_factor, 1, 1))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(
            scale_factor,
            1,
            1,
        ))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(
            scale_factor,
            1,
            1,
        ))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(scale_factor, 1, 1))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(
            scale_factor,
            1,
            1,
        ))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(scale_factor, 1, 1))),
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(
            scale_factor,
            1,
            1,
        ))),
        other => return Err(format!("`{other}` is not a TPC-H table").into()),
    };
    Ok(reader)
}

/// The Arrow schema of `table`, as generated.
pub fn schema(table: &str) -> Result<SchemaRef> {
    Ok(match table {
        "region" => RegionArrow::schema_ref(),
        "nation" => NationArrow::schema_ref(),
        "supplier" => SupplierArrow::schema_ref(),
        "customer" => CustomerArrow::schema_ref(),
        "part" => PartArrow::schema_ref(),
        "partsupp" => PartSuppArrow::schema_ref(),
        "orders" => OrderArrow::schema_ref(),
        "lineitem" => LineItemArrow::schema_ref(),
        other => return Err(format!("`{other}` is not a TPC-H table").into()),
    })
}

/// How the tables are written: the Parquet writer's properties (row groups, compression,
/// dictionary, statistics) and whether the two fact tables are sorted on their date
/// (`lineitem` on `l_shipdate`, `orders` on `o_orderdate`; the generator writes them in key
/// order). The default is the `ArrowWriter`'s defaults in generation order.
#[derive(Default)]
pub struct Layout {
    pub props: WriterProperties,
    pub sorted: bool,
}

/// The column a sorted layout orders `table` by.
fn sort_column(table: &str) -> Option<&'static str> {
    match table {
        "lineitem" => Some("l_shipdate"),
        "orders" => Some("o_orderdate"),
        _ => None,
    }
}

/// Writes the eight tables at `scale_factor` under `dir` in `layout`, one folder per table.
pub fn generate(dir: &Path, scale_factor: f64, layout: &Layout) -> Result<()> {
    for table in TABLES {
        let folder = dir.join(table);
        std::fs::create_dir_all(&folder)?;
        let reader = generator(table, scale_factor)?;
        let schema = reader.schema();
        let file = File::create(folder.join(format!("{table}.parquet")))?;
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(layout.props.clone()))?;
        match sort_column(table).filter(|_| layout.sorted) {
            Some(column) => {
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                let all = concat_batches(&schema, &batches)?;
                drop(batches);
                let key = SortColumn {
                    values: all.column(schema.index_of(column)?).clone(),
                    options: None,
                };
                let order = lexsort_to_indices(&[key], None)?;
                writer.write(&take_record_batch(&all, &order)?)?;
            }
            None => {
                for batch in reader {
                    writer.write(&batch?)?;
                }
            }
        }
        writer.close()?;
    }
    Ok(())
}

/// Bare DataFusion: each table registered as a Parquet table under its own name.
pub async fn bare_session(dir: &Path) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    for table in TABLES {
        let folder = dir.join(table);
        ctx.register_parquet(
            table,
            folder.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(ctx)
}

/// The catalog (`datasets.toml`) of the eight tables as datasets `public.<table>`: the secure
/// session's default schema is `public`, so the queries' unqualified names resolve.
pub fn catalog() -> Result<Catalog> {
    let mut text = String::new();
    for table in TABLES {
        let schema = schema(table)?;
        text.push_str(&format!(
            "[[datasets]]\nname = \"public.{table}\"\ntitle = \"TPC-H {table}\"\n\
             path = \"{table}\"\nsecret = \"statistical\"\n"
        ));
        for field in schema.fields() {
            let field_type = match field.data_type() {
                DataType::Int32 | DataType::Int64 => "integer",
                DataType::Decimal128(..) => "number",
                DataType::Date32 => "date",
                DataType::Utf8 | DataType::Utf8View => "string",
                other => return Err(format!("{table}.{}: type {other}", field.name()).into()),
            };
            text.push_str(&format!(
                "[[datasets.fields]]\nname = \"{name}\"\ntitle = \"{name}\"\n\
                 type = \"{field_type}\"\nclass = \"public\"\n",
                name = field.name()
            ));
        }
    }
    Catalog::parse(Path::new("tpch/datasets.toml"), &text).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        lines.join("\n").into()
    })
}

/// The allow-all plan over `catalog`: every dataset queryable, every column clear, no row
/// filter. Built from the public plan types, as the policy would build it.
pub fn allow_all_plan(catalog: &Catalog) -> AccessPlan {
    let datasets = catalog
        .datasets
        .iter()
        .map(|dataset| {
            let columns = dataset
                .fields
                .iter()
                .map(|field| {
                    ColumnPlan::new(
                        field.name.get_ref().clone(),
                        field.class,
                        ColumnTreatment::Clear,
                    )
                })
                .collect();
            DatasetPlan::new(dataset.name(), columns)
        })
        .collect();
    AccessPlan::new(
        HabilitationSummary {
            id: "tpch".into(),
            title: "TPC-H, everything clear".into(),
            kind: HabilitationKind::Statistics,
            legal_basis: LegalBasis {
                nature: "test".into(),
                reference: String::new(),
            },
            purpose: "check the secure engine against bare DataFusion".into(),
            end: chrono::NaiveDate::MAX,
            pseudonymisation_domain: "tpch".into(),
        },
        "allow-all",
        datasets,
    )
}

/// The Parquet schema of a table folder (its one `.parquet` file), as the server reads it.
fn raw_schema(folder: &Path) -> std::result::Result<SchemaRef, EngineError> {
    let table = folder
        .file_name()
        .ok_or_else(|| EngineError::Internal(format!("{} has no name", folder.display())))?;
    let file = folder.join(Path::new(table).with_extension("parquet"));
    passerelle::policy::catalog::parquet_arrow_schema(&file).map_err(EngineError::Internal)
}

/// passerelle's secure session under the allow-all plan, built by `engine::secure_session`
/// exactly as the server builds a caller's session.
pub fn secure_session(dir: &Path) -> Result<SessionContext> {
    let catalog = catalog()?;
    let plan = allow_all_plan(&catalog);
    // A fixed test key: no column is pseudonymised under this plan.
    let keys = KeyRing::new(MasterKey::from_bytes([0x5a; 32]), Vec::new());
    let today = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).ok_or("bad date")?;
    Ok(passerelle::engine::secure_session(
        &plan,
        &catalog,
        dir,
        &keys,
        today,
        &raw_schema,
    )?)
}
