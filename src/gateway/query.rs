//! Queries: one read-only SQL query under the caller's habilitation (researchers), or over the
//! audit trail (operators), answered in the format asked for.
//!
//! Order: habilitation and plan (refusals recorded once), the caller's share (admission), the
//! **decision** record (durable), then the engine's lanes; the **outcome** is written by the
//! guard on every way the query ends. A whole answer comes back as bytes; a longer one as an
//! [`AnswerStream`] that ends cleanly only once its outcome is durable, and with an error when
//! it was cut, so that no transport can pass a cut answer off as whole.
//!
//! Must never: run query work on the caller's runtime, or answer data before the decision is on
//! the trail.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use super::error::GatewayError;
use super::record::OutcomeGuard;
use super::{Caller, Gateway};
use crate::audit::Outcome;
use crate::engine::{AnswerBody, EventsQuery, Format, Piece, QueryEnd, QueryLimits, SecureQuery};

/// Encoded answer gathered before anything is handed back: small answers come whole (with
/// their row count and truncation known), larger ones stream.
const HEAD_BYTES: usize = 256 * 1024;

/// A researcher's query.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub sql: String,
    /// The habilitation to use (may be left out when the caller holds exactly one).
    pub habilitation: Option<String>,
    /// Values of the statement's placeholders (`$1`, …): none over HTTPS; a prepared
    /// statement's bound parameters over Flight SQL.
    pub params: Vec<datafusion::scalar::ScalarValue>,
    pub format: Format,
}

/// A query's answer.
pub struct QueryAnswer {
    pub habilitation: String,
    pub policy_version: String,
    /// The pseudonymisation key in use, `domain;version=N`.
    pub pseudonym_key: String,
    pub format: Format,
    pub body: QueryBody,
}

/// The bytes of a query's answer.
pub enum QueryBody {
    /// The whole answer, with what is known of it.
    Whole {
        bytes: Bytes,
        rows: usize,
        truncated: bool,
    },
    /// The answer as it is computed.
    Streamed(AnswerStream),
}

/// A streamed answer: chunks, then the end; an `Err` item means the answer was cut (nothing
/// follows it). Dropping it stops the query on its lane (its outcome says so).
pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

impl Gateway {
    /// Runs `request` for `caller` (see the module doc).
    pub async fn query(
        &self,
        caller: &Caller,
        request: QueryRequest,
    ) -> Result<QueryAnswer, GatewayError> {
        let record = &caller.record;
        record.sql(&request.sql, self.config.limits.max_sql_bytes);
        let prepared = self.prepare_query(caller, &request).await;
        let (plan, set, key_version, share) = match prepared {
            Ok(prepared) => prepared,
            // A refusal before any work: the request's single record.
            Err(e) => return record.settle(&self.audit, Err(e)).await,
        };
        let outcome = record.decide(&self.audit).await?;
        let habilitation = plan.habilitation().clone();
        let query = SecureQuery {
            principal: caller.principal_key(),
            plan: plan.clone(),
            policy: set,
            sql: request.sql,
            params: request.params,
            format: request.format,
            limits: QueryLimits::from(&self.config.limits),
            head_bytes: HEAD_BYTES,
        };
        let started = match self.engine.query(query, share).await {
            Ok(started) => started,
            Err(e) => return Err(outcome.failed(GatewayError::engine(e))),
        };
        record.datasets(&plan, started.datasets.iter().map(String::as_str));
        Ok(QueryAnswer {
            habilitation: habilitation.id.clone(),
            policy_version: plan.policy_version().to_string(),
            pseudonym_key: format!(
                "{};version={key_version}",
                habilitation.pseudonymisation_domain
            ),
            format: request.format,
            body: answer_body(record, started.head, started.body, outcome),
        })
    }

    /// The checks before a query's decision: habilitation, plan, SQL allowed, share.
    async fn prepare_query(
        &self,
        caller: &Caller,
        request: &QueryRequest,
    ) -> Result<
        (
            std::sync::Arc<crate::policy::AccessPlan>,
            std::sync::Arc<crate::policy::PolicySet>,
            u32,
            crate::engine::Share,
        ),
        GatewayError,
    > {
        let (set, plan) = self.plan_for(caller, request.habilitation.as_deref())?;
        let habilitation = plan.habilitation();
        let today = chrono::Utc::now().date_naive();
        let key_version = self
            .pseudonyms
            .version_on(&plan.habilitation().pseudonymisation_domain, today);
        caller.record.plan(&plan, Some(key_version));
        // SECURITY: a lookup-only habilitation runs no SQL.
        if !plan.allows_queries() {
            return Err(GatewayError::forbidden(
                "query_not_allowed",
                format!("habilitation `{}` allows no SQL queries", habilitation.id),
            ));
        }
        // SECURITY (availability): a share per principal and per habilitation (503 past a
        // short grace).
        let share = self
            .engine
            .admit(&caller.share_key(), &habilitation.id)
            .await
            .map_err(|busy| GatewayError::busy(&busy))?;
        Ok((plan, set, key_version, share))
    }

