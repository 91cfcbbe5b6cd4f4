//! Tables of the statistical secret, computed and published by the hub.
//!
//! Aggregate-only habilitations read tables, never microdata: each table of the policy set's
//! `tables.toml` is computed from its source's raw file ([`compute`]), protected by `secrecy`
//! (primary secrets, secondary suppression, the attacker's audit), written as the one current
//! version ([`store`]), and served as a dataset only while it is current ([`registry`]); tables
//! of one source must not hide the cells they share ([`linked`]).
//!
//! Owns: the hub's own queries over a table's source, the published files, the decision that a
//! table may be read. Must never: run a reader's SQL over microdata, or serve a table that is
//! not the current, audited version.

pub mod compute;
pub mod linked;
pub mod registry;
pub mod store;

pub use compute::{PublishedTable, TableError, build, publish};
pub use registry::{PublishedTables, TableStatus};
pub use store::TableSummary;
