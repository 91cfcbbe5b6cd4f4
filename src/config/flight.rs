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
    /// `[flight.client_credentials]`: the Handshake's `Basic client_id:secret`, exchanged for
    /// an access token at one trusted issuer's token endpoint. Absent (the default): Basic is
    /// refused.
    #[serde(default)]
    pub client_credentials: Option<ClientCredentialsConfig>,
}

/// `[flight.client_credentials]`: which issuer exchanges a client's credentials for a token.
///
/// Only the OAuth 2.0 client-credentials grant is ever sent: a person's password is never
/// exchanged (no password grant exists here).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// The issuer, by its `[[identity.issuers]]` name or URL: its discovery document gives the
    /// token endpoint, and the token it returns must be its own.
    pub issuer: String,
    /// RFC 8707 `resource` sent with the grant (e.g. `urn:passerelle`), if the issuer needs one.
    #[serde(default)]
    pub resource: Option<String>,
    /// `scope` sent with the grant, if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// Exchanges in flight at once, for the whole gateway; a Handshake beyond is told to retry.
    #[serde(default = "default_max_concurrent_exchanges")]
    pub max_concurrent: usize,
}

fn default_max_concurrent_exchanges() -> usize {
    4
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            listen: None,
            statement_ttl_secs: default_statement_ttl(),
            max_message_bytes: default_max_message(),
            client_credentials: None,
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
        if let Some(exchange) = &self.client_credentials
            && !(1..=64).contains(&exchange.max_concurrent)
        {
            problems.push((
                "flight.client_credentials.max_concurrent".into(),
                "must be between 1 and 64".into(),
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
