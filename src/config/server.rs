//! `[server]`: the HTTPS listener (address, certificate, optional client CAs, request bounds)
//! and the metrics listener.
//!
//! Owns: the keys, their defaults and the checks that need nothing but the configuration.
//! Must never: read the certificate files it names (the server does, at start) or offer a plain
//! HTTP listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[server]`: the HTTPS listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (HTTPS only; there is no plain HTTP listener).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain presented to clients.
    pub tls_cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, SEC1 or PKCS#1).
    pub tls_key: PathBuf,
    /// Optional PEM bundle of CAs whose client certificates are accepted (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Upper bound for one request, in seconds (query timeouts are set separately).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Address of the metrics listener (HTTPS, same certificate, `GET /metrics` only, no
    /// token: keep it on loopback or a monitoring network). `""` opens none; `/metrics` on the
    /// main listener is for operators in any case.
    #[serde(default = "default_metrics_listen", with = "optional_address")]
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies (addresses or CIDR blocks, e.g. `10.0.0.0/8`) whose `Forwarded`
    /// header (RFC 7239) names the client: a request from one of them is counted against the
    /// right-most `for=` address that is not itself a trusted proxy. None: the peer address.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl ServerConfig {
    /// Checks that need nothing but this section: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.request_timeout_secs == 0 {
            problems.push((
                "server.request_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.max_body_bytes == 0 {
            problems.push(("server.max_body_bytes".into(), "must be at least 1".into()));
        }
        for proxy in &self.trusted_proxies {
            if parse_network(proxy).is_none() {
                problems.push((
                    "server.trusted_proxies".into(),
                    format!("`{proxy}` is not an address or a CIDR block (e.g. 10.0.0.0/8)"),
                ));
            }
        }
        problems
    }

    /// The trusted proxies as networks (entries that do not parse are refused by `problems`).
    pub fn proxy_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_network(p))
            .collect()
    }
}

/// `10.0.0.0/8`, or a bare address as its own /32 or /128.
fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
/// `127.0.0.1:9464` (the port Prometheus exporters conventionally use for an application).
pub(super) fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}

/// An address, or `""` for none.
pub(super) mod optional_address {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(address) => s.serialize_str(&address.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("an address such as 127.0.0.1:9464, or \"\""))
    }
}

fn default_request_timeout() -> u64 {
    300
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_max_body() -> usize {
    1024 * 1024
}
