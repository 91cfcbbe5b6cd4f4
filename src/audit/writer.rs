//! The single writer: receives events over a channel, appends a batch, fsyncs it,
//! acknowledges every event of the batch (group commit: each answer leaves once its record is
//! durable), then rewrites the signed head before taking the next batch. A crash between the
//! acknowledgement and the head leaves records after the head; reopening the trail verifies
//! their chain and signs them (`Trail::open`), as it always did for a writer stopped early.
//!
//! Owns the trail's health. A batch that cannot be written (disk full, I/O error) is cut back
//! to the last acknowledged record (nothing of it stays on disk or in the chain), its requests
//! get an error (503), and the writer refuses every record while it probes the disk every
//! [`RETRY_INTERVAL`]: the probe is room for a scratch file ([`PROBE_BYTES`]), then the record
//! saying that the trail was unavailable from … to …, then the signed head; once all are on
//! disk the trail is healthy again. A trail removed
//! or replaced behind the writer, or a batch that cannot be cut back, is never recovered:
//! every record is refused until restart (and `open` then checks the trail).
//!
//! Must never: acknowledge a record that is not durable in the trail's own files, leave a
//! record whose request was refused in the chain, or accept a record while unhealthy.

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
use super::event::{AuditEvent, AuditKind, Outcome};
use super::key::SigningKey;
use super::{AuditError, Receipt};
use crate::private_fs as private;

/// Most events written by one commit.
pub const MAX_BATCH: usize = 1024;
/// Events waiting for the writer before `record` waits for room.
pub(crate) const QUEUE: usize = 8192;
/// How often, at most, expired segments are looked for outside rotations.
const RETENTION_CHECK: Duration = Duration::from_secs(3600);
/// How long records that nobody waits for (a query's outcome, group-committed after its
/// answer left) wait for a record somebody waits for before they are committed alone: a
/// client asking one query after another gets the outcome of one and the decision of the
/// next in one commit (one segment fdatasync and one head instead of two each). Their
/// decisions are durable already; a crash within this time loses outcomes, as it did
/// between an answer and its outcome's commit.
pub(crate) const LINGER: Duration = Duration::from_millis(10);
/// How often an unavailable trail is probed (room, then the outage record, then the head).
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Room a probe must find before the trail is written again: written, fsynced and removed
/// (`.probe`), so that a disk with a few bytes free does not make the trail flap between
/// available and unavailable.
const PROBE_BYTES: usize = 256 * 1024;
const PROBE_FILE: &str = ".probe";

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
    /// How often an unavailable trail is probed ([`RETRY_INTERVAL`]; shorter in tests).
    pub retry_interval: Duration,
}

/// Device and inode of a file: a file replaced behind the writer has another.
type FileId = (u64, u64);

fn file_id(file: &File, path: &Path) -> Result<FileId, AuditError> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(|e| io_error(path, &e))?;
    Ok((meta.dev(), meta.ino()))
}

fn dir_id(dir: &Path) -> Result<FileId, AuditError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| io_error(dir, &e))?;
    Ok((meta.dev(), meta.ino()))
}

/// The segment being appended to.
struct Current {
    file: File,
    info: SegmentInfo,
    id: FileId,
}

/// The trail as last acknowledged, taken before a commit: what [`Trail::rollback`] restores.
pub(crate) struct Mark {
    last_seq: u64,
    last_hash: String,
    closed: usize,
    current: Option<(SegmentInfo, FileId)>,
}

/// Write failures injected by unit tests (a full disk: part of a batch lands, then the write
/// fails; or the head cannot be written).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    pub fail_writes: AtomicBool,
    pub fail_head: AtomicBool,
}

