//! The query runner: plans and runs one query on the query lanes, away from the runtime that
//! serves HTTP, and hands its answer back as a head and then pieces.
//!
//! Owns: [`Engine`] (the hub's runtime, lanes and admission) and the life of one query:
//! planning on the cheap lane; then execution on the cheap lane (one partition, so the whole
//! query runs in the task that polls it) when it is cheap, or on the heavy lane (all
//! partitions) once a heavy slot is free. A cheap query still running after
//! `limits.cheap_query_ms` moves, as it is, to the heavy lane when a heavy slot is free at
//! that moment (otherwise it goes on where it is, and tries again one budget later).
//!
//! The first `head_bytes` of the answer are gathered before anything is handed back: a query
//! that fails early is an error, not a cut answer, and a small answer comes back whole. A
//! longer answer comes back as a bounded channel of pieces that ends with [`Piece::End`] or
//! [`Piece::Failed`]; a channel that closes without either (a panic) is a failure too.
//!
//! Must never: let a query's work run on the caller's runtime, hold a share or slot after the
//! query ended, or go on computing for a caller that went away (a closed channel stops it).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::admission::{Admission, Busy, Share, Slot};
use super::answer::{Answer, AnswerHead};
use super::encode::{AnswerInfo, Format};
use super::executor::{Lane, QueryLanes};
use super::extracts::Extracts;
use super::limits::{EngineRuntime, QueryLimits};
use super::plan_cache::{PlanCache, PlanKey};
use super::session::new_session;
use super::{EngineError, PlannedQuery, plan_query_with};
use crate::config::LimitsConfig;
use crate::pseudonym::KeyRing;

/// The hub's data as secure sessions read it.
pub struct HubData {
    /// The folder the catalog's paths are relative to (without `objects`).
    pub dir: PathBuf,
    /// The hub's bucket when `data.url` is set: the catalog's paths are its keys.
    pub objects: Option<Arc<crate::storage::ObjectData>>,
    /// Pseudonymisation keys (applied in the scan; a key never leaves the ring).
    pub keys: Arc<KeyRing>,
    /// Pseudonymised extracts (`None` when `pseudonymisation.extracts` is off).
    pub extracts: Option<Arc<Extracts>>,
    /// Tables of the statistical secret and which of them may be read.
    pub tables: Arc<super::tables::PublishedTables>,
    /// The cluster that runs large queries (`None`: every query runs here).
    pub cluster: Option<Arc<dyn super::Cluster>>,
}

impl std::fmt::Debug for HubData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the key ring is never printed.
        f.debug_struct("HubData")
            .field("dir", &self.dir)
            .field("objects", &self.objects)
            .field("extracts", &self.extracts.is_some())
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Builds the query's session in the runtime the engine gives it (its memory pool).
pub type SessionFactory =
    Box<dyn FnOnce(Arc<RuntimeEnv>) -> Result<SessionContext, EngineError> + Send>;

/// One query to run.
pub struct QueryJob {
    pub sql: String,
    /// Values of the statement's placeholders (`$1`, …), if any.
    pub params: Vec<datafusion::scalar::ScalarValue>,
    pub format: Format,
    pub info: AnswerInfo,
    pub limits: QueryLimits,
    /// The query's whole deadline (planning, execution and streaming).
    pub deadline: Instant,
    /// Bytes of answer gathered before it is handed back.
    pub head_bytes: usize,
    pub session: SessionFactory,
    /// Where the plan cache keeps this query's plan (`None`: planned every time).
    pub plan_key: Option<PlanKey>,
    /// On a bucket, the object versions the query was planned on: its runtime reads only
    /// those, whether its plan is made or taken from the cache.
    pub pins: Option<crate::storage::Pins>,
}

/// How a query ended: what it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryEnd {
    pub rows: u64,
    /// Encoded bytes (before any HTTP compression).
    pub bytes: u64,
    pub truncated: bool,
}

