//! The statistical secret: tables of aggregates defined in advance, protected as a whole and
//! audited by an attacker's linear program before anyone reads them.
//!
//! French statistical, tax, medical and business secrets allow aggregate outputs only when no
//! cell reveals a small group or a dominant contributor. Thresholds on free SQL do not hold
//! (two allowed queries differenced rebuild any small cell), so aggregate habilitations read
//! only tables protected here: primary secrets by a profile's rules ([`profile`]), secondary
//! suppression so that margins give nothing back ([`suppress`]), and the attacker's audit, which
//! must pass before a table is published ([`audit`]).
//!
//! Owns: the protection of a [`cube::Cube`] of cells. Must never: read microdata (the hub
//! computes the cells and hands them over), or return a protection whose audit did not pass.

pub mod audit;
pub mod cube;
pub mod profile;
pub mod suppress;

pub use audit::{
    Attacker, AuditError, Finding, Interval, Link, Move, Neighbour, Tie, audit, audit_cells,
    audit_joint,
};
pub use cube::{CellFacts, Cube, CubeError, Dimension, Line, Measure, MeasureKind, TOTAL_LABEL};
pub use profile::{PrimaryReason, Profile};
pub use suppress::{ProtectError, Protection, Secret, primaries, protect, protect_with};
