//! The published API: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the types they answer with, served at `GET /openapi.json` and kept in
//! `docs/openapi.json` (a test fails when the two differ; `passerelle openapi` prints it).
//!
//! Owns: what the document says beyond one handler: the bearer scheme and which operations
//! need it (all but [`PUBLIC`]), the RFC 9457 problem answers every operation may give, the
//! headers every answer carries. Must never: describe the hub's own data (datasets, issuers,
//! policy version, software version): the document is the same for every hub, so serving it
//! publicly tells nothing about this one.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, ToSchema};

/// Operations anyone may call, without a token (everything else needs the bearer scheme).
pub const PUBLIC: &[&str] = &["/health/live", "/health/ready", "/openapi.json"];

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

const PROBLEM_JSON: &str = "application/problem+json";

/// The document's fixed part; the operations come from the router (`super::routes`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "passerelle",
        version = "1",
        description = "The secure gateway of a sectoral data hub: SQL over protected datasets \
            with identifying columns pseudonymised, per-record lookups for administrations, and \
            the operators' policy and audit tools. Every operation but the health probes and \
            this document needs an access token of a trusted OpenID Connect issuer \
            (`Authorization: Bearer`, RFC 9068 `at+jwt` where the issuer requires it). \
            Every error is an RFC 9457 problem (`application/problem+json`) with a stable \
            `code` and the request id. See docs/api.md.",
        license(name = "EUPL-1.2"),
    ),
    tags(
        (name = "health", description = "Probes for load balancers, and the operators' details"),
        (name = "catalog", description = "Who the caller is and what it may see"),
        (name = "query", description = "SQL under a habilitation"),
        (name = "lookup", description = "Tell us once: one record by its key, for administrations"),
        (name = "admin", description = "Hub operators: policies, explanations, journals, audit"),
    ),
    components(schemas(Problem))
)]
struct Base;

/// An RFC 9457 problem, as every error answer carries it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `https://passerelle.docs/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong for this request and how to fix it (never internals or raw values).
    pub detail: String,
    /// Stable, machine-readable code (`invalid_token`, `habilitation_expired`, …).
    pub code: String,
    /// The server's id of the request (also in `X-Request-ID`): quote it to the operator.
    pub request_id: String,
}

/// The whole document: the router's operations, completed by [`Completion`].
pub fn document() -> OpenApi {
    let (_, operations) = super::routes().split_for_parts();
    let mut api = <Base as utoipa::OpenApi>::openapi();
    api.merge(operations);
    Completion.modify(&mut api);
    api
}

/// The document as served (pretty JSON, as in `docs/openapi.json`), built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_string());
        text.push('\n');
        text
    })
}

/// `GET /openapi.json`: the API document (public: it is the same for every hub).
#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    summary = "This document",
    responses((status = OK, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// What every operation shares: security, problems, the request id header.
struct Completion;

impl Modify for Completion {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            BEARER.to_string(),
            RefOr::T(SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token (JWT) of an issuer in `[[identity.issuers]]`: signature, \
                         issuer, audience, expiry and, where required, `typ: at+jwt` are checked. \
                         With `server.client_ca`, the TLS client certificate is also required \
                         and a token bound to one (RFC 8705) only works with it.",
                    ))
                    .build(),
            )),
        );
        for (path, item) in api.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            for operation in operations(item) {
                complete(operation, public);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// A response header holding a string.
fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
        ))
        .description(Some(description))
        .build()
}

fn request_id_header() -> utoipa::openapi::header::Header {
    string_header("The server's id of this request (also in problems and audit records)")
}

fn problem(description: &str, unauthorized: bool) -> utoipa::openapi::Response {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
        )
        .header("x-request-id", request_id_header());
    if unauthorized {
        response = response.header(
            "www-authenticate",
            string_header("`Bearer error=\"invalid_token\"`, whatever the cause"),
        );
    }
    response.build()
}

/// SECURITY: every operation but [`PUBLIC`] is documented as needing the bearer scheme (the
/// fuzzer's `ignored_auth` check calls each one without a token and expects 401).
fn complete(operation: &mut Operation, public: bool) {
    let responses = &mut operation.responses.responses;
    for answer in responses.values_mut() {
        if let RefOr::T(answer) = answer {
            answer
                .headers
                .entry("x-request-id".to_string())
                .or_insert_with(|| request_id_header().into());
        }
    }
    if !public {
        operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        responses.entry("401".to_string()).or_insert_with(|| {
            problem("No valid access token (one answer for every cause)", true).into()
        });
        responses.entry("403".to_string()).or_insert_with(|| {
            problem(
                "The caller's habilitations or role do not allow this",
                false,
            )
            .into()
        });
    }
    responses.entry("default".to_string()).or_insert_with(|| {
        problem(
            "A problem: bad request (400, 413, 415, 422), not found (404), conflict (409: the \
             policy changed meanwhile), rate limited \
             (429, `Retry-After`), busy or unavailable (503, `Retry-After`), timeout (504), \
             internal error (500)",
            false,
        )
        .into()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_but_the_public_ones_needs_a_token_and_every_one_documents_problems() {
        let api = document();
        assert!(api.paths.paths.len() >= 15, "{:?}", api.paths.paths.keys());
        for (path, item) in &api.paths.paths {
            let mut item = item.clone();
            for operation in operations(&mut item) {
                assert!(
                    operation.responses.responses.contains_key("default"),
                    "{path}"
                );
                assert_eq!(
                    operation.security.is_some(),
                    !PUBLIC.contains(&path.as_str()),
                    "{path}"
                );
            }
        }
    }
}
