//! Why a use case gave no answer: a kind (what the caller should do), a stable code, a title and
//! a detail for the caller, and what a transport needs to say when to try again.
//!
//! Owns: [`GatewayError`] and its constructors, one per refusal the use cases make.
//! Must never: hold a status code or a header (each transport maps [`ErrorKind`] once), or a
//! detail that reveals internals, paths, hidden columns or raw values (internal errors say
//! nothing; their cause is logged with the request id).

use crate::engine::{Busy, EngineError};
use crate::policy::Refusal;

/// What kind of refusal: each transport maps it to its own status once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No valid token (one answer whatever the reason).
    Unauthenticated,
    /// The request cannot be read or is not allowed in this form.
    BadRequest,
    /// Authenticated, but this caller may not do this.
    Forbidden,
    /// Nothing here (that the caller may know of).
    NotFound,
    /// The request is larger than the hub accepts.
    TooLarge,
    /// Well formed, but a value is invalid or a budget is passed.
    Unprocessable,
    /// The state the request was based on changed meanwhile (a policy applied by another
    /// gateway): look again, then retry.
    Conflict,
    /// The caller's rate is spent.
    RateLimited,
    /// The hub cannot take this work now (a share, a lane, memory): try again later.
    Busy,
    /// The hub cannot serve (audit trail down, shutting down, not ready).
    Unavailable,
    /// The work took longer than allowed.
    Timeout,
    /// A fault of the hub: the caller learns only the request id.
    Internal,
}

/// A rate limit's state, for the `RateLimit-*` fields of an answer or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// The quota per window.
    pub limit: u32,
    /// What is left now, when known (a batch larger than the whole quota cannot tell).
    pub remaining: Option<u32>,
    /// Seconds until the quota is whole again, when known (the same meaning on every answer).
    pub reset_secs: Option<u64>,
}

/// A use case's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct GatewayError {
    pub kind: ErrorKind,
    /// Stable, machine-readable code (`invalid_token`, `habilitation_expired`, …).
    pub code: &'static str,
    /// Short human summary of the kind of problem.
    pub title: &'static str,
    /// What went wrong for this request and how to fix it.
    pub detail: String,
    /// Seconds after which the caller may try again (busy, rate limited).
    pub retry_after: Option<u64>,
    /// The rate limit behind a refusal, when one applies.
    pub rate: Option<RateState>,
}

impl GatewayError {
    pub fn new(
        kind: ErrorKind,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code,
            title,
            detail: detail.into(),
            retry_after: None,
            rate: None,
        }
    }

    /// A refusal past a rate limit (`rate_limited`): try again after `retry_after` seconds.
    pub fn rate_limited(title: &'static str, detail: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, "rate_limited", title, detail);
        e.retry_after = Some(retry_after);
        e
    }

    /// The single refusal for every missing or refused token.
    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            "invalid_token",
            "Authentication required",
            "send a valid access token in the `Authorization: Bearer` header",
        )
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, "Forbidden", detail)
    }

    pub fn not_found(code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, title, detail)
    }

    pub fn unprocessable(
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Unprocessable, code, title, detail)
    }

    /// A fault of the hub: the caller learns nothing but the request id.
    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "Internal error",
            "internal error; quote the request id to the hub operator",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// The audit trail cannot be written: nothing is served without its record.
    pub fn audit_unavailable() -> Self {
        Self::unavailable("the audit trail cannot be written: no access without a record")
    }

    /// The hub cannot take this work now; try again after the busy state's delay.
    pub fn busy(busy: &Busy) -> Self {
        let mut e = Self::new(ErrorKind::Busy, "busy", "Busy", busy.to_string());
        e.retry_after = Some(busy.retry_after_secs());
        e
    }

    /// A habilitation that cannot be used: the caller must choose, or may not use it.
    pub fn refusal(r: &Refusal) -> Self {
        let kind = match r {
            Refusal::HabilitationRequired(_) => ErrorKind::BadRequest,
            _ => ErrorKind::Forbidden,
        };
        Self::new(kind, r.code(), "Habilitation refused", r.to_string())
    }

    /// A query's failure.
    pub fn engine(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(m) => {
                Self::new(ErrorKind::BadRequest, "invalid_query", "Invalid query", m)
            }
            EngineError::Refused(m) => {
                Self::new(ErrorKind::BadRequest, "query_refused", "Query refused", m)
            }
            EngineError::TooLong(_) => Self::new(
                ErrorKind::TooLarge,
                "query_too_long",
                "Query too long",
                e.to_string(),
            ),
            EngineError::Timeout(_) => Self::new(
                ErrorKind::Timeout,
                "query_timeout",
                "Query timeout",
                e.to_string(),
            ),
            EngineError::ResourcesExhausted(_) => {
                Self::unprocessable("query_too_costly", "Query too costly", e.to_string())
            }
            EngineError::TooComplex(m) => {
                Self::unprocessable("query_too_complex", "Query too complex", m)
            }
            EngineError::Busy(busy) => Self::busy(&busy),
            EngineError::DataChanged => {
                let mut e = Self::new(
                    ErrorKind::Unavailable,
                    "data_changed",
                    "Data changed",
                    e.to_string(),
                );
                e.retry_after = Some(1);
                e
            }
            EngineError::Internal(detail) => {
                tracing::error!(error = %detail, "query failed internally");
                Self::internal()
            }
        }
    }

    /// Is the hub at fault (an error), rather than the caller's request (a refusal)?
    pub fn is_the_hubs(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Busy | ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Internal
        )
    }
}
