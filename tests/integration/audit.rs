//! The audit trail: records are durable when `record` returns, the chain and the signed head
//! detect every tampering (checked with the real `passerelle audit verify`), rotation and
//! retention keep the trail verifiable, and a write failure makes the trail unhealthy.
//!
//! Not covered here: a kill -9 under load (it needs a second process writing the trail, and
//! the suite has one binary); the crash windows it would hit (torn last line, records after
//! the head) are simulated directly below.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use chrono::{Duration, Utc};
use passerelle::audit::{
    AuditError, AuditEvent, AuditHabilitation, AuditKey, AuditKeyError, AuditKind, AuditLog,
    AuditPrincipal, ColumnAccess, DatasetAccess, KeyVersion, LookupTrace, MAX_SQL_BYTES, Outcome,
    Signed, SigningKey, line_hash, public_key_path,
};
use passerelle::config::AuditConfig;

use crate::support::copy_dir;

/// A trail folder with its own signing key: `root/keys/audit-signing.key`, `root/audit/`.
fn setup(root: &Path) -> AuditConfig {
    let key = root.join("keys/audit-signing.key");
    SigningKey::generate()
        .unwrap()
        .write_new_files(&key)
        .unwrap();
    AuditConfig {
        dir: root.join("audit"),
        signing_key_file: key,
        retention_months: 0,
        ..AuditConfig::default()
    }
}

