//! Two gateway processes serving one hub (issue #24), as behind a load balancer: one hub
//! folder (policies and their history, datasets, published tables, extracts), one audit folder
//! holding a trail per node, one master key; each process its own `audit.node` and signing
//! key. What a client does on one node, the other honours: the same answers and pseudonyms, a
//! Flight ticket of one redeemed by the other, a policy applied on one served by both (two
//! applies at once: one wins), each table published once, and `audit verify` covering both
//! chains with each node's requests on its own trail.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::child::{ChildGateway, output_text};
use crate::support::hub;

/// `policy.watch_interval_secs` of both nodes in these tests.
const WATCH_SECS: u64 = 1;

/// gw-a (owning the hub folder) and gw-b beside it, each with its own trail and key, both
/// publishing tables in one folder outside the data folder (`data.tables_dir`:
/// `<hub>/published`, as on shared storage beside a bucket).
pub(crate) async fn two_gateways() -> (ChildGateway, ChildGateway) {
    two_gateways_with(&[], &[]).await
}

/// [`two_gateways`], each node given its own overrides as well (`own_a`, `own_b`).
async fn two_gateways_with(
    own_a: &[(&str, &str)],
    own_b: &[(&str, &str)],
) -> (ChildGateway, ChildGateway) {
    let watch = WATCH_SECS.to_string();
    let shared = [
        ("PASSERELLE_POLICY__WATCH_INTERVAL_SECS", watch.as_str()),
        // (Relative to the configuration's folder: `<hub>/published`.)
        ("PASSERELLE_DATA__TABLES_DIR", "published"),
    ];
    let a =
        ChildGateway::start(&[&shared[..], &[("PASSERELLE_AUDIT__NODE", "gw-a")], own_a].concat())
            .await;
    let key_b = a.root.join("keys/gw-b.key");
    passerelle::audit::SigningKey::generate()
        .unwrap()
        .write_new_files(&key_b)
        .unwrap();
    let key_b = key_b.display().to_string();
    let own = [
        ("PASSERELLE_AUDIT__NODE", "gw-b"),
        ("PASSERELLE_AUDIT__SIGNING_KEY_FILE", key_b.as_str()),
    ];
    let b = ChildGateway::beside(&a, &[&shared[..], &own[..], own_b].concat()).await;
    (a, b)
}

/// `sql` answered 200 by `gw` for `token`: (the answer, its request id).
async fn query(gw: &ChildGateway, token: &str, sql: &str) -> (Value, String) {
    let r = gw
        .post_json("/v1/query", token, &json!({ "sql": sql }))
        .await;
    assert_eq!(r.status(), 200, "{sql}");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (r.json().await.unwrap(), id)
}

/// `path` read by `token` on `gw`, as JSON.
async fn get_json(gw: &ChildGateway, path: &str, token: &str) -> Value {
    gw.get(path, Some(token)).await.json().await.unwrap()
}

