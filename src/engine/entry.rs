//! The engine's entries for the use cases: a query under an access plan ([`SecureQuery`]) and
//! an operator's query over the audit trail's events ([`EventsQuery`]). Each is one value a use
//! case fills (plan, SQL, format, limits); the engine assembles the session from the hub's data
//! (`HubData`) on the query's lane.
//!
//! Owns: turning those values into a [`QueryJob`] (secure session, answer info, deadline).
//! Must never: decide who may see what (the plan comes from `policy`), admit a query (the use
//! case holds its [`Share`]), or read a request's transport.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;
use tokio::time::Instant;

use super::audit_table::audit_session;
use super::encode::{AnswerInfo, Format};
use super::files::DataFiles;
use super::limits::QueryLimits;
use super::plan_cache::{PlanInputs, PlanKey};
use super::run::HubData;
use super::run::{Engine, QueryJob, SessionFactory, StartedQuery};
use super::session::{CATALOG, new_session, secure_session_in};
use super::{EngineError, Share};
use crate::policy::{AccessPlan, DatasetKind, PolicySet};
use crate::storage::{Pins, StorageError};

/// One query under an access plan.
pub struct SecureQuery {
    /// Who asks (issuer, identity provider, subject): a kept plan is never lent to another.
    pub principal: String,
    /// The caller's plan: the only datasets, rows and column treatments the session holds.
    pub plan: Arc<AccessPlan>,
    /// The policy version the plan was made from (its catalog says where each file is).
    pub policy: Arc<PolicySet>,
    pub sql: String,
    /// Values of the statement's placeholders (`$1`, …), if any.
    pub params: Vec<datafusion::scalar::ScalarValue>,
    pub format: Format,
    pub limits: QueryLimits,
    /// Bytes of answer gathered before it is handed back (whole below, streamed above).
    pub head_bytes: usize,
}

/// An operator's query over the audit trail's events (the `audit.events` table).
pub struct EventsQuery {
    /// The events, read from the trail.
    pub events: RecordBatch,
    pub sql: String,
    /// The policy version in force (named in the answer).
    pub policy_version: String,
    pub limits: QueryLimits,
}

impl Engine {
    /// Plans and starts `query` on the lanes under its plan; returns once its head is ready
    /// (or it failed). `share` is held until the query ends.
    pub async fn query(
        &self,
        query: SecureQuery,
        share: Share,
    ) -> Result<StartedQuery, EngineError> {
        let SecureQuery {
            principal,
            plan,
            policy,
            sql,
            params,
            format,
            limits,
            head_bytes,
        } = query;
        let info = AnswerInfo {
            habilitation: plan.habilitation().id.clone(),
            policy_version: plan.policy_version().to_string(),
        };
        let today = chrono::Utc::now().date_naive();
        let data = self.data().clone();
        // SECURITY: on a bucket, the query is planned on the objects' current versions and
        // reads only those (a replaced object fails it with `data_changed`, never mixes).
        let pins = pin(&data, &plan, &policy).await?;
        let plan_key = PlanKey::of(
            &PlanInputs {
                principal: &principal,
                plan: &plan,
                policy: &policy,
                files: &data_files(&data, pins.as_ref()),
                keys: &data.keys,
                tables: &data.tables,
                today,
                limits: &limits,
            },
            &sql,
            &params,
        );
        let session: SessionFactory = {
            let limits = limits.clone();
            let pins = pins.clone();
            Box::new(move |runtime| {
                secure_session_in(
                    new_session(runtime, &limits),
                    &plan,
                    &policy.catalog,
                    &data_files(&data, pins.as_ref()),
                    &data.keys,
                    today,
                    extracts_for(&data, pins.as_ref()),
                    Some(&|id: &str| data.tables.servable(&policy, id)),
                )
            })
        };
        let job = QueryJob {
            sql,
            params,
            format,
            info,
            deadline: Instant::now() + limits.timeout,
            limits,
            head_bytes,
            session,
            plan_key,
            pins,
        };
        self.run(job, share).await
    }

