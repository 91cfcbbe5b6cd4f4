//! Fair admission of queries: a share per principal and per habilitation, and slots per lane.
//!
//! Owns: how many queries one principal, and one habilitation, run at once (a [`Share`] is
//! held from admission to the answer's last byte), and the slots of the cheap and heavy lanes
//! (waited for in arrival order, up to `limits.queue_timeout_secs`). A caller whose share is
//! still full after a short grace (`limits.share_wait_ms`, which absorbs bursts of small
//! queries) is refused ([`Busy`], 503 with `Retry-After`): one researcher cannot fill the hub,
//! and waiting queues stay short.
//!
//! Must never: let a refused query start, or keep a share or slot after its query ended (both
//! are released on drop, whatever way the query ends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

/// Why a query cannot start now; the caller may retry after `retry_after_secs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error(
        "you already run {0} queries at once, the most this hub allows one person; wait for one to end"
    )]
    Principal(usize),
    #[error(
        "habilitation `{0}` already runs {1} queries at once, the most this hub allows one habilitation"
    )]
    Habilitation(String, usize),
    #[error("every {0} query slot of the hub stayed busy for {1} s; try again shortly")]
    Lane(&'static str, u64),
    #[error("the hub is near its memory ceiling; try again shortly")]
    Memory,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl Busy {
    /// Seconds a client should wait before trying again.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Busy::Principal(_) | Busy::Habilitation(..) | Busy::Memory => 1,
            Busy::Lane(..) => 5,
            Busy::ShuttingDown => 30,
        }
    }
}

/// The hub's admission: one per process.
#[derive(Debug)]
pub struct Admission {
    per_principal: usize,
    per_habilitation: usize,
    share_wait: Duration,
    /// Woken whenever a share is given back.
    released: Notify,
    queue_timeout: Duration,
    heavy: Arc<Semaphore>,
    heavy_slots: usize,
    cheap: Arc<Semaphore>,
    cheap_slots: usize,
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    principals: HashMap<String, usize>,
    habilitations: HashMap<String, usize>,
}

/// One admitted query's place in its principal's and habilitation's shares.
#[derive(Debug)]
pub struct Share {
    admission: Arc<Admission>,
    principal: String,
    habilitation: String,
}

impl Drop for Share {
    fn drop(&mut self) {
        {
            let mut running = self.admission.lock();
            decrement(&mut running.principals, &self.principal);
            decrement(&mut running.habilitations, &self.habilitation);
        }
        self.admission.released.notify_waiters();
    }
}