fn event(i: u64) -> AuditEvent {
    let mut event = AuditEvent::new(AuditKind::Query, format!("req-{i:04}"), "POST /v1/query")
        .with_sql("SELECT annee, count(*) FROM sante.sejours GROUP BY annee");
    event.principal = Some(AuditPrincipal {
        issuer: "https://auth.example.gouv.fr".into(),
        idp: Some("fca".into()),
        subject: "chercheur-42".into(),
        organisation: Some("13002526500013".into()),
    });
    event.habilitation = Some(AuditHabilitation {
        id: "projet-diabete".into(),
        legal_basis: "CSP L1461-3".into(),
        purpose: "recherche".into(),
    });
    event.datasets = vec![DatasetAccess {
        dataset: "sante.sejours".into(),
        columns: vec![ColumnAccess {
            column: "date_entree".into(),
            treatment: "year".into(),
        }],
    }];
    event.key_versions = vec![KeyVersion {
        domain: "sante".into(),
        version: 1,
    }];
    event.rows = i;
    event.bytes = 100 + i;
    event.duration_ms = 3;
    event.policy_version = Some("v7".into());
    event
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the trail, records `events` one after the other, closes it; returns the seqs.
fn write(config: &AuditConfig, events: impl IntoIterator<Item = AuditEvent>) -> Vec<u64> {
    let log = AuditLog::open(config).unwrap();
    let rt = runtime();
    let seqs = events
        .into_iter()
        .map(|e| rt.block_on(log.record(e)).unwrap().seq)
        .collect();
    drop(log);
    seqs
}

fn verify(path: &Path, public_key: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    command
        .env("RUST_LOG", "warn")
        .args(["audit", "verify"])
        .arg(path);
    if let Some(key) = public_key {
        command.arg("--public-key").arg(key);
    }
    command.output().unwrap()
}

fn assert_intact(path: &Path, public_key: Option<&Path>) -> String {
    let out = verify(path, public_key);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "verify failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `verify` fails and its message names `expected` (e.g. `first bad record: seq 7`).
fn assert_broken(case: &str, path: &Path, public_key: Option<&Path>, expected: &str) {
    let out = verify(path, public_key);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{case}: verify accepted a tampered trail"
    );
    assert!(stderr.contains(expected), "{case}: {stderr}");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn head(dir: &Path) -> Signed {
    serde_json::from_slice(&std::fs::read(dir.join("head.json")).unwrap()).unwrap()
}

#[test]
fn an_intact_trail_verifies_and_reopening_continues_the_chain() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    let log = AuditLog::open(&config).unwrap();
    let rt = runtime();
    // Concurrent callers: every one gets its own seq.
    let mut seqs: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.record(event(i)).await.unwrap().seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap());
        }
        seqs
    });
    drop(log);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let stdout = assert_intact(&config.dir, None);
    assert!(stdout.contains("intact: 50 records"), "{stdout}");

    let more = write(&config, (50..60).map(event));
    assert_eq!(more, (51..=60).collect::<Vec<_>>());
    let pinned = public_key_path(&config.signing_key_file);
    let stdout = assert_intact(&config.dir, Some(&pinned));
    assert!(stdout.contains("intact: 60 records"), "{stdout}");
    // `head.json` names the folder too.
    assert_intact(&config.dir.join("head.json"), Some(&pinned));
    // One segment on its own.
    let segment = &segments(&config.dir)[0];
    let out = verify(segment, None);
    assert!(out.status.success(), "{out:?}");

    // The records hold what was asked, never more.
    let text = std::fs::read_to_string(segment).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], passerelle::audit::GENESIS);
    assert_eq!(first["kind"], "query");
    assert_eq!(first["principal"]["organisation"], "13002526500013");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn record_returns_once_its_line_is_on_disk_and_the_signed_head_follows() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    let log = AuditLog::open(&config).unwrap();
    let rt = runtime();
    // The writer signs the head right after acknowledging a batch, before the next one.
    let head_reaches = |seq: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // (A read racing the in-place write may see a half-written slot: read again.)
            let read = std::fs::read(config.dir.join("head.json")).unwrap();
            if let Ok(h) = serde_json::from_slice::<Signed>(&read)
                && (h.seq >= seq || std::time::Instant::now() > deadline)
            {
                return h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no head covers seq {seq}"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    for i in 0..20 {
        let receipt = rt.block_on(log.record(event(i))).unwrap();
        // Read right after: the line is there (the answer may leave).
        let files = segments(&config.dir);
        let all = lines(files.last().unwrap());
        let last: serde_json::Value = serde_json::from_str(all.last().unwrap()).unwrap();
        assert_eq!(last["seq"], receipt.seq);
        assert_eq!(last["request_id"], format!("req-{i:04}"));
        // And the signed head covers it once the writer has sealed the batch.
        let head = head_reaches(receipt.seq);
        assert_eq!(head.seq, receipt.seq);
        assert_eq!(head.hash, line_hash(all.last().unwrap().as_bytes()));
        // One fixed slot, overwritten in place at each commit.
        assert_eq!(
            std::fs::metadata(config.dir.join("head.json"))
                .unwrap()
                .len(),
            512
        );
    }
    assert!(log.healthy());

    // A head put back behind the writer's back (an old copy renamed over it) is overwritten
    // by the next commit, not left stale while the writer updates another file.
    let old = root.path().join("old-head.json");
    std::fs::copy(config.dir.join("head.json"), &old).unwrap();
    rt.block_on(log.record(event(20))).unwrap();
    std::fs::rename(&old, config.dir.join("head.json")).unwrap();
    let receipt = rt.block_on(log.record(event(21))).unwrap();
    assert_eq!(head_reaches(receipt.seq).seq, receipt.seq);
    drop(log);
    assert_intact(&config.dir, None);
}