/// The trail as the writer holds it.
pub(crate) struct Trail {
    dir: PathBuf,
    /// The folder's device and inode at open: a folder removed or replaced has others.
    dir_id: FileId,
    /// The lock file's device and inode. Held open, so no other file can take its inode: a
    /// folder removed and made again (whose own inode number a file system may reuse) has
    /// no lock file, or another one.
    lock_id: FileId,
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
    #[cfg(test)]
    pub(crate) faults: Arc<Faults>,
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
        // SECURITY: the trail's folders are created 0700 and its files 0600.
        private::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        private::warn_if_open(dir, "audit trail");
        let lock_path = dir.join(chain::LOCK_FILE);
        let lock = private::options()
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
                let id = file_id(&file, &info.path)?;
                Some(Current { file, info, id })
            }
            None => None,
        };
        let dir_id = dir_id(dir)?;
        let lock_id = file_id(&lock, &lock_path)?;
        let mut trail = Self {
            dir: dir.to_path_buf(),
            dir_id,
            lock_id,
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
            #[cfg(test)]
            faults: Arc::default(),
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
        #[cfg(test)]
        if self.faults.fail_head.load(Ordering::SeqCst) {
            return Err(io_error(
                &self.dir.join(HEAD_FILE),
                &std::io::Error::from(std::io::ErrorKind::StorageFull),
            ));
        }
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
        let file = private::options()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error(&path, &e))?;
        chain::sync_dir(&self.dir).map_err(|e| io_error(&self.dir, &e))?;
        let id = file_id(&file, &path)?;
        self.current = Some(Current {
            file,
            id,
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

    /// Whether the trail's folder has room again: [`PROBE_BYTES`] written to a scratch file
    /// and fsynced (a file system may report a full disk only then), then removed.
    fn has_room(&self) -> Result<(), AuditError> {
        let path = self.dir.join(PROBE_FILE);
        // Not zeros: a compressing or deduplicating file system would store nothing.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let bytes: Vec<u8> = (0..PROBE_BYTES / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        let written = private::options()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()));
        let removed = match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        written.and(removed).map_err(|e| io_error(&path, &e))
    }

    /// Whether the trail folder is still the one opened.
    fn check_folder(&self) -> Result<(), AuditError> {
        // SECURITY: a trail folder removed, moved or replaced behind the writer is not its
        // trail any more: never written again.
        let lock_path = self.dir.join(chain::LOCK_FILE);
        if dir_id(&self.dir)? != self.dir_id || dir_id(&lock_path)? != self.lock_id {
            return Err(io_error(
                &self.dir,
                &std::io::Error::other("the trail folder was replaced"),
            ));
        }
        Ok(())
    }

    /// Whether the folder and the current segment (by path) are still the ones the writer
    /// holds: checked before an unavailable trail is written again.
    pub fn check_identity(&self) -> Result<(), AuditError> {
        self.check_folder()?;
        if let Some(current) = &self.current {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&current.info.path)
                .map_err(|e| io_error(&current.info.path, &e))?;
            // SECURITY: a segment removed or replaced behind the writer is never written again.
            if (meta.dev(), meta.ino()) != current.id {
                return Err(io_error(
                    &current.info.path,
                    &std::io::Error::other("the segment was replaced"),
                ));
            }
        }
        Ok(())
    }

    /// The trail as acknowledged so far; take it before [`Trail::commit`].
    pub fn mark(&self) -> Mark {
        Mark {
            last_seq: self.last_seq,
            last_hash: self.last_hash.clone(),
            closed: self.closed.len(),
            current: self.current.as_ref().map(|c| (c.info.clone(), c.id)),
        }
    }

    /// Cuts the trail back to `mark` after a failed commit: segments the batch started are
    /// removed, the segment in use at the mark is truncated to its acknowledged length and
    /// fsynced, and the chain continues from the mark's last record. An `Err` means the trail
    /// cannot be trusted any more (folder or segment removed or replaced behind the writer, or
    /// the cut failed): nothing may be recorded until restart.
    pub fn rollback(&mut self, mark: Mark) -> Result<(), AuditError> {
        self.check_folder()?;
        let kept = mark.current.as_ref().map(|(info, _)| info.path.clone());
        let started: Vec<PathBuf> = self
            .closed
            .iter()
            .skip(mark.closed)
            .map(|s| s.path.clone())
            .chain(self.current.take().map(|c| c.info.path))
            .filter(|path| Some(path) != kept.as_ref())
            .collect();
        self.closed.truncate(mark.closed);
        self.last_seq = mark.last_seq;
        self.last_hash = mark.last_hash;
        for path in &started {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(path, &e)),
            }
        }
        if !started.is_empty() {
            chain::sync_dir(&self.dir).map_err(|e| io_error(&self.dir, &e))?;
        }
        if let Some((info, id)) = mark.current {
            // Opened by path: a folder or segment removed behind the writer fails here, and a
            // segment replaced by another file has another inode.
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&info.path)
                .map_err(|e| io_error(&info.path, &e))?;
            // SECURITY: only the writer's own segment is cut back and written again.
            if file_id(&file, &info.path)? != id {
                return Err(io_error(
                    &info.path,
                    &std::io::Error::other("the segment was replaced"),
                ));
            }
            // SECURITY: nothing of a batch that was not acknowledged stays on disk: its
            // requests were refused, so its records must not stay in the chain.
            file.set_len(info.len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(&info.path, &e))?;
            self.current = Some(Current { file, info, id });
        }
        Ok(())
    }

    /// Appends the events and fsyncs them. Returns each event's seq (or why it could not be
    /// encoded). After an `Err`, the caller cuts the trail back with [`Trail::rollback`] and
    /// the mark it took before. The caller acknowledges, then calls [`Trail::seal`] before the
    /// next commit.
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
        #[cfg(test)]
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            // A full disk: part of the batch lands, then the write fails.
            let half = buffer.len() / 2;
            current
                .file
                .write_all(&buffer[..half])
                .map_err(|e| io_error(&current.info.path, &e))?;
            return Err(io_error(
                &current.info.path,
                &std::io::Error::from(std::io::ErrorKind::StorageFull),
            ));
        }
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

