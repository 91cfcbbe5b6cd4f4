//! Content negotiation: the answer format an `Accept` header asks for, and its media type.
//!
//! Owns: the `Accept` header (q-values, wildcards, aliases). Must never: reach the engine with a
//! header (the gateway and the encoders take a format value).

use axum::http::StatusCode;

use super::error::ApiError;
use crate::gateway::Format;

/// The media type of an answer in `format`.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::NdJson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8; header=present",
        Format::ArrowIpc => "application/vnd.apache.arrow.stream",
        Format::Parquet => "application/vnd.apache.parquet",
    }
}

fn from_media_type(media: &str) -> Option<Format> {
    match media {
        "application/json" | "*/*" | "application/*" => Some(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/jsonlines" => Some(Format::NdJson),
        "text/csv" | "text/*" => Some(Format::Csv),
        "application/vnd.apache.arrow.stream" => Some(Format::ArrowIpc),
        "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
        _ => None,
    }
}

/// The format an `Accept` header asks for: the supported media range with the highest `q`
/// (first listed wins a tie); JSON when there is no header; `None` when nothing listed is
/// supported (406).
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Some(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        if q <= 0.0 {
            continue;
        }
        if let Some(format) = from_media_type(&media)
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
}

pub fn not_acceptable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "format_not_acceptable",
        "Format not acceptable",
        "answers come as application/json, application/x-ndjson, text/csv, \
         application/vnd.apache.arrow.stream or application/vnd.apache.parquet",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_best_supported_format() {
        assert_eq!(negotiate(None), Some(Format::Json));
        assert_eq!(negotiate(Some("text/csv")), Some(Format::Csv));
        assert_eq!(
            negotiate(Some("text/csv;q=0.5, application/vnd.apache.arrow.stream")),
            Some(Format::ArrowIpc)
        );
        assert_eq!(negotiate(Some("image/png")), None);
        assert_eq!(negotiate(Some("*/*")), Some(Format::Json));
        assert_eq!(negotiate(Some("application/json;q=0")), None);
    }
}
