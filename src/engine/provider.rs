//! `SecureTableProvider`: one dataset as the caller may see it.
//!
//! Its schema is the caller's view: hidden columns do not exist, masked columns have their
//! masked type. Its scan is raw Parquet scan → row filter → masks → [`BarrierExec`]. User
//! filters run above the barrier, except leak-proof ones on clear columns: those are taken
//! whole by the scan (`Exact`), evaluated once with the row filter below the barrier, where
//! they also prune row groups and pages (see `pushdown`). When the session
//! gave it pseudonymised extracts, a scan reads the dataset's extract if one is ready (its
//! pseudonymised columns then pass as they are), and otherwise the data file; only a scan asks,
//! so only the datasets a query reads get an extract built.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{Column, DFSchema, Result};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

use super::barrier::BarrierExec;
use super::extracts::Extracts;
use super::files::Location;
use super::masks::MaskUdf;
use super::pushdown::{ClearColumns, for_raw_scan, is_leak_proof};
use crate::access::to_expr;
use crate::policy::{ColumnTreatment, DatasetPlan};
use crate::pseudonym::PseudonymDomain;

/// One visible column: its raw name and type, and its treatment.
#[derive(Debug, Clone)]
struct VisibleColumn {
    name: String,
    treatment: ColumnTreatment,
    raw_field: Field,
}

/// A dataset as one principal may see it under one habilitation.
#[derive(Debug)]
pub struct SecureTableProvider {
    location: Location,
    raw_schema: SchemaRef,
    columns: Vec<VisibleColumn>,
    schema: SchemaRef,
    row_filter: Option<Expr>,
    domain: Option<Arc<PseudonymDomain>>,
    clear: ClearColumns,
    /// Where an extract of this dataset may be, and the columns it holds as pseudonyms (set
    /// only when one could serve this plan).
    extracts: Option<(Arc<Extracts>, Vec<String>)>,
}

impl SecureTableProvider {
    /// Builds the caller's view of `plan`'s dataset in the file at `path` with `raw_schema`.
    pub fn new(
        plan: &DatasetPlan,
        path: std::path::PathBuf,
        raw_schema: SchemaRef,
        domain: Option<Arc<PseudonymDomain>>,
    ) -> Result<Self> {
        Self::at(plan, Location::File(path), raw_schema, domain)
    }

