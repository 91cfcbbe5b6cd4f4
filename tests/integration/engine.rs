//! The secure SQL engine against the demo hub's `projet-diabete` persona: hidden columns by
//! every route, raw values behind pseudonyms and generalisations, rows outside the row filter
//! (including error oracles), catalog probing, forbidden statements and functions.

use std::collections::HashSet;
use std::time::Duration;

use arrow::array::AsArray;
use serde_json::{Value, json};

use crate::support::{TestServer, hub};

struct Engine {
    dev: passerelle::demo::DevIssuer,
    server: TestServer,
}

impl Engine {
    async fn start() -> Engine {
        let dev = passerelle::demo::DevIssuer::start().await.unwrap();
        let server = TestServer::start(vec![dev.issuer_config()]).await;
        server.wait_ready(Duration::from_secs(10)).await;
        Engine { dev, server }
    }

    async fn query_as(&self, who: &str, sql: &str) -> (u16, Value) {
        let token = self
            .dev
            .token_for(passerelle::demo::personas::persona(who).unwrap())
            .unwrap();
        let r = self
            .server
            .client
            .post(self.server.url("/v1/query"))
            .bearer_auth(token)
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn query(&self, sql: &str) -> (u16, Value) {
        self.query_as("chercheuse-diabete", sql).await
    }

    async fn ok(&self, sql: &str) -> Value {
        let (status, body) = self.query(sql).await;
        assert_eq!(status, 200, "`{sql}` → {body}");
        body
    }

    async fn refused(&self, sql: &str) -> Value {
        let (status, body) = self.query(sql).await;
        assert!(
            (400..500).contains(&status),
            "`{sql}` should be refused, got {status} {body}"
        );
        assert!(body["code"].is_string(), "{body}");
        body
    }

    async fn count(&self, sql: &str) -> i64 {
        let body = self.ok(sql).await;
        let row = &body["rows"][0];
        row.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_i64()
            .unwrap()
    }
}

/// Raw facts of the shared hub, read straight from the Parquet files.
struct Raw {
    region_84: i64,
    nirs_84: Vec<String>,
    all_nirs: HashSet<String>,
    join_84: i64,
}

fn raw() -> Raw {
    let read = |relative: &str| {
        let file = std::fs::File::open(hub().layout().data().join(relative)).unwrap();
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect::<Vec<_>>()
    };
    let mut nirs_84 = Vec::new();
    let mut all_nirs = HashSet::new();
    for batch in read("sante/sejours.parquet") {
        let nir = batch
            .column_by_name("nir")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let region = batch
            .column_by_name("region")
            .unwrap()
            .as_string::<i32>()
            .clone();
        for i in 0..batch.num_rows() {
            all_nirs.insert(nir.value(i).to_string());
            if region.value(i) == "84" {
                nirs_84.push(nir.value(i).to_string());
            }
        }
    }
    let mut fiscal = HashSet::new();
    for batch in read("fiscal/revenus.parquet") {
        let nir = batch
            .column_by_name("nir")
            .unwrap()
            .as_string::<i32>()
            .clone();
        for i in 0..batch.num_rows() {
            fiscal.insert(nir.value(i).to_string());
            all_nirs.insert(nir.value(i).to_string());
        }
    }
    let join_84 = nirs_84.iter().filter(|n| fiscal.contains(*n)).count() as i64;
    Raw {
        region_84: nirs_84.len() as i64,
        nirs_84,
        all_nirs,
        join_84,
    }
}

fn column_names(body: &Value) -> Vec<String> {
    body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn hidden_columns_do_not_exist_by_any_route() {
    let e = Engine::start().await;
    for sql in [
        "SELECT nom FROM sante.sejours",
        "SELECT \"nom\" FROM sante.sejours",
        "SELECT NOM FROM sante.sejours",
        "SELECT sejours.nom FROM sante.sejours",
        "SELECT s.nom FROM sante.sejours s",
        "SELECT t.nom FROM (SELECT * FROM sante.sejours) t",
        "WITH t AS (SELECT * FROM sante.sejours) SELECT nom FROM t",
        "SELECT nir FROM sante.sejours UNION SELECT nom FROM sante.sejours",
        "SELECT count(nom) FROM sante.sejours",
        "SELECT row_number() OVER (ORDER BY nom) FROM sante.sejours",
        "SELECT montant_impot FROM fiscal.revenus",
        "SELECT situation_familiale FROM fiscal.revenus",
        "SELECT r.montant_impot FROM sante.sejours s JOIN fiscal.revenus r ON s.nir = r.nir",
        "SELECT * FROM sante.sejours s, LATERAL (SELECT nom) x",
    ] {
        let body = e.refused(sql).await;
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains("montant_impot") || sql.contains("montant_impot"),
            "{detail}"
        );
    }
    let star = e.ok("SELECT * FROM sante.sejours LIMIT 1").await;
    assert_eq!(
        column_names(&star),
        [
            "id_sejour",
            "nir",
            "date_naissance",
            "sexe",
            "code_postal",
            "region",
            "date_entree",
            "date_sortie",
            "diagnostic",
            "cout"
        ]
    );
    for sql in [
        "SELECT * FROM (SELECT * FROM sante.sejours) t LIMIT 1",
        "WITH t AS (SELECT * FROM sante.sejours) SELECT * FROM t LIMIT 1",
    ] {
        assert_eq!(column_names(&e.ok(sql).await), column_names(&star), "{sql}");
    }
    let fiscal = e.ok("SELECT * FROM fiscal.revenus LIMIT 1").await;
    assert_eq!(
        column_names(&fiscal),
        ["nir", "annee", "revenu_fiscal_reference", "nombre_parts"]
    );
    let natural = e
        .ok("SELECT * FROM sante.sejours NATURAL JOIN fiscal.revenus LIMIT 1")
        .await;
    let names = column_names(&natural);
    assert!(
        !names
            .iter()
            .any(|n| n == "nom" || n == "montant_impot" || n == "situation_familiale"),
        "{names:?}"
    );
}

#[tokio::test]
async fn raw_values_never_leave_behind_pseudonyms_and_generalisations() {
    let e = Engine::start().await;
    let raw = raw();
    let body = e
        .ok("SELECT nir, date_naissance, code_postal FROM sante.sejours")
        .await;
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len() as i64, raw.region_84);
    for row in rows {
        let nir = row["nir"].as_str().unwrap();
        assert_eq!(nir.len(), 22, "{nir}");
        assert!(!raw.all_nirs.contains(nir));
        assert!(
            row["date_naissance"].as_str().unwrap().ends_with("-01-01"),
            "{row}"
        );
        assert!(row["code_postal"].as_str().unwrap().len() <= 3, "{row}");
    }
    for nir in raw.nirs_84.iter().take(5) {
        let sql = format!("SELECT count(*) FROM sante.sejours WHERE nir = '{nir}'");
        assert_eq!(e.count(&sql).await, 0, "a raw NIR in WHERE matches nothing");
    }
    assert_eq!(
        e.count("SELECT count(*) FROM sante.sejours WHERE length(nir) <> 22")
            .await,
        0
    );
    assert_eq!(e.count("SELECT count(*) FROM sante.sejours WHERE date_naissance <> date_trunc('year', date_naissance)").await, 0);
    e.refused("SELECT masked(nir) FROM sante.sejours").await;
}

