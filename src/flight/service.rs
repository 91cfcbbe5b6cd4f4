//! The Flight SQL service: each call is parsed, authenticated through the gateway, handed to
//! one use case, and its answer encoded as Flight data.
//!
//! What a client sees: the catalogs are the caller's usable habilitations, the schemas the
//! prefixes of the datasets a habilitation opens (`sante`), the tables their names with the
//! columns a query gets (hidden ones absent, treated ones with their treated type). A statement
//! (`CommandStatementQuery`) or a prepared statement is sealed by the gateway into the ticket
//! or handle the client gets back; `DoGet` redeems it through the whole query gate, under the
//! habilitation chosen by the `x-passerelle-habilitation` header or the catalog (one only when
//! the caller holds one).
//!
//! Must never: answer a call without authenticating it (the handshake included), accept a
//! person's password, or run anything that writes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest,
    ActionEndSavepointRequest, ActionEndTransactionRequest, Any, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use axum_server::tls::TlsInfo;
use futures::Stream;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::answer::{batch_data, flight_data};
use super::status::{refused_kind, status};
use crate::gateway::{
    AuditKind, Authorization, Caller, ClientCertificate, Gateway, Outcome, RequestRecord,
};

/// The metadata header that names the habilitation of a call (like HTTP's).
const HABILITATION_HEADER: &str = "x-passerelle-habilitation";

/// The Flight SQL service over the hub's use cases.
pub struct FlightSql {
    gateway: Arc<Gateway>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

impl FlightSql {
    pub fn new(gateway: Arc<Gateway>) -> Result<Self, arrow_flight::error::FlightError> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "passerelle");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        Ok(Self {
            gateway,
            sql_info: info.build()?,
            xdbc: XdbcTypeInfoDataBuilder::new().build()?,
        })
    }

    fn max_message(&self) -> usize {
        self.gateway.config().flight.max_message_bytes
    }

    /// Authenticates the call (its `authorization` metadata and TLS client certificate) and
    /// starts its audit record. The header leaves the metadata here.
    async fn caller<T>(
        &self,
        request: &mut Request<T>,
        kind: AuditKind,
        action: &str,
    ) -> Result<Caller, Status> {
        let call = Call::of(request, kind, action);
        let authorization = match call.authorization.as_ref().map(|v| v.to_str()) {
            None => Authorization::Absent,
            Some(Err(_)) => Authorization::Unreadable,
            Some(Ok(value)) => Authorization::Value(value),
        };
        self.gateway
            .authenticate(
                &call.record,
                authorization,
                call.certificate.as_ref(),
                call.source,
            )
            .await
            .map_err(|e| status(&e, &call.record.request_id()))
    }

    /// The caller behind a Handshake's `Basic` credentials (`encoded`), exchanged by the
    /// gateway for an access token: the caller and that token.
    async fn exchanged<T>(
        &self,
        request: &mut Request<T>,
        encoded: &str,
    ) -> Result<(Caller, String), Status> {
        let call = Call::of(request, AuditKind::Me, "Handshake");
        self.gateway
            .exchange_client_credentials(
                &call.record,
                encoded,
                call.certificate.as_ref(),
                call.source,
            )
            .await
            .map_err(|e| status(&e, &call.record.request_id()))
    }

    /// Settles the record of a call whose use case wrote none (a transport refusal after
    /// authentication, or the handshake); no record, no answer.
    async fn settled<T>(&self, caller: &Caller, result: Result<T, Status>) -> Result<T, Status> {
        let (outcome, code) = match &result {
            Ok(_) => (Outcome::Allowed, None),
            Err(s) if s.code() == tonic::Code::Internal => (Outcome::Error, Some("flight")),
            Err(_) => (Outcome::Refused, Some("flight")),
        };
        let record = caller.record();
        match record
            .settle_unserved(self.gateway.audit(), outcome, code)
            .await
        {
            Ok(()) => result,
            Err(e) => Err(status(&e, &record.request_id())),
        }
    }

    /// The habilitation a call names: the header, else the catalog; both must agree.
    fn habilitation(
        metadata: &MetadataMap,
        catalog: Option<&str>,
    ) -> Result<Option<String>, Status> {
        let header = metadata
            .get(HABILITATION_HEADER)
            .map(|v| {
                v.to_str()
                    .map(str::to_string)
                    .map_err(|_| Status::invalid_argument("x-passerelle-habilitation is not text"))
            })
            .transpose()?;
        let catalog = catalog.filter(|c| !c.is_empty()).map(str::to_string);
        match (header, catalog) {
            (Some(h), Some(c)) if h != c => Err(Status::invalid_argument(format!(
                "habilitation_mismatch: the header names `{h}` and the catalog `{c}`"
            ))),
            (h, c) => Ok(h.or(c)),
        }
    }

    /// A statement sealed for the caller, as a FlightInfo whose one endpoint's ticket redeems it.
    async fn statement_info(
        &self,
        caller: &Caller,
        sql: String,
        habilitation: Option<String>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let handle = self
            .gateway
            .prepare(caller, sql, habilitation)
            .await
            .map_err(|e| status(&e, &caller.record().request_id()))?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        Ok(FlightInfo::new()
            .with_descriptor(descriptor)
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_total_records(-1)
            .with_total_bytes(-1)
            .with_ordered(true))
    }

    /// A metadata command as a FlightInfo whose ticket is the command itself (it names no
    /// data: `DoGet` answers it for the caller who redeems it).
    fn command_info(
        command: impl ProstMessageExt,
        schema: &arrow::datatypes::Schema,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))
            .map(|info| {
                info.with_descriptor(descriptor)
                    .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
                    .with_total_records(-1)
                    .with_total_bytes(-1)
            })
    }

    /// A metadata command's FlightInfo, for an authenticated caller (the call's record).
    async fn metadata_info(
        &self,
        mut request: Request<FlightDescriptor>,
        action: &str,
        command: impl ProstMessageExt,
        schema: &arrow::datatypes::Schema,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self
            .caller(&mut request, AuditKind::Datasets, action)
            .await?;
        let info = Self::command_info(command, schema, request.into_inner());
        self.settled(&caller, info).await.map(Response::new)
    }

    /// Authenticates and records a metadata call whose answer is the same for everyone.
    async fn metadata_call<T>(&self, request: &mut Request<T>, action: &str) -> Result<(), Status> {
        let caller = self.caller(request, AuditKind::Datasets, action).await?;
        self.settled(&caller, Ok(())).await
    }

    /// The tables of the habilitations a metadata call covers: the one named by the header
    /// or `catalog`, else each usable habilitation (a refusal settles the call's record).
    async fn tables_of(
        &self,
        caller: &Caller,
        metadata: &MetadataMap,
        catalog: Option<&str>,
    ) -> Result<Vec<crate::gateway::TablesView>, Status> {
        let only = match Self::habilitation(metadata, catalog) {
            Ok(only) => only,
            Err(e) => return self.settled(caller, Err(e)).await,
        };
        self.gateway
            .sql_catalog(caller, only)
            .await
            .map_err(|e| status(&e, &caller.record().request_id()))
    }
}

