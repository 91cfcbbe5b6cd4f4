//! The real `passerelle serve` as a child process, for tests that kill it (`kill -9`), starve
//! it or feed it hostile queries: a crash, an abort or a runaway query hits the child, never
//! the test binary.
//!
//! ```text
//! let mut gw = ChildGateway::start(&[]).await;          // a copy of the shared hub, ready
//! let token = gw.token("chercheuse-diabete");
//! let r = gw.post_json("/v1/query", &token, &json!({"sql": "SELECT 1"})).await;
//! gw.kill9().await;                                       // SIGKILL, reaped
//! gw.restart().await;                                     // same folder, new port, ready
//! assert!(gw.check().await.status.success());             // `passerelle check --config …`
//! println!("{}", gw.log());                               // its stderr (JSON lines)
//! ```
//!
//! - **Hub**: a private copy of the shared test hub (`support::hub()`: configuration, policies,
//!   data, keys, TLS; not the other tests' extracts or histories) in a temporary folder, kept
//!   across restarts and removed on drop.
//! - **Identity**: an in-test development issuer ([`passerelle::demo::DevIssuer`]) runs in the
//!   test's runtime and is appended to the copy's `passerelle.toml` (`serve` never starts one),
//!   so [`ChildGateway::token`] gives every demo persona a token. Keep the runtime free: run
//!   other processes with `tokio::process`, not `std::process` (the child fetches its keys
//!   from the test's runtime).
//! - **Configuration**: `env` pairs are passed to the child as environment variables, e.g.
//!   `("PASSERELLE_AUDIT__DIR", "/mnt/small")` (every key can be set so).
//! - **Address**: `--listen 127.0.0.1:0`; the port is read from its `listening` log line, at
//!   every (re)start.
//! - **Memory**: the child runs under `ulimit -v` ([`MEMORY_LIMIT_MIB`] of address space): the
//!   gateway's normal work (start-up with its lookup indexes, queries, a streamed export of a
//!   cross join) fits, a runaway one makes the child fail, not the machine.
//! - **Stopping**: [`ChildGateway::kill9`] (SIGKILL), [`ChildGateway::stop`] (SIGTERM, graceful);
//!   dropping the value kills the child.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::hub;

/// Address space the child may use (`ulimit -v`), in MiB. Measured on the 2-core development
/// VM (debug build): 0.32 GiB after start, 0.59 GiB at most (85 MB resident; the rest is
/// reserved, not used: glibc's per-thread malloc arenas, thread stacks) while streaming 1 M
/// rows of a cross join as CSV, Arrow, Parquet and JSON, sorting one, and running four
/// cross-join counts at once. 4 GiB leaves room for a query at its default memory limit
/// (`limits.query_memory_mb`, 1 GiB) and for the arenas more threads reserve, and still stops
/// a runaway allocation in the child (an allocation failure aborts it; lower
/// `PASSERELLE_LIMITS__QUERY_MEMORY_MB` in `env` for tests that push queries to their limit).
pub const MEMORY_LIMIT_MIB: u64 = 4096;

/// The gateway binary: this build's, or `PASSERELLE_TEST_BIN` (the soak runs an optimised
/// build this way).
pub fn binary() -> String {
    std::env::var("PASSERELLE_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_passerelle").to_string())
}

/// The real binary serving a private copy of the test hub.
pub struct ChildGateway {
    /// The temporary folder holding the hub (none for a gateway started [`Self::beside`]
    /// another: the first one owns it).
    _dir: Option<tempfile::TempDir>,
    /// The hub folder (configuration, policies, data, keys, TLS, audit trail).
    pub root: PathBuf,
    pub config_file: PathBuf,
    env: Vec<(String, String)>,
    dev: Arc<passerelle::demo::DevIssuer>,
    child: Option<tokio::process::Child>,
    /// `https://127.0.0.1:PORT` of the running child.
    pub base: String,
    /// An HTTPS client trusting the hub's CA.
    pub client: reqwest::Client,
    log: Arc<Mutex<String>>,
}

impl ChildGateway {
    /// Copies the shared hub, trusts a fresh development issuer, starts the child with `env`
    /// and waits until it is ready.
    pub async fn start(env: &[(&str, &str)]) -> ChildGateway {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hub");
        std::fs::create_dir_all(&root).unwrap();
        for name in ["passerelle.toml", "policies", "data", "keys", "tls"] {
            let from = hub().root.join(name);
            if from.is_dir() {
                super::copy_dir(&from, &root.join(name));
            } else {
                std::fs::copy(&from, root.join(name)).unwrap();
            }
        }
        let dev = passerelle::demo::DevIssuer::start().await.unwrap();
        let issuer = dev.issuer_config();
        let config_file = root.join("passerelle.toml");
        let text = std::fs::read_to_string(&config_file).unwrap();
        std::fs::write(
            &config_file,
            format!(
                "{text}\n[[identity.issuers]]\nissuer = \"{}\"\naudience = \"{}\"\nalgorithms = [\"ES256\"]\nrequire_typ = \"at+jwt\"\nname = \"demo\"\nclaims = [\"groups\", \"roles\", \"organisation\", \"idp\", \"email\"]\n",
                issuer.issuer, issuer.audience
            ),
        )
        .unwrap();
        Self::run(Some(dir), root, config_file, Arc::new(dev), env).await
    }

