//! One query's answer as a stream of encoded chunks, under the row, byte and time limits.
//!
//! Owns: pulling batches from the running query, cutting at `max_rows` / `max_bytes`, the
//! deadline, and the "head": the first chunks are gathered before the HTTP status is sent, so
//! errors found early are proper 4xx answers and small answers are sent whole, with their row
//! count and truncation known up front.
//!
//! Must never: cut an answer silently. A streamed answer that reaches a limit ends with the
//! truncation mark of its format (JSON `"truncated": true`, Parquet footer metadata
//! `passerelle.truncated`); in formats that have none (NDJSON, CSV, Arrow IPC) it ends with a
//! transport error instead, so the client can never take a cut answer for a whole one.
//!
//! Dropping an `Answer` drops the DataFusion stream, which cancels the query's tasks: this is
//! how a client disconnect cancels its query.
//!
//! An answer can be *paused* ([`Answer::pause_at`]): a pull still waiting for the next batch
//! at that instant returns without consuming anything, so the lane that runs a cheap query can
//! hand the answer, as it is, to the heavy lane.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use super::encode::{AnswerInfo, Encoder, Format};
use super::{EngineError, QueryLimits, RunningQuery, user_error};

/// What is known once the head is gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerHead {
    /// The whole answer is in the head (row count and truncation are final).
    pub complete: bool,
    pub rows: usize,
    pub truncated: bool,
}

/// One chunk of encoded answer.
pub type Chunk = Result<Bytes, EngineError>;

/// A running query's answer.
pub struct Answer {
    running: RunningQuery,
    format: Format,
    encoder: Option<Encoder>,
    limits: QueryLimits,
    deadline: Instant,
    pending: VecDeque<Bytes>,
    rows: usize,
    bytes: usize,
    truncated: bool,
    /// The query gave its last batch (or was cut) and the encoder is finished.
    done: bool,
    /// The head was sent without the whole answer (truncation can no longer go in a header).
    streaming: bool,
    /// An error chunk was returned: nothing follows it.
    failed: bool,
    /// A pull waiting past this instant returns, leaving the answer as it was.
    pause_at: Option<Instant>,
    /// The last pull returned because of `pause_at`.
    paused: bool,
}

impl Answer {
    pub fn new(
        running: RunningQuery,
        format: Format,
        info: &AnswerInfo,
        limits: &QueryLimits,
        deadline: Instant,
    ) -> Result<Self, EngineError> {
        let encoder = Encoder::new(format, &running.schema, info)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(Self {
            running,
            format,
            encoder: Some(encoder),
            limits: limits.clone(),
            deadline,
            pending: VecDeque::new(),
            rows: 0,
            bytes: 0,
            truncated: false,
            done: false,
            streaming: false,
            failed: false,
            pause_at: None,
            paused: false,
        })
    }