#[test]
fn every_tampering_is_detected_and_the_first_bad_record_named() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    write(&config, (0..20).map(event));
    assert_intact(&config.dir, None);
    let pinned = public_key_path(&config.signing_key_file);

    let case = |name: &str, tamper: &dyn Fn(&Path, &Path)| -> PathBuf {
        let dir = root.path().join(name);
        copy_dir(&config.dir, &dir);
        let segment = segments(&dir)[0].clone();
        tamper(&dir, &segment);
        dir
    };

    // A value changed in record 7 (still valid JSON): record 8's `prev` no longer matches.
    let dir = case("modified", &|_, segment| {
        let mut all = lines(segment);
        all[6] = all[6].replace("req-0006", "req-0666");
        write_lines(segment, &all);
    });
    assert_broken("modified", &dir, None, "first bad record: seq 7");

    // One byte flipped, breaking the JSON.
    let dir = case("flipped", &|_, segment| {
        let mut bytes = std::fs::read(segment).unwrap();
        let at = bytes.windows(8).position(|w| w == b"req-0006").unwrap();
        bytes[at - 1] ^= 0x01;
        std::fs::write(segment, bytes).unwrap();
    });
    assert_broken("flipped", &dir, None, "first bad record: seq 7");

    // Record 7 removed.
    let dir = case("removed", &|_, segment| {
        let mut all = lines(segment);
        all.remove(6);
        write_lines(segment, &all);
    });
    assert_broken("removed", &dir, None, "first bad record: seq 7");

    // Records 7 and 8 swapped.
    let dir = case("reordered", &|_, segment| {
        let mut all = lines(segment);
        all.swap(6, 7);
        write_lines(segment, &all);
    });
    assert_broken("reordered", &dir, None, "first bad record: seq 7");

    // The last three records cut off: the signed head says 20.
    let dir = case("truncated", &|_, segment| {
        let all = lines(segment);
        write_lines(segment, &all[..17]);
    });
    assert_broken("truncated", &dir, None, "first bad record: seq 18");

    // Cut in the middle of the last line.
    let dir = case("torn", &|_, segment| {
        let bytes = std::fs::read(segment).unwrap();
        std::fs::write(segment, &bytes[..bytes.len() - 10]).unwrap();
    });
    assert_broken("torn", &dir, None, "first bad record: seq 20");

    // The last record modified: only the head can tell.
    let dir = case("last-modified", &|_, segment| {
        let mut all = lines(segment);
        all[19] = all[19].replace("\"rows\":19", "\"rows\":0");
        write_lines(segment, &all);
    });
    assert_broken("last-modified", &dir, None, "first bad record: seq 20");

    // The tail cut and the head rewritten to match, without a valid signature.
    let dir = case("head-unsigned", &|dir, segment| {
        let all = lines(segment);
        write_lines(segment, &all[..17]);
        let mut head = head(dir);
        head.seq = 17;
        head.hash = line_hash(all[16].as_bytes());
        std::fs::write(dir.join("head.json"), serde_json::to_vec(&head).unwrap()).unwrap();
    });
    assert_broken(
        "head-unsigned",
        &dir,
        None,
        "head.json: signature does not verify",
    );

    // The same, signed with another key.
    let forge = |dir: &Path, segment: &Path, key: &SigningKey| {
        let all = lines(segment);
        write_lines(segment, &all[..17]);
        let mut head = head(dir);
        head.seq = 17;
        head.hash = line_hash(all[16].as_bytes());
        head.key = key.public_key().to_hex();
        head.signature = key.sign_hex(&head.canonical_bytes());
        std::fs::write(dir.join("head.json"), serde_json::to_vec(&head).unwrap()).unwrap();
    };
    let other = SigningKey::generate().unwrap();
    let dir = case("head-other-key", &|dir, segment| {
        forge(dir, segment, &other)
    });
    assert_broken("head-other-key", &dir, None, "signed by another key");

    // Another key, and its public key put in the folder: a pinned key still catches it.
    let dir = case("head-and-key-replaced", &|dir, segment| {
        forge(dir, segment, &other);
        std::fs::write(
            dir.join("audit.pub"),
            format!("{}\n", other.public_key().to_hex()),
        )
        .unwrap();
    });
    assert_broken(
        "head-and-key-replaced",
        &dir,
        Some(&pinned),
        "signed by another key",
    );

    // The head removed.
    let dir = case("head-removed", &|dir, _| {
        std::fs::remove_file(dir.join("head.json")).unwrap();
    });
    assert_broken("head-removed", &dir, None, "head.json: missing");

    // A tampered trail is refused for writing too.
    let damaged = AuditConfig {
        dir: root.path().join("removed"),
        ..config.clone()
    };
    let err = AuditLog::open(&damaged).unwrap_err();
    assert!(matches!(err, AuditError::Damaged { .. }), "{err}");
}

