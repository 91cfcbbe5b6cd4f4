//! `passerelle scheduler`: Ballista's scheduler, served by passerelle behind mutual TLS and a
//! gate on who may call what.
//!
//! Ballista's own scheduler server accepts SQL, logical and Substrait plans from whoever
//! reaches its port, in clear, and serves a REST API and a Flight proxy beside. Here only its
//! gRPC service runs, on a TLS listener that requires a certificate of the cluster's authority,
//! and [`GatedScheduler`] lets through:
//! - from a gateway's certificate: a job given as a physical plan (nothing else: no SQL, no
//!   logical or Substrait plan), its status, its metrics, its cancellation, its sessions;
//! - from an executor's certificate: registration, polling for tasks, heartbeats, task
//!   status and its own stop.
//!
//! Plans are decoded with the engine's plan codec (secure scans, masks, bounded functions), in
//! sessions of the engine's own configuration (`engine::cluster_session_config`).
//!
//! Must never: accept a job that is not a physical plan from a gateway, serve without TLS,
//! or run a REST API, Flight SQL or Flight proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_server::{SchedulerGrpc, SchedulerGrpcServer};
use ballista_core::serde::protobuf::{
    CancelJobParams, CancelJobResult, CleanJobDataParams, CleanJobDataResult,
    CreateUpdateSessionParams, CreateUpdateSessionResult, ExecuteQueryParams, ExecuteQueryResult,
    ExecutorStoppedParams, ExecutorStoppedResult, GetJobMetricsParams, GetJobMetricsResult,
    GetJobStatusParams, GetJobStatusResult, HeartBeatParams, HeartBeatResult, PollWorkParams,
    PollWorkResult, RegisterExecutorParams, RegisterExecutorResult, RemoveSessionParams,
    RemoveSessionResult, UpdateTaskStatusParams, UpdateTaskStatusResult,
};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tonic::{Request, Response, Status};

use super::tls::{ClusterTls, Role, peer_has_role};
use crate::config::Config;

type Inner = SchedulerServer<LogicalPlanNode, PhysicalPlanNode>;

/// Ballista's scheduler service behind the role gate.
#[derive(Clone)]
pub struct GatedScheduler {
    inner: Inner,
}

fn only<T>(request: &Request<T>, role: Role) -> Result<(), Status> {
    // SECURITY: the TLS handshake checked the certificate against the cluster's authority;
    // here its role decides which calls it may make.
    if peer_has_role(request, role) {
        Ok(())
    } else {
        tracing::warn!(
            expected = role.dns_name(),
            "a cluster call from the wrong role refused"
        );
        Err(Status::permission_denied(
            "this call is not open to this node",
        ))
    }
}

fn physical_job_only(request: &Request<ExecuteQueryParams>) -> Result<(), Status> {
    only(request, Role::Gateway)?;
    // SECURITY: executors run only plans a gateway built, secure scans inside: a job given as
    // SQL, a logical or a Substrait plan would be planned here, around every policy.
    match request.get_ref().query {
        Some(Query::PhysicalPlan(_)) => Ok(()),
        _ => {
            tracing::warn!("a job that is not a physical plan refused");
            Err(Status::permission_denied(
                "the cluster runs physical plans built by a gateway only",
            ))
        }
    }
}

#[tonic::async_trait]
impl SchedulerGrpc for GatedScheduler {
    async fn poll_work(
        &self,
        request: Request<PollWorkParams>,
    ) -> Result<Response<PollWorkResult>, Status> {
        only(&request, Role::Executor)?;
        SchedulerGrpc::poll_work(&self.inner, request).await
    }

    async fn register_executor(
        &self,
        request: Request<RegisterExecutorParams>,
    ) -> Result<Response<RegisterExecutorResult>, Status> {
        only(&request, Role::Executor)?;
        SchedulerGrpc::register_executor(&self.inner, request).await
    }

    async fn heart_beat_from_executor(
        &self,
        request: Request<HeartBeatParams>,
    ) -> Result<Response<HeartBeatResult>, Status> {
        only(&request, Role::Executor)?;
        SchedulerGrpc::heart_beat_from_executor(&self.inner, request).await
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusParams>,
    ) -> Result<Response<UpdateTaskStatusResult>, Status> {
        only(&request, Role::Executor)?;
        SchedulerGrpc::update_task_status(&self.inner, request).await
    }

    async fn create_update_session(
        &self,
        request: Request<CreateUpdateSessionParams>,
    ) -> Result<Response<CreateUpdateSessionResult>, Status> {
        only(&request, Role::Gateway)?;
        SchedulerGrpc::create_update_session(&self.inner, request).await
    }

