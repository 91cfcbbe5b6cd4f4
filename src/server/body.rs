//! Streamed answer bodies.
//!
//! Owns: the one way a handler turns a stream of chunks into an HTTP body. Every streamed body
//! is *fused*: once it has ended, polling it again answers "ended" again instead of polling the
//! producer. tower-http's `CompressionLayer` (0.6 and 0.7, issue #732) polls the inner body
//! once more after its end; a body built straight from a non-fused stream (such as
//! `futures::stream::unfold`) then panics and the compressed answer arrives cut.
//!
//! Must never: build a streamed body any other way (`Body::from_stream` outside this module).

use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// A streamed body from `stream`, safe to poll after its end.
pub fn streamed<S, E>(stream: S) -> Body
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<axum::BoxError> + 'static,
{
    // INVARIANT: `fuse` answers `None` forever after the first `None`, so a layer that polls
    // again after the end never reaches the producer.
    Body::from_stream(stream.fuse())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::Router;
    use axum::http::{Request, header};
    use axum::routing::get;
    use tower::ServiceExt;
    use tower_http::compression::CompressionLayer;

    use super::*;

    const CHUNKS: usize = 64;
    const CHUNK: usize = 16 * 1024;

    /// Chunks from `unfold`, which panics when polled after its end.
    fn unfused_chunks() -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::unfold(0usize, |i| async move {
            (i < CHUNKS).then(|| {
                let line = format!("{i:08} la passerelle never cuts its answers\n");
                let chunk: String = line.chars().cycle().take(CHUNK).collect();
                (Ok(Bytes::from(chunk)), i + 1)
            })
        })
    }

    async fn compressed_answer(encoding: &str) -> (String, Vec<u8>) {
        let app = Router::new()
            .route("/", get(|| async { streamed(unfused_chunks()) }))
            .layer(CompressionLayer::new().gzip(true).zstd(true));
        let response = app
            .oneshot(
                Request::get("/")
                    .header(header::ACCEPT_ENCODING, encoding)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let coding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        (coding, bytes.expect("the body ends cleanly").to_vec())
    }

    /// Regression (tower-http #732): a compressed streamed answer arrives whole. Before the
    /// fuse, the layer's extra poll made `unfold` panic and the body ended in an error.
    #[tokio::test]
    async fn a_compressed_streamed_body_arrives_whole() {
        let whole = CHUNKS * CHUNK;
        let (coding, gz) = compressed_answer("gzip").await;
        assert_eq!(coding, "gzip");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut plain)
            .expect("the gzip stream is complete");
        assert_eq!(plain.len(), whole);

        let (coding, zst) = compressed_answer("zstd").await;
        assert_eq!(coding, "zstd");
        let plain = zstd::decode_all(zst.as_slice()).expect("the zstd stream is complete");
        assert_eq!(plain.len(), whole);
    }
}
