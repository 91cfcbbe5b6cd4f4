//! The cluster (issue #24): large queries of a gateway run on a Ballista 55 cluster whose
//! scheduler and executors are passerelle processes (`passerelle scheduler`, `passerelle
//! executor`), so that they carry the secure scans, masks and bounded functions of the plans
//! they run (the engine's plan codec, `engine::PlanCodec`).
//!
//! Owns: the two roles (`scheduler`, `executor`), a gateway's client of the cluster
//! (`client`: submits, follows and cancels jobs, reads their answers), the cluster's mutual TLS
//! and the roles certificates carry (`tls`), the cluster's own certificate authority (`pki`)
//! and a cluster on loopback for the demo and tests (`local`). Which queries go to the cluster
//! and how their plans are encoded is the engine's (`engine::distributed`).
//!
//! Must never: let a channel run without mutual TLS, accept a job that is not a physical plan
//! from a gateway, or give an executor the master key.

pub mod client;
mod deadline;
pub mod executor;
pub mod local;
pub mod pki;
pub mod scheduler;
pub mod tls;
