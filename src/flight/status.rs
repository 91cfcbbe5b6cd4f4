//! A use case's refusal as a gRPC status: the same code and detail as the HTTP problem
//! (`code: detail`), the request id in `x-request-id` and, when the hub is busy or a rate is
//! spent, `retry-after` in seconds.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::gateway::{ErrorKind, GatewayError};

/// The status of `e` for the call `request_id`.
pub fn status(e: &GatewayError, request_id: &str) -> Status {
    let code = match e.kind {
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::BadRequest | ErrorKind::Unprocessable => Code::InvalidArgument,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::TooLarge => Code::OutOfRange,
        ErrorKind::RateLimited | ErrorKind::Busy => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Internal => Code::Internal,
    };
    let mut status = Status::new(code, format!("{}: {}", e.code, e.detail));
    if let Ok(id) = MetadataValue::try_from(request_id) {
        status.metadata_mut().insert("x-request-id", id);
    }
    if let Some(secs) = e.retry_after
        && let Ok(v) = MetadataValue::try_from(secs.to_string())
    {
        status.metadata_mut().insert("retry-after", v);
    }
    status
}

/// A call that writes, or a feature the hub does not offer, refused before authentication
/// matters.
pub fn refused_kind(what: &str) -> Status {
    Status::unimplemented(format!(
        "read_only: {what} is not offered: the hub is read-only and answers SQL queries only"
    ))
}
