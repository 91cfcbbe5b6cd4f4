//! Statements a transport hands back to its client (Flight SQL tickets and prepared-statement
//! handles): opaque, sealed and self-contained, so that any gateway holding the hub's master
//! secret can redeem them, and a client can neither read nor forge nor lengthen one.
//!
//! A handle holds the principal (issuer and subject), the habilitation, the policy version it
//! was prepared under, the SQL, its SHA-256 and an expiry, sealed with AES-256-GCM under a key
//! derived from the master secret for this purpose only (`pseudonym::MasterKey::purpose_key`).
//! Redeeming one checks the seal, the expiry and that the caller is the principal it names;
//! the statement then goes through [`Gateway::query`] again, under the policy in force (an
//! expired habilitation is refused, a changed policy re-plans).
//!
//! Must never: put SQL or any identity in clear in a handle, accept a handle for another
//! principal, or run a statement without the full query gate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::NONCE_LEN;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::watch;

use super::error::GatewayError;
use super::query::QueryRequest;
use super::seal::SealedBox;
use super::{Caller, Gateway};
use crate::engine::Format;

/// What the seal binds to (a handle of another kind or version never opens as this one).
const AAD: &[u8] = b"passerelle statement handle v1";
/// First byte of a handle: its format's version.
const VERSION: u8 = 1;
/// Largest handle accepted (a larger one is refused before any decryption).
pub const MAX_HANDLE_BYTES: usize = 256 * 1024;

/// A statement prepared for a caller, as sealed in a handle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreparedStatement {
    /// Issuer of the principal it was prepared for.
    pub issuer: String,
    /// Subject of that principal.
    pub subject: String,
    /// The habilitation it runs under.
    pub habilitation: String,
    /// The policy version in force when it was prepared (informative: the statement is planned
    /// again under the version in force when it runs).
    pub policy_version: String,
    pub sql: String,
    /// SHA-256 of `sql`, hex.
    pub sql_sha256: String,
    /// Seconds since the Unix epoch after which the handle is refused.
    pub expires: u64,
    /// The bound values of the statement's placeholders: one row as an Arrow IPC stream,
    /// base64 (none until a client binds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
}

/// Largest parameter row bound to a statement (its IPC bytes).
const MAX_PARAMETER_BYTES: usize = 64 * 1024;

/// The row of `parameters` as placeholder values, in column order.
fn parameter_values(
    parameters: Option<&str>,
) -> Result<Vec<datafusion::scalar::ScalarValue>, GatewayError> {
    use base64::Engine as _;
    let Some(encoded) = parameters else {
        return Ok(Vec::new());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| GatewayError::internal())?;
    let mut reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|_| GatewayError::internal())?;
    let batch = reader
        .next()
        .transpose()
        .map_err(|_| GatewayError::internal())?
        .ok_or_else(GatewayError::internal)?;
    batch
        .columns()
        .iter()
        .map(|c| {
            datafusion::scalar::ScalarValue::try_from_array(c, 0)
                .map_err(|_| GatewayError::internal())
        })
        .collect()
}

fn invalid_parameters(detail: impl Into<String>) -> GatewayError {
    GatewayError::unprocessable("parameters_invalid", "Invalid parameters", detail)
}

/// Seals and opens statement handles.
#[derive(Debug)]
pub struct Sealer {
    sealed: SealedBox,
}

impl Sealer {
    /// A sealer with this 32-byte key (`None` only if the cipher refuses it).
    pub fn new(key: &[u8; 32]) -> Option<Self> {
        Some(Self {
            sealed: SealedBox::new(key)?,
        })
    }

