//! Reading the trail back: every recorded event in order, and a citizen's journal (which
//! organisations looked up one record, when, why and for whom).
//!
//! The journal is found by the key's audit-only pseudonym, never by the raw identifier. Reading
//! scans the segments (linear in the trail's size: seconds for millions of records); the
//! trail's integrity is `verify_dir`'s job, not this reader's.

use std::path::Path;

use super::chain::parse_segment_name;
use super::{AuditError, AuditEvent, AuditKey, AuditKind, Outcome};

/// Every event of the trail in `dir`, oldest first (torn or unreadable lines are skipped).
pub fn read_events(dir: &Path) -> Result<Vec<AuditEvent>, AuditError> {
    let io = |e: std::io::Error| AuditError::Io {
        path: dir.display().to_string(),
        reason: e.kind().to_string(),
    };
    let mut segments: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map_err(io)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            parse_segment_name(&name).map(|seq| (seq, e.path()))
        })
        .collect();
    segments.sort();
    let mut events = Vec::new();
    for (_, path) in segments {
        let text = std::fs::read_to_string(&path).map_err(io)?;
        events.extend(
            text.lines()
                .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok()),
        );
    }
    Ok(events)
}

/// Every allowed lookup that returned the record of `key`, whatever its dataset (a citizen's
/// journal: one scan of the trail for all of them).
pub fn journal_of_key(dir: &Path, key: &AuditKey) -> Result<Vec<AuditEvent>, AuditError> {
    Ok(read_events(dir)?
        .into_iter()
        .filter(|e| e.kind == AuditKind::Lookup && e.outcome == Outcome::Allowed && e.rows > 0)
        .filter(|e| {
            e.lookup
                .as_ref()
                .is_some_and(|l| l.key.as_ref() == Some(key) || l.keys.contains(key))
        })
        .collect())
}

/// The lookups that served the record of `dataset` whose key pseudonymises to `key`.
pub fn journal(dir: &Path, dataset: &str, key: &AuditKey) -> Result<Vec<AuditEvent>, AuditError> {
    Ok(read_events(dir)?
        .into_iter()
        .filter(|e| e.kind == AuditKind::Lookup && e.outcome == Outcome::Allowed && e.rows > 0)
        .filter(|e| e.datasets.iter().any(|d| d.dataset == dataset))
        .filter(|e| {
            e.lookup
                .as_ref()
                .is_some_and(|l| l.key.as_ref() == Some(key) || l.keys.contains(key))
        })
        .collect())
}
