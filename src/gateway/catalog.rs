//! What a caller may see: `me` (the principal as the gateway understood it, and what each of
//! its habilitations lets it do) and `datasets` (the datasets a habilitation opens, as the
//! caller sees them: hidden columns absent, each visible column with its treatment).
//!
//! Must never: list a hidden column, or anything outside the caller's plan.

use serde::Serialize;

use super::error::GatewayError;
use super::{Caller, Gateway};
use crate::identity::Principal;
use crate::policy::explain::{HabilitationView, views};
use crate::policy::{ColumnTreatment, FieldType};

/// The caller, as `GET /v1/me` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    pub principal: Principal,
    pub policy_version: String,
    /// True when the caller may use the operators' use cases.
    pub operator: bool,
    pub habilitations: Vec<HabilitationView>,
    /// Warnings to act on (habilitations ending soon, expired or revoked).
    pub warnings: Vec<String>,
}

/// The datasets one habilitation opens, as the caller sees them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatasetsView {
    pub habilitation: String,
    pub policy_version: String,
    pub datasets: Vec<DatasetView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatasetView {
    /// `schema.table`, as written in SQL.
    pub name: String,
    pub title: String,
    pub description: String,
    /// The legal secret covering the data.
    pub secret: String,
    /// SQL queries allowed.
    pub query: bool,
    /// Per-record lookups allowed, by this key column.
    pub lookup_key: Option<String>,
    /// A table of the statistical secret, granted by the `aggregate` act: every value in it
    /// was protected and audited before publication (`GET /v1/tables/{name}` describes it).
    pub aggregate_only: bool,
    /// The habilitation restricts which rows are visible.
    pub rows_restricted: bool,
    pub columns: Vec<ColumnView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ColumnView {
    pub name: String,
    pub title: String,
    pub description: String,
    /// Table Schema type of the raw column.
    pub r#type: FieldType,
    /// `clear`, `pseudonymised`, `redacted`, `partial`, `year`, `month`, `departement`,
    /// `rounded`.
    pub treatment: &'static str,
    /// The treatment in words (e.g. "date generalised to the year").
    pub treatment_detail: String,
}

fn treatment_code(t: &ColumnTreatment) -> &'static str {
    use crate::policy::treatment::DateGranularity;
    match t {
        ColumnTreatment::Clear => "clear",
        ColumnTreatment::Pseudonymised { .. } => "pseudonymised",
        ColumnTreatment::Redacted => "redacted",
        ColumnTreatment::Partial { .. } => "partial",
        ColumnTreatment::DateGeneralised {
            granularity: DateGranularity::Year,
        } => "year",
        ColumnTreatment::DateGeneralised {
            granularity: DateGranularity::Month,
        } => "month",
        ColumnTreatment::PostcodeDepartement => "departement",
        ColumnTreatment::Rounded { .. } => "rounded",
        ColumnTreatment::Hidden => "hidden",
    }
}

impl Gateway {
    /// Who the caller is and what each of its habilitations lets it do.
    pub async fn me(&self, caller: &Caller) -> Result<MeView, GatewayError> {
        let set = self.policy.current();
        let today = chrono::Utc::now().date_naive();
        let habilitations = views(&set, &caller.principal, None, today);
        let warnings = habilitations
            .iter()
            .filter_map(|h| h.warning.clone())
            .collect();
        let view = MeView {
            operator: set.is_operator(&caller.principal),
            policy_version: set.version.clone(),
            principal: caller.principal.clone(),
            habilitations,
            warnings,
        };
        caller.record.settle(&self.audit, Ok(view)).await
    }

    /// The datasets `habilitation` opens to the caller.
    pub async fn datasets(
        &self,
        caller: &Caller,
        habilitation: Option<String>,
    ) -> Result<DatasetsView, GatewayError> {
        let result = self.datasets_view(caller, habilitation.as_deref());
        caller.record.settle(&self.audit, result).await
    }

