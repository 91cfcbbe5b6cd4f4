//! The plan cache: a caller's checked, optimised logical plans, kept so that the same query
//! asked again skips parsing, the statement gate, the budgets and logical optimisation (a
//! fifth of a small query's CPU). Physical plans are never kept (they hold run state): a hit
//! is planned physically again, in a fresh session under the query's own runtime and limits.
//!
//! Owns: [`PlanKey`] (everything a logical plan depends on) and [`PlanCache`], bounded.
//! Must never: lend a plan to another principal, another access plan (habilitation, policy
//! version, row filters with the principal's attributes, column treatments), another day,
//! another pseudonymisation key version, another version of a data file or table, other
//! limits or other SQL and parameters; nor keep a plan that read the clock (`now()` and its
//! kin fold to the instant the query was planned).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::scalar::ScalarValue;

use super::files::DataFiles;
use super::limits::QueryLimits;
use super::tables::PublishedTables;
use crate::policy::{AccessPlan, DatasetKind, PolicySet};
use crate::pseudonym::KeyRing;

/// Plans kept at most; beyond, an arbitrary one makes room.
pub const CAPACITY: usize = 1024;

/// What the kept plans may weigh together, approximately (each plan counted as its key, its
/// nodes and schemas, its expressions and the size of every literal): a caller sending
/// distinct queries only pushes others out.
pub const BUDGET_BYTES: usize = 32 * 1024 * 1024;

/// Heavier plans are not kept (1/64 of the budget).
const MAX_PLAN_BYTES: usize = BUDGET_BYTES / 64;

/// Everything a query's logical plan depends on, as one exact text (no hash: two keys are
/// equal only when every part is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlanKey(String);

/// What a query's logical plan is built from, besides its SQL.
pub struct PlanInputs<'a> {
    /// Who asks (issuer, identity provider, subject).
    pub principal: &'a str,
    pub plan: &'a AccessPlan,
    pub policy: &'a PolicySet,
    /// Where the catalog's paths are read (their versions are part of the key).
    pub(crate) files: &'a DataFiles<'a>,
    pub keys: &'a KeyRing,
    pub tables: &'a PublishedTables,
    pub today: chrono::NaiveDate,
    pub limits: &'a QueryLimits,
}

impl PlanKey {
    /// The key of `sql` with `params` under `inputs`, or `None` when the access plan cannot be
    /// written out: such a query is not cached.
    pub fn of(inputs: &PlanInputs<'_>, sql: &str, params: &[ScalarValue]) -> Option<PlanKey> {
        let PlanInputs {
            principal,
            plan,
            policy,
            files,
            keys,
            tables,
            today,
            limits,
        } = inputs;
        // SECURITY: every part below is written with its length, so that no two different
        // sets of parts give the same text.
        let mut key = String::with_capacity(1024 + sql.len());
        let mut part = |text: &str| {
            key.push_str(&text.len().to_string());
            key.push(':');
            key.push_str(text);
        };
        part(principal);
        // The whole access plan: habilitation, policy version, datasets, column treatments
        // and row filters with the principal's attributes already in them.
        part(&serde_json::to_string(plan).ok()?);
        part(&today.to_string());
        let domain = &plan.habilitation().pseudonymisation_domain;
        part(&keys.version_on(domain, *today).to_string());
        part(&format!("{limits:?}"));
        for dataset in plan.datasets().filter(|d| d.query_allowed()) {
            let Some(entry) = policy.catalog.dataset(dataset.name()) else {
                part("-");
                continue;
            };
            part(dataset.name());
            // SECURITY: a replaced file (new data, a new version of a table) is a new key; so
            // is a file that appears where there was none.
            part(
                &files
                    .stamp(&entry.path, entry.kind)
                    .unwrap_or_else(|| "absent".to_string()),
            );
            if entry.kind == DatasetKind::Table {
                part(if tables.servable(policy, entry.name()) {
                    "servable"
                } else {
                    "not servable"
                });
            }
        }
        part(sql);
        // SECURITY: each parameter exactly (its type, then its value in Arrow IPC): their
        // `Debug` text does not escape strings, so two vectors could print alike.
        part(&params.len().to_string());
        for param in params {
            part(&format!("{:?}", param.data_type()));
            part(&exact_value(param)?);
        }
        Some(PlanKey(key))
    }
}