/// What the writer knows of the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Batches are committed.
    Healthy,
    /// A write failed at `since` and was cut back; every record is refused until a probe
    /// writes the outage record (`recorded` once it is on disk) and the signed head.
    Unavailable {
        since: DateTime<Utc>,
        recorded: bool,
    },
    /// Removed or replaced behind the writer, or not cut back: refused until restart.
    Broken,
}

/// The writer thread's loop: batches, commits, acknowledges; while the trail is unavailable,
/// refuses and probes.
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
    let retry = trail.settings.retry_interval;
    runtime.block_on(async {
        let mut state = State::Healthy;
        loop {
            state = match state {
                State::Healthy => {
                    let Some(first) = rx.recv().await else { break };
                    let batch = gather(first, &mut rx, interval).await;
                    write_batch(&mut trail, batch, &guard.0)
                }
                State::Unavailable { since, recorded } => {
                    // SECURITY: nothing is recorded, so nothing is answered, until the probe
                    // has succeeded.
                    let next = tokio::time::Instant::now() + retry;
                    loop {
                        match tokio::time::timeout_at(next, rx.recv()).await {
                            Ok(Some(pending)) => refuse(pending),
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                    probe(&mut trail, since, recorded, &guard.0)
                }
                State::Broken => {
                    let Some(pending) = rx.recv().await else {
                        break;
                    };
                    refuse(pending);
                    State::Broken
                }
            };
        }
    });
}

/// `first`, then everything already waiting (at most [`MAX_BATCH`]), waiting up to
/// `interval` for more, and up to [`LINGER`] while nobody waits for the batch.
async fn gather(
    first: Pending,
    rx: &mut mpsc::Receiver<Pending>,
    interval: Duration,
) -> Vec<Pending> {
    let mut batch = vec![first];
    let now = tokio::time::Instant::now();
    let (deadline, lingering) = (now + interval, now + interval.max(LINGER));
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(mpsc::error::TryRecvError::Empty) => {
                // Records nobody waits for (outcomes handed over detached) wait for company:
                // the next request's decision then commits them with it, one commit for both
                // instead of one each. A record somebody waits for is never held back.
                let until = if batch.iter().all(|p| p.reply.is_closed()) {
                    lingering
                } else if !interval.is_zero() {
                    deadline
                } else {
                    break;
                };
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(pending)) => batch.push(pending),
                    Ok(None) | Err(_) => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        }
    }
    batch
}