#[tokio::test]
async fn rows_outside_the_row_filter_are_unreachable() {
    let e = Engine::start().await;
    let raw = raw();
    assert!(raw.region_84 > 0);
    assert_eq!(
        e.count("SELECT count(*) FROM sante.sejours").await,
        raw.region_84
    );
    assert_eq!(
        e.count("SELECT count(*) FROM sante.sejours WHERE region <> '84'")
            .await,
        0
    );
    assert_eq!(
        e.count("SELECT count(*) FROM sante.sejours WHERE region = '84' OR 1 = 1")
            .await,
        raw.region_84
    );
    assert_eq!(
        e.count("SELECT count(*) FROM sante.sejours WHERE region = '11' OR region = '93'")
            .await,
        0
    );
    let regions = e.ok("SELECT DISTINCT region FROM sante.sejours").await;
    assert_eq!(regions["rows"], json!([{"region": "84"}]));
    let grouped = e
        .ok("SELECT region, count(*) AS n FROM sante.sejours GROUP BY region")
        .await;
    assert_eq!(grouped["rows"].as_array().unwrap().len(), 1);
    let window = e
        .ok("SELECT count(*) OVER () AS n FROM sante.sejours LIMIT 1")
        .await;
    assert_eq!(window["rows"][0]["n"], json!(raw.region_84));
    let sub = "SELECT count(*) FROM (SELECT * FROM sante.sejours WHERE region <> '84') t";
    assert_eq!(e.count(sub).await, 0);
}

