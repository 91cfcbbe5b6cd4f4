//! passerelle: the secure gateway of a sectoral data hub.
//!
//! The library is the product; `main.rs` only parses the command line and calls [`cli::run`].
//! The path of one request is a transport (`server`) → `gateway` (one use case: `identity`,
//! `policy`'s plan, `engine` or `lookup`, and `audit` recording the request before its answer
//! leaves) → the transport's encoding. See `docs/architecture.md`.

pub mod access;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod engine;
pub mod file_stamp;
pub mod flight;
pub mod gateway;
pub mod hub;
pub mod identity;
pub mod lookup;
pub mod parquet_layout;
pub mod policy;
pub mod private_fs;
pub mod pseudonym;
pub mod secrecy;
pub mod secret_file;
pub mod server;
pub mod storage;
pub mod telemetry;

/// Installs the process-wide rustls crypto provider (aws-lc-rs).
///
/// rustls refuses to guess when more than one provider is compiled in, so every entry point
/// (the binary, the integration tests) calls this once before any TLS object is built.
pub fn install_crypto_provider() {
    // An `Err` only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
