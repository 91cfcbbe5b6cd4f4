//! One record's line: how it is encoded, hashed, read back, and linked to the record before.
//!
//! Owns: the genesis value, the line hash, the `seq`/`prev` fields, the link check shared by
//! the scan and `verify_segment`.
//!
//! Must never: hash anything but the line's bytes without their newline, or read more of a
//! record than its chain fields and time (verification does not interpret events).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::problem::Problem;
use crate::audit::event::AuditEvent;

/// `prev` of the first record of a trail: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 of a record's line, without its terminating newline.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

#[derive(Serialize)]
struct RecordOut<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// One record's line, newline included.
pub(crate) fn encode_record(
    seq: u64,
    prev: &str,
    event: &AuditEvent,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(&RecordOut { seq, prev, event })?;
    line.push(b'\n');
    Ok(line)
}

/// What verification reads of each record: the chain fields and the time.
#[derive(Deserialize)]
pub(super) struct RecordHeader {
    pub(super) seq: u64,
    pub(super) prev: String,
    #[serde(default)]
    pub(super) time: Option<String>,
}

pub(super) fn parse_header(line: &[u8]) -> Option<RecordHeader> {
    serde_json::from_slice::<RecordHeader>(line).ok()
}

pub(super) fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The `seq`/`prev` checks of one record against what was expected.
pub(super) fn check_link(
    file: &str,
    line: usize,
    expected_seq: u64,
    expected_prev: &str,
    header: &RecordHeader,
) -> Result<(), Problem> {
    if header.seq < expected_seq {
        return Err(Problem::new(
            Some(file),
            Some(line),
            Some(header.seq),
            format!(
                "record seq {} found where seq {expected_seq} was expected: records reordered or duplicated",
                header.seq
            ),
        ));
    }
    if header.seq > expected_seq {
        return Err(Problem::new(
            Some(file),
            Some(line),
            Some(expected_seq),
            format!(
                "record seq {expected_seq} is missing (found seq {} in its place): removed or moved",
                header.seq
            ),
        ));
    }
    if header.prev != expected_prev {
        let before = expected_seq.saturating_sub(1);
        return Err(Problem::new(
            Some(file),
            Some(line),
            Some(before),
            format!(
                "record seq {before} was modified: its hash does not match the `prev` of record seq {expected_seq}"
            ),
        ));
    }
    Ok(())
}
