//! The engine's side of the cluster (issue #24): the plan codec that carries a secure plan's
//! own operators and functions to a Ballista scheduler and its executors, the sessions they
//! run them in, and a gateway's submission of a query's physical plan.
//!
//! A query goes to the cluster only as the physical plan this gateway built and checked: its
//! secure scans (raw scan → row filter → masks → barrier) are operators of that plan, so the
//! policy is enforced in what is shipped, and the scheduler refuses any other kind of job
//! (`cluster::scheduler`). The codec ships:
//! - [`BarrierExec`] and [`WideRowGuardExec`] with their bounds;
//! - each mask ([`MaskUdf`]) with its treatment, input type and, for a pseudonym, the keyed
//!   states of the plan's domain (`PseudonymDomain::to_wire`; never the master key);
//! - each bounded function by name, found again in the hub's [`FunctionSet`] (executors know
//!   no other function);
//! - on a bucket, each file scan under a [`PinnedScanExec`] carrying the object versions the
//!   query was planned on (keys, sizes, ETags), which an executor reads through its own
//!   credentials at those versions only.
//!
//! Anything else it does not know it refuses to encode: such a plan runs on the gateway.
//!
//! Owns: [`PlanCodec`], what a shipped plan is ([`ShippedPlan`]: bounded, without file
//! statistics, encoded once), the [`Cluster`] a gateway sends to (implemented by `cluster::client`,
//! which speaks gRPC), [`cluster_session_config`], [`cluster_function_registry`], and the
//! choice of the queries that go to the cluster.
//! Must never: ship SQL or a logical plan, ship the master key, decode an unknown operator or
//! function into anything but an error, or let a cluster error's text reach the caller.

use std::sync::Arc;

use ballista_core::extension::{EndpointOverrideFn, SessionConfigExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ColumnStatistics, Statistics};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::StreamExt;
use prost::Message;

use super::barrier::BarrierExec;
use super::functions::{CallBudget, FunctionSet};
use super::guard::WideRowGuardExec;
use super::masks::MaskUdf;
use super::pinned_scan::PinnedScanExec;
use crate::policy::ColumnTreatment;
use crate::pseudonym::PseudonymDomain;

/// Marks what passerelle's codec wrote (a Ballista node's protobuf never starts so: its first
/// byte is a length-delimited field's tag).
const MAGIC: &[u8; 4] = b"PSR\x01";
const BARRIER: u8 = 1;
const GUARD: u8 = 2;
const PINNED_SCAN: u8 = 3;
const MASK: u8 = 1;
const BOUNDED: u8 = 2;

fn refused(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("the cluster's plan codec refuses {what}"))
}

/// Ballista's codec (its shuffle operators) with passerelle's operators and functions.
#[derive(Debug, Default)]
pub struct PlanCodec {
    ballista: BallistaPhysicalExtensionCodec,
    /// An executor's view of the hub's bucket (`data.url`), for the pinned scans it decodes.
    bucket: Option<Arc<crate::storage::ObjectData>>,
}

impl PlanCodec {
    /// An executor's codec: pinned scans read `bucket` (none: they fail, reading nothing).
    pub fn for_executor(bucket: Option<Arc<crate::storage::ObjectData>>) -> Self {
        Self {
            ballista: BallistaPhysicalExtensionCodec::default(),
            bucket,
        }
    }
}

