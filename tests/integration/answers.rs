//! The query endpoint's answers: every format carries the same rows, `Accept` negotiation,
//! compression, truncation that is never silent, `/v1/datasets`, and resource abuse that ends
//! in a clean error with the hub still healthy (limits, cancellation on disconnect).

use std::io::Read;
use std::time::Duration;

use arrow::array::AsArray;
use serde_json::{Value, json};

use crate::support::{DemoServer as Hub, hub};

impl Hub {
    async fn start() -> Hub {
        Self::start_with(|_| {}).await
    }

    fn post(&self, sql: &str) -> reqwest::RequestBuilder {
        self.server
            .client
            .post(self.server.url("/v1/query"))
            .bearer_auth(self.token("chercheuse-diabete"))
            .json(&json!({ "sql": sql }))
    }

    async fn ask(&self, sql: &str, accept: &str) -> reqwest::Response {
        self.post(sql)
            .header("accept", accept)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, sql: &str) -> (u16, Value) {
        let r = self.ask(sql, "application/json").await;
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn queries_running(&self) -> u64 {
        let ready: Value = self.server.readiness();
        ready["checks"]["queries"]["running"].as_u64().unwrap()
    }
}

const SQL: &str = "SELECT id_sejour, nir, date_naissance, sexe, cout FROM sante.sejours \
                   ORDER BY id_sejour";

fn parquet_batches(
    bytes: bytes::Bytes,
) -> (Vec<arrow::record_batch::RecordBatch>, Vec<(String, String)>) {
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| (kv.key, kv.value.unwrap_or_default()))
        .collect();
    (builder.build().unwrap().map(|b| b.unwrap()).collect(), kv)
}

fn ids_of(batches: &[arrow::record_batch::RecordBatch]) -> Vec<String> {
    let mut ids = Vec::new();
    for b in batches {
        let col = b.column_by_name("id_sejour").unwrap();
        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).unwrap();
        ids.extend(
            col.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string()),
        );
    }
    ids
}

