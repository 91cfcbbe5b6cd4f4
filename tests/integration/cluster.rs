//! The cluster's internal channels (issue #24): every one is mutual TLS with the cluster's own
//! authority, and a peer's role (a name in its certificate) decides what it may call. The
//! scheduler takes jobs only as physical plans and only from gateways, executor calls only from
//! executors; an executor serves its shuffle files to gateways and executors only.
//! (The engine's answers and attacks on the cluster are in `tpch` and `attacks::*::on_a_cluster`.)

use std::path::Path;

use arrow_flight::Criteria;
use arrow_flight::flight_service_client::FlightServiceClient;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{ExecuteQueryParams, GetJobStatusParams, PollWorkParams};
use passerelle::cluster::local::LocalCluster;
use passerelle::cluster::tls::ClusterTls;
use passerelle::config::ClusterConfig;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The cluster's `[cluster]` for the node whose files in `dir` are called `name`.
fn as_node(cluster: &LocalCluster, dir: &Path, name: &str) -> ClusterConfig {
    ClusterConfig {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ..cluster.gateway.clone()
    }
}

/// A channel to `url` with `node`'s identity (through the same hook Ballista uses).
async fn channel_as(node: &ClusterConfig, url: &str) -> Result<Channel, String> {
    let tls = ClusterTls::load(node)?;
    let endpoint = (tls.endpoint_override())(Endpoint::from_shared(url.to_string()).unwrap())
        .map_err(|e| e.to_string())?;
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// Does a scheduler answer on `channel` (a connection that may fail at its first call)?
async fn answers(channel: Result<Channel, impl std::fmt::Debug>) -> bool {
    let Ok(channel) = channel else {
        return false;
    };
    SchedulerGrpcClient::new(channel)
        .get_job_status(GetJobStatusParams {
            job_id: "none".into(),
        })
        .await
        .is_ok()
}

/// `answer` must be a refusal of the gate (permission denied).
fn assert_denied<T: std::fmt::Debug>(answer: Result<T, tonic::Status>) {
    let refused = answer.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

fn job(query: Option<Query>) -> ExecuteQueryParams {
    ExecuteQueryParams {
        session_id: "s".into(),
        settings: Vec::new(),
        operation_id: "o".into(),
        query,
    }
}

#[tokio::test]
async fn the_scheduler_takes_physical_plans_from_gateways_only_and_executor_calls_from_executors() {
    let work = tempfile::tempdir().unwrap();
    let cluster = crate::support::local_cluster(work.path(), 1);
    let dir = work.path().join("cluster");
    let url = cluster.gateway.scheduler.clone();

    let mut gateway = SchedulerGrpcClient::new(channel_as(&cluster.gateway, &url).await.unwrap());
    // SECURITY: SQL-free as they are, a logical or Substrait plan would be planned on the
    // scheduler, around the gateway's secure scans: refused before anything is decoded.
    for query in [
        Some(Query::LogicalPlan(vec![1, 2, 3])),
        Some(Query::SubstraitPlan(vec![1, 2, 3])),
        None,
    ] {
        let refused = gateway.execute_query(job(query.clone())).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{query:?}: {refused:?}"
        );
        assert_denied(gateway.execute_query_push(job(query)).await);
    }
    // A gateway is not an executor: it gets no task.
    assert_denied(gateway.poll_work(PollWorkParams::default()).await);
    // What a gateway may ask passes the gate (an unknown job is the scheduler's own answer).
    let status = gateway
        .get_job_status(GetJobStatusParams {
            job_id: "none".into(),
        })
        .await;
    assert!(
        status
            .as_ref()
            .err()
            .is_none_or(|s| s.code() != Code::PermissionDenied),
        "{status:?}"
    );

    // An executor may not submit a job, even a physical plan, nor read a job's status.
    let executor = as_node(&cluster, &dir, "executor-1");
    let mut as_executor = SchedulerGrpcClient::new(channel_as(&executor, &url).await.unwrap());
    assert_denied(
        as_executor
            .execute_query(job(Some(Query::PhysicalPlan(vec![1]))))
            .await,
    );
    assert_denied(
        as_executor
            .get_job_status(GetJobStatusParams {
                job_id: "none".into(),
            })
            .await,
    );

    // The scheduler's own certificate is neither.
    let scheduler = as_node(&cluster, &dir, "scheduler");
    let mut as_scheduler = SchedulerGrpcClient::new(channel_as(&scheduler, &url).await.unwrap());
    assert_denied(
        as_scheduler
            .execute_query(job(Some(Query::PhysicalPlan(vec![1]))))
            .await,
    );
}

#[tokio::test]
async fn no_peer_without_a_certificate_of_the_cluster_authority_reaches_a_node() {
    let work = tempfile::tempdir().unwrap();
    let cluster = crate::support::local_cluster(work.path(), 1);
    let url = cluster.gateway.scheduler.clone();
    let executor_url = format!("https://{}", cluster.executors[0]);

    // In clear: no answer.
    let plain = Endpoint::from_shared(url.replace("https://", "http://"))
        .unwrap()
        .connect()
        .await;
    assert!(!answers(plain).await, "the scheduler answered in clear");

    // TLS trusting the cluster, but no client certificate: no answer.
    let ca = std::fs::read(&cluster.gateway.ca).unwrap();
    for target in [&url, &executor_url] {
        let anonymous = Endpoint::from_shared(target.clone())
            .unwrap()
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)))
            .unwrap()
            .connect()
            .await;
        assert!(
            !answers(anonymous).await,
            "{target} answered a peer without a certificate"
        );
    }

    // A gateway certificate of another authority: no answer either.
    let other = tempfile::tempdir().unwrap();
    let files = passerelle::cluster::pki::write(&other.path().join("pki"), 1, &[]).unwrap();
    let stranger = ClusterConfig {
        cert: files.gateway.cert.clone(),
        key: files.gateway.key.clone(),
        ..cluster.gateway.clone()
    };
    assert!(
        !answers(channel_as(&stranger, &url).await).await,
        "the scheduler answered a stranger's certificate"
    );
    // (The same call with the cluster's own gateway certificate is answered.)
    assert!(answers(channel_as(&cluster.gateway, &url).await).await);

    // A client expects the role it dials: the scheduler's certificate is no executor's (an
    // executor's key could not pose as the scheduler either).
    let expects_executor = ClusterConfig {
        scheduler: "https://127.0.0.1:1".into(),
        ..cluster.gateway.clone()
    };
    assert!(
        !answers(channel_as(&expects_executor, &url).await).await,
        "a scheduler was taken for an executor"
    );

    // An executor's shuffle files: to gateways and executors, not to the scheduler's identity.
    let scheduler = as_node(&cluster, &work.path().join("cluster"), "scheduler");
    let mut flight = FlightServiceClient::new(channel_as(&scheduler, &executor_url).await.unwrap());
    assert_denied(flight.list_flights(Criteria::default()).await.map(|_| ()));
    let mut flight =
        FlightServiceClient::new(channel_as(&cluster.gateway, &executor_url).await.unwrap());
    let answer = flight.list_flights(Criteria::default()).await.map(|_| ());
    assert!(
        answer
            .as_ref()
            .err()
            .is_none_or(|s| s.code() != Code::PermissionDenied),
        "{answer:?}"
    );
}