/// `value` as the hex of a one-row Arrow IPC stream: equal texts only for equal values.
fn exact_value(value: &ScalarValue) -> Option<String> {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    let array = value.to_array().ok()?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![array]).ok()?;
    let mut bytes = Vec::new();
    let mut writer =
        datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &schema).ok()?;
    writer.write(&batch).ok()?;
    writer.finish().ok()?;
    drop(writer);
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What a kept plan weighs, approximately: its key, each node with its schema, each
/// expression, and every literal's own size (a `VALUES` list or a folded constant can hold far
/// more than its SQL text or its display shows).
fn weight(key: &PlanKey, plan: &LogicalPlan) -> usize {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut bytes = key.0.len();
    let walked = plan.apply_with_subqueries(|node| {
        bytes += 256 + 64 * node.schema().fields().len();
        node.apply_expressions(|e| {
            e.apply(|e| {
                bytes += 64;
                if let Expr::Literal(value, _) = e {
                    bytes += value.size();
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    // SECURITY (availability): a plan that cannot be walked is weighed as too heavy to keep.
    if walked.is_err() { usize::MAX } else { bytes }
}

/// A checked, optimised logical plan and what the runner needs from its planning.
#[derive(Debug, Clone)]
pub struct CachedPlan {
    pub logical: LogicalPlan,
    pub datasets: Vec<String>,
    pub input_bytes: u64,
    pub unbounded_join: bool,
}

/// The hub's plan cache (shared by its lanes), bounded in count and in approximate bytes.
#[derive(Debug, Default)]
pub struct PlanCache {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    plans: HashMap<PlanKey, (Arc<CachedPlan>, usize)>,
    bytes: usize,
}

impl PlanCache {
    pub fn get(&self, key: &PlanKey) -> Option<Arc<CachedPlan>> {
        let hit = self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plans
            .get(key)
            .map(|(plan, _)| plan.clone());
        metrics::counter!(
            "passerelle_plan_cache_total",
            "outcome" => if hit.is_some() { "hit" } else { "miss" }
        )
        .increment(1);
        hit
    }

    /// Keeps `plan` under `key`, arbitrary plans making room when the cache is full; a plan
    /// heavier than 1/64 of the budget is not kept.
    pub fn insert(&self, key: PlanKey, plan: CachedPlan) {
        // SECURITY (availability): what a plan holds grows with its literals and schemas.
        let weight = weight(&key, &plan.logical);
        if weight > MAX_PLAN_BYTES {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = kept.plans.remove(&key) {
            kept.bytes -= old;
        }
        while kept.plans.len() >= CAPACITY || kept.bytes + weight > BUDGET_BYTES {
            let Some(evicted) = kept.plans.keys().next().cloned() else {
                break;
            };
            if let Some((_, old)) = kept.plans.remove(&evicted) {
                kept.bytes -= old;
            }
        }
        kept.plans.insert(key, (Arc::new(plan), weight));
        kept.bytes += weight;
    }

    /// Plans kept.
    pub fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plans
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Does `plan` (its subqueries included) call a function whose value the optimizer fixes at
/// planning time (`now()`, `current_date`, …: volatility `Stable`)? Such a plan is never kept.
pub fn reads_the_clock(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = false;
    let walked = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility == Volatility::Stable
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    // SECURITY: a walk that fails is taken as reading the clock (not kept).
    found || walked.is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn plan(sql: &str) -> LogicalPlan {
        SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap()
    }

    fn kept(sql: &str, logical: LogicalPlan) -> (PlanKey, CachedPlan) {
        (
            PlanKey(sql.to_string()),
            CachedPlan {
                logical,
                datasets: Vec::new(),
                input_bytes: 0,
                unbounded_join: false,
            },
        )
    }

    /// The cache stays within its count and byte bounds whatever a caller sends: distinct
    /// queries push others out, a plan heavier than its share is not kept.
    #[tokio::test]
    async fn kept_plans_stay_within_count_and_bytes() {
        let cache = PlanCache::default();
        let small = plan("SELECT 1").await;
        for i in 0..CAPACITY + 10 {
            let (key, plan) = kept(&format!("SELECT 1 -- {i}"), small.clone());
            cache.insert(key, plan);
        }
        assert_eq!(cache.len(), CAPACITY);
        let heavy = "x".repeat(MAX_PLAN_BYTES);
        let (key, plan) = kept(&heavy, small.clone());
        cache.insert(key.clone(), plan);
        assert!(
            cache.get(&key).is_none(),
            "heavier than its share: not kept"
        );
        let bytes = cache.kept.lock().unwrap().bytes;
        assert!(bytes <= BUDGET_BYTES, "{bytes}");
        let (key, plan) = kept("SELECT 1 -- again", small);
        cache.insert(key.clone(), plan);
        assert!(cache.get(&key).is_some());
        assert_eq!(cache.len(), CAPACITY);
    }

    /// Each thing a kept plan depends on is a part of its key: the access plan (habilitation,
    /// row filters, treatments), the day, the pseudonymisation key in force, a data file that
    /// appears or is replaced, the limits, the SQL and its parameters, and who asks (also
    /// end to end: `engine::kept_plans_are_never_shared_between_principals`).
    #[test]
    fn a_plan_key_changes_with_everything_the_plan_depends_on() {
        use crate::config::RotationConfig;
        use crate::policy::PolicyTexts;
        use crate::pseudonym::MasterKey;

        let policy =
            PolicySet::from_texts(std::path::Path::new("policies"), PolicyTexts::shipped())
                .unwrap();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        // Each habilitation's plan as the policy decides it (row filters left unbound: the
        // engine may not name `identity`'s principal; the key does not care).
        let plan_of = |project: &str| {
            let habilitation = policy.habilitations.get(project).unwrap();
            AccessPlan::new(
                crate::policy::plan::HabilitationSummary::of(habilitation),
                policy.version.clone(),
                policy
                    .evaluate(habilitation, None)
                    .into_iter()
                    .filter(crate::policy::DatasetPlan::accessible)
                    .collect(),
            )
        };
        let plan = plan_of("projet-diabete");
        let other_plan = plan_of("projet-emploi");
        let domain = plan.habilitation().pseudonymisation_domain.clone();
        let master = || MasterKey::from_bytes([7; 32]);
        let keys = KeyRing::new(master(), Vec::new());
        let rotated = KeyRing::new(
            master(),
            vec![RotationConfig {
                domain,
                version: 2,
                from: today,
            }],
        );
        let data = tempfile::tempdir().unwrap();
        let tables = PublishedTables::new(data.path().to_path_buf());
        let limits = QueryLimits::default();
        let fewer_rows = QueryLimits {
            max_rows: 10,
            ..QueryLimits::default()
        };
        let no_schema = |_: &std::path::Path| -> Result<arrow::datatypes::SchemaRef, crate::engine::EngineError> {
            unreachable!("a key reads no schema")
        };
        let files = DataFiles {
            dir: data.path(),
            tables: tables.dir(),
            schema: &no_schema,
            pins: None,
        };
        let inputs = PlanInputs {
            principal: "7:someone",
            plan: &plan,
            policy: &policy,
            files: &files,
            keys: &keys,
            tables: &tables,
            today,
            limits: &limits,
        };
        let sql = "SELECT count(*) FROM sante.sejours WHERE age > $1";
        let one = [ScalarValue::Int64(Some(1))];
        let key = |inputs: &PlanInputs<'_>, sql: &str, params: &[ScalarValue]| {
            PlanKey::of(inputs, sql, params).unwrap()
        };
        let first = key(&inputs, sql, &one);
        assert_eq!(
            first,
            key(&inputs, sql, &one),
            "the same inputs: the same key"
        );

        let mut seen = vec![first];
        let mut changes = |what: &str, new: PlanKey| {
            assert!(!seen.contains(&new), "{what}: must be a new key");
            seen.push(new);
        };
        let stays = data.path().join(
            &policy
                .catalog
                .dataset("sante.sejours")
                .expect("the shipped catalog has sante.sejours")
                .path,
        );
        std::fs::create_dir_all(stays.parent().unwrap()).unwrap();
        std::fs::write(&stays, b"first version").unwrap();
        changes("the data file appears", key(&inputs, sql, &one));
        std::fs::write(&stays, b"second, longer version").unwrap();
        changes("the data file is replaced", key(&inputs, sql, &one));
        changes(
            "another principal",
            key(
                &PlanInputs {
                    principal: "7:someon",
                    ..inputs
                },
                sql,
                &one,
            ),
        );
        changes(
            "another access plan",
            key(
                &PlanInputs {
                    plan: &other_plan,
                    ..inputs
                },
                sql,
                &one,
            ),
        );
        changes(
            "the next day",
            key(
                &PlanInputs {
                    today: today.succ_opt().unwrap(),
                    ..inputs
                },
                sql,
                &one,
            ),
        );
        changes(
            "a new pseudonymisation key in force",
            key(
                &PlanInputs {
                    keys: &rotated,
                    ..inputs
                },
                sql,
                &one,
            ),
        );
        changes(
            "other limits",
            key(
                &PlanInputs {
                    limits: &fewer_rows,
                    ..inputs
                },
                sql,
                &one,
            ),
        );
        changes("other SQL", key(&inputs, &format!("{sql} "), &one));
        changes(
            "another parameter",
            key(&inputs, sql, &[ScalarValue::Int64(Some(2))]),
        );
    }

    /// Two parameter vectors that print alike (`Debug` does not escape strings) are two keys.
    #[test]
    fn parameters_are_keyed_exactly() {
        let two = [
            ScalarValue::Utf8(Some("a".into())),
            ScalarValue::Utf8(Some("b".into())),
        ];
        let one = [ScalarValue::Utf8(Some("a\"), Utf8(\"b".into()))];
        assert_eq!(
            format!("{two:?}"),
            format!("{one:?}"),
            "the ambiguity is real"
        );
        let exact = |params: &[ScalarValue]| {
            params
                .iter()
                .map(|p| format!("{:?}/{}", p.data_type(), exact_value(p).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_ne!(exact(&two), exact(&one));
        assert_ne!(
            exact(&[ScalarValue::Int32(Some(1))]),
            exact(&[ScalarValue::Int64(Some(1))])
        );
    }

    /// A `VALUES` list of large folded constants weighs what it holds, not what it displays
    /// (DataFusion shows five rows of a `VALUES` node).
    #[tokio::test]
    async fn a_plans_weight_counts_every_literal() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let sql = "SELECT * FROM (VALUES ('a'), ('a'), ('a'), ('a'), ('a'), \
                   (repeat('x', 100000)), (repeat('x', 100000)))";
        let optimised = state
            .optimize(&state.create_logical_plan(sql).await.unwrap())
            .unwrap();
        let key = PlanKey(sql.to_string());
        assert!(
            weight(&key, &optimised) > 200_000,
            "{}",
            weight(&key, &optimised)
        );
    }

    /// `now()` and its kin fold to the instant of planning: such plans are never kept, even
    /// when the call hides in a subquery; other functions (volatile ones included, evaluated
    /// when the query runs) do not stop a plan from being kept.
    #[tokio::test]
    async fn plans_that_read_the_clock_are_found_in_subqueries_too() {
        for sql in [
            "SELECT now()",
            "SELECT current_date",
            "SELECT 1 WHERE 2 IN (SELECT extract(year FROM current_date))",
            "SELECT 1 WHERE EXISTS (SELECT 1 WHERE current_time() IS NOT NULL)",
        ] {
            assert!(reads_the_clock(&plan(sql).await), "{sql}");
        }
        for sql in ["SELECT 1", "SELECT random()", "SELECT upper('a') || 'b'"] {
            assert!(!reads_the_clock(&plan(sql).await), "{sql}");
        }
    }
}
