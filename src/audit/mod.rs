//! Audit: one tamper-evident record for every decision, written before the answer leaves.
//!
//! Owns: audit events ([`AuditEvent`]), the hash-chained append-only segment files with a
//! signed head, retention (whole segments, with a signed anchor), `passerelle audit verify`.
//!
//! Must never: hold result rows, tokens or raw identifiers (lookup keys are pseudonymised by
//! the caller in an audit-only domain: [`AuditKey`]), or let a request succeed when its record
//! cannot be written ([`AuditLog::record`] returns only once the record is durable; after a
//! write failure [`AuditLog::healthy`] is false and every `record` fails until the writer has
//! cut the failed batch back and written, on its own, a record of the outage and the signed
//! head — or until restart when the trail was removed or replaced behind it).
//!
//! # Using it (server, lookups, queries)
//!
//! ```text
//! let audit = AuditLog::open(&config.audit)?;          // at start (blocking file I/O)
//! let receipt = audit.record(event).await?;            // before the answer leaves; Err → 503
//! if !audit.healthy() { /* readiness down */ }
//! let audit = AuditLog::null();                        // benchmarks: records nothing
//! ```
//!
//! # On disk (`audit.dir`)
//!
//! - `audit-<first seq, 12 digits>.jsonl`: segments; one JSON object per line: `seq` (from 1,
//!   no gaps across segments), `prev` (hex SHA-256 of the previous record's line bytes, newline
//!   excluded; [`chain::GENESIS`] for seq 1; the first record of a segment chains to the last of
//!   the one before), then the [`AuditEvent`] fields.
//! - `head.json`: the signed head `{format, seq, hash, segment, time, key, signature}`,
//!   rewritten atomically (temporary file, fsync, rename, fsync of the folder) at every commit;
//!   the Ed25519 signature covers [`chain::Signed::canonical_bytes`]. A removed tail, a
//!   modified last record or a replaced head no longer matches.
//! - `anchor.json`: same shape, signed, written by retention before whole old segments are
//!   removed: the seq and hash of the last expired record, where verification starts.
//! - `audit.pub`: the public key (hex). Verification can pin another copy (`--public-key`,
//!   e.g. the hub's `keys/audit-signing.pub`).
//!
//! # Group commit and latency
//!
//! One writer thread takes events from a bounded queue: it takes everything already waiting
//! (at most [`MAX_BATCH`] events, and waits up to `commit_interval_ms` for more, 0 by
//! default: it commits as soon as the queue is empty), appends them, fsyncs the segment once,
//! acknowledges every event of the batch, then rewrites the signed head. So a record waits at
//! most for the batch being written plus its own: two fsync rounds. A batch of records nobody
//! waits for (outcomes, handed over after their answer left) waits up to
//! [`writer::LINGER`] for one somebody waits for: a client's queries one after another then
//! cost one commit each (the outcome of one with the decision of the next), not two.
//!
//! # Write failures (a full disk)
//!
//! A batch that cannot be appended and fsynced is cut back to the last acknowledged record
//! (the segment truncated, segments it started removed) before its requests get an error, so a
//! refused request leaves no record. The trail is then unhealthy: every `record` fails at once
//! (503, readiness down). Every second the writer checks for room (a 256 KiB scratch file,
//! written, fsynced, removed), then tries to write a record of kind `audit_unavailable`
//! ("audit trail unavailable from … to …") and the signed head; once all are on disk it is
//! healthy again, that record first. A segment or folder removed or replaced
//! behind the writer cannot be cut back: the trail stays unhealthy until restart.

mod chain;
mod event;
mod journal;
mod key;
mod table;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::AuditConfig;

