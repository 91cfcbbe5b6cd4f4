//! The development issuer's sign-in for the console: an authorization endpoint whose page lists
//! the demo personas (choosing one signs in as it), and a token endpoint that trades the code
//! for an access token and an ID token (authorization code with PKCE, RFC 7636, S256 only).
//!
//! Must never: redirect anywhere but a loopback `https` redirect URI ending in
//! `/console/callback` or `/moi/callback` (the demo's console), give a code twice, or give a
//! token without the verifier that matches the code's challenge.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::issuer::{PERSONAS, SignerState, TOKEN_LIFETIME, persona};

/// How long a code may wait for the token endpoint.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// At most this many codes wait at once (a flood of sign-ins cannot grow the map).
const MAX_GRANTS: usize = 1_000;

/// What a code stands for until the token endpoint takes it.
struct Grant {
    persona: &'static str,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    issued: Instant,
}

/// The codes waiting for the token endpoint.
#[derive(Default)]
pub(super) struct Grants(Mutex<HashMap<String, Grant>>);

/// An authorization request, as the console sends it.
#[derive(Debug, Deserialize)]
pub(super) struct AuthorizationRequest {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: String,
    #[serde(default)]
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
}

/// The choice on the sign-in page: the request again, and the persona.
#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    #[serde(flatten)]
    request: AuthorizationRequest,
    persona: String,
}

/// A loopback `https` redirect URI of the console (any port, RFC 8252 § 7.3).
fn acceptable_redirect(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "https"
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        && matches!(url.path(), "/console/callback" | "/moi/callback")
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
}

/// Why an authorization request is refused, or `None`.
fn refusal(request: &AuthorizationRequest) -> Option<&'static str> {
    if !acceptable_redirect(&request.redirect_uri) {
        Some("redirect_uri is not a loopback console callback")
    } else if request.response_type != "code" {
        Some("response_type must be code")
    } else if request.code_challenge_method != "S256" || request.code_challenge.len() != 43 {
        Some("a PKCE S256 code_challenge is required")
    } else if !request.scope.split(' ').any(|s| s == "openid") {
        Some("scope must include openid")
    } else if request.state.is_empty() || request.state.len() > 512 || request.nonce.len() > 512 {
        Some("state is required")
    } else if request.client_id.is_empty() || request.client_id.len() > 128 {
        Some("client_id is required")
    } else {
        None
    }
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

/// One persona on the sign-in page.
struct Choice {
    id: &'static str,
    title: &'static str,
    name: String,
}

#[derive(Template)]
#[template(path = "issuer/login.html")]
struct LoginPage<'a> {
    request: &'a AuthorizationRequest,
    personas: Vec<Choice>,
}

/// `GET /authorize`: the sign-in page (a button per persona), or a plain refusal.
pub(super) async fn authorize_page(Query(request): Query<AuthorizationRequest>) -> Response {
    if let Some(why) = refusal(&request) {
        return bad_request(why);
    }
    let personas = PERSONAS
        .iter()
        .filter(|p| p.client_id.is_none())
        .map(|p| Choice {
            id: p.id,
            title: p.title,
            name: [p.given_name, p.usual_name]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    match (LoginPage {
        request: &request,
        personas,
    })
    .render()
    {
        Ok(html) => {
            let mut response = Html(html).into_response();
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https:; frame-ancestors 'none'",
                ),
            );
            response
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `POST /authorize`: signs in as the chosen persona and sends the browser back with a code.
pub(super) async fn authorize(State(signer): SignerState, Form(choice): Form<SignIn>) -> Response {
    let request = choice.request;
    if let Some(why) = refusal(&request) {
        return bad_request(why);
    }
    let Some(persona) = persona(&choice.persona) else {
        return bad_request("unknown persona");
    };
    let code = {
        let mut bytes = [0u8; 32];
        if getrandom::fill(&mut bytes).is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        URL_SAFE_NO_PAD.encode(bytes)
    };
    {
        let Ok(mut grants) = signer.grants.0.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        grants.retain(|_, g| g.issued.elapsed() < CODE_LIFETIME);
        if grants.len() >= MAX_GRANTS {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sign-ins at once\n",
            )
                .into_response();
        }
        grants.insert(
            code.clone(),
            Grant {
                persona: persona.id,
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.code_challenge.clone(),
                nonce: request.nonce.clone(),
                issued: Instant::now(),
            },
        );
    }
    let mut back = match url::Url::parse(&request.redirect_uri) {
        Ok(url) => url,
        Err(_) => return bad_request("redirect_uri"),
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &request.state)
        .append_pair("iss", &signer.issuer);
    Redirect::to(back.as_str()).into_response()
}

/// A token request (authorization code grant, public client).
#[derive(Debug, Deserialize)]
pub(super) struct TokenRequest {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
    #[serde(default)]
    client_id: String,
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// `POST /oauth/token`: a code (once, within a minute, with its PKCE verifier) for an access
/// token and an ID token.
pub(super) async fn token(
    State(signer): SignerState,
    Form(request): Form<TokenRequest>,
) -> Response {
    if request.grant_type != "authorization_code" {
        return token_error("unsupported_grant_type");
    }
    // SECURITY: a code is taken out of the map before it is checked: never used twice.
    let grant = match signer.grants.0.lock() {
        Ok(mut grants) => grants.remove(&request.code),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let Some(grant) = grant else {
        return token_error("invalid_grant");
    };
    let challenge = {
        use sha2::Digest;
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(request.code_verifier.as_bytes()))
    };
    if grant.issued.elapsed() >= CODE_LIFETIME
        || grant.redirect_uri != request.redirect_uri
        || (!request.client_id.is_empty() && grant.client_id != request.client_id)
        || challenge != grant.challenge
    {
        return token_error("invalid_grant");
    }
    let Some(persona) = persona(grant.persona) else {
        return token_error("invalid_grant");
    };
    let (Ok(access_token), Ok(id_token)) = (
        signer.sign(persona),
        signer.sign_id_token(persona, &grant.client_id, &grant.nonce),
    ) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Json(json!({
        "access_token": access_token,
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "scope": "openid",
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::acceptable_redirect;

    #[test]
    fn only_loopback_console_callbacks_are_redirect_uris() {
        assert!(acceptable_redirect(
            "https://127.0.0.1:8443/console/callback"
        ));
        assert!(acceptable_redirect("https://localhost:1/moi/callback"));
        for uri in [
            "http://127.0.0.1:8443/console/callback",
            "https://evil.example/console/callback",
            "https://127.0.0.1.evil.example/console/callback",
            "https://127.0.0.1:8443/console/callback?next=//evil",
            "https://user@127.0.0.1:8443/console/callback",
            "https://127.0.0.1:8443/other",
            "javascript:alert(1)",
        ] {
            assert!(!acceptable_redirect(uri), "{uri}");
        }
    }
}
