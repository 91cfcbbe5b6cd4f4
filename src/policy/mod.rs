//! Policy: the law of the hub made executable.
//!
//! Owns: the policy set on disk (Casbin `model.conf` and `policy.csv`, `habilitations.toml`,
//! `datasets.toml`), the dataset catalog (Table Schema + sensitivity class per column), and —
//! as the policies issue lands — `AccessPlan`s, explain, hot reload and the operator API.
//!
//! Must never: touch DataFusion or HTTP, or let anything else read Casbin. Any doubt (a file
//! that does not parse, an unknown column, a missing claim) means deny.

pub mod catalog;
mod source;

pub use catalog::{Catalog, CatalogError, ColumnClass, Dataset, Field, FieldType};
pub use source::{PolicyFiles, Problem};