#[test]
fn rotation_spreads_the_chain_over_segments_by_size_and_age() {
    let root = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        segment_max_bytes: 4000,
        ..setup(root.path())
    };
    write(&config, (0..60).map(event));
    let files = segments(&config.dir);
    assert!(files.len() >= 4, "{files:?}");
    // Each segment starts where the last one ended, and chains to it.
    let mut expected_seq = 1;
    let mut prev = passerelle::audit::GENESIS.to_string();
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 4000);
        let all = lines(file);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, passerelle::audit::segment_name(expected_seq));
        for line in &all {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["seq"], expected_seq);
            assert_eq!(v["prev"], prev.as_str());
            prev = line_hash(line.as_bytes());
            expected_seq += 1;
        }
    }
    let stdout = assert_intact(&config.dir, None);
    assert!(stdout.contains("intact: 60 records"), "{stdout}");

    // A whole middle segment removed is named by its first record.
    let dir = root.path().join("segment-removed");
    copy_dir(&config.dir, &dir);
    let second = segments(&dir)[1].clone();
    let first_of_second: serde_json::Value = serde_json::from_str(&lines(&second)[0]).unwrap();
    std::fs::remove_file(&second).unwrap();
    assert_broken(
        "segment-removed",
        &dir,
        None,
        &format!("first bad record: seq {}", first_of_second["seq"]),
    );

    // By age: one event a minute, segments of at most 10 minutes.
    let root = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        segment_max_age_secs: 600,
        ..setup(root.path())
    };
    let start = Utc::now() - Duration::hours(1);
    write(
        &config,
        (0..30).map(|i| {
            let mut e = event(i);
            e.time = start + Duration::minutes(i64::try_from(i).unwrap());
            e
        }),
    );
    assert_eq!(segments(&config.dir).len(), 3);
    assert_intact(&config.dir, None);
}

#[test]
fn retention_expires_whole_old_segments_and_the_rest_still_verifies() {
    let root = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        segment_max_bytes: 3000,
        ..setup(root.path())
    };
    let old = Utc::now() - Duration::days(2 * 365);
    write(
        &config,
        (0..30).map(|i| {
            let mut e = event(i);
            e.time = old + Duration::minutes(i64::try_from(i).unwrap());
            e
        }),
    );
    write(&config, (30..35).map(event));
    let before = segments(&config.dir).len();
    assert!(before >= 4);
    assert_intact(&config.dir, None);

    // Reopened with a 12-month retention: the old segments go, an anchor stays.
    let config = AuditConfig {
        retention_months: 12,
        ..config
    };
    let seqs = write(&config, (35..40).map(event));
    assert_eq!(seqs, (36..=40).collect::<Vec<_>>());
    let after = segments(&config.dir);
    assert!(after.len() < before, "{after:?}");
    assert!(config.dir.join("anchor.json").exists());
    let anchor: Signed =
        serde_json::from_slice(&std::fs::read(config.dir.join("anchor.json")).unwrap()).unwrap();
    let first_kept =
        passerelle::audit::parse_segment_name(&after[0].file_name().unwrap().to_string_lossy())
            .unwrap();
    assert_eq!(anchor.seq + 1, first_kept);
    let stdout = assert_intact(&config.dir, None);
    assert!(
        stdout.contains(&format!("records up to seq {} expired", anchor.seq)),
        "{stdout}"
    );

    // A forged anchor (hiding more records) is caught.
    let dir = root.path().join("anchor-forged");
    copy_dir(&config.dir, &dir);
    let mut forged = anchor.clone();
    forged.seq += 2;
    std::fs::write(
        dir.join("anchor.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    assert_broken(
        "anchor-forged",
        &dir,
        None,
        "anchor.json: signature does not verify",
    );

    // Removing the first kept segment is caught (the anchor says where the trail starts).
    let dir = root.path().join("after-anchor-removed");
    copy_dir(&config.dir, &dir);
    std::fs::remove_file(&segments(&dir)[0]).unwrap();
    assert_broken(
        "after-anchor-removed",
        &dir,
        None,
        &format!("first bad record: seq {first_kept}"),
    );
}

