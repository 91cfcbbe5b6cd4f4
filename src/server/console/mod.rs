//! The operators' console in the browser (`/console`): signed in by OpenID Connect
//! authorization code with PKCE, server-rendered pages without any script, a form token on
//! every form. Parse, call the gateway's use cases (which check the operator right on every
//! request and write each request's audit record), render.
//!
//! Must never: decide who may do what (the gateway does, from the session's access token,
//! validated again on every request), keep a token anywhere but the server-side session, or
//! redirect anywhere but a console path after a sign-in.

mod journal;
mod overview;
mod pages;
mod policy;
pub mod session;
mod sign_in;

use std::collections::HashMap;
use std::sync::Arc;

use ::secrecy::ExposeSecret;
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;
use crate::gateway::sessions::Sessions;
use crate::gateway::{Authorization, Caller, ErrorKind, GatewayError, RequestRecord};
use pages::{Frame, Message, page};
use session::{Area, SESSION_COOKIE};

/// The policy files, in the order the editor shows them.
const POLICY_FILES: [&str; 5] = [
    "policy.csv",
    "habilitations.toml",
    "datasets.toml",
    "tables.toml",
    "model.conf",
];

/// The console of one gateway (its sign-in and its sessions are the gateway's).
pub struct Console {
    sessions: Arc<Sessions>,
    config: crate::config::ConsoleConfig,
}

impl Console {
    /// The console `[console]` describes, or `None` without that section.
    pub fn of(gateway: &crate::gateway::Gateway) -> Option<Arc<Self>> {
        Some(Arc::new(Self {
            sessions: gateway.sessions()?,
            config: gateway.config().console.clone()?,
        }))
    }

    /// Runs `work` on the sessions off the async workers (the store may be a shared folder,
    /// on a network file system); `None` if it could not run.
    async fn sessions<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Sessions) -> T + Send + 'static,
    ) -> Option<T> {
        let sessions = self.sessions.clone();
        tokio::task::spawn_blocking(move || work(&sessions))
            .await
            .ok()
    }

    /// The redirect URI of a sign-in to `area`.
    fn redirect_uri(&self, area: Area) -> String {
        self.config.redirect_uri(area.path())
    }
}

/// The console's routes (merged into the main router when `[console]` is set).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/console", get(policy::home))
        .route("/console/connexion", get(sign_in::start_sign_in))
        .route("/console/callback", get(sign_in::callback))
        .route("/console/deconnexion", post(sign_in::sign_out))
        .route(
            "/console/versions",
            get(policy::versions).post(policy::submit),
        )
        .route("/console/versions/nouvelle", get(policy::edit))
        .route("/console/versions/{number}", get(policy::preview))
        .route(
            "/console/versions/{number}/vigueur",
            post(policy::put_in_force),
        )
        .route(
            "/console/versions/{number}/approbation",
            post(policy::approve),
        )
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/habilitations", get(overview::habilitations))
        .route("/console/audit", get(overview::audit))
        .route("/console/tableaux", get(overview::tables))
        .route(
            "/console/qui-voit-quoi",
            get(overview::explain_form).post(overview::explain),
        )
        .route("/moi", get(journal::journal))
        .route("/moi/connexion", get(sign_in::start_journal_sign_in))
        .route("/moi/callback", get(sign_in::journal_callback))
        .route("/moi/deconnexion", post(sign_in::journal_sign_out))
}

/// The console, or `None` (then [`no_console`] answers).
fn console_of(state: &AppState) -> Option<Arc<Console>> {
    state.console.clone()
}

fn no_console() -> Response {
    pages::with_headers((StatusCode::NOT_FOUND, "").into_response())
}

/// A path of `area` to come back to after a sign-in, or the area's home (never another site).
fn return_path(area: Area, wanted: Option<&str>) -> String {
    let home = format!("/{}", area.path());
    match wanted {
        // SECURITY: a path of the area only: no scheme, no host, no `//`, no `\`, no `..`.
        Some(p)
            if (p == home || p.starts_with(&format!("{home}/")))
                && !p.contains("//")
                && !p.contains("..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_')) =>
        {
            p.to_string()
        }
        _ => home,
    }
}

/// A signed-in operator's request: its session's caller (the token validated again now) and
/// form token.
pub struct Operator(SessionCaller);

impl std::ops::Deref for Operator {
    type Target = SessionCaller;
    fn deref(&self) -> &SessionCaller {
        &self.0
    }
}

impl Operator {
    fn frame(&self, state: &AppState, section: &'static str) -> Frame {
        Frame {
            who: Some(state.gateway.signed_in(&self.caller)),
            csrf: self.csrf.clone(),
            section,
        }
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        session_caller(parts, state, Area::Console)
            .await
            .map(Operator)
            .map_err(|r| *r)
    }
}

/// A signed-in citizen's request: its session's caller, and the NIR the issuer asserted at
/// sign-in.
pub struct Citizen {
    session: SessionCaller,
    nir: ::secrecy::SecretString,
}

impl std::ops::Deref for Citizen {
    type Target = SessionCaller;
    fn deref(&self) -> &SessionCaller {
        &self.session
    }
}

impl FromRequestParts<AppState> for Citizen {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let mut session = session_caller(parts, state, Area::Journal)
            .await
            .map_err(|r| *r)?;
        let Some(nir) = session.nir.take() else {
            return Err(refused_page(&GatewayError::internal()));
        };
        Ok(Citizen { session, nir })
    }
}

