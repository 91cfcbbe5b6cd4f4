//! Flight SQL: the second front door (Arrow Flight SQL over gRPC, TLS), for ADBC, JDBC and
//! ODBC clients. It carries record batches without JSON or CSV in between.
//!
//! Owns: the gRPC service (`service`), the mapping of a use case's refusal to a gRPC status
//! (`status`), and turning an answer's Arrow IPC stream into Flight data. Every call is
//! authenticated, recorded and decided by the same `gateway` use cases as HTTPS: tickets and
//! prepared-statement handles are the gateway's sealed statements, and redeeming one runs the
//! whole query gate again.
//!
//! Must never: make a security decision, read a token anywhere but `service::caller`, run
//! anything that writes (updates, ingestion, Substrait, transactions are refused), build a
//! session or SQL, or import `engine`, `policy`, `lookup` or `audit` (checked by
//! `architecture::the_layers_import_only_downwards`). The listener itself (TLS, mutual TLS,
//! HTTP/2) is the `server`'s.

mod answer;
mod service;
mod status;

use std::sync::Arc;

pub use service::FlightSql;

use crate::gateway::Gateway;

/// The Flight SQL service as a router the server listens with.
pub fn router(gateway: Arc<Gateway>) -> Result<axum::Router, String> {
    let max = gateway.config().flight.max_message_bytes;
    let service = FlightSql::new(gateway).map_err(|e| format!("Flight SQL: {e}"))?;
    let service = arrow_flight::flight_service_server::FlightServiceServer::new(service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    Ok(tonic::service::Routes::new(service).into_axum_router())
}