    /// Datasets the query reads.
    pub fn datasets(&self) -> &[String] {
        &self.running.datasets
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Encoded bytes so far (before any HTTP compression).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Pulls no batch past `at` (`None`: no pause): see the module doc.
    pub fn pause_at(&mut self, at: Option<Instant>) {
        self.pause_at = at;
        self.paused = false;
    }

    /// The last pull stopped at the pause instant.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Pulls until `head_bytes` of encoded answer are waiting or the answer is complete;
    /// `None` when paused first (call again to go on). Errors here are the caller's to map to
    /// an HTTP status.
    pub async fn fill_head(
        &mut self,
        head_bytes: usize,
    ) -> Result<Option<AnswerHead>, EngineError> {
        let mut buffered: usize = self.pending.iter().map(Bytes::len).sum();
        while !self.done && buffered < head_bytes {
            let chunk = self.pull().await?;
            if self.paused {
                return Ok(None);
            }
            buffered += chunk.len();
            if !chunk.is_empty() {
                self.pending.push_back(chunk);
            }
        }
        self.streaming = !self.done;
        Ok(Some(AnswerHead {
            complete: self.done,
            rows: self.rows,
            truncated: self.truncated,
        }))
    }

    /// The whole answer when the head holds it (`fill_head` said `complete`).
    pub fn take_complete(&mut self) -> Option<Bytes> {
        if !self.done || self.streaming {
            return None;
        }
        let mut all = Vec::with_capacity(self.pending.iter().map(Bytes::len).sum());
        for chunk in self.pending.drain(..) {
            all.extend_from_slice(&chunk);
        }
        Some(Bytes::from(all))
    }

    /// The next chunk to send: the head first, then the rest as it is computed. `None` at the
    /// end; after an error chunk, nothing. An empty chunk when paused ([`Answer::paused`]).
    pub async fn next_chunk(&mut self) -> Option<Chunk> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(chunk) = self.pending.pop_front() {
                return Some(Ok(chunk));
            }
            if self.done {
                if self.truncated && self.streaming && !self.format.marks_truncation() {
                    self.failed = true;
                    // SECURITY (integrity): never let a cut answer look whole.
                    return Some(Err(EngineError::Invalid(format!(
                        "the answer was cut at {} rows: it exceeds this hub's limits; ask for \
                         fewer rows, or use JSON or Parquet, which mark truncation",
                        self.rows
                    ))));
                }
                return None;
            }
            match self.pull().await {
                Ok(chunk) if chunk.is_empty() && self.paused => return Some(Ok(chunk)),
                Ok(chunk) if chunk.is_empty() => continue,
                Ok(chunk) => return Some(Ok(chunk)),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Pulls one batch (or the end), applies the limits and encodes it.
    async fn pull(&mut self) -> Result<Bytes, EngineError> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(Bytes::new());
        };
        self.paused = false;
        let wait_until = match self.pause_at {
            Some(pause) if pause < self.deadline => pause,
            _ => self.deadline,
        };
        // INVARIANT: `next()` is cancel-safe: a pull that stops at the pause consumed nothing.
        let next = match tokio::time::timeout_at(wait_until, self.running.stream.next()).await {
            Ok(next) => next,
            Err(_) if wait_until < self.deadline => {
                self.paused = true;
                return Ok(Bytes::new());
            }
            Err(_) => return Err(EngineError::Timeout(self.limits.timeout.as_secs())),
        };
        let batch = match next {
            None => return self.finish(),
            Some(batch) => batch.map_err(|e| user_error(e, &self.limits))?,
        };
        let room = self.limits.max_rows.saturating_sub(self.rows);
        let batch = if batch.num_rows() > room {
            self.truncated = true;
            batch.slice(0, room)
        } else {
            batch
        };
        let mut out = if batch.num_rows() > 0 {
            encoder
                .write(&batch)
                .map_err(|e| EngineError::Internal(e.to_string()))?
        } else {
            Bytes::new()
        };
        self.rows += batch.num_rows();
        self.bytes += out.len();
        // The byte limit is checked per batch: an answer may pass it by one batch at most.
        let mut ended = false;
        if self.bytes >= self.limits.max_bytes && !self.truncated {
            if self.more_rows_follow().await? {
                self.truncated = true;
            } else {
                ended = true;
            }
        }
        if self.truncated || ended {
            let tail = self.finish()?;
            let mut joined = Vec::with_capacity(out.len() + tail.len());
            joined.extend_from_slice(&out);
            joined.extend_from_slice(&tail);
            out = Bytes::from(joined);
        }
        Ok(out)
    }

    /// At the byte limit: is there anything after what was already sent?
    async fn more_rows_follow(&mut self) -> Result<bool, EngineError> {
        loop {
            let next = tokio::time::timeout_at(self.deadline, self.running.stream.next())
                .await
                .map_err(|_| EngineError::Timeout(self.limits.timeout.as_secs()))?;
            match next {
                None => return Ok(false),
                Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                Some(Ok(_)) => return Ok(true),
                Some(Err(e)) => return Err(user_error(e, &self.limits)),
            }
        }
    }

    fn finish(&mut self) -> Result<Bytes, EngineError> {
        self.done = true;
        let Some(encoder) = self.encoder.take() else {
            return Ok(Bytes::new());
        };
        let tail = encoder
            .finish(self.rows, self.truncated)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        self.bytes += tail.len();
        Ok(tail)
    }
}
