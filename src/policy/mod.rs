//! Policy: the law of the hub made executable.
//!
//! Owns: the policy set on disk (Casbin `model.conf` and `policy.csv`, `habilitations.toml`,
//! `datasets.toml`, optional `tables.toml`), its validation with `file:line` problems, habilitations and their
//! validity, `AccessPlan`s decided by Casbin's enforcer (`enforcer`, with the lines that
//! decided each item and the profile and group chains they came through), explain, dry-run
//! diffs, hot reload and version history, and the crash-safe writing of the folder (`folder`).
//!
//! Must never: touch DataFusion or HTTP, or let anything else read the rules. Any doubt (a file
//! that does not parse, an unknown column, a missing claim, an expired habilitation) means deny.

pub mod catalog;
pub mod diff;
pub mod enforcer;
pub mod explain;
pub mod filter;
pub mod folder;
pub mod habilitation;
pub mod hierarchy;
pub mod history;
mod issuers;
pub mod model;
pub mod place;
pub mod plan;
pub mod rules;
mod set;
mod source;
pub mod store;
pub mod tables;
pub mod treatment;
mod warnings;

pub use catalog::{
    Catalog, CatalogError, CatalogFiles, ColumnClass, Dataset, DatasetKind, Field, FieldType,
    table_schema_pattern,
};
pub use habilitation::{Habilitation, Habilitations, TrustedIssuer, Validity};
pub use history::HistoryPlace;
pub use place::{Folder, Seen, SetPlace};
pub use plan::{AccessPlan, ColumnPlan, DatasetPlan, Reason, RowFilter};
pub use set::{PolicySet, PolicyTexts, Refusal};
pub use source::{PolicyFiles, Problem};
pub use store::{ApplyError, PolicyEvent, PolicyStore, ReloadOutcome};
pub use tables::{TableSpec, Tables};
pub use treatment::ColumnTreatment;

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::identity::Principal;

    pub fn principal(groups: &[&str], siret: Option<&str>) -> Principal {
        Principal {
            issuer: "https://idp.test".into(),
            issuer_name: "test".into(),
            idp_id: None,
            subject: "someone".into(),
            organisation_siret: siret.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            roles: Vec::new(),
            email: None,
            client_id: None,
            client_certificate: None,
            certificate_bound: false,
            expires_at: 0,
        }
    }
}