#[test]
fn what_a_crash_leaves_fails_verification_and_is_repaired_on_open() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    write(&config, (0..8).map(event));
    let signed_at_8 = std::fs::read(config.dir.join("head.json")).unwrap();
    write(&config, (8..10).map(event));
    // The writer stopped after the segment's fsync but before the head's rename...
    std::fs::write(config.dir.join("head.json"), &signed_at_8).unwrap();
    // ... and a half-written line that was never acknowledged.
    let segment = segments(&config.dir)[0].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(b"{\"seq\":11,\"prev\":\"ab");
    std::fs::write(&segment, bytes).unwrap();
    assert_broken("crash", &config.dir, None, "first bad record: seq 11");

    // Opening repairs both: the torn line goes, records 9 and 10 are adopted and signed.
    let seqs = write(&config, (10..12).map(event));
    assert_eq!(seqs, vec![11, 12]);
    assert_intact(&config.dir, None);
    assert_eq!(head(&config.dir).seq, 12);
}

#[test]
fn a_write_failure_fails_the_record_and_drops_health() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    let log = AuditLog::open(&config).unwrap();
    let rt = runtime();
    assert_eq!(rt.block_on(log.record(event(0))).unwrap().seq, 1);
    assert!(log.healthy());
    // The writer signs the head right after acknowledging: let it, so that the failure below
    // is the next record's, not this head's.
    for _ in 0..200 {
        if std::fs::read(config.dir.join("head.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Signed>(&b).ok())
            .is_some_and(|h| h.seq == 1)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::remove_dir_all(&config.dir).unwrap();
    let err = rt.block_on(log.record(event(1))).unwrap_err();
    assert!(matches!(err, AuditError::Io { .. }), "{err}");
    assert!(!log.healthy());
    let err = rt.block_on(log.record(event(2))).unwrap_err();
    assert!(matches!(err, AuditError::Unhealthy), "{err}");
}

#[test]
fn the_trail_has_one_writer_and_a_private_key() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    let log = AuditLog::open(&config).unwrap();
    let err = AuditLog::open(&config).unwrap_err();
    assert!(matches!(err, AuditError::Locked(_)), "{err}");
    drop(log);
    AuditLog::open(&config).unwrap();

    // Another key cannot continue a trail signed by the first.
    let other = AuditConfig {
        signing_key_file: root.path().join("other.key"),
        ..config.clone()
    };
    SigningKey::generate()
        .unwrap()
        .write_new_files(&other.signing_key_file)
        .unwrap();
    assert!(AuditLog::open(&other).is_err());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            &config.signing_key_file,
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = AuditLog::open(&config).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");

        // The demo hub generates the key next to the master key, private, with its public half.
        let hub = crate::support::hub().layout();
        let key = hub.audit_signing_key();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        assert!(public_key_path(&key).exists());
    }
}

