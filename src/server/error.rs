//! The one place where errors become HTTP answers: RFC 9457 `application/problem+json` with
//! `type`, `title`, `status`, `detail`, a stable `code` and the `request_id`.
//!
//! Handlers return [`ApiError`]; the `problem_json` middleware (which knows the request id)
//! renders it. Client errors explain what to fix; internal errors say only "internal error" and
//! the request id. Details of a refused token are never sent (one 401 for every cause).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::gateway::{ErrorKind, GatewayError, RateState};

/// Base of the `type` URIs of our problems; documented in `docs/api.md`.
pub const PROBLEM_BASE: &str = "https://passerelle.docs/problems/";

/// An error answer, before the request id is known.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable code (`invalid_token`, `habilitation_expired`, …).
    pub code: &'static str,
    /// Short human summary of the kind of problem.
    pub title: &'static str,
    /// What went wrong for this request and how to fix it. Never internals or raw values.
    pub detail: String,
    /// Seconds after which the client may try again (`Retry-After`), for 503 and 429.
    pub retry_after: Option<u64>,
    /// The rate limit behind a refusal (`RateLimit-*`).
    pub rate: Option<RateState>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            retry_after: None,
            rate: None,
        }
    }

    /// The single answer for every refused or missing token (RFC 6750).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Authentication required",
            "send a valid access token in the `Authorization: Bearer` header",
        )
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "no such endpoint; see docs/api.md",
        )
    }

    /// An internal failure: the client learns nothing but the request id.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "internal error; quote the request id to the hub operator",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// A generic problem for a bare status (e.g. axum's own 405), so every error has one shape.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::unauthorized(),
            StatusCode::NOT_FOUND => Self::not_found(),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "method_not_allowed",
                "Method not allowed",
                "this endpoint does not accept that method; see docs/api.md",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "payload_too_large",
                "Payload too large",
                "the request body is larger than this hub accepts",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Self::new(
                status,
                "timeout",
                "Timeout",
                "the request took longer than this hub allows",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "unsupported_media_type",
                "Unsupported media type",
                "send `Content-Type: application/json`",
            ),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Self::new(
                status,
                "bad_request",
                "Bad request",
                "the request could not be read; see docs/api.md",
            ),
            s if s.is_server_error() => {
                let mut e = Self::internal();
                e.status = s;
                e
            }
            s => Self::new(s, "error", "Error", "the request could not be served"),
        }
    }
}

/// The one mapping from a use case's refusal to an HTTP answer.
impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let status = match e.kind {
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Busy | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            code: e.code,
            title: e.title,
            detail: e.detail,
            retry_after: e.retry_after,
            rate: e.rate,
        }
    }
}

/// axum's extractor rejections (a body, a path or a query string that cannot be read) become
/// the generic problem of their status: their own text may quote the input.
macro_rules! rejection_to_problem {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                Self::from_status(rejection.status())
            }
        }
    )*};
}

rejection_to_problem!(JsonRejection, PathRejection, QueryRejection);

/// The `RateLimit-*` fields of a rate limit's state.
pub fn rate_headers(rate: &RateState) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("ratelimit-limit", HeaderValue::from(rate.limit));
    if let Some(remaining) = rate.remaining {
        headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    }
    if let Some(reset) = rate.reset_secs {
        headers.insert("ratelimit-reset", HeaderValue::from(reset));
    }
    headers
}

/// The JSON body of a problem answer.
#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: &'a str,
    pub code: &'a str,
    pub request_id: &'a str,
}

impl ApiError {
    /// Renders the final answer once the request id is known.
    pub fn render(&self, request_id: &str) -> Response {
        let problem = Problem {
            kind: format!("{PROBLEM_BASE}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(rate) = &self.rate {
            response.headers_mut().extend(rate_headers(rate));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: the same challenge whatever the cause.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

impl IntoResponse for ApiError {
    /// Leaves the body to the `problem_json` middleware, which adds the request id.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}
