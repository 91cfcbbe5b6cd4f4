//! The single writer: receives events over a channel, appends a batch, fsyncs it,
//! acknowledges every event of the batch (group commit: each answer leaves once its record is
//! durable), then rewrites the signed head before taking the next batch. A crash between the
//! acknowledgement and the head leaves records after the head; reopening the trail verifies
//! their chain and signs them (`Trail::open`), as it always did for a writer stopped early.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Months, Utc};
use tokio::sync::{mpsc, oneshot};

use super::chain::{
    self, ANCHOR_FILE, ANCHOR_FORMAT, HEAD_FILE, HEAD_FORMAT, Mode, PUBLIC_KEY_FILE, SegmentInfo,
    Signed,
};
use super::event::AuditEvent;
use super::key::SigningKey;
use super::{AuditError, Receipt};

/// Most events written by one commit.
pub const MAX_BATCH: usize = 1024;
/// Events waiting for the writer before `record` waits for room.
pub(crate) const QUEUE: usize = 8192;
/// How often, at most, expired segments are looked for outside rotations.
const RETENTION_CHECK: Duration = Duration::from_secs(3600);

pub(crate) struct Pending {
    pub event: AuditEvent,
    pub reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

/// Rotation, retention and batching settings, checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub segment_max_bytes: u64,
    pub segment_max_age: chrono::Duration,
    pub retention_months: u32,
    pub commit_interval: Duration,
}

/// The segment being appended to.
struct Current {
    file: File,
    info: SegmentInfo,
}

/// The trail as the writer holds it.
pub(crate) struct Trail {
    dir: PathBuf,
    key: SigningKey,
    settings: Settings,
    /// Closed segments still on disk, oldest first.
    closed: VecDeque<SegmentInfo>,
    current: Option<Current>,
    last_seq: u64,
    last_hash: String,
    last_retention: Instant,
    /// A segment was started since the last `seal` (retention is checked then).
    rotated: bool,
    /// The last seq the signed head on disk covers.
    sealed_seq: u64,
    _lock: File,
}

