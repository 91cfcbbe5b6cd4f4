//! The policy folder on disk, written so that a crash leaves the old set or the new one, never
//! half of each.
//!
//! Owns: the write protocol of a whole set (every new file staged as `.<name>.new` and fsynced,
//! the folder fsynced, then the intent `.apply-intent` written atomically with the new set's
//! version — the commit point —, the staged files renamed over the old ones, the folder
//! fsynced, the intent removed), the recovery of what a crash leaves (an intent: roll forward;
//! staged files without an intent: discard them), and reading the set as it stands (a pending
//! intent is read as the set it completes, without writing).
//!
//! Must never: let a reader see files of two versions (a pending intent whose files do not
//! complete to its version is a problem, not a set), or roll forward a set whose files were
//! not all durable before the intent.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::set::PolicyTexts;
use super::source::{PolicyFiles, Problem};

/// The commit point of an apply: present once every new file is durable under its staged name.
pub const INTENT: &str = ".apply-intent";

/// The files of a set, in the order they are written (`tables.toml` always, empty when the
/// set has no table).
const FILES: [&str; 5] = [
    PolicyFiles::DATASETS,
    PolicyFiles::TABLES,
    PolicyFiles::HABILITATIONS,
    PolicyFiles::MODEL,
    PolicyFiles::RULES,
];

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    /// Version (content hash) of the set being put in place.
    version: String,
}

fn staged(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.new"))
}

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No interrupted apply.
    Clean,
    /// An apply interrupted after its commit point was finished: the new set is in place.
    RolledForward { version: String },
    /// An apply interrupted before its commit point was undone: the old set stands.
    Discarded,
}