/// A piece of a streamed answer.
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    /// The answer is whole.
    End(QueryEnd),
    /// The answer stops here, cut: nothing follows.
    Failed(EngineError, QueryEnd),
}

/// The rest of a started answer.
#[derive(Debug)]
pub enum AnswerBody {
    /// The whole answer (it fitted in the head).
    Whole(Bytes),
    /// The head and what follows, piece by piece.
    Streamed(mpsc::Receiver<Piece>),
}

/// A query whose head is ready.
#[derive(Debug)]
pub struct StartedQuery {
    pub head: AnswerHead,
    /// Datasets the query reads.
    pub datasets: Vec<String>,
    pub body: AnswerBody,
}

/// Pieces waiting between the lane and the transport (backpressure beyond).
const PIECES_IN_FLIGHT: usize = 8;

/// The hub's query engine: runtime (caches, memory), lanes and admission. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    runtime: EngineRuntime,
    lanes: QueryLanes,
    admission: Arc<Admission>,
    /// What secure sessions read (`entry.rs`).
    data: Arc<HubData>,
    /// Checked, optimised logical plans of queries asked again (`plan_cache`).
    plans: Arc<PlanCache>,
}

impl Engine {
    /// Starts the lanes' threads, to query `data`.
    pub fn start(limits: &LimitsConfig, data: HubData) -> std::io::Result<Self> {
        Ok(Self {
            runtime: EngineRuntime::new(limits.process_memory_bytes()),
            lanes: QueryLanes::start(limits)?,
            admission: Admission::new(limits),
            data: Arc::new(data),
            plans: Arc::new(PlanCache::default()),
        })
    }

    /// The plan cache (its size, for tests and metrics).
    pub fn plans(&self) -> &Arc<PlanCache> {
        &self.plans
    }

    /// The hub's data as queries read it.
    pub fn data(&self) -> &Arc<HubData> {
        &self.data
    }

    /// The pseudonymised extracts, when they are on.
    pub fn extracts(&self) -> Option<&Arc<Extracts>> {
        self.data.extracts.as_ref()
    }

    /// This gateway's jobs on the cluster, when it has one.
    pub fn cluster_jobs(&self) -> Option<super::ClusterJobs> {
        self.data.cluster.as_ref().map(|cluster| cluster.jobs())
    }

    /// The hub's tables of the statistical secret.
    pub fn tables(&self) -> &Arc<super::tables::PublishedTables> {
        &self.data.tables
    }