pub use chain::{
    ANCHOR_FILE, GENESIS, HEAD_FILE, PUBLIC_KEY_FILE, Problem, Signed, VerifyReport, line_hash,
    parse_segment_name, segment_name, verify_dir, verify_segment,
};
pub use event::{
    AuditEvent, AuditHabilitation, AuditKey, AuditKeyError, AuditKind, AuditPrincipal, AuditStage,
    ColumnAccess, DatasetAccess, KeyVersion, LookupTrace, MAX_SQL_BYTES, Outcome, SqlText,
};
pub use journal::{TrailVerdict, journal, journal_of_key, read_events, verify_trails};
pub use key::{PublicKey, SigningKey, SigningKeyError, public_key_path};
pub use table::{events_batch, events_schema};
pub use writer::MAX_BATCH;

/// Proof that a record is durable: its place in the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
}

/// Why the trail cannot be opened or written. Never contains key material or event content.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("audit: {path}: {reason}")]
    Io { path: String, reason: String },
    #[error(transparent)]
    Key(#[from] SigningKeyError),
    #[error("audit trail {dir} is damaged: {problem} (run `passerelle audit verify {dir}`)")]
    Damaged { dir: String, problem: Problem },
    #[error("audit trail {0} is already open by another writer")]
    Locked(String),
    #[error(
        "audit trail unavailable after a write failure: nothing is recorded until it can be written again"
    )]
    Unhealthy,
    #[error("audit writer stopped")]
    Closed,
    #[error("audit: {0}")]
    Config(String),
    #[error("audit: event could not be encoded: {0}")]
    Encode(String),
}

/// The audit trail: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::Null { .. } => f.write_str("AuditLog(null)"),
            Inner::Writer(w) => write!(f, "AuditLog(healthy: {})", w.healthy()),
        }
    }
}

enum Inner {
    Null { next: AtomicU64 },
    Writer(WriterHandle),
}

struct WriterHandle {
    tx: Option<mpsc::Sender<writer::Pending>>,
    healthy: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterHandle {
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what it holds; joining it
        // releases the trail's lock before a new `open`.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn event_id(event: &AuditEvent) -> &str {
    &event.request_id
}

/// Largest `commit_interval_ms` accepted.
pub const MAX_COMMIT_INTERVAL_MS: u64 = 1000;

impl AuditLog {
    /// Opens the trail of `config.trail_dir()` (created if missing) with the key of
    /// `config.signing_key_file`: verifies the existing chain and signed head, repairs what a
    /// crash leaves (an incomplete last line; records after the head are adopted and signed),
    /// expires old segments, then starts the writer. Refuses a damaged trail, a key readable
    /// by group or others, a key that is not the trail's, and a trail another writer holds.
    /// Blocking file I/O: call it at start-up.
    pub fn open(config: &AuditConfig) -> Result<AuditLog, AuditError> {
        if config.segment_max_bytes == 0 || config.segment_max_age_secs == 0 {
            return Err(AuditError::Config(
                "segment_max_bytes and segment_max_age_secs must be at least 1".into(),
            ));
        }
        if config.commit_interval_ms > MAX_COMMIT_INTERVAL_MS {
            return Err(AuditError::Config(format!(
                "commit_interval_ms must be at most {MAX_COMMIT_INTERVAL_MS}"
            )));
        }
        let key = SigningKey::load_file(&config.signing_key_file)?;
        let settings = writer::Settings {
            segment_max_bytes: config.segment_max_bytes,
            segment_max_age: chrono::Duration::seconds(
                i64::try_from(config.segment_max_age_secs).unwrap_or(i64::MAX / 1000),
            ),
            retention_months: config.retention_months,
            commit_interval: Duration::from_millis(config.commit_interval_ms),
            retry_interval: writer::RETRY_INTERVAL,
        };
        let dir = config.trail_dir();
        if let Some(node) = &config.node {
            // SECURITY: one layout or the other: the nodes' trails side by side, never beside
            // a trail of the folder's own (which verification would then have to choose).
            if journal::is_trail(&config.dir) {
                return Err(AuditError::Config(format!(
                    "audit.node = {node:?}, but audit.dir holds a trail of its own: move it into a folder of its own name (a node of the past) first"
                )));
            }
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(AuditError::Config(format!(
                    "audit.node = {node:?}: its trail folder is a symbolic link (verification does not follow links)"
                )));
            }
        }
        let trail = writer::Trail::open(&dir, key, settings)?;
        Self::start(trail, &dir)
    }