impl PhysicalExtensionCodec for PlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(ours) = buf.strip_prefix(MAGIC) else {
            return self.ballista.try_decode(buf, inputs, ctx, converter);
        };
        let [input] = inputs else {
            return Err(refused("an operator without exactly one input"));
        };
        match ours.split_first() {
            Some((&BARRIER, stats)) => Ok(Arc::new(BarrierExec::with_column_stats(
                input.clone(),
                stats.iter().map(|&b| b == 1).collect(),
            ))),
            Some((&PINNED_SCAN, objects)) => {
                let objects: Vec<crate::storage::PinnedObject> = serde_json::from_slice(objects)
                    .map_err(|_| refused("a pinned scan it cannot read"))?;
                Ok(Arc::new(PinnedScanExec::decoded(
                    input.clone(),
                    objects.into(),
                    self.bucket.clone(),
                    ctx,
                )?))
            }
            Some((&GUARD, bounds)) if bounds.len() == 17 => {
                let word = |at: usize| {
                    u64::from_le_bytes(bounds[at..at + 8].try_into().unwrap_or_default()) as usize
                };
                Ok(Arc::new(WideRowGuardExec::with_bounds(
                    input.clone(),
                    (word(0), word(8), bounds[16] == 1),
                )))
            }
            _ => Err(refused("an unknown operator")),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(barrier) = node.downcast_ref::<BarrierExec>() {
            buf.extend_from_slice(MAGIC);
            buf.push(BARRIER);
            buf.extend(barrier.column_stats().iter().map(|&b| u8::from(b)));
            return Ok(());
        }
        if let Some(guard) = node.downcast_ref::<WideRowGuardExec>() {
            let (max_row_bytes, batch_size, charge) = guard.bounds();
            buf.extend_from_slice(MAGIC);
            buf.push(GUARD);
            buf.extend_from_slice(&(max_row_bytes as u64).to_le_bytes());
            buf.extend_from_slice(&(batch_size as u64).to_le_bytes());
            buf.push(u8::from(charge));
            return Ok(());
        }
        if let Some(pinned) = node.downcast_ref::<PinnedScanExec>() {
            buf.extend_from_slice(MAGIC);
            buf.push(PINNED_SCAN);
            serde_json::to_writer(&mut *buf, pinned.objects())
                .map_err(|e| DataFusionError::Internal(e.to_string()))?;
            return Ok(());
        }
        self.ballista.try_encode(node, buf, converter)
    }

    fn try_encode_udf(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(mask) = udf.inner().downcast_ref::<MaskUdf>() {
            let (treatment, domain, input_type) = mask.parts();
            let treatment_json =
                serde_json::to_vec(treatment).map_err(|_| refused("a mask it cannot write"))?;
            let input_type = datafusion_proto::protobuf::ArrowType::try_from(input_type)
                .map_err(|_| refused("a mask of an unknown type"))?
                .encode_to_vec();
            buf.extend_from_slice(MAGIC);
            buf.push(MASK);
            for part in [&treatment_json, &input_type] {
                buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
                buf.extend_from_slice(part);
            }
            // SECURITY: the keyed states of this plan's own domain only (never the master
            // key), inside a plan that travels over mutual TLS to the cluster's nodes.
            // (Other masks may hold the session's domain too: they never use it.)
            if let (ColumnTreatment::Pseudonymised { .. }, Some(domain)) = (treatment, domain) {
                buf.extend_from_slice(&domain.to_wire());
            }
            return Ok(());
        }
        if FunctionSet::is_bounded(udf) {
            buf.extend_from_slice(MAGIC);
            buf.push(BOUNDED);
            buf.extend_from_slice(udf.name().as_bytes());
            return Ok(());
        }
        // SECURITY: a function that is neither a mask nor bounded is not shipped (the plan
        // then runs on the gateway, where `FunctionSet::verify_bound` had its say).
        Err(refused(&format!("function `{}`", udf.name())))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match buf.strip_prefix(MAGIC).and_then(|b| b.split_first()) {
            Some((&MASK, rest)) => {
                decode_mask(rest).map(|mask| Arc::new(ScalarUDF::new_from_impl(mask)))
            }
            Some((&BOUNDED, shipped)) if shipped == name.as_bytes() => FunctionSet::get()
                .scalar(name)
                .ok_or_else(|| refused(&format!("function `{name}`"))),
            // SECURITY: a call passerelle's codec did not write is not decoded.
            _ => Err(refused(&format!("function `{name}`"))),
        }
    }
}

fn decode_mask(bytes: &[u8]) -> Result<MaskUdf> {
    let mut rest = bytes;
    let mut part = || -> Result<&[u8]> {
        if rest.len() < 4 {
            return Err(refused("a cut mask"));
        }
        let (len, after) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        if after.len() < len {
            return Err(refused("a cut mask"));
        }
        let (part, after) = after.split_at(len);
        rest = after;
        Ok(part)
    };
    let treatment: ColumnTreatment =
        serde_json::from_slice(part()?).map_err(|_| refused("an unknown treatment"))?;
    let input_type = datafusion_proto::protobuf::ArrowType::decode(part()?)
        .map_err(|_| refused("a mask of an unknown type"))?;
    let input_type =
        DataType::try_from(&input_type).map_err(|_| refused("a mask of an unknown type"))?;
    let domain = match (&treatment, rest) {
        (ColumnTreatment::Pseudonymised { .. }, wire) => Some(Arc::new(
            PseudonymDomain::from_wire(wire).map_err(|_| refused("a mask without its domain"))?,
        )),
        (_, []) => None,
        _ => return Err(refused("a mask with a domain it does not use")),
    };
    Ok(MaskUdf::new(treatment, domain, input_type))
}

