//! Faults, against the real binary run as a child process (`support::child`): the audit disk
//! fills up (a real tmpfs), `kill -9` during a policy apply, `kill -9` during a large export.
//! Fail closed: whatever happens, no data leaves without its record, and the hub restarts
//! on a whole policy set and a trail that verifies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::child::{ChildGateway, output_text};

/// `PASSERELLE_FAULTS=required` (CI): a fault that cannot be staged here fails the test
/// instead of skipping it.
fn faults_required() -> bool {
    std::env::var("PASSERELLE_FAULTS").is_ok_and(|v| v == "required")
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `1m`); `None` when mounting is not permitted here.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { _dir: dir, path })
    }
}

impl Tmpfs {
    /// [`Tmpfs::mount`], or `None` (said) when mounting is not permitted and the faults are
    /// not required; a panic when they are.
    fn mount_or_skip(size: &str) -> Option<Tmpfs> {
        match Tmpfs::mount(size) {
            Ok(mount) => Some(mount),
            Err(why) if !faults_required() => {
                println!("skipped: {why} (set PASSERELLE_FAULTS=required to fail instead)");
                None
            }
            Err(why) => panic!("PASSERELLE_FAULTS=required but {why}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child killed a moment ago may still hold files open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills the file system of `dir` with `dir/filler` until a write fails (no space left).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
    path
}

/// The trail's events, each with the id the client sent as its `request_id` (the tests name
/// their requests; the server's own id is in the answer's header).
fn events(dir: &Path) -> Vec<passerelle::audit::AuditEvent> {
    let mut events = passerelle::audit::read_events(dir).unwrap();
    for e in &mut events {
        if let Some(client) = e.client_request_id.take() {
            e.request_id = client;
        }
    }
    events
}

fn query(gw: &ChildGateway, token: &str, id: &str) -> reqwest::RequestBuilder {
    gw.client
        .post(gw.url("/v1/query"))
        .bearer_auth(token)
        .header("x-request-id", id)
        .json(&json!({"sql": "SELECT count(*) AS n FROM sante.sejours"}))
}

/// The audit trail's disk fills up: data requests get 503 and nothing is answered without its
/// record; when space returns the trail recovers on its own (its first record says when it
/// was unavailable), requests succeed again and the trail verifies.
#[tokio::test]
async fn a_full_audit_disk_refuses_every_answer_until_space_returns() {
    let Some(mount) = Tmpfs::mount_or_skip("1m") else {
        return;
    };
    let audit = mount.path.join("audit");
    let audit_text = audit.display().to_string();
    let mut gw = ChildGateway::start(&[("PASSERELLE_AUDIT__DIR", audit_text.as_str())]).await;
    let token = gw.token("chercheuse-diabete");
    let r = query(&gw, &token, "before-full").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The disk fills up. A few records may still fit in the segment's last page; then every
    // answer is refused.
    let filler = fill(&mount.path);
    let mut answered = Vec::new();
    let mut refused = Vec::new();
    for i in 0..200 {
        let id = format!("while-full-{i}");
        let r = query(&gw, &token, &id).send().await.unwrap();
        match r.status().as_u16() {
            200 => answered.push(id),
            503 => {
                let body: Value = r.json().await.unwrap();
                assert!(body["rows"].is_null(), "no data without a record: {body}");
                refused.push(id);
                if refused.len() == 5 {
                    break;
                }
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(refused.len(), 5, "the full disk was never noticed");
    println!(
        "disk full: {} answers (with their records) still fitted, then 503",
        answered.len()
    );
    let ready = gw.get("/health/ready", None).await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "not_ready");
    // Probes fail while the disk stays full: still refused a few seconds later.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = query(&gw, &token, "still-full").send().await.unwrap();
    assert_eq!(r.status(), 503);

    // Nothing answered without its record. Requests refused once the trail was known to be
    // unavailable left no record at all (the first refused one's failed batch was cut back).
    let recorded: Vec<String> = events(&audit).into_iter().map(|e| e.request_id).collect();
    for id in answered.iter().chain(["before-full".to_string()].iter()) {
        assert!(recorded.contains(id), "{id} was answered without a record");
    }
    for id in refused[1..].iter().chain(["still-full".to_string()].iter()) {
        assert!(!recorded.contains(id), "{id} was refused but left a record");
    }

    // Space returns: service resumes without a restart.
    std::fs::remove_file(&filler).unwrap();
    let resumed = Instant::now();
    gw.wait_ready(Duration::from_secs(10)).await;
    println!(
        "resumed {} ms after space returned",
        resumed.elapsed().as_millis()
    );
    let r = query(&gw, &token, "after-full").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let trail = events(&audit);
    let outage = trail
        .iter()
        .position(|e| e.kind == passerelle::audit::AuditKind::AuditUnavailable)
        .expect("the outage is on record");
    assert!(
        trail[outage]
            .action
            .starts_with("audit trail unavailable from "),
        "{}",
        trail[outage].action
    );
    assert!(trail[outage].duration_ms >= 2500, "{:?}", trail[outage]);
    assert!(
        trail[outage + 1..]
            .iter()
            .all(|e| e.request_id == "after-full")
            && outage + 1 < trail.len(),
        "the outage record opens the recovery"
    );
    assert!(
        !audit.join(".probe").exists(),
        "the probe leaves nothing behind"
    );
    let log = gw.log();
    assert!(log.contains("refusing every request until the trail can be written again"));
    assert!(log.contains("trail writable again"));

    gw.stop().await;
    let verified = gw.verify_audit().await;
    assert!(verified.status.success(), "{}", output_text(&verified));
}

/// The policy files' staged copies (`.<name>.new`) and the apply's intent, as found.
fn apply_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // What an apply leaves (staged files, the intent); not the folder's lock file.
        .filter(|n| n.starts_with('.') && n != passerelle::policy::folder::LOCK)
        .collect();
    names.sort();
    names
}

/// When, during an apply, the child is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// As soon as a staged file appears (before the commit point).
    Staged,
    /// As soon as the intent appears (after the commit point).
    Committed,
    /// As soon as the first staged file has been renamed into place.
    Renaming,
    /// That long after the request was sent.
    After(Duration),
}

/// `kill -9` at several moments of `POST /v1/admin/policy/versions/{n}/apply`: after a
/// restart, the set in force is exactly the old version or the new one (the new one whenever
/// the apply was answered), and `passerelle check` passes on the folder, before and after.
#[tokio::test]
async fn kill_9_during_a_policy_apply_leaves_the_old_or_the_new_set() {
    let mut gw = ChildGateway::start(&[]).await;
    let policies = gw.root.join("policies");
    let moments = [
        Moment::Staged,
        Moment::Committed,
        Moment::Renaming,
        Moment::After(Duration::ZERO),
        Moment::After(Duration::from_millis(10)),
        Moment::After(Duration::from_millis(400)),
    ];
    for (i, moment) in moments.into_iter().enumerate() {
        let operator = gw.token("operateur");
        let current: Value = gw
            .get("/v1/admin/policy", Some(&operator))
            .await
            .json()
            .await
            .unwrap();
        let old = current["version"].as_str().unwrap().to_string();
        let mut files = current["files"].clone();
        let rules = files["policy.csv"].as_str().unwrap().to_string();
        files["policy.csv"] = json!(format!("{rules}\n# reviewed, round {i}\n"));
        let r = gw
            .post_json(
                "/v1/admin/policy/versions",
                &operator,
                &json!({"files": files, "comment": format!("round {i}")}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let submitted: Value = r.json().await.unwrap();
        let number = submitted["version"]["number"].as_u64().unwrap();
        let new = submitted["version"]["version"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(old, new);

        // The killer watches the folder from a thread of its own (the test's runtime serves
        // the issuer the child trusts), and kills through a shell armed in advance (its
        // builtin `kill` runs as soon as it reads a line: no process to start at that moment).
        let pid = gw.pid().unwrap();
        let mut trigger = std::process::Command::new("sh")
            .arg("-c")
            .arg("read -r _; kill -KILL \"$0\"")
            .arg(pid.to_string())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut arm = trigger.stdin.take().unwrap();
        let watched = policies.clone();
        let killer = std::thread::spawn(move || {
            use std::io::Write;
            let seen = |prefix: &str| {
                std::fs::read_dir(&watched).unwrap().flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(prefix) && !name.ends_with(".tmp")
                })
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            let started = Instant::now();
            let caught = loop {
                let now = match moment {
                    Moment::Staged => seen(".datasets.toml.new"),
                    Moment::Committed => seen(".apply-intent"),
                    Moment::Renaming => seen(".apply-intent") && !seen(".datasets.toml.new"),
                    Moment::After(delay) => started.elapsed() >= delay,
                };
                if now || Instant::now() > deadline {
                    break now;
                }
            };
            let _ = arm.write_all(b"go\n");
            let _ = trigger.wait();
            caught
        });
        let apply = gw
            .client
            .post(gw.url(&format!("/v1/admin/policy/versions/{number}/apply")))
            .bearer_auth(&operator)
            .send()
            .await;
        let answered = matches!(&apply, Ok(r) if r.status() == 200);
        let caught = tokio::task::spawn_blocking(move || killer.join().unwrap())
            .await
            .unwrap();
        gw.kill9().await;
        let left = apply_files(&policies);

        // What the crash left, read as `check` and a restarted hub read it.
        let on_disk = passerelle::policy::PolicyTexts::read(&policies)
            .unwrap()
            .version();
        assert!(
            on_disk == old || on_disk == new,
            "{moment:?}: the folder holds a mixed set"
        );
        let checked = gw.check().await;
        assert!(checked.status.success(), "{}", output_text(&checked));

        gw.restart().await;
        let after: Value = gw
            .get("/v1/admin/policy", Some(&operator))
            .await
            .json()
            .await
            .unwrap();
        let in_force = after["version"].as_str().unwrap().to_string();
        println!(
            "{moment:?}: caught {caught}, answered {answered}, left {left:?}, in force: {}",
            if in_force == new { "new" } else { "old" }
        );
        assert!(in_force == old || in_force == new, "{moment:?}");
        assert_eq!(
            in_force, on_disk,
            "{moment:?}: the restart serves the folder's set"
        );
        if answered {
            assert_eq!(in_force, new, "{moment:?}: an answered apply is durable");
        }
        assert!(
            apply_files(&policies).is_empty(),
            "{moment:?}: the restart leaves no staged file nor intent"
        );
        let checked = gw.check().await;
        assert!(checked.status.success(), "{}", output_text(&checked));
    }
}

/// `kill -9` while a large CSV export streams: the request's record (kind `query`) is on the
/// trail, and the trail verifies once the hub has restarted.
#[tokio::test]
async fn kill_9_during_a_large_export_leaves_its_decision_on_record() {
    let mut gw = ChildGateway::start(&[]).await;
    let token = gw.token("chercheuse-diabete");
    let id = "large-export-killed";
    let mut r = gw
        .client
        .post(gw.url("/v1/query"))
        .bearer_auth(&token)
        .header("x-request-id", id)
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT a.id_sejour, b.nir, c.diagnostic FROM sante.sejours a, sante.sejours b, sante.sejours c LIMIT 1000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut received = 0usize;
    while received < 1 << 20 {
        let chunk = r.chunk().await.unwrap().expect("the export is large");
        received += chunk.len();
    }
    let pid = gw.pid().unwrap();
    // The child runs under its memory limit.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let limit = crate::support::child::MEMORY_LIMIT_MIB * 1024 * 1024;
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max address space") && l.contains(&limit.to_string())),
        "{limits}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("VmPeak") || l.starts_with("VmHWM"))
        .collect();
    println!("child after {received} bytes of the export: {peak:?}");
    gw.kill9().await;
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match r.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    })
    .await
    .unwrap();
    assert!(cut, "the stream was cut, not ended cleanly");

    let audit = gw.audit_dir();
    let mine: Vec<_> = events(&audit)
        .into_iter()
        .filter(|e| e.request_id == id)
        .collect();
    assert!(
        mine.iter()
            .any(|e| e.kind == passerelle::audit::AuditKind::Query
                && e.stage == Some(passerelle::audit::AuditStage::Decision)),
        "the export's decision is on record: {mine:?}"
    );
    assert!(
        mine.iter()
            .all(|e| e.stage != Some(passerelle::audit::AuditStage::Outcome)),
        "a killed export has no outcome: it never ended"
    );

    gw.restart().await;
    let verified = gw.verify_audit().await;
    assert!(verified.status.success(), "{}", output_text(&verified));
    assert!(
        events(&audit)
            .iter()
            .any(|e| e.request_id == id && e.kind == passerelle::audit::AuditKind::Query)
    );
}

/// A hub on a bucket whose local folder (`data.dir`: the copies of objects) is on a small disk:
/// a copy that would leave less than `storage::KEEP_FREE` free is refused before a byte is
/// written (the disk may hold the extracts, the tables, the audit trail), so the hub does not
/// start (its lookup indexes need copies; its log says why), and the disk is left as it was.
#[tokio::test]
async fn a_local_copy_never_fills_the_disk_of_the_local_folder() {
    let Some(mount) = Tmpfs::mount_or_skip("64m") else {
        return;
    };
    let Some(bucket) = crate::support::moto::HubBucket::start("small", "demo").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::hub().config();
    bucket.configure(&mut config);
    config.data.dir = mount.path.join("local");
    config.audit.dir = dir.path().join("audit");
    let e = match passerelle::hub::start(config).await {
        Ok(_) => panic!("started with copies that leave less than KEEP_FREE"),
        Err(e) => e.to_string(),
    };
    // (The log says why: "lookup data file unavailable … not enough free space".)
    assert!(e.contains("lookup index"), "{e}");
    let objects = mount.path.join("local/.objects");
    let written: Vec<_> = std::fs::read_dir(&objects)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
}

/// Pseudonymised extracts whose folder is on a small disk: an extract that would leave less
/// than `storage::KEEP_FREE` free is not written (queries compute pseudonyms in the scan and
/// answer alike), so extracts never fill a disk they may share with the audit trail.
#[tokio::test]
async fn an_extract_never_fills_the_disk_of_its_folder() {
    let Some(mount) = Tmpfs::mount_or_skip("64m") else {
        return;
    };
    let folder = mount.path.join("extracts");
    let on_small_disk = crate::support::DemoServer::start_with(|c| {
        c.pseudonymisation.extracts_dir = folder.clone();
    })
    .await;
    let extracts = on_small_disk
        .server
        .extracts()
        .expect("extracts on")
        .clone();
    let token = on_small_disk.token("chercheuse-diabete");
    let sql = "SELECT nir, count(*) AS n FROM sante.sejours GROUP BY nir ORDER BY nir";
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (status, answer) = on_small_disk.query(&token, sql).await;
        assert_eq!(status, 200, "{answer}");
        answers.push(answer["rows"].clone());
        // The first query started the build: let it end (refused).
        let waiting = extracts.clone();
        tokio::task::spawn_blocking(move || waiting.wait_for_builds())
            .await
            .unwrap();
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(extracts.served(), 0, "no extract was written, none served");
    let written: Vec<_> = std::fs::read_dir(&folder)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
}
