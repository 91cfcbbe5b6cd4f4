//! Request-wide middleware: request ids, problem rendering, metrics, panics.
//!
//! Owns: what every request gets whatever its route. Must never: read the bearer token (only
//! `identity` does), log headers or bodies.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use crate::telemetry::names;

/// `X-Request-ID`: echoed when the client sends a sane one, generated otherwise.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the request being served, for handlers and audit.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client-supplied request id is kept only if it is short and made of safe characters,
/// so it cannot inject lines or markup into logs and audit records.
pub fn is_acceptable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Keeps or generates the request id, stores it in the request, echoes it on the response,
/// and renders every error answer as problem+json carrying it.
pub async fn request_id_and_problems(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    request.extensions_mut().insert(RequestId(id.clone()));

    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route_of(&request),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;

    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        // Headers the handler set on its error (`Retry-After`, `RateLimit-*`) are kept.
        let kept = response.headers().clone();
        response = error.render(&id);
        for (name, value) in kept.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
    } else if (response.status().is_client_error() || response.status().is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        // axum's own rejections (405, 404 fallback, body limits) get the same shape.
        response = ApiError::from_status(response.status()).render(&id);
    } else if response.status().is_client_error() || response.status().is_server_error() {
        let ct = response.headers().get(header::CONTENT_TYPE);
        if ct.is_some_and(|v| v.as_bytes().starts_with(b"text/plain")) {
            // axum extractor rejections carry text bodies that may quote input: replace them.
            response = ApiError::from_status(response.status()).render(&id);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        )
    });
    response
}

/// Counts requests and their latency per route template (never per raw path: keys in paths
/// such as lookups would otherwise end up in metric labels).
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    metrics::gauge!(names::HTTP_IN_FLIGHT).increment(1.0);
    let response = next.run(request).await;
    metrics::gauge!(names::HTTP_IN_FLIGHT).decrement(1.0);
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

fn route_of(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned())
}

/// A panic in a handler becomes a plain 500; its message is logged, never sent.
pub fn panic_to_problem(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    ApiError::internal().into_response()
}

/// Answers for routes that do not exist.
pub async fn fallback() -> ApiError {
    ApiError::not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_that_could_inject_are_replaced() {
        assert!(is_acceptable_request_id("abc-123_x.y:z"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("a b"));
        assert!(!is_acceptable_request_id("a\nb"));
        assert!(!is_acceptable_request_id("<script>"));
        assert!(!is_acceptable_request_id(&"a".repeat(129)));
    }
}