    async fn remove_session(
        &self,
        request: Request<RemoveSessionParams>,
    ) -> Result<Response<RemoveSessionResult>, Status> {
        only(&request, Role::Gateway)?;
        SchedulerGrpc::remove_session(&self.inner, request).await
    }

    type ExecuteQueryPushStream = <Inner as SchedulerGrpc>::ExecuteQueryPushStream;

    async fn execute_query_push(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<Self::ExecuteQueryPushStream>, Status> {
        physical_job_only(&request)?;
        SchedulerGrpc::execute_query_push(&self.inner, request).await
    }

    async fn execute_query(
        &self,
        request: Request<ExecuteQueryParams>,
    ) -> Result<Response<ExecuteQueryResult>, Status> {
        physical_job_only(&request)?;
        SchedulerGrpc::execute_query(&self.inner, request).await
    }

    async fn get_job_status(
        &self,
        request: Request<GetJobStatusParams>,
    ) -> Result<Response<GetJobStatusResult>, Status> {
        only(&request, Role::Gateway)?;
        SchedulerGrpc::get_job_status(&self.inner, request).await
    }

    async fn get_job_metrics(
        &self,
        request: Request<GetJobMetricsParams>,
    ) -> Result<Response<GetJobMetricsResult>, Status> {
        only(&request, Role::Gateway)?;
        SchedulerGrpc::get_job_metrics(&self.inner, request).await
    }

    async fn executor_stopped(
        &self,
        request: Request<ExecutorStoppedParams>,
    ) -> Result<Response<ExecutorStoppedResult>, Status> {
        only(&request, Role::Executor)?;
        SchedulerGrpc::executor_stopped(&self.inner, request).await
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobParams>,
    ) -> Result<Response<CancelJobResult>, Status> {
        only(&request, Role::Gateway)?;
        SchedulerGrpc::cancel_job(&self.inner, request).await
    }

    async fn clean_job_data(
        &self,
        request: Request<CleanJobDataParams>,
    ) -> Result<Response<CleanJobDataResult>, Status> {
        only(&request, Role::Gateway)?;
        SchedulerGrpc::clean_job_data(&self.inner, request).await
    }
}

/// Runs the scheduler on `listener` until `shutdown` completes.
pub async fn run(
    config: &Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or("the scheduler needs a [cluster] section")?;
    let tls = ClusterTls::load(cluster)?;
    let address: SocketAddr = listener
        .local_addr()
        .map_err(|e| format!("scheduler listener: {e}"))?;
    let max_value_bytes = config.limits.max_value_bytes;
    let endpoint = tls.endpoint_override();
    let scheduler_config = SchedulerConfig {
        bind_host: address.ip().to_string(),
        external_host: address.ip().to_string(),
        bind_port: address.port(),
        // Executors poll: no scheduler → executor channel exists (Ballista's push mode
        // would open one to a gRPC server of each executor, in clear).
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        override_physical_codec: Some(Arc::new(crate::engine::PlanCodec::default())),
        // SECURITY: the scheduler reads no data (scans of the bucket decode against a store
        // that refuses every call).
        override_session_builder: Some(Arc::new(crate::engine::scheduler_session)),
        override_config_producer: Some({
            let endpoint = endpoint.clone();
            Arc::new(move || {
                crate::engine::cluster_session_config(max_value_bytes, endpoint.clone())
            })
        }),
        override_create_grpc_client_endpoint: Some(endpoint),
        use_tls: true,
        // A finished job's files go when its gateway has read the answer (`clean_job_data`),
        // at the latest ten minutes after it ended; its state after ten minutes too.
        finished_job_data_clean_up_interval_seconds: 600,
        finished_job_state_clean_up_interval_seconds: 600,
        enable_embedded_flight_proxy: false,
        ..SchedulerConfig::default()
    };
    let ballista = BallistaCluster::new_from_config(&scheduler_config)
        .await
        .map_err(|e| format!("scheduler state: {e}"))?;
    let inner: Inner = ballista_scheduler::scheduler_process::create_scheduler(
        ballista,
        Arc::new(scheduler_config),
    )
    .await
    .map_err(|e| format!("scheduler: {e}"))?;
    tracing::info!(%address, "cluster scheduler listening (mutual TLS)");
    tonic::transport::Server::builder()
        .tls_config(tls.server())
        .map_err(|e| format!("scheduler TLS: {e}"))?
        .add_service(
            SchedulerGrpcServer::new(GatedScheduler { inner })
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
        .map_err(|e| format!("scheduler: {e}"))
}
