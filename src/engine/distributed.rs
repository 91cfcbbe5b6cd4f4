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
//!   no other function).
//!
//! Anything else it does not know it refuses to encode: such a plan runs on the gateway.
//!
//! Owns: [`PlanCodec`], [`ClusterTarget`], [`cluster_session_config`],
//! [`cluster_function_registry`], and the choice and submission of a query to the cluster.
//! Must never: ship SQL or a logical plan, ship the master key, decode an unknown operator or
//! function into anything but an error, or let a cluster error's text reach the caller.

use std::sync::Arc;

use ballista_core::client::BallistaClient;
use ballista_core::extension::{BallistaConfigGrpcEndpoint, EndpointOverrideFn, SessionConfigExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    CancelJobParams, ExecuteQueryParams, GetJobStatusParams, KeyValuePair, PartitionLocation,
    execute_query_result, job_status,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::barrier::BarrierExec;
use super::functions::{CallBudget, FunctionSet};
use super::guard::WideRowGuardExec;
use super::masks::MaskUdf;
use crate::policy::ColumnTreatment;
use crate::pseudonym::PseudonymDomain;

/// Marks what passerelle's codec wrote (a Ballista node's protobuf never starts so: its first
/// byte is a length-delimited field's tag).
const MAGIC: &[u8; 4] = b"PSR\x01";
const BARRIER: u8 = 1;
const GUARD: u8 = 2;
const MASK: u8 = 1;
const BOUNDED: u8 = 2;

fn refused(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("the cluster's plan codec refuses {what}"))
}

/// Ballista's codec (its shuffle operators) with passerelle's operators and functions.
#[derive(Debug, Default)]
pub struct PlanCodec {
    ballista: BallistaPhysicalExtensionCodec,
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

/// Where a gateway sends its large queries.
#[derive(Clone)]
pub struct ClusterTarget {
    /// The scheduler, `https://host:port`.
    pub scheduler: String,
    /// The client side of the cluster's mutual TLS (`cluster::tls`).
    pub endpoint: EndpointOverrideFn,
    /// A query goes there when its datasets' files hold at least this many bytes.
    pub min_input_bytes: u64,
}

impl std::fmt::Debug for ClusterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTarget")
            .field("scheduler", &self.scheduler)
            .field("min_input_bytes", &self.min_input_bytes)
            .finish_non_exhaustive()
    }
}