/// A form sent by a signed-in operator or citizen (`T`), its fields by name.
///
/// SECURITY: the only way a handler receives a form: the session's form token is checked here
/// (constant time), and a form the browser says comes from another site is refused.
pub struct SignedForm<T> {
    pub who: T,
    pub fields: HashMap<String, String>,
}

impl<T> FromRequest<AppState> for SignedForm<T>
where
    T: FromRequestParts<AppState, Rejection = Response>
        + std::ops::Deref<Target = SessionCaller>
        + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let who = T::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let Form(fields) =
            Form::<HashMap<String, String>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        if let Some(refused) = refused_form(&headers, &who.csrf, fields.get("csrf")) {
            return Err(refused);
        }
        Ok(Self { who, fields })
    }
}

/// What a live session of `area` gives a request.
pub struct SessionCaller {
    caller: Caller,
    csrf: String,
    nir: Option<::secrecy::SecretString>,
    console: Arc<Console>,
}

/// The caller of the request's session in `area`, its access token validated again now; or
/// the answer: a page without a session asks for a sign-in (and comes back), a form is refused.
async fn session_caller(
    parts: &Parts,
    state: &AppState,
    area: Area,
) -> Result<SessionCaller, Box<Response>> {
    let Some(console) = console_of(state) else {
        return Err(Box::new(no_console()));
    };
    let sign_in = format!("/{}/connexion", area.path());
    let id = parts
        .headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, SESSION_COOKIE))
        .map(str::to_owned);
    let found = match id.clone() {
        Some(id) => console
            .sessions(move |sessions| {
                sessions.touch(&id, area, |s| {
                    (
                        format!("Bearer {}", s.access_token.expose_secret()),
                        s.csrf.clone(),
                        s.nir.clone(),
                    )
                })
            })
            .await
            .flatten(),
        None => None,
    };
    let Some((bearer, csrf, nir)) = found else {
        if parts.method == axum::http::Method::GET {
            let back = return_path(area, Some(parts.uri.path()));
            return Err(Box::new(pages::with_headers(
                Redirect::to(&format!("{sign_in}?retour={back}")).into_response(),
            )));
        }
        return Err(Box::new(page(
            StatusCode::FORBIDDEN,
            &Message::new(
                Frame::anonymous(),
                "Session expirée",
                "Votre session a pris fin. Reconnectez-vous puis recommencez.",
                "error",
            )
            .link(&sign_in, "Se connecter"),
        )));
    };
    let Some(record) = parts.extensions.get::<RequestRecord>().cloned() else {
        tracing::error!("a console route has no audit record: refused");
        return Err(Box::new(refused_page(&GatewayError::internal())));
    };
    let source = super::source::client_address(parts, &state.proxies);
    // SECURITY: the session's access token is validated again on every request (expiry, keys,
    // issuer), and each use case checks its right again.
    match state
        .gateway
        .authenticate(&record, Authorization::Value(&bearer), None, source)
        .await
    {
        Ok(caller) => Ok(SessionCaller {
            caller,
            csrf,
            nir,
            console,
        }),
        Err(_) => {
            if let Some(id) = id
                && console.sessions(move |s| s.close(&id, area)).await != Some(true)
            {
                tracing::error!("a session whose token is no longer valid could not be removed");
            }
            Err(Box::new(with_cookie(
                page(
                    StatusCode::UNAUTHORIZED,
                    &Message::new(
                        Frame::anonymous(),
                        "Session expirée",
                        "Votre jeton d'accès n'est plus valide. Reconnectez-vous.",
                        "error",
                    )
                    .link(&sign_in, "Se connecter"),
                ),
                &session::session_cookie(""),
            )))
        }
    }
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A page for a use case's refusal (the gateway's words; they never carry paths or secrets).
fn refused_page(e: &GatewayError) -> Response {
    let status = match e.kind {
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ if e.is_the_hubs() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let (heading, text) = match e.code {
        "rate_limited" => (
            "Réessayez dans quelques secondes",
            format!(
                "Trop de demandes sont venues de votre adresse : réessayez dans {} s.",
                e.retry_after.unwrap_or(1)
            ),
        ),
        "busy" => ("Réessayez dans quelques secondes", e.detail.clone()),
        "not_operator" => (
            "Accès refusé",
            "La console est réservée aux opérateurs du hub. Votre compte n'a pas ce rôle."
                .to_string(),
        ),
        _ if e.is_the_hubs() => (
            "Service indisponible",
            "Le hub ne peut pas répondre pour l'instant (rien n'a été modifié). Réessayez."
                .to_string(),
        ),
        _ => ("Demande refusée", e.detail.clone()),
    };
    let mut response = page(
        status,
        &Message::new(Frame::anonymous(), heading, &text, "error"),
    );
    if let Some(seconds) = e.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// SECURITY: a form is accepted only with the session's form token, and never from another
/// site (`Sec-Fetch-Site`, when the browser sends it).
fn refused_form(headers: &HeaderMap, csrf: &str, sent: Option<&String>) -> Option<Response> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "same-origin" && v != "none");
    let token_ok = sent.is_some_and(|t| session::same_token(t, csrf));
    (cross_site || !token_ok).then(|| {
        page(
            StatusCode::FORBIDDEN,
            &Message::new(
                Frame::anonymous(),
                "Formulaire refusé",
                "Ce formulaire n'a pas été envoyé depuis votre session de la console (jeton de formulaire absent ou faux). Rechargez la page et recommencez.",
                "error",
            ),
        )
    })
}

/// `GET /console/static/console.css`: the console's only stylesheet.
async fn stylesheet() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../assets/console.css"),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