/// The configuration of every session on the cluster's nodes: Ballista's, each call's value
/// cap (`limits.max_value_bytes` of the node), and the node's side of the cluster's mutual TLS
/// for the connections its tasks open (an executor reading another's shuffle files).
pub fn cluster_session_config(
    max_value_bytes: usize,
    endpoint: EndpointOverrideFn,
) -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_option_extension(CallBudget {
            pool: None,
            max_value_bytes,
        })
        .with_ballista_use_tls(true)
        .with_ballista_override_create_grpc_client_endpoint(endpoint)
}

/// An executor's functions: the hub's bounded ones, its aggregates and window functions,
/// nothing else.
pub fn cluster_function_registry() -> BallistaFunctionRegistry {
    let set = FunctionSet::get();
    BallistaFunctionRegistry {
        scalar_functions: set
            .scalars()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect(),
        aggregate_functions: set
            .aggregates()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect(),
        window_functions: set
            .windows()
            .into_iter()
            .map(|f| (f.name().to_string(), f))
            .collect(),
        higher_order_functions: Default::default(),
    }
}

/// Where a gateway sends its large queries: the cluster's client (`cluster::client`, which
/// speaks its gRPC; the engine never does).
pub trait Cluster: std::fmt::Debug + Send + Sync {
    /// A query goes there when its datasets' files hold at least this many bytes.
    fn min_input_bytes(&self) -> u64;

    /// Runs `plan` on the cluster, its session's `settings` with it, and streams its answer
    /// back; the job is cancelled if the returned future is dropped before it ends.
    fn run(
        &self,
        plan: ShippedPlan,
        settings: Vec<(String, Option<String>)>,
    ) -> futures::future::BoxFuture<'static, Result<SendableRecordBatchStream>>;

    /// This gateway's jobs on the cluster so far (the operators' readiness view).
    fn jobs(&self) -> ClusterJobs {
        ClusterJobs::default()
    }
}

/// A gateway's jobs on the cluster: sent, not yet done with (waiting, running or being
/// read), and cancelled because nobody waited for them any more (the caller went away, or the
/// query's time ran out) and then seen ended by the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterJobs {
    pub sent: u64,
    pub open: u64,
    pub cancelled: u64,
}

/// A physical plan as the scheduler receives it, and the schema of its answer.
#[derive(Debug)]
pub struct ShippedPlan {
    /// `PhysicalPlanNode` bytes, written by [`PlanCodec`].
    pub bytes: Vec<u8>,
    pub schema: SchemaRef,
}

/// `plan` as the cluster receives it, or `None` when the cluster cannot run it whole (it then
/// runs on the gateway): when the codec refuses a node or function, or with a scalar
/// subquery (Ballista 55 cuts stages inside DataFusion 55's `ScalarSubqueryExec`, and an
/// executor then cannot decode the stage that holds the subquery's expression without it:
/// TPC-H Q11, Q15, Q22). On a bucket, `pins` are the object versions the query was planned
/// on: every scan of the bucket carries them.
pub(super) fn ship(
    plan: &Arc<dyn ExecutionPlan>,
    max_rows: usize,
    pins: Option<&crate::storage::Pins>,
) -> Option<ShippedPlan> {
    let mut scalar_subquery = false;
    let _ = plan.apply(|node| {
        scalar_subquery |= node.name() == "ScalarSubqueryExec";
        Ok(if scalar_subquery {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if scalar_subquery {
        return None;
    }
    // SECURITY (availability): a job's answer is written whole on the executors before it is
    // read: each of its partitions stops one row past what the caller may get.
    let limited: Arc<dyn ExecutionPlan> = Arc::new(LocalLimitExec::new(
        plan.clone(),
        max_rows.saturating_add(1),
    ));
    let schema = limited.schema();
    let mut shipped = without_file_statistics(limited).ok()?;
    if let Some(pins) = pins {
        let objects = pins.to_wire().ok()?.into();
        shipped = pinned_scans(shipped, &objects, pins.store_url()).ok()?;
    }
    let node = PhysicalPlanNode::try_from_physical_plan(shipped, &PlanCodec::default()).ok()?;
    Some(ShippedPlan {
        bytes: node.encode_to_vec(),
        schema,
    })
}

/// Runs `plan` (this gateway's physical plan, secure scans inside) on `cluster` in the
/// settings of `state`; the answer's errors are [`cluster_error`]s.
pub(super) async fn run_on_cluster(
    cluster: &dyn Cluster,
    plan: ShippedPlan,
    state: &SessionState,
) -> Result<SendableRecordBatchStream> {
    let settings = state
        .config()
        .options()
        .entries()
        .into_iter()
        .map(|entry| (entry.key, entry.value))
        .collect();
    let stream = cluster.run(plan, settings).await?;
    let schema = stream.schema();
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.map(|batch| batch.map_err(cluster_error)),
    )))
}

/// `plan` with each file scan of the bucket `bucket` under a [`PinnedScanExec`] that carries
/// the query's object versions `objects`.
///
/// SECURITY: an executor reads the bucket with credentials of its own; without the pins it
/// would read whatever version is current when its task runs (a mix of two versions across
/// tasks), with them it reads the gateway's versions or fails (`data_changed`).
pub(super) fn pinned_scans(
    plan: Arc<dyn ExecutionPlan>,
    objects: &Arc<[crate::storage::PinnedObject]>,
    bucket: &url::Url,
) -> Result<Arc<dyn ExecutionPlan>> {
    let bucket = bucket.as_str().trim_end_matches('/');
    plan.transform_up(|node| {
        let Some(config) = file_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        // SECURITY: on a bucket, a scan of a local file (a table of the statistical secret in
        // the gateway's own folder) is not shipped: an executor would read whatever its own
        // disk holds at that path, no version checked. The query runs on the gateway.
        if config.object_store_url.as_str().trim_end_matches('/') != bucket {
            return Err(refused("a file outside the bucket"));
        }
        Ok(Transformed::yes(
            Arc::new(PinnedScanExec::new(node, objects.clone())) as Arc<dyn ExecutionPlan>,
        ))
    })
    .map(|t| t.data)
}

/// The file scan `node` is, if it is one.
pub(super) fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
}

