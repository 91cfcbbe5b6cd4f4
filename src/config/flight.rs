//! `[flight]`: the Arrow Flight SQL listener (gRPC over TLS, same certificate, client CAs and
//! tokens as HTTPS) and the lifetime of the statement handles it gives out.
//!
//! Owns: the keys, their defaults and the checks that need nothing but the configuration.
//! Must never: offer a listener without TLS.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[flight]`: the Flight SQL listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightConfig {
    /// Address of the Flight SQL listener (gRPC over TLS with `server.tls_cert`,
    /// `server.tls_key` and `server.client_ca`); `""` (the default) opens none.
    #[serde(default, with = "super::server::optional_address")]
    pub listen: Option<SocketAddr>,
    /// How long a ticket or prepared-statement handle stays valid, in seconds.
    #[serde(default = "default_statement_ttl")]
    pub statement_ttl_secs: u64,
    /// Largest gRPC message accepted or sent, in bytes (a record batch larger than this is
    /// split before it is sent).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            listen: None,
            statement_ttl_secs: default_statement_ttl(),
            max_message_bytes: default_max_message(),
        }
    }
}

impl FlightConfig {
    /// Checks that need nothing but this section: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.statement_ttl_secs == 0 || self.statement_ttl_secs > 86_400 {
            problems.push((
                "flight.statement_ttl_secs".into(),
                "must be between 1 and 86400 (one day)".into(),
            ));
        }
        if !(64 * 1024..=256 * 1024 * 1024).contains(&self.max_message_bytes) {
            problems.push((
                "flight.max_message_bytes".into(),
                "must be between 65536 and 268435456".into(),
            ));
        }
        problems
    }
}

fn default_statement_ttl() -> u64 {
    600
}

fn default_max_message() -> usize {
    16 * 1024 * 1024
}
