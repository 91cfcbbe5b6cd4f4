//! Signing in and out of the console and the journal: to the issuer with a pending sign-in
//! bound to the browser, back from it into a server-side session, and out again.
//!
//! Must never: open a session the gateway did not grant, or send the browser after sign-in
//! anywhere but a path of the area it signed in to.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{self, Frame, Message, SignedInPage, page};
use super::session::{self, Area, SESSION_COOKIE, SIGN_IN_COOKIE};
use super::{
    Citizen, Operator, SessionCaller, SignedForm, console_of, no_console, refused_page,
    return_path, with_cookie,
};
use crate::gateway::{ErrorKind, GatewayError, RequestRecord};
use crate::server::AppState;

#[derive(Debug, Deserialize)]
pub(super) struct SignInQuery {
    retour: Option<String>,
}

/// `GET /console/connexion`: to the issuer's sign-in page.
pub(super) async fn start_sign_in(
    state: State<AppState>,
    q: Query<SignInQuery>,
    request: axum::extract::Request,
) -> Response {
    sign_in_of(state, q, request, Area::Console).await
}

/// `GET /moi/connexion`: the same, for a citizen's journal.
pub(super) async fn start_journal_sign_in(
    state: State<AppState>,
    q: Query<SignInQuery>,
    request: axum::extract::Request,
) -> Response {
    sign_in_of(state, q, request, Area::Journal).await
}

async fn sign_in_of(
    State(state): State<AppState>,
    Query(q): Query<SignInQuery>,
    request: axum::extract::Request,
    area: Area,
) -> Response {
    let Some(console) = console_of(&state) else {
        return no_console();
    };
    let (parts, _) = request.into_parts();
    let Some(record) = parts.extensions.get::<RequestRecord>().cloned() else {
        return refused_page(&GatewayError::internal());
    };
    let source = crate::server::source::client_address(&parts, &state.proxies);
    let started = match state
        .gateway
        .console_sign_in_start(&record, &console.redirect_uri(area), source)
        .await
    {
        Ok(s) => s,
        Err(e) => return refused_page(&e),
    };
    let Some(browser) = session::random_token() else {
        return refused_page(&GatewayError::internal());
    };
    let (state_key, pending, back, kept_browser) = (
        started.state,
        started.pending,
        return_path(area, q.retour.as_deref()),
        browser.clone(),
    );
    let kept = console
        .sessions(move |s| s.wait_for(&state_key, area, pending, back, kept_browser))
        .await;
    if kept != Some(true) {
        return refused_page(&GatewayError::internal());
    }
    with_cookie(
        pages::with_headers(Redirect::to(&started.authorization_url).into_response()),
        &session::sign_in_cookie(&browser),
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/callback`: the issuer's answer; a session for an operator.
pub(super) async fn callback(
    state: State<AppState>,
    q: Query<CallbackQuery>,
    request: axum::extract::Request,
) -> Response {
    callback_of(state, q, request, Area::Console).await
}

/// `GET /moi/callback`: the issuer's answer; a journal session for a citizen.
pub(super) async fn journal_callback(
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
    let sent_state = sent_state.to_string();
    let taken = console
        .sessions(move |s| s.take_pending(&sent_state))
        .await
        .flatten();
    let Some(pending) = taken else {
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
    let source = crate::server::source::client_address(&parts, &state.proxies);
    let signed_in = match area {
        Area::Console => state
            .gateway
            .console_sign_in_finish(&record, pending.sign_in, code, source)
            .await
            .map(|s| {
                let expiry = s.caller.principal().expires_at;
                (s.caller.person(), s.access_token, s.acr, None, expiry)
            }),
        Area::Journal => state
            .gateway
            .citizen_sign_in_finish(&record, pending.sign_in, code, source)
            .await
            .map(|s| {
                let expiry = s.caller.principal().expires_at;
                (s.caller.person(), s.access_token, None, Some(s.nir), expiry)
            }),
    };
    let opened = match signed_in {
        Ok((person, token, acr, nir, expiry)) => Ok(console
            .sessions(move |s| s.open(area, &person, token, acr, nir, expiry))
            .await
            .flatten()),
        Err(e) => Err(e),
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
pub(super) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: SignedForm<Operator>,
) -> Response {
    signed_out(&state, &headers, &form.who, Area::Console).await
}

/// `POST /moi/deconnexion`.
pub(super) async fn journal_sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: SignedForm<Citizen>,
) -> Response {
    signed_out(&state, &headers, &form.who, Area::Journal).await
}

/// Ends the request's session of `area` (its form already checked), recorded.
async fn signed_out(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionCaller,
    area: Area,
) -> Response {
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, SESSION_COOKIE))
        .map(str::to_owned)
    {
        // SECURITY: a session that may still be in the store is not said to be closed.
        let closed = session.console.sessions(move |s| s.close(&id, area)).await;
        if closed != Some(true) {
            return refused_page(&GatewayError::internal());
        }
    }
    let _ = state.gateway.console_sign_out(&session.caller).await;
    let text = match area {
        Area::Console => "Votre session de la console est fermée.",
        Area::Journal => "Votre session du journal est fermée.",
    };
    with_cookie(
        page(
            StatusCode::OK,
            &Message::new(Frame::anonymous(), "Vous êtes déconnecté", text, "success")
                .link(&format!("/{}/connexion", area.path()), "Se reconnecter"),
        ),
        &session::session_cookie(""),
    )
}