/// Can the cluster run `plan` whole? (Otherwise it runs on the gateway.) Not when the codec
/// refuses a node or function, nor with a scalar subquery: Ballista 55 cuts stages inside
/// DataFusion 55's `ScalarSubqueryExec`, and an executor then cannot decode the stage that
/// holds the subquery's expression without it (TPC-H Q11, Q15, Q22).
pub(super) fn can_ship(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut scalar_subquery = false;
    let _ = plan.apply(|node| {
        scalar_subquery |= node.name() == "ScalarSubqueryExec";
        Ok(if scalar_subquery {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    !scalar_subquery
        && PhysicalPlanNode::try_from_physical_plan(plan.clone(), &PlanCodec::default()).is_ok()
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

/// What a caller learns of a cluster's failure: its kind, in the engine's own words, never
/// its text (Ballista's text around the executor's error names jobs, nodes and files).
pub(super) fn cluster_error(e: DataFusionError) -> DataFusionError {
    // SECURITY: the text is logged; the answer is chosen from a fixed list by what it
    // contains, and carries none of it.
    tracing::error!(error = %e, "the cluster could not run a query");
    let text = e.to_string();
    let user = |m: &str| DataFusionError::Execution(m.to_string());
    if text.contains(super::memory::VALUE_TOO_LARGE) {
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
    } else if text.contains("Resources exhausted") {
        DataFusionError::ResourcesExhausted("the cluster's memory".into())
    } else {
        DataFusionError::Internal("the cluster could not run the query".into())
    }
}

/// Largest gRPC message to or from the scheduler and executors.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A job submitted and not yet finished: dropped (the caller went away, the query's time ran
/// out), it asks the scheduler to cancel the job, so that no work goes on for nobody.
struct RunningJob {
    scheduler: SchedulerGrpcClient<Channel>,
    job_id: Option<String>,
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        let (Some(job_id), Ok(runtime)) =
            (self.job_id.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut scheduler = self.scheduler.clone();
        runtime.spawn(async move {
            // SECURITY (availability): a job nobody reads is stopped.
            if let Err(e) = scheduler.cancel_job(CancelJobParams { job_id }).await {
                tracing::warn!(error = %e, "a cluster job could not be cancelled");
            }
        });
    }
}

/// Submits `plan` (this gateway's physical plan, secure scans inside) to the cluster, waits
/// for the job (cancelled if this future is dropped), and streams its answer back from the
/// executors; every error is a [`cluster_error`].
pub(super) async fn run_on_cluster(
    target: &ClusterTarget,
    plan: Arc<dyn ExecutionPlan>,
    state: &SessionState,
) -> Result<SendableRecordBatchStream> {
    let schema = plan.schema();
    let mut bytes = Vec::new();
    PhysicalPlanNode::try_from_physical_plan(plan, &PlanCodec::default())?
        .encode(&mut bytes)
        .map_err(|e| DataFusionError::Internal(format!("plan encoding: {e}")))?;
    let settings = state
        .config()
        .options()
        .entries()
        .into_iter()
        .map(|entry| KeyValuePair {
            key: entry.key,
            value: entry.value,
        })
        .collect();
    let endpoint = (target.endpoint)(
        Endpoint::from_shared(target.scheduler.clone())
            .map_err(|e| DataFusionError::Internal(format!("scheduler address: {e}")))?,
    )
    .map_err(|e| DataFusionError::Internal(format!("scheduler endpoint: {e}")))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| DataFusionError::Internal(format!("scheduler connection: {e}")))?;
    let mut scheduler = SchedulerGrpcClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let session = uuid::Uuid::new_v4().to_string();
    let mut request = tonic::Request::new(ExecuteQueryParams {
        session_id: session.clone(),
        settings,
        operation_id: session,
        query: Some(Query::PhysicalPlan(bytes)),
    });
    ballista_core::version::insert_version_header(request.metadata_mut());
    let status = |e: tonic::Status| DataFusionError::Internal(format!("scheduler: {e}"));
    let submitted = scheduler
        .execute_query(request)
        .await
        .map_err(status)?
        .into_inner();
    let job_id = match submitted.result {
        Some(execute_query_result::Result::Success(success)) => success.job_id,
        other => {
            return Err(DataFusionError::Internal(format!("job refused: {other:?}")));
        }
    };
    let mut job = RunningJob {
        scheduler: scheduler.clone(),
        job_id: Some(job_id.clone()),
    };
    let locations = loop {
        let answer = scheduler
            .get_job_status(GetJobStatusParams {
                job_id: job_id.clone(),
            })
            .await
            .map_err(status)?
            .into_inner();
        match answer.status.and_then(|s| s.status) {
            Some(job_status::Status::Successful(done)) => break done.partition_location,
            Some(job_status::Status::Failed(failed)) => {
                job.job_id = None;
                return Err(DataFusionError::Execution(failed.error));
            }
            _ => tokio::time::sleep(JOB_POLL).await,
        }
    };
    job.job_id = None;
    let endpoint = Arc::new(BallistaConfigGrpcEndpoint::new(target.endpoint.clone()));
    let partitions = locations.into_iter().map(move |location| {
        futures::stream::once(fetch_partition(location, endpoint.clone())).try_flatten()
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(partitions)
            .flatten()
            .map(|batch| batch.map_err(cluster_error)),
    )))
}

/// How often a gateway asks the scheduler whether its job is done.
const JOB_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// One partition of a finished job's answer, from the executor that holds it.
async fn fetch_partition(
    location: PartitionLocation,
    endpoint: Arc<BallistaConfigGrpcEndpoint>,
) -> Result<SendableRecordBatchStream> {
    let layout = location.layout();
    let (Some(executor), Some(partition)) = (location.executor_meta, location.partition_id) else {
        return Err(DataFusionError::Internal(
            "a partition without its place".into(),
        ));
    };
    let mut client = BallistaClient::try_new(
        &executor.host,
        executor.port as u16,
        MAX_MESSAGE,
        true,
        Some(endpoint),
        3,
        100,
        0,
        0,
    )
    .await
    .map_err(|e| DataFusionError::Internal(format!("executor connection: {e}")))?;
    client
        .fetch_partition(
            &executor.id,
            &partition.into(),
            location.file_id,
            layout,
            true,
        )
        .await
        .map_err(|e| DataFusionError::Internal(format!("partition fetch: {e}")))
}