    pub fn runtime(&self) -> &EngineRuntime {
        &self.runtime
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Admits one query of `principal` under `habilitation` (waiting up to the share grace),
    /// or says why not now.
    pub async fn admit(&self, principal: &str, habilitation: &str) -> Result<Share, Busy> {
        // SECURITY (availability): the process keeps its memory ceiling by refusing new work.
        if self.runtime.memory().under_pressure() {
            return Err(Busy::Memory);
        }
        self.admission
            .admit_within_grace(principal, habilitation)
            .await
    }

    /// Plans and starts `job` on the lanes; returns once its head is ready (or it failed).
    /// `share` is held until the query ends.
    pub async fn run(&self, job: QueryJob, share: Share) -> Result<StartedQuery, EngineError> {
        let deadline = job.deadline;
        let timeout = job.limits.timeout.as_secs();
        let slot = tokio::time::timeout_at(deadline, self.admission.cheap_slot())
            .await
            .map_err(|_| EngineError::Timeout(timeout))??;
        let (head_tx, head_rx) = oneshot::channel();
        let engine = self.clone();
        let held = Held {
            _share: share,
            slot,
            _gauge: RunningGauge::start(),
        };
        self.lanes
            .cheap
            .spawn(guarded(plan_then_run(engine, job, held, head_tx)));
        match tokio::time::timeout_at(deadline, head_rx).await {
            Err(_) => Err(EngineError::Timeout(timeout)),
            Ok(Err(_)) => Err(EngineError::Internal(
                "the query stopped before its first answer".into(),
            )),
            Ok(Ok(started)) => started,
        }
    }
}

/// Runs `work`, logging a panic instead of letting it unwind the lane's thread (what the query
/// held is dropped on the way: its channels close, so its caller sees a failure).
async fn guarded(work: impl std::future::Future<Output = ()> + Send) {
    if AssertUnwindSafe(work).catch_unwind().await.is_err() {
        // SECURITY: a panic message may quote a value: only the fact is logged.
        tracing::error!(
            "a query panicked: its answer was abandoned (see the audit trail for its SQL)"
        );
        metrics::counter!("passerelle_query_panics_total").increment(1);
    }
}

/// What a running query holds until it ends.
struct Held {
    _share: Share,
    slot: Slot,
    _gauge: RunningGauge,
}

type HeadSender = oneshot::Sender<Result<StartedQuery, EngineError>>;

async fn plan_then_run(engine: Engine, job: QueryJob, held: Held, head_tx: HeadSender) {
    let QueryJob {
        sql,
        params,
        format,
        info,
        limits,
        deadline,
        head_bytes,
        session,
        plan_key,
        pins,
    } = job;
    let planning = async {
        let runtime = engine
            .runtime
            .for_query(&limits)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        // SECURITY: on a bucket, the query reads through a view that serves only the object
        // versions it was planned on (every read `If-Match` its ETag).
        let runtime = match &pins {
            Some(pins) => super::files::pinned_runtime(&runtime, pins)?,
            None => runtime,
        };
        // SECURITY: a kept plan is found only under a key holding everything it depends on
        // (`plan_cache`); it runs in a fresh session of this query's runtime and limits.
        if let Some(cached) = plan_key.as_ref().and_then(|key| engine.plans.get(key)) {
            return Ok(PlannedQuery::from_cache(
                &new_session(runtime, &limits),
                &cached,
            ));
        }
        let ctx = session(runtime)?;
        let planned =
            tokio::time::timeout_at(deadline, plan_query_with(&ctx, &sql, &params, &limits))
                .await
                .map_err(|_| EngineError::Timeout(limits.timeout.as_secs()))??;
        if let (Some(key), Some(cached)) = (plan_key, planned.to_cache()) {
            engine.plans.insert(key, cached);
        }
        Ok(planned)
    };
    let mut head_tx = head_tx;
    let planned = tokio::select! {
        planned = planning => planned,
        () = head_tx.closed() => return,
    };
    let planned = match planned {
        Ok(planned) => planned.with_pins(pins),
        Err(e) => {
            // The share and slot go back before the caller hears, so it may ask again at once.
            drop(held);
            let _ = head_tx.send(Err(e));
            return;
        }
    };
    let run = Run {
        engine: engine.clone(),
        format,
        info,
        limits,
        deadline,
        head_bytes,
    };
    if planned.is_cheap(&run.limits) {
        let pause = Some(Instant::now() + run.limits.cheap_budget);
        run.start(planned, true, pause, held, head_tx).await;
        return;
    }
    // A heavy query: its execution starts on the heavy lane once a heavy slot is free (the
    // cheap slot is given back while it waits).
    let Held {
        _share,
        slot,
        _gauge,
    } = held;
    drop(slot);
    let heavy = tokio::select! {
        slot = engine.admission.heavy_slot() => slot,
        () = head_tx.closed() => return,
    };
    let slot = match heavy {
        Ok(slot) => slot,
        Err(busy) => {
            drop((_share, _gauge));
            let _ = head_tx.send(Err(busy.into()));
            return;
        }
    };
    let held = Held {
        _share,
        slot,
        _gauge,
    };
    engine
        .lanes
        .heavy
        .spawn(guarded(run.start(planned, false, None, held, head_tx)));
}

/// What a query needs to run, whichever lane it is on.
struct Run {
    engine: Engine,
    format: Format,
    info: AnswerInfo,
    limits: QueryLimits,
    deadline: Instant,
    head_bytes: usize,
}

/// A query's answer being driven, boxed so that it can move to another lane.
type DriveFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where the answer goes: first its head, then its pieces.
enum Phase {
    Head(HeadSender),
    Streaming(mpsc::Sender<Piece>),
}

impl Run {
    /// Starts `planned` here and drives its answer.
    async fn start(
        self,
        planned: PlannedQuery,
        single_partition: bool,
        pause: Option<Instant>,
        held: Held,
        mut head_tx: HeadSender,
    ) {
        // A query on the cluster starts only once its job has ended: a caller that goes away
        // meanwhile drops it (and the job is cancelled).
        let started = tokio::select! {
            started = planned.start(
                single_partition,
                &self.limits,
                self.engine.data.cluster.as_deref(),
            ) => started,
            () = head_tx.closed() => return,
        };
        let answer = match started.and_then(|running| {
            Answer::new(
                running,
                self.format,
                &self.info,
                &self.limits,
                self.deadline,
            )
        }) {
            Ok(answer) => answer,
            Err(e) => {
                drop(held);
                let _ = head_tx.send(Err(e));
                return;
            }
        };
        let mut answer = answer;
        answer.pause_at(pause);
        self.drive_here(answer, Phase::Head(head_tx), held).await;
    }

