//! Tell-us-once lookups with the demo personas: the CAF gets exactly the granted fields, every
//! traceability parameter is checked, keys cannot enumerate, others are refused, and the rate
//! limit is reached and recovered.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use serde_json::{Value, json};

use crate::support::{DemoServer as Hub, hub};

const CAF_SIRET: &str = "13000170500016";
const TRACE: &str =
    "context=Calcul%20du%20quotient%20familial&recipient=13000170500016&object=dossier-2026-0042";

impl Hub {
    async fn get_as(
        &self,
        who: &str,
        path_and_query: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .server
            .client
            .get(self.server.url(path_and_query))
            .bearer_auth(self.token(who))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    async fn caf(&self, path_and_query: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        self.get_as("caf", path_and_query).await
    }

    async fn batch(&self, dataset: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .server
            .client
            .post(self.server.url(&format!("/v1/lookup/{dataset}")))
            .bearer_auth(self.token("caf"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }
}

/// `nir` → (column → value as JSON) for the given integer/float columns of a demo dataset.
fn raw(relative: &str, columns: &[&str]) -> HashMap<String, HashMap<String, Value>> {
    let file = std::fs::File::open(hub().layout().data().join(relative)).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = HashMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let nir = batch
            .column_by_name("nir")
            .unwrap()
            .as_string::<i32>()
            .clone();
        for i in 0..batch.num_rows() {
            let mut values = HashMap::new();
            for c in columns {
                let col = batch.column_by_name(c).unwrap();
                let text = arrow::util::display::array_value_to_string(col, i).unwrap();
                let value: Value = if col.is_null(i) {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap()
                };
                values.insert(c.to_string(), value);
            }
            out.insert(nir.value(i).to_string(), values);
        }
    }
    out
}

fn fields(record: &Value) -> BTreeSet<String> {
    record.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn the_caf_gets_exactly_the_granted_fields() {
    let h = Hub::start_with(|_| {}).await;
    let allocataires = raw(
        "social/allocataires.parquet",
        &["quotient_familial", "nombre_enfants"],
    );
    let revenus = raw(
        "fiscal/revenus.parquet",
        &["revenu_fiscal_reference", "nombre_parts"],
    );
    for nir in allocataires.keys().take(5) {
        let (status, body, headers) = h
            .caf(&format!("/v1/lookup/social.allocataires/{nir}?{TRACE}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["habilitation"], "caf-quotient-familial");
        let record = &body["record"];
        assert_eq!(
            fields(record),
            BTreeSet::from(["quotient_familial".into(), "nombre_enfants".into()])
        );
        for (k, v) in &allocataires[nir] {
            assert_eq!(&record[k], v, "{k} of the looked-up record");
        }
        assert!(headers.contains_key("ratelimit-limit"));
        assert!(headers.contains_key("ratelimit-remaining"));
        assert!(headers.contains_key("ratelimit-reset"));
    }
    let nir = allocataires
        .keys()
        .find(|n| revenus.contains_key(*n))
        .unwrap();
    let (status, body, _) = h
        .caf(&format!("/v1/lookup/fiscal.revenus/{nir}?{TRACE}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fields(&body["record"]),
        BTreeSet::from(["revenu_fiscal_reference".into(), "nombre_parts".into()])
    );
    for (k, v) in &revenus[nir] {
        assert_eq!(&body["record"][k], v);
    }
    let text = body.to_string();
    assert!(!text.contains("montant_impot") && !text.contains(nir.as_str()));

    // Unknown key (well formed): 404.
    let (status, body, _) = h
        .caf(&format!(
            "/v1/lookup/social.allocataires/1999999999999?{TRACE}"
        ))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("record_not_found"))
    );

    // Batch: found and not found, in order; too many keys refused.
    let mut keys: Vec<String> = allocataires.keys().take(3).cloned().collect();
    keys.push("1999999999999".into());
    let (status, body, _) = h
        .batch(
            "social.allocataires",
            json!({"keys": keys, "context": "Calcul QF", "recipient": CAF_SIRET, "object": "lot 7"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[..3].iter().all(|r| r["status"] == 200));
    assert_eq!(results[3]["status"], 404);
    assert_eq!(
        results[0]["record"]["quotient_familial"],
        allocataires[&keys[0]]["quotient_familial"]
    );
    let many: Vec<String> = (0..101).map(|i| format!("1{:012}", i)).collect();
    let (status, body, _) = h
        .batch(
            "social.allocataires",
            json!({"keys": many, "context": "Calcul QF", "recipient": CAF_SIRET, "object": "lot 7"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("keys_invalid")));
}

#[tokio::test]
async fn every_missing_or_invalid_parameter_has_its_code() {
    let h = Hub::start_with(|_| {}).await;
    let nir = raw("social/allocataires.parquet", &["nombre_enfants"])
        .into_keys()
        .next()
        .unwrap();
    let base = format!("/v1/lookup/social.allocataires/{nir}");
    let context = "context=Calcul%20QF";
    let recipient = format!("recipient={CAF_SIRET}");
    let object = "object=dossier-1";
    for (query, code) in [
        (format!("{recipient}&{object}"), "context_missing"),
        (format!("context=&{recipient}&{object}"), "context_missing"),
        (
            format!("context=a%0Ab&{recipient}&{object}"),
            "context_invalid",
        ),
        (format!("{context}&{object}"), "recipient_missing"),
        (
            format!("{context}&recipient=13000170500017&{object}"),
            "recipient_invalid",
        ),
        (
            format!("{context}&recipient=1300017050001&{object}"),
            "recipient_invalid",
        ),
        (
            format!("{context}&recipient=ABCDEFGHIJKLMN&{object}"),
            "recipient_invalid",
        ),
        (format!("{context}&{recipient}"), "object_missing"),
        (
            format!("{context}&{recipient}&object={}", "x".repeat(50)),
            "object_invalid",
        ),
    ] {
        let (status, body, _) = h.caf(&format!("{base}?{query}")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some(code)),
            "{query}: {body}"
        );
    }
    let (status, _, _) = h
        .caf(&format!(
            "{base}?{context}&{recipient}&object={}",
            "x".repeat(49)
        ))
        .await;
    assert_eq!(status, 200, "49 characters are allowed");
}

#[tokio::test]
async fn lookups_cannot_enumerate_and_others_are_refused() {
    let h = Hub::start_with(|_| {}).await;
    for key in [
        "*",
        "%25",
        "1840%25",
        "184",
        "18403750561234",
        "1840375056_23",
        "1..2",
        "%201840375056123",
        "A840375056123",
        "1840375056123%20OR%201=1",
    ] {
        let (status, body, _) = h
            .caf(&format!("/v1/lookup/social.allocataires/{key}?{TRACE}"))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("key_invalid")),
            "{key}: {body}"
        );
    }
    let (status, body, _) = h
        .batch(
            "social.allocataires",
            json!({"keys": [""], "context": "QF", "recipient": CAF_SIRET, "object": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("key_invalid")),
        "{body}"
    );

    // Datasets the habilitation does not open, existing or not, answer alike.
    let a = h
        .caf(&format!("/v1/lookup/sante.sejours/1840375056123?{TRACE}"))
        .await;
    let b = h
        .caf(&format!(
            "/v1/lookup/sante.inexistant/1840375056123?{TRACE}"
        ))
        .await;
    assert_eq!(
        (a.0, a.1["code"].as_str()),
        (403, Some("lookup_not_allowed"))
    );
    assert_eq!(
        (b.0, b.1["code"].as_str()),
        (403, Some("lookup_not_allowed"))
    );
    // Researchers and the operator: no lookups; and the CAF runs no SQL.
    for who in ["chercheuse-diabete", "chercheur-emploi"] {
        let (status, body, _) = h
            .get_as(
                who,
                &format!("/v1/lookup/social.allocataires/1840375056123?{TRACE}"),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("lookup_not_allowed")),
            "{who}"
        );
    }
    let (status, _, _) = h
        .get_as(
            "operateur",
            &format!("/v1/lookup/social.allocataires/1840375056123?{TRACE}"),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = h
        .get_as(
            "chercheur-expire",
            &format!("/v1/lookup/social.allocataires/1840375056123?{TRACE}"),
        )
        .await;
    assert_eq!(status, 403);
    let r = h
        .server
        .client
        .get(h.server.url(&format!(
            "/v1/lookup/social.allocataires/1840375056123?{TRACE}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_rate_limit_is_reached_and_recovered() {
    // The CAF declares 250 lookups a minute; factor 1: 250 a minute, burst 250.
    let h = Hub::start_with(|c| c.limits.lookup_rate_factor = 1).await;
    let keys: Vec<String> = (0..100).map(|i| format!("1{:012}", i)).collect();
    let body = json!({"keys": keys, "context": "QF", "recipient": CAF_SIRET, "object": "lot"});
    for _ in 0..2 {
        let (status, _, headers) = h.batch("social.allocataires", body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(headers["ratelimit-limit"], "250");
    }
    let (status, problem, headers) = h.batch("social.allocataires", body.clone()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(headers.contains_key("retry-after"));
    // The refused batch of 100 spent nothing: the 50 (and what refilled since) still remain.
    let header = |headers: &reqwest::header::HeaderMap, name: &str| -> u64 {
        headers[name].to_str().unwrap().parse().unwrap()
    };
    let remaining = header(&headers, "ratelimit-remaining");
    assert!((50..100).contains(&remaining), "{remaining} remain");
    // Spend what is left one by one until refused, then wait as told and succeed again.
    let one = format!("/v1/lookup/social.allocataires/1999999999999?{TRACE}");
    let mut refused = None;
    let mut last_allowed = None;
    for _ in 0..(remaining + 10) {
        let (status, _, headers) = h.caf(&one).await;
        if status == 429 {
            refused = Some(headers);
            break;
        }
        assert_eq!(status, 404);
        last_allowed = Some(headers);
    }
    let headers = refused.expect("the quota must run out");
    let wait = header(&headers, "retry-after");
    assert!((1..=60).contains(&wait));
    // `RateLimit-Reset` means the same on a 200 and a 429: until the quota is whole again.
    let allowed = last_allowed.unwrap();
    assert_eq!(header(&allowed, "ratelimit-remaining"), 0);
    assert_eq!(header(&headers, "ratelimit-remaining"), 0);
    let (reset_allowed, reset_refused) = (
        header(&allowed, "ratelimit-reset"),
        header(&headers, "ratelimit-reset"),
    );
    assert!(
        reset_allowed >= 55 && reset_refused >= 55,
        "{reset_allowed} {reset_refused}"
    );
    assert!(reset_refused >= wait);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, _, _) = h.caf(&one).await;
    assert_eq!(status, 404, "recovered after Retry-After");
    // Another organisation's quota is its own: the researchers are refused for another reason.
    let (status, body, _) = h.get_as("chercheuse-diabete", &one).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("lookup_not_allowed"))
    );
}

/// The CAF's plan for `social.allocataires` under the demo policy.
fn caf_allocataires_plan(set: &passerelle::policy::PolicySet) -> passerelle::policy::DatasetPlan {
    let principal = passerelle::identity::Principal::for_explain(
        &json!({"sub": "caf-si-prestations", "siret": CAF_SIRET}),
    )
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    let habilitation = set.resolve(&principal, None, today).unwrap();
    set.plan(&principal, habilitation)
        .dataset("social.allocataires")
        .unwrap()
        .clone()
}

/// The demo policy, the CAF's plan for `social.allocataires` with the row filter
/// `nombre_enfants >= 3` added (no demo habilitation filters lookups), and the key indexes.
fn filtered_caf() -> (
    passerelle::policy::PolicySet,
    passerelle::policy::DatasetPlan,
    passerelle::lookup::Lookups,
) {
    use passerelle::policy::filter::FilterExpr;
    let layout = hub().layout();
    let set = passerelle::policy::PolicySet::load(&layout.policies()).unwrap();
    let plan = caf_allocataires_plan(&set)
        .with_row_filter(FilterExpr::parse("nombre_enfants >= 3", &["nombre_enfants"]).unwrap());
    let (lookups, _) = passerelle::lookup::Lookups::build(
        &set.catalog,
        &set.lookup_key_columns(),
        std::sync::Arc::new(layout.data()),
    )
    .unwrap();
    (set, plan, lookups)
}

/// A plan's row filter applies to lookups: a record it hides is "not found". (No demo
/// habilitation filters lookups, so the plan is the CAF's with a filter added.)
#[test]
fn a_row_filter_hides_records_from_lookups() {
    let (set, plan, lookups) = filtered_caf();
    let children = raw("social/allocataires.parquet", &["nombre_enfants"]);
    let many = children
        .iter()
        .find(|(_, v)| v["nombre_enfants"].as_i64() >= Some(3));
    let few = children
        .iter()
        .find(|(_, v)| v["nombre_enfants"].as_i64() < Some(3));
    let (many, few) = (many.unwrap().0, few.unwrap().0);
    let found =
        passerelle::lookup::answer_record(&lookups, &set.catalog, &plan, many, None).unwrap();
    assert!(found["nombre_enfants"].as_i64().unwrap() >= 3);
    assert!(matches!(
        passerelle::lookup::answer_record(&lookups, &set.catalog, &plan, few, None),
        Err(passerelle::lookup::LookupError::NotFound)
    ));
}

/// Timing: a key the caller's row filter hides and a key that does not exist take the same
/// path (one row read, one filter evaluation, "not found"), so that the time of a 404 does not
/// tell whether a hidden record exists (`benches/lookup_timing.rs` compares the two distributions).
#[test]
fn a_hidden_key_and_a_missing_key_take_the_same_path() {
    use passerelle::lookup::{LookupError, answer_record, work_on_this_thread};
    let (set, plan, lookups) = filtered_caf();
    let children = raw("social/allocataires.parquet", &["nombre_enfants"]);
    let hidden = children
        .iter()
        .find(|(_, v)| v["nombre_enfants"].as_i64() < Some(3))
        .unwrap()
        .0;
    let missing = "1999999999999";
    assert!(!children.contains_key(missing));
    let path_of = |key: &str| {
        let before = work_on_this_thread();
        let answer = answer_record(&lookups, &set.catalog, &plan, key, None);
        assert!(matches!(answer, Err(LookupError::NotFound)), "{key}");
        let after = work_on_this_thread();
        (
            after.rows_read - before.rows_read,
            after.filter_evaluations - before.filter_evaluations,
        )
    };
    assert_eq!(
        path_of(hidden),
        (1, 1),
        "a hidden key: one row read, one filter"
    );
    assert_eq!(path_of(missing), (1, 1), "a missing key: the same");
    // Without a row filter a missing key still reads its decoy row.
    let open = caf_allocataires_plan(&set);
    let before = work_on_this_thread();
    assert!(matches!(
        answer_record(&lookups, &set.catalog, &open, missing, None),
        Err(LookupError::NotFound)
    ));
    assert_eq!(work_on_this_thread().rows_read - before.rows_read, 1);
}

/// Only the policy's lookup key columns are indexed at start (not every `unique` column:
/// `sante.sejours.id_sejour` would cost memory and start time for nothing); another unique
/// column is indexed on its first use, and a column that is not unique is never a key.
#[test]
fn only_the_policy_key_columns_are_indexed_at_start() {
    use passerelle::lookup::{IndexError, Lookups};
    use passerelle::policy::PolicySet;
    let layout = hub().layout();
    let set = PolicySet::load(&layout.policies()).unwrap();
    let (lookups, reports) = Lookups::build(
        &set.catalog,
        &set.lookup_key_columns(),
        std::sync::Arc::new(layout.data()),
    )
    .unwrap();
    let mut built: Vec<(String, String)> = reports
        .iter()
        .map(|r| (r.dataset.clone(), r.column.clone()))
        .collect();
    built.sort();
    assert_eq!(
        built,
        [
            ("fiscal.revenus".to_string(), "nir".to_string()),
            ("social.allocataires".to_string(), "nir".to_string()),
        ]
    );
    assert!(
        reports
            .iter()
            .all(|r| r.rows > 0 && r.memory_bytes >= 8 * r.rows)
    );
    let stays = lookups
        .index(&set.catalog, "sante.sejours", "id_sejour")
        .unwrap();
    assert!(!stays.is_empty());
    assert!(matches!(
        lookups.index(&set.catalog, "sante.sejours", "nir"),
        Err(IndexError::NotUnique)
    ));
    assert!(matches!(
        lookups.index(&set.catalog, "sante.inconnu", "nir"),
        Err(IndexError::NotUnique)
    ));
}

/// A data file replaced after start is never read through the old file's index: the next
/// lookup rebuilds the index and answers from the new file.
#[test]
fn a_replaced_data_file_is_indexed_again() {
    use arrow::array::{Int32Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use passerelle::policy::PolicySet;
    let layout = hub().layout();
    let set = PolicySet::load(&layout.policies()).unwrap();
    let plan = caf_allocataires_plan(&set);
    // A private copy of the data folder with the first rows of the allocataires file.
    let data = tempfile::tempdir().unwrap();
    let relative = "social/allocataires.parquet";
    std::fs::create_dir_all(data.path().join("social")).unwrap();
    std::fs::create_dir_all(data.path().join("fiscal")).unwrap();
    std::fs::copy(
        layout.data().join("fiscal/revenus.parquet"),
        data.path().join("fiscal/revenus.parquet"),
    )
    .unwrap();
    let original = std::fs::File::open(layout.data().join(relative)).unwrap();
    let first: RecordBatch = ParquetRecordBatchReaderBuilder::try_new(original)
        .unwrap()
        .with_batch_size(20)
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let write = |batch: &RecordBatch| {
        let tmp = data.path().join("social/.next.parquet");
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(&tmp).unwrap(), batch.schema(), None)
                .unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        std::fs::rename(&tmp, data.path().join(relative)).unwrap();
    };
    write(&first);
    let key = first
        .column_by_name("nir")
        .unwrap()
        .as_string::<i32>()
        .value(3)
        .to_string();
    let (lookups, _) = passerelle::lookup::Lookups::build(
        &set.catalog,
        &set.lookup_key_columns(),
        std::sync::Arc::new(data.path().to_path_buf()),
    )
    .unwrap();
    let before =
        passerelle::lookup::answer_record(&lookups, &set.catalog, &plan, &key, None).unwrap();
    // The same rows in reverse order, with another quotient familial: other offsets.
    let reversed: Vec<u32> = (0..first.num_rows() as u32).rev().collect();
    let indices = arrow::array::UInt32Array::from(reversed);
    let mut columns: Vec<arrow::array::ArrayRef> = first
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None).unwrap())
        .collect();
    let qf = first.schema().index_of("quotient_familial").unwrap();
    columns[qf] = std::sync::Arc::new(Int32Array::from(vec![123_456; first.num_rows()]));
    write(&RecordBatch::try_new(first.schema(), columns).unwrap());
    let after =
        passerelle::lookup::answer_record(&lookups, &set.catalog, &plan, &key, None).unwrap();
    assert_ne!(before["quotient_familial"], json!(123_456));
    assert_eq!(after["quotient_familial"], json!(123_456));
    assert_eq!(before["nombre_enfants"], after["nombre_enfants"]);
}

/// Several gateways behind one load balancer (issue #24): with `limits.gateways = 2`, each
/// enforces half of the hub-wide quota, so that the two together never allow more than it.
#[tokio::test]
async fn each_gateway_enforces_its_share_of_the_quota() {
    // The CAF declares 250 lookups a minute; factor 1, two gateways: 125 each.
    let h = Hub::start_with(|c| {
        c.limits.lookup_rate_factor = 1;
        c.limits.gateways = 2;
    })
    .await;
    let keys: Vec<String> = (0..100).map(|i| format!("1{:012}", i)).collect();
    let body = json!({"keys": keys, "context": "QF", "recipient": CAF_SIRET, "object": "lot"});
    let (status, _, headers) = h.batch("social.allocataires", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["ratelimit-limit"], "125");
    let (status, problem, _) = h.batch("social.allocataires", body).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("rate_limited")),
        "200 of the hub's 250 on one gateway of two"
    );
}
