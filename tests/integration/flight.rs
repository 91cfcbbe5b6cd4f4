//! Flight SQL through arrow-flight's own client (TLS, bearer on every call): what the Python
//! suite (`clients::adbc_…`) cannot stage — a server with small limits, answers larger than the
//! whole-answer buffer. The attack corpus over Flight is in `attacks` (`attacks_over_flight_…`).

use serde_json::json;

use crate::support::flight::FlightClient;
use crate::support::{DemoServer, hub};

/// A cut answer ends in an error over Flight (which has no place to say "truncated"), never
/// as a short answer a client would take for the whole one; HTTPS says `truncated` in JSON.
#[tokio::test]
async fn a_cut_answer_is_an_error_never_a_short_answer() {
    let h = DemoServer::start_with(|c| c.limits.max_result_rows = 10).await;
    let token = h.token("chercheuse-diabete");
    let sql = "SELECT id_sejour FROM sante.sejours ORDER BY id_sejour LIMIT 50";
    let http: serde_json::Value = h
        .server
        .client
        .post(h.server.url("/v1/query"))
        .bearer_auth(&token)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["truncated"], true, "{http}");
    let mut flight = FlightClient::connect(h.server.flight.unwrap(), &hub().ca_pem(), &token).await;
    let status = flight.query(sql).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().starts_with("answer_truncated:"),
        "{status:?}"
    );
    // Under the limit: the whole answer.
    let (_, batches) = flight
        .query("SELECT id_sejour FROM sante.sejours ORDER BY id_sejour LIMIT 10")
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
}

/// An answer larger than the whole-answer buffer streams over Flight, every row of it, with the
/// same values as over HTTPS.
#[tokio::test]
async fn a_streamed_answer_arrives_whole_and_equal_to_https() {
    let h = DemoServer::start_with(|_| {}).await;
    let token = h.token("chercheur-emploi");
    let sql = "SELECT * FROM sante.sejours ORDER BY id_sejour";
    let mut flight = FlightClient::connect(h.server.flight.unwrap(), &hub().ca_pem(), &token).await;
    let (_, batches) = flight.query(sql).await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    assert!(
        bytes > 256 * 1024,
        "answer of {bytes} bytes: not a streamed one"
    );
    let count: serde_json::Value = h
        .server
        .client
        .post(h.server.url("/v1/query"))
        .bearer_auth(&token)
        .json(&json!({ "sql": "SELECT count(*) AS n FROM sante.sejours" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(Some(rows as i64), count["rows"][0]["n"].as_i64(), "{count}");
    let (status, body) = flight.post(&format!("{sql} LIMIT 5")).await;
    let https: serde_json::Value = h
        .server
        .client
        .post(h.server.url("/v1/query"))
        .bearer_auth(&token)
        .json(&json!({ "sql": format!("{sql} LIMIT 5") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["rows"], https["rows"]);
}
