//! `[cluster]`: the Ballista cluster that runs a gateway's large queries (issue #24), and this
//! node's identity on it.
//!
//! Every node of the cluster (gateways, the scheduler, executors) reads this section: the
//! scheduler's address, the cluster's own certificate authority, and this node's certificate
//! and key, whose role (`gateway`, `scheduler` or `executor`) is a name in the certificate.
//!
//! Owns: the keys, their defaults and the checks that need nothing but the configuration.
//! Must never: allow a channel without TLS, or a cluster beside datasets on a bucket (an
//! executor cannot read a query's pinned object versions yet).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[cluster]`: where the scheduler is and who this node is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The scheduler's gRPC address, `https://host:port` (gateways submit plans there,
    /// executors poll it for tasks).
    pub scheduler: String,
    /// A gateway sends a query to the cluster when its datasets' files hold at least this
    /// many bytes (and it would run on the heavy lane); smaller ones run on the gateway.
    #[serde(default = "default_min_input_bytes")]
    pub min_input_bytes: u64,
    /// The cluster's certificate authority (PEM): every node's certificate is signed by it,
    /// and no other is accepted on any internal channel.
    pub ca: PathBuf,
    /// This node's certificate (PEM), with its role as a DNS name
    /// (`gateway.passerelle-cluster`, `scheduler.passerelle-cluster` or
    /// `executor.passerelle-cluster`) and, for the scheduler and executors, the names or
    /// addresses others reach it by.
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Executors: memory for all their tasks, in MiB (a fair spill pool).
    #[serde(default = "default_executor_memory_mb")]
    pub executor_memory_mb: u64,
}

fn default_min_input_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_executor_memory_mb() -> u64 {
    2048
}

impl ClusterConfig {
    /// Checks that need nothing but this section: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.scheduler) {
            Ok(url)
                if url.scheme() == "https"
                    && url.host_str().is_some()
                    && url.port().is_some()
                    && url.path().trim_end_matches('/').is_empty()
                    && url.username().is_empty()
                    && url.query().is_none() => {}
            _ => problems.push((
                "cluster.scheduler".into(),
                "must be https://host:port (every internal channel is mutual TLS)".into(),
            )),
        }
        if self.executor_memory_mb < 64 {
            problems.push((
                "cluster.executor_memory_mb".into(),
                "must be at least 64".into(),
            ));
        }
        problems
    }

    /// The scheduler's host and port (checked by [`Self::problems`]).
    pub fn scheduler_host_port(&self) -> Option<(String, u16)> {
        let url = url::Url::parse(&self.scheduler).ok()?;
        Some((url.host_str()?.to_string(), url.port()?))
    }
}
