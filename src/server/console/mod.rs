//! The operators' console in the browser (`/console`): signed in by OpenID Connect
//! authorization code with PKCE, server-rendered pages without any script, a form token on
//! every form. Parse, call the gateway's use cases (which check the operator right on every
//! request and write each request's audit record), render.
//!
//! Must never: decide who may do what (the gateway does, from the session's access token,
//! validated again on every request), keep a token anywhere but the server-side session, or
//! redirect anywhere but a console path after a sign-in.

mod pages;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::secrecy::ExposeSecret;
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use crate::config::Config;
use crate::gateway::CitizenJournal;
use crate::gateway::{
    Authorization, Caller, ErrorKind, GatewayError, PolicySubmission, PolicyTexts, RequestRecord,
};
use pages::{
    Applied, DeltaRow, Edit, EditedFile, Frame, Home, Message, Preview, SignedInPage, VersionRow,
    Versions, page, when,
};
use session::{Area, SESSION_COOKIE, SIGN_IN_COOKIE, Sessions};

/// The policy files, in the order the editor shows them.
const POLICY_FILES: [&str; 5] = [
    "policy.csv",
    "habilitations.toml",
    "datasets.toml",
    "tables.toml",
    "model.conf",
];

/// The console of one gateway: its sessions (the sign-in itself is the gateway's).
pub struct Console {
    sessions: Sessions,
    config: crate::config::ConsoleConfig,
}

impl Console {
    /// The console `[console]` describes, or `None` without that section.
    pub fn from_config(config: &Config) -> Option<Arc<Self>> {
        let console = config.console.as_ref()?;
        Some(Arc::new(Self {
            sessions: Sessions::new(
                Duration::from_secs(console.idle_timeout_secs),
                Duration::from_secs(console.absolute_timeout_secs),
            ),
            config: console.clone(),
        }))
    }

    /// The redirect URI of a sign-in to `area`.
    fn redirect_uri(&self, area: Area) -> String {
        self.config.redirect_uri(area.path())
    }

    /// Sessions alive now.
    pub fn live_sessions(&self) -> usize {
        self.sessions.live()
    }
}

/// The console's routes (merged into the main router when `[console]` is set).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/console", get(home))
        .route("/console/connexion", get(start_sign_in))
        .route("/console/callback", get(callback))
        .route("/console/deconnexion", post(sign_out))
        .route("/console/versions", get(versions).post(submit))
        .route("/console/versions/nouvelle", get(edit))
        .route("/console/versions/{number}", get(preview))
        .route("/console/versions/{number}/vigueur", post(put_in_force))
        .route("/console/versions/{number}/approbation", post(approve))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/habilitations", get(habilitations))
        .route("/console/audit", get(audit))
        .route("/console/tableaux", get(tables))
        .route("/console/qui-voit-quoi", get(explain_form).post(explain))
        .route("/moi", get(journal))
        .route("/moi/connexion", get(start_journal_sign_in))
        .route("/moi/callback", get(journal_callback))
        .route("/moi/deconnexion", post(journal_sign_out))
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

/// A signed-in operator's request: the caller (its token validated again now) and the
/// session's form token.
pub struct Operator {
    caller: Caller,
    csrf: String,
    console: Arc<Console>,
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
        let signed = session_caller(parts, state, Area::Console)
            .await
            .map_err(|r| *r)?;
        Ok(Operator {
            caller: signed.caller,
            csrf: signed.csrf,
            console: signed.console,
        })
    }
}

/// A signed-in citizen's request: the caller (its token validated again now), the NIR the
/// issuer asserted at sign-in, and the session's form token.
pub struct Citizen {
    caller: Caller,
    csrf: String,
    nir: ::secrecy::SecretString,
    console: Arc<Console>,
}

impl FromRequestParts<AppState> for Citizen {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let signed = session_caller(parts, state, Area::Journal)
            .await
            .map_err(|r| *r)?;
        let Some(nir) = signed.nir else {
            return Err(refused_page(&GatewayError::internal()));
        };
        Ok(Citizen {
            caller: signed.caller,
            csrf: signed.csrf,
            nir,
            console: signed.console,
        })
    }
}