fn refuse(pending: Pending) {
    let _ = pending.reply.send(Err(AuditError::Unhealthy));
}

/// Commits one batch; on failure cuts it back, then refuses its requests.
fn write_batch(trail: &mut Trail, batch: Vec<Pending>, healthy: &AtomicBool) -> State {
    let (events, replies): (Vec<AuditEvent>, Vec<_>) =
        batch.into_iter().map(|p| (p.event, p.reply)).unzip();
    let mark = trail.mark();
    match trail.commit(&events) {
        Ok(results) => {
            // SECURITY: every record of the batch is durable (appended and fsynced): the
            // answers may leave. The signed head follows before the next batch.
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result.map(|seq| Receipt { seq }));
            }
            match trail.seal() {
                Ok(()) => State::Healthy,
                Err(e) => {
                    healthy.store(false, Ordering::Release);
                    tracing::error!(error = %e, retry_every_ms = millis(trail.settings.retry_interval), "audit: head write failed; refusing every request until the trail can be written again");
                    State::Unavailable {
                        since: Utc::now(),
                        recorded: false,
                    }
                }
            }
        }
        Err(e) => {
            // SECURITY: unhealthy before anyone hears of the failure, and cut back before
            // the requests are refused: a refused request leaves no record behind.
            healthy.store(false, Ordering::Release);
            let since = Utc::now();
            let state = match trail.rollback(mark) {
                Ok(()) => {
                    tracing::error!(error = %e, retry_every_ms = millis(trail.settings.retry_interval), "audit: write failed (batch cut back); refusing every request until the trail can be written again");
                    State::Unavailable {
                        since,
                        recorded: false,
                    }
                }
                Err(cut) => {
                    tracing::error!(error = %e, cut_back = %cut, "audit: write failed and the trail cannot be cut back (removed or replaced?); refusing every request until restart");
                    State::Broken
                }
            };
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            state
        }
    }
}

/// One attempt to make an unavailable trail healthy: room on the disk and the outage record
/// (unless an earlier probe wrote it), then the signed head over everything.
fn probe(trail: &mut Trail, since: DateTime<Utc>, recorded: bool, healthy: &AtomicBool) -> State {
    if let Err(e) = trail.check_identity() {
        tracing::error!(error = %e, "audit: the trail was removed or replaced behind the writer; refusing every request until restart");
        return State::Broken;
    }
    if !recorded {
        if let Err(e) = trail.has_room() {
            tracing::debug!(error = %e, "audit: trail still unavailable (no room)");
            return State::Unavailable { since, recorded };
        }
        let event = outage_event(since, Utc::now());
        let mark = trail.mark();
        if let Err(e) = trail.commit(std::slice::from_ref(&event)) {
            tracing::debug!(error = %e, "audit: trail still unavailable");
            return match trail.rollback(mark) {
                Ok(()) => State::Unavailable { since, recorded },
                Err(cut) => {
                    tracing::error!(error = %e, cut_back = %cut, "audit: the trail cannot be cut back (removed or replaced?); refusing every request until restart");
                    State::Broken
                }
            };
        }
    }
    if let Err(e) = trail.seal() {
        tracing::debug!(error = %e, "audit: trail still unavailable (head)");
        return State::Unavailable {
            since,
            recorded: true,
        };
    }
    let seconds = (Utc::now() - since).num_milliseconds() as f64 / 1000.0;
    healthy.store(true, Ordering::Release);
    tracing::warn!(
        unavailable_secs = seconds,
        since = %super::event::format_time(&since),
        "audit: trail writable again (the outage is recorded); answering requests"
    );
    State::Healthy
}