    /// `statement` as an opaque handle: version, random nonce, ciphertext and tag.
    pub fn seal(&self, statement: &PreparedStatement) -> Result<Vec<u8>, GatewayError> {
        let body = serde_json::to_vec(statement).map_err(|_| GatewayError::internal())?;
        let sealed = self
            .sealed
            .seal(AAD, &body)
            .ok_or_else(GatewayError::internal)?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The statement in `handle`, if its seal holds (any other handle: `None`, for whatever
    /// reason).
    pub fn open(&self, handle: &[u8]) -> Option<PreparedStatement> {
        if handle.len() > MAX_HANDLE_BYTES || handle.len() < 1 + NONCE_LEN {
            return None;
        }
        let (version, rest) = handle.split_first()?;
        if *version != VERSION {
            return None;
        }
        let plain = self.sealed.open(AAD, rest)?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Statements being answered on this gateway, by principal and handle: what a client's
/// `CancelFlightInfo` may stop. Only the principal a statement was sealed for can cancel it;
/// a gateway knows only the answers it streams itself.
#[derive(Default)]
pub struct Running {
    streams: Mutex<HashMap<RunningKey, Vec<Stopper>>>,
    next: AtomicU64,
}

/// A running answer's principal (its share key) and the SHA-256 of its handle.
type RunningKey = (String, [u8; 32]);

/// One running answer on this gateway: its id and the switch that cancels it.
type Stopper = (u64, watch::Sender<bool>);

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

fn running_key(caller: &Caller, handle: &[u8]) -> RunningKey {
    (caller.share_key(), sha2::Sha256::digest(handle).into())
}

/// One answer's cancellation: resolves [`Cancellation::cancelled`] when its principal cancels
/// its statement; leaves the registry when dropped.
pub struct Cancellation {
    running: Arc<Running>,
    key: RunningKey,
    id: u64,
    cancelled: watch::Receiver<bool>,
}

impl Cancellation {
    /// Resolves once the statement is cancelled (never, otherwise).
    pub async fn cancelled(&mut self) {
        if self.cancelled.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Cancellation {
    fn drop(&mut self) {
        let mut streams = self
            .running
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(list) = streams.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                streams.remove(&self.key);
            }
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn refused_handle() -> GatewayError {
    GatewayError::forbidden(
        "statement_handle_invalid",
        "the statement handle is invalid, expired or was issued to someone else: prepare it again",
    )
}

impl Gateway {
    /// Checks that `caller` may run SQL under `habilitation` now and seals `sql` for it. The SQL
    /// itself is planned when the handle is redeemed ([`Gateway::run_prepared`]).
    pub async fn prepare(
        &self,
        caller: &Caller,
        sql: String,
        habilitation: Option<String>,
    ) -> Result<Vec<u8>, GatewayError> {
        let record = &caller.record;
        record.sql(&sql, self.config.limits.max_sql_bytes);
        let result = self.seal_for(caller, sql, habilitation.as_deref());
        record.settle(&self.audit, result).await
    }

    fn seal_for(
        &self,
        caller: &Caller,
        sql: String,
        habilitation: Option<&str>,
    ) -> Result<Vec<u8>, GatewayError> {
        if sql.len() > self.config.limits.max_sql_bytes {
            return Err(GatewayError::engine(crate::engine::EngineError::TooLong(
                self.config.limits.max_sql_bytes,
            )));
        }
        let (set, plan) = self.plan_for(caller, habilitation)?;
        caller.record.plan(&plan, None);
        let habilitation = plan.habilitation();
        // SECURITY: a lookup-only habilitation runs no SQL (checked again when it runs).
        if !plan.allows_queries() {
            return Err(GatewayError::forbidden(
                "query_not_allowed",
                format!("habilitation `{}` allows no SQL queries", habilitation.id),
            ));
        }
        let ttl = Duration::from_secs(self.config.flight.statement_ttl_secs);
        let statement = PreparedStatement {
            issuer: caller.principal.issuer.clone(),
            subject: caller.principal.subject.clone(),
            habilitation: habilitation.id.clone(),
            policy_version: set.version.clone(),
            sql_sha256: hex::encode(sha2::Sha256::digest(sql.as_bytes())),
            sql,
            expires: now_secs() + ttl.as_secs(),
            parameters: None,
        };
        self.sealer.seal(&statement)
    }

    /// Opens `handle` for `caller`: the statement, if the seal holds, it has not expired and
    /// `caller` is the principal it was sealed for.
    pub fn open_statement(
        &self,
        caller: &Caller,
        handle: &[u8],
    ) -> Result<PreparedStatement, GatewayError> {
        // SECURITY: a handle is redeemed only by its own principal, before its expiry; every
        // failure gives the same answer.
        let statement = self.sealer.open(handle).ok_or_else(refused_handle)?;
        if statement.expires < now_secs()
            || statement.issuer != caller.principal.issuer
            || statement.subject != caller.principal.subject
        {
            return Err(refused_handle());
        }
        Ok(statement)
    }

    /// Runs the statement sealed in `handle` for `caller` through the whole query gate, as an
    /// Arrow IPC stream (a refused handle is the request's single record).
    pub async fn run_prepared(
        &self,
        caller: &Caller,
        handle: &[u8],
    ) -> Result<super::QueryAnswer, GatewayError> {
        let statement = match self.open_statement(caller, handle) {
            Ok(statement) => statement,
            Err(e) => return caller.record.settle(&self.audit, Err(e)).await,
        };
        let params = match parameter_values(statement.parameters.as_deref()) {
            Ok(params) => params,
            Err(e) => return caller.record.settle(&self.audit, Err(e)).await,
        };
        let request = QueryRequest {
            sql: statement.sql,
            habilitation: Some(statement.habilitation),
            params,
            format: Format::ArrowIpc,
        };
        self.query(caller, request).await
    }

    /// Registers the answer being streamed for `caller` from the statement in `handle`, so that
    /// [`Gateway::cancel`] can stop it.
    pub fn cancellation(&self, caller: &Caller, handle: &[u8]) -> Cancellation {
        let key = running_key(caller, handle);
        let id = self.running.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        self.running
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .push((id, tx));
        Cancellation {
            running: self.running.clone(),
            key,
            id,
            cancelled: rx,
        }
    }

    /// Cancels the answers this gateway streams for `caller` from the statements in `handles`:
    /// true when one was running. Another principal's statements are out of reach.
    pub async fn cancel(&self, caller: &Caller, handles: &[&[u8]]) -> Result<bool, GatewayError> {
        let mut cancelled = false;
        {
            let streams = self
                .running
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for handle in handles {
                // SECURITY: the key holds the caller's principal: no one cancels another's.
                if let Some(list) = streams.get(&running_key(caller, handle)) {
                    for (_, tx) in list {
                        cancelled |= tx.send(true).is_ok();
                    }
                }
            }
        }
        caller.record.settle(&self.audit, Ok(cancelled)).await
    }

    /// Binds `row` (one row: a value per placeholder, `$1` first) to the statement sealed in
    /// `handle` for `caller`, and seals the bound statement in a new handle (the old one stays
    /// valid, unbound).
    pub async fn bind(
        &self,
        caller: &Caller,
        handle: &[u8],
        row: &arrow::array::RecordBatch,
    ) -> Result<Vec<u8>, GatewayError> {
        let result = self.bind_row(caller, handle, row);
        caller.record.settle(&self.audit, result).await
    }

    fn bind_row(
        &self,
        caller: &Caller,
        handle: &[u8],
        row: &arrow::array::RecordBatch,
    ) -> Result<Vec<u8>, GatewayError> {
        use base64::Engine as _;
        let mut statement = self.open_statement(caller, handle)?;
        caller
            .record
            .sql(&statement.sql, self.config.limits.max_sql_bytes);
        if row.num_rows() != 1 {
            return Err(invalid_parameters(format!(
                "a query takes one set of parameters per execution, not {}",
                row.num_rows()
            )));
        }
        let mut bytes = Vec::new();
        {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &row.schema())
                .map_err(|_| GatewayError::internal())?;
            writer.write(row).map_err(|_| GatewayError::internal())?;
            writer.finish().map_err(|_| GatewayError::internal())?;
        }
        // SECURITY (availability): a bound row is small; the handle stays bounded.
        if bytes.len() > MAX_PARAMETER_BYTES {
            return Err(invalid_parameters(format!(
                "the parameters take {} bytes, more than {MAX_PARAMETER_BYTES}",
                bytes.len()
            )));
        }
        statement.parameters = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        self.sealer.seal(&statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> PreparedStatement {
        PreparedStatement {
            issuer: "dev".into(),
            subject: "chercheuse-diabete".into(),
            habilitation: "projet-diabete".into(),
            policy_version: "v".into(),
            sql: "SELECT 1".into(),
            sql_sha256: String::new(),
            expires: u64::MAX,
            parameters: None,
        }
    }

    #[test]
    fn a_sealed_statement_opens_only_with_its_key_and_unchanged() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        let handle = sealer.seal(&statement()).unwrap();
        assert_eq!(sealer.open(&handle), Some(statement()));
        // SECURITY: opaque: neither the SQL nor the principal is readable in the handle.
        let text = String::from_utf8_lossy(&handle);
        assert!(!text.contains("SELECT") && !text.contains("chercheuse"));
        assert_eq!(Sealer::new(&[8; 32]).unwrap().open(&handle), None);
        for i in 0..handle.len() {
            let mut flipped = handle.clone();
            flipped[i] ^= 1;
            assert_eq!(sealer.open(&flipped), None, "byte {i} flipped");
        }
        assert_eq!(sealer.open(&handle[..handle.len() - 1]), None);
        assert_eq!(sealer.open(&[]), None);
        assert_eq!(sealer.open(&vec![1; MAX_HANDLE_BYTES + 1]), None);
    }

    #[test]
    fn two_seals_of_one_statement_differ() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        assert_ne!(
            sealer.seal(&statement()).unwrap(),
            sealer.seal(&statement()).unwrap()
        );
    }
}
