//! Requests without a valid token (missing, malformed, bad signature, unknown issuer, expired,
//! wrong audience…): counted and summarised in the audit trail, and rate limited per source,
//! so that a flood costs bounded disk and CPU yet leaves its evidence.
//!
//! Owns: the count per (source, reason) of the current window, written as one `auth_refused`
//! record each (`source`, `reason`, `count`, first time, span) when the window ends, and the
//! per-source budget (`limits.unauthenticated_per_minute`) past which a source gets 429 before
//! its token is read. A source is an IPv4 address or an IPv6 /64 (one host holds a whole /64).
//!
//! Must never: let memory grow with the number of sources (the table is bounded: beyond it,
//! new sources are counted under `other`), drop a count it accepted (the window's records are
//! written at shutdown too), or answer anything but the one refusal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::audit::{AuditEvent, AuditKind, AuditLog, Outcome};

/// Sources counted one by one in a window; beyond, they share the `other` line.
pub const MAX_SOURCES: usize = 4096;

/// The reason of a request refused because its source spent its budget.
pub const RATE_LIMITED: &str = "rate_limited";

/// The source a request is counted against: an IPv4 address, or the /64 of an IPv6 one.
pub fn source_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

struct Tally {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// The refusals of the current window and the per-source budget.
pub struct Refusals {
    tallies: Mutex<HashMap<(String, &'static str), Tally>>,
    /// Charged by refusals only: a valid token never spends a source's budget.
    budget: DefaultKeyedRateLimiter<String>,
    /// Sources that spent their budget, and until when they wait.
    blocked: Mutex<HashMap<String, Instant>>,
    /// How many sources `blocked` holds, read without its lock: a request with a valid token
    /// pays one atomic load while nobody is blocked.
    blocked_len: AtomicUsize,
}

impl Refusals {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            tallies: Mutex::new(HashMap::new()),
            budget: RateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
            blocked_len: AtomicUsize::new(0),
        }
    }

    /// Whether any source is waiting (when none is, [`Self::admit`] has nothing to check).
    pub fn any_blocked(&self) -> bool {
        self.blocked_len.load(Ordering::Relaxed) > 0
    }

