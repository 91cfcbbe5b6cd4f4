//! `table`: what a table of the statistical secret is and where it stands (dimensions, rules,
//! how many cells are hidden and why, data version), for the habilitations it is granted to and
//! for operators.
//!
//! Must never: say anything of a table to a caller it is not granted to (unknown and not
//! granted answer alike), or show a reader why a table failed (operators only: the reason may
//! name the source).

use serde::Serialize;

use super::error::GatewayError;
use super::{Caller, Gateway};
use crate::engine::tables::TableStatus;
use crate::policy::tables::{Derivation, TableSpec};
use crate::secrecy::{MeasureKind, Profile};

/// A table of the statistical secret, as `GET /v1/tables/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableInfo {
    /// `schema.table`, as written in SQL.
    pub id: String,
    pub title: String,
    pub description: String,
    /// The secrecy profile and its rules.
    pub profile: ProfileView,
    /// What a unit is counted by (the statistical unit's column in the source).
    pub unit: String,
    pub dimensions: Vec<DimensionView>,
    pub measures: Vec<MeasureView>,
    /// `pending`, `published` (with its summary: cells, hidden cells by reason, data
    /// version), `refused` or `failed`.
    #[schema(value_type = Object)]
    pub status: TableStatus,
    pub policy_version: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    pub name: String,
    /// A published cell has at least this many units.
    pub min_units: u64,
    /// No unit holds more than this share of a published sum (none: no dominance rule).
    pub dominance: Option<f64>,
    pub empty_is_secret: bool,
    /// A hidden sum cannot be narrowed to within this share of its value.
    pub magnitude_margin: f64,
}

impl ProfileView {
    fn of(name: &str, p: &Profile) -> ProfileView {
        ProfileView {
            name: name.to_string(),
            min_units: p.min_units,
            dominance: p.dominance,
            empty_is_secret: p.empty_is_secret,
            magnitude_margin: p.magnitude_margin,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DimensionView {
    pub name: String,
    pub title: String,
    /// How its labels are derived from the source (`value`, `prefix`, `bands`, `age_bands`,
    /// `icd10_chapter`, `naf_section`), margins labelled `Ensemble`.
    #[schema(value_type = Object)]
    pub derivation: Derivation,
    /// In a hierarchy, the coarser levels this dimension nests in, coarsest first (each a
    /// column of the table: a value's label at its level and above, `Ensemble` below).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub within: Vec<LevelView>,
}

/// One coarser level of a hierarchical dimension.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LevelView {
    pub name: String,
    pub title: String,
    #[schema(value_type = Object)]
    pub derivation: Derivation,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeasureView {
    pub name: String,
    pub title: String,
    /// `rows`, `units` or `sum`.
    #[schema(value_type = String)]
    pub kind: MeasureKind,
    /// Its flag column: `primary`, `secondary` or NULL.
    pub flag: String,
}

impl Gateway {
    /// What table `id` is and where it stands, for a habilitation it is granted to (or an
    /// operator).
    pub async fn table(
        &self,
        caller: &Caller,
        habilitation: Option<String>,
        id: String,
    ) -> Result<TableInfo, GatewayError> {
        let result = self.table_info(caller, habilitation.as_deref(), &id);
        caller.record.settle(&self.audit, result).await
    }

    fn table_info(
        &self,
        caller: &Caller,
        habilitation: Option<&str>,
        id: &str,
    ) -> Result<TableInfo, GatewayError> {
        let unknown = || {
            GatewayError::not_found(
                "unknown_table",
                "Unknown table",
                "no table of this name is granted to this habilitation",
            )
        };
        let set = self.policy.current();
        let operator = habilitation.is_none() && set.is_operator(&caller.principal);
        if !operator {
            let (_, plan) = self.plan_for(caller, habilitation)?;
            caller.record.plan(&plan, None);
            // SECURITY: a table is described to the habilitations it is granted to only;
            // unknown and not granted answer alike.
            let granted = plan
                .datasets()
                .any(|d| d.name() == id && d.aggregates_allowed());
            if !granted {
                return Err(unknown());
            }
        }
        let spec = set.tables.get(id).ok_or_else(unknown)?;
        let status = match self.engine.tables().status(id) {
            None => TableStatus::Pending,
            // SECURITY: why a table failed is for operators (it may name the source).
            Some(TableStatus::Refused { .. }) if !operator => TableStatus::Refused {
                reason: "its protection did not pass the audit".into(),
            },
            Some(TableStatus::Failed { .. }) if !operator => TableStatus::Failed {
                reason: "it could not be computed".into(),
            },
            Some(s) => s,
        };
        Ok(view(spec, status, &set.version))
    }
}

fn view(spec: &TableSpec, status: TableStatus, policy_version: &str) -> TableInfo {
    TableInfo {
        id: spec.id.clone(),
        title: spec.title.clone(),
        description: spec.description.clone(),
        profile: ProfileView::of(&spec.profile_name, &spec.profile),
        unit: spec.unit.clone(),
        dimensions: spec
            .dimensions
            .iter()
            .map(|d| DimensionView {
                name: d.name.clone(),
                title: d.title.clone(),
                derivation: d.derivation.clone(),
                within: d
                    .within
                    .iter()
                    .map(|l| LevelView {
                        name: l.name.clone(),
                        title: l.title.clone(),
                        derivation: l.derivation.clone(),
                    })
                    .collect(),
            })
            .collect(),
        measures: spec
            .measures
            .iter()
            .map(|m| MeasureView {
                name: m.name.clone(),
                title: m.title.clone(),
                kind: m.kind,
                flag: format!("{}_secret", m.name),
            })
            .collect(),
        status,
        policy_version: policy_version.to_string(),
    }
}
