//! Memory: each query's pool, the hub-wide budget every pool draws from, and the process's
//! resident size.
//!
//! Owns: [`HubMemory`] (the ceiling `limits.process_memory_mb`, the part of it queries may
//! hold together, and the resident-size reading admission looks at) and the per-query
//! [`MemoryPool`] that charges both the query's own limit and the hub's budget.
//!
//! Must never: let the queries' tracked memory together pass what is left of the ceiling, or
//! kill the process to keep it: the hub keeps the ceiling by refusing work (a query that
//! cannot grow fails cleanly; a new query gets 503 while the process is near the ceiling).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};

/// Marks a refusal that comes from the hub's budget, not from the query's own limit.
pub(crate) const HUB_MEMORY_FULL: &str = "passerelle: hub memory budget exhausted";
/// Marks a function call refused before it built a value (the text after `: ` is the
/// caller's: it names the function and the limit, never a value).
pub(crate) const VALUE_TOO_LARGE: &str = "passerelle: value too large";

/// Share of the ceiling above which new queries are refused.
const PRESSURE_PERCENT: usize = 90;
/// How long a resident-size reading is reused.
const RSS_REFRESH: Duration = Duration::from_millis(100);

/// The hub's memory: one per process.
#[derive(Debug)]
pub struct HubMemory {
    ceiling: usize,
    /// What queries' pools may hold together.
    budget: usize,
    used: AtomicUsize,
    started: Instant,
    /// Last resident size read, and when (ms since `started`).
    rss: AtomicUsize,
    rss_at_ms: AtomicU64,
}

impl HubMemory {
    /// A ceiling of `ceiling` bytes; queries together may hold what the process does not use
    /// yet (read now, after the hub loaded its indexes and caches), minus a tenth for what is
    /// not tracked (answers being encoded, connections).
    pub fn new(ceiling: usize) -> Arc<Self> {
        let resident = resident_bytes().unwrap_or(0);
        let budget = ceiling
            .saturating_sub(resident)
            .saturating_sub(ceiling / 10);
        Arc::new(Self {
            ceiling,
            budget,
            used: AtomicUsize::new(0),
            started: Instant::now(),
            rss: AtomicUsize::new(resident),
            rss_at_ms: AtomicU64::new(0),
        })
    }

    /// The ceiling, in bytes.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// What queries' pools may hold together, in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// What queries' pools hold now, in bytes.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The process's resident size, read at most every 100 ms.
    pub fn resident(&self) -> usize {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let at = self.rss_at_ms.load(Ordering::Acquire);
        if now.saturating_sub(at) >= RSS_REFRESH.as_millis() as u64
            && let Some(rss) = resident_bytes()
        {
            self.rss.store(rss, Ordering::Release);
            self.rss_at_ms.store(now, Ordering::Release);
        }
        self.rss.load(Ordering::Acquire)
    }

    /// True when the process is so close to its ceiling that no new work may start.
    pub fn under_pressure(&self) -> bool {
        // SECURITY: the ceiling is kept by refusing work, never by dying.
        self.resident() >= self.ceiling / 100 * PRESSURE_PERCENT
    }

    /// A pool for one query: at most `limit` bytes, and never more than the hub has left.
    pub fn query_pool(self: &Arc<Self>, limit: usize) -> Arc<dyn MemoryPool> {
        Arc::new(QueryPool {
            inner: TrackConsumersPool::new(
                GreedyMemoryPool::new(limit),
                std::num::NonZeroUsize::MIN,
            ),
            hub: self.clone(),
            held: AtomicUsize::new(0),
        })
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= self.budget)
            })
            .is_ok()
    }

    fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// One query's pool: its own limit (with the consumers named in the log when it is reached)
/// and the hub's budget.
#[derive(Debug)]
struct QueryPool {
    inner: TrackConsumersPool<GreedyMemoryPool>,
    hub: Arc<HubMemory>,
    /// What this pool took from the hub (given back when the pool goes).
    held: AtomicUsize,
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query pool ({} bytes reserved)", self.inner.reserved())
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "passerelle-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.hub.take(additional);
        self.held.fetch_add(additional, Ordering::AcqRel);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.hub.give_back(shrink);
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(shrink))
            });
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.inner.try_grow(reservation, additional)?;
        // SECURITY: queries together never hold more than the hub's budget.
        if !self.hub.try_take(additional) {
            self.inner.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(
                HUB_MEMORY_FULL.to_string(),
            ));
        }
        self.held.fetch_add(additional, Ordering::AcqRel);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // INVARIANT: reservations shrink the pool when they drop; whatever is left (none in
        // practice) goes back to the hub with the pool.
        self.hub.give_back(self.held.load(Ordering::Acquire));
    }
}

/// The process's resident set size (`VmRSS` of `/proc/self/status`), when it can be read.
pub fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(budget: usize) -> Arc<HubMemory> {
        Arc::new(HubMemory {
            ceiling: budget * 2,
            budget,
            used: AtomicUsize::new(0),
            started: Instant::now(),
            rss: AtomicUsize::new(0),
            rss_at_ms: AtomicU64::new(0),
        })
    }

    /// Two queries within their own limits cannot together pass the hub's budget; what one
    /// gives back, the other can take.
    #[test]
    fn queries_together_never_pass_the_hubs_budget() {
        let hub = hub(1000);
        let a = hub.query_pool(800);
        let b = hub.query_pool(800);
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(700).unwrap();
        let refused = rb.try_grow(400).unwrap_err();
        assert!(refused.to_string().contains(HUB_MEMORY_FULL), "{refused}");
        assert_eq!(b.reserved(), 0, "a refused grow leaves nothing reserved");
        rb.try_grow(300).unwrap();
        assert_eq!(hub.used(), 1000);
        assert!(
            ra.try_grow(200).is_err(),
            "the query's own limit still holds"
        );
        ra.shrink(500);
        rb.try_grow(400).unwrap();
        drop((ra, rb));
        assert_eq!(hub.used(), 0, "everything goes back");
        drop((a, b));
        assert_eq!(hub.used(), 0);
    }

    #[test]
    fn the_resident_size_is_read() {
        let rss = resident_bytes().unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
