//! Telemetry: tracing logs (human on a terminal, JSON lines for collectors) and the Prometheus
//! metrics recorder.
//!
//! Owns: the log format, the log filter (`RUST_LOG`, default [`DEFAULT_FILTER`]: `info`, Ballista's crates off), the process-wide metrics
//! recorder and the names of the metrics that the server exports.
//!
//! Must never: log tokens, keys, raw identifiers or result values. Fields logged elsewhere go
//! through `tracing` with explicit names; nothing here formats request bodies or headers.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The log filter without `RUST_LOG`.
pub const DEFAULT_FILTER: &str =
    "info,ballista_scheduler=off,ballista_executor=off,ballista_core=off";

/// Starts logging to stderr. Safe to call more than once (later calls do nothing).
pub fn init_logging(format: LogFormat) {
    // SECURITY: Ballista logs every submitted plan at `info`, with the query's literals (an
    // identifier a researcher filters on), and a failed task's error text at `error` (it may
    // quote a value): its crates log nothing unless `RUST_LOG` asks.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE)
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
///
/// `None` only if another metrics recorder was installed first (then `/metrics` says so).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            describe_metrics();
            Some(handle)
        })
        .clone()
}

/// Metric names, in one place so that dashboards and docs can rely on them.
pub mod names {
    pub const HTTP_REQUESTS: &str = "passerelle_http_requests_total";
    pub const HTTP_DURATION: &str = "passerelle_http_request_duration_seconds";
    pub const HTTP_IN_FLIGHT: &str = "passerelle_http_requests_in_flight";
    pub const AUTH_FAILURES: &str = "passerelle_auth_failures_total";
    pub const READY: &str = "passerelle_ready";
    pub const BUILD_INFO: &str = "passerelle_build_info";
    /// Counted by the engine (which names it itself: it may not import this module).
    pub const CLUSTER_QUERIES: &str = "passerelle_cluster_queries_total";
    /// Counted by the cluster's client (`cluster::client`).
    pub const CLUSTER_JOBS_CANCELLED: &str = "passerelle_cluster_jobs_cancelled_total";
}

fn describe_metrics() {
    metrics::describe_counter!(
        names::CLUSTER_QUERIES,
        "Queries whose plan this gateway sent to the cluster ([cluster]), answered or failed there"
    );
    metrics::describe_counter!(
        names::CLUSTER_JOBS_CANCELLED,
        "Jobs this gateway cancelled on the cluster because nobody waited for them any more (the caller went away, or the query's time ran out), and the scheduler then ended"
    );
    metrics::describe_counter!(
        names::HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    metrics::describe_histogram!(
        names::HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time from request received to response headers, by route template"
    );
    metrics::describe_gauge!(names::HTTP_IN_FLIGHT, "Requests being served");
    metrics::describe_counter!(
        names::AUTH_FAILURES,
        "Bearer tokens refused, by reason (the reason is never sent to the client)"
    );
    metrics::describe_gauge!(names::READY, "1 when the hub is ready to serve, else 0");
    metrics::describe_gauge!(names::BUILD_INFO, "Always 1; labels carry the version");
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
