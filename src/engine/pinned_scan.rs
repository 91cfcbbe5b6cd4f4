//! A scan of the hub's bucket shipped to the cluster: the object versions the gateway planned
//! the query on travel with it ([`PinnedScanExec`] above the file scan), and an executor reads
//! the scan's objects through a view of its own bucket that serves those versions only
//! (`If-Match: <ETag>` on every read: `storage::ObjectData::pinned_view`), so that a query on
//! the cluster finishes on the versions it started with or fails with `data_changed`, as on
//! the gateway.
//!
//! Owns: the node and what it carries (keys, sizes, ETags, times). Must never: read an object
//! outside its pins, or run on a node that has no bucket of its own (it fails the task).

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use crate::storage::{ObjectData, PinnedObject};

/// Its file scan's input read at the pinned versions of the bucket's objects.
#[derive(Debug)]
pub struct PinnedScanExec {
    input: Arc<dyn ExecutionPlan>,
    objects: Arc<[PinnedObject]>,
    /// On an executor, the bucket's URL and the view of it that serves `objects` only, made
    /// once when the node is decoded (none on the gateway, which never runs this node).
    view: Option<(url::Url, Arc<dyn object_store::ObjectStore>)>,
}

impl PinnedScanExec {
    /// The node as an executor decodes it: its Parquet scan `input` (whose reader DataFusion's
    /// protobuf bound, at decoding, to the store then registered: one that refuses every
    /// call) made to read `bucket` at `objects`' versions. Without a bucket the scan is left
    /// bound to the refusing store (and [`ExecutionPlan::execute`] fails).
    pub fn decoded(
        input: Arc<dyn ExecutionPlan>,
        objects: Arc<[PinnedObject]>,
        bucket: Option<Arc<ObjectData>>,
        ctx: &TaskContext,
    ) -> Result<Self> {
        let Some(bucket) = bucket else {
            return Ok(Self::new(input, objects));
        };
        let view = bucket
            .pinned_view(&objects)
            .map_err(|e| datafusion::common::DataFusionError::Internal(e.to_string()))?;
        let metadata = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        Ok(Self {
            input: rebind(input, view.clone(), metadata)?,
            objects,
            view: Some((bucket.store_url().clone(), view)),
        })
    }

    /// `input` (a file scan of the bucket) pinned to `objects`, as the gateway ships it.
    pub fn new(input: Arc<dyn ExecutionPlan>, objects: Arc<[PinnedObject]>) -> Self {
        Self {
            input,
            objects,
            view: None,
        }
    }

    /// The object versions it reads.
    pub fn objects(&self) -> &[PinnedObject] {
        &self.objects
    }
}

/// `input` with each of its file scans (Parquet) reading through `store`, footers kept in
/// `metadata` (the scan itself, or below operators a planner put between, e.g. a
/// repartitioning).
///
/// SECURITY (fail closed): a pinned scan over no file scan, or over a file scan of another
/// format, is refused.
fn rebind(
    input: Arc<dyn ExecutionPlan>,
    store: Arc<dyn object_store::ObjectStore>,
    metadata: Arc<datafusion::execution::cache::cache_manager::FileMetadataCache>,
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let mut scans = 0;
    let rebound = input.transform_up(|node| {
        let Some(config) = super::distributed::file_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        let Some(parquet) = config.file_source().downcast_ref::<ParquetSource>() else {
            return datafusion::common::internal_err!("a pinned scan of another format");
        };
        scans += 1;
        let reader = Arc::new(CachedParquetFileReaderFactory::new(
            store.clone(),
            metadata.clone(),
        ));
        let source = parquet.clone().with_parquet_file_reader_factory(reader);
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(Arc::new(source))
            .build();
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
        ))
    })?;
    if scans == 0 {
        return datafusion::common::internal_err!("a pinned scan over no file scan");
    }
    Ok(rebound.data)
}

impl DisplayAs for PinnedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PinnedScan: {} object(s)", self.objects.len())
    }
}

