//! Server: the HTTPS transport and the listeners. Routes, middleware, extractors, content
//! negotiation, streaming, and the one mapping from a `GatewayError` to an RFC 9457 answer
//! (`error`); the Flight SQL service (`flight`) is served on its own listener from here.
//!
//! Owns: TLS (rustls, HTTP/2 and HTTP/1.1, optional mutual TLS), request ids, body and time
//! limits, metrics and health endpoints, graceful shutdown. Each handler parses its request,
//! calls one `gateway` use case and encodes the outcome.
//!
//! Must never: make a security decision, build a session or SQL, write an audit record itself,
//! read tokens outside the `auth` extractor, import `engine`, `policy`, `lookup` or `audit`
//! (a test fails when it does: `architecture::the_layers_import_only_downwards`), or listen in
//! plain HTTP. It cannot start the demo's development issuer (that lives in `demo`, which
//! `serve` never calls).

mod admin;
mod auth;
mod body;
mod catalog;
pub mod console;
pub mod error;
mod health;
mod lookup;
pub mod middleware;
mod negotiate;
pub mod openapi;
mod query;
mod record;
mod source;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Authenticated;
pub use error::ApiError;

use crate::config::ServerConfig;
use crate::gateway::Gateway;

/// Everything a handler may use; one documented field per dependency.
pub struct App {
    /// The hub's use cases (every decision, every audit record).
    pub gateway: Arc<Gateway>,
    /// Prometheus exposition, if the recorder could be installed.
    pub metrics: Option<PrometheusHandle>,
    /// Set when a graceful shutdown starts: readiness drops so load balancers stop sending.
    shutting_down: AtomicBool,
    /// Reverse proxies whose `Forwarded` header names the client (`server.trusted_proxies`).
    proxies: Vec<ipnet::IpNet>,
    /// The operators' console (`[console]`), when configured.
    pub console: Option<Arc<console::Console>>,
}

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let proxies = gateway.config().server.proxy_networks();
        let console = console::Console::of(&gateway);
        Self {
            console,
            gateway,
            metrics: crate::telemetry::metrics_handle(),
            shutting_down: AtomicBool::new(false),
            proxies,
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn server(&self) -> &ServerConfig {
        &self.gateway.config().server
    }
}

/// Every route of the main listener, each with its `#[utoipa::path]` description: a route
/// cannot be served without being in the published document ([`openapi::document`]).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(health::operators_metrics))
        .routes(routes!(health::details))
        .routes(routes!(catalog::me))
        .routes(routes!(catalog::datasets))
        .routes(routes!(catalog::table))
        .routes(routes!(query::query))
        .routes(routes!(lookup::lookup))
        .routes(routes!(lookup::lookup_batch))
        .routes(routes!(admin::policy))
        .routes(routes!(admin::versions, admin::submit))
        .routes(routes!(admin::apply))
        .routes(routes!(admin::approve))
        .routes(routes!(admin::rollback))
        .routes(routes!(admin::explain))
        .routes(routes!(admin::journal))
        .routes(routes!(admin::audit_query))
}

/// The router with every route and middleware, without a socket (tests can `oneshot` it).
pub fn app(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.server().request_timeout_secs);
    let max_body = state.server().max_body_bytes;
    let (router, _) = routes().split_for_parts();
    // The console's pages are not API operations: outside the OpenAPI document, and only
    // when `[console]` is set.
    let router = if state.console.is_some() {
        router.merge(console::routes())
    } else {
        router
    };
    router
        .fallback(middleware::fallback)
        .with_state(state.clone())
        // Layers run bottom-up on the request: the last added is the outermost.
        // gzip or zstd when the client asks (`Accept-Encoding`); Parquet is compressed already.
        // Not below 1 KiB (a lookup's record): setting up a gzip stream (256 KiB of zlib
        // state) cost more than the whole lookup, for a few dozen bytes saved.
        .layer(
            CompressionLayer::new().gzip(true).zstd(true).compress_when(
                SizeAbove::new(1024)
                    .and(NotForContentType::GRPC)
                    .and(NotForContentType::IMAGES)
                    .and(NotForContentType::SSE)
                    .and(NotForContentType::const_new(
                        "application/vnd.apache.parquet",
                    )),
            ),
        )
        .layer(RequestBodyLimitLayer::new(max_body))
        // Inside the request-id layer (it needs the id) and outside the handlers: it sees each
        // handler's `ApiError` before the problem is rendered.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record::audit_trail,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_to_problem))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(
            middleware::request_id_and_problems,
        ))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            middleware::drain_unread_body,
        ))
        // SECURITY: marks `Authorization` sensitive for every layer that might print headers.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