fn io_error(path: &Path, e: &std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Trail {
    /// Opens (or starts) the trail in `dir`: takes the lock, verifies the chain and the head,
    /// repairs what a crash may leave (a torn last line, signed records after the head), and
    /// expires old segments.
    pub fn open(dir: &Path, key: SigningKey, settings: Settings) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        let lock_path = dir.join(chain::LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, &e))?;
        lock.try_lock()
            .map_err(|_| AuditError::Locked(dir.display().to_string()))?;

        let public = key.public_key();
        let public_path = dir.join(PUBLIC_KEY_FILE);
        match std::fs::read_to_string(&public_path) {
            Ok(text) => {
                if super::key::PublicKey::from_hex(&text) != Some(public) {
                    return Err(AuditError::Config(format!(
                        "{} does not match the signing key: the key was changed (a trail is signed by one key; start a new trail folder)",
                        public_path.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                chain::write_atomic(
                    dir,
                    PUBLIC_KEY_FILE,
                    format!("{}\n", public.to_hex()).as_bytes(),
                )
                .map_err(|e| io_error(&public_path, &e))?;
            }
            Err(e) => return Err(io_error(&public_path, &e)),
        }

        let damaged = |problem| AuditError::Damaged {
            dir: dir.display().to_string(),
            problem,
        };
        let mut scan = chain::scan(dir, &public, Mode::Recover).map_err(damaged)?;
        if let Some((path, len)) = &scan.torn {
            tracing::warn!(segment = %path.display(), "audit: dropping an incomplete last line (never acknowledged)");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_error(path, &e))?;
            file.set_len(*len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, &e))?;
        }
        for path in &scan.expired {
            std::fs::remove_file(path).map_err(|e| io_error(path, &e))?;
        }
        let mut segments: VecDeque<SegmentInfo> = scan.segments.drain(..).collect();
        let current = match segments.pop_back() {
            Some(info) => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&info.path)
                    .map_err(|e| io_error(&info.path, &e))?;
                Some(Current { file, info })
            }
            None => None,
        };
        let mut trail = Self {
            dir: dir.to_path_buf(),
            key,
            settings,
            closed: segments,
            current,
            last_seq: scan.last_seq,
            last_hash: scan.last_hash,
            last_retention: Instant::now(),
            rotated: false,
            sealed_seq: scan.last_seq,
            _lock: lock,
        };
        if scan.head.is_none() || scan.unsigned_tail > 0 {
            if scan.unsigned_tail > 0 {
                tracing::warn!(
                    records = scan.unsigned_tail,
                    "audit: adopting records written after the last signed head (the previous writer stopped before signing them)"
                );
            }
            trail.write_head()?;
        }
        trail.expire();
        Ok(trail)
    }

    fn write_head(&self) -> Result<(), AuditError> {
        let segment = self
            .current
            .as_ref()
            .filter(|c| c.info.last_seq > 0)
            .map(|c| c.info.name.clone())
            .or_else(|| self.closed.back().map(|s| s.name.clone()))
            .unwrap_or_default();
        let head = Signed::sign(
            HEAD_FORMAT,
            self.last_seq,
            &self.last_hash,
            &segment,
            &self.key,
        );
        let mut bytes = serde_json::to_vec(&head).map_err(|e| AuditError::Encode(e.to_string()))?;
        let path = self.dir.join(HEAD_FILE);
        // The head fills one fixed-size slot (JSON, then spaces: still one JSON document), so
        // each commit overwrites it in place with one write and one fdatasync instead of a
        // temporary file, two fsyncs and a rename. A slot is one 512-byte sector, written
        // whole; the first head of a trail (or an oversized one) goes through `write_atomic`.
        if bytes.len() < HEAD_SLOT {
            bytes.resize(HEAD_SLOT - 1, b' ');
            bytes.push(b'\n');
            if self.head_in_place(&path, &bytes).is_ok() {
                return Ok(());
            }
        }
        chain::write_atomic(&self.dir, HEAD_FILE, &bytes).map_err(|e| io_error(&path, &e))
    }

    /// Overwrites an existing head of exactly one slot, then makes it durable.
    fn head_in_place(&self, path: &std::path::Path, slot: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Opened by path at each commit: a head replaced behind the writer's back is
        // overwritten, never left in place while the writer updates an unlinked file.
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        if file.metadata()?.len() != slot.len() as u64 {
            return Err(std::io::Error::other("head is not one slot"));
        }
        file.write_all_at(slot, 0)?;
        file.sync_data()
    }

    /// Whether the record about to be written (`len` bytes, timed `time`) goes to a new segment.
    fn needs_rotation(&self, len: u64, time: DateTime<Utc>) -> bool {
        let Some(current) = &self.current else {
            return true;
        };
        if current.info.last_seq == 0 {
            return false;
        }
        let too_big = current.info.len + len > self.settings.segment_max_bytes;
        let too_old = current
            .info
            .first_time
            .is_some_and(|first| time - first >= self.settings.segment_max_age);
        too_big || too_old
    }

    /// Closes the current segment (fsynced) and starts `audit-<next seq>.jsonl`.
    fn rotate(&mut self) -> Result<(), AuditError> {
        if let Some(current) = self.current.take() {
            current
                .file
                .sync_data()
                .map_err(|e| io_error(&current.info.path, &e))?;
            self.closed.push_back(current.info);
        }
        let first_seq = self.last_seq + 1;
        let name = chain::segment_name(first_seq);
        let path = self.dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error(&path, &e))?;
        chain::sync_dir(&self.dir).map_err(|e| io_error(&self.dir, &e))?;
        self.current = Some(Current {
            file,
            info: SegmentInfo {
                name,
                path,
                first_seq,
                last_seq: 0,
                last_hash: String::new(),
                first_time: None,
                last_time: None,
                len: 0,
            },
        });
        Ok(())
    }

    /// Appends the events and fsyncs them. Returns each event's seq (or why it could not be
    /// encoded). An `Err` means the disk state is unknown: the trail is unhealthy. The caller
    /// acknowledges, then calls [`Trail::seal`] before the next commit.
    pub fn commit(
        &mut self,
        events: &[AuditEvent],
    ) -> Result<Vec<Result<u64, AuditError>>, AuditError> {
        let mut results = Vec::with_capacity(events.len());
        let mut buffer: Vec<u8> = Vec::new();
        let mut rotated = false;
        for event in events {
            let seq = self.last_seq + 1;
            let line = match chain::encode_record(seq, &self.last_hash, event) {
                Ok(line) => line,
                Err(e) => {
                    results.push(Err(AuditError::Encode(e.to_string())));
                    continue;
                }
            };
            if self.needs_rotation(line.len() as u64, event.time) {
                self.flush(&mut buffer)?;
                self.rotate()?;
                rotated = true;
            }
            let Some(current) = self.current.as_mut() else {
                return Err(AuditError::Closed);
            };
            let hash = chain::line_hash(&line[..line.len() - 1]);
            current.info.len += line.len() as u64;
            current.info.last_seq = seq;
            current.info.last_hash.clone_from(&hash);
            if current.info.first_time.is_none() {
                current.info.first_time = Some(event.time);
            }
            current.info.last_time = Some(event.time);
            buffer.extend_from_slice(&line);
            self.last_seq = seq;
            self.last_hash = hash;
            results.push(Ok(seq));
        }
        if buffer.is_empty() && !rotated {
            return Ok(results);
        }
        self.flush(&mut buffer)?;
        if let Some(current) = &self.current {
            current
                .file
                .sync_data()
                .map_err(|e| io_error(&current.info.path, &e))?;
            // SECURITY: a record is durable only in the trail: a segment that was deleted or
            // replaced behind the writer (its inode no longer linked) holds nothing anyone
            // will read, so the batch fails and the trail turns unhealthy.
            use std::os::unix::fs::MetadataExt;
            let linked = current
                .file
                .metadata()
                .map_err(|e| io_error(&current.info.path, &e))?
                .nlink();
            if linked == 0 {
                return Err(io_error(
                    &current.info.path,
                    &std::io::Error::other("the segment was removed or replaced"),
                ));
            }
        }
        self.rotated |= rotated;
        Ok(results)
    }

    /// Signs and writes the head over everything committed (one write, one fdatasync), and
    /// expires old segments when due. An `Err` makes the trail unhealthy.
    pub fn seal(&mut self) -> Result<(), AuditError> {
        // (A batch whose every event failed to encode wrote nothing: the head stands.)
        if self.sealed_seq != self.last_seq {
            self.write_head()?;
            self.sealed_seq = self.last_seq;
        }
        if std::mem::take(&mut self.rotated) || self.last_retention.elapsed() >= RETENTION_CHECK {
            self.expire();
        }
        Ok(())
    }

    fn flush(&mut self, buffer: &mut Vec<u8>) -> Result<(), AuditError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let Some(current) = self.current.as_mut() else {
            return Err(AuditError::Closed);
        };
        current
            .file
            .write_all(buffer)
            .map_err(|e| io_error(&current.info.path, &e))?;
        buffer.clear();
        Ok(())
    }

    /// Removes closed segments whose last record is older than the retention, after signing an
    /// anchor on the last expired record. Failures are logged, never fatal: nothing is removed
    /// unless the anchor is on disk first.
    fn expire(&mut self) {
        self.last_retention = Instant::now();
        if self.settings.retention_months == 0 {
            return;
        }
        let Some(cutoff) =
            Utc::now().checked_sub_months(Months::new(self.settings.retention_months))
        else {
            return;
        };
        let count = self
            .closed
            .iter()
            .take_while(|s| s.last_time.is_some_and(|t| t < cutoff))
            .count();
        let Some(last) = count.checked_sub(1).and_then(|i| self.closed.get(i)) else {
            return;
        };
        let anchor = Signed::sign(
            ANCHOR_FORMAT,
            last.last_seq,
            &last.last_hash,
            &last.name,
            &self.key,
        );
        let written = serde_json::to_vec(&anchor)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                chain::write_atomic(&self.dir, ANCHOR_FILE, &bytes).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::error!(error = %e, "audit: cannot write the retention anchor; nothing expired");
            return;
        }
        for segment in self.closed.drain(..count) {
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::error!(segment = %segment.name, error = %e.kind(), "audit: cannot remove an expired segment");
            }
        }
        if let Err(e) = chain::sync_dir(&self.dir) {
            tracing::error!(error = %e.kind(), "audit: cannot fsync the trail folder");
        }
        tracing::info!(
            up_to_seq = anchor.seq,
            "audit: expired segments removed (signed anchor kept)"
        );
    }
}

