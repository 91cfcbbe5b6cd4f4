//! `passerelle executor`: Ballista's executor inside passerelle, every channel mutual TLS.
//!
//! It polls the scheduler for tasks (no task server of its own: Ballista's push mode would
//! open one in clear), decodes them with the engine's plan codec (secure scans, masks with the
//! plan's pseudonymisation domains, bounded functions), calls only the hub's bounded functions
//! (its function registry holds nothing else), and serves its shuffle files over Arrow Flight
//! to gateways and executors only.
//!
//! On a bucket (`data.url`), it reads the objects of a shipped scan with its own credentials,
//! at the versions the gateway planned on only (`engine::pinned_scan`).
//!
//! Must never: accept a Flight call from a peer without a gateway's or executor's certificate,
//! connect anywhere in clear, or hold the master key (a plan brings the keyed states of its own
//! domains only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::shutdown::Shutdown;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use super::tls::{ClusterTls, Role, peer_has_role};
use crate::config::Config;

/// Where an executor listens and works.
#[derive(Debug, Clone)]
pub struct ExecutorPlace {
    /// Its Flight listener (a real port: it is told to the scheduler).
    pub listen: SocketAddr,
    /// The name or address others reach it by (`None`: the listener's address).
    pub advertise: Option<String>,
    /// Its shuffle files (made 0700).
    pub work_dir: PathBuf,
    /// Its name on the cluster.
    pub id: String,
}

/// Runs an executor until the scheduler stops it or the process gets a signal.
pub async fn run(config: &Config, place: ExecutorPlace) -> Result<(), String> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or("the executor needs a [cluster] section")?;
    let tls = ClusterTls::load(cluster)?;
    let (scheduler_host, scheduler_port) = cluster
        .scheduler_host_port()
        .ok_or("cluster.scheduler: must be https://host:port")?;
    crate::private_fs::create_dir_all(&place.work_dir)
        .map_err(|e| format!("{}: {e}", place.work_dir.display()))?;
    let max_value_bytes = config.limits.max_value_bytes;
    // The hub's bucket (`data.url`, with this node's own credentials), which shipped scans
    // read at the versions their gateway planned on; none: the datasets are files this node
    // reads at the gateways' paths.
    let bucket = crate::storage::ObjectData::open(&config.data).map_err(|e| e.to_string())?;
    let endpoint = tls.endpoint_override();
    let server_tls = tls.server();
    let flight = move |work_dir: String,
                       address: SocketAddr,
                       mut shutdown: Shutdown,
                       grpc: GrpcServerConfig| {
        let server_tls = server_tls.clone();
        tokio::spawn(async move {
            // SECURITY: shuffle files (rows already past their masks) go to gateways and
            // executors only, over mutual TLS.
            let gate = |request: Request<()>| {
                if peer_has_role(&request, Role::Gateway) || peer_has_role(&request, Role::Executor)
                {
                    Ok(request)
                } else {
                    Err(Status::permission_denied(
                        "this call is not open to this node",
                    ))
                }
            };
            create_grpc_server(&grpc)
                .tls_config(server_tls)
                .map_err(BallistaError::TonicError)?
                .add_service(InterceptedService::new(
                    FlightServiceServer::new(BallistaFlightService::new(work_dir))
                        .max_decoding_message_size(64 * 1024 * 1024)
                        .max_encoding_message_size(64 * 1024 * 1024),
                    gate,
                ))
                .serve_with_shutdown(address, shutdown.recv())
                .await
                .map_err(BallistaError::TonicError)
        })
    };
    let options = ExecutorProcessConfig {
        executor_id: place.id.clone(),
        bind_host: place.listen.ip().to_string(),
        external_host: Some(
            place
                .advertise
                .clone()
                .unwrap_or_else(|| place.listen.ip().to_string()),
        ),
        port: place.listen.port(),
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: Some(place.work_dir.to_string_lossy().into_owned()),
        memory_pool_size: Some(cluster.executor_memory_mb * 1024 * 1024),
        override_function_registry: Some(Arc::new(crate::engine::cluster_function_registry())),
        override_config_producer: Some({
            let endpoint = endpoint.clone();
            Arc::new(move || {
                crate::engine::cluster_session_config(max_value_bytes, endpoint.clone())
            })
        }),
        override_physical_codec: Some(Arc::new(crate::engine::PlanCodec::for_executor(bucket))),
        // SECURITY (fail closed): a scan of the bucket reads nothing unless a pinned scan
        // above it gives its versions (`engine::cluster_runtime`).
        override_runtime_producer: Some({
            let work_dir = place.work_dir.clone();
            Arc::new(move |_| crate::engine::cluster_runtime(Some(&work_dir)))
        }),
        // SECURITY (availability): the scheduler cannot stop a pull-mode executor's running
        // task; each stops at the query's time limit.
        override_execution_engine: Some(Arc::new(super::deadline::DeadlineEngine::new(
            std::time::Duration::from_secs(config.limits.query_timeout_secs),
        ))),
        // Shuffle files a job left (cancelled, or the executor restarted) go within an hour.
        job_data_ttl_seconds: 3600,
        job_data_clean_up_interval_seconds: 300,
        override_arrow_flight_service: Some(Arc::new(flight)),
        override_create_grpc_client_endpoint: Some(endpoint),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(id = %place.id, listen = %place.listen, "cluster executor starting (mutual TLS)");
    start_executor_process(Arc::new(options))
        .await
        .map_err(|e| format!("executor: {e}"))
}