#[tokio::test]
async fn error_oracles_never_evaluate_hidden_rows() {
    let e = Engine::start().await;
    let raw = raw();
    // Each expression fails on any row outside region 84; the engine must never evaluate it
    // there, so each query succeeds and counts only the visible rows.
    for sql in [
        "SELECT count(*) FROM sante.sejours WHERE 1 / (CASE WHEN region <> '84' THEN 0 ELSE 1 END) = 1",
        "SELECT count(*) FROM sante.sejours WHERE CAST(CASE WHEN region <> '84' THEN 'x' ELSE '1' END AS INT) = 1",
        "SELECT count(*) FROM sante.sejours WHERE regexp_like(diagnostic, CASE WHEN region <> '84' THEN '[' ELSE '.' END)",
        "SELECT count(*) FROM sante.sejours s JOIN sante.sejours t ON s.id_sejour = t.id_sejour WHERE 1 / (CASE WHEN t.region <> '84' THEN 0 ELSE 1 END) = 1",
        "SELECT count(*) FROM sante.sejours WHERE id_sejour IN (SELECT id_sejour FROM sante.sejours WHERE 1 / (CASE WHEN region <> '84' THEN 0 ELSE 1 END) = 1)",
    ] {
        assert_eq!(e.count(sql).await, raw.region_84, "{sql}");
    }
}

#[tokio::test]
async fn pseudonymised_join_counts_exactly_like_the_raw_join() {
    let e = Engine::start().await;
    let raw = raw();
    let sql = "SELECT count(*) FROM sante.sejours s JOIN fiscal.revenus r ON s.nir = r.nir";
    assert_eq!(e.count(sql).await, raw.join_84);
}

#[tokio::test]
async fn catalog_probing_sees_only_the_callers_view() {
    let e = Engine::start().await;
    let hidden = e.refused("SELECT * FROM social.allocataires").await;
    let missing = e.refused("SELECT * FROM social.inexistant").await;
    assert_eq!(
        hidden["code"], missing["code"],
        "a hidden dataset answers like a missing one"
    );
    for sql in [
        "SELECT * FROM entreprises.etablissements",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SHOW TABLES",
        "SHOW COLUMNS FROM sante.sejours",
        "DESCRIBE sante.sejours",
        "SELECT * FROM datafusion.public.x",
        "SELECT * FROM other.sante.sejours",
    ] {
        e.refused(sql).await;
    }
}