    /// Drives `answer` until it ends, or until its pause, when it moves to the heavy lane if a
    /// heavy slot is free (otherwise it goes on here for another budget).
    fn drive(self, answer: Answer, phase: Phase, held: Held) -> DriveFuture {
        Box::pin(self.drive_here(answer, phase, held))
    }

    async fn drive_here(self, mut answer: Answer, mut phase: Phase, mut held: Held) {
        loop {
            phase = match phase {
                Phase::Head(mut head_tx) => {
                    let head = tokio::select! {
                        head = answer.fill_head(self.head_bytes) => head,
                        () = head_tx.closed() => return,
                    };
                    match head {
                        Err(e) => {
                            drop((answer, held));
                            let _ = head_tx.send(Err(e));
                            return;
                        }
                        Ok(None) => Phase::Head(head_tx),
                        Ok(Some(head)) => {
                            let datasets = answer.datasets().to_vec();
                            if head.complete {
                                let body = answer.take_complete().unwrap_or_default();
                                drop((answer, held));
                                let _ = head_tx.send(Ok(StartedQuery {
                                    head,
                                    datasets,
                                    body: AnswerBody::Whole(body),
                                }));
                                return;
                            }
                            let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
                            let started = StartedQuery {
                                head,
                                datasets,
                                body: AnswerBody::Streamed(rx),
                            };
                            if head_tx.send(Ok(started)).is_err() {
                                return;
                            }
                            Phase::Streaming(tx)
                        }
                    }
                }
                Phase::Streaming(tx) => {
                    let next = tokio::select! {
                        next = answer.next_chunk() => next,
                        () = tx.closed() => return,
                    };
                    let end = QueryEnd {
                        rows: answer.rows() as u64,
                        bytes: answer.bytes() as u64,
                        truncated: answer.truncated(),
                    };
                    match next {
                        Some(Ok(chunk)) if chunk.is_empty() && answer.paused() => {
                            Phase::Streaming(tx)
                        }
                        Some(Ok(chunk)) => {
                            // SECURITY (availability): a client that stops reading holds its
                            // share and slot only until the query's deadline.
                            let sent =
                                tokio::time::timeout_at(self.deadline, tx.send(Piece::Data(chunk)))
                                    .await;
                            if !matches!(sent, Ok(Ok(()))) {
                                return;
                            }
                            Phase::Streaming(tx)
                        }
                        Some(Err(e)) => {
                            drop((answer, held));
                            let _ = tx.send(Piece::Failed(e, end)).await;
                            return;
                        }
                        None => {
                            drop((answer, held));
                            let _ = tx.send(Piece::End(end)).await;
                            return;
                        }
                    }
                }
            };
            if answer.paused() {
                // The cheap budget is spent: move to the heavy lane if a slot is free now.
                match self.engine.admission.try_heavy_slot() {
                    Some(slot) => {
                        held.slot = slot;
                        answer.pause_at(None);
                        let heavy: Arc<Lane> = self.engine.lanes.heavy.clone();
                        heavy.spawn(guarded(self.drive(answer, phase, held)));
                        return;
                    }
                    None => {
                        let budget = self.limits.cheap_budget;
                        answer.pause_at(Some(Instant::now() + budget));
                    }
                }
            }
        }
    }
}

/// `passerelle_queries_running`: up while a query runs.
struct RunningGauge;

impl RunningGauge {
    fn start() -> Self {
        metrics::gauge!("passerelle_queries_running").increment(1.0);
        RunningGauge
    }
}

impl Drop for RunningGauge {
    fn drop(&mut self) {
        metrics::gauge!("passerelle_queries_running").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sql: &str, session: SessionFactory) -> QueryJob {
        QueryJob {
            pins: None,
            params: Vec::new(),
            sql: sql.to_string(),
            format: Format::Json,
            info: AnswerInfo {
                habilitation: "h".into(),
                policy_version: "v".into(),
            },
            limits: QueryLimits::default(),
            deadline: Instant::now() + std::time::Duration::from_secs(30),
            head_bytes: 1024 * 1024,
            plan_key: None,
            session,
        }
    }