#[test]
fn the_api_never_needs_a_token_or_a_raw_identifier() {
    // Lookup keys are pseudonyms of the audit-only domain; raw NIRs and JWTs are refused.
    assert_eq!(
        AuditKey::new("2 84 12 75 116 002 42"),
        Err(AuditKeyError::RawIdentifier)
    );
    assert_eq!(
        AuditKey::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig"),
        Err(AuditKeyError::Token)
    );
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    let mut lookup = AuditEvent::new(AuditKind::Lookup, "req-l", "GET /v1/lookup/revenus")
        .with_outcome(Outcome::Allowed, None);
    lookup.lookup = Some(LookupTrace {
        context: "dossier-2025-001".into(),
        recipient: "caf-75".into(),
        object: "revenus-fiscaux".into(),
        key: Some(AuditKey::new("Qm9uam91ciBsZSBtb25kZQ").unwrap()),
        keys: Vec::new(),
    });
    let refused = AuditEvent::new(AuditKind::AuthRefused, "req-r", "POST /v1/query")
        .with_outcome(Outcome::Refused, Some("token_expired"));
    // SQL is whole up to the trail's own bound, cut beyond it.
    let long = AuditEvent::new(AuditKind::Query, "req-s", "POST /v1/query")
        .with_sql(&format!("SELECT {} 1", "1 +".repeat(MAX_SQL_BYTES / 3 + 1)));
    write(&config, [lookup, refused, long]);
    let text = std::fs::read_to_string(&segments(&config.dir)[0]).unwrap();
    assert!(text.contains("\"key\":\"Qm9uam91ciBsZSBtb25kZQ\""));
    assert!(text.contains("\"truncated\":true"));
    assert!(text.lines().all(|l| l.len() < MAX_SQL_BYTES + 4096));
    assert_intact(&config.dir, None);
}