/// `plan` with its file scans' statistics unknown.
///
/// SECURITY: a scan's statistics are the raw columns' minimum, maximum, null and distinct
/// counts per file (an identifier's smallest and largest value): DataFusion's protobuf would
/// carry them to the scheduler and executors, which need none (the gateway planned the joins;
/// executors prune with the files' own footers).
fn without_file_statistics(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(config) = file_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        let columns = config.statistics().column_statistics.len();
        let groups = config
            .file_groups
            .iter()
            .map(|group| {
                FileGroup::new(
                    group
                        .iter()
                        .map(|file| {
                            let mut file = file.clone();
                            file.statistics = None;
                            file
                        })
                        .collect(),
                )
            })
            .collect();
        let unknown = Statistics {
            num_rows: Precision::Absent,
            total_byte_size: Precision::Absent,
            column_statistics: vec![ColumnStatistics::new_unknown(); columns],
        };
        let stripped = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .with_statistics(unknown)
            .build();
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(stripped) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}

/// The scheduler's sessions: DataFusion's, in which the scheduler decodes and stages plans,
/// with the cluster's runtime ([`cluster_runtime`]).
///
/// SECURITY: the scheduler holds no credentials and reads no data: a scan of the bucket only
/// needs a store under its URL to be decoded; its executors read it.
pub fn scheduler_session(
    config: SessionConfig,
) -> Result<datafusion::execution::session_state::SessionState> {
    let state = ballista_core::utils::default_session_builder(config)?;
    Ok(
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(cluster_runtime(None)?)
            .build(),
    )
}

/// The runtime a cluster node decodes plans in (spilling in `temp`, if given): local files as
/// DataFusion reads them, and under any other URL (a bucket a scan names) a store that
/// refuses every call, so that a scan of the bucket decodes but reads nothing unless a
/// [`PinnedScanExec`] above it gives the versions it may read.
///
/// SECURITY (fail closed): an executor never reads the bucket unpinned.
pub fn cluster_runtime(
    temp: Option<&std::path::Path>,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    let mut builder = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(NoDataRegistry::default()));
    if let Some(temp) = temp {
        builder = builder.with_temp_file_path(temp);
    }
    Ok(Arc::new(builder.build()?))
}

/// DataFusion's registry (local files), and a store that refuses every call under any URL it
/// does not know (`storage::no_data_store`).
#[derive(Debug, Default)]
struct NoDataRegistry {
    known: datafusion::execution::object_store::DefaultObjectStoreRegistry,
}