fn decrement(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// A lane slot, released when dropped.
pub type Slot = OwnedSemaphorePermit;

impl Admission {
    pub fn new(limits: &LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            per_principal: limits.queries_per_principal,
            per_habilitation: limits.queries_per_habilitation,
            share_wait: Duration::from_millis(limits.share_wait_ms),
            released: Notify::new(),
            queue_timeout: Duration::from_secs(limits.queue_timeout_secs),
            heavy: Arc::new(Semaphore::new(limits.max_concurrent_queries)),
            heavy_slots: limits.max_concurrent_queries,
            cheap: Arc::new(Semaphore::new(limits.cheap_query_slots)),
            cheap_slots: limits.cheap_query_slots,
            running: Mutex::new(Running::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place in `principal`'s and `habilitation`'s shares, waiting up to the share
    /// grace for one to be given back, or says why not.
    pub async fn admit_within_grace(
        self: &Arc<Self>,
        principal: &str,
        habilitation: &str,
    ) -> Result<Share, Busy> {
        let deadline = tokio::time::Instant::now() + self.share_wait;
        loop {
            // Registered before the attempt, so a share given back in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.admit(principal, habilitation) {
                Err(busy @ (Busy::Principal(_) | Busy::Habilitation(..))) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(busy);
                    }
                }
                other => return other,
            }
        }
    }

    /// Takes a place in `principal`'s and `habilitation`'s shares now, or says why not.
    pub fn admit(self: &Arc<Self>, principal: &str, habilitation: &str) -> Result<Share, Busy> {
        let mut running = self.lock();
        let mine = running.principals.get(principal).copied().unwrap_or(0);
        // SECURITY (availability): one principal's queries at once are bounded, so one caller
        // cannot take every slot of the hub.
        if mine >= self.per_principal {
            return Err(Busy::Principal(self.per_principal));
        }
        let theirs = running
            .habilitations
            .get(habilitation)
            .copied()
            .unwrap_or(0);
        if theirs >= self.per_habilitation {
            return Err(Busy::Habilitation(
                habilitation.to_string(),
                self.per_habilitation,
            ));
        }
        *running.principals.entry(principal.to_string()).or_default() += 1;
        *running
            .habilitations
            .entry(habilitation.to_string())
            .or_default() += 1;
        Ok(Share {
            admission: self.clone(),
            principal: principal.to_string(),
            habilitation: habilitation.to_string(),
        })
    }

    /// A slot of the cheap lane, waited for up to the queue timeout.
    pub async fn cheap_slot(&self) -> Result<Slot, Busy> {
        self.slot(&self.cheap, "cheap").await
    }

    /// A slot of the heavy lane, waited for up to the queue timeout.
    pub async fn heavy_slot(&self) -> Result<Slot, Busy> {
        self.slot(&self.heavy, "heavy").await
    }

    /// A slot of the heavy lane if one is free now.
    pub fn try_heavy_slot(&self) -> Option<Slot> {
        self.heavy.clone().try_acquire_owned().ok()
    }

    async fn slot(&self, lane: &Arc<Semaphore>, name: &'static str) -> Result<Slot, Busy> {
        match tokio::time::timeout(self.queue_timeout, lane.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(Busy::ShuttingDown),
            Err(_) => Err(Busy::Lane(name, self.queue_timeout.as_secs())),
        }
    }

    /// Queries running in the (cheap, heavy) lanes.
    pub fn running(&self) -> (usize, usize) {
        (
            self.cheap_slots
                .saturating_sub(self.cheap.available_permits()),
            self.heavy_slots
                .saturating_sub(self.heavy.available_permits()),
        )
    }

    /// Slots of the (cheap, heavy) lanes.
    pub fn slots(&self) -> (usize, usize) {
        (self.cheap_slots, self.heavy_slots)
    }

    /// Refuses every slot from now on (shutdown).
    pub fn close(&self) {
        self.cheap.close();
        self.heavy.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            queries_per_principal: 2,
            queries_per_habilitation: 3,
            share_wait_ms: 100,
            max_concurrent_queries: 1,
            queue_timeout_secs: 0,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn one_principal_cannot_take_more_than_its_share() {
        let admission = Admission::new(&limits());
        let a = admission.admit("alice", "projet-diabete").unwrap();
        let _b = admission.admit("alice", "projet-diabete").unwrap();
        assert_eq!(
            admission.admit("alice", "projet-diabete").unwrap_err(),
            Busy::Principal(2)
        );
        // Another member of the same habilitation still gets in, up to its share.
        let _c = admission.admit("bob", "projet-diabete").unwrap();
        assert!(matches!(
            admission.admit("carol", "projet-diabete").unwrap_err(),
            Busy::Habilitation(..)
        ));
        // Other habilitations are untouched.
        let _d = admission.admit("carol", "projet-emploi").unwrap();
        drop(a);
        let _e = admission.admit("alice", "projet-diabete").unwrap();
    }

    /// A burst waits for a share given back within the grace; past it, 503.
    #[tokio::test]
    async fn a_share_given_back_within_the_grace_admits_the_next_query() {
        let admission = Admission::new(&limits());
        let a = admission.admit("alice", "h").unwrap();
        let _b = admission.admit("alice", "h").unwrap();
        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit_within_grace("alice", "h").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        let _c = waiting
            .await
            .unwrap()
            .expect("admitted once a share came back");
        let started = std::time::Instant::now();
        assert_eq!(
            admission
                .admit_within_grace("alice", "h")
                .await
                .unwrap_err(),
            Busy::Principal(2)
        );
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "after the grace"
        );
    }

    #[tokio::test]
    async fn a_full_lane_answers_busy_after_the_queue_timeout() {
        let admission = Admission::new(&limits());
        let slot = admission.heavy_slot().await.unwrap();
        assert_eq!(admission.running(), (0, 1));
        assert_eq!(
            admission.heavy_slot().await.unwrap_err(),
            Busy::Lane("heavy", 0)
        );
        drop(slot);
        assert!(admission.heavy_slot().await.is_ok());
        assert!(admission.cheap_slot().await.is_ok(), "lanes are separate");
    }
}