/// The record that opens the trail after an outage: when it was unavailable.
fn outage_event(since: DateTime<Utc>, until: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new(
        AuditKind::AuditUnavailable,
        "",
        format!(
            "audit trail unavailable from {} to {}: every request refused",
            super::event::format_time(&since),
            super::event::format_time(&until)
        ),
    )
    .with_outcome(Outcome::Error, Some("audit_unavailable"));
    event.time = until;
    event.duration_ms = u64::try_from((until - since).num_milliseconds()).unwrap_or(0);
    event
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, read_events, verify_dir};

    fn settings(segment_max_bytes: u64) -> Settings {
        Settings {
            segment_max_bytes,
            segment_max_age: chrono::Duration::days(1),
            retention_months: 0,
            commit_interval: Duration::ZERO,
            retry_interval: Duration::from_millis(20),
        }
    }

    /// A trail folder and its signing key file.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let key = root.path().join("audit.key");
        SigningKey::generate()
            .unwrap()
            .write_new_files(&key)
            .unwrap();
        let dir = root.path().join("audit");
        (root, dir, key)
    }

    fn open(dir: &Path, key: &Path, segment_max_bytes: u64) -> Trail {
        Trail::open(
            dir,
            SigningKey::load_file(key).unwrap(),
            settings(segment_max_bytes),
        )
        .unwrap()
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent::new(AuditKind::Me, format!("request-{i}"), "GET /v1/me")
    }

    fn segment_bytes(dir: &Path) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.metadata().unwrap().len())
            })
            .collect();
        out.sort();
        out
    }

    fn request_ids(dir: &Path) -> Vec<String> {
        read_events(dir)
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect()
    }

    #[test]
    fn a_failed_write_is_cut_back_to_the_last_acknowledged_record() {
        let (_root, dir, key) = setup();
        let mut trail = open(&dir, &key, 1 << 20);
        trail.commit(&[event(1), event(2), event(3)]).unwrap();
        trail.seal().unwrap();
        let before = segment_bytes(&dir);

        trail.faults.fail_writes.store(true, Ordering::SeqCst);
        let mark = trail.mark();
        assert!(trail.commit(&[event(4), event(5)]).is_err());
        assert_ne!(segment_bytes(&dir), before, "half of the batch landed");
        trail.rollback(mark).unwrap();
        assert_eq!(segment_bytes(&dir), before, "nothing half-written stays");
        verify_dir(&dir, None).unwrap();

        trail.faults.fail_writes.store(false, Ordering::SeqCst);
        let seqs = trail.commit(&[event(6)]).unwrap();
        assert_eq!(
            seqs[0].as_ref().ok(),
            Some(&4),
            "the chain goes on from the mark"
        );
        trail.seal().unwrap();
        let report = verify_dir(&dir, None).unwrap();
        assert_eq!(report.last_seq, 4);
        assert_eq!(
            request_ids(&dir),
            ["request-1", "request-2", "request-3", "request-6"]
        );
    }

    #[test]
    fn a_failed_write_across_a_rotation_removes_the_segment_it_started() {
        let (_root, dir, key) = setup();
        // Segments of about two records: the failing batch starts new ones.
        let mut trail = open(&dir, &key, 300);
        trail.commit(&[event(1)]).unwrap();
        trail.seal().unwrap();
        let before = segment_bytes(&dir);
        assert_eq!(before.len(), 1);

        trail.faults.fail_writes.store(true, Ordering::SeqCst);
        let mark = trail.mark();
        assert!(
            trail
                .commit(&[event(2), event(3), event(4), event(5)])
                .is_err()
        );
        assert!(segment_bytes(&dir).len() > 1, "the batch rotated");
        trail.rollback(mark).unwrap();
        assert_eq!(segment_bytes(&dir), before);

        trail.faults.fail_writes.store(false, Ordering::SeqCst);
        trail.commit(&[event(6), event(7), event(8)]).unwrap();
        trail.seal().unwrap();
        assert_eq!(verify_dir(&dir, None).unwrap().last_seq, 4);
        drop(trail);
        // Reopening continues the same chain.
        let mut trail = open(&dir, &key, 300);
        trail.commit(&[event(9)]).unwrap();
        trail.seal().unwrap();
        assert_eq!(verify_dir(&dir, None).unwrap().last_seq, 5);
        assert_eq!(
            request_ids(&dir),
            [
                "request-1",
                "request-6",
                "request-7",
                "request-8",
                "request-9"
            ]
        );
    }

    /// An `AuditLog` on a trail whose writes can be made to fail.
    fn log_with_faults(dir: &Path, key: &Path) -> (AuditLog, Arc<Faults>) {
        let trail = open(dir, key, 1 << 20);
        let faults = trail.faults.clone();
        (AuditLog::start(trail, dir).unwrap(), faults)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn wait_healthy(log: &AuditLog) {
        for _ in 0..500 {
            if log.healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the trail did not recover");
    }

    #[test]
    fn the_writer_refuses_while_the_disk_is_full_then_recovers_with_an_outage_record() {
        let (_root, dir, key) = setup();
        let (log, faults) = log_with_faults(&dir, &key);
        let rt = runtime();
        assert_eq!(rt.block_on(log.record(event(1))).unwrap().seq, 1);

        faults.fail_writes.store(true, Ordering::SeqCst);
        let err = rt.block_on(log.record(event(2))).unwrap_err();
        assert!(matches!(err, AuditError::Io { .. }), "{err}");
        assert!(!log.healthy());
        // Several probes fail while the disk stays full: every record is refused.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!log.healthy());
        let err = rt.block_on(log.record(event(3))).unwrap_err();
        assert!(matches!(err, AuditError::Unhealthy), "{err}");
        assert_eq!(
            request_ids(&dir),
            ["request-1"],
            "refused records are not kept"
        );
        verify_dir(&dir, None).unwrap();

        // Space returns: the writer recovers on its own.
        faults.fail_writes.store(false, Ordering::SeqCst);
        wait_healthy(&log);
        assert_eq!(rt.block_on(log.record(event(4))).unwrap().seq, 3);
        drop(log);
        let events = read_events(&dir).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].request_id, "request-1");
        let outage = &events[1];
        assert_eq!(outage.kind, AuditKind::AuditUnavailable);
        assert_eq!(outage.outcome, Outcome::Error);
        assert!(
            outage.action.starts_with("audit trail unavailable from ")
                && outage.action.contains(" to "),
            "{}",
            outage.action
        );
        assert!(outage.duration_ms >= 100, "{}", outage.duration_ms);
        assert_eq!(events[2].request_id, "request-4");
        assert_eq!(verify_dir(&dir, None).unwrap().last_seq, 3);
        assert!(
            !dir.join(PROBE_FILE).exists(),
            "the probe leaves nothing behind"
        );
    }

    #[test]
    fn a_head_that_cannot_be_written_makes_the_trail_unavailable_until_it_can() {
        let (_root, dir, key) = setup();
        let (log, faults) = log_with_faults(&dir, &key);
        let rt = runtime();
        faults.fail_head.store(true, Ordering::SeqCst);
        // The record is durable (acknowledged); its head is not: nothing more is accepted.
        assert_eq!(rt.block_on(log.record(event(1))).unwrap().seq, 1);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!log.healthy());
        let err = rt.block_on(log.record(event(2))).unwrap_err();
        assert!(matches!(err, AuditError::Unhealthy), "{err}");
        faults.fail_head.store(false, Ordering::SeqCst);
        wait_healthy(&log);
        assert_eq!(rt.block_on(log.record(event(3))).unwrap().seq, 3);
        drop(log);
        let kinds: Vec<AuditKind> = read_events(&dir).unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [AuditKind::Me, AuditKind::AuditUnavailable, AuditKind::Me]
        );
        verify_dir(&dir, None).unwrap();
    }

    #[test]
    fn a_segment_or_folder_removed_or_replaced_behind_the_writer_is_never_recovered() {
        for case in [
            "segment removed",
            "segment replaced",
            "folder replaced",
            "folder replaced while unavailable",
            "folder removed and made again while unavailable",
            "folder emptied while unavailable",
        ] {
            let (_root, dir, key) = setup();
            let (log, faults) = log_with_faults(&dir, &key);
            let rt = runtime();
            let unavailable_first = case.ends_with("while unavailable");
            if unavailable_first {
                // The head fails: unavailable, nothing cut back; then the folder is replaced
                // and the disk comes back. The probe must not write into either folder.
                faults.fail_head.store(true, Ordering::SeqCst);
            }
            rt.block_on(log.record(event(1))).unwrap();
            if unavailable_first {
                std::thread::sleep(Duration::from_millis(60));
                assert!(!log.healthy());
            }
            let (segment, _) = segment_bytes(&dir).remove(0);
            let path = dir.join(segment);
            match case {
                "segment removed" => std::fs::remove_file(&path).unwrap(),
                "segment replaced" => {
                    let copy = dir.join("copy");
                    std::fs::copy(&path, &copy).unwrap();
                    std::fs::rename(&copy, &path).unwrap();
                }
                "folder removed and made again while unavailable" => {
                    // A file system may give the new folder the old one's inode number: the
                    // lock file tells them apart.
                    std::fs::remove_dir_all(&dir).unwrap();
                    std::fs::create_dir(&dir).unwrap();
                }
                "folder emptied while unavailable" => {
                    // Same folder inode, nothing of the trail left in it.
                    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                        std::fs::remove_file(entry.path()).unwrap();
                    }
                }
                _ => {
                    // A copy of the whole folder put in its place, and a full disk: the cut
                    // back must not happen in the copy.
                    let aside = dir.with_extension("aside");
                    std::fs::rename(&dir, &aside).unwrap();
                    std::fs::create_dir(&dir).unwrap();
                    for entry in std::fs::read_dir(&aside).unwrap().flatten() {
                        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
                    }
                    faults.fail_writes.store(true, Ordering::SeqCst);
                }
            }
            assert!(rt.block_on(log.record(event(2))).is_err(), "{case}");
            // Space is back and many probe intervals later: still refused.
            faults.fail_writes.store(false, Ordering::SeqCst);
            faults.fail_head.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            assert!(!log.healthy(), "{case}");
            let err = rt.block_on(log.record(event(3))).unwrap_err();
            assert!(matches!(err, AuditError::Unhealthy), "{case}: {err}");
        }
    }

    /// A record handed over without waiting (its receiver dropped), and one somebody waits for.
    fn detached(i: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        Pending {
            event: event(i),
            reply,
        }
    }

    fn waited(i: usize) -> (Pending, oneshot::Receiver<Result<Receipt, AuditError>>) {
        let (reply, answer) = oneshot::channel();
        (
            Pending {
                event: event(i),
                reply,
            },
            answer,
        )
    }

    #[test]
    fn records_nobody_waits_for_wait_for_company_but_never_hold_one_back() {
        let rt = runtime();
        rt.block_on(async {
            // An outcome alone waits for the next decision and leaves with it, at once.
            let (tx, mut rx) = mpsc::channel(16);
            let (decision, _answer) = waited(2);
            let sender = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                tx.send(decision).await.ok();
                tx
            });
            let started = std::time::Instant::now();
            let batch = gather(detached(1), &mut rx, Duration::ZERO).await;
            let waited_for = started.elapsed();
            assert_eq!(batch.len(), 2, "the outcome and the decision in one commit");
            assert!(
                waited_for < LINGER,
                "the decision was held back: {waited_for:?}"
            );
            let tx = sender.await.unwrap();

            // A record somebody waits for is committed as soon as the queue is empty.
            let (first, _answer) = waited(3);
            let started = std::time::Instant::now();
            let batch = gather(first, &mut rx, Duration::ZERO).await;
            assert_eq!(batch.len(), 1);
            assert!(started.elapsed() < LINGER);

            // Outcomes alone are committed after LINGER at most, with what came meanwhile.
            tx.send(detached(5)).await.ok();
            let started = std::time::Instant::now();
            let batch = gather(detached(4), &mut rx, Duration::ZERO).await;
            assert_eq!(batch.len(), 2);
            assert!(started.elapsed() >= LINGER);

            // A closed queue ends the wait.
            drop(tx);
            let started = std::time::Instant::now();
            let batch = gather(detached(6), &mut rx, Duration::ZERO).await;
            assert_eq!(batch.len(), 1);
            assert!(started.elapsed() < LINGER);
        });
    }
}