impl datafusion::execution::object_store::ObjectStoreRegistry for NoDataRegistry {
    fn register_store(
        &self,
        url: &url::Url,
        store: Arc<dyn object_store::ObjectStore>,
    ) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn get_store(&self, url: &url::Url) -> Result<Arc<dyn object_store::ObjectStore>> {
        Ok(self
            .known
            .get_store(url)
            .unwrap_or_else(|_| crate::storage::no_data_store()))
    }
}

/// Settings of a query bound for the cluster, before its physical planning: no dynamic
/// filters. Ballista's scheduler plans the stages again and may swap a join's inputs, which a
/// join whose dynamic filter is already built refuses (the task fails, the job never ends).
pub(super) fn prepare(options: &mut ConfigOptions) {
    let optimizer = &mut options.optimizer;
    optimizer.enable_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.enable_topk_dynamic_filter_pushdown = false;
    optimizer.enable_aggregate_dynamic_filter_pushdown = false;
}

/// How an executor says that a task reached its deadline (`cluster::deadline`); the gateway
/// answers `query_timeout`.
pub const TASK_DEADLINE: &str = "a cluster task ran longer than its time limit";

/// What a caller learns of a cluster's failure: its kind, in the engine's own words, never
/// its text (Ballista's text around the executor's error names jobs, nodes and files).
pub(super) fn cluster_error(e: DataFusionError) -> DataFusionError {
    // SECURITY: the answer is chosen from a fixed list by what the text contains, and
    // carries none of it.
    let text = e.to_string();
    drop(e);
    let user = |m: &str| DataFusionError::Execution(m.to_string());
    // (The errors a user's expression causes come first: their text may quote a value the
    // user built, which must not pass for another kind.)
    let answer = if text.contains(super::memory::VALUE_TOO_LARGE) {
        DataFusionError::ResourcesExhausted(format!(
            "{}: a function of the query would build a value larger than this hub allows",
            super::memory::VALUE_TOO_LARGE
        ))
    } else if text.contains("regex parse error")
        || text.contains("Regular expression did not compile")
    {
        DataFusionError::Internal("Regular expression did not compile".into())
    } else if text.contains("Cast error") || text.contains("Cannot cast") {
        user("a value cannot be converted to the type the query asks for")
    } else if text.contains("Divide by zero") || text.contains("division by zero") {
        user("division by zero")
    } else if text.contains("Arithmetic overflow") || text.contains("Overflow happened") {
        user("arithmetic overflow")
    } else if text.contains(TASK_DEADLINE) {
        DataFusionError::ResourcesExhausted(TASK_DEADLINE.into())
    } else if text.contains("precondition failure") {
        // An object replaced since the query was planned (an executor's `If-Match` refused):
        // retryable, as on the gateway (`user_error` sees a version change).
        DataFusionError::ObjectStore(Box::new(object_store::Error::Precondition {
            path: String::new(),
            source: "an object of the query was replaced".into(),
        }))
    } else if text.contains("Resources exhausted") {
        DataFusionError::ResourcesExhausted("the cluster's memory".into())
    } else {
        DataFusionError::Internal("the cluster could not run the query".into())
    };
    // SECURITY: the error's text may quote a value (`Cannot cast string '…'`): only its kind
    // is logged.
    tracing::warn!(kind = %answer, "a query failed on the cluster");
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::MasterKey;

    /// A cluster's failure is told by its kind; a value a user's expression put in an error's
    /// text does not make it another kind (a version change, a deadline).
    #[test]
    fn a_cluster_error_is_its_kind_whatever_a_value_in_its_text_says() {
        let kind = |text: &str| cluster_error(DataFusionError::Execution(text.into()));
        let quoted = kind(
            "Job failed: Arrow error: Cast error: Cannot cast string 'precondition failure' to value of Int64 type",
        );
        assert!(!crate::storage::is_version_changed(&quoted), "{quoted}");
        assert!(
            quoted.to_string().contains("cannot be converted"),
            "{quoted}"
        );
        let replaced = kind(
            "Job failed: Object Store error: Request precondition failure for path hub/t.parquet: changed",
        );
        assert!(crate::storage::is_version_changed(&replaced), "{replaced}");
        let late = kind(&format!(
            "Task failed: Resources exhausted: {TASK_DEADLINE} (2 s)"
        ));
        assert!(late.to_string().contains(TASK_DEADLINE), "{late}");
        assert!(!late.to_string().contains("2 s"), "{late}");
    }

    #[test]
    fn the_codec_decodes_only_what_it_wrote() {
        let codec = PlanCodec::default();
        // A pseudonymising mask goes and comes back with its domain; another mask without.
        let domain =
            Arc::new(PseudonymDomain::derive(&MasterKey::from_bytes([3; 32]), "p", 2).unwrap());
        let pseudonym = ColumnTreatment::Pseudonymised { domain: "p".into() };
        for (treatment, domain) in [
            (pseudonym, Some(domain.clone())),
            (ColumnTreatment::Redacted, Some(domain.clone())),
            (ColumnTreatment::Partial { keep_last: 4 }, None),
        ] {
            let udf =
                ScalarUDF::new_from_impl(MaskUdf::new(treatment.clone(), domain, DataType::Utf8));
            let mut buf = Vec::new();
            codec.try_encode_udf(&udf, &mut buf).unwrap();
            let back = codec.try_decode_udf("masked", &buf).unwrap();
            let (t, d, ty) = back.inner().downcast_ref::<MaskUdf>().unwrap().parts();
            assert_eq!((t, ty), (&treatment, &DataType::Utf8));
            assert_eq!(
                d.is_some(),
                matches!(treatment, ColumnTreatment::Pseudonymised { .. })
            );
        }
        // A bounded function comes back as the hub's own, under its own name only.
        let upper = FunctionSet::get().scalar("upper").unwrap();
        let mut buf = Vec::new();
        codec.try_encode_udf(&upper, &mut buf).unwrap();
        assert!(FunctionSet::is_bounded(
            &codec.try_decode_udf("upper", &buf).unwrap()
        ));
        assert!(codec.try_decode_udf("repeat", &buf).is_err());
        // SECURITY: what the codec did not write is refused: no definition, another format, a
        // pseudonym without its domain, a function outside the hub's list.
        assert!(codec.try_decode_udf("upper", &[]).is_err());
        assert!(codec.try_decode_udf("upper", b"not ours").is_err());
        let mut cut = MAGIC.to_vec();
        cut.push(MASK);
        let json =
            serde_json::to_vec(&ColumnTreatment::Pseudonymised { domain: "p".into() }).unwrap();
        cut.extend_from_slice(&(json.len() as u32).to_le_bytes());
        cut.extend_from_slice(&json);
        let utf8 = datafusion_proto::protobuf::ArrowType::try_from(&DataType::Utf8)
            .unwrap()
            .encode_to_vec();
        cut.extend_from_slice(&(utf8.len() as u32).to_le_bytes());
        cut.extend_from_slice(&utf8);
        assert!(codec.try_decode_udf("masked", &cut).is_err());
        let mut named = MAGIC.to_vec();
        named.push(BOUNDED);
        named.extend_from_slice(b"md5");
        assert!(codec.try_decode_udf("md5", &named).is_err());
        // A plain DataFusion function (not bounded) is not shipped at all.
        let raw = datafusion::functions::string::upper();
        assert!(codec.try_encode_udf(&raw, &mut Vec::new()).is_err());
    }

    /// SECURITY: a scan's statistics (a raw column's minimum and maximum per file) do not
    /// travel: what the scheduler decodes has none; and the shipped plan is bounded in rows.
    #[tokio::test]
    async fn a_shipped_plan_carries_no_file_statistics_and_is_bounded_in_rows() {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::prelude::{ParquetReadOptions, SessionContext};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("nir", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![
                "1840375056123",
                "2990175056999",
            ]))],
        )
        .unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema,
            None,
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let ctx = SessionContext::new();
        ctx.register_parquet("t", path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        ctx.sql("SET datafusion.execution.collect_statistics = true")
            .await
            .unwrap();
        let plan = ctx
            .sql("SELECT nir FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let text = |plan: &Arc<dyn ExecutionPlan>| {
            format!(
                "{:?}",
                PhysicalPlanNode::try_from_physical_plan(plan.clone(), &PlanCodec::default())
                    .unwrap()
            )
        };
        // The plain encoding carries the raw extremes; passerelle's does not.
        assert!(text(&plan).contains("1840375056123"), "{}", text(&plan));
        let shipped = ship(&plan, 10, None).unwrap();
        let shipped = PhysicalPlanNode::decode(shipped.bytes.as_slice()).unwrap();
        let shipped = format!("{shipped:?}");
        assert!(!shipped.contains("1840375056123") && !shipped.contains("2990175056999"));
        // SECURITY (availability): each partition of the job stops one row past the answer's
        // bound (10 rows here) before anything is written on an executor.
        assert!(
            shipped.starts_with("PhysicalPlanNode { physical_plan_type: Some(LocalLimit(")
                && shipped.contains("fetch: 11"),
            "{shipped}"
        );
    }
}
