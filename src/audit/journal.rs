//! Reading the trail back: every recorded event in order, and a citizen's journal (which
//! organisations looked up one record, when, why and for whom), over every gateway's trail
//! when several write beside each other (`audit.node`).
//!
//! The journal is found by the key's audit-only pseudonym, never by the raw identifier. Reading
//! scans the segments (linear in the trail's size: seconds for millions of records); the
//! trail's integrity is `verify_dir`'s job, not this reader's.

use std::path::{Path, PathBuf};

use super::chain::{HEAD_FILE, Problem, VerifyReport, parse_segment_name, verify_dir};
use super::key::PublicKey;
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

/// What `audit verify` found in one trail folder: its name (the node's, or `.` for a folder
/// that is itself the trail) and its report or its first problem.
pub type TrailVerdict = (String, Result<VerifyReport, Problem>);

/// Verifies every trail under `root`, failing closed on anything that could hide one: `root`
/// itself when it is a trail (and then nothing else may be in it), or else each entry of
/// `root`, which must each be a node's trail folder (not a symbolic link, not a folder without
/// head or segments, not a file). `keys`: a public key file for every trail, a folder of
/// `<node>.pub` files (each must have its trail, each trail its key), or `None` (each trail's
/// own `audit.pub`).
pub fn verify_trails(root: &Path, keys: Option<&Path>) -> Vec<TrailVerdict> {
    let problem = |text: String| Problem::new(None, None, None, text);
    let key_file = |path: &Path| PublicKey::load_file(path).map_err(|e| problem(e.to_string()));
    let entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(root) {
        Ok(entries) => entries.flatten().collect(),
        Err(e) => {
            return vec![(
                ".".into(),
                Err(problem(format!("cannot read: {}", e.kind()))),
            )];
        }
    };
    if is_trail(root) || entries.is_empty() {
        let verdict = match keys {
            Some(keys) if keys.is_dir() => Err(problem(
                "a folder of keys is for the nodes' trails (audit.node); this folder is one trail: pass its key file".into(),
            )),
            Some(file) => key_file(file).and_then(|key| verify_dir(root, Some(&key))),
            None => verify_dir(root, None),
        };
        let mut verdicts = vec![(".".to_string(), verdict)];
        // SECURITY: one layout or the other, never both: a trail that is verified must be
        // the only one readers merge.
        for entry in entries
            .iter()
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_file()))
        {
            verdicts.push((
                entry.file_name().to_string_lossy().into_owned(),
                Err(problem(
                    "a folder beside the trail's own files: move the old trail into a node folder of its own".into(),
                )),
            ));
        }
        return verdicts;
    }
    let mut verdicts: Vec<TrailVerdict> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type();
        // SECURITY: every entry is a node's trail, or verification fails naming it.
        let verdict = if kind.as_ref().is_ok_and(std::fs::FileType::is_symlink) {
            Err(problem("a symbolic link, not a node's trail folder".into()))
        } else if !kind.as_ref().is_ok_and(std::fs::FileType::is_dir) {
            Err(problem("not a node's trail folder".into()))
        } else if !crate::config::is_node_name(&name) {
            Err(problem("not a node name (audit.node)".into()))
        } else if !is_trail(&entry.path()) {
            Err(problem(
                "no signed head and no segments: a removed or emptied trail".into(),
            ))
        } else {
            let key = match keys {
                Some(keys) if keys.is_dir() => {
                    key_file(&keys.join(format!("{name}.pub"))).map(Some)
                }
                Some(file) => key_file(file).map(Some),
                None => Ok(None),
            };
            key.and_then(|key| verify_dir(&entry.path(), key.as_ref()))
        };
        names.push(name.clone());
        verdicts.push((name, verdict));
    }
    // SECURITY: with pinned keys, a node whose trail is gone is a failure, not a silence.
    if let Some(keys) = keys.filter(|k| k.is_dir())
        && let Ok(pinned) = std::fs::read_dir(keys)
    {
        for entry in pinned.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(node) = file.strip_suffix(".pub")
                && !names.iter().any(|n| n == node)
            {
                verdicts.push((
                    node.to_string(),
                    Err(problem(
                        "a pinned key without its trail: the node's trail is missing".into(),
                    )),
                ));
            }
        }
    }
    verdicts.sort_by(|a, b| a.0.cmp(&b.0));
    verdicts
}

/// A trail folder has a signed head or segments; another folder (`lost+found`) is not one.
pub(crate) fn is_trail(dir: &Path) -> bool {
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