#[tokio::test]
async fn forbidden_statements_and_functions_are_refused() {
    let e = Engine::start().await;
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "CREATE VIEW v AS SELECT * FROM sante.sejours",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
        "INSERT INTO sante.sejours VALUES (1)",
        "DELETE FROM sante.sejours",
        "UPDATE sante.sejours SET cout = 0",
        "DROP TABLE sante.sejours",
        "COPY (SELECT 1) TO '/tmp/passerelle-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
        "EXPLAIN SELECT * FROM sante.sejours",
        "EXPLAIN ANALYZE SELECT * FROM sante.sejours",
        "SELECT 1; SELECT 2",
        "SELECT * FROM range(10)",
        "SELECT * FROM generate_series(1, 10)",
        "SELECT * FROM 'data/sante/sejours.parquet'",
        "SELECT * FROM read_parquet('data/sante/sejours.parquet')",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT * FROM t",
        "PREPARE p AS SELECT 1",
        "",
    ] {
        e.refused(sql).await;
    }
    assert!(!std::path::Path::new("/tmp/passerelle-copy.csv").exists());
    let values = e.ok("VALUES (1, 'a'), (2, 'b')").await;
    assert_eq!(values["row_count"], 2);
}

#[tokio::test]
async fn habilitations_that_allow_no_query_are_refused() {
    let e = Engine::start().await;
    let (status, body) = e.query_as("caf", "SELECT 1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("query_not_allowed"))
    );
    let (status, body) = e
        .query_as("chercheur-expire", "SELECT count(*) FROM sante.sejours")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("habilitation_expired"))
    );
    let (status, body) = e.query_as("operateur", "SELECT 1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("no_habilitation"))
    );
    let (status, _) = e
        .query_as("chercheur-emploi", "SELECT count(*) FROM fiscal.revenus")
        .await;
    assert_eq!(status, 400, "projet-emploi cannot see fiscal.revenus");
}

#[tokio::test]
async fn projects_see_different_pseudonyms_for_the_same_person() {
    let e = Engine::start().await;
    // The same stay (the first of region 84) seen by both projects.
    let sql =
        "SELECT id_sejour, nir FROM sante.sejours WHERE region = '84' ORDER BY id_sejour LIMIT 1";
    let a = e.query_as("chercheuse-diabete", sql).await.1["rows"][0].clone();
    let b = e.query_as("chercheur-emploi", sql).await.1["rows"][0].clone();
    assert_eq!(a["id_sejour"], b["id_sejour"]);
    assert!(a["nir"].is_string() && b["nir"].is_string());
    assert_ne!(
        a["nir"], b["nir"],
        "projet-diabete and projet-emploi pseudonyms of one person differ"
    );
}

/// Pseudonymised extracts: once built, queries read them, and every answer is the one computed
/// in the scan (extracts off), cell by cell — pseudonyms, masks, row filter, joins, and a raw
/// NIR in `WHERE` matching nothing.
#[tokio::test]
async fn an_extract_gives_the_same_answers_as_the_data_file() {
    use crate::support::DemoServer;
    let raw = raw();
    let on = DemoServer::start_with(|_| {}).await;
    let off = DemoServer::start_with(|c| c.pseudonymisation.extracts = false).await;
    assert!(off.server.extracts().is_none());
    let extracts = on
        .server
        .extracts()
        .expect("extracts are on by default")
        .clone();
    let queries = [
        "SELECT nir, count(*) AS n FROM sante.sejours GROUP BY nir ORDER BY nir".to_string(),
        "SELECT * FROM sante.sejours ORDER BY id_sejour".to_string(),
        "SELECT count(*) AS n FROM sante.sejours s JOIN fiscal.revenus r ON s.nir = r.nir"
            .to_string(),
        "SELECT r.nir, r.revenu_fiscal_reference FROM fiscal.revenus r ORDER BY r.nir".to_string(),
        format!(
            "SELECT count(*) AS n FROM sante.sejours WHERE nir = '{}'",
            raw.nirs_84[0]
        ),
    ];
    let answer = |server: &DemoServer, sql: String| {
        let token = server.token("chercheuse-diabete");
        let request = server
            .server
            .client
            .post(server.server.url("/v1/query"))
            .bearer_auth(token)
            .json(&json!({ "sql": sql }));
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "{sql}");
            let body: Value = r.json().await.unwrap();
            (body["columns"].clone(), body["rows"].clone())
        }
    };
    // The first queries start the builds (and are answered by computing in the scan).
    for sql in &queries {
        answer(&on, sql.clone()).await;
    }
    tokio::task::spawn_blocking({
        let extracts = extracts.clone();
        move || extracts.wait_for_builds()
    })
    .await
    .unwrap();
    let before = extracts.served();
    for sql in &queries {
        let expected = answer(&off, sql.clone()).await;
        assert!(
            expected.1.as_array().is_some_and(|r| !r.is_empty()),
            "{sql}"
        );
        assert_eq!(answer(&on, sql.clone()).await, expected, "{sql}");
    }
    // Two datasets with pseudonymised columns in five queries, the join reading both.
    assert!(extracts.served() >= before + 6, "queries read the extracts");
    assert_eq!(
        answer(&on, queries[4].clone()).await.1[0]["n"],
        json!(0),
        "a raw NIR matches nothing"
    );
}

