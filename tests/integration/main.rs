//! passerelle's one integration-test binary: the real server over HTTPS on loopback, a real
//! in-test OIDC issuer, the real command-line binary. Security tests name their attack.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support code: a failure is a test failure"
)]

mod support;

mod answers;
mod architecture;
mod attacks;
mod audit;
mod audit_requests;
mod cli;
mod clients;
mod cluster;
mod console;
mod engine;
mod faults;
mod flight;
mod foundation;
mod gateways;
mod hostile;
mod identity;
mod interop;
mod lookups;
mod openapi;
mod policy;
mod policy_oracle;
mod pseudonym;
mod secrecy;
mod soak;
mod storage;
mod tpch;