    fn datasets_view(
        &self,
        caller: &Caller,
        habilitation: Option<&str>,
    ) -> Result<DatasetsView, GatewayError> {
        let (set, plan) = self.plan_for(caller, habilitation)?;
        caller.record.plan(&plan, None);
        let mut datasets = Vec::new();
        for d in plan.datasets().filter(|d| d.accessible()) {
            let Some(entry) = set.catalog.dataset(d.name()) else {
                continue;
            };
            // SECURITY: only the caller's view: hidden columns are not listed at all.
            let columns = d
                .visible_columns()
                .filter_map(|c| {
                    entry.field(c.name()).map(|f| ColumnView {
                        name: c.name().to_string(),
                        title: f.title.clone(),
                        description: f.description.clone(),
                        r#type: f.field_type,
                        treatment: treatment_code(c.treatment()),
                        treatment_detail: c.treatment().label(),
                    })
                })
                .collect();
            datasets.push(DatasetView {
                name: d.name().to_string(),
                title: d.title().to_string(),
                description: entry.description.clone(),
                secret: entry.secret.clone(),
                query: d.query_allowed(),
                lookup_key: d.lookup_key().map(str::to_string),
                aggregate_only: d.aggregates_allowed(),
                rows_restricted: d.rows_restricted(),
                columns,
            });
        }
        Ok(DatasetsView {
            habilitation: plan.habilitation().id.clone(),
            policy_version: plan.policy_version().to_string(),
            datasets,
        })
    }
}

/// The tables one habilitation opens, as a SQL client browses them (Flight SQL's catalogs,
/// schemas and tables): the catalog is the habilitation, the schema a dataset's prefix.
#[derive(Debug)]
pub struct TablesView {
    pub habilitation: String,
    pub tables: Vec<TableView>,
}

/// One table as a query sees it.
#[derive(Debug)]
pub struct TableView {
    /// `sante` in `sante.sejours`.
    pub schema: String,
    /// `sejours` in `sante.sejours`.
    pub table: String,
    /// Its columns as a query gets them: hidden ones absent, treated ones with their treated
    /// type.
    pub columns: arrow::datatypes::SchemaRef,
}

impl Gateway {
    /// The habilitations the caller may use today (a SQL client's catalogs).
    pub async fn usable_habilitations(&self, caller: &Caller) -> Result<Vec<String>, GatewayError> {
        let usable = self.usable(caller);
        caller.record.settle(&self.audit, Ok(usable)).await
    }

    /// The tables the caller's habilitations open, with the columns a query sees: those of
    /// `only` when it is named, else of every habilitation it may use today.
    pub async fn sql_catalog(
        &self,
        caller: &Caller,
        only: Option<String>,
    ) -> Result<Vec<TablesView>, GatewayError> {
        let result = async {
            match only {
                Some(h) => Ok(vec![self.tables_view(caller, Some(&h), true).await?]),
                None => {
                    let mut views = Vec::new();
                    for h in self.usable(caller) {
                        views.push(self.tables_view(caller, Some(&h), false).await?);
                    }
                    Ok(views)
                }
            }
        }
        .await;
        caller.record.settle(&self.audit, result).await
    }

    fn usable(&self, caller: &Caller) -> Vec<String> {
        let set = self.policy.current();
        let today = chrono::Utc::now().date_naive();
        set.held_by(&caller.principal)
            .into_iter()
            .filter(|h| set.resolve(&caller.principal, Some(&h.id), today).is_ok())
            .map(|h| h.id.clone())
            .collect()
    }

    /// One habilitation's tables (`record`: its plan goes on the request's record).
    async fn tables_view(
        &self,
        caller: &Caller,
        habilitation: Option<&str>,
        record: bool,
    ) -> Result<TablesView, GatewayError> {
        let (set, plan) = self.plan_for(caller, habilitation)?;
        if record {
            caller.record.plan(&plan, None);
        }
        // SECURITY: the tables and columns are those of the caller's own session: what the
        // plan hides does not exist.
        let described = self
            .engine
            .describe(&plan, &set)
            .await
            .map_err(GatewayError::engine)?;
        let tables = described
            .into_iter()
            .filter_map(|(name, columns)| {
                let (schema, table) = name.split_once('.')?;
                Some(TableView {
                    schema: schema.to_string(),
                    table: table.to_string(),
                    columns,
                })
            })
            .collect();
        Ok(TablesView {
            habilitation: plan.habilitation().id.clone(),
            tables,
        })
    }
}