    /// The tables a query under `plan` sees, `schema.table` and their columns as a query gets
    /// them (hidden columns absent, treated columns with their treated type), in catalog order;
    /// nothing is read but the data files' schemas.
    pub async fn describe(
        &self,
        plan: &AccessPlan,
        policy: &PolicySet,
    ) -> Result<Vec<(String, SchemaRef)>, EngineError> {
        let data = self.data();
        let today = chrono::Utc::now().date_naive();
        let pins = pin(data, plan, policy).await?;
        let ctx = secure_session_in(
            new_session(Arc::new(RuntimeEnv::default()), &QueryLimits::default()),
            plan,
            &policy.catalog,
            &data_files(data, pins.as_ref()),
            &data.keys,
            today,
            data.extracts.as_ref(),
            Some(&|id: &str| data.tables.servable(policy, id)),
        )?;
        let root = ctx
            .catalog(CATALOG)
            .ok_or_else(|| EngineError::Internal("default catalog missing".into()))?;
        let mut tables = Vec::new();
        for dataset in plan.datasets().filter(|d| d.query_allowed()) {
            let Some((schema, table)) = dataset.name().split_once('.') else {
                continue;
            };
            let Some(provider) = root.schema(schema) else {
                continue;
            };
            if let Some(t) = provider
                .table(table)
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?
            {
                tables.push((dataset.name().to_string(), t.schema()));
            }
        }
        Ok(tables)
    }

    /// Plans and runs an operator's query over the trail's events, its whole answer in memory
    /// (bounded by `limits.max_result_bytes`), as JSON.
    pub async fn query_events(
        &self,
        query: EventsQuery,
        share: Share,
    ) -> Result<StartedQuery, EngineError> {
        let EventsQuery {
            events,
            sql,
            policy_version,
            limits,
        } = query;
        let session: SessionFactory = {
            let limits = limits.clone();
            Box::new(move |runtime| audit_session(new_session(runtime, &limits), events))
        };
        let job = QueryJob {
            sql,
            params: Vec::new(),
            format: Format::Json,
            info: AnswerInfo {
                habilitation: "operator".into(),
                policy_version,
            },
            deadline: Instant::now() + limits.timeout,
            limits,
            head_bytes: usize::MAX,
            session,
            // The trail's events change with every request: planned each time.
            plan_key: None,
            pins: None,
        };
        self.run(job, share).await
    }
}

/// The current versions of the objects `plan` may read, when the data are on a bucket.
async fn pin(
    data: &HubData,
    plan: &AccessPlan,
    policy: &PolicySet,
) -> Result<Option<Pins>, EngineError> {
    let Some(objects) = &data.objects else {
        return Ok(None);
    };
    let paths: Vec<String> = plan
        .datasets()
        .filter(|d| d.query_allowed())
        .filter_map(|d| policy.catalog.dataset(d.name()))
        .filter(|entry| entry.kind == DatasetKind::Microdata)
        .map(|entry| entry.path.to_string_lossy().into_owned())
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    objects.pin(&paths).await.map(Some).map_err(|e| match e {
        StorageError::Changed(_) => EngineError::DataChanged,
        // The store's text names the bucket and the key: logged, never shown.
        other => EngineError::Internal(other.to_string()),
    })
}

/// The hub's data as a session reads them: local files (their schemas from the catalog's
/// cache) and, on a bucket, the query's pinned objects.
fn data_files<'a>(data: &'a HubData, pins: Option<&'a Pins>) -> DataFiles<'a> {
    DataFiles {
        dir: &data.dir,
        tables: data.tables.dir(),
        schema: &local_schema,
        pins,
    }
}

/// The extracts a session may read: none for datasets on a bucket when a cluster runs the
/// large queries (an extract is a file on this gateway's disk: a plan reading one is never
/// shipped, and the executors compute pseudonyms in their scans of the bucket instead).
fn extracts_for<'a>(data: &'a HubData, pins: Option<&Pins>) -> Option<&'a Arc<super::Extracts>> {
    if pins.is_some() && data.cluster.is_some() {
        return None;
    }
    data.extracts.as_ref()
}

fn local_schema(path: &std::path::Path) -> Result<SchemaRef, EngineError> {
    crate::policy::catalog::parquet_arrow_schema(path).map_err(EngineError::Internal)
}
