//! A Flight SQL client for tests: arrow-flight's own `FlightSqlServiceClient` over gRPC on TLS
//! (HTTP/2 by ALPN), trusting the hub's CA, with a bearer token on every call. It answers a
//! query as the HTTPS endpoint's JSON does (`columns`, `rows` written by arrow-json as the
//! server writes them, or a problem's `code` and `detail` read back from the gRPC status), so
//! that a corpus written against HTTPS replays over Flight unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

pub struct FlightClient {
    client: FlightSqlServiceClient<Channel>,
}

impl FlightClient {
    /// Connects to `addr` trusting `ca_pem`, with `token` on every call.
    pub async fn connect(addr: SocketAddr, ca_pem: &[u8], token: &str) -> FlightClient {
        let mut client = FlightSqlServiceClient::new(channel(addr, ca_pem).await);
        client.set_token(token.to_string());
        FlightClient { client }
    }

    /// Connects to `addr` trusting `ca_pem` and hands `client_id:secret` to the Handshake as
    /// `Basic` (as ADBC's `username`/`password` do): the client then sends the bearer the
    /// Handshake answered, or the Handshake's error.
    pub async fn connect_with_credentials(
        addr: SocketAddr,
        ca_pem: &[u8],
        client_id: &str,
        secret: &str,
    ) -> Result<FlightClient, String> {
        let mut client = FlightSqlServiceClient::new(channel(addr, ca_pem).await);
        client
            .handshake(client_id, secret)
            .await
            .map_err(|e| e.to_string())?;
        Ok(FlightClient { client })
    }

    /// The bearer this client sends.
    pub fn token(&self) -> Option<&str> {
        self.client.token().map(String::as_str)
    }

    /// Runs `sql` (GetFlightInfo, then DoGet of each endpoint): the batches, or the status.
    pub async fn query(
        &mut self,
        sql: &str,
    ) -> Result<(Option<SchemaRef>, Vec<RecordBatch>), tonic::Status> {
        let info = self
            .client
            .execute(sql.to_string(), None)
            .await
            .map_err(status_of)?;
        self.redeem(info).await
    }

    /// DoGet of each endpoint of `info`: the schema and every batch, or the status.
    async fn redeem(
        &mut self,
        info: arrow_flight::FlightInfo,
    ) -> Result<(Option<SchemaRef>, Vec<RecordBatch>), tonic::Status> {
        let mut batches = Vec::new();
        let mut schema = None;
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .ok_or_else(|| tonic::Status::internal("an endpoint without a ticket"))?;
            let mut stream = self.client.do_get(ticket).await.map_err(status_of)?;
            while let Some(batch) = stream.try_next().await.map_err(status_of)? {
                batches.push(batch);
            }
            schema = stream.schema().cloned();
        }
        Ok((schema, batches))
    }

    /// `GetCatalogs`: the habilitations this caller may use.
    pub async fn catalogs(&mut self) -> Result<Vec<String>, tonic::Status> {
        let info = self.client.get_catalogs().await.map_err(status_of)?;
        let (_, batches) = self.redeem(info).await?;
        Ok(batches
            .iter()
            .flat_map(|batch| {
                let column = arrow::array::AsArray::as_string::<i32>(batch.column(0));
                column
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// The FlightInfo of `sql` (its ticket not redeemed yet).
    pub async fn info(&mut self, sql: &str) -> Result<arrow_flight::FlightInfo, tonic::Status> {
        self.client
            .execute(sql.to_string(), None)
            .await
            .map_err(status_of)
    }

    /// The stream of the first endpoint of `info`.
    pub async fn stream(
        &mut self,
        info: &arrow_flight::FlightInfo,
    ) -> Result<arrow_flight::decode::FlightRecordBatchStream, tonic::Status> {
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        self.client.do_get(ticket).await.map_err(status_of)
    }

    /// `CancelFlightInfo` for `info`: the status the server answers.
    pub async fn cancel(&mut self, info: arrow_flight::FlightInfo) -> arrow_flight::CancelStatus {
        use prost::Message;
        let body = arrow_flight::CancelFlightInfoRequest::new(info).encode_to_vec();
        let action = arrow_flight::Action::new("CancelFlightInfo", body);
        let mut results = self.client.do_action(action).await.unwrap();
        let result = results.try_next().await.unwrap().unwrap();
        let answer = arrow_flight::CancelFlightInfoResult::decode(result.body).unwrap();
        arrow_flight::CancelStatus::try_from(answer.status).unwrap()
    }

    /// `sql` as [`Self::post`] answers it, with the request id a refusal carries
    /// (`x-request-id`).
    pub async fn post_recorded(&mut self, sql: &str) -> (u16, Value, Option<String>) {
        match self.query(sql).await {
            Ok((schema, batches)) => (200, json_answer(schema, &batches), None),
            Err(status) => {
                let id = status
                    .metadata()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let (code, body) = problem(&status);
                (code, body, id)
            }
        }
    }

    /// `sql` as the HTTPS endpoint would answer it in JSON: `(status, body)`.
    pub async fn post(&mut self, sql: &str) -> (u16, Value) {
        match self.query(sql).await {
            Ok((schema, batches)) => (200, json_answer(schema, &batches)),
            Err(status) => problem(&status),
        }
    }
}

fn status_of(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => *status,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// The HTTPS problem behind a gRPC status (`code: detail`, the status's code as HTTP's).
fn problem(status: &tonic::Status) -> (u16, Value) {
    use tonic::Code;
    let http = match status.code() {
        Code::Unauthenticated => 401,
        Code::InvalidArgument => 400,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::OutOfRange => 413,
        Code::ResourceExhausted => 429,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unimplemented => 501,
        _ => 500,
    };
    let (code, detail) = status
        .message()
        .split_once(": ")
        .unwrap_or(("", status.message()));
    (http, json!({ "code": code, "detail": detail }))
}

/// Batches as the HTTPS JSON answer's `columns` and `rows`.
fn json_answer(schema: Option<SchemaRef>, batches: &[RecordBatch]) -> Value {
    let columns: Vec<Value> = schema
        .or_else(|| batches.first().map(RecordBatch::schema))
        .map(|s| {
            s.fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect()
        })
        .unwrap_or_default();
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    let rows: Value = if bytes.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    json!({ "columns": columns, "rows": rows })
}

/// A gRPC channel to `addr` over TLS (HTTP/2 by ALPN), trusting `ca_pem`.
async fn channel(addr: SocketAddr, ca_pem: &[u8]) -> Channel {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}