/// What a call carries for authentication, taken off its metadata and extensions.
struct Call {
    record: RequestRecord,
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
    certificate: Option<ClientCertificate>,
    source: Option<std::net::IpAddr>,
}

impl Call {
    fn of<T>(request: &mut Request<T>, kind: AuditKind, action: &str) -> Call {
        let request_id = uuid::Uuid::new_v4().to_string();
        let client_request_id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect());
        let record = RequestRecord::new(kind, request_id, format!("flight {action}"))
            .with_client_request_id(client_request_id);
        // SECURITY: the token leaves the call's metadata here, before anything else sees it.
        let authorization = request.metadata_mut().remove("authorization");
        let certificate = request
            .extensions()
            .get::<Arc<TlsInfo>>()
            .and_then(|info| info.peer_certificates.first())
            .map(|der| ClientCertificate::from_der(der));
        let source = request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Call {
            record,
            authorization,
            certificate,
            source,
        }
    }
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "a Flight SQL metadata answer could not be built");
    Status::internal("internal: the answer could not be built")
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// A bearer token, checked and handed back in the `authorization` header (as ADBC and
    /// JDBC expect); or, when `[flight.client_credentials]` is set, `Basic client_id:secret`
    /// exchanged at that issuer for an access token, checked the same way and handed back as
    /// the bearer to send from then on. Without that setting, Basic is refused.
    async fn do_handshake(
        &self,
        mut request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let value = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let basic = value.as_deref().and_then(|v| {
            v.get(..6)
                .filter(|s| s.eq_ignore_ascii_case("basic "))
                .map(|_| v[6..].to_string())
        });
        let exchanges = self.gateway.config().flight.client_credentials.is_some();
        let (caller, bearer) = match basic {
            Some(encoded) => {
                // SECURITY: Basic is only ever a client-credentials exchange at the configured
                // issuer (never a person's password); without one it is refused like any value
                // that is not a bearer token (counted in the refusals' summary), and the client
                // is told what to send instead.
                let (caller, token) = self.exchanged(&mut request, &encoded).await.map_err(|e| {
                    if !exchanges && e.code() == tonic::Code::Unauthenticated {
                        Status::unauthenticated(
                            "unauthenticated: Basic credentials are not accepted: send `authorization: Bearer <access token>`",
                        )
                    } else {
                        e
                    }
                })?;
                (caller, format!("Bearer {token}"))
            }
            None => {
                let caller = self
                    .caller(&mut request, AuditKind::Me, "Handshake")
                    .await?;
                (caller, value.unwrap_or_default())
            }
        };
        self.settled(&caller, Ok(())).await?;
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::once(async {
            Ok(HandshakeResponse {
                protocol_version: 0,
                payload: Default::default(),
            })
        })));
        if let Ok(value) = bearer.parse() {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(refused_kind("a transaction"));
        }
        let caller = self
            .caller(
                &mut request,
                AuditKind::Query,
                "GetFlightInfo CommandStatementQuery",
            )
            .await?;
        let habilitation = match Self::habilitation(request.metadata(), None) {
            Ok(h) => h,
            Err(e) => return self.settled(&caller, Err(e)).await,
        };
        let info = self
            .statement_info(&caller, query.query, habilitation, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        mut request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self
            .caller(
                &mut request,
                AuditKind::Query,
                "GetFlightInfo CommandPreparedStatementQuery",
            )
            .await?;
        // The handle is checked (seal, expiry, principal) here and again when redeemed.
        let opened = self
            .gateway
            .open_statement(&caller, &query.prepared_statement_handle)
            .map_err(|e| status(&e, &caller.record().request_id()));
        self.settled(&caller, opened).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.prepared_statement_handle,
        };
        Ok(Response::new(
            FlightInfo::new()
                .with_descriptor(request.into_inner())
                .with_endpoint(
                    FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
                )
                .with_total_records(-1)
                .with_total_bytes(-1)
                .with_ordered(true),
        ))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self
            .caller(&mut request, AuditKind::Query, "DoGet TicketStatementQuery")
            .await?;
        let request_id = caller.record().request_id();
        // SECURITY: the whole query gate again, under the policy in force.
        let answer = self
            .gateway
            .run_prepared(&caller, &ticket.statement_handle)
            .await
            .map_err(|e| status(&e, &request_id))?;
        let stream = flight_data(answer, self.max_message()).await?;
        let cancellation = self.gateway.cancellation(&caller, &ticket.statement_handle);
        Ok(Response::new(super::answer::cancellable(
            stream,
            cancellation,
        )))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            request,
            "GetFlightInfo CommandGetCatalogs",
            query,
            &query.into_builder().schema(),
        )
        .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self
            .caller(
                &mut request,
                AuditKind::Datasets,
                "DoGet CommandGetCatalogs",
            )
            .await?;
        let catalogs = self
            .gateway
            .usable_habilitations(&caller)
            .await
            .map_err(|e| status(&e, &caller.record().request_id()))?;
        let mut builder = query.into_builder();
        for c in catalogs {
            builder.append(c);
        }
        let batch = builder.build().map_err(arrow_status)?;
        Ok(Response::new(batch_data(batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            request,
            "GetFlightInfo CommandGetDbSchemas",
            query.clone(),
            &query.into_builder().schema(),
        )
        .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self
            .caller(
                &mut request,
                AuditKind::Datasets,
                "DoGet CommandGetDbSchemas",
            )
            .await?;
        let views = self
            .tables_of(&caller, request.metadata(), query.catalog.as_deref())
            .await?;
        let mut builder = query.into_builder();
        for view in &views {
            let mut schemas: Vec<&str> = view.tables.iter().map(|t| t.schema.as_str()).collect();
            schemas.dedup();
            for schema in schemas {
                builder.append(&view.habilitation, schema);
            }
        }
        let batch = builder.build().map_err(arrow_status)?;
        Ok(Response::new(batch_data(batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            request,
            "GetFlightInfo CommandGetTables",
            query.clone(),
            &query.into_builder().schema(),
        )
        .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self
            .caller(&mut request, AuditKind::Datasets, "DoGet CommandGetTables")
            .await?;
        let views = self
            .tables_of(&caller, request.metadata(), query.catalog.as_deref())
            .await?;
        let mut builder = query.into_builder();
        for view in &views {
            for table in &view.tables {
                builder
                    .append(
                        &view.habilitation,
                        &table.schema,
                        &table.table,
                        "TABLE",
                        &table.columns,
                    )
                    .map_err(arrow_status)?;
            }
        }
        let batch = builder.build().map_err(arrow_status)?;
        Ok(Response::new(batch_data(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            request,
            "GetFlightInfo CommandGetTableTypes",
            query,
            &query.into_builder().schema(),
        )
        .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_call(&mut request, "DoGet CommandGetTableTypes")
            .await?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        let batch = builder.build().map_err(arrow_status)?;
        Ok(Response::new(batch_data(batch)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            request,
            "GetFlightInfo CommandGetSqlInfo",
            query.clone(),
            &query.into_builder(&self.sql_info).schema(),
        )
        .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_call(&mut request, "DoGet CommandGetSqlInfo")
            .await?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(arrow_status)?;
        Ok(Response::new(batch_data(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            request,
            "GetFlightInfo CommandGetXdbcTypeInfo",
            query,
            &query.into_builder(&self.xdbc).schema(),
        )
        .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        mut request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_call(&mut request, "DoGet CommandGetXdbcTypeInfo")
            .await?;
        let batch = query
            .into_builder(&self.xdbc)
            .build()
            .map_err(arrow_status)?;
        Ok(Response::new(batch_data(batch)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        mut request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.transaction_id.is_some() {
            return Err(refused_kind("a transaction"));
        }
        let caller = self
            .caller(
                &mut request,
                AuditKind::Query,
                "DoAction CreatePreparedStatement",
            )
            .await?;
        let habilitation = match Self::habilitation(request.metadata(), None) {
            Ok(h) => h,
            Err(e) => return self.settled(&caller, Err(e)).await,
        };
        let handle = self
            .gateway
            .prepare(&caller, query.query, habilitation)
            .await
            .map_err(|e| status(&e, &caller.record().request_id()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: Default::default(),
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        mut request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // A handle is self-contained: closing it keeps nothing to free (it expires by itself).
        let caller = self
            .caller(
                &mut request,
                AuditKind::Query,
                "DoAction ClosePreparedStatement",
            )
            .await?;
        self.settled(&caller, Ok(())).await
    }

    // Everything below writes, or is a feature the hub does not offer: refused.

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(refused_kind("a Substrait plan"))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(refused_kind("an update"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(refused_kind("ingestion"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(refused_kind("an update"))
    }

    /// Binds one row of parameters to a prepared statement: the answer is a new handle holding
    /// the statement and its values (stateless, as Flight SQL 15 allows), redeemed like any.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        mut request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self
            .caller(
                &mut request,
                AuditKind::Query,
                "DoPut CommandPreparedStatementQuery",
            )
            .await?;
        let row = match super::answer::parameter_row(request.into_inner()).await {
            Ok(row) => row,
            Err(e) => return self.settled(&caller, Err(e)).await,
        };
        let handle = self
            .gateway
            .bind(&caller, &query.prepared_statement_handle, &row)
            .await
            .map_err(|e| status(&e, &caller.record().request_id()))?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(refused_kind("a Substrait plan"))
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        Err(refused_kind("a Substrait plan"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(refused_kind("a transaction"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        Err(refused_kind("a transaction"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(refused_kind("a savepoint"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        Err(refused_kind("a savepoint"))
    }

    async fn do_action_cancel_query(
        &self,
        _query: ActionCancelQueryRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        Err(refused_kind(
            "cancelling by action (close the stream instead)",
        ))
    }

    /// `CancelFlightInfo`: stops the caller's answers of the statements whose tickets the
    /// FlightInfo holds (those this gateway streams), which end with `CANCELLED`.
    async fn do_action_fallback(
        &self,
        mut request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown_action: `{}` is not an action of the hub",
                request
                    .get_ref()
                    .r#type
                    .chars()
                    .take(80)
                    .collect::<String>()
            )));
        }
        let caller = self
            .caller(&mut request, AuditKind::Query, "DoAction CancelFlightInfo")
            .await?;
        let cancel = arrow_flight::CancelFlightInfoRequest::decode(&*request.get_ref().body)
            .map_err(|_| Status::invalid_argument("cancel_invalid: not a CancelFlightInfoRequest"));
        let cancel = match cancel {
            Ok(cancel) => cancel,
            Err(e) => return self.settled(&caller, Err(e)).await,
        };
        let handles: Vec<bytes::Bytes> = cancel
            .info
            .into_iter()
            .flat_map(|info| info.endpoint)
            .filter_map(|endpoint| endpoint.ticket)
            .filter_map(|ticket| Any::decode(&*ticket.ticket).ok())
            .filter_map(|any| any.unpack::<TicketStatementQuery>().ok().flatten())
            .map(|t| t.statement_handle)
            .collect();
        let handles: Vec<&[u8]> = handles.iter().map(|h| h.as_ref()).collect();
        let cancelled = self
            .gateway
            .cancel(&caller, &handles)
            .await
            .map_err(|e| status(&e, &caller.record().request_id()))?;
        let status = if cancelled {
            arrow_flight::CancelStatus::Cancelled
        } else {
            arrow_flight::CancelStatus::NotCancellable
        };
        let result = arrow_flight::CancelFlightInfoResult::new(status);
        let body = arrow_flight::Result {
            body: result.encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(body)
        }))))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::invalid_argument(format!(
            "unknown_ticket: a ticket of type {} is not one the hub gives out",
            message.type_url.chars().take(120).collect::<String>()
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