/// Only the datasets a query reads get an extract built (the session lists them all).
#[tokio::test]
async fn only_the_datasets_a_query_reads_get_an_extract() {
    use crate::support::DemoServer;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("extracts");
    let on = DemoServer::start_with(|c| c.pseudonymisation.extracts_dir = folder.clone()).await;
    let r = on
        .server
        .client
        .post(on.server.url("/v1/query"))
        .bearer_auth(on.token("chercheuse-diabete"))
        .json(&json!({ "sql": "SELECT count(DISTINCT nir) AS n FROM sante.sejours" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let extracts = on.server.extracts().unwrap().clone();
    tokio::task::spawn_blocking(move || extracts.wait_for_builds())
        .await
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("sejours.projet-diabete.v1."),
        "{names:?}"
    );
}

/// The plan cache keeps a caller's plan for the same query asked again, and never lends it:
/// a second researcher of the same project, or a researcher of another project, asking the
/// very same SQL, gets a plan of their own (and the answer of their own row filter); a query
/// that reads the clock is never kept.
#[tokio::test]
async fn kept_plans_are_never_shared_between_principals() {
    let engine = Engine::start().await;
    let plans = engine.server.plans();
    assert!(plans.is_empty());
    let sql = "SELECT count(*) AS n FROM sante.sejours";
    let count = |body: Value| body["rows"][0]["n"].as_i64().unwrap();
    let (status, first) = engine.query(sql).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(plans.len(), 1);
    let (_, again) = engine.query(sql).await;
    assert_eq!(plans.len(), 1, "asked again: the kept plan");
    assert_eq!(count(again), count(first.clone()));

    let colleague = engine.dev.token_for(&{
        let mut p = passerelle::demo::personas::persona("chercheuse-diabete")
            .unwrap()
            .clone();
        p.subject = "another-researcher-of-projet-diabete";
        p
    });
    let r = engine
        .server
        .client
        .post(engine.server.url("/v1/query"))
        .bearer_auth(colleague.unwrap())
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let theirs: Value = r.json().await.unwrap();
    assert_eq!(plans.len(), 2, "another principal: a plan of their own");
    assert_eq!(
        count(theirs),
        count(first.clone()),
        "same project, same rows"
    );

    let (status, other_project) = engine.query_as("chercheur-emploi", sql).await;
    assert_eq!(status, 200, "{other_project}");
    assert_eq!(plans.len(), 3);
    assert_ne!(
        count(other_project),
        count(first),
        "another project's row filter, not the kept plan's"
    );

    for _ in 0..2 {
        let (status, body) = engine
            .query("SELECT now() AS t, count(*) AS n FROM sante.sejours")
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(plans.len(), 3, "a query that reads the clock is never kept");
}
