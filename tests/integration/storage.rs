//! Datasets on S3-compatible storage (issue #24), against a real S3-protocol server: moto in
//! server mode (`moto_server`, from `tests/clients/requirements.txt`), on a free loopback
//! port. `.ci/run` installs it and sets `PASSERELLE_INTEROP=required`; elsewhere these tests
//! are skipped (with a message) when `moto_server` is not installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::Value;

use crate::support::moto::{HubBucket, Moto, data_files, hub_on_bucket};
use crate::support::{DemoServer, hub};

/// The Parquet file `bytes` without its last `n` rows.
pub(crate) fn without_last_rows(bytes: &[u8], n: usize) -> Vec<u8> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::copy_from_slice(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let kept = all.slice(0, all.num_rows() - n);
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    writer.write(&kept).unwrap();
    writer.close().unwrap();
    out
}

/// Replaces the bucket's stays (`hub/demo/v1`) by a version 10 rows shorter, then asks `sql`
/// (whose `n` counts the stays) until `h` answers from the new version: each answer in
/// between is one version whole (the old one, planned on it while it was known) or 503
/// `data_changed`, never a mix. How many `data_changed` answers came first.
async fn replace_stays_then_read(moto: &Moto, h: &DemoServer, token: &str, sql: &str) -> usize {
    let (_, before) = h.query(token, sql).await;
    let before = before["rows"][0]["n"].as_u64().unwrap();
    let stays = std::fs::read(hub().root.join("data/sante/sejours.parquet")).unwrap();
    moto.client("hub")
        .put(
            &ObjectPath::from("demo/v1/sante/sejours.parquet"),
            without_last_rows(&stays, 10).into(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut retries = 0;
    loop {
        let (status, body) = h.query(token, sql).await;
        let n = body["rows"][0]["n"].as_u64();
        match status {
            503 => {
                assert_eq!(body["code"], "data_changed", "{body}");
                retries += 1;
            }
            200 if n == Some(before - 10) => return retries,
            // Planned on the old version (known for up to a second): its answer, whole.
            200 if n == Some(before) => {}
            _ => panic!("neither version whole, nor a retryable refusal: {status} {body}"),
        }
        assert!(Instant::now() < deadline, "the new version is never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(h: &DemoServer, token: &str, path: &str) -> (u16, Value) {
    let answer = h
        .server
        .client
        .get(h.server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// A hub whose data are objects of a bucket answers every query as the same hub on local
/// files: row filters, pseudonyms and masks alike; nothing is read from its local folder.
#[tokio::test]
async fn a_hub_on_a_bucket_answers_like_one_on_local_files() {
    let Some(hub_bucket) = HubBucket::start("hub", "demo/v1").await else {
        return;
    };
    let moto = &hub_bucket.moto;
    // (Without extracts: every query reads the objects themselves, so that a read after the
    // replacement below meets the store's `If-Match`. A query pinned to a version whose
    // extract is built answers that version whole from it:
    // `extracts_serve_a_hub_on_a_bucket_at_the_version_each_query_is_pinned_to`.)
    let on_bucket = DemoServer::start_with(|c| {
        hub_bucket.configure(c);
        c.pseudonymisation.extracts = false;
    })
    .await;
    let on_files = DemoServer::start_with(|_| {}).await;
    for (who, sql) in [
        // A row filter, pseudonyms and generalised columns.
        (
            "chercheuse-diabete",
            "SELECT id_sejour, nir, date_naissance, code_postal, diagnostic \
             FROM sante.sejours ORDER BY id_sejour LIMIT 50",
        ),
        (
            "chercheuse-diabete",
            "SELECT region, count(*) AS n, sum(cout) AS cout FROM sante.sejours \
             GROUP BY region ORDER BY region",
        ),
        // A join of two datasets on the pseudonym.
        (
            "chercheuse-diabete",
            "SELECT count(*) AS n FROM sante.sejours s JOIN fiscal.revenus r ON s.nir = r.nir",
        ),
        // Another project: other pseudonyms, no row filter.
        (
            "chercheur-emploi",
            "SELECT id_sejour, nir, region FROM sante.sejours ORDER BY id_sejour LIMIT 20",
        ),
    ] {
        let (status, bucket) = on_bucket.query(&on_bucket.token(who), sql).await;
        let (_, files) = on_files.query(&on_files.token(who), sql).await;
        assert_eq!(status, 200, "{who}: {sql}: {bucket}");
        assert_eq!(bucket["rows"], files["rows"], "{who}: {sql}");
        assert!(!bucket["rows"].as_array().unwrap().is_empty(), "{sql}");
    }
    // Lookups read a local copy of the object's current version: the same records.
    let trace = "context=Calcul%20du%20quotient%20familial&recipient=13000170500016\
                 &object=dossier-2026-0042";
    for nir in crate::support::allocataire_nirs(3) {
        let path = format!("/v1/lookup/social.allocataires/{nir}?{trace}");
        let (status, bucket) = get(&on_bucket, &on_bucket.token("caf"), &path).await;
        let (_, files) = get(&on_files, &on_files.token("caf"), &path).await;
        assert_eq!(status, 200, "{bucket}");
        assert_eq!(bucket["record"], files["record"]);
    }
    // Tables of the statistical secret are computed from a local copy of their source, and
    // answer as on local files.
    let table = "SELECT region, tranche_age, chapitre, sejours, patients \
                 FROM stats.sejours_region_age_chapitre \
                 ORDER BY region, tranche_age, chapitre";
    let deadline = Instant::now() + Duration::from_secs(300);
    let observatory = |h: &DemoServer| h.token("observatoire-sante");
    let published = |status: u16, body: &Value| {
        status == 200 && !body["rows"].as_array().is_none_or(Vec::is_empty)
    };
    let (bucket, files) = loop {
        let (s1, bucket) = on_bucket.query(&observatory(&on_bucket), table).await;
        let (s2, files) = on_files.query(&observatory(&on_files), table).await;
        if published(s1, &bucket) && published(s2, &files) {
            break (bucket, files);
        }
        assert!(
            Instant::now() < deadline,
            "never published: {bucket} {files}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(bucket["rows"], files["rows"]);

    // A query stays inside its datasets: no listing, no other object.
    let (status, body) = on_bucket
        .query(
            &on_bucket.token("chercheuse-diabete"),
            "SELECT * FROM 's3://hub/demo/v1/sante/sejours.parquet'",
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // The stays replaced by a version with fewer rows: a query planned on the old version
    // (kept for up to a second) answers from it whole or fails retryably when it must read a
    // byte of it, never mixing; then the new one is read.
    let count = "SELECT count(*) AS n FROM sante.sejours";
    let researcher = on_bucket.token("chercheur-emploi");
    let retries = replace_stays_then_read(moto, &on_bucket, &researcher, count).await;
    // (A slow machine may plan after the old version expired: then no retry was needed.)
    eprintln!("data_changed answers before the new version: {retries}");
    // A query that reads rows of the old version after the replacement must fail: the same
    // replacement again, then at once a query that reads every row.
    let (_, before) = on_bucket.query(&researcher, count).await;
    let before = before["rows"][0]["n"].as_u64().unwrap();
    let stays = std::fs::read(hub().root.join("data/sante/sejours.parquet")).unwrap();
    moto.client("hub")
        .put(
            &ObjectPath::from("demo/v1/sante/sejours.parquet"),
            without_last_rows(&stays, 20).into(),
        )
        .await
        .unwrap();
    let sum = "SELECT count(*) AS n, sum(cout) AS s FROM sante.sejours WHERE cout >= 0";
    let (status, body) = on_bucket.query(&researcher, sum).await;
    eprintln!("a whole read right after the replacement: {status}");
    assert!(
        (status == 503 && body["code"] == "data_changed")
            || (status == 200 && body["rows"][0]["n"].as_u64() < Some(before)),
        "{status}: {body}"
    );
    // Only the hub's own working files (hidden folders: copies, tables) are in its folder.
    assert!(data_files(&hub_bucket.local).is_empty());
}

/// A cluster over the bucket (issue #24): executors given the bucket and credentials of their
/// own read each shipped scan's objects at the versions the gateway planned on (the plan
/// carries them; every read `If-Match`), so queries answer as on a gateway alone over the
/// same bucket; an object replaced under a query fails it retryably (`data_changed`) or is
/// read whole, never mixed; executors without the bucket read nothing (the query fails).
#[tokio::test]
async fn a_cluster_reads_the_bucket_at_the_versions_its_gateway_planned_on() {
    let Some(bucket) = HubBucket::start("hub", "demo/v1").await else {
        return;
    };
    let moto = &bucket.moto;
    let dir = tempfile::tempdir().unwrap();
    let on_bucket = |c: &mut passerelle::config::Config| bucket.configure(c);
    let cluster = crate::support::local_cluster_with(&dir.path().join("a"), 2, &bucket.env());
    let on_cluster = DemoServer::start_with(|c| {
        on_bucket(c);
        c.cluster = Some(cluster.gateway.clone());
        // Every query reading a dataset takes the heavy lane, hence the cluster.
        c.limits.cheap_query_input_mb = 0;
    })
    .await;
    let alone = DemoServer::start_with(on_bucket).await;
    for (who, sql) in [
        (
            "chercheuse-diabete",
            "SELECT id_sejour, nir, date_naissance, code_postal, diagnostic \
             FROM sante.sejours ORDER BY id_sejour LIMIT 50",
        ),
        (
            "chercheuse-diabete",
            "SELECT count(*) AS n FROM sante.sejours s JOIN fiscal.revenus r ON s.nir = r.nir",
        ),
        (
            "chercheur-emploi",
            "SELECT region, count(*) AS n, sum(cout) AS cout FROM sante.sejours \
             GROUP BY region ORDER BY region",
        ),
    ] {
        let (status, there) = on_cluster.query(&on_cluster.token(who), sql).await;
        let (_, here) = alone.query(&alone.token(who), sql).await;
        assert_eq!(status, 200, "{who}: {sql}: {there}");
        assert_eq!(there["rows"], here["rows"], "{who}: {sql}");
        assert!(!there["rows"].as_array().unwrap().is_empty(), "{sql}");
    }

    // The stays replaced by a version with fewer rows: a query planned on the old version
    // (kept for up to a second) fails retryably, or reads one version whole, never a mix.
    let researcher = on_cluster.token("chercheur-emploi");
    let whole = "SELECT count(*) AS n, sum(cout) AS s FROM sante.sejours WHERE cout >= 0";
    let retries = replace_stays_then_read(moto, &on_cluster, &researcher, whole).await;
    eprintln!("data_changed answers on the cluster before the new version: {retries}");

    // Executors that were not given the bucket read nothing: the query fails, opaque.
    let bare = crate::support::local_cluster(&dir.path().join("b"), 1);
    let unpinned = DemoServer::start_with(|c| {
        on_bucket(c);
        c.cluster = Some(bare.gateway.clone());
        c.limits.cheap_query_input_mb = 0;
    })
    .await;
    let (status, body) = unpinned
        .query(
            &unpinned.token("chercheur-emploi"),
            "SELECT id_sejour, region FROM sante.sejours ORDER BY id_sejour LIMIT 5",
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "internal_error", "{body}");
    assert!(body.get("rows").is_none(), "{body}");
    for secret in ["hub/", "demo/v1", "sejours.parquet", "s3:"] {
        assert!(!body.to_string().contains(secret), "{body}");
    }
}

/// A query is pinned to the versions it was planned on: an object replaced meanwhile makes
/// its reads fail with a precondition error (`data_changed`, retryable), never a mix; the
/// next plan reads the new version.
#[tokio::test]
async fn an_object_replaced_under_a_query_fails_it_retryably_never_mixed() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket("pins");
    let s3 = moto.client("pins");
    let key = ObjectPath::from("hub/sante/sejours.parquet");
    let parquet = std::fs::read(hub().root.join("data/sante/sejours.parquet")).unwrap();
    s3.put(&key, parquet.clone().into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = passerelle::storage::ObjectData::open(&passerelle::config::DataConfig {
        url: Some("s3://pins/hub".into()),
        credentials_file: Some(moto.credentials_file(dir.path())),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let pins = data.pin(&["sante/sejours.parquet"]).await.unwrap();
    let pinned = pins.store().unwrap();
    assert_eq!(
        pinned.get_range(&key, 0..4).await.unwrap().as_ref(),
        b"PAR1"
    );
    // Replaced by another Parquet file.
    let other = std::fs::read(hub().root.join("data/fiscal/revenus.parquet")).unwrap();
    s3.put(&key, other.clone().into()).await.unwrap();
    let e = pinned.get_range(&key, 4..8).await.unwrap_err();
    assert!(passerelle::storage::is_version_changed(&e), "{e}");
    // The replaced version is forgotten at once: the next plan pins the new one.
    let again = data.pin(&["sante/sejours.parquet"]).await.unwrap();
    let version = again.version("sante/sejours.parquet").unwrap();
    assert_eq!(version.meta.size, other.len() as u64);
    assert!(
        version
            .schema
            .field_with_name("revenu_fiscal_reference")
            .is_ok()
    );
    assert_eq!(
        again
            .store()
            .unwrap()
            .get_range(&key, 0..4)
            .await
            .unwrap()
            .as_ref(),
        b"PAR1"
    );
}

/// A bucket that does not exist, an object the catalog names but the bucket lacks, and a
/// credentials file others may read: the hub does not start, and says why.
#[tokio::test]
async fn a_missing_bucket_or_object_or_open_credentials_stop_the_start() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    hub_on_bucket(&moto, "present", "demo").await;
    let credentials = moto.credentials_file(dir.path());
    let start = |url: &str, credentials: &Path| {
        let mut config = hub().config();
        config.data.url = Some(url.into());
        config.data.credentials_file = Some(credentials.to_path_buf());
        config.audit.dir = dir.path().join(format!("audit-{}", url.len()));
        config
    };
    let refused = |config| async move {
        match passerelle::hub::start(config).await {
            Ok(_) => panic!("the hub started"),
            Err(e) => e.to_string(),
        }
    };
    let e = refused(start("s3://absent/demo", &credentials)).await;
    assert!(e.contains("is not in the bucket"), "{e}");
    let e = refused(start("s3://present/elsewhere", &credentials)).await;
    assert!(
        e.contains("sante.sejours") && e.contains("is not in the bucket"),
        "{e}"
    );
    let open = dir.path().join("open-credentials");
    std::fs::copy(&credentials, &open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = refused(start("s3://present/demo", &open)).await;
    assert!(e.contains("chmod 600"), "{e}");
    assert!(!e.contains("test"), "no credential in the message: {e}");
    // `passerelle check` says the same without starting.
    let problems = passerelle::hub::check(&start("s3://present/elsewhere", &credentials));
    assert!(
        problems.iter().any(|p| p.contains("sante.sejours")),
        "{problems:?}"
    );
}

/// A store that checks credentials: the hub reads with the right key; with a wrong secret it
/// does not start, and no message holds a secret.
#[tokio::test]
async fn wrong_credentials_stop_the_start_and_name_no_secret() {
    let Some(moto) = Moto::start_checking_credentials("guarded") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    hub_on_bucket(&moto, "guarded", "demo").await;
    let config = |credentials: PathBuf, audit: &str| {
        let mut config = hub().config();
        config.data.url = Some("s3://guarded/demo".into());
        config.data.credentials_file = Some(credentials);
        config.audit.dir = dir.path().join(audit);
        config
    };
    let right = config(moto.credentials_file(dir.path()), "audit-right");
    assert_eq!(passerelle::hub::check(&right), Vec::<String>::new());
    let wrong_secret = "wrong-secret-0123456789";
    let wrong = config(
        moto.credentials_file_with(dir.path(), "wrong", wrong_secret),
        "audit-wrong",
    );
    let problems = passerelle::hub::check(&wrong);
    assert!(
        problems.iter().any(|p| p.contains("sante.sejours")),
        "{problems:?}"
    );
    let e = match passerelle::hub::start(wrong).await {
        Ok(_) => panic!("started with a wrong secret"),
        Err(e) => e.to_string(),
    };
    for text in problems.iter().chain([&e]) {
        assert!(
            !text.contains(wrong_secret) && !text.contains(&moto.keys.1),
            "{text}"
        );
    }
}

/// Pseudonymised extracts on a bucket (issue #24): a query starts the local copy of the
/// object's version it is pinned to and the extract of that copy, later queries read the
/// extract, and every answer is the one computed in the scan; once the object is replaced, the
/// old version's extract is never read again: answers come from the new version (computed in
/// the scan until its own extract is built, then from it).
#[tokio::test]
async fn extracts_serve_a_hub_on_a_bucket_at_the_version_each_query_is_pinned_to() {
    let Some(hub_bucket) = HubBucket::start("hub", "demo/v1").await else {
        return;
    };
    let folder = tempfile::tempdir().unwrap();
    let on_bucket = DemoServer::start_with(|c| {
        hub_bucket.configure(c);
        c.pseudonymisation.extracts_dir = folder.path().join("extracts");
    })
    .await;
    let reference = DemoServer::start_with(|c| c.pseudonymisation.extracts = false).await;
    let extracts = on_bucket.server.extracts().expect("extracts on").clone();
    let who = "chercheuse-diabete";
    let queries = [
        "SELECT nir, count(*) AS n FROM sante.sejours GROUP BY nir ORDER BY nir",
        "SELECT count(*) AS n FROM sante.sejours s JOIN fiscal.revenus r ON s.nir = r.nir",
        "SELECT id_sejour, nir, diagnostic FROM sante.sejours ORDER BY id_sejour LIMIT 30",
    ];
    let wait_for_builds = || {
        let extracts = extracts.clone();
        tokio::task::spawn_blocking(move || extracts.wait_for_builds())
    };
    // The first queries start the copies' downloads, then the extracts' builds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = extracts.served();
        for sql in queries {
            let (status, body) = on_bucket.query(&on_bucket.token(who), sql).await;
            assert_eq!(status, 200, "{sql}: {body}");
        }
        if extracts.served() >= before + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no extract is ever read on a bucket"
        );
        wait_for_builds().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for sql in queries {
        let (_, expected) = reference.query(&reference.token(who), sql).await;
        let (status, answer) = on_bucket.query(&on_bucket.token(who), sql).await;
        assert_eq!(status, 200);
        assert_eq!(answer["rows"], expected["rows"], "{sql}");
    }
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let first_extracts = names(&folder.path().join("extracts"));
    assert!(
        first_extracts
            .iter()
            .all(|n| !n.contains("sejours") && !n.contains("revenus")),
        "extracts of copies are named by hashes, not keys: {first_extracts:?}"
    );

    // The object is replaced: the old extract is never read for the new version. (Another
    // project, without row filter: the new version counts 10 stays less.)
    let who = "chercheur-emploi";
    let count = "SELECT count(*) AS n, count(DISTINCT nir) AS people FROM sante.sejours";
    let read_from_an_extract = |expected: Option<Value>| {
        let (extracts, on_bucket) = (extracts.clone(), &on_bucket);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let before = extracts.served();
                let (status, answer) = on_bucket.query(&on_bucket.token(who), count).await;
                assert_eq!(status, 200, "{answer}");
                if let Some(expected) = &expected {
                    assert_eq!(&answer["rows"], expected, "the new version only");
                }
                if extracts.served() > before {
                    return answer["rows"].clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "the version's extract is never read"
                );
                let extracts = extracts.clone();
                tokio::task::spawn_blocking(move || extracts.wait_for_builds())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let old = read_from_an_extract(None).await;
    replace_stays_then_read(&hub_bucket.moto, &on_bucket, &on_bucket.token(who), count).await;
    let (_, new) = on_bucket.query(&on_bucket.token(who), count).await;
    assert_ne!(new["rows"], old);
    read_from_an_extract(Some(new["rows"].clone())).await;
}

/// The policy set in a bucket (`policy.url`), against moto checking credentials: wrong
/// credentials or a missing bucket stop the start and the seed (naming no secret); a start
/// never fills an empty bucket (`check` says so too); `seed-policy` writes only a valid set,
/// once, and never into a bucket that has a history; a set in the bucket that does not parse,
/// or is larger than a policy set may be, stops the start; two stores on one bucket cannot both
/// replace the set they started from, even when the second writer comes between the first's
/// look and its write; two approvals at once are both kept; a history number is taken once.
#[tokio::test]
async fn a_policy_set_in_a_bucket_is_shared_conditionally_and_fails_closed() {
    use passerelle::hub::{PolicyPlaces, check, seed_policy};
    use passerelle::policy::{ApplyError, HistoryPlace, PolicyStore, PolicyTexts, SetPlace};
    use passerelle::storage::policy_bucket::PolicyBucket;
    let Some(moto) = Moto::start_checking_credentials("rules") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let right = moto.credentials_file(dir.path());
    let wrong_secret = "wrong-secret-9876543210";
    let wrong = moto.credentials_file_with(dir.path(), "wrong", wrong_secret);
    let config = |url: &str, credentials: &Path| {
        let mut config = hub().config();
        config.policy.url = Some(url.to_string());
        config.policy.credentials_file = Some(credentials.to_path_buf());
        config.audit.dir = dir.path().join("audit");
        config
    };
    let load = |config: &passerelle::config::Config| {
        let places = PolicyPlaces::open(&config.policy).unwrap();
        PolicyStore::load_in(places.set, None, Some(places.history), None)
    };
    let text = |problems: &[String]| problems.join("\n");
    let no_secret = |said: &str| {
        assert!(
            !said.contains(wrong_secret) && !said.contains(&moto.keys.1),
            "{said}"
        );
    };
    let on_rules = config("s3://rules/hub", &right);
    let s3 = moto.client("rules");
    let set_key = ObjectPath::from("hub/policy-set.json");

    // Wrong credentials, a missing bucket: no store, no seed, and no secret in what is said.
    for (config, why) in [
        (config("s3://rules/hub", &wrong), "permission denied"),
        (config("s3://absent/hub", &right), "holds no policy set"),
    ] {
        let said: Vec<String> = load(&config)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(text(&said).contains(why), "{said:?}");
        no_secret(&text(&said));
        no_secret(&text(&seed_policy(&config).unwrap_err()));
    }
    assert!(s3.get(&set_key).await.is_err());

    // An empty bucket: a start never fills it, and `check` says what a start would.
    let said = load(&on_rules).unwrap_err();
    assert!(said[0].to_string().contains("seed-policy"), "{said:?}");
    let checked = text(&check(&on_rules));
    assert!(checked.contains("holds no policy set"), "{checked}");

    // A seed folder that does not validate is never written to the bucket.
    let mut with_bad_seed = on_rules.clone();
    with_bad_seed.policy.dir = dir.path().join("bad-seed");
    PolicyTexts {
        model: "[request_definition]\nr = sub\n".into(),
        ..PolicyTexts::read(&hub().root.join("policies")).unwrap()
    }
    .write(&with_bad_seed.policy.dir)
    .unwrap();
    assert!(seed_policy(&with_bad_seed).is_err());
    assert!(s3.get(&set_key).await.is_err());

    // Seeded once from the hub's folder; two stores on the bucket serve that set.
    let seeded = seed_policy(&on_rules).unwrap();
    assert_eq!(
        seeded,
        PolicyTexts::read(&hub().root.join("policies"))
            .unwrap()
            .version()
    );
    assert!(text(&seed_policy(&on_rules).unwrap_err()).contains("already holds"));
    assert_eq!(check(&on_rules), Vec::<String>::new());
    let first = load(&on_rules).unwrap();
    let second = load(&on_rules).unwrap();
    assert_eq!(first.current().version, seeded);
    assert_eq!(second.current().version, seeded);
    let history = PolicyPlaces::open(&on_rules.policy).unwrap().history;
    assert_eq!(
        history.list().unwrap().len(),
        1,
        "the seed is recorded once"
    );

    // The first store applies a change; the second, still on the seed, cannot replace it.
    let changed = |tag: &str| {
        let mut t = first.current().texts.clone();
        t.rules.push_str(&format!("\n# {tag}\n"));
        t
    };
    let (from_first, from_second) = (changed("first"), changed("second"));
    first.apply(from_first.clone()).await.unwrap();
    match second.apply(from_second).await {
        Err(ApplyError::Conflict { based_on, found }) => {
            assert_eq!(based_on, seeded);
            assert_eq!(found, from_first.version());
        }
        other => panic!("two applies from one version both won: {other:?}"),
    }
    assert_eq!(second.current().version, from_first.version());

    // Another writer between a write's look and its write: the write fails `If-Match`, looks
    // again, and the new look decides (here: refuses to replace the intruder's set).
    let open = || PolicyBucket::open("s3://rules/hub", Some(&right)).unwrap();
    let (bucket, other) = (open(), open());
    let (late, intruder) = (changed("late"), changed("intruder"));
    let mut looks = Vec::new();
    let written = bucket
        .write_if(&late, &mut |seen| {
            let version = seen.as_ref().unwrap().version();
            if looks.is_empty() {
                assert!(other.write_if(&intruder, &mut |_| true).unwrap());
            }
            looks.push(version.clone());
            version == from_first.version()
        })
        .unwrap();
    assert!(!written, "a write over a set it never looked at");
    assert_eq!(looks, [from_first.version(), intruder.version()]);
    assert_eq!(bucket.read().unwrap().version(), intruder.version());

    // Two approvals recorded at once on one version: neither is lost.
    let mut first_try = true;
    let approved = bucket
        .update(1, &mut |meta| {
            if first_try {
                first_try = false;
                other
                    .update(1, &mut |m| {
                        m.approvals.push((chrono::Utc::now(), "other".into()))
                    })
                    .unwrap();
            }
            meta.approvals.push((chrono::Utc::now(), "this".into()));
        })
        .unwrap()
        .unwrap();
    let who: Vec<&str> = approved.approvals.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(who, ["other", "this"]);

    // One history shared: numbers follow each other, a taken number is not taken again.
    let meta = history.submit(&from_first, "operateur", "again").unwrap();
    assert_eq!(meta.number, 2);
    let mut taken = meta.clone();
    taken.comment = "over it".into();
    assert!(!bucket.create(&taken, &from_first).unwrap());
    let (again, files) = history.get(2).unwrap().unwrap();
    assert_eq!(
        (again.comment.as_str(), files),
        ("again", from_first.clone())
    );

    // A number taken but not named in the index (a write cut between the two) is stepped
    // over.
    s3.put(
        &ObjectPath::from("hub/history/3.json"),
        b"{}".to_vec().into(),
    )
    .await
    .unwrap();
    let after_cut = history
        .submit(&from_first, "operateur", "after a cut")
        .unwrap();
    assert_eq!(after_cut.number, 4);

    // A bucket that lost its set but has a history is not seeded again from a folder (it
    // could put back rules withdrawn since), and no start serves it.
    s3.delete(&set_key).await.unwrap();
    assert!(text(&seed_policy(&on_rules).unwrap_err()).contains("has a policy history"));
    assert!(s3.get(&set_key).await.is_err());
    assert!(load(&on_rules).is_err());

    // A set in the bucket that does not parse, or that is too large, stops a start; the
    // stores serving keep their set.
    for bytes in [b"{ not json".to_vec(), vec![b' '; 17 * 1024 * 1024]] {
        s3.put(&set_key, bytes.into()).await.unwrap();
        let said: String = load(&on_rules)
            .unwrap_err()
            .iter()
            .map(|p| p.named())
            .collect();
        assert!(said.starts_with("policy-set.json: "), "{said}");
        assert!(!said.contains("rules"), "the bucket is not named: {said}");
        assert!(first.reload().await.is_err());
        assert_eq!(first.current().version, from_first.version());
    }

    // A history index that does not read: `check` says so, and no start (never an empty
    // history).
    s3.put(&set_key, serde_json::to_vec(&from_first).unwrap().into())
        .await
        .unwrap();
    s3.put(
        &ObjectPath::from("hub/history.json"),
        b"not json".to_vec().into(),
    )
    .await
    .unwrap();
    let checked = text(&check(&on_rules));
    assert!(
        checked.contains("policy history cannot be read"),
        "{checked}"
    );
    assert!(load(&on_rules).is_err());
    assert!(history.list().is_err());
}
