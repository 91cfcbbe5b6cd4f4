//! A cluster on this machine's loopback for `passerelle demo --cluster N` and the tests: a new
//! certificate authority, then a scheduler and N executors, each a child process of the
//! passerelle binary, stopped when the [`LocalCluster`] is dropped.
//!
//! Must never: listen beyond 127.0.0.1, or leave its processes running after it is dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::ClusterConfig;

/// A scheduler and executors running as child processes.
#[derive(Debug)]
pub struct LocalCluster {
    children: Vec<Child>,
    /// What a gateway of this machine puts in `[cluster]` to use it.
    pub gateway: ClusterConfig,
    /// The executors' Flight listeners.
    pub executors: Vec<SocketAddr>,
}

/// Set for a role started by a [`LocalCluster`]: it exits when its standard input closes.
pub const EXIT_WITH_PARENT: &str = "PASSERELLE_EXIT_WITH_PARENT";

/// In a role started by a [`LocalCluster`], exits the process once the parent is gone (its
/// end of our standard input closed).
pub fn exit_with_parent() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
}

fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

impl LocalCluster {
    /// Starts, with `binary` (the passerelle executable) and the hub configuration `config`,
    /// a scheduler and `executors` executors of 512 MiB each whose certificates and work
    /// folders are in `dir` (made new: a previous run's are removed), and waits until they
    /// answer.
    pub fn start(
        binary: &Path,
        config: &Path,
        dir: &Path,
        executors: usize,
    ) -> Result<LocalCluster, String> {
        Self::start_with_memory(binary, config, dir, executors, 512)
    }

    /// [`Self::start`] with `executor_memory_mb` for each executor.
    pub fn start_with_memory(
        binary: &Path,
        config: &Path,
        dir: &Path,
        executors: usize,
        executor_memory_mb: u64,
    ) -> Result<LocalCluster, String> {
        Self::start_with(binary, config, dir, executors, executor_memory_mb, &[])
    }

    /// [`Self::start_with_memory`], each executor given the `PASSERELLE_…` overrides of `env` as
    /// well (e.g. the bucket it reads: `PASSERELLE_DATA__URL`, `PASSERELLE_DATA__CREDENTIALS_FILE`;
    /// the scheduler reads no data and gets none of them).
    pub fn start_with(
        binary: &Path,
        config: &Path,
        dir: &Path,
        executors: usize,
        executor_memory_mb: u64,
        env: &[(String, String)],
    ) -> Result<LocalCluster, String> {
        // Absolute: the roles resolve relative paths against their configuration's folder.
        let dir = &std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config =
            &std::path::absolute(config).map_err(|e| format!("{}: {e}", config.display()))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let files = super::pki::write(dir, executors, &[])?;
        let scheduler = free_port()?;
        let scheduler_url = format!("https://{scheduler}");
        let role = |cert: &Path, key: &Path| {
            let mut command = Command::new(binary);
            command
                .env("PASSERELLE_CONFIG", config)
                .env("PASSERELLE_CLUSTER__SCHEDULER", &scheduler_url)
                .env("PASSERELLE_CLUSTER__CA", &files.ca)
                .env("PASSERELLE_CLUSTER__CERT", cert)
                .env("PASSERELLE_CLUSTER__KEY", key)
                // The child reads its standard input until it closes, then exits: it never
                // outlives this process, however this one ends.
                .env(EXIT_WITH_PARENT, "1")
                .stdin(Stdio::piped());
            command
        };
        let mut cluster = LocalCluster {
            children: Vec::new(),
            gateway: ClusterConfig {
                scheduler: scheduler_url.clone(),
                min_input_bytes: 0,
                ca: files.ca.clone(),
                cert: files.gateway.cert.clone(),
                key: files.gateway.key.clone(),
                executor_memory_mb,
            },
            executors: Vec::new(),
        };
        let child = role(&files.scheduler.cert, &files.scheduler.key)
            .args(["scheduler", "--listen", &scheduler.to_string()])
            .spawn()
            .map_err(|e| format!("cannot start the scheduler: {e}"))?;
        cluster.children.push(child);
        wait_for(scheduler, Duration::from_secs(30))?;
        for (i, node) in files.executors.iter().enumerate() {
            let listen = free_port()?;
            let work: PathBuf = dir.join(format!("work-{}", i + 1));
            let child = role(&node.cert, &node.key)
                .args(["executor", "--listen", &listen.to_string(), "--id"])
                .arg(format!("executor-{}", i + 1))
                .arg("--work-dir")
                .arg(&work)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env(
                    "PASSERELLE_CLUSTER__EXECUTOR_MEMORY_MB",
                    executor_memory_mb.to_string(),
                )
                .spawn()
                .map_err(|e| format!("cannot start executor {}: {e}", i + 1))?;
            cluster.children.push(child);
            cluster.executors.push(listen);
        }
        for &executor in &cluster.executors {
            wait_for(executor, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }
}

/// Waits until `addr` accepts a connection.
fn wait_for(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{addr} did not answer within {} s",
        timeout.as_secs()
    ))
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