/// One step of an apply; a crash can stop between any two.
#[derive(Debug, Clone)]
enum Step {
    /// Write and fsync `.<name>.new`.
    Stage(&'static str, String),
    /// fsync the folder (the staged names are durable).
    SyncStaged,
    /// Write the intent atomically: the commit point.
    Intent(String),
    /// Rename `.<name>.new` over `<name>`.
    Rename(&'static str),
    /// fsync the folder, then remove the intent (and fsync again).
    Finish,
}

fn steps(texts: &PolicyTexts) -> Vec<Step> {
    let text = |name: &str| match name {
        PolicyFiles::MODEL => texts.model.clone(),
        PolicyFiles::RULES => texts.rules.clone(),
        PolicyFiles::HABILITATIONS => texts.habilitations.clone(),
        PolicyFiles::TABLES => texts.tables.clone(),
        _ => texts.datasets.clone(),
    };
    let mut steps: Vec<Step> = FILES.iter().map(|n| Step::Stage(n, text(n))).collect();
    steps.push(Step::SyncStaged);
    steps.push(Step::Intent(texts.version()));
    steps.extend(FILES.iter().map(|n| Step::Rename(n)));
    steps.push(Step::Finish);
    steps
}

fn run(dir: &Path, step: &Step) -> std::io::Result<()> {
    match step {
        Step::Stage(name, text) => {
            let mut file = std::fs::File::create(staged(dir, name))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        }
        Step::SyncStaged => sync_dir(dir),
        Step::Intent(version) => {
            let tmp = dir.join(format!("{INTENT}.tmp"));
            let bytes = serde_json::to_vec(&Intent {
                version: version.clone(),
            })
            .map_err(std::io::Error::other)?;
            {
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, dir.join(INTENT))?;
            sync_dir(dir)
        }
        Step::Rename(name) => std::fs::rename(staged(dir, name), dir.join(name)),
        Step::Finish => {
            sync_dir(dir)?;
            std::fs::remove_file(dir.join(INTENT))?;
            sync_dir(dir)
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The folder's lock file: locked (an advisory `flock`, which the kernel releases when its
/// holder dies) while one process writes or recovers the folder, so that two gateways sharing
/// it (`policy.dir` on shared storage) never interleave their steps. The file itself stays.
pub const LOCK: &str = ".apply-lock";

/// How long a writer waits for another one's lock before giving up.
const LOCK_WAIT: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(200)
} else {
    std::time::Duration::from_secs(10)
};

/// The folder's lock, held until dropped (the file closed).
struct FolderLock {
    _file: std::fs::File,
}

impl FolderLock {
    /// Takes the lock of `dir`, waiting up to [`LOCK_WAIT`] for another holder. A holder that
    /// died (a `kill -9` mid-apply) holds nothing: its lock went with it.
    fn take(dir: &Path) -> std::io::Result<FolderLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FolderLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::WouldBlock,
                            "another apply holds the policy folder's lock",
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// Writes `texts` as the set of `dir`, crash-safe: after a crash at any moment, [`read`] (and
/// [`recover`]) give the old set or this one, whole. An interrupted earlier apply is recovered
/// first.
pub fn write(dir: &Path, texts: &PolicyTexts) -> std::io::Result<()> {
    write_if(dir, texts, |_| true).map(|_| ())
}

/// [`write`], only if `may_replace` accepts the set the folder holds once its lock is taken
/// (what another gateway may have written meanwhile): the conditional write that keeps two
/// operators applying at once from both winning. `Ok(false)`: refused, nothing written.
pub fn write_if(
    dir: &Path,
    texts: &PolicyTexts,
    may_replace: impl FnOnce(&Result<PolicyTexts, Vec<Problem>>) -> bool,
) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    // SECURITY: one writer at a time, across processes sharing the folder.
    let _lock = FolderLock::take(dir)?;
    recover_locked(dir)?;
    if !may_replace(&read(dir)) {
        return Ok(false);
    }
    for step in steps(texts) {
        run(dir, &step)?;
    }
    Ok(true)
}

fn read_intent(dir: &Path) -> Result<Option<Intent>, Problem> {
    let path = dir.join(INTENT);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|_| {
            Problem::new(
                &path,
                None,
                "an interrupted policy apply left an unreadable intent: restore the set from the history",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Problem::new(
            &path,
            None,
            format!("cannot read: {}", e.kind()),
        )),
    }
}

/// Finishes or undoes what a crash during [`write`] left in `dir`: with an intent, the staged
/// files still there are renamed into place (every one was durable before the intent) and the
/// set must then be the intent's version; without one, staged files are removed. Call it
/// before loading the folder for serving and before writing it.
pub fn recover(dir: &Path) -> std::io::Result<Recovery> {
    // Nothing left by an apply: nothing to lock or write (a read-only policy folder stays so).
    let leftovers = std::iter::once(dir.join(INTENT))
        .chain([dir.join(format!("{INTENT}.tmp"))])
        .chain(FILES.iter().map(|n| staged(dir, n)));
    if !leftovers.into_iter().any(|p| p.exists()) {
        return Ok(Recovery::Clean);
    }
    // SECURITY: never "recover" the staged files of another gateway's apply in progress:
    // wait for its lock, then look again.
    let _lock = FolderLock::take(dir)?;
    recover_locked(dir)
}

fn recover_locked(dir: &Path) -> std::io::Result<Recovery> {
    let intent = read_intent(dir).map_err(|p| std::io::Error::other(p.to_string()))?;
    match intent {
        Some(intent) => {
            for name in FILES {
                match std::fs::rename(staged(dir, name), dir.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            sync_dir(dir)?;
            let texts = PolicyTexts::read_files(|name| dir.join(name))
                .map_err(|p| std::io::Error::other(problems_text(&p)))?;
            // SECURITY: the rolled-forward files must be exactly the intent's set; anything
            // else (a staged file lost, a file edited meanwhile) is a mixed set: refuse it.
            if texts.version() != intent.version {
                return Err(std::io::Error::other(format!(
                    "an interrupted policy apply to version {} does not complete (the files give version {}): restore the set from the history",
                    intent.version,
                    texts.version()
                )));
            }
            std::fs::remove_file(dir.join(INTENT))?;
            sync_dir(dir)?;
            tracing::warn!(version = %intent.version, "policy folder: finished an apply interrupted after its commit point (the new set is in force)");
            Ok(Recovery::RolledForward {
                version: intent.version,
            })
        }
        None => {
            let mut removed = false;
            for path in FILES
                .iter()
                .map(|n| staged(dir, n))
                .chain([dir.join(format!("{INTENT}.tmp"))])
            {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            if !removed {
                return Ok(Recovery::Clean);
            }
            sync_dir(dir)?;
            tracing::warn!(
                "policy folder: discarded the files of an apply interrupted before its commit point (the previous set stays in force)"
            );
            Ok(Recovery::Discarded)
        }
    }
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The set of `dir` as it stands, without writing: the files in place, or, while an intent is
/// pending, the set it completes (staged files first) — which must be the intent's version.
pub fn read(dir: &Path) -> Result<PolicyTexts, Vec<Problem>> {
    read_watched(dir, &mut |_| {})
}

/// [`read`], calling `before_file` before each file is read (tests: another writer's turn).
fn read_watched(
    dir: &Path,
    before_file: &mut dyn FnMut(&str),
) -> Result<PolicyTexts, Vec<Problem>> {
    // An apply running in another process (another gateway sharing the folder) may run while
    // we read: read again until nothing moved between before and after.
    for _ in 0..5 {
        let files_before = stamps(dir);
        let before = read_intent(dir).map_err(|p| vec![p])?;
        let attempt = match &before {
            None => PolicyTexts::read_files(|name| {
                before_file(name);
                dir.join(name)
            }),
            Some(intent) => PolicyTexts::read_files(|name| {
                before_file(name);
                let pending = staged(dir, name);
                if pending.exists() {
                    pending
                } else {
                    dir.join(name)
                }
            })
            .and_then(|texts| {
                // SECURITY: never a mix of two versions.
                if texts.version() == intent.version {
                    Ok(texts)
                } else {
                    Err(vec![Problem::new(
                        &dir.join(INTENT),
                        None,
                        format!(
                            "an interrupted policy apply to version {} does not complete (the files give version {}): restore the set from the history",
                            intent.version,
                            texts.version()
                        ),
                    )])
                }
            }),
        };
        let after = read_intent(dir).map_err(|p| vec![p])?;
        // SECURITY: a whole apply between two of our reads changes no intent but every
        // file it renamed: read again rather than return a mix (or a spurious problem).
        if before.map(|i| i.version) == after.map(|i| i.version) && stamps(dir) == files_before {
            return attempt;
        }
    }
    Err(vec![Problem::new(
        dir,
        None,
        "the policy set is being replaced: try again",
    )])
}

/// Device, inode, size and modification time of every file of a set and of its staged copy
/// (`None` for a missing one): what a rename or a rewrite by another process changes.
fn stamps(dir: &Path) -> Vec<Option<(u64, u64, u64, std::time::SystemTime)>> {
    use std::os::unix::fs::MetadataExt;
    FILES
        .iter()
        .flat_map(|name| [dir.join(name), staged(dir, name)])
        .map(|path| {
            let m = std::fs::metadata(path).ok()?;
            Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Size and modification time of the policy files (a missing one as such), and of a pending
/// apply's intent: cheap change detection, also of what another gateway sharing the folder
/// writes.
pub(super) fn fingerprint(dir: &Path) -> Vec<Option<(u64, std::time::SystemTime)>> {
    [
        PolicyFiles::MODEL,
        PolicyFiles::RULES,
        PolicyFiles::HABILITATIONS,
        PolicyFiles::DATASETS,
        PolicyFiles::TABLES,
        INTENT,
    ]
    .iter()
    .map(|name| {
        let m = std::fs::metadata(dir.join(name)).ok()?;
        Some((m.len(), m.modified().ok()?))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tag: &str) -> PolicyTexts {
        PolicyTexts {
            model: format!("model {tag}\n"),
            rules: format!("rules {tag}\n"),
            habilitations: format!("habilitations {tag}\n"),
            datasets: format!("datasets {tag}\n"),
            tables: format!("tables {tag}\n"),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Two gateways sharing the folder never write it at once: a held lock makes the other
    /// writer give up (nothing written); a holder gone (its file closed, as when it dies)
    /// holds nothing; the condition is checked under the lock.
    #[test]
    fn one_writer_at_a_time_and_a_dead_writer_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &set("one")).unwrap();

        let held = FolderLock::take(dir.path()).unwrap();
        let refused = write(dir.path(), &set("two")).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(read(dir.path()).unwrap().version(), set("one").version());
        drop(held);

        write(dir.path(), &set("two")).unwrap();
        assert_eq!(read(dir.path()).unwrap().version(), set("two").version());
        assert_eq!(
            names(dir.path()),
            file_names(),
            "nothing but the set and its lock"
        );

        // The condition sees the set in place under the lock; refused: nothing written.
        let written = write_if(dir.path(), &set("three"), |now| {
            now.as_ref()
                .is_ok_and(|t| t.version() == set("one").version())
        })
        .unwrap();
        assert!(!written);
        assert_eq!(read(dir.path()).unwrap().version(), set("two").version());
    }

    /// A whole apply by another writer between two of a reader's file reads (another gateway
    /// writing the shared folder) never gives the reader a mix: it reads again.
    #[test]
    fn a_whole_apply_between_two_reads_never_gives_a_mix() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (set("x"), set("y"));
        write(dir.path(), &x).unwrap();
        let mut files = 0;
        let texts = read_watched(dir.path(), &mut |_| {
            files += 1;
            if files == 2 {
                write(dir.path(), &y).unwrap();
            }
        })
        .unwrap();
        assert!(files > 5, "read again after the apply");
        assert_eq!(texts.version(), y.version(), "the new set, whole");
    }

    fn file_names() -> Vec<String> {
        let mut names: Vec<String> = FILES
            .iter()
            .chain([&LOCK])
            .map(|n| (*n).to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_set_or_the_new_one_whole() {
        let (old, new) = (set("old"), set("new"));
        let all = steps(&new);
        let commit = all
            .iter()
            .position(|s| matches!(s, Step::Intent(_)))
            .unwrap();
        for done in 0..=all.len() {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("policies");
            write(&dir, &old).unwrap();
            let clean = names(&dir);
            // The crash: the first `done` steps happened, nothing else.
            for step in &all[..done] {
                run(&dir, step).unwrap();
            }
            let expected = if done > commit { &new } else { &old };
            // Reading without writing (`passerelle check`, a reader beside the server) …
            assert_eq!(&read(&dir).unwrap(), expected, "read after {done} steps");
            // … and recovering at start give the same whole set, and a clean folder.
            let recovery = recover(&dir).unwrap();
            assert_eq!(
                &read(&dir).unwrap(),
                expected,
                "recovered after {done} steps"
            );
            assert_eq!(names(&dir), clean, "no stray file after {done} steps");
            let expected_recovery = match done {
                0 => Recovery::Clean,
                d if d == all.len() => Recovery::Clean,
                d if d <= commit => Recovery::Discarded,
                _ => Recovery::RolledForward {
                    version: new.version(),
                },
            };
            assert_eq!(recovery, expected_recovery, "after {done} steps");
            // The next apply starts from a clean folder.
            write(&dir, &set("next")).unwrap();
            assert_eq!(read(&dir).unwrap(), set("next"));
        }
    }

    #[test]
    fn a_pending_apply_that_does_not_complete_to_its_version_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies");
        write(&dir, &set("old")).unwrap();
        let new = set("new");
        let all = steps(&new);
        // Committed, two files renamed; then a staged file is lost (or edited by hand).
        let upto = all
            .iter()
            .position(|s| matches!(s, Step::Rename(_)))
            .unwrap()
            + 2;
        for step in &all[..upto] {
            run(&dir, step).unwrap();
        }
        std::fs::remove_file(staged(&dir, PolicyFiles::MODEL)).unwrap();
        let problems = read(&dir).unwrap_err();
        assert!(
            problems[0].message.contains("does not complete"),
            "{problems:?}"
        );
        let err = recover(&dir).unwrap_err().to_string();
        assert!(err.contains("does not complete"), "{err}");
        // Still refused afterwards: the intent stays until an operator restores a set.
        assert!(read(&dir).is_err());
        std::fs::write(dir.join(INTENT), b"{not json").unwrap();
        assert!(read(&dir).is_err());
        assert!(recover(&dir).is_err());
    }
}