/// What a live session of `area` gives a request.
struct SessionCaller {
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
    let found = id.as_deref().and_then(|id| {
        console.sessions.touch(id, area, |s| {
            (
                format!("Bearer {}", s.access_token.expose_secret()),
                s.csrf.clone(),
                s.nir.clone(),
            )
        })
    });
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
            if let Some(id) = id {
                console.sessions.close(&id);
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
        _ if e.is_the_hubs() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let (heading, text) = match e.code {
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
    page(
        status,
        &Message::new(Frame::anonymous(), heading, &text, "error"),
    )
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

#[derive(Debug, Deserialize)]
struct SignInQuery {
    retour: Option<String>,
}

/// `GET /console/connexion`: to the issuer's sign-in page.
async fn start_sign_in(state: State<AppState>, q: Query<SignInQuery>) -> Response {
    sign_in_of(state, q, Area::Console).await
}

/// `GET /moi/connexion`: the same, for a citizen's journal.
async fn start_journal_sign_in(state: State<AppState>, q: Query<SignInQuery>) -> Response {
    sign_in_of(state, q, Area::Journal).await
}

async fn sign_in_of(
    State(state): State<AppState>,
    Query(q): Query<SignInQuery>,
    area: Area,
) -> Response {
    let Some(console) = console_of(&state) else {
        return no_console();
    };
    let started = match state
        .gateway
        .console_sign_in_start(&console.redirect_uri(area))
        .await
    {
        Ok(s) => s,
        Err(e) => return refused_page(&e),
    };
    let Some(browser) = session::random_token() else {
        return refused_page(&GatewayError::internal());
    };
    console.sessions.wait_for(
        &started.state,
        area,
        started.pending,
        return_path(area, q.retour.as_deref()),
        browser.clone(),
    );
    with_cookie(
        pages::with_headers(Redirect::to(&started.authorization_url).into_response()),
        &session::sign_in_cookie(&browser),
    )
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/callback`: the issuer's answer; a session for an operator.
async fn callback(
    state: State<AppState>,
    q: Query<CallbackQuery>,
    request: axum::extract::Request,
) -> Response {
    callback_of(state, q, request, Area::Console).await
}

/// `GET /moi/callback`: the issuer's answer; a journal session for a citizen.
async fn journal_callback(
    state: State<AppState>,
    q: Query<CallbackQuery>,
    request: axum::extract::Request,
) -> Response {
    callback_of(state, q, request, Area::Journal).await
}

async fn callback_of(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    request: axum::extract::Request,
    area: Area,
) -> Response {
    let (parts, _) = request.into_parts();
    let headers = &parts.headers;
    let Some(console) = console_of(&state) else {
        return no_console();
    };
    let again = format!("/{}/connexion", area.path());
    let failed = |text: &str| {
        with_cookie(
            page(
                StatusCode::BAD_REQUEST,
                &Message::new(Frame::anonymous(), "Connexion impossible", text, "error")
                    .link(&again, "Recommencer la connexion"),
            ),
            &session::sign_in_cookie(""),
        )
    };
    if q.error.is_some() {
        return failed("Le fournisseur d'identité n'a pas ouvert de session.");
    }
    let (Some(code), Some(sent_state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return failed("La réponse du fournisseur d'identité est incomplète.");
    };
    let Some(pending) = console.sessions.take_pending(sent_state) else {
        return failed("Cette connexion a expiré ou a déjà servi.");
    };
    // SECURITY: the sign-in must come back to the browser that started it (login CSRF), for
    // the area it was started for.
    let browser = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, SIGN_IN_COOKIE));
    if pending.area != area || browser.is_none_or(|b| !session::same_token(b, &pending.browser)) {
        return failed("Cette connexion n'a pas été commencée dans ce navigateur.");
    }
    let Some(record) = parts.extensions.get::<RequestRecord>().cloned() else {
        return refused_page(&GatewayError::internal());
    };
    let source = super::source::client_address(&parts, &state.proxies);
    let opened = match area {
        Area::Console => state
            .gateway
            .console_sign_in_finish(&record, pending.sign_in, code, source)
            .await
            .map(|s| {
                let expiry = s.caller.principal().expires_at;
                console
                    .sessions
                    .open(area, s.access_token, s.acr, None, expiry)
            }),
        Area::Journal => state
            .gateway
            .citizen_sign_in_finish(&record, pending.sign_in, code, source)
            .await
            .map(|s| {
                let expiry = s.caller.principal().expires_at;
                console
                    .sessions
                    .open(area, s.access_token, None, Some(s.nir), expiry)
            }),
    };
    let id = match opened {
        Ok(Some(id)) => id,
        Ok(None) => return refused_page(&GatewayError::internal()),
        Err(e) if e.kind == ErrorKind::Forbidden || e.is_the_hubs() => {
            return with_cookie(refused_page(&e), &session::sign_in_cookie(""));
        }
        Err(_) => return failed("Le fournisseur d'identité n'a pas confirmé la connexion."),
    };
    // A page that moves on by itself: the Strict session cookie is sent with that same-site
    // navigation (it would not be with a redirect answering the issuer's cross-site one).
    let response = page(
        StatusCode::OK,
        &SignedInPage {
            to: pending.return_to,
        },
    );
    let response = with_cookie(response, &session::sign_in_cookie(""));
    with_cookie(response, &session::session_cookie(&id))
}

/// `POST /console/deconnexion`.
async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_form(&headers, &operator.csrf, form.get("csrf")) {
        return refused;
    }
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, SESSION_COOKIE))
    {
        operator.console.sessions.close(id);
    }
    let _ = state.gateway.console_sign_out(&operator.caller).await;
    with_cookie(
        page(
            StatusCode::OK,
            &Message::new(
                Frame::anonymous(),
                "Vous êtes déconnecté",
                "Votre session de la console est fermée.",
                "success",
            )
            .link("/console/connexion", "Se reconnecter"),
        ),
        &session::session_cookie(""),
    )
}

/// `GET /console`: the policy set in force.
async fn home(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.policy_in_force(&operator.caller).await {
        Ok(policy) => {
            let files = named_files(&policy.files);
            let frame = operator.frame(&state, "policy");
            page(
                StatusCode::OK,
                &Home {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    loaded_at: when(&policy.loaded_at),
                    files,
                    policy,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// The files of a set by name, in the editor's order (`tables.toml` even when empty).
fn named_files(texts: &PolicyTexts) -> Vec<(String, String)> {
    POLICY_FILES
        .iter()
        .map(|name| {
            let text = match *name {
                "policy.csv" => &texts.rules,
                "habilitations.toml" => &texts.habilitations,
                "datasets.toml" => &texts.datasets,
                "tables.toml" => &texts.tables,
                _ => &texts.model,
            };
            ((*name).to_string(), text.clone())
        })
        .collect()
}

/// `GET /console/versions`: the history.
async fn versions(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.versions(&operator.caller).await {
        Ok(view) => {
            let frame = operator.frame(&state, "versions");
            let mut rows: Vec<VersionRow> = view
                .versions
                .iter()
                .map(|v| VersionRow {
                    number: v.number,
                    version: v.version.clone(),
                    author: v.author.clone(),
                    comment: v.comment.clone(),
                    submitted: when(&v.submitted_at),
                    applied: v
                        .applied
                        .iter()
                        .map(|(t, who)| format!("{} par {who}", when(t)))
                        .collect(),
                })
                .collect();
            rows.reverse();
            page(
                StatusCode::OK,
                &Versions {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    in_force: view.in_force,
                    versions: rows,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

fn editor(
    frame: Frame,
    comment: String,
    files: Vec<(String, String)>,
    detail: Option<&str>,
) -> Edit {
    let (placed, general) = detail
        .map(|d| pages::problems_by_file(d, &POLICY_FILES))
        .unwrap_or_default();
    let problem_count = placed.len() + general.len();
    let mut placed = placed;
    let files = files
        .into_iter()
        .map(|(name, text)| {
            let mut problems = Vec::new();
            placed.retain_mut(|(file, problem)| {
                if *file == name {
                    let excerpt = problem
                        .line
                        .and_then(|n| text.lines().nth(n.saturating_sub(1)))
                        .unwrap_or("")
                        .to_string();
                    problems.push(pages::FileProblem {
                        line: problem.line,
                        message: std::mem::take(&mut problem.message),
                        excerpt,
                    });
                    false
                } else {
                    true
                }
            });
            EditedFile {
                anchor: name.replace('.', "-"),
                name,
                text,
                problems,
            }
        })
        .collect();
    Edit {
        who: frame.who,
        csrf: frame.csrf,
        section: frame.section,
        comment,
        files,
        general,
        problem_count,
    }
}

/// `GET /console/versions/nouvelle`: the editor, filled with the set in force.
async fn edit(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.policy_in_force(&operator.caller).await {
        Ok(policy) => {
            let frame = operator.frame(&state, "new");
            page(
                StatusCode::OK,
                &editor(frame, String::new(), named_files(&policy.files), None),
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `POST /console/versions`: validate and store; the dry run, or the editor with its
/// problems at their lines.
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Form(mut form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_form(&headers, &operator.csrf, form.get("csrf")) {
        return refused;
    }
    let comment = form.remove("comment").unwrap_or_default();
    // Browsers send text areas with CRLF line ends: the policy files keep LF.
    let files: Vec<(String, String)> = POLICY_FILES
        .iter()
        .map(|name| {
            let text = form.remove(*name).unwrap_or_default().replace("\r\n", "\n");
            ((*name).to_string(), text)
        })
        .collect();
    let submission = PolicySubmission {
        files: files
            .iter()
            .filter(|(name, text)| name != "tables.toml" || !text.trim().is_empty())
            .cloned()
            .collect(),
        comment: comment.clone(),
    };
    match state.gateway.submit(&operator.caller, submission).await {
        Ok(stored) => {
            let frame = operator.frame(&state, "new");
            page(
                StatusCode::CREATED,
                &Preview {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    just_stored: true,
                    number: stored.version.number,
                    version: stored.version.version.clone(),
                    author: stored.version.author.clone(),
                    comment: stored.version.comment.clone(),
                    in_force: stored.in_force.clone(),
                    warnings: stored.warnings.clone(),
                    delta: stored.diff.iter().map(DeltaRow::from).collect(),
                    approvals_needed: state.gateway.config().policy.approvals,
                    approvals: Vec::new(),
                    applied_before: false,
                    can_approve: false,
                },
            )
        }
        Err(e) if e.code == "policy_invalid" => {
            let frame = operator.frame(&state, "new");
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &editor(frame, comment, files, Some(&e.detail)),
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `GET /console/versions/{number}`: a stored version's dry run, with the form that puts it
/// in force.
async fn preview(
    State(state): State<AppState>,
    operator: Operator,
    Path(number): Path<u64>,
) -> Response {
    match state
        .gateway
        .preview_version(&operator.caller, number)
        .await
    {
        Ok(p) => {
            let frame = operator.frame(&state, "versions");
            let me = frame
                .who
                .as_ref()
                .map(|w| w.name.clone())
                .unwrap_or_default();
            let can_approve =
                p.version.author != me && p.version.approvals.iter().all(|(_, a)| *a != me);
            page(
                StatusCode::OK,
                &Preview {
                    approvals_needed: state.gateway.config().policy.approvals,
                    approvals: p
                        .version
                        .approvals
                        .iter()
                        .map(|(t, who)| format!("{who}, le {}", when(t)))
                        .collect(),
                    applied_before: !p.version.applied.is_empty(),
                    can_approve,
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    just_stored: false,
                    number,
                    version: p.version.version.clone(),
                    author: p.version.author.clone(),
                    comment: p.version.comment.clone(),
                    in_force: p.in_force.clone(),
                    warnings: Vec::new(),
                    delta: p.diff.iter().map(DeltaRow::from).collect(),
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `POST /console/versions/{number}/vigueur`: puts a stored version in force (an apply or a
/// rollback), once confirmed.
async fn put_in_force(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Path(number): Path<u64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_form(&headers, &operator.csrf, form.get("csrf")) {
        return refused;
    }
    if form.get("confirmer").map(String::as_str) != Some("oui") {
        let frame = operator.frame(&state, "versions");
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Message::new(
                frame,
                "Confirmation manquante",
                "Cochez la case de confirmation pour mettre cette version en vigueur.",
                "error",
            )
            .link(
                &format!("/console/versions/{number}"),
                "Revenir à la version",
            ),
        );
    }
    match state.gateway.put_in_force(&operator.caller, number).await {
        Ok(view) => {
            let frame = operator.frame(&state, "versions");
            page(
                StatusCode::OK,
                &Applied {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    number: view.number,
                    in_force: view.in_force.clone(),
                    changed: view.changed,
                    delta: view.diff.iter().map(DeltaRow::from).collect(),
                },
            )
        }
        Err(e) => refused_page(&e),
    }
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

/// `GET /moi`: a citizen's own journal (the NIR the issuer asserted at sign-in, never another).
async fn journal(State(state): State<AppState>, citizen: Citizen) -> Response {
    match state
        .gateway
        .citizen_journal(&citizen.caller, &citizen.nir)
        .await
    {
        Ok(CitizenJournal { consultations }) => page(
            StatusCode::OK,
            &pages::JournalPage {
                csrf: citizen.csrf.clone(),
                rows: consultations
                    .into_iter()
                    .map(|(dataset, c)| pages::JournalRow::new(&dataset, c))
                    .collect(),
            },
        ),
        Err(e) => refused_page(&e),
    }
}

/// `POST /moi/deconnexion`.
async fn journal_sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    citizen: Citizen,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_form(&headers, &citizen.csrf, form.get("csrf")) {
        return refused;
    }
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, SESSION_COOKIE))
    {
        citizen.console.sessions.close(id);
    }
    let _ = state.gateway.console_sign_out(&citizen.caller).await;
    with_cookie(
        page(
            StatusCode::OK,
            &Message::new(
                Frame::anonymous(),
                "Vous êtes déconnecté",
                "Votre session du journal est fermée.",
                "success",
            )
            .link("/moi/connexion", "Se reconnecter"),
        ),
        &session::session_cookie(""),
    )
}

/// `GET /console/habilitations`: every habilitation with its validity.
async fn habilitations(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.habilitations_overview(&operator.caller).await {
        Ok(rows) => {
            let frame = operator.frame(&state, "habilitations");
            let count = |v: &str| rows.iter().filter(|h| h.validity == v).count();
            let (expiring, expired) = (count("expiring"), count("expired"));
            page(
                StatusCode::OK,
                &pages::Habilitations {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    rows: rows.into_iter().map(pages::HabilitationLine).collect(),
                    expiring,
                    expired,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `GET /console/tableaux`: the tables of the statistical secret and their hidden cells.
async fn tables(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.tables_overview(&operator.caller).await {
        Ok(rows) => {
            let frame = operator.frame(&state, "tables");
            page(
                StatusCode::OK,
                &pages::Tables {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    rows: rows.into_iter().map(pages::TableLine).collect(),
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `GET /console/qui-voit-quoi`: the form (checked as an operator's request: it is recorded).
async fn explain_form(State(state): State<AppState>, operator: Operator) -> Response {
    // The form alone reads nothing; the operator right is checked like every page's.
    if let Err(e) = state.gateway.metrics_access(&operator.caller).await {
        return refused_page(&e);
    }
    let frame = operator.frame(&state, "explain");
    page(
        StatusCode::OK,
        &pages::Explain {
            who: frame.who,
            csrf: frame.csrf,
            section: frame.section,
            form: pages::ExplainForm::default(),
            answer: None,
            problem: None,
        },
    )
}

/// `POST /console/qui-voit-quoi`: what a principal with these claims sees, and why.
async fn explain(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Form(mut form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_form(&headers, &operator.csrf, form.get("csrf")) {
        return refused;
    }
    let mut take = |name: &str| form.remove(name).unwrap_or_default().trim().to_string();
    let typed = pages::ExplainForm {
        issuer: take("issuer"),
        sub: take("sub"),
        siret: take("siret"),
        groups: take("groups"),
        roles: take("roles"),
        habilitation: take("habilitation"),
    };
    let list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut claims = serde_json::Map::new();
    for (name, value) in [
        ("issuer", &typed.issuer),
        ("sub", &typed.sub),
        ("siret", &typed.siret),
    ] {
        if !value.is_empty() {
            claims.insert(name.into(), serde_json::Value::String(value.clone()));
        }
    }
    claims.insert("groups".into(), list(&typed.groups).into());
    claims.insert("roles".into(), list(&typed.roles).into());
    let request = crate::gateway::ExplainRequest {
        claims: serde_json::Value::Object(claims),
        habilitation: (!typed.habilitation.is_empty()).then(|| typed.habilitation.clone()),
    };
    let (answer, problem, status) = match state.gateway.explain(&operator.caller, request).await {
        Ok(e) => (Some(e.text), None, StatusCode::OK),
        Err(e) if e.kind == ErrorKind::Forbidden => return refused_page(&e),
        Err(e) => (None, Some(e.detail), StatusCode::UNPROCESSABLE_ENTITY),
    };
    let frame = operator.frame(&state, "explain");
    page(
        status,
        &pages::Explain {
            who: frame.who,
            csrf: frame.csrf,
            section: frame.section,
            form: typed,
            answer,
            problem,
        },
    )
}

/// `GET /console/audit`: the trail searched by day, habilitation, dataset and outcome, with
/// its verification.
async fn audit(
    State(state): State<AppState>,
    operator: Operator,
    Query(mut query): Query<HashMap<String, String>>,
) -> Response {
    let mut take = |name: &str| query.remove(name).unwrap_or_default().trim().to_string();
    let form = pages::AuditForm {
        from: take("du"),
        to: take("au"),
        habilitation: take("habilitation"),
        dataset: take("jeu"),
        outcome: take("issue"),
    };
    let day = |text: &str| -> Result<Option<chrono::NaiveDate>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| format!("« {text} » n'est pas une date AAAA-MM-JJ"))
    };
    let (from, to) = match (day(&form.from), day(&form.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(p), _) | (_, Err(p)) => {
            let frame = operator.frame(&state, "audit");
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &pages::Audit {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    form,
                    rows: Vec::new(),
                    matched: 0,
                    verification: None,
                    problem: Some(p),
                },
            );
        }
    };
    let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let filter = crate::gateway::AuditFilter {
        from,
        to,
        habilitation: optional(&form.habilitation),
        dataset: optional(&form.dataset),
        outcome: optional(&form.outcome),
    };
    match state.gateway.audit_search(&operator.caller, filter).await {
        Ok(found) => {
            let frame = operator.frame(&state, "audit");
            page(
                StatusCode::OK,
                &pages::Audit {
                    who: frame.who,
                    csrf: frame.csrf,
                    section: frame.section,
                    form,
                    rows: found.rows,
                    matched: found.matched,
                    verification: Some(found.verification),
                    problem: None,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `POST /console/versions/{number}/approbation`: the viewer's approval of a version.
async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Path(number): Path<u64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_form(&headers, &operator.csrf, form.get("csrf")) {
        return refused;
    }
    match state.gateway.approve(&operator.caller, number).await {
        Ok(_) => {
            let frame = operator.frame(&state, "versions");
            page(
                StatusCode::OK,
                &Message::new(
                    frame,
                    &format!("Version {number} approuvée"),
                    "Votre approbation est enregistrée. Un autre opérateur peut maintenant la mettre en vigueur.",
                    "success",
                )
                .link(&format!("/console/versions/{number}"), "Revenir à la version"),
            )
        }
        Err(e) => refused_page(&e),
    }
}
