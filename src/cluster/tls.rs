//! The cluster's mutual TLS: every internal channel (gateway → scheduler, executor →
//! scheduler, gateway and executors → an executor's shuffle files) is TLS 1.2+ where both ends
//! show a certificate of the cluster's own authority, and a peer's role is a name in its
//! certificate.
//!
//! Owns: loading a node's identity (`cluster.ca`, `cluster.cert`, `cluster.key`), the server
//! side (client certificate required), the client side (an endpoint rewritten to `https` with
//! this node's identity, whatever scheme Ballista wrote), and reading a peer's role.
//! Must never: accept a peer without a certificate of the cluster's authority, let a plain
//! `http://` channel through, or print key material.

use std::sync::Arc;

use ballista_core::extension::EndpointOverrideFn;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::config::ClusterConfig;

/// A node's role, as the DNS name its certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Plans and submits queries; reads their results.
    Gateway,
    /// Splits submitted plans into stages and hands tasks out.
    Scheduler,
    /// Runs tasks and serves their shuffle files.
    Executor,
}

impl Role {
    /// The DNS name a certificate of this role carries.
    pub fn dns_name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway.passerelle-cluster",
            Role::Scheduler => "scheduler.passerelle-cluster",
            Role::Executor => "executor.passerelle-cluster",
        }
    }
}

/// This node's identity on the cluster. `Debug` shows no key.
#[derive(Clone)]
pub struct ClusterTls {
    ca: Certificate,
    identity: Identity,
    /// `host:port` of `cluster.scheduler`, as Ballista writes the scheduler's address.
    scheduler: Option<String>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls { .. }")
    }
}

impl ClusterTls {
    /// Reads the authority, certificate and key `config` names (the key must be 0600).
    pub fn load(config: &ClusterConfig) -> Result<Self, String> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                format!(
                    "cluster.{what}: cannot read {}: {}",
                    path.display(),
                    e.kind()
                )
            })
        };
        let ca = read(&config.ca, "ca")?;
        let cert = read(&config.cert, "cert")?;
        // SECURITY: a key others may read is refused (and never echoed).
        let key = crate::secret_file::read_private(&config.key)
            .map_err(|e| format!("cluster.key: cannot use {}: {e:?}", config.key.display()))?;
        Ok(Self {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key.as_bytes()),
            scheduler: config
                .scheduler_host_port()
                .map(|(host, port)| format!("{host}:{port}")),
        })
    }

    /// The server side: this node's certificate, and a client certificate of the cluster's
    /// authority required from every peer.
    pub fn server(&self) -> ServerTlsConfig {
        // SECURITY: `client_ca_root` without `client_auth_optional`: no certificate, no
        // handshake.
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// The client side, as Ballista's endpoint hook: every endpoint it makes becomes `https`
    /// with this node's certificate, trusting only the cluster's authority, and the server
    /// must show the role it is dialled for: `scheduler` at the address of
    /// `cluster.scheduler`, `executor` anywhere else.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let tls = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone());
        let scheduler = self.scheduler.clone();
        Arc::new(move |endpoint: Endpoint| {
            let uri = endpoint.uri();
            let authority = uri
                .authority()
                .ok_or("a cluster endpoint without host and port")?
                .to_string();
            // SECURITY: the server's certificate must name the role this node expects there:
            // an executor's key cannot pose as the scheduler (and receive every plan).
            let role = if scheduler.as_deref() == Some(authority.as_str()) {
                Role::Scheduler
            } else {
                Role::Executor
            };
            // SECURITY: Ballista writes `http://` for the scheduler and for executors when
            // `use_tls` is off; tonic would then connect in clear whatever its TLS setting.
            // The endpoint is made again as `https`, with the same timeouts as Ballista's.
            let secure = Endpoint::from_shared(format!("https://{authority}"))?
                .connect_timeout(std::time::Duration::from_secs(20))
                .timeout(std::time::Duration::from_secs(600))
                .tcp_nodelay(true)
                .tcp_keepalive(Some(std::time::Duration::from_secs(3600)))
                .http2_keep_alive_interval(std::time::Duration::from_secs(300))
                .keep_alive_timeout(std::time::Duration::from_secs(20))
                .keep_alive_while_idle(true)
                .tls_config(tls.clone().domain_name(role.dns_name()))?;
            Ok(secure)
        })
    }
}

/// Does the peer of `request` (its certificate already checked against the cluster's
/// authority by the TLS handshake) carry `role`?
pub fn peer_has_role<T>(request: &tonic::Request<T>, role: Role) -> bool {
    let Some(certs) = request.peer_certs() else {
        return false;
    };
    let Some(leaf) = certs.first() else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(role.dns_name()) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}
