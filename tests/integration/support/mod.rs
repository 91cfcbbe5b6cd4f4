//! Shared test support: one demo hub generated once per test run, a `TestServer` that runs the
//! real gateway over HTTPS on a free loopback port (stopped on drop), and HTTPS clients that
//! trust the hub's demo CA.

pub mod child;
pub mod flight;
pub mod issuer;
pub mod moto;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use passerelle::config::{Config, IssuerConfig};
use passerelle::demo::HubLayout;
use passerelle::server::RunningServer;

/// Rows of the shared test hub (small: tests check behaviour, benchmarks check speed).
pub const TEST_ROWS: u64 = 2_000;
pub const TEST_SEED: u64 = 7;

pub struct SharedHub {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

static HUB: OnceLock<SharedHub> = OnceLock::new();

/// The demo hub shared by every test (generated on first use).
pub fn hub() -> &'static SharedHub {
    HUB.get_or_init(|| {
        passerelle::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hub");
        passerelle::demo::hub::ensure(&root, TEST_ROWS, TEST_SEED, false).unwrap();
        // Many servers of this hub run at once (in process, and as children that copy it):
        // each metrics listener takes a free port.
        let config = HubLayout::new(&root).config();
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace(
            "metrics_listen = \"127.0.0.1:9464\"",
            "metrics_listen = \"127.0.0.1:0\"",
        );
        assert!(text.contains("metrics_listen = \"127.0.0.1:0\""));
        std::fs::write(&config, text).unwrap();
        SharedHub { _dir: dir, root }
    })
}

/// A scheduler and `executors` executors of the test binary's passerelle, on loopback, with
/// their certificates and work folders in `dir`, for the shared hub.
pub fn local_cluster(
    dir: &std::path::Path,
    executors: usize,
) -> passerelle::cluster::local::LocalCluster {
    local_cluster_with(dir, executors, &[])
}

/// [`local_cluster`], each executor given the `PASSERELLE_…` overrides of `env` (e.g. the
/// bucket it reads).
pub fn local_cluster_with(
    dir: &std::path::Path,
    executors: usize,
    env: &[(String, String)],
) -> passerelle::cluster::local::LocalCluster {
    let binary = child::binary();
    passerelle::cluster::local::LocalCluster::start_with(
        std::path::Path::new(&binary),
        &hub().layout().config(),
        &dir.join("cluster"),
        executors,
        512,
        env,
    )
    .unwrap()
}

impl SharedHub {
    pub fn layout(&self) -> HubLayout {
        HubLayout::new(&self.root)
    }

    /// The hub's configuration, listening on a free loopback port, with fast key refresh.
    pub fn config(&self) -> Config {
        let mut config = Config::load(&self.layout().config()).unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        // Each server keeps its own policy history (many servers share this hub in tests).
        config.policy.history_dir = self
            .root
            .join(format!("policy-history-{}", uuid::Uuid::new_v4()));
        // … and its own pseudonymised extracts (built on first use: tests read both paths).
        config.pseudonymisation.extracts_dir =
            self.root.join(format!("extracts-{}", uuid::Uuid::new_v4()));
        // Every test server opens Flight SQL too, on a free port.
        config.flight.listen = Some("127.0.0.1:0".parse().unwrap());
        config.identity.jwks_min_refresh_secs = 0;
        config.identity.http_timeout_secs = 2;
        config
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.layout().ca_cert()).unwrap()
    }
}

/// The real gateway, serving HTTPS on 127.0.0.1 with a free port.
pub struct TestServer {
    running: Option<RunningServer>,
    /// This server's own audit trail (servers on the shared hub do not share one).
    pub audit_dir: PathBuf,
    _audit: Option<tempfile::TempDir>,
    pub base: String,
    /// The Flight SQL listener's address, when one is open.
    pub flight: Option<std::net::SocketAddr>,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Serves the shared hub, trusting `issuers`.
    pub async fn start(issuers: Vec<IssuerConfig>) -> TestServer {
        let mut config = hub().config();
        config.identity.issuers = issuers;
        Self::start_with(config).await
    }

