//! A gateway's client of the cluster: submits a query's physical plan to the scheduler,
//! follows the job, cancels it when nobody waits for it any more, and streams the answer back
//! from the executors — every channel mutual TLS with the gateway's certificate.
//!
//! Owns: [`ClusterClient`], the engine's [`Cluster`] (`engine::distributed` decides which
//! queries go, and encodes their plans).
//! Must never: send anything but a plan the engine encoded, leave a job running for a caller
//! that went away, or connect in clear.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ballista_core::client::BallistaClient;
use ballista_core::extension::{BallistaConfigGrpcEndpoint, EndpointOverrideFn};
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    CancelJobParams, CleanJobDataParams, ExecuteQueryParams, GetJobStatusParams, KeyValuePair,
    PartitionLocation, execute_query_result, job_status,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use tonic::transport::{Channel, Endpoint};

use super::tls::ClusterTls;
use crate::config::ClusterConfig;
use crate::engine::{Cluster, ClusterJobs, ShippedPlan};

/// Largest gRPC message to or from the scheduler and executors.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How often a gateway asks the scheduler whether its job is done.
const JOB_POLL: Duration = Duration::from_millis(20);
/// How long a gateway waits for the scheduler to end a job it cancelled.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// This gateway's counts of its jobs (see [`ClusterJobs`]).
#[derive(Debug, Default)]
struct JobCounts {
    sent: AtomicU64,
    open: AtomicU64,
    cancelled: AtomicU64,
}

/// The cluster as a gateway sees it.
#[derive(Clone)]
pub struct ClusterClient {
    scheduler: String,
    endpoint: EndpointOverrideFn,
    min_input_bytes: u64,
    jobs: Arc<JobCounts>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("scheduler", &self.scheduler)
            .field("min_input_bytes", &self.min_input_bytes)
            .finish_non_exhaustive()
    }
}

impl ClusterClient {
    /// The client of `config`'s cluster, with this gateway's identity (read now: a gateway
    /// whose identity cannot be read does not start).
    pub fn new(config: &ClusterConfig) -> Result<Self, String> {
        let tls = ClusterTls::load(config)?;
        Ok(Self {
            scheduler: config.scheduler.clone(),
            endpoint: tls.endpoint_override(),
            min_input_bytes: config.min_input_bytes,
            jobs: Arc::default(),
        })
    }

    /// The same client sending every query that reads `min_input_bytes` or more.
    pub fn with_min_input_bytes(mut self, min_input_bytes: u64) -> Self {
        self.min_input_bytes = min_input_bytes;
        self
    }
}

impl Cluster for ClusterClient {
    fn min_input_bytes(&self) -> u64 {
        self.min_input_bytes
    }

    fn jobs(&self) -> ClusterJobs {
        ClusterJobs {
            sent: self.jobs.sent.load(Ordering::Relaxed),
            open: self.jobs.open.load(Ordering::Relaxed),
            cancelled: self.jobs.cancelled.load(Ordering::Relaxed),
        }
    }

    fn run(
        &self,
        plan: ShippedPlan,
        settings: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'static, Result<SendableRecordBatchStream>> {
        let client = self.clone();
        async move { client.run_job(plan, settings).await }.boxed()
    }
}

/// What the scheduler is asked when a [`JobGuard`] is dropped.
#[derive(Clone, Copy)]
enum OnDrop {
    /// A job submitted and not yet finished: the caller went away or the query's time ran
    /// out: cancel it, so that no work goes on for nobody.
    Cancel,
    /// A finished job whose answer stream was dropped (read to the end or abandoned): remove
    /// its files from the executors.
    Clean,
}