/// A server started in the background; stop it with [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The metrics listener's address, when one is open (`server.metrics_listen`).
    pub metrics_addr: Option<SocketAddr>,
    /// The Flight SQL listener's address, when one is open (`flight.listen`).
    pub flight_addr: Option<SocketAddr>,
    state: AppState,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: Option<Handle<SocketAddr>>,
    flight: Option<ServingListener>,
}

impl RunningServer {
    /// The hub's use cases (tests observe the pseudonymised extracts through them).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.state.gateway
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish within `grace`.
    pub async fn shutdown(self, grace: Duration) -> std::io::Result<()> {
        self.state.shutting_down.store(true, Ordering::Release);
        if let Some(metrics) = &self.metrics {
            metrics.shutdown();
        }
        self.handle.graceful_shutdown(Some(grace));
        if let Some(flight) = &self.flight {
            flight.handle.graceful_shutdown(Some(grace));
        }
        let served = match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if let Some(flight) = self.flight {
            let _ = flight.task.await;
        }
        // The last window's refusal counts, once no request can add to them.
        self.state.gateway.flush_refusal_summaries().await;
        served
    }

    /// Stops at once, dropping connections (tests' `Drop`; use `shutdown` to be graceful).
    pub fn stop_now(&self) {
        self.state.shutting_down.store(true, Ordering::Release);
        if let Some(metrics) = &self.metrics {
            metrics.shutdown();
        }
        if let Some(flight) = &self.flight {
            flight.handle.shutdown();
        }
        self.handle.shutdown();
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.state.server().shutdown_grace_secs);
        shutdown_signal().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing requests in flight"
        );
        self.shutdown(grace).await
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// The metrics listener's router: `GET /metrics` and nothing else.
fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(middleware::fallback)
        .with_state(state)
        .layer(axum::middleware::from_fn(
            middleware::request_id_and_problems,
        ))
}

/// Serves `router` over HTTPS on `addr` in the background.
fn serve(
    addr: SocketAddr,
    tls: &Arc<rustls::ServerConfig>,
    router: Router,
) -> Result<ServingListener, ServerError> {
    let bind_error = |reason: String| ServerError::Bind { addr, reason };
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| bind_error(e.kind().to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| bind_error(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| bind_error(e.to_string()))?;
    let handle = Handle::new();
    // TCP_NODELAY: a gRPC answer goes out in several small writes (headers, data, trailers),
    // and Nagle's algorithm held the last behind the client's delayed ACK: about 45 ms a call,
    // 92 ms for a two-call Flight SQL query against 4.7 ms with it off (docs/benchmarks.md).
    let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls.clone()))
        .map_err(|e| bind_error(e.to_string()))?
        .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
        .handle(handle.clone());
    let task = tokio::spawn(async move {
        server
            .serve(router.into_make_service_with_connect_info::<SocketAddr>())
            .await
    });
    Ok(ServingListener {
        addr: local,
        handle,
        task,
    })
}

struct ServingListener {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds the HTTPS listener (and the metrics listener, if any) and serves in the background.
pub async fn start(state: AppState) -> Result<RunningServer, ServerError> {
    let server = state.server();
    let tls = Arc::new(tls::server_config(
        &server.tls_cert,
        &server.tls_key,
        server.client_ca.as_deref(),
    )?);
    let metrics = match server.metrics_listen {
        Some(addr) => Some(serve(addr, &tls, metrics_app(state.clone()))?),
        None => None,
    };
    let main = match serve(server.listen, &tls, app(state.clone())) {
        Ok(main) => main,
        Err(e) => {
            if let Some(metrics) = &metrics {
                metrics.handle.shutdown();
            }
            return Err(e);
        }
    };
    // Flight SQL: gRPC (HTTP/2) on its own address, with the same TLS and client CAs.
    let flight = match state.gateway.config().flight.listen {
        Some(addr) => match crate::flight::router(state.gateway.clone())
            .map_err(|reason| ServerError::Bind { addr, reason })
            .and_then(|router| serve(addr, &tls, router))
        {
            Ok(flight) => Some(flight),
            Err(e) => {
                main.handle.shutdown();
                if let Some(metrics) = &metrics {
                    metrics.handle.shutdown();
                }
                return Err(e);
            }
        },
        None => None,
    };
    tracing::info!(address = %main.addr, "listening (HTTPS: HTTP/2 and HTTP/1.1)");
    if let Some(metrics) = &metrics {
        tracing::info!(address = %metrics.addr, "metrics listening (HTTPS, GET /metrics)");
    }
    if let Some(flight) = &flight {
        tracing::info!(address = %flight.addr, "Flight SQL listening (gRPC over TLS)");
    }
    Ok(RunningServer {
        addr: main.addr,
        metrics_addr: metrics.as_ref().map(|m| m.addr),
        flight_addr: flight.as_ref().map(|f| f.addr),
        flight,
        state,
        handle: main.handle,
        task: main.task,
        metrics: metrics.map(|m| m.handle),
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
