//! Hub: assembles a configured hub from its validated configuration and starts serving it.
//!
//! Owns: the order of start-up (master key, dataset catalog and files, identity, server) and
//! the checks `passerelle check` shares with start-up, so both refuse the same things.
//!
//! Must never: start the demo's development issuer (it trusts only configured issuers), or
//! keep serving a hub whose keys or catalog did not load.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::gateway::{Gateway, HubSummary, Loaded};
use crate::identity::{IdentityError, OidcAuthenticator};
use crate::policy::history::PolicyHistory;
use crate::policy::{Folder, PolicySet, PolicyStore, SetPlace};
use crate::pseudonym::{KeyRing, MasterKey, MasterKeyError};
use crate::server::{App, AppState, RunningServer, ServerError};
use crate::storage::policy_bucket::{PolicyBucket, Seeded};

/// Why a hub could not start, or what `check` found.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error("{}", .0.join("\n"))]
    Policy(Vec<String>),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    #[error("cannot start the query lanes: {0}")]
    Engine(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Where the policy set in force and its history are kept: the bucket of `policy.url`, else
/// the folders `policy.dir` and `policy.history_dir`.
pub struct PolicyPlaces {
    pub set: Arc<dyn SetPlace>,
    pub history: PolicyHistory,
}

impl PolicyPlaces {
    /// Opens the places `config` names (a bucket: its URL and credentials must be valid).
    pub fn open(config: &crate::config::PolicyConfig) -> Result<PolicyPlaces, String> {
        match &config.url {
            Some(url) => {
                let bucket = PolicyBucket::open(url, config.credentials_file.as_deref())?;
                Ok(PolicyPlaces {
                    set: bucket.clone(),
                    history: PolicyHistory::on(bucket),
                })
            }
            None => Ok(PolicyPlaces {
                set: Arc::new(Folder(config.dir.clone())),
                history: PolicyHistory::new(&config.history_dir),
            }),
        }
    }

    /// The set a start would serve, read without writing (for `check`, `explain`, warnings),
    /// with what its problems name it by.
    pub fn set_to_serve(&self) -> Result<(PolicySet, PathBuf), Vec<String>> {
        let dir = self.set.name().to_path_buf();
        let texts = self.set.read().map_err(|p| strings(&p))?;
        let set = PolicySet::from_texts(&dir, texts).map_err(|p| strings(&p))?;
        Ok((set, dir))
    }
}

/// Problems as the lines `check` and the commands print.
fn strings(problems: &[crate::policy::Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

/// What a start refuses in a set that parses (`dir` names its files): a catalog that does not
/// match the data files (in the local folder, or the objects of `objects`), member rules not
/// bound to the trusted issuers.
fn problems_against_the_hub(
    config: &Config,
    objects: Option<&Arc<crate::storage::ObjectData>>,
    set: &PolicySet,
    dir: &std::path::Path,
) -> Vec<String> {
    let files = crate::storage::catalog_files(&config.data.dir, objects);
    let mut problems = strings(&set.catalog.check_files(files.as_ref()));
    let issuers = crate::gateway::trusted_issuers(&config.identity);
    problems.extend(strings(&set.issuer_problems(dir, &issuers)));
    problems
}

/// The set a start would serve (see [`PolicyPlaces::set_to_serve`]).
pub fn policy_set(config: &Config) -> Result<(PolicySet, PathBuf), Vec<String>> {
    PolicyPlaces::open(&config.policy)
        .map_err(|e| vec![e])?
        .set_to_serve()
}

/// `passerelle seed-policy`: puts the set of `policy.dir`, if valid (against the data files
/// and the trusted issuers, as a start checks it), in the empty bucket of `policy.url`: the
/// version written, or every problem (a bucket that holds a set or a history is left as it
/// is).
pub fn seed_policy(config: &Config) -> Result<String, Vec<String>> {
    let Some(url) = &config.policy.url else {
        return Err(vec![
            "policy.url is not set: the policy set is the folder policy.dir, nothing to seed"
                .into(),
        ]);
    };
    let dir = &config.policy.dir;
    let texts = crate::policy::PolicyTexts::read(dir).map_err(|p| strings(&p))?;
    let set = PolicySet::from_texts(dir, texts.clone()).map_err(|p| strings(&p))?;
    let objects =
        crate::storage::ObjectData::open(&config.data).map_err(|e| vec![e.to_string()])?;
    let problems = problems_against_the_hub(config, objects.as_ref(), &set, dir);
    if !problems.is_empty() {
        return Err(problems);
    }
    let bucket =
        PolicyBucket::open(url, config.policy.credentials_file.as_deref()).map_err(|e| vec![e])?;
    let name = bucket.name().display().to_string();
    match bucket.seed(&texts) {
        Ok(Seeded::Written) => Ok(set.version),
        Ok(Seeded::HoldsASet) => Err(vec![format!(
            "{name}: the bucket already holds a policy set: nothing written (change it through the operator API or the console)"
        )]),
        Ok(Seeded::HasAHistory) => Err(vec![format!(
            "{name}: the bucket has a policy history but no set in force: nothing written; put a version of the history back by hand (docs/operations.md)"
        )]),
        Err(e) => Err(vec![format!("{name}: cannot seed: {}", e.kind())]),
    }
}

/// Every problem of a hub, without starting it: for `passerelle check`.
pub fn check(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = MasterKey::load(&config.pseudonymisation) {
        problems.push(e.to_string());
    }
    let s = &config.server;
    if let Err(e) =
        crate::server::tls::server_config(&s.tls_cert, &s.tls_key, s.client_ca.as_deref())
    {
        problems.push(e.to_string());
    }
    let objects = match crate::storage::ObjectData::open(&config.data) {
        Ok(objects) => objects,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let places = match PolicyPlaces::open(&config.policy) {
        Ok(places) => places,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    // The history as a start reads it (a bucket's index that does not read stops a start).
    if let Err(e) = places.history.list() {
        problems.push(format!("the policy history cannot be read: {}", e.kind()));
    }
    match places.set_to_serve() {
        Err(p) => problems.extend(p),
        Ok((set, dir)) => problems.extend(problems_against_the_hub(
            config,
            objects.as_ref(),
            &set,
            &dir,
        )),
    }
    problems
}

/// Warnings on the policy set (valid, but weakening a secret: see `policy::warnings`); none
/// when the set does not load (its problems are `check`'s).
pub fn warnings(config: &Config) -> Vec<String> {
    policy_set(config)
        .map(|(set, dir)| set.warnings(&dir).iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Loads everything and starts the HTTPS server in the background.
pub async fn start(config: Config) -> Result<RunningServer, HubError> {
    // SECURITY: no audit trail, no server (a damaged or locked trail stops the start).
    let audit = crate::audit::AuditLog::open(&config.audit)?;
    start_with_audit(config, audit).await
}

/// [`start`] with an audit log opened by the caller (benchmarks compare the durable trail
/// with [`crate::audit::AuditLog::null`]; `serve` and `demo` always use [`start`]).
pub async fn start_with_audit(
    config: Config,
    audit: crate::audit::AuditLog,
) -> Result<RunningServer, HubError> {
    // SECURITY: fail closed at start: no key, no valid policy set, no valid data, no server.
    let pseudonyms = Arc::new(KeyRing::new(
        MasterKey::load(&config.pseudonymisation)?,
        config.pseudonymisation.rotations.clone(),
    ));
    // SECURITY: the policy bucket opens (its URL and credentials are valid) or nothing
    // starts.
    let places = PolicyPlaces::open(&config.policy).map_err(|e| HubError::Policy(vec![e]))?;
    let history = places.history.clone();
    // SECURITY: the bucket opens (its credentials and endpoint are valid) or nothing starts.
    let objects = crate::storage::ObjectData::open(&config.data)?;
    let files = crate::storage::catalog_files(&config.data.dir, objects.as_ref());
    // SECURITY: every set's member rules are bound to the trusted issuers, now and at reload.
    let policy = PolicyStore::load_in(
        places.set.clone(),
        Some(files.clone()),
        Some(history.clone()),
        Some(crate::gateway::trusted_issuers(&config.identity)),
    )
    .map_err(|p| HubError::Policy(p.iter().map(ToString::to_string).collect()))?;
    let set = policy.current();
    for warning in set.warnings(places.set.name()) {
        tracing::warn!(%warning, "policy");
    }
    if config.policy.watch_interval_secs > 0 {
        policy.spawn_watch(std::time::Duration::from_secs(
            config.policy.watch_interval_secs,
        ));
    }
    policy.spawn_sighup();
    // A lookup never scans: the policy's lookup key columns are indexed before the server
    // answers (a key column that a reloaded policy adds is indexed on first use).
    // (Each index logs "lookup index built" with its rows, memory and build time.)
    let (lookups, _reports) =
        crate::lookup::Lookups::build(&set.catalog, &set.lookup_key_columns(), files)
            .map_err(|e| HubError::Policy(vec![format!("lookup index: {e}")]))?;
    record_policy_events(&policy, &audit);
    let identity = OidcAuthenticator::start(&config.identity)?;
    let summary = HubSummary {
        datasets: set
            .catalog
            .datasets
            .iter()
            .filter(|d| d.kind == crate::policy::DatasetKind::Microdata)
            .map(|d| d.name().to_string())
            .collect(),
    };
    // SECURITY: a gateway whose cluster identity cannot be read does not start (its large
    // queries would go somewhere it cannot authenticate to).
    let cluster = match &config.cluster {
        Some(cluster) => Some(Arc::new(
            crate::cluster::client::ClusterClient::new(cluster).map_err(HubError::Engine)?,
        ) as Arc<dyn crate::engine::Cluster>),
        None => None,
    };
    let gateway = Gateway::new(
        config,
        Loaded {
            identity,
            policy,
            history,
            pseudonyms,
            lookups: Arc::new(lookups),
            objects,
            audit,
            hub: summary,
            cluster,
        },
    )
    .map_err(|e| HubError::Engine(e.to_string()))?;
    gateway.spawn_refusal_summaries();
    gateway.spawn_table_refresher();
    let state = AppState(Arc::new(App::new(Arc::new(gateway))));
    Ok(crate::server::start(state).await?)
}

/// Every policy swap and refused reload (file change, SIGHUP, operator API) becomes an audit
/// event of kind `policy_reload`; who asked for an API change is in that request's own event.
fn record_policy_events(policy: &Arc<PolicyStore>, audit: &crate::audit::AuditLog) {
    use crate::audit::{AuditEvent, AuditKind, Outcome};
    use crate::policy::PolicyEvent;
    let mut events = policy.subscribe();
    let audit = audit.clone();
    tokio::spawn(async move {
        while let Ok(change) = events.recv().await {
            let event = match change {
                PolicyEvent::Applied { from, to } => {
                    let mut e = AuditEvent::new(
                        AuditKind::PolicyReload,
                        "",
                        format!("policy set {from} replaced by {to}"),
                    );
                    e.policy_version = Some(to);
                    e
                }
                PolicyEvent::Refused { problems } => AuditEvent::new(
                    AuditKind::PolicyReload,
                    "",
                    format!("policy reload refused ({problems} problems)"),
                )
                .with_outcome(Outcome::Refused, Some("invalid_policy")),
            };
            if let Err(e) = audit.record(event).await {
                tracing::error!(error = %e, "policy change could not be recorded in the audit trail");
            }
        }
    });
}