    /// Operators' SQL over `audit.events`, under the same shares, lanes and limits as any
    /// query; the whole answer, in JSON.
    pub async fn audit_query(&self, caller: &Caller, sql: String) -> Result<Bytes, GatewayError> {
        let record = &caller.record;
        record.sql(&sql, self.config.limits.max_sql_bytes);
        if let Err(e) = self.require_operator(caller) {
            return record.settle(&self.audit, Err(e)).await;
        }
        // SECURITY (availability): operators' SQL goes through the same admission as any.
        let share = match self.engine.admit(&caller.share_key(), "operator").await {
            Ok(share) => share,
            Err(busy) => {
                return record
                    .settle(&self.audit, Err(GatewayError::busy(&busy)))
                    .await;
            }
        };
        let outcome = record.decide(&self.audit).await?;
        let dir = self.config.audit.dir.clone();
        let batch = tokio::task::spawn_blocking(move || {
            crate::audit::read_events(&dir)
                .map_err(|e| e.to_string())
                .and_then(|events| crate::audit::events_batch(&events).map_err(|e| e.to_string()))
        })
        .await
        .map_err(|_| "the trail reader stopped".to_string())
        .and_then(|read| read);
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "audit trail could not be read for a query");
                return Err(outcome.failed(GatewayError::internal()));
            }
        };
        let query = EventsQuery {
            events: batch,
            sql,
            policy_version: self.policy.current().version.clone(),
            limits: QueryLimits::from(&self.config.limits),
        };
        let started = match self.engine.query_events(query, share).await {
            Ok(started) => started,
            Err(e) => return Err(outcome.failed(GatewayError::engine(e))),
        };
        let AnswerBody::Whole(body) = started.body else {
            return Err(outcome.failed(GatewayError::internal()));
        };
        let end = QueryEnd {
            rows: started.head.rows as u64,
            bytes: body.len() as u64,
            truncated: started.head.truncated,
        };
        record.sent(end.rows, end.bytes);
        outcome.finish(Outcome::Allowed, end.truncated.then_some("truncated"), end);
        Ok(body)
    }
}

/// The answer's body: whole (its outcome group-committed now), or a stream that records its
/// outcome when it ends.
fn answer_body(
    record: &super::record::RequestRecord,
    head: crate::engine::AnswerHead,
    body: AnswerBody,
    outcome: OutcomeGuard,
) -> QueryBody {
    match body {
        AnswerBody::Whole(bytes) => {
            record.sent(head.rows as u64, bytes.len() as u64);
            metrics::counter!("passerelle_query_rows_total").increment(head.rows as u64);
            outcome.finish(
                Outcome::Allowed,
                head.truncated.then_some("truncated"),
                QueryEnd {
                    rows: head.rows as u64,
                    bytes: bytes.len() as u64,
                    truncated: head.truncated,
                },
            );
            QueryBody::Whole {
                bytes,
                rows: head.rows,
                truncated: head.truncated,
            }
        }
        AnswerBody::Streamed(pieces) => QueryBody::Streamed(streamed(pieces, outcome)),
    }
}

/// Pieces as the lane computes them; the stream ends cleanly only once the outcome is durable,
/// and with an error when the answer failed (so a cut answer never looks whole).
fn streamed(pieces: tokio::sync::mpsc::Receiver<Piece>, outcome: OutcomeGuard) -> AnswerStream {
    Box::pin(futures::stream::unfold(
        Some((pieces, outcome)),
        |state| async move {
            let (mut pieces, outcome) = state?;
            match pieces.recv().await {
                Some(Piece::Data(chunk)) => Some((Ok(chunk), Some((pieces, outcome)))),
                Some(Piece::End(end)) => {
                    metrics::counter!("passerelle_query_rows_total").increment(end.rows);
                    // SECURITY: the stream ends cleanly only once its outcome record is
                    // durable; otherwise the transfer is aborted.
                    let reason = end.truncated.then_some("truncated");
                    match outcome.finish_durable(Outcome::Allowed, reason, end).await {
                        Ok(()) => None,
                        Err(e) => {
                            tracing::error!(error = %e, "audit outcome record failed: answer aborted");
                            Some((Err(std::io::Error::other("audit unavailable")), None))
                        }
                    }
                }
                Some(Piece::Failed(e, end)) => {
                    tracing::warn!(error = %e, rows = end.rows, "query answer aborted while streaming");
                    outcome.finish(Outcome::Error, Some("aborted"), end);
                    Some((Err(std::io::Error::other("answer aborted")), None))
                }
                None => {
                    // The lane stopped without a last piece: a panic, or a client too slow
                    // to read its answer before the deadline.
                    outcome.finish(Outcome::Error, Some("aborted"), QueryEnd::default());
                    Some((Err(std::io::Error::other("answer aborted")), None))
                }
            }
        },
    ))
}