    /// No data folder: these tests run plain sessions.
    fn no_data() -> HubData {
        HubData {
            dir: std::path::PathBuf::new(),
            objects: None,
            keys: Arc::new(crate::pseudonym::KeyRing::new(
                crate::pseudonym::MasterKey::from_bytes([7; 32]),
                Vec::new(),
            )),
            extracts: None,
            tables: Arc::new(crate::engine::tables::PublishedTables::new(
                std::path::PathBuf::new(),
            )),
            cluster: None,
        }
    }

    fn plain() -> SessionFactory {
        Box::new(|runtime| Ok(new_session(runtime, &QueryLimits::default())))
    }

    /// A panic while a query plans is an internal error for that query alone: its share is
    /// given back and the lanes serve the next query.
    #[tokio::test]
    async fn a_panic_in_a_query_fails_that_query_only() {
        let limits = LimitsConfig {
            queries_per_principal: 1,
            ..LimitsConfig::default()
        };
        let engine = Engine::start(&limits, no_data()).unwrap();
        let share = engine.admit("p", "h").await.unwrap();
        let panicking: SessionFactory = Box::new(|_| panic!("a bug in planning"));
        let e = engine
            .run(job("SELECT 1", panicking), share)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Internal(_)), "{e:?}");
        // The share goes back as the panicking task unwinds (moments after its caller heard).
        let mut share = engine.admission().admit("p", "h");
        for _ in 0..100 {
            if share.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            share = engine.admission().admit("p", "h");
        }
        let share = share.expect("the share was given back");
        let started = engine
            .run(job("SELECT 41 + 1 AS x", plain()), share)
            .await
            .unwrap();
        let AnswerBody::Whole(body) = started.body else {
            panic!("a small answer comes whole")
        };
        assert!(String::from_utf8_lossy(&body).contains("42"));
    }

    /// The engine refuses, at planning, a function call that would build a value beyond the
    /// cap (it used to allocate gigabytes while folding constants).
    #[tokio::test]
    async fn array_repeat_of_two_billion_is_refused_at_planning() {
        let engine = Engine::start(&LimitsConfig::default(), no_data()).unwrap();
        for sql in [
            "SELECT cardinality(array_repeat(1, 2000000000))",
            "SELECT cardinality(range(0, 200000000))",
            "SELECT length(repeat('x', 2000000000))",
            "SELECT length(lpad('x', 2000000000))",
        ] {
            let share = engine.admit("p", "h").await.unwrap();
            let e = engine.run(job(sql, plain()), share).await.unwrap_err();
            assert!(
                matches!(&e, EngineError::TooComplex(m) if m.contains("limits.")),
                "{sql}: {e:?}"
            );
        }
    }
}
