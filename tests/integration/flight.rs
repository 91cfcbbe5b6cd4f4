//! Flight SQL through arrow-flight's own client (TLS, bearer on every call): what the Python
//! suite (`clients::adbc_…`) cannot stage — a server with small limits, answers larger than the
//! whole-answer buffer. The attack corpus over Flight is in `attacks` (`attacks_over_flight_…`).

use futures::StreamExt;
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

/// `CancelFlightInfo` stops the caller's own answer, which then ends with `CANCELLED` (never
/// cleanly); another principal holding the same FlightInfo cancels nothing.
#[tokio::test]
async fn cancel_flight_info_stops_the_callers_answer_and_no_one_elses() {
    let h = DemoServer::start_with(|_| {}).await;
    let ca = hub().ca_pem();
    let addr = h.server.flight.unwrap();
    let mut owner = FlightClient::connect(addr, &ca, &h.token("chercheur-emploi")).await;
    let mut other = FlightClient::connect(addr, &ca, &h.token("chercheuse-diabete")).await;
    // Millions of rows: still streaming when the cancel arrives.
    let sql = "SELECT a.id_sejour, b.id_sejour AS autre FROM sante.sejours a \
               JOIN sante.sejours b ON a.sexe = b.sexe";
    let info = owner.info(sql).await.unwrap();
    let mut stream = owner.stream(&info).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    assert_eq!(
        other.cancel(info.clone()).await,
        arrow_flight::CancelStatus::NotCancellable
    );
    assert_eq!(
        owner.cancel(info.clone()).await,
        arrow_flight::CancelStatus::Cancelled
    );
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
            None => panic!("a cancelled answer ended cleanly"),
        }
    };
    assert!(end.contains("cancelled"), "{end}");
    // Once ended, nothing is left to cancel.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        owner.cancel(info).await,
        arrow_flight::CancelStatus::NotCancellable
    );
}

/// A client that goes away mid-answer stops its query, and the trail says the answer was
/// abandoned (its decision record was written before any row).
#[tokio::test]
async fn a_client_that_disconnects_stops_its_query_and_the_trail_says_so() {
    let h = DemoServer::start_with(|_| {}).await;
    let mut client = FlightClient::connect(
        h.server.flight.unwrap(),
        &hub().ca_pem(),
        &h.token("chercheur-emploi"),
    )
    .await;
    let sql = "SELECT a.id_sejour, b.id_sejour AS autre FROM sante.sejours a \
               JOIN sante.sejours b ON a.sexe = b.sexe";
    let info = client.info(sql).await.unwrap();
    let mut stream = client.stream(&info).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    drop(client);
    let abandoned = |events: &[passerelle::audit::AuditEvent]| {
        events.iter().any(|e| {
            e.action == "flight DoGet TicketStatementQuery"
                && e.stage == Some(passerelle::audit::AuditStage::Outcome)
                && e.reason.as_deref() == Some("abandoned")
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = passerelle::audit::read_events(&h.server.audit_dir).unwrap();
        if abandoned(&events) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `abandoned` outcome on the trail after the client left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