/// One job, and what to ask of the scheduler when it is no longer wanted.
struct JobGuard {
    scheduler: SchedulerGrpcClient<Channel>,
    job_id: Option<String>,
    on_drop: OnDrop,
    jobs: Arc<JobCounts>,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.jobs.open.fetch_sub(1, Ordering::Relaxed);
        let (Some(job_id), Ok(runtime)) =
            (self.job_id.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let mut scheduler = self.scheduler.clone();
        let on_drop = self.on_drop;
        let jobs = self.jobs.clone();
        runtime.spawn(async move {
            // SECURITY (availability): a job nobody reads is stopped; an answer read is not
            // kept on the executors' disks.
            let asked = match on_drop {
                OnDrop::Cancel => {
                    let asked = scheduler
                        .cancel_job(CancelJobParams {
                            job_id: job_id.clone(),
                        })
                        .await
                        .map(|_| ());
                    if asked.is_ok() && ended(&mut scheduler, job_id).await {
                        jobs.cancelled.fetch_add(1, Ordering::Relaxed);
                        // (Described in `telemetry`.)
                        metrics::counter!("passerelle_cluster_jobs_cancelled_total").increment(1);
                    }
                    asked
                }
                OnDrop::Clean => scheduler
                    .clean_job_data(CleanJobDataParams {
                        job_id,
                        remove_stage_ids: Vec::new(),
                    })
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = asked {
                tracing::warn!(error = %e, "the scheduler did not take a job's cancel or clean-up");
            }
        });
    }
}

/// Whether the scheduler says job `job_id` ended (failed, as a cancelled job does, or
/// forgotten) within [`CANCEL_WAIT`].
async fn ended(scheduler: &mut SchedulerGrpcClient<Channel>, job_id: String) -> bool {
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    while tokio::time::Instant::now() < deadline {
        let status = scheduler
            .get_job_status(GetJobStatusParams {
                job_id: job_id.clone(),
            })
            .await
            .map(|answer| answer.into_inner().status.and_then(|s| s.status));
        match status {
            Ok(Some(job_status::Status::Failed(_)) | None) => return true,
            Ok(Some(job_status::Status::Successful(_))) => return false,
            Ok(_) => tokio::time::sleep(JOB_POLL * 5).await,
            Err(_) => return false,
        }
    }
    tracing::warn!("a cancelled job did not end on the scheduler");
    false
}

/// An error of the cluster's channels (logged by kind only, answered `internal_error`).
fn internal(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("{what}: {e}"))
}

impl ClusterClient {
    async fn run_job(
        &self,
        plan: ShippedPlan,
        settings: Vec<(String, Option<String>)>,
    ) -> Result<SendableRecordBatchStream> {
        let ShippedPlan { bytes, schema } = plan;
        let endpoint = Endpoint::from_shared(self.scheduler.clone())
            .map_err(|e| internal("scheduler address", e))?;
        let endpoint = (self.endpoint)(endpoint).map_err(|e| internal("scheduler endpoint", e))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| internal("scheduler connection", e))?;
        let mut scheduler = SchedulerGrpcClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let session = uuid::Uuid::new_v4().to_string();
        let mut request = tonic::Request::new(ExecuteQueryParams {
            session_id: session.clone(),
            settings: settings
                .into_iter()
                .map(|(key, value)| KeyValuePair { key, value })
                .collect(),
            operation_id: session,
            query: Some(Query::PhysicalPlan(bytes)),
        });
        ballista_core::version::insert_version_header(request.metadata_mut());
        let status = |e: tonic::Status| internal("scheduler", e);
        let submitted = scheduler
            .execute_query(request)
            .await
            .map_err(status)?
            .into_inner();
        let job_id = match submitted.result {
            Some(execute_query_result::Result::Success(success)) => success.job_id,
            other => return Err(internal("job refused", format!("{other:?}"))),
        };
        self.jobs.sent.fetch_add(1, Ordering::Relaxed);
        self.jobs.open.fetch_add(1, Ordering::Relaxed);
        let mut job = JobGuard {
            scheduler: scheduler.clone(),
            job_id: Some(job_id.clone()),
            on_drop: OnDrop::Cancel,
            jobs: self.jobs.clone(),
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
                    job.on_drop = OnDrop::Clean;
                    return Err(DataFusionError::Execution(failed.error));
                }
                _ => tokio::time::sleep(JOB_POLL).await,
            }
        };
        // Finished: once the answer is read (or abandoned), its files on the executors go.
        job.on_drop = OnDrop::Clean;
        let endpoint = Arc::new(BallistaConfigGrpcEndpoint::new(self.endpoint.clone()));
        let partitions = locations.into_iter().map(move |location| {
            futures::stream::once(fetch_partition(location, endpoint.clone())).try_flatten()
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(partitions)
                .flatten()
                // (The stream owns the guard: it is dropped with the stream.)
                .inspect(move |_| {
                    let _ = &job;
                }),
        )))
    }
}

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
    .map_err(|e| internal("executor connection", e))?;
    client
        .fetch_partition(
            &executor.id,
            &partition.into(),
            location.file_id,
            layout,
            true,
        )
        .await
        .map_err(|e| internal("partition fetch", e))
}