    pub async fn start_with(mut config: Config) -> TestServer {
        // Tests run side by side: a Flight listener always takes a free port.
        if config.flight.listen.is_some() {
            config.flight.listen = Some("127.0.0.1:0".parse().unwrap());
        }
        // One writer per trail: a server of the shared hub gets a trail of its own.
        let mut audit = None;
        if config.audit.dir == hub().root.join("audit") {
            let dir = tempfile::tempdir().unwrap();
            config.audit.dir = dir.path().join("audit");
            audit = Some(dir);
        }
        let audit_dir = config.audit.dir.clone();
        let running = passerelle::hub::start(config).await.unwrap();
        let base = format!("https://{}", running.addr);
        TestServer {
            flight: running.flight_addr,
            running: Some(running),
            audit_dir,
            _audit: audit,
            base,
            client: client(&hub().ca_pem()),
        }
    }

    /// The operators' readiness view (`status` and every check), read in process: what
    /// `GET /v1/admin/health` answers an operator.
    pub fn readiness(&self) -> serde_json::Value {
        let gateway = self.running.as_ref().unwrap().gateway();
        let (ready, checks) = gateway.readiness(false);
        serde_json::json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": checks,
        })
    }

    /// `https://…/metrics` of the metrics listener.
    pub fn metrics_url(&self) -> String {
        let addr = self.running.as_ref().unwrap().metrics_addr.unwrap();
        format!("https://{addr}/metrics")
    }

    /// The server's pseudonymised extracts, when they are on.
    pub fn extracts(&self) -> Option<&std::sync::Arc<passerelle::engine::Extracts>> {
        self.running.as_ref().and_then(|r| r.gateway().extracts())
    }

    /// The engine's plan cache.
    pub fn plans(&self) -> &std::sync::Arc<passerelle::engine::PlanCache> {
        self.running.as_ref().unwrap().gateway().plans()
    }

    /// `grpc+tls://…` of the Flight SQL listener (empty when none is open).
    pub fn flight_url(&self) -> String {
        self.flight
            .map(|a| format!("grpc+tls://{a}"))
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Waits until `/health/ready` answers 200 (panics after `timeout`).
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.get("/health/ready", None).await.status();
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Graceful shutdown with `grace` for requests in flight.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(running) = self.running.take() {
            running.shutdown(grace).await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop_now();
        }
    }
}

/// An HTTPS client that trusts the hub's demo CA.
pub fn client(ca_pem: &[u8]) -> reqwest::Client {
    passerelle::install_crypto_provider();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The first `n` NIRs of the shared hub's `social.allocataires` (lookup keys).
pub fn allocataire_nirs(n: usize) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    let file =
        std::fs::File::open(hub().layout().data().join("social/allocataires.parquet")).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let column = batch.column_by_name("nir").unwrap().as_string::<i32>();
    (0..column.len().min(n))
        .map(|i| column.value(i).to_string())
        .collect()
}

/// An issuer entry trusting `issuer` with the contract's defaults and audience `passerelle`,
/// for every principal attribute (named by its URL).
pub fn trust(issuer: &str) -> IssuerConfig {
    let mut config = IssuerConfig::new(issuer, "passerelle");
    config.claims = passerelle::config::ATTRIBUTES
        .iter()
        .map(|a| (*a).to_string())
        .collect();
    config
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The real server trusting an in-test development issuer, with the demo personas' tokens.
pub struct DemoServer {
    pub dev: passerelle::demo::DevIssuer,
    pub server: TestServer,
}

impl DemoServer {
    /// Starts the shared hub's server with `tune` applied to its configuration.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> DemoServer {
        let dev = passerelle::demo::DevIssuer::start().await.unwrap();
        let mut config = hub().config();
        config.identity.issuers = vec![dev.issuer_config()];
        tune(&mut config);
        let server = TestServer::start_with(config).await;
        server.wait_ready(Duration::from_secs(10)).await;
        DemoServer { dev, server }
    }

    /// A token for a demo persona.
    pub fn token(&self, who: &str) -> String {
        self.dev
            .token_for(passerelle::demo::personas::persona(who).unwrap())
            .unwrap()
    }

    /// `POST /v1/query` of `sql` with `token` (its one habilitation): status and JSON body
    /// (`Null` when the body is not JSON).
    pub async fn query(&self, token: &str, sql: &str) -> (u16, serde_json::Value) {
        let answer = self
            .server
            .client
            .post(self.server.url("/v1/query"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (
            status,
            answer.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}
