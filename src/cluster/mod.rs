//! The cluster (issue #24): large queries of a gateway run on a Ballista 55 cluster whose
//! scheduler and executors are passerelle processes (`passerelle scheduler`, `passerelle
//! executor`), so that they carry the secure scans, masks and bounded functions of the plans
//! they run (the engine's plan codec, `engine::PlanCodec`).
//!
//! Owns: the two roles (`scheduler`, `executor`), the cluster's mutual TLS and the roles
//! certificates carry (`tls`), and the cluster's own certificate authority for the demo and
//! tests (`pki`). The gateway's side — when a query goes to the cluster and how its physical
//! plan is shipped — is the engine's (`engine::distributed`).
//!
//! Must never: let a channel run without mutual TLS, accept a job that is not a physical plan
//! from a gateway, or give an executor the master key.

pub mod executor;
pub mod local;
pub mod pki;
pub mod scheduler;
pub mod tls;