    /// Builds the caller's view of `plan`'s dataset stored at `location` with `raw_schema`.
    pub(crate) fn at(
        plan: &DatasetPlan,
        location: Location,
        raw_schema: SchemaRef,
        domain: Option<Arc<PseudonymDomain>>,
    ) -> Result<Self> {
        // The file's key-value metadata (seed, producer) is not part of the caller's view.
        let raw_schema = Arc::new(Schema::new(raw_schema.fields().clone()));
        let mut columns = Vec::new();
        for c in plan.visible_columns() {
            let raw_field = raw_schema.field_with_name(c.name())?.clone();
            columns.push(VisibleColumn {
                name: c.name().to_string(),
                treatment: c.treatment().clone(),
                raw_field,
            });
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| {
                    Field::new(
                        &c.name,
                        MaskUdf::output_type(&c.treatment, c.raw_field.data_type()),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        ));
        // SECURITY: every row filter of the plan applies (AND); they are typed trees, not SQL.
        let row_filter = plan
            .row_filters()
            .iter()
            .map(|f| to_expr(f.expr()))
            .reduce(Expr::and);
        let clear = columns
            .iter()
            .filter(|c| c.treatment == ColumnTreatment::Clear)
            .map(|c| (c.name.clone(), c.raw_field.data_type().clone()))
            .collect();
        Ok(Self {
            location,
            raw_schema,
            columns,
            schema,
            row_filter,
            domain,
            clear,
            extracts: None,
        })
    }

    /// Bytes a scan of `projection` under the pushed-down `filters` reads: the compressed
    /// column chunks of the raw columns it reads (those shown, and those the filter below the
    /// barrier reads) in the data file's footer; the whole file or object when its columns'
    /// sizes are not known (an object on the bucket), 0 when it cannot be read. What decides
    /// a query's lane and whether it goes to the cluster (`statement::cost_of`).
    pub fn read_bytes(&self, projection: Option<&Vec<usize>>, filters: &[Expr]) -> u64 {
        let whole = match &self.location {
            Location::File(path) => path,
            Location::Object { size, .. } => return *size,
        };
        let columns = crate::policy::catalog::parquet_column_bytes(whole)
            .filter(|bytes| bytes.len() == self.raw_schema.fields().len());
        let read = raw_columns(
            &self.raw_schema,
            &self.wanted(projection),
            self.below(filters).as_ref(),
        );
        match (columns, read) {
            (Some(bytes), Ok(read)) => read.iter().map(|&i| bytes[i]).fold(0, u64::saturating_add),
            _ => std::fs::metadata(whole).map_or(0, |m| m.len()),
        }
    }

    /// The visible columns a scan of `projection` shows.
    fn wanted(&self, projection: Option<&Vec<usize>>) -> Vec<&VisibleColumn> {
        match projection {
            Some(indices) => indices
                .iter()
                .filter_map(|i| self.columns.get(*i))
                .collect(),
            None => self.columns.iter().collect(),
        }
    }

    /// The filter below the barrier: the row filter, and the caller's pushed-down `filters`
    /// the scan takes (all of them: it takes only what [`Self::taken`] accepts).
    fn below(&self, filters: &[Expr]) -> Option<Expr> {
        // SECURITY: re-checked, so that nothing but a leak-proof predicate ever reaches raw
        // rows, whatever the optimizer hands us.
        let taken = filters
            .iter()
            .filter_map(|f| self.taken(f))
            .reduce(Expr::and);
        self.row_filter
            .clone()
            .into_iter()
            .chain(taken)
            .reduce(Expr::and)
    }

    /// `filter` as the scan runs it on raw rows, when the scan takes it: leak-proof on the
    /// caller's clear columns (`pushdown::is_leak_proof`). What `supports_filters_pushdown`
    /// answers `Exact` for and what `below` runs are this one decision.
    fn taken(&self, filter: &Expr) -> Option<Expr> {
        if is_leak_proof(filter, &self.clear) {
            for_raw_scan(filter)
        } else {
            None
        }
    }

    /// Lets scans read the dataset's pseudonymised extract of `columns` from `extracts` when
    /// it is ready. The caller gives the plan's pseudonymised columns and checks that an
    /// extract can serve this plan (no row filter reads one: `session::extract_columns`).
    pub fn with_extracts(mut self, extracts: Arc<Extracts>, columns: Vec<String>) -> Self {
        self.extracts = Some((extracts, columns));
        self
    }

    /// `precomputed`: the scan reads an extract, whose pseudonymised columns already hold the
    /// pseudonyms of this domain and key version.
    fn mask_expr(&self, column: &VisibleColumn, precomputed: bool) -> Expr {
        let raw = Expr::Column(Column::from_name(column.name.clone()));
        match column.treatment {
            ColumnTreatment::Clear => raw,
            // SECURITY: only when `Extracts::find` gave an extract made with this very domain
            // and key version (probe checked) from the data file as it is now.
            ColumnTreatment::Pseudonymised { .. } if precomputed => raw,
            _ => {
                let udf = ScalarUDF::new_from_impl(MaskUdf::new(
                    column.treatment.clone(),
                    self.domain.clone(),
                    column.raw_field.data_type().clone(),
                ));
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    Arc::new(udf),
                    vec![raw],
                ))
            }
        }
    }
}

/// `expr` typed against `columns` and simplified as the logical optimizer would (a cast of
/// the column unwrapped into its literal), so that the Parquet reader can prune with it.
fn simplified(state: &dyn Session, expr: Expr, columns: &DFSchema) -> Result<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(columns.clone()))
        .with_config_options(state.config().options().clone())
        .build();
    let simplifier = ExprSimplifier::new(context);
    simplifier.simplify(simplifier.coerce(expr, columns)?)
}

/// Indices in `raw_schema` of the columns a scan reads: those `wanted` shows and those the
/// filter below the barrier reads, in file order.
fn raw_columns(
    raw_schema: &Schema,
    wanted: &[&VisibleColumn],
    below: Option<&Expr>,
) -> Result<Vec<usize>> {
    let mut names: Vec<&str> = wanted.iter().map(|c| c.name.as_str()).collect();
    if let Some(below) = below {
        names.extend(below.column_refs().into_iter().map(|c| c.name.as_str()));
    }
    let mut read = names
        .into_iter()
        .map(|name| raw_schema.index_of(name))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    read.sort_unstable();
    read.dedup();
    Ok(read)
}

