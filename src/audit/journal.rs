//! Reading the trail back: every recorded event in order, and a citizen's journal (which
//! organisations looked up one record, when, why and for whom), over every gateway's trail
//! when several write beside each other (`audit.node`).
//!
//! The journal is found by the key's audit-only pseudonym, never by the raw identifier. Reading
//! scans the segments (linear in the trail's size: seconds for millions of records); the
//! trail's integrity is `verify_dir`'s job, not this reader's.

use std::path::{Path, PathBuf};

use super::chain::{HEAD_FILE, parse_segment_name};
use super::{AuditError, AuditEvent, AuditKey, AuditKind, Outcome};

/// Every event of the trails in `dir`, oldest first (torn or unreadable lines are skipped):
/// the trail of `dir` itself, and the trail of each folder in it that holds segments (one per
/// gateway, `audit.node`), merged by time, each trail's own order kept.
pub fn read_events(dir: &Path) -> Result<Vec<AuditEvent>, AuditError> {
    let mut trails = trail_dirs(dir)?
        .iter()
        .map(|trail| read_trail(trail))
        .collect::<Result<Vec<_>, _>>()?;
    if trails.len() <= 1 {
        return Ok(trails.pop().unwrap_or_default());
    }
    Ok(merge_by_time(trails))
}

/// `dir` and the folders in it that hold a trail (a signed head or segments), by name; `dir`
/// is always first.
fn trail_dirs(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, &e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|node| is_trail(node))
        .collect();
    nodes.sort();
    nodes.insert(0, dir.to_path_buf());
    Ok(nodes)
}

/// The gateways' trails under `root` (`audit.node`), as (node, folder), by name: empty when
/// `root` is itself a trail (a signed head or segments) or holds no trail folder.
pub fn node_trails(root: &Path) -> Vec<(String, PathBuf)> {
    if is_trail(root) {
        return Vec::new();
    }
    trail_dirs(root)
        .unwrap_or_default()
        .into_iter()
        .skip(1)
        .filter_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().into_owned();
            Some((name, dir))
        })
        .collect()
}

/// A trail folder has a signed head or segments; another folder (`lost+found`) is not one.
fn is_trail(dir: &Path) -> bool {
    dir.join(HEAD_FILE).exists() || segments(dir).is_ok_and(|s| !s.is_empty())
}

fn io(path: &Path, e: &std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    }
}

/// The segment files of one trail folder, by first seq.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, &e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            parse_segment_name(&name).map(|seq| (seq, e.path()))
        })
        .collect();
    segments.sort();
    Ok(segments)
}

/// Every event of one trail folder, in seq order.
fn read_trail(dir: &Path) -> Result<Vec<AuditEvent>, AuditError> {
    let mut events = Vec::new();
    for (_, path) in segments(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|e| io(dir, &e))?;
        events.extend(
            text.lines()
                .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok()),
        );
    }
    Ok(events)
}

/// One list of the events of several trails, the earliest next event first (each trail's own
/// order is kept, so a trail's events never swap even when their times do).
fn merge_by_time(trails: Vec<Vec<AuditEvent>>) -> Vec<AuditEvent> {
    let mut out = Vec::with_capacity(trails.iter().map(Vec::len).sum());
    let mut trails: Vec<_> = trails
        .into_iter()
        .map(|t| t.into_iter().peekable())
        .collect();
    loop {
        let next = trails
            .iter_mut()
            .enumerate()
            .filter_map(|(i, trail)| trail.peek().map(|e| (e.time, i)))
            .min();
        let Some(event) = next.and_then(|(_, i)| trails[i].next()) else {
            return out;
        };
        out.push(event);
    }
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