impl ExecutionPlan for PinnedScanExec {
    fn name(&self) -> &str {
        "PinnedScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    /// The scheduler's planner must put no repartitioning between this node and its scan.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(PinnedScanExec {
                input,
                objects: self.objects.clone(),
                view: self.view.clone(),
            })),
            _ => datafusion::common::internal_err!("a pinned scan has exactly one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // SECURITY (fail closed): a node without the hub's bucket reads nothing.
        let Some((url, view)) = &self.view else {
            return datafusion::common::internal_err!("this node reads no bucket (data.url)");
        };
        // SECURITY: the scan's objects only, each at the version the gateway planned on.
        let runtime = super::files::runtime_with_store(&context.runtime_env(), url, view.clone());
        let context = TaskContext::new(
            context.task_id(),
            context.session_id(),
            context.session_config().clone(),
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            runtime,
        );
        self.input.execute(partition, Arc::new(context))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(Statistics::new_unknown(&self.schema()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::distributed::{PlanCodec, cluster_error, cluster_runtime, pinned_scans};
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;

    fn parquet(values: &[i64]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(values.to_vec()))],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    /// `bytes` decoded as an executor decodes a task: in the cluster's runtime (a bucket's
    /// URL finds a store that refuses every call), with `codec`.
    fn on_executor(bytes: &[u8], codec: &PlanCodec) -> Arc<dyn ExecutionPlan> {
        use prost::Message;
        let ctx = TaskContext::default().with_runtime(cluster_runtime(None).unwrap());
        PhysicalPlanNode::decode(bytes)
            .unwrap()
            .try_into_physical_plan(&ctx, codec)
            .unwrap()
    }

    /// The gateway's plan of `SELECT x FROM t`.
    async fn plan_of(gateway: &SessionContext) -> Arc<dyn ExecutionPlan> {
        gateway
            .sql("SELECT x FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    /// The sum of the values the plan reads (its one column).
    async fn sum(plan: Arc<dyn ExecutionPlan>) -> Result<i64> {
        let ctx = Arc::new(TaskContext::default().with_runtime(cluster_runtime(None)?));
        let batches = datafusion::physical_plan::collect(plan, ctx).await?;
        Ok(batches
            .iter()
            .map(|b| {
                let values = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..values.len()).map(|i| values.value(i)).sum::<i64>()
            })
            .sum())
    }

    /// An executor reads a shipped scan of the bucket at the version the gateway planned on:
    /// through its own view of the bucket, `If-Match` the pinned ETag; a replaced object fails
    /// the query with a version change (the gateway answers `data_changed`, retryable); without
    /// the pinned scan above it, or without a bucket of its own, an executor reads nothing.
    #[tokio::test]
    async fn an_executor_reads_the_bucket_only_at_the_pinned_versions() {
        let memory = Arc::new(InMemory::new());
        let key = ObjectPath::from("hub/t.parquet");
        memory.put(&key, parquet(&[1, 2, 3]).into()).await.unwrap();
        let v1 = memory.head(&key).await.unwrap();
        let objects: Arc<[PinnedObject]> = vec![PinnedObject {
            key: key.to_string(),
            size: v1.size,
            etag: v1.e_tag.clone().unwrap(),
            modified_ns: v1.last_modified.timestamp_nanos_opt().unwrap(),
        }]
        .into();
        // The gateway's plan (the bucket registered as the gateway sees it).
        let url = url::Url::parse("s3://hub-bucket").unwrap();
        let gateway = SessionContext::new();
        gateway.register_object_store(&url, memory.clone());
        gateway
            .register_parquet(
                "t",
                "s3://hub-bucket/hub/t.parquet",
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        let plan = plan_of(&gateway).await;
        let encode = |plan: Arc<dyn ExecutionPlan>| {
            use prost::Message;
            PhysicalPlanNode::try_from_physical_plan(plan, &PlanCodec::default())
                .unwrap()
                .encode_to_vec()
        };
        let pinned = encode(pinned_scans(plan.clone(), &objects, &url).unwrap());
        let unpinned = encode(plan);
        let bucket = ObjectData::over(memory.clone(), "hub-bucket", "hub");
        let executor = PlanCodec::for_executor(Some(bucket.clone()));

        assert_eq!(sum(on_executor(&pinned, &executor)).await.unwrap(), 6);
        // A repartitioning a planner puts between the pinned scan and its file scan: the file
        // scan is still read at its version.
        let scan = plan_of(&gateway).await;
        let spread: Arc<dyn ExecutionPlan> = Arc::new(
            datafusion::physical_plan::repartition::RepartitionExec::try_new(
                scan,
                datafusion::physical_plan::Partitioning::RoundRobinBatch(2),
            )
            .unwrap(),
        );
        let spread = encode(Arc::new(PinnedScanExec::new(spread, objects.clone())));
        assert_eq!(sum(on_executor(&spread, &executor)).await.unwrap(), 6);
        // SECURITY: a scan of another store is not shipped beside the pins (its query runs on
        // the gateway); an object outside the hub's prefix is never read.
        let elsewhere = url::Url::parse("s3://another-bucket").unwrap();
        assert!(pinned_scans(plan_of(&gateway).await, &objects, &elsewhere).is_err());
        let outside = [PinnedObject {
            key: "other/t.parquet".into(),
            ..objects[0].clone()
        }];
        assert!(bucket.pinned_view(&outside).is_err());
        // SECURITY (fail closed): a scan without its pins, or an executor without the bucket,
        // reads nothing.
        assert!(sum(on_executor(&unpinned, &executor)).await.is_err());
        let bare = PlanCodec::for_executor(None);
        assert!(sum(on_executor(&pinned, &bare)).await.is_err());

        // The object replaced: the pinned version is gone, and the query says so.
        memory.put(&key, parquet(&[10, 20]).into()).await.unwrap();
        let e = sum(on_executor(&pinned, &executor)).await.unwrap_err();
        assert!(e.to_string().contains("precondition failure"), "{e}");
        // Through the scheduler the gateway receives the failure as text: still a version
        // change for the gateway (`data_changed`), whatever else the text says.
        let relayed = cluster_error(datafusion::error::DataFusionError::Execution(format!(
            "Job failed due to stage 1 failed: {e}"
        )));
        assert!(crate::storage::is_version_changed(&relayed), "{relayed}");
    }
}
