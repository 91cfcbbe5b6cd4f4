//! `PolicyStore`: the policy set in force, swapped atomically on reload.
//!
//! A reload parses and validates the whole new set first; only a valid set replaces the
//! current one (`ArcSwap`), so requests in flight finish under the set they started with and
//! nobody ever sees a half-applied policy. A set that fails validation is refused: the error
//! is logged, counted, and shown in readiness detail; the old set keeps serving. On disk, an
//! apply is crash-safe (`policy::folder`): a `kill -9` at any moment leaves the old set or the
//! new one, and loading finishes or undoes what it left.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::catalog::CatalogFiles;
use super::habilitation::TrustedIssuer;
use super::place::{Folder, SetPlace};
use super::set::{PolicySet, PolicyTexts};
use super::source::Problem;

/// Metric names of the policy store.
pub mod names {
    pub const RELOADS: &str = "passerelle_policy_reloads_total";
    pub const VERSION: &str = "passerelle_policy_info";
}

/// The policy set in force and how to replace it.
pub struct PolicyStore {
    /// Where the set is kept: a folder, or a bucket shared by the gateways.
    place: Arc<dyn SetPlace>,
    /// What problems name the place by.
    dir: PathBuf,
    /// The data folder: a new catalog must still match the Parquet files.
    data: Option<Arc<dyn CatalogFiles>>,
    /// Where sets put in force from the folder (file change, SIGHUP) are recorded.
    history: Option<super::history::PolicyHistory>,
    /// The trusted issuers: a set whose member rules are not bound to them is refused.
    issuers: Option<Vec<TrustedIssuer>>,
    current: ArcSwap<PolicySet>,
    last_error: Mutex<Option<String>>,
    /// Serialises reloads and applies (file watcher, SIGHUP, operator API).
    reload_lock: tokio::sync::Mutex<()>,
    /// Every swap and refused reload, for the audit trail (see [`PolicyStore::subscribe`]).
    events: tokio::sync::broadcast::Sender<PolicyEvent>,
}

/// A change of the policy set in force, or a refused one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    Applied { from: String, to: String },
    Refused { problems: usize },
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Why an apply did not put a set in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The folder or bucket could not be read or written (nothing was put in force; the
    /// cause is logged): retry later.
    Unavailable(String),
    /// The set is invalid (every problem).
    Invalid(Vec<Problem>),
    /// The folder held another valid set than the one this gateway had in force when the
    /// apply started: another gateway sharing the folder (or an edit on disk) put it there
    /// meanwhile. Nothing was written; this gateway now serves the folder's set.
    Conflict { based_on: String, found: String },
}

/// Outcome of a reload, for logs, metrics and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged(String),
    Applied { from: String, to: String },
}

impl PolicyStore {
    /// Loads the policy folder; fails (with every problem) if it is not valid.
    pub fn load(dir: &Path) -> Result<Arc<PolicyStore>, Vec<Problem>> {
        Self::load_checked(dir, None, None)
    }

    /// Loads the policy folder, checks its catalog against the data files of `data` (a local
    /// folder, a bucket) now and at every reload, and records sets put in force from the
    /// folder in `history`.
    pub fn load_checked(
        dir: &Path,
        data: Option<Arc<dyn CatalogFiles>>,
        history: Option<super::history::PolicyHistory>,
    ) -> Result<Arc<PolicyStore>, Vec<Problem>> {
        Self::load_bound(dir, data, history, None)
    }

    /// [`Self::load_checked`], and every set (now and at each reload) must bind its member
    /// rules to `issuers` ([`PolicySet::issuer_problems`]).
    pub fn load_bound(
        dir: &Path,
        data: Option<Arc<dyn CatalogFiles>>,
        history: Option<super::history::PolicyHistory>,
        issuers: Option<Vec<TrustedIssuer>>,
    ) -> Result<Arc<PolicyStore>, Vec<Problem>> {
        Self::load_in(Arc::new(Folder(dir.to_path_buf())), data, history, issuers)
    }