    /// A second gateway process serving `first`'s hub: the same folder and configuration, the
    /// same trusted issuer (tokens of either are good on both), with its own `env` (e.g. its
    /// own `PASSERELLE_AUDIT__NODE` and signing key); waits until it is ready. `first` owns
    /// the folder: drop this one first.
    pub async fn beside(first: &ChildGateway, env: &[(&str, &str)]) -> ChildGateway {
        let (root, config_file) = (first.root.clone(), first.config_file.clone());
        Self::run(None, root, config_file, first.dev.clone(), env).await
    }

    /// The child serving the hub at `root` (owning its temporary folder `dir`, if given),
    /// started with `env` and ready.
    async fn run(
        dir: Option<tempfile::TempDir>,
        root: PathBuf,
        config_file: PathBuf,
        dev: Arc<passerelle::demo::DevIssuer>,
        env: &[(&str, &str)],
    ) -> ChildGateway {
        let mut gateway = ChildGateway {
            _dir: dir,
            root,
            config_file,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            dev,
            child: None,
            base: String::new(),
            client: super::client(&hub().ca_pem()),
            log: Arc::default(),
        };
        gateway.restart().await;
        gateway
    }

    /// Starts the child again on the same folder (after [`Self::kill9`] or [`Self::stop`]) and
    /// waits until it is ready.
    pub async fn restart(&mut self) {
        self.spawn().await;
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Starts the child and waits for its listening address, not for readiness.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "the child is still running");
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v {} && exec \"$0\" \"$@\"",
                MEMORY_LIMIT_MIB * 1024
            ))
            .arg(binary())
            .args([
                "--log-format",
                "json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--flight-listen",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&self.config_file)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(address) = v["fields"]["address"]
                        .as_str()
                        .or_else(|| v["address"].as_str())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(address.to_string());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("serve did not listen:\n{}", self.log()))
            .unwrap_or_else(|_| panic!("serve exited without listening:\n{}", self.log()));
        self.base = format!("https://{address}");
    }

    /// The Flight SQL listener's address, from the child's log (waits up to 10 s for it).
    pub async fn flight_addr(&self) -> std::net::SocketAddr {
        for _ in 0..200 {
            let found = self.log().lines().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let message = v["fields"]["message"].as_str().or(v["message"].as_str())?;
                if !message.starts_with("Flight SQL listening") {
                    return None;
                }
                v["fields"]["address"]
                    .as_str()
                    .or(v["address"].as_str())?
                    .parse()
                    .ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the child opened no Flight SQL listener:\n{}", self.log());
    }

    /// Waits until `/health/ready` answers 200 (panics after `timeout`, with the log).
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(r) = self.client.get(self.url("/health/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready after {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A token of the development issuer for a demo persona (`chercheuse-diabete`, `caf`,
    /// `operateur`, …).
    pub fn token(&self, persona: &str) -> String {
        self.dev
            .token_for(passerelle::demo::personas::persona(persona).unwrap())
            .unwrap()
    }

    /// A token for another member of `persona`'s habilitations: the same claims under
    /// `subject` (a second researcher of the same project, say).
    pub fn token_as(&self, persona: &str, subject: &str) -> String {
        let mut someone = passerelle::demo::personas::persona(persona)
            .unwrap()
            .clone();
        someone.subject = Box::leak(subject.to_string().into_boxed_str());
        self.dev.token_for(&someone).unwrap()
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

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The child's (resident, peak resident) size in bytes (`VmRSS`, `VmHWM`).
    pub fn memory(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// The child is still running (not exited, not killed).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// `kill -9`: no shutdown, no flush; waits until the process is gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // (It may be dead already: killed from elsewhere by its pid.)
            let _ = child.start_kill();
            child.wait().await.unwrap();
        }
    }

    /// SIGTERM (graceful shutdown), then waits (SIGKILL after 30 s).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                child.wait().await.unwrap();
            }
        }
    }

    /// Everything the child wrote on stderr so far (every run), one JSON object per line.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The audit trail folder (`audit.dir`, or its override in `env`).
    pub fn audit_dir(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "PASSERELLE_AUDIT__DIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| self.root.join("audit"))
    }

    /// Runs the `passerelle` command line with `args` (and the child's `env`).
    pub async fn cli(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }

    /// `passerelle check --config <the hub's passerelle.toml>`.
    pub async fn check(&self) -> Output {
        self.cli(&["check", "--config", &path_str(&self.config_file)])
            .await
    }

    /// `passerelle audit verify <audit dir> --public-key <keys/audit-signing.pub>`.
    pub async fn verify_audit(&self) -> Output {
        let key = self.root.join("keys/audit-signing.pub");
        self.cli(&[
            "audit",
            "verify",
            &path_str(&self.audit_dir()),
            "--public-key",
            &path_str(&key),
        ])
        .await
    }
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// `stdout` and `stderr` of a finished command, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