#[async_trait]
impl TableProvider for SecureTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // SECURITY: user predicates stay above the barrier, except a leak-proof one on clear
        // columns: the scan takes it whole (`Exact`: DataFusion keeps no copy above), runs it
        // with the row filter below the barrier, where a clear column's raw value is the value
        // the caller sees, and lends it to the reader for pruning. Its answer is the same; it
        // is one filter fewer for every physical optimizer rule to rebuild.
        Ok(filters
            .iter()
            .map(|f| {
                if self.taken(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Extracts are built from local files: the data file, or on a bucket the local copy
        // of exactly the version the query is pinned to (none yet: its download starts, and
        // this query computes pseudonyms in the scan of the object).
        let extract = match (&self.extracts, &self.domain, &self.location) {
            (Some((extracts, columns)), Some(domain), Location::File(path)) => {
                extracts.find(path, domain, columns)
            }
            (
                Some((extracts, columns)),
                Some(domain),
                Location::Object {
                    copy: Some(copy), ..
                },
            ) => copy
                .file()
                .and_then(|file| extracts.find(&file, domain, columns)),
            _ => None,
        };
        let (url, raw_schema) = match (&extract, &self.location) {
            // (An extract's schema carries none of its file's metadata: `Extract::schema`.)
            (Some(x), _) => (x.path.to_string_lossy().into_owned(), x.schema.clone()),
            (None, Location::File(path)) => {
                (path.to_string_lossy().into_owned(), self.raw_schema.clone())
            }
            (None, Location::Object { url, .. }) => (url.clone(), self.raw_schema.clone()),
        };
        let precomputed = extract.is_some();
        let url = ListingTableUrl::parse(url)?;
        // The session's Parquet options (`ParquetFormat::default()` would carry DataFusion's
        // defaults instead: Bloom filters read).
        let mut parquet = state.table_options().parquet.clone();
        // SECURITY: no Bloom filter is read by a secure scan, whatever the session says:
        // pruning on one would time a value the row filter hides apart from a value that does
        // not exist (`session::new_session`).
        parquet.global.bloom_filter_on_read = false;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet)))
            .with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(raw_schema.clone());
        // The file's statistics (what planning and pruning read of its row groups) are kept in
        // the hub's shared cache, checked against the file's size and modification time:
        // without it every scan derived them again from the footer. They are the raw file's,
        // the same for every caller; what a caller may see is decided above them.
        let raw = Arc::new(
            ListingTable::try_new(config)?
                .with_cache(state.runtime_env().cache_manager.get_file_statistic_cache()),
        );
        let wanted = self.wanted(projection);
        let below = self.below(filters);
        // The physical plan is built here, node by node, and optimised once with the
        // caller's whole query: planning it as a query of its own ran every optimizer rule
        // twice over it (a sixth of a small query's CPU went to planning this scan).
        let read = raw_columns(&raw_schema, &wanted, below.as_ref())?;
        let mut input = raw.scan(state, Some(&read), &[], None).await?;
        let columns = DFSchema::try_from(input.schema().as_ref().clone())?;
        if let Some(below) = below {
            // INVARIANT: the row filter runs on raw rows, before any mask and below the
            // barrier. (The physical optimizer hands it to the Parquet reader for pruning.)
            let predicate =
                state.create_physical_expr(simplified(state, below, &columns)?, &columns)?;
            input = Arc::new(FilterExec::try_new(predicate, input)?);
        }
        if wanted.is_empty() {
            // `count(*)` asks for no column: keep the filtered rows, then drop every column.
            let none: Vec<ProjectionExpr> = Vec::new();
            let empty =
                ProjectionExec::try_new_with_schema_metadata(none, input, &Schema::empty())?;
            return Ok(Arc::new(BarrierExec::new(Arc::new(empty))));
        }
        let masked = wanted
            .iter()
            .map(|c| {
                let expr = state.create_physical_expr(self.mask_expr(c, precomputed), &columns)?;
                Ok(ProjectionExpr::new(expr, c.name.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        let physical: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(masked, input)?);
        // SECURITY: statistics go up only for columns in clear of a dataset without row filter
        // (what the caller could compute with SQL); masked columns and filtered datasets give
        // sizes only.
        let column_stats = wanted
            .iter()
            .map(|c| self.row_filter.is_none() && c.treatment == ColumnTreatment::Clear)
            .collect();
        Ok(Arc::new(BarrierExec::with_column_stats(
            physical,
            column_stats,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::filter::{Comparison, FilterExpr, Literal};
    use crate::policy::{ColumnClass, ColumnPlan};
    use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::stats::Precision;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use datafusion::prelude::SessionContext;

    fn plan(row_filter: bool) -> DatasetPlan {
        let plan = DatasetPlan::new(
            "t.t",
            vec![
                ColumnPlan::new("age", ColumnClass::Public, ColumnTreatment::Clear),
                ColumnPlan::new("name", ColumnClass::Public, ColumnTreatment::Redacted),
            ],
        );
        if row_filter {
            plan.with_row_filter(FilterExpr::Compare(
                Box::new(FilterExpr::Column("age".into())),
                Comparison::Gt,
                Box::new(FilterExpr::Literal(Literal::Integer(0))),
            ))
        } else {
            plan
        }
    }

    /// A Parquet file of `(age, name)` rows in `dir`, and a session whose table `t` is that
    /// file seen through `plan(row_filter)`.
    fn table_of(
        dir: &std::path::Path,
        ages: Vec<i32>,
        names: Vec<Option<&str>>,
        row_filter: bool,
    ) -> SessionContext {
        let path = dir.join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(ages)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let provider = SecureTableProvider::new(&plan(row_filter), path, schema, None).unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(provider)).unwrap();
        ctx
    }

    /// A query's cost is the compressed bytes of the columns its scans read (those it shows,
    /// those the row filter and its pruning predicates read), not its files' whole size: a
    /// count over one column of a wide dataset is cheap.
    #[tokio::test]
    async fn a_query_costs_the_columns_it_reads_not_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let long = "a long name that weighs more than an age".repeat(4);
        let ages: Vec<i32> = (0..2000).collect();
        let names = vec![Some(long.as_str()); 2000];
        let ctx = table_of(dir.path(), ages, names, false);
        let path = dir.path().join("t.parquet");
        let bytes = crate::policy::catalog::parquet_column_bytes(&path).unwrap();
        let (age, name) = (bytes[0], bytes[1]);
        assert!(age > 0 && name > 0);
        let file = std::fs::metadata(&path).unwrap().len();
        assert!(age + name < file, "the footer is not a column");
        let schema = crate::policy::catalog::parquet_arrow_schema(&path).unwrap();
        let provider = |row_filter| {
            SecureTableProvider::new(&plan(row_filter), path.clone(), schema.clone(), None).unwrap()
        };
        let (open, filtered) = (provider(false), provider(true));
        assert_eq!(open.read_bytes(Some(&vec![0]), &[]), age);
        assert_eq!(open.read_bytes(Some(&vec![1]), &[]), name);
        assert_eq!(open.read_bytes(None, &[]), age + name);
        assert_eq!(open.read_bytes(Some(&vec![]), &[]), 0);
        // The row filter reads `age` whatever the caller shows.
        assert_eq!(filtered.read_bytes(Some(&vec![1]), &[]), age + name);
        assert_eq!(filtered.read_bytes(Some(&vec![]), &[]), age);
        // A leak-proof predicate lent to the scan for pruning reads its column too.
        let pruning = datafusion::prelude::col("age").lt(datafusion::prelude::lit(30));
        assert_eq!(open.read_bytes(Some(&vec![1]), &[pruning]), age + name);

        // Through the optimiser: the plan's scans give their projection and filters.
        for (sql, expected) in [
            ("SELECT age FROM t", age),
            ("SELECT name FROM t", name),
            ("SELECT name FROM t WHERE age < 30", age + name),
            ("SELECT a.age FROM t a JOIN t b ON a.age = b.age", 2 * age),
        ] {
            let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
            assert_eq!(super::super::statement::cost_of(&plan).0, expected, "{sql}");
        }
    }

    /// A scan keeps its file's statistics in the runtime's shared cache (one entry per file,
    /// reused by the next query instead of derived from the footer again).
    #[tokio::test]
    async fn a_scan_keeps_its_files_statistics_in_the_shared_cache() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = table_of(dir.path(), vec![-1, 17, 42], vec![None, None, None], true);
        let cache = ctx
            .runtime_env()
            .cache_manager
            .get_file_statistic_cache()
            .unwrap();
        assert_eq!(cache.len(), 0);
        for _ in 0..2 {
            ctx.sql("SELECT age FROM t WHERE age < 30")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert_eq!(cache.len(), 1);
        }
    }

    /// A secure scan reads no Bloom filter, even in a session that would (DataFusion's
    /// default): a value absent from a file with one is not pruned by it, so that it times
    /// like a value the row filter hides.
    #[tokio::test]
    async fn secure_scans_read_no_bloom_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ages: Vec<i32> = (0..1000).map(|i| i * 2).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(ages.clone())),
                Arc::new(StringArray::from(vec![Some("Eve"); ages.len()])),
            ],
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_bloom_filter_enabled(true)
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let pruned_by_bloom = |ctx: SessionContext| async move {
            let frame = ctx.sql("SELECT age FROM t WHERE age = 501").await.unwrap();
            let physical = frame.create_physical_plan().await.unwrap();
            let rows = datafusion::physical_plan::collect(physical.clone(), ctx.task_ctx())
                .await
                .unwrap();
            assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
            // Each metric of the reader on Bloom filters: `<row groups> total → <kept> matched`.
            let mut bloom = Vec::new();
            let mut nodes = vec![physical];
            while let Some(node) = nodes.pop() {
                for metric in node.metrics().iter().flat_map(|m| m.iter()) {
                    if metric.value().name() == "row_groups_pruned_bloom_filter" {
                        bloom.push(metric.value().to_string());
                    }
                }
                nodes.extend(node.children().into_iter().cloned());
            }
            (bloom.iter().any(|m| m == "1 total → 0 matched"), bloom)
        };
        // The same file read by DataFusion's own table: its Bloom filter prunes the row group.
        let plain = SessionContext::new();
        plain
            .register_parquet("t", path.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let (pruned, metrics) = pruned_by_bloom(plain).await;
        assert!(pruned, "{metrics:?}");
        let provider = SecureTableProvider::new(&plan(false), path, schema, None).unwrap();
        let secure = SessionContext::new();
        secure.register_table("t", Arc::new(provider)).unwrap();
        let (pruned, metrics) = pruned_by_bloom(secure).await;
        assert!(!pruned, "{metrics:?}");
    }

    /// The statistics above the barrier of `SELECT age, name`, per column: null count.
    async fn null_counts_above_the_barrier(row_filter: bool) -> Vec<Precision<usize>> {
        let dir = tempfile::tempdir().unwrap();
        let ctx = table_of(
            dir.path(),
            vec![17, 42],
            vec![Some("Ada"), None],
            row_filter,
        );
        let physical = ctx
            .sql("SELECT age, name FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let mut node = physical;
        while node.name() != "SecureBarrier" {
            node = node.children()[0].clone();
        }
        let stats = StatisticsContext::new()
            .compute(node.as_ref(), &StatisticsArgs::new())
            .unwrap();
        stats
            .column_statistics
            .iter()
            .map(|c| c.null_count)
            .collect()
    }

    /// The scan runs the row filter and the leak-proof user predicate below the barrier,
    /// once (no copy of the predicate above), and both reach the Parquet reader for pruning
    /// (the filter stays above the reader: pruning only skips data). A predicate that is not
    /// leak-proof runs above the barrier only.
    #[tokio::test]
    async fn the_row_filter_and_a_leak_proof_predicate_prune_the_parquet_scan() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = table_of(
            dir.path(),
            vec![-1, 17, 42],
            vec![Some("Eve"), Some("Ada"), None],
            true,
        );
        let frame = ctx.sql("SELECT name FROM t WHERE age < 30").await.unwrap();
        let physical = frame.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string();
        let scan = shown
            .lines()
            .find(|l| l.contains("DataSourceExec"))
            .unwrap_or_default();
        assert!(
            scan.contains("predicate=")
                && scan.contains("age@0 > 0")
                && scan.contains("age@0 < 30"),
            "{shown}"
        );
        let barrier = shown.find("SecureBarrier").unwrap();
        let filters: Vec<&str> = shown.lines().filter(|l| l.contains("FilterExec")).collect();
        assert_eq!(filters.len(), 1, "one filter: {shown}");
        assert!(
            filters[0].contains("age@0 > 0") && filters[0].contains("age@0 < 30"),
            "{shown}"
        );
        assert!(
            barrier < shown.find("FilterExec").unwrap(),
            "the row filter and the predicate run below the barrier: {shown}"
        );
        let other = physical_plan(&ctx, "SELECT name FROM t WHERE age + 1 < 30").await;
        let barrier = other.find("SecureBarrier").unwrap();
        let above = other.find("+ 1 < 30").expect(&other);
        assert!(above < barrier, "not leak-proof: above the barrier {other}");
        assert!(
            other[barrier..].contains("FilterExec: age@0 > 0\n"),
            "below, the row filter alone: {other}"
        );
        let rows = frame.collect().await.unwrap();
        let names: Vec<String> = rows
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                a.iter()
                    .map(|v| v.unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(names, vec!["***"], "only 17 passes both, its name redacted");
    }

    /// The physical plan of `sql` in `ctx`, one line per node.
    async fn physical_plan(ctx: &SessionContext, sql: &str) -> String {
        let frame = ctx.sql(sql).await.unwrap();
        let physical = frame.create_physical_plan().await.unwrap();
        datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string()
    }

    /// The first column of `sql`'s answer in `ctx`, an `age` column.
    async fn first_ages(ctx: &SessionContext, sql: &str) -> Vec<i32> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
                a.values().to_vec()
            })
            .collect()
    }

    /// A `LIMIT` crosses the barrier as a count (the row filter stops after that many rows;
    /// an unfiltered dataset's reader reads no more), never with a user predicate: above a
    /// user filter it stays above the barrier. Answers are those of the limit above.
    #[tokio::test]
    async fn a_limit_crosses_the_barrier_as_a_count_only() {
        let dir = tempfile::tempdir().unwrap();
        let ages: Vec<i32> = (-50..50).collect();
        let names = vec![Some("Eve"); ages.len()];
        let filtered = table_of(dir.path(), ages.clone(), names.clone(), true);
        let shown = physical_plan(&filtered, "SELECT age, name FROM t LIMIT 3").await;
        let barrier = shown.find("SecureBarrier").unwrap();
        let fetch = shown.find("FilterExec: age@0 > 0, fetch=3").expect(&shown);
        assert!(barrier < fetch, "the row filter takes the limit: {shown}");
        let ages_seen = first_ages(&filtered, "SELECT age FROM t LIMIT 3").await;
        assert_eq!(ages_seen.len(), 3);
        assert!(ages_seen.iter().all(|a| *a > 0), "{ages_seen:?}");

        let user = physical_plan(&filtered, "SELECT age FROM t WHERE name = 'x' LIMIT 3").await;
        let barrier = user.find("SecureBarrier").unwrap();
        assert!(
            user[barrier..].lines().all(|l| !l.contains("fetch=")),
            "above a user filter the limit stays above the barrier: {user}"
        );
        // A leak-proof predicate runs below with the row filter: the limit counts the rows
        // that pass both.
        let sql = "SELECT age FROM t WHERE age >= 40 LIMIT 3";
        let taken = physical_plan(&filtered, sql).await;
        let barrier = taken.find("SecureBarrier").unwrap();
        assert!(taken[barrier..].contains("fetch=3"), "{taken}");
        assert_eq!(first_ages(&filtered, sql).await, vec![40, 41, 42]);

        let dir = tempfile::tempdir().unwrap();
        let unfiltered = table_of(dir.path(), ages, names, false);
        let shown = physical_plan(&unfiltered, "SELECT age FROM t LIMIT 3").await;
        let reader = shown
            .lines()
            .find(|l| l.contains("DataSourceExec"))
            .unwrap();
        assert!(reader.contains("limit=3"), "{shown}");
        let n: usize = unfiltered
            .sql("SELECT age FROM t LIMIT 3")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(n, 3);
    }

    /// Column statistics go up for a clear column of a dataset without row filter only.
    #[tokio::test]
    async fn statistics_cross_for_clear_columns_of_unfiltered_datasets_only() {
        assert_eq!(
            null_counts_above_the_barrier(false).await,
            vec![Precision::Inexact(0), Precision::Absent],
            "clear `age` has its statistics, redacted `name` none"
        );
        assert_eq!(
            null_counts_above_the_barrier(true).await,
            vec![Precision::Absent, Precision::Absent],
            "a row-filtered dataset gives sizes only"
        );
    }
}