    /// [`Self::load_bound`] from `place` (a folder or a bucket).
    pub fn load_in(
        place: Arc<dyn SetPlace>,
        data: Option<Arc<dyn CatalogFiles>>,
        history: Option<super::history::PolicyHistory>,
        issuers: Option<Vec<TrustedIssuer>>,
    ) -> Result<Arc<PolicyStore>, Vec<Problem>> {
        let dir = place.name().to_path_buf();
        // SECURITY: an apply a crash interrupted is finished or undone before anything is
        // loaded: the set served is the old one or the new one, whole.
        place.recover().map_err(|e| {
            vec![Problem::new(
                &dir,
                None,
                format!("cannot recover an interrupted apply: {e}"),
            )]
        })?;
        let set = PolicySet::from_texts(&dir, place.read()?)?;
        checked_against(&set, &dir, data.as_deref(), issuers.as_deref())?;
        if let Some(history) = &history {
            history.ensure_recorded(&set.texts).map_err(|e| {
                vec![Problem::new(
                    &dir,
                    None,
                    format!("policy history: {}", e.kind()),
                )]
            })?;
        }
        metrics::gauge!(names::VERSION, "version" => set.version.clone()).set(1.0);
        Ok(Arc::new(PolicyStore {
            place,
            dir,
            data,
            history,
            issuers,
            current: ArcSwap::from_pointee(set),
            last_error: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            events: tokio::sync::broadcast::channel(64).0,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The set in force. Hold the `Arc` for the whole request.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Policy changes and refused reloads from now on (the hub records them in the audit).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PolicyEvent> {
        self.events.subscribe()
    }

    /// The last refused reload, if the set in force is older than the files.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Re-reads the folder (or bucket); swaps only if the whole new set is valid.
    pub async fn reload(&self) -> Result<ReloadOutcome, Vec<Problem>> {
        self.reload_read(true)
            .await
            .map_err(|(problems, _)| problems)
    }

    /// [`Self::reload`]; a read that fails is reported (logged, counted, audited) only when
    /// `loud`, and told apart from a set that was read but refused (`true`: the read failed).
    async fn reload_read(&self, loud: bool) -> Result<ReloadOutcome, (Vec<Problem>, bool)> {
        let _guard = self.reload_lock.lock().await;
        let texts = match self.read().await {
            Ok(t) => t,
            Err(p) if loud => return Err((self.refused(p), true)),
            Err(p) => return Err((p, true)),
        };
        let outcome = self.swap_locked(texts).map_err(|p| (p, false))?;
        if let (ReloadOutcome::Applied { .. }, Some(history)) = (&outcome, &self.history) {
            let (history, texts) = (history.clone(), self.current().texts.clone());
            let recorded =
                tokio::task::spawn_blocking(move || history.ensure_recorded(&texts)).await;
            if let Ok(Err(e)) = recorded {
                tracing::error!(error = %e.kind(), "cannot record the reloaded policy set in the history");
            }
        }
        Ok(outcome)
    }

    /// The set of the place as it stands, read off the async workers (a bucket's requests
    /// wait on the network).
    async fn read(&self) -> Result<PolicyTexts, Vec<Problem>> {
        let place = self.place.clone();
        tokio::task::spawn_blocking(move || place.read())
            .await
            .unwrap_or_else(|_| Err(vec![Problem::new(&self.dir, None, "the read stopped")]))
    }

    /// Refuses `set` when its member rules are not bound to this store's trusted issuers (a
    /// submitted version is checked against the same issuers before it is stored).
    pub fn check_issuers(&self, set: &PolicySet) -> Result<(), Vec<Problem>> {
        bound_to_issuers(set, &self.dir, self.issuers.as_deref())
    }

    /// Validates `texts`, writes them to the policy folder and swaps (operator API), only if
    /// the folder still holds the set this gateway has in force: several gateways may share
    /// the folder, and two operators applying at once cannot both win.
    pub async fn apply(self: &Arc<Self>, texts: PolicyTexts) -> Result<ReloadOutcome, ApplyError> {
        // In a task of its own: a caller that goes away (a dropped request) cannot stop it
        // between the write and the swap.
        let store = self.clone();
        tokio::spawn(async move { store.apply_now(texts).await })
            .await
            .unwrap_or_else(|_| Err(ApplyError::Unavailable("the apply stopped".into())))
    }

    async fn apply_now(&self, texts: PolicyTexts) -> Result<ReloadOutcome, ApplyError> {
        let _guard = self.reload_lock.lock().await;
        // Validate before touching the files: an invalid set never reaches the folder.
        let set = PolicySet::from_texts(&self.dir, texts.clone()).map_err(ApplyError::Invalid)?;
        // SECURITY: checked as a reload will check it (the catalog against the data files,
        // the issuers) before it reaches a place other gateways read.
        checked_against(
            &set,
            &self.dir,
            self.data.as_deref(),
            self.issuers.as_deref(),
        )
        .map_err(ApplyError::Invalid)?;
        let based_on = self.current().version.clone();
        let written = {
            let (place, texts, based_on) = (self.place.clone(), texts.clone(), based_on.clone());
            tokio::task::spawn_blocking(move || {
                let mut found = None;
                let new = texts.version();
                let dir = place.name().to_path_buf();
                let written = place.write_if(&texts, &mut |on_disk| {
                    // SECURITY: the conditional write. The folder must hold the set this
                    // apply was based on (or already this one); another valid set there was
                    // put in force by someone else meanwhile: refuse, never overwrite it.
                    // Files that do not read or validate are no version anyone serves.
                    let Ok(on_disk) = on_disk else { return true };
                    let version = on_disk.version();
                    if version == based_on
                        || version == new
                        || PolicySet::from_texts(&dir, on_disk.clone()).is_err()
                    {
                        return true;
                    }
                    found = Some(version);
                    false
                });
                (written, found)
            })
            .await
        };
        let cannot_write = |reason: String| {
            tracing::error!(%reason, "cannot write the policy set");
            ApplyError::Unavailable(format!("cannot write the policy set: {reason}"))
        };
        match written {
            Ok((Ok(true), _)) => self.swap_locked(texts).map_err(ApplyError::Invalid),
            Ok((Ok(false), found)) => {
                // Serve what the folder holds now, so that the operator's next try is based
                // on it (the watcher would within its interval).
                if let Ok(now) = self.read().await {
                    let _ = self.swap_locked(now);
                }
                Err(ApplyError::Conflict {
                    based_on,
                    found: found.unwrap_or_default(),
                })
            }
            Ok((Err(e), _)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(cannot_write(e.to_string()))
            }
            Ok((Err(e), _)) => Err(cannot_write(e.kind().to_string())),
            Err(_) => Err(cannot_write("the apply stopped".into())),
        }
    }

    fn swap_locked(&self, texts: PolicyTexts) -> Result<ReloadOutcome, Vec<Problem>> {
        let from = self.current.load().version.clone();
        if texts.version() == from {
            if let Ok(mut e) = self.last_error.lock() {
                *e = None;
            }
            return Ok(ReloadOutcome::Unchanged(from));
        }
        let checked = PolicySet::from_texts(&self.dir, texts).and_then(|set| {
            checked_against(
                &set,
                &self.dir,
                self.data.as_deref(),
                self.issuers.as_deref(),
            )
            .map(|()| set)
        });
        match checked {
            Ok(set) => {
                let to = set.version.clone();
                metrics::gauge!(names::VERSION, "version" => from.clone()).set(0.0);
                metrics::gauge!(names::VERSION, "version" => to.clone()).set(1.0);
                self.current.store(Arc::new(set));
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                metrics::counter!(names::RELOADS, "outcome" => "applied").increment(1);
                tracing::info!(from = %from, to = %to, "policy set applied");
                let _ = self.events.send(PolicyEvent::Applied {
                    from: from.clone(),
                    to: to.clone(),
                });
                Ok(ReloadOutcome::Applied { from, to })
            }
            Err(problems) => Err(self.refused(problems)),
        }
    }

    fn refused(&self, problems: Vec<Problem>) -> Vec<Problem> {
        let text = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        // SECURITY: an invalid policy never replaces a good one; the old set keeps serving.
        tracing::error!(problems = %text, "policy reload refused; the previous policy set stays in force");
        metrics::counter!(names::RELOADS, "outcome" => "refused").increment(1);
        let _ = self.events.send(PolicyEvent::Refused {
            problems: problems.len(),
        });
        // SECURITY: what operators read over the API names files, never the hub's paths.
        let named = problems
            .iter()
            .map(Problem::named)
            .collect::<Vec<_>>()
            .join("; ");
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(named);
        }
        problems
    }

    /// Polls the folder (or bucket) every `interval` and reloads when its stamp changes.
    pub fn spawn_watch(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        // No baseline: the first tick reloads (unchanged if the set loaded is the folder's),
        // so that a change made between the load and now (another gateway's apply) is seen.
        let mut last = String::new();
        // A changed set whose read failed, read again at every tick until it reads.
        let mut unread = false;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(store) = weak.upgrade() else { return };
                let place = store.place.clone();
                let Ok(stamp) = tokio::task::spawn_blocking(move || place.stamp()).await else {
                    continue;
                };
                if stamp != last {
                    // Reported once per change (a folder with a missing file is read again
                    // only when a file moves).
                    let read_failed = matches!(store.reload_read(true).await, Err((_, true)));
                    // SECURITY: where the stamp may not move again when the set can be read
                    // (a bucket that did not answer a read after its HEAD), a failed read is
                    // tried again at every tick, quietly: a gateway never stays on a set the
                    // others moved past.
                    unread = read_failed && store.place.reads_may_fail_alone();
                    last = stamp;
                } else if unread {
                    unread = matches!(store.reload_read(false).await, Err((_, true)));
                }
            }
        });
    }

    /// Reloads on SIGHUP (Unix).
    pub fn spawn_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                while hup.recv().await.is_some() {
                    let Some(store) = weak.upgrade() else { return };
                    tracing::info!("SIGHUP: reloading the policy set");
                    let _ = store.reload().await;
                }
            });
        }
    }
}

/// SECURITY: a catalog that no longer matches the data files, or member rules not bound to
/// the trusted issuers, make a set invalid like any other problem.
fn checked_against(
    set: &PolicySet,
    dir: &Path,
    data: Option<&dyn CatalogFiles>,
    issuers: Option<&[TrustedIssuer]>,
) -> Result<(), Vec<Problem>> {
    if let Some(data) = data {
        let problems = set.catalog.check_files(data);
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    bound_to_issuers(set, dir, issuers)
}

/// SECURITY: a set whose member rules two trusted issuers could satisfy (or that name an
/// issuer not trusted for what they use) is refused; without `issuers`, nothing is checked.
fn bound_to_issuers(
    set: &PolicySet,
    dir: &Path,
    issuers: Option<&[TrustedIssuer]>,
) -> Result<(), Vec<Problem>> {
    let problems = issuers.map_or_else(Vec::new, |issuers| set.issuer_problems(dir, issuers));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
