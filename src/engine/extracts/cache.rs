//! What this process knows of each extract ([`Extracts`]): ready (and for which state of its
//! data file), being built, or failed; and the decision, on every use, to serve an extract or
//! to start its build in the background.
//!
//! Owns: the entries, the one-build-at-a-time lock, the count of scans served from an extract.
//!
//! Must never: serve an entry whose data file's stamp differs from the one it was built from,
//! or whose file is gone; retry a failed build before its data file changes; build on the
//! caller's thread (the caller computes pseudonyms in the scan meanwhile).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Extract;
use super::build::build;
use super::provenance::open_valid;
use super::store::{ExtractKey, path_of, remove_extracts_of_removed_copies, remove_older_versions};
use crate::file_stamp::FileStamp;
use crate::pseudonym::PseudonymDomain;

/// What is known of one extract.
#[derive(Debug, Clone)]
enum Entry {
    Building,
    Ready {
        source: FileStamp,
        extract: Extract,
    },
    /// Its build failed for this state of the data file: not tried again until it changes.
    Failed {
        source: Option<FileStamp>,
    },
}

/// The extracts of one hub.
#[derive(Debug)]
pub struct Extracts {
    dir: PathBuf,
    entries: Mutex<HashMap<ExtractKey, Entry>>,
    /// Held by the build in progress: one at a time, the hub keeps serving on the other core.
    building: Mutex<()>,
    /// Scans answered from an extract (tests and metrics).
    served: std::sync::atomic::AtomicU64,
}

impl Extracts {
    /// Extracts kept in `dir` (created on first build, 0700).
    pub fn new(dir: PathBuf) -> Arc<Extracts> {
        Arc::new(Extracts {
            dir,
            entries: Mutex::new(HashMap::new()),
            building: Mutex::new(()),
            served: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The extract of `source` with `columns` pseudonymised in `domain`, if one is complete and
    /// still matches the data file; otherwise starts its build (unless one is under way or
    /// failed for this state of the file) and returns `None`: compute in the scan.
    pub fn find(
        self: &Arc<Self>,
        source: &Path,
        domain: &Arc<PseudonymDomain>,
        columns: &[String],
    ) -> Option<Extract> {
        let mut columns = columns.to_vec();
        columns.sort();
        let key = ExtractKey {
            source: source.to_path_buf(),
            domain: domain.id().to_string(),
            version: domain.version(),
            columns,
        };
        // SECURITY: no stamp (the file cannot be read) means no extract.
        let stamp = FileStamp::of(source)?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key) {
            Some(Entry::Building) => return None,
            Some(Entry::Failed { source }) if *source == Some(stamp) => return None,
            // SECURITY: an extract is used only while its data file is the one it was built
            // from, and while the extract file itself is still there.
            Some(Entry::Ready { source, extract })
                if *source == stamp && extract.path.is_file() =>
            {
                self.served
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(extract.clone());
            }
            _ => {}
        }
        // Not known in this process (or stale): an extract left by an earlier run may do.
        let path = path_of(&self.dir, &key);
        if let Some(extract) = open_valid(&path, stamp, domain, &key.columns) {
            entries.insert(
                key,
                Entry::Ready {
                    source: stamp,
                    extract: extract.clone(),
                },
            );
            self.served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Some(extract);
        }
        entries.insert(key.clone(), Entry::Building);
        drop(entries);
        let extracts = self.clone();
        let domain = domain.clone();
        let spawned = std::thread::Builder::new()
            .name("extract-build".into())
            .spawn(move || extracts.build_in_background(key, path, domain));
        if spawned.is_err() {
            tracing::warn!("pseudonymised extract: could not start its build");
        }
        None
    }

    /// How many scans read an extract instead of their data file.
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until no build is in progress (tests, benchmarks, `demo` start-up).
    pub fn wait_for_builds(&self) {
        // Every build, queued or running, is an entry saying Building until it ends.
        loop {
            let building = self
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .any(|e| matches!(e, Entry::Building));
            if !building {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn build_in_background(&self, key: ExtractKey, path: PathBuf, domain: Arc<PseudonymDomain>) {
        let _one_at_a_time = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let before = FileStamp::of(&key.source);
        let built = before.ok_or(()).and_then(|stamp| {
            build(&self.dir, &key.source, stamp, &path, &domain, &key.columns).map_err(|e| {
                tracing::warn!(
                    domain = %key.domain,
                    version = key.version,
                    error = %e,
                    "pseudonymised extract could not be built: pseudonyms are computed in the scan"
                );
            })
        });
        // SECURITY: a data file replaced during the build makes the extract stale at once.
        let after = FileStamp::of(&key.source);
        let entry = match (built, before, after) {
            (Ok(extract), Some(before), Some(after)) if before == after => {
                tracing::info!(
                    domain = %key.domain,
                    version = key.version,
                    columns = key.columns.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "pseudonymised extract built"
                );
                remove_older_versions(&self.dir, &key);
                remove_extracts_of_removed_copies(&self.dir, &key);
                Entry::Ready {
                    source: after,
                    extract,
                }
            }
            _ => Entry::Failed { source: before },
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Sources that are gone (on a bucket, the local copies of replaced versions) are
        // forgotten: the entries stay as many as the sources on disk.
        entries.retain(|k, _| k.source.exists());
        entries.insert(key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{built, domain, nirs, read, write_source};
    use super::*;

    #[test]
    fn a_file_that_cannot_be_pseudonymised_fails_once_and_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let extracts = Extracts::new(dir.path().join("extracts"));
        let d = domain(1, 1);
        let missing = ["not_a_column".to_string()];
        assert!(extracts.find(&source, &d, &missing).is_none());
        extracts.wait_for_builds();
        assert!(extracts.find(&source, &d, &missing).is_none());
        let entries = extracts.entries.lock().unwrap();
        assert!(entries.values().all(|e| matches!(e, Entry::Failed { .. })));
    }

    #[test]
    fn an_extract_is_used_only_while_its_data_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let extracts = Extracts::new(dir.path().join("extracts"));
        let d = domain(1, 1);
        built(&extracts, &source, &d);
        // The data file is replaced (another size): the old extract is never read again.
        write_source(&source, &[Some("2990199000001"), Some("2990199000002")]);
        assert!(extracts.find(&source, &d, &["nir".to_string()]).is_none());
        let extract = built(&extracts, &source, &d);
        assert_eq!(
            nirs(&read(&extract)),
            vec![
                Some(d.pseudonymise("2990199000001")),
                Some(d.pseudonymise("2990199000002"))
            ]
        );
        // A missing data file: no extract.
        std::fs::remove_file(&source).unwrap();
        assert!(extracts.find(&source, &d, &["nir".to_string()]).is_none());
    }
}