#[tokio::test]
async fn every_format_carries_the_same_rows() {
    let h = Hub::start().await;
    let r = h.ask(SQL, "application/json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["passerelle-truncated"], "false");
    assert_eq!(r.headers()["passerelle-habilitation"], "projet-diabete");
    assert!(
        r.headers()["passerelle-pseudonym-key"]
            .to_str()
            .unwrap()
            .starts_with("projet-diabete;version=")
    );
    let body: Value = r.json().await.unwrap();
    let rows = body["rows"].as_array().unwrap().clone();
    assert!(!rows.is_empty());
    assert_eq!(body["row_count"], rows.len());
    assert_eq!(body["truncated"], false);
    let names: Vec<&str> = body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["id_sejour", "nir", "date_naissance", "sexe", "cout"]
    );
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["id_sejour"].to_string().trim_matches('"').to_string())
        .collect();
    let nirs: Vec<&str> = rows.iter().map(|r| r["nir"].as_str().unwrap()).collect();

    // NDJSON: one object per line, the same objects.
    let r = h.ask(SQL, "application/x-ndjson").await;
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, rows);

    // CSV: RFC 4180 with a header line.
    let r = h.ask(SQL, "text/csv").await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id_sejour,nir,date_naissance,sexe,cout"
    );
    let csv_rows: Vec<&str> = lines.collect();
    assert_eq!(csv_rows.len(), rows.len());
    for (line, nir) in csv_rows.iter().zip(&nirs) {
        assert!(line.contains(nir), "{line}");
    }

    // Arrow IPC stream: same schema, same rows, same pseudonyms.
    let r = h.ask(SQL, "application/vnd.apache.arrow.stream").await;
    let bytes = r.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let schema = reader.schema();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(schema.fields().len(), 5);
    assert_eq!(ids_of(&batches), ids);
    let arrow_nirs: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("nir")
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(arrow_nirs, nirs);

    // Parquet: same rows, and the footer says the answer is whole.
    let r = h.ask(SQL, "application/vnd.apache.parquet").await;
    let (batches, kv) = parquet_batches(r.bytes().await.unwrap());
    assert_eq!(ids_of(&batches), ids);
    assert!(
        kv.contains(&("passerelle.truncated".into(), "false".into())),
        "{kv:?}"
    );

    // Empty answers keep their shape (CSV header, JSON columns).
    let none = "SELECT id_sejour, cout FROM sante.sejours WHERE cout < 0";
    let text = h.ask(none, "text/csv").await.text().await.unwrap();
    assert_eq!(text.trim_end(), "id_sejour,cout");
    let (status, body) = h.json(none).await;
    assert_eq!((status, body["row_count"].as_u64()), (200, Some(0)));
    assert_eq!(body["columns"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn accept_negotiation_and_compression() {
    let h = Hub::start().await;
    let sql = "SELECT id_sejour, diagnostic FROM sante.sejours";
    let r = h.ask(sql, "text/csv;q=0.5, application/x-ndjson").await;
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let r = h.post(sql).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "JSON by default"
    );
    let r = h.ask(sql, "image/png").await;
    assert_eq!(r.status(), 406);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "format_not_acceptable");

    let plain = h.ask(sql, "text/csv").await.bytes().await.unwrap();
    let r = h
        .post(sql)
        .header("accept", "text/csv")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&r.bytes().await.unwrap()[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    let r = h
        .post(sql)
        .header("accept", "text/csv")
        .header("accept-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "zstd");
    let unzipped = zstd::decode_all(&r.bytes().await.unwrap()[..]).unwrap();
    assert_eq!(unzipped, plain);
    let r = h
        .post(sql)
        .header("accept", "application/vnd.apache.parquet")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "Parquet is compressed already"
    );
}

/// A cross join of the visible stays with themselves: many rows, cheap to compute.
const MANY: &str =
    "SELECT a.id_sejour, b.id_sejour AS autre, a.nir FROM sante.sejours a, sante.sejours b";

#[tokio::test]
async fn truncation_is_never_silent() {
    let h = Hub::start_with(|c| c.limits.max_result_rows = 7).await;
    // Small answers: whole in the head; the header and the JSON both say so.
    let r = h.ask(MANY, "application/json").await;
    assert_eq!(r.headers()["passerelle-truncated"], "true");
    assert_eq!(r.headers()["passerelle-row-count"], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["rows"].as_array().unwrap().len(), 7);
    assert_eq!(body["truncated"], true);
    let r = h.ask(MANY, "text/csv").await;
    assert_eq!(r.headers()["passerelle-truncated"], "true");
    assert_eq!(r.text().await.unwrap().lines().count(), 8);
    let r = h
        .ask(
            "SELECT id_sejour FROM sante.sejours LIMIT 7",
            "application/json",
        )
        .await;
    assert_eq!(
        r.headers()["passerelle-truncated"],
        "false",
        "exactly the limit is whole"
    );

    // Large answers stream: JSON and Parquet mark the cut at their end; CSV, NDJSON and Arrow
    // cannot, so the transfer fails instead of ending as if whole.
    let h = Hub::start_with(|c| c.limits.max_result_rows = 20_000).await;
    let (status, total) = h
        .json("SELECT count(*) AS n FROM sante.sejours a, sante.sejours b")
        .await;
    assert_eq!(status, 200);
    assert!(total["rows"][0]["n"].as_u64().unwrap() > 20_000, "{total}");
    let r = h.ask(MANY, "application/json").await;
    assert!(
        r.headers().get("passerelle-truncated").is_none(),
        "streamed"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["row_count"].as_u64(), body["truncated"].as_bool()),
        (Some(20_000), Some(true))
    );
    let r = h.ask(MANY, "application/vnd.apache.parquet").await;
    let (batches, kv) = parquet_batches(r.bytes().await.unwrap());
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20_000);
    assert!(
        kv.contains(&("passerelle.truncated".into(), "true".into())),
        "{kv:?}"
    );
    for accept in [
        "text/csv",
        "application/x-ndjson",
        "application/vnd.apache.arrow.stream",
    ] {
        let r = h.ask(MANY, accept).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.bytes().await.is_err(),
            "{accept}: a cut answer must not end cleanly"
        );
    }

    // The byte limit works the same way.
    let h = Hub::start_with(|c| c.limits.max_result_bytes = 2_000).await;
    let (_, body) = h.json(MANY).await;
    assert_eq!(body["truncated"], true);
    assert!(body["row_count"].as_u64().unwrap() < 20_000);
}