    /// Whether `source` may be heard: `Err` (seconds to wait) while it has spent its budget
    /// of requests without a valid token.
    pub fn admit(&self, source: &str) -> Result<(), u64> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        match blocked.get(source) {
            Some(until) if *until > Instant::now() => {
                Err(until.duration_since(Instant::now()).as_secs().max(1))
            }
            Some(_) => {
                blocked.remove(source);
                self.blocked_len.store(blocked.len(), Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Charges `source`'s budget for a request that leaves state behind before anyone is known
    /// (a console or journal sign-in started: a pending sign-in stored): `Err` (seconds to
    /// wait) when the source waits already or has just spent its budget, shared with its
    /// refusals.
    pub fn charge(&self, source: &str) -> Result<(), u64> {
        self.admit(source)?;
        match self.spend(source) {
            Some(wait) => Err(wait.as_secs().max(1)),
            None => Ok(()),
        }
    }

    /// Spends one unit of `source`'s budget; once spent, the source waits (see
    /// [`Self::admit`]): how long.
    fn spend(&self, source: &str) -> Option<Duration> {
        let not_until = self.budget.check_key(&source.to_string()).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded like the tallies: past it, a source is summarised but not blocked.
        if blocked.len() < MAX_SOURCES || blocked.contains_key(source) {
            blocked.insert(source.to_string(), Instant::now() + wait);
            self.blocked_len.store(blocked.len(), Ordering::Relaxed);
        }
        Some(wait)
    }

    /// Counts one refusal of `source` for `reason` in the current window, and charges the
    /// source's budget (spent: it waits, see [`Self::admit`]).
    pub fn count(&self, source: &str, reason: &'static str) {
        let key = (source.to_string(), reason);
        if reason != RATE_LIMITED {
            self.spend(source);
        }
        let now = Utc::now();
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let key = if tallies.len() >= MAX_SOURCES && !tallies.contains_key(&key) {
            ("other".to_string(), reason)
        } else {
            key
        };
        let tally = tallies.entry(key).or_insert(Tally {
            count: 0,
            first: now,
            last: now,
        });
        tally.count += 1;
        tally.last = now;
    }

    /// The window's records (one per source and reason), emptying it; forgets sources whose
    /// budget is whole again.
    pub fn take(&self) -> Vec<AuditEvent> {
        let tallies = std::mem::take(&mut *self.tallies.lock().unwrap_or_else(|p| p.into_inner()));
        self.budget.retain_recent();
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.retain(|_, until| *until > now);
        self.blocked_len.store(blocked.len(), Ordering::Relaxed);
        drop(blocked);
        let mut events: Vec<AuditEvent> = tallies
            .into_iter()
            .map(|((source, reason), tally)| {
                let mut event = AuditEvent::new(
                    AuditKind::AuthRefused,
                    uuid::Uuid::new_v4().to_string(),
                    "requests without a valid token",
                )
                .with_outcome(Outcome::Refused, Some(reason));
                event.time = tally.first;
                event.source = Some(source);
                event.count = Some(tally.count);
                event.duration_ms =
                    u64::try_from((tally.last - tally.first).num_milliseconds()).unwrap_or(0);
                event
            })
            .collect();
        events.sort_by_key(|e| e.time);
        events
    }

    /// Writes the window's records. A record that cannot be written is logged and counted:
    /// the trail is then unavailable and every request is refused meanwhile.
    pub async fn flush(&self, audit: &AuditLog) {
        for event in self.take() {
            if let Err(e) = audit.record(event).await {
                metrics::counter!("passerelle_audit_refusal_summaries_lost_total").increment(1);
                tracing::error!(error = %e, "audit: a summary of refused requests was not written");
            }
        }
    }
}

/// Flushes `refusals` into `audit` every `window`, for as long as the runtime runs.
pub fn spawn_summaries(
    refusals: std::sync::Arc<Refusals>,
    audit: AuditLog,
    window: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(window);
        tick.tick().await;
        loop {
            tick.tick().await;
            refusals.flush(&audit).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(source_of("203.0.113.7".parse().unwrap()), "203.0.113.7");
        assert_eq!(
            source_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            source_of("2001:db8:1:2::1".parse().unwrap()),
            source_of("2001:db8:1:2:ffff::9".parse().unwrap())
        );
        assert_eq!(source_of("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn a_window_is_one_record_per_source_and_reason_and_stays_bounded() {
        let refusals = Refusals::new(1_000_000);
        for _ in 0..1000 {
            refusals.count("203.0.113.7", "bad_signature");
        }
        refusals.count("203.0.113.7", "missing");
        for i in 0..(MAX_SOURCES + 100) {
            refusals.count(&format!("10.0.{}.{}", i / 256, i % 256), "expired");
        }
        let events = refusals.take();
        assert_eq!(
            events.len(),
            MAX_SOURCES + 1,
            "bounded, the rest under `other`"
        );
        let flood = events
            .iter()
            .find(|e| {
                e.source.as_deref() == Some("203.0.113.7")
                    && e.reason.as_deref() == Some("bad_signature")
            })
            .unwrap();
        assert_eq!(flood.count, Some(1000));
        let other = events
            .iter()
            .find(|e| e.source.as_deref() == Some("other"))
            .unwrap();
        assert_eq!(other.count, Some(102));
        let total: u64 = events.iter().filter_map(|e| e.count).sum();
        assert_eq!(total, 1001 + (MAX_SOURCES as u64) + 100);
        assert!(refusals.take().is_empty(), "the window starts again");
    }

    #[test]
    fn a_source_that_spends_its_budget_waits_and_others_do_not() {
        let refusals = Refusals::new(3);
        assert!(!refusals.any_blocked());
        for _ in 0..3 {
            assert!(refusals.admit("203.0.113.7").is_ok());
            refusals.count("203.0.113.7", "bad_signature");
        }
        // The fourth refusal finds the budget spent: from now on the source waits.
        refusals.count("203.0.113.7", "bad_signature");
        assert!(refusals.any_blocked());
        let wait = refusals.admit("203.0.113.7").unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            refusals.admit("203.0.113.8").is_ok(),
            "another source is not concerned"
        );
    }
}
