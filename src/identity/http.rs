//! The HTTP client identity uses to reach issuers: redirects off (an issuer that redirects its
//! discovery, JWKS or token endpoint elsewhere is refused), short timeouts, bounded bodies,
//! optional extra CA.

use std::time::Duration;

use crate::config::IdentityConfig;

use super::IdentityError;

/// Largest discovery document or JWKS read from an issuer.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

pub fn client(config: &IdentityConfig) -> Result<reqwest::Client, IdentityError> {
    let timeout = Duration::from_secs(config.http_timeout_secs);
    let mut builder = reqwest::Client::builder()
        // SECURITY: no redirects: discovery and JWKS come from the issuer's own URLs only.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .https_only(false) // http:// is allowed only for loopback issuers, checked in config
        .user_agent(concat!("passerelle/", env!("CARGO_PKG_VERSION")));
    if let Some(ca_file) = &config.ca_file {
        let pem =
            std::fs::read(ca_file).map_err(|e| IdentityError::CaFile(e.kind().to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|_| IdentityError::CaFile("not a PEM certificate bundle".into()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| IdentityError::HttpClient(e.to_string()))
}

/// Why a fetch from an issuer failed (logged; never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("unexpected status {0}")]
    Status(u16),
    #[error("answer larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// GETs `url` and returns its body, bounded in size; any non-200 status is an error.
pub async fn get_bounded(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Request(without_url(&e)))?;
    read_bounded(response).await
}

/// POSTs `form` to `url` with HTTP Basic client authentication (`basic`, already encoded) and
/// returns the body, bounded in size; any non-200 status is an error.
pub async fn post_form_bounded(
    client: &reqwest::Client,
    url: &str,
    basic: &str,
    form: &[(&str, &str)],
) -> Result<Vec<u8>, FetchError> {
    let response = client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
        .form(form)
        .send()
        .await
        .map_err(|e| FetchError::Request(without_url(&e)))?;
    read_bounded(response).await
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    if response.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Request(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "transport error"
    };
    kind.to_string()
}