/// Sets the health flag to false when the writer ends, whatever the reason.
struct HealthGuard(Arc<AtomicBool>);

impl Drop for HealthGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Size of the signed head file (one disk sector): see `write_head`.
const HEAD_SLOT: usize = 512;

/// The writer thread's loop: batches, commits, acknowledges.
pub(crate) fn run(mut trail: Trail, mut rx: mpsc::Receiver<Pending>, healthy: Arc<AtomicBool>) {
    let guard = HealthGuard(healthy);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "audit: cannot start the writer");
            return;
        }
    };
    let interval = trail.settings.commit_interval;
    runtime.block_on(async {
        let mut failed = false;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + interval;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(mpsc::error::TryRecvError::Empty) if !interval.is_zero() => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(pending)) => batch.push(pending),
                            Ok(None) | Err(_) => break,
                        }
                    }
                    Err(_) => break,
                }
            }
            let (events, replies): (Vec<AuditEvent>, Vec<_>) =
                batch.into_iter().map(|p| (p.event, p.reply)).unzip();
            if failed {
                for reply in replies {
                    let _ = reply.send(Err(AuditError::Unhealthy));
                }
                continue;
            }
            match trail.commit(&events) {
                Ok(results) => {
                    // SECURITY: every record of the batch is durable (appended and fsynced):
                    // the answers may leave. The signed head follows before the next batch.
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result.map(|seq| Receipt { seq }));
                    }
                    if let Err(e) = trail.seal() {
                        failed = true;
                        guard.0.store(false, Ordering::Release);
                        tracing::error!(error = %e, "audit: head write failed; refusing every request until restart");
                    }
                }
                Err(e) => {
                    failed = true;
                    guard.0.store(false, Ordering::Release);
                    tracing::error!(error = %e, "audit: write failed; refusing every request until restart");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    });
}