#[tokio::test]
async fn datasets_lists_the_callers_view_only() {
    let h = Hub::start().await;
    let get = |who: &str| {
        h.server
            .client
            .get(h.server.url("/v1/datasets"))
            .bearer_auth(h.token(who))
            .send()
    };
    let r = get("chercheuse-diabete").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["habilitation"], "projet-diabete");
    let datasets = body["datasets"].as_array().unwrap();
    let names: Vec<&str> = datasets
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sante.sejours", "fiscal.revenus"]);
    let sejours = &datasets[0];
    assert_eq!(sejours["rows_restricted"], true);
    let columns = sejours["columns"].as_array().unwrap();
    let column = |name: &str| columns.iter().find(|c| c["name"] == name).cloned();
    assert!(column("nom").is_none(), "hidden columns are absent");
    assert_eq!(column("nir").unwrap()["treatment"], "pseudonymised");
    assert_eq!(column("date_naissance").unwrap()["treatment"], "year");
    assert_eq!(column("code_postal").unwrap()["treatment"], "departement");
    assert_eq!(column("cout").unwrap()["treatment"], "clear");
    assert!(column("cout").unwrap()["title"].is_string());
    let fiscal: Vec<&str> = datasets[1]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fiscal,
        ["nir", "annee", "revenu_fiscal_reference", "nombre_parts"]
    );
    let text = serde_json::to_string(&body).unwrap();
    for secret in [
        "montant_impot",
        "situation_familiale",
        ".parquet",
        "region = ",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    let caf: Value = get("caf").await.unwrap().json().await.unwrap();
    let caf_sets = caf["datasets"].as_array().unwrap();
    assert!(!caf_sets.is_empty());
    assert!(
        caf_sets
            .iter()
            .all(|d| d["query"] == false && d["lookup_key"] == "nir"),
        "{caf}"
    );
    let r = get("operateur").await.unwrap();
    assert_eq!(r.status(), 403);
    let r = h
        .server
        .client
        .get(h.server.url("/v1/datasets"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn resource_abuse_ends_in_a_clean_error_and_the_hub_stays_healthy() {
    let h = Hub::start_with(|c| {
        c.limits.query_memory_mb = 4;
        c.limits.query_timeout_secs = 3;
        c.limits.max_sql_bytes = 4096;
        c.limits.max_sql_nesting = 30;
    })
    .await;
    // A sort far bigger than the query's memory, with no spill folder: 422, not an OOM.
    let (status, body) = h
        .json("SELECT a.nir, b.nir AS n2, c.diagnostic FROM sante.sejours a, sante.sejours b, sante.sejours c ORDER BY a.nir, b.nir, c.diagnostic")
        .await;
    assert!(matches!(status, 422 | 504), "{status} {body}");
    if status == 422 {
        assert_eq!(body["code"], "query_too_costly");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            !detail.contains("Consumer") && !detail.contains("bytes"),
            "{detail}"
        );
    }
    // A computation that never ends, in bounded memory (the hub's default per-query memory:
    // under 4 MiB its joins' collected batches end it as too costly first): 504 at the timeout.
    let patient = Hub::start_with(|c| c.limits.query_timeout_secs = 3).await;
    let started = std::time::Instant::now();
    let (status, body) = patient
        .json("SELECT count(*) FROM sante.sejours a, sante.sejours b, sante.sejours c, sante.sejours d, sante.sejours e")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("query_timeout")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // Nesting and length.
    let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    let (status, body) = h.json(&deep).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("query_refused")),
        "{body}"
    );
    let long = format!("SELECT 1 {}", " ".repeat(5000));
    let (status, body) = h.json(&long).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("query_too_long")),
        "{body}"
    );
    // The hub is fine: ready, no query left running (a query past its deadline stops on its
    // lane within moments), and a small query answers.
    for hub in [&h, &patient] {
        assert_eq!(hub.server.get("/health/ready", None).await.status(), 200);
        wait_for_no_query(hub).await;
        let (status, _) = hub.json("SELECT count(*) FROM sante.sejours").await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_query() {
    let h = Hub::start_with(|c| c.limits.query_timeout_secs = 600).await;
    let endless = "SELECT count(*) FROM sante.sejours a, sante.sejours b, sante.sejours c, sante.sejours d, sante.sejours e";
    // Before the first byte (HTTP/2 resets the stream; the handler is dropped).
    let quick = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&hub().ca_pem()).unwrap())
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let sent = quick
        .post(h.server.url("/v1/query"))
        .bearer_auth(h.token("chercheuse-diabete"))
        .json(&json!({ "sql": endless }))
        .send()
        .await;
    assert!(sent.is_err());
    wait_for_no_query(&h).await;
    // While streaming (HTTP/1.1): read a little, then drop the connection.
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&hub().ca_pem()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let huge = "SELECT a.nir, b.nir AS n2, c.nir AS n3 FROM sante.sejours a, sante.sejours b, sante.sejours c";
    let mut r = http1
        .post(h.server.url("/v1/query"))
        .bearer_auth(h.token("chercheuse-diabete"))
        .header("accept", "text/csv")
        .json(&json!({ "sql": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    assert_eq!(h.queries_running().await, 1);
    drop(r);
    drop(http1);
    wait_for_no_query(&h).await;
}

async fn wait_for_no_query(h: &Hub) {
    for _ in 0..50 {
        if h.queries_running().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the query kept running after its client left");
}