/// The policy version `gw` has in force, as its operators see it (`/v1/admin/health`).
async fn version_in_force(gw: &ChildGateway, operator: &str) -> String {
    let health: Value = get_json(gw, "/v1/admin/health", operator).await;
    health["checks"]["policy"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Stores on `gw` a version of the files it has in force with `tag` appended to the rules:
/// its number and version.
async fn submit(gw: &ChildGateway, operator: &str, tag: &str) -> (u64, String) {
    let current: Value = get_json(gw, "/v1/admin/policy", operator).await;
    let mut files = current["files"].clone();
    let rules = files["policy.csv"].as_str().unwrap().to_string();
    files["policy.csv"] = json!(format!("{rules}\n# {tag}\n"));
    let r = gw
        .post_json(
            "/v1/admin/policy/versions",
            operator,
            &json!({"files": files, "comment": tag}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let stored: Value = r.json().await.unwrap();
    (
        stored["version"]["number"].as_u64().unwrap(),
        stored["version"]["version"].as_str().unwrap().to_string(),
    )
}

async fn apply(gw: &ChildGateway, operator: &str, number: u64) -> reqwest::Response {
    gw.client
        .post(gw.url(&format!("/v1/admin/policy/versions/{number}/apply")))
        .bearer_auth(operator)
        .send()
        .await
        .unwrap()
}

/// Waits until `gw` serves policy `version` (panics after the watch interval and 5 s more).
async fn serves(gw: &ChildGateway, operator: &str, version: &str) -> Duration {
    let started = tokio::time::Instant::now();
    let limit = Duration::from_secs(WATCH_SECS + 5);
    loop {
        if version_in_force(gw, operator).await == version {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{} never served version {version}:\n{}",
            gw.base,
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of the tables a node's log says it built and published.
fn tables_built(gw: &ChildGateway) -> Vec<String> {
    gw.log()
        .lines()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            let message = v["fields"]["message"].as_str().or(v["message"].as_str())?;
            (message == "table published").then(|| {
                v["fields"]["table"]
                    .as_str()
                    .or(v["table"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .collect()
}

/// Waits (at most `within` on each node) until both `a` and `b` publish `table` (read with
/// `token`), and asserts that they serve one version and that no table was built twice
/// across their logs: the tables they built.
async fn published_once(
    a: &ChildGateway,
    b: &ChildGateway,
    token: &str,
    table: &str,
    within: Duration,
) -> Vec<String> {
    let mut summaries = Vec::new();
    for gw in [a, b] {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let view: Value = get_json(gw, &format!("/v1/tables/{table}"), token).await;
            if view["status"]["state"] == "published" {
                summaries.push(view["status"]["summary"].clone());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{table} never published on {}: {view}",
                gw.base
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_eq!(summaries[0], summaries[1], "one version, published once");
    let mut built = tables_built(a);
    built.extend(tables_built(b));
    let mut once = built.clone();
    once.sort();
    once.dedup();
    assert_eq!(built.len(), once.len(), "a table built twice: {built:?}");
    built
}

/// Two nodes of one hub answer alike and share what must be shared: answers and pseudonyms,
/// Flight tickets, policy versions (one winner when two operators apply at once), published
/// tables (built once), and one verifiable audit record of both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_serve_one_hub_alike() {
    let (a, b) = two_gateways().await;
    let researcher = a.token("chercheuse-diabete");
    let operator = a.token("operateur");

    // The same question, the same answer on both nodes: pseudonyms included (one master key).
    let sql = "SELECT nir, date_naissance FROM sante.sejours ORDER BY nir, date_naissance LIMIT 20";
    let (on_a, id_a) = query(&a, &researcher, sql).await;
    let (on_b, id_b) = query(&b, &researcher, sql).await;
    assert_eq!(on_a["rows"], on_b["rows"]);
    assert_eq!(on_a["rows"][0]["nir"].as_str().unwrap().len(), 22);

    // A Flight ticket issued by gw-a is redeemed by gw-b (sealed with the shared master key).
    let ca = hub().ca_pem();
    let mut flight_a =
        crate::support::flight::FlightClient::connect(a.flight_addr().await, &ca, &researcher)
            .await;
    let mut flight_b =
        crate::support::flight::FlightClient::connect(b.flight_addr().await, &ca, &researcher)
            .await;
    let info = flight_a
        .info("SELECT count(*) AS n FROM sante.sejours")
        .await
        .unwrap();
    let stream = flight_b.stream(&info).await.unwrap();
    let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // Policies: both start on one version; a version stored on one node is in the shared
    // history, applied there, and served by the other within its watch interval.
    let v0 = version_in_force(&a, &operator).await;
    assert_eq!(version_in_force(&b, &operator).await, v0);
    let (n1, v1) = submit(&a, &operator, "reviewed on gw-a").await;
    assert_eq!(
        apply(&b, &operator, n1).await.status(),
        200,
        "gw-b applies what gw-a stored"
    );
    serves(&b, &operator, &v1).await;
    let picked_up = serves(&a, &operator, &v1).await;
    assert!(picked_up <= Duration::from_secs(WATCH_SECS + 5));

    // Two operators apply two versions at once, one on each node: exactly one wins, the other
    // is told 409 `policy_conflict`, and both nodes end on the winner.
    // (Both nodes serve one version here: both stored versions change it.)
    let (na, va) = submit(&a, &operator, "from gw-a").await;
    let (nb, vb) = submit(&b, &operator, "from gw-b").await;
    assert_ne!(na, nb, "one shared history: two numbers");
    let (ra, rb) = tokio::join!(apply(&a, &operator, na), apply(&b, &operator, nb));
    let winner = match (ra.status().as_u16(), rb.status().as_u16()) {
        (200, 409) => {
            let problem: Value = rb.json().await.unwrap();
            assert_eq!(problem["code"], "policy_conflict");
            va
        }
        (409, 200) => {
            let problem: Value = ra.json().await.unwrap();
            assert_eq!(problem["code"], "policy_conflict");
            vb
        }
        other => panic!("two applies from one version must have one winner: {other:?}"),
    };
    serves(&a, &operator, &winner).await;
    serves(&b, &operator, &winner).await;
    assert_eq!(
        passerelle::policy::PolicyTexts::read(&a.root.join("policies"))
            .unwrap()
            .version(),
        winner
    );

    // Tables of the statistical secret: every table published by both nodes, each version
    // built once (the other node adopts the file: the build lock of the shared folder).
    let business = a.token("observatoire-entreprises");
    let table = "stats.etablissements_naf_region";
    let built = published_once(&a, &b, &business, table, Duration::from_secs(120)).await;
    // (In the folder `data.tables_dir` names.)
    assert!(a.root.join(format!("published/{table}.parquet")).is_file());
    assert!(built.iter().any(|t| t == table), "{built:?}");

    // The audit record: each node's requests on its own chain, both chains verified with
    // their pinned keys.
    drop(flight_a);
    drop(flight_b);
    let (mut a, mut b) = (a, b);
    b.stop().await;
    a.stop().await;
    let audit = a.root.join("audit");
    let trail_text = |node: &str| -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(audit.join(node)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                text.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
        text
    };
    let (trail_a, trail_b) = (trail_text("gw-a"), trail_text("gw-b"));
    assert!(trail_a.contains(&id_a) && !trail_b.contains(&id_a));
    assert!(trail_b.contains(&id_b) && !trail_a.contains(&id_b));
    let pins = a.root.join("pins");
    std::fs::create_dir_all(&pins).unwrap();
    std::fs::copy(a.root.join("keys/audit-signing.pub"), pins.join("gw-a.pub")).unwrap();
    std::fs::copy(a.root.join("keys/gw-b.pub"), pins.join("gw-b.pub")).unwrap();
    let verified = a
        .cli(&[
            "audit",
            "verify",
            &audit.display().to_string(),
            "--public-key",
            &pins.display().to_string(),
        ])
        .await;
    let out = output_text(&verified);
    assert!(verified.status.success(), "{out}");
    assert!(out.contains("2 node trail(s), all intact"), "{out}");
    drop(b);
}

/// `env` as the pairs of `&str` a gateway takes.
fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Two gateway processes over one bucket, as `docs/operations.md` deploys them: the datasets
/// objects of the bucket, each node its own local data folder (its copies of objects), the
/// policy, audit and tables folders shared. Both answer alike; each table version is built
/// once (from each node's own copy of the source, the same data version); an object replaced
/// is read by both within seconds, each answer one version whole or a retryable
/// `data_changed`, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_over_one_bucket_answer_alike_and_publish_once() {
    let Some(bucket) = crate::support::moto::HubBucket::start("hub", "demo/v1").await else {
        return;
    };
    let moto = &bucket.moto;
    let folders = [bucket.local.join("gw-a"), bucket.local.join("gw-b")];
    for folder in &folders {
        std::fs::create_dir_all(folder).unwrap();
    }
    let [dir_a, dir_b] = folders.map(|f| f.display().to_string());
    let on_bucket = |dir: &str| {
        let mut env = bucket.env();
        env.push(("PASSERELLE_DATA__DIR".to_string(), dir.to_string()));
        env
    };
    let (env_a, env_b) = (on_bucket(&dir_a), on_bucket(&dir_b));
    let (a, b) = two_gateways_with(&borrowed(&env_a), &borrowed(&env_b)).await;
    let researcher = a.token("chercheuse-diabete");

    let sql = "SELECT nir, date_naissance FROM sante.sejours ORDER BY nir, date_naissance LIMIT 20";
    let (on_a, _) = query(&a, &researcher, sql).await;
    let (on_b, _) = query(&b, &researcher, sql).await;
    assert_eq!(on_a["rows"], on_b["rows"]);
    assert_eq!(on_a["rows"].as_array().unwrap().len(), 20);

    // A table of a source on the bucket: built once, from either node's copy of the source.
    let observatory = a.token("observatoire-sante");
    let table = "stats.sejours_region_age_chapitre";
    published_once(&a, &b, &observatory, table, Duration::from_secs(300)).await;
    // Each node keeps its own copies of the bucket's objects, in its own data folder.
    for dir in [&dir_a, &dir_b] {
        assert!(std::path::Path::new(dir).join(".objects").is_dir(), "{dir}");
    }

    // The stays replaced by 10 rows fewer: both nodes read the new version within seconds.
    let count = "SELECT count(*) AS n, sum(cout) AS s FROM sante.sejours WHERE cout >= 0";
    let emploi = a.token("chercheur-emploi");
    let (before, _) = query(&a, &emploi, count).await;
    let before = before["rows"][0]["n"].as_u64().unwrap();
    let stays = std::fs::read(hub().root.join("data/sante/sejours.parquet")).unwrap();
    let fewer = crate::storage::without_last_rows(&stays, 10);
    object_store::ObjectStoreExt::put(
        &moto.client("hub"),
        &object_store::path::Path::from("demo/v1/sante/sejours.parquet"),
        fewer.into(),
    )
    .await
    .unwrap();
    for gw in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = gw
                .post_json("/v1/query", &emploi, &json!({ "sql": count }))
                .await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            let n = body["rows"][0]["n"].as_u64();
            match status {
                503 => assert_eq!(body["code"], "data_changed", "{body}"),
                200 if n == Some(before - 10) => break,
                200 if n == Some(before) => {}
                _ => panic!("{}: neither version whole: {status} {body}", gw.base),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never read the new version",
                gw.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Two gateway processes sharing the policy set through a bucket (`policy.url`), with no
/// policy folder in common: the bucket seeded once (`passerelle seed-policy`), the second
/// gateway (whose own policy folders do not exist) serves the same set as the first; a version stored on one is in the shared
/// history, applied on the other, picked up by the first within its watch interval; an apply
/// based on a version that is no longer the bucket's is refused (409 `policy_conflict`,
/// nothing written); a set put in the bucket that does not validate is served by neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_share_the_policy_set_through_a_bucket() {
    let Some(moto) = crate::support::moto::Moto::start() else {
        return;
    };
    moto.create_bucket("policies");
    let dir = tempfile::tempdir().unwrap();
    let credentials = moto.credentials_file(dir.path()).display().to_string();
    // Seeded once, by the command an operator runs (the shared hub's configuration and set).
    let seed = std::process::Command::new(crate::support::child::binary())
        .args(["seed-policy", "--config"])
        .arg(hub().root.join("passerelle.toml"))
        .env("PASSERELLE_POLICY__URL", "s3://policies/hub")
        .env("PASSERELLE_POLICY__CREDENTIALS_FILE", &credentials)
        .output()
        .unwrap();
    let said = output_text(&seed);
    assert!(seed.status.success(), "{said}");
    let words: Vec<&str> = said.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "version").unwrap();
    let seeded = words[at + 1].to_string();
    let on_bucket = [
        ("PASSERELLE_POLICY__URL", "s3://policies/hub"),
        ("PASSERELLE_POLICY__CREDENTIALS_FILE", credentials.as_str()),
    ];
    // gw-b watches never (SIGHUP only): what it serves moves only when it applies itself.
    let empty = dir.path().join("nothing-here").display().to_string();
    let own_b = [
        &on_bucket[..],
        &[
            ("PASSERELLE_POLICY__WATCH_INTERVAL_SECS", "0"),
            ("PASSERELLE_POLICY__DIR", empty.as_str()),
            ("PASSERELLE_POLICY__HISTORY_DIR", empty.as_str()),
        ],
    ]
    .concat();
    let (a, b) = two_gateways_with(&on_bucket, &own_b).await;
    let operator = a.token("operateur");
    let s3 = moto.client("policies");
    let set_key = object_store::path::Path::from("hub/policy-set.json");
    let in_bucket = || async {
        let bytes = object_store::ObjectStoreExt::get(&s3, &set_key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice::<passerelle::policy::PolicyTexts>(&bytes)
            .unwrap()
            .version()
    };

    // Both serve the seeded set; gw-b's own folders were never needed.
    let v0 = version_in_force(&a, &operator).await;
    assert_eq!(v0, seeded);
    assert_eq!(in_bucket().await, v0);
    assert_eq!(version_in_force(&b, &operator).await, v0);
    assert!(
        !std::path::Path::new(&empty).exists(),
        "gw-b wrote no folder"
    );

    // Stored on gw-b, applied on gw-b, served by gw-a within its watch interval; gw-a's own
    // policy folder is left as it was (the bucket is the set in force).
    let (n1, v1) = submit(&b, &operator, "stored on gw-b").await;
    assert_eq!(apply(&b, &operator, n1).await.status(), 200);
    assert_eq!(in_bucket().await, v1);
    let picked_up = serves(&a, &operator, &v1).await;
    assert!(picked_up <= Duration::from_secs(WATCH_SECS + 5));
    assert_eq!(
        passerelle::policy::PolicyTexts::read(&a.root.join("policies"))
            .unwrap()
            .version(),
        v0
    );

    // One history: gw-a sees gw-b's version, numbered after the seed's, recorded as applied.
    let versions: Value = get_json(&a, "/v1/admin/policy/versions", &operator).await;
    let stored = versions["versions"].as_array().unwrap();
    let v1_meta = stored.iter().find(|m| m["number"] == n1).unwrap();
    assert_eq!(v1_meta["version"], v1);
    assert_eq!(v1_meta["applied"].as_array().unwrap().len(), 1);
    assert!(stored.iter().any(|m| m["version"] == v0));

    // gw-a applies a new version; gw-b, still serving v1, applies another one based on v1:
    // refused, nothing written, and gw-b now serves the bucket's set.
    let (na, va) = submit(&a, &operator, "from gw-a").await;
    let (nb, _) = submit(&b, &operator, "from gw-b").await;
    assert_ne!(na, nb, "one shared history: two numbers");
    assert_eq!(apply(&a, &operator, na).await.status(), 200);
    assert_eq!(version_in_force(&b, &operator).await, v1);
    let refused = apply(&b, &operator, nb).await;
    assert_eq!(refused.status(), 409);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "policy_conflict", "{problem}");
    assert_eq!(in_bucket().await, va);
    assert_eq!(version_in_force(&b, &operator).await, va);

    // A set put straight into the bucket that does not validate: neither serves it (gw-a's
    // watcher refuses it and says so to operators; gw-b reloads on SIGHUP only).
    let current: Value = get_json(&a, "/v1/admin/policy", &operator).await;
    let mut broken = current["files"].clone();
    broken["model.conf"] = json!("[request_definition]\nr = sub\n");
    object_store::ObjectStoreExt::put(&s3, &set_key, serde_json::to_vec(&broken).unwrap().into())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(WATCH_SECS + 5);
    loop {
        let health: Value = get_json(&a, "/v1/admin/health", &operator).await;
        if health["checks"]["policy"]["last_reload_refused"] == true {
            assert_eq!(health["checks"]["policy"]["version"], va);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken set was never refused: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(version_in_force(&b, &operator).await, va);
    drop(b);
}