    /// Starts the writer thread on an opened trail.
    fn start(trail: writer::Trail, dir: &std::path::Path) -> Result<AuditLog, AuditError> {
        let (tx, rx) = mpsc::channel(writer::QUEUE);
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let thread = std::thread::Builder::new()
            .name("passerelle-audit".into())
            .spawn(move || writer::run(trail, rx, flag))
            .map_err(|e| AuditError::Io {
                path: dir.display().to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(AuditLog {
            inner: Arc::new(Inner::Writer(WriterHandle {
                tx: Some(tx),
                healthy,
                thread: Some(thread),
            })),
        })
    }

    /// A trail that records nothing and acknowledges at once (benchmarks, tests). Receipts
    /// count from 1.
    pub fn null() -> AuditLog {
        AuditLog {
            inner: Arc::new(Inner::Null {
                next: AtomicU64::new(1),
            }),
        }
    }

    /// Records `event`; returns once it is on disk (fsynced, signed head rewritten). An `Err`
    /// means the request must not be answered (503).
    pub async fn record(&self, mut event: AuditEvent) -> Result<Receipt, AuditError> {
        match &*self.inner {
            Inner::Null { next } => Ok(Receipt {
                seq: next.fetch_add(1, Ordering::Relaxed),
            }),
            Inner::Writer(writer) => {
                if !writer.healthy() {
                    return Err(AuditError::Unhealthy);
                }
                if let Some(sql) = event.sql.as_mut() {
                    sql.enforce_bound();
                }
                let sender = writer.tx.as_ref().ok_or(AuditError::Closed)?;
                let (reply, answer) = oneshot::channel();
                sender
                    .send(writer::Pending { event, reply })
                    .await
                    .map_err(|_| AuditError::Closed)?;
                answer.await.map_err(|_| AuditError::Closed)?
            }
        }
    }

    /// Hands `event` to the writer without waiting for it to be durable: for outcome records,
    /// which are group-committed with the next batch, and for a guard that runs in `Drop`
    /// (client gone, panic). A record that cannot be queued (trail down, writer stopped) is
    /// counted and logged; its decision record is on the trail already.
    pub fn record_detached(&self, mut event: AuditEvent) {
        let Inner::Writer(writer) = &*self.inner else {
            return;
        };
        let lost = |why: &str| {
            metrics::counter!("passerelle_audit_outcomes_lost_total").increment(1);
            tracing::error!(request_id = %event_id(&event), why, "audit outcome record not written");
        };
        if !writer.healthy() {
            return lost("trail unavailable");
        }
        let Some(sender) = writer.tx.as_ref() else {
            return lost("writer stopped");
        };
        if let Some(sql) = event.sql.as_mut() {
            sql.enforce_bound();
        }
        let (reply, _) = oneshot::channel();
        match sender.try_send(writer::Pending { event, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(pending)) => {
                // The queue is full: wait for room on a task of the current runtime.
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        let sender = sender.clone();
                        handle.spawn(async move {
                            if sender.send(pending).await.is_err() {
                                metrics::counter!("passerelle_audit_outcomes_lost_total")
                                    .increment(1);
                            }
                        });
                    }
                    Err(_) => {
                        metrics::counter!("passerelle_audit_outcomes_lost_total").increment(1);
                        tracing::error!("audit outcome record not written: queue full");
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("passerelle_audit_outcomes_lost_total").increment(1);
                tracing::error!("audit outcome record not written: writer stopped");
            }
        }
    }

    /// False from a write failure until the writer has recorded the outage (and for good when
    /// the trail was removed or replaced, or the writer stopped): answer 503, drop readiness.
    pub fn healthy(&self) -> bool {
        match &*self.inner {
            Inner::Null { .. } => true,
            Inner::Writer(writer) => writer.healthy(),
        }
    }
}