#[test]
fn null_sink_and_group_commit_throughput() {
    let rt = runtime();
    let null = AuditLog::null();
    assert_eq!(rt.block_on(null.record(event(0))).unwrap().seq, 1);
    assert_eq!(rt.block_on(null.record(event(1))).unwrap().seq, 2);
    assert!(null.healthy());

    // 50 concurrent callers: batches share one fsync. Printed, not asserted (disks differ).
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path());
    let log = AuditLog::open(&config).unwrap();
    const EVENTS: u64 = 4000;
    const CALLERS: u64 = 50;
    let started = Instant::now();
    let mut seqs: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..CALLERS)
            .map(|c| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EVENTS / CALLERS {
                        seqs.push(log.record(event(c * 1000 + i)).await.unwrap().seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let seconds = started.elapsed().as_secs_f64();
    drop(log);
    eprintln!(
        "audit group commit: {EVENTS} events from {CALLERS} callers in {seconds:.2} s = {:.0} events/s",
        EVENTS as f64 / seconds
    );
    seqs.sort_unstable();
    assert!(
        seqs.iter().copied().eq(1..=EVENTS),
        "{} receipts",
        seqs.len()
    );
    assert_intact(&config.dir, None);
}

/// Several gateways serve one hub (issue #24): each writes its own chain, signed by its own
/// key, in `<audit.dir>/<node>/`; `audit verify <audit.dir>` covers every node's trail and
/// fails naming the node whose trail was tampered with; readers see every node's events,
/// merged by time; a node name cannot leave `audit.dir`.
#[test]
fn each_gateway_keeps_its_own_chain_and_verify_covers_them_all() {
    let root = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let key = root.path().join(format!("keys/{name}.key"));
        SigningKey::generate()
            .unwrap()
            .write_new_files(&key)
            .unwrap();
        AuditConfig {
            dir: root.path().join("audit"),
            node: Some(name.to_string()),
            signing_key_file: key,
            retention_months: 0,
            ..AuditConfig::default()
        }
    };
    let (a, b) = (node("gw-a"), node("gw-b"));
    assert_eq!(a.trail_dir(), root.path().join("audit/gw-a"));
    // Interleaved in time: a, b, a, b, …, each on its own chain from seq 1. Records keep
    // milliseconds, so each event gets its own (two in one millisecond tie, in node order).
    let start = Utc::now();
    let timed = |i: u64| {
        let mut e = event(i);
        e.time = start + Duration::milliseconds(10 * i as i64);
        e
    };
    for i in 0..3 {
        assert_eq!(write(&a, [timed(2 * i)]), vec![i + 1]);
        assert_eq!(write(&b, [timed(2 * i + 1)]), vec![i + 1]);
    }
    let all = root.path().join("audit");
    let out = assert_intact(&all, None);
    assert!(
        out.contains("node gw-a") && out.contains("node gw-b"),
        "{out}"
    );
    assert!(out.contains("2 node trail(s), all intact"), "{out}");

    // Pinned keys: a folder of `<node>.pub`; a node without its key fails.
    let pins = root.path().join("pins");
    std::fs::create_dir_all(&pins).unwrap();
    for (name, config) in [("gw-a", &a), ("gw-b", &b)] {
        std::fs::copy(
            public_key_path(&config.signing_key_file),
            pins.join(format!("{name}.pub")),
        )
        .unwrap();
    }
    assert_intact(&all, Some(&pins));
    std::fs::copy(pins.join("gw-a.pub"), pins.join("gw-b.pub")).unwrap();
    assert_broken("gw-b pinned to gw-a's key", &all, Some(&pins), "node gw-b");
    std::fs::remove_file(pins.join("gw-b.pub")).unwrap();
    assert_broken("gw-b's key missing", &all, Some(&pins), "node gw-b");

    // Readers: every node's events, in time order.
    let ids: Vec<String> = passerelle::audit::read_events(&all)
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    let expected: Vec<String> = (0..6).map(|i| format!("req-{i:04}")).collect();
    assert_eq!(ids, expected);

    // One node's trail tampered with: verify fails and names that node.
    let segment = segments(&b.trail_dir()).remove(0);
    let mut tampered = lines(&segment);
    tampered[1] = tampered[1].replace("chercheur-42", "chercheur-43");
    write_lines(&segment, &tampered);
    assert_broken("gw-b tampered", &all, None, "node gw-b");
    let out = verify(&all, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node gw-a"),
        "gw-a still reported intact: {stdout}"
    );

    // Nothing can hide a node's trail from verification.
    let pins_all = root.path().join("pins-all");
    std::fs::create_dir_all(&pins_all).unwrap();
    for (name, config) in [("gw-a", &a), ("gw-b", &b)] {
        std::fs::copy(
            public_key_path(&config.signing_key_file),
            pins_all.join(format!("{name}.pub")),
        )
        .unwrap();
    }
    let hidden = root.path().join("hidden");
    std::fs::rename(b.trail_dir(), &hidden).unwrap();
    assert_broken(
        "gw-b's trail removed, its key pinned",
        &all,
        Some(&pins_all),
        "node gw-b",
    );
    std::os::unix::fs::symlink(&hidden, b.trail_dir()).unwrap();
    assert_broken(
        "gw-b's trail behind a symbolic link",
        &all,
        None,
        "symbolic link",
    );
    std::fs::remove_file(b.trail_dir()).unwrap();
    std::fs::create_dir(b.trail_dir()).unwrap();
    assert_broken(
        "gw-b's trail emptied",
        &all,
        None,
        "no signed head and no segments",
    );
    std::fs::remove_dir(b.trail_dir()).unwrap();
    std::fs::rename(&hidden, b.trail_dir()).unwrap();

    // One layout or the other: a trail of the folder's own beside the nodes' fails, and a
    // node cannot start writing beside one.
    let single = root.path().join("single");
    let mut old = setup(&single);
    write(&old, [event(100)]);
    std::fs::create_dir_all(old.dir.join("gw-c")).unwrap();
    assert_broken("a node folder beside a trail", &old.dir, None, "gw-c");
    std::fs::remove_dir(old.dir.join("gw-c")).unwrap();
    old.node = Some("gw-c".into());
    match AuditLog::open(&old) {
        Err(e) => assert!(e.to_string().contains("holds a trail of its own"), "{e}"),
        Ok(_) => panic!("a node opened its trail beside the folder's own"),
    }

    // A node name is one plain folder name.
    let mut escape = a.clone();
    escape.node = Some("../elsewhere".into());
    assert!(
        escape.problems().iter().any(|(key, _)| key == "audit.node"),
        "{:?}",
        escape.problems()
    );
}