/// A runaway query on the cluster stops (issue #24): in Ballista's pull mode the scheduler
/// cannot stop a running task, so each task stops at its executor's own
/// `limits.query_timeout_secs`; the gateway answers `query_timeout` (not a memory refusal,
/// not an internal error) long before its own, much later, deadline, and the cluster then
/// answers the next query.
#[tokio::test]
async fn a_runaway_query_stops_on_the_executors_at_their_own_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let executor_deadline = [(
        "PASSERELLE_LIMITS__QUERY_TIMEOUT_SECS".to_string(),
        "2".to_string(),
    )];
    let cluster = crate::support::local_cluster_with(dir.path(), 1, &executor_deadline);
    let gateway = crate::support::DemoServer::start_with(|c| {
        c.cluster = Some(cluster.gateway.clone());
        c.limits.cheap_query_input_mb = 0;
        c.limits.query_timeout_secs = 300;
    })
    .await;
    let token = gateway.token("chercheur-emploi");
    let query = |sql: &'static str| {
        gateway
            .server
            .client
            .post(gateway.server.url("/v1/query"))
            .bearer_auth(token.clone())
            .json(&serde_json::json!({ "sql": sql }))
            .send()
    };
    let started = std::time::Instant::now();
    let answer = query(
        "SELECT count(*) FROM sante.sejours a, sante.sejours b, sante.sejours c, \
         sante.sejours d, sante.sejours e",
    )
    .await
    .unwrap();
    let status = answer.status().as_u16();
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("query_timeout")),
        "{body}"
    );
    // (Not a timing test: the bound is the gateway's own deadline, 300 s, never reached.)
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
    let answer = query("SELECT count(*) AS n FROM sante.sejours")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the cluster answers again");
}

/// A caller that goes away cancels its job on the scheduler (issue #24): a runaway query on
/// the cluster whose client leaves before any answer (an HTTP/2 stream reset when its client's
/// time runs out) is cancelled by the gateway, and the scheduler ends it: the gateway's
/// operators' view counts it (`queries.cluster_jobs`: a job is counted cancelled only once the
/// scheduler reports it ended), nothing stays open, and the cluster answers the next query.
#[tokio::test]
async fn a_caller_that_goes_away_cancels_its_job_on_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = crate::support::local_cluster(dir.path(), 1);
    let gateway = crate::support::DemoServer::start_with(|c| {
        c.cluster = Some(cluster.gateway.clone());
        c.limits.cheap_query_input_mb = 0;
        c.limits.query_timeout_secs = 600;
    })
    .await;
    let token = gateway.token("chercheur-emploi");
    let jobs = || gateway.server.readiness()["checks"]["queries"]["cluster_jobs"].clone();
    assert_eq!(jobs()["cancelled"], 0, "{}", jobs());
    let impatient = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&crate::support::hub().ca_pem()).unwrap(),
        )
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .unwrap();
    let left = impatient
        .post(gateway.server.url("/v1/query"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({ "sql": "SELECT count(*) FROM sante.sejours a, sante.sejours b, \
                                         sante.sejours c, sante.sejours d, sante.sejours e" }),
        )
        .send()
        .await;
    assert!(left.is_err(), "the client left before any answer");
    assert_eq!(jobs()["sent"], 1, "{}", jobs());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while jobs()["cancelled"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job was not cancelled and ended on the scheduler: {}",
            jobs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(jobs()["open"], 0, "{}", jobs());
    let answer = gateway
        .server
        .client
        .post(gateway.server.url("/v1/query"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "sql": "SELECT count(*) AS n FROM sante.sejours" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the cluster answers again");
}
