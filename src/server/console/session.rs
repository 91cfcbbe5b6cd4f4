//! The console's sessions: a random id in a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Strict), everything else server side; pending sign-ins by their `state`; a CSRF
//! token per session.
//!
//! Owns: the session and pending sign-in stores, their idle and absolute timeouts, and their
//! bounds (a flood of sign-ins or sessions evicts the oldest, it never grows memory).
//! Must never: put a token in a cookie or a page, keep a session past its access token's
//! expiry, or find a session by anything but the cookie's id (stored hashed, so a memory dump
//! of the map gives no usable cookie).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::secrecy::SecretString;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::gateway::PendingSignIn;

/// The session cookie's name (`__Host-`: Secure, path `/`, no `Domain`, RFC 6265bis).
pub const SESSION_COOKIE: &str = "__Host-passerelle-session";
/// The cookie that binds a sign-in to the browser that started it (`Lax`: it must come back
/// with the issuer's redirect, a cross-site navigation).
pub const SIGN_IN_COOKIE: &str = "__Host-passerelle-sign-in";

/// How long a sign-in may take at the issuer.
const SIGN_IN_LIFETIME: Duration = Duration::from_secs(600);
/// At most this many sign-ins wait at once; at most this many sessions live at once.
const MAX_PENDING: usize = 10_000;
const MAX_SESSIONS: usize = 10_000;

/// Where a session may be used: the operators' console or a citizen's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Console,
    Journal,
}

impl Area {
    pub fn path(self) -> &'static str {
        match self {
            Area::Console => "console",
            Area::Journal => "moi",
        }
    }
}

/// A signed-in person, server side.
pub struct Session {
    pub area: Area,
    /// The access token the gateway validates on every request.
    pub access_token: SecretString,
    /// The ID token's `acr`.
    pub acr: Option<String>,
    /// A citizen's NIR, as the issuer asserted it (the journal's key; never in a page).
    pub nir: Option<SecretString>,
    pub csrf: String,
    started: Instant,
    last_seen: Instant,
    /// When the access token expires (seconds since the epoch).
    token_expiry: i64,
}

/// A sign-in waiting for the issuer's redirect.
pub struct Pending {
    pub area: Area,
    pub sign_in: PendingSignIn,
    /// The console page to open once signed in (checked: a path of this area).
    pub return_to: String,
    /// The value of the browser's sign-in cookie.
    pub browser: String,
    started: Instant,
}

/// A fresh random value: 32 bytes, base64url.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The sessions and pending sign-ins of one gateway.
pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration) -> Self {
        Self {
            idle,
            absolute,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a sign-in under its `state` (the oldest dropped past the bound).
    pub fn wait_for(
        &self,
        state: &str,
        area: Area,
        sign_in: PendingSignIn,
        return_to: String,
        browser: String,
    ) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        pending.retain(|_, p| p.started.elapsed() < SIGN_IN_LIFETIME);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| *k)
        {
            pending.remove(&oldest);
        }
        pending.insert(
            key(state),
            Pending {
                area,
                sign_in,
                return_to,
                browser,
                started: Instant::now(),
            },
        );
    }

    /// Takes the sign-in of `state` (once), if it is still waiting.
    pub fn take_pending(&self, state: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().ok()?;
        let found = pending.remove(&key(state))?;
        (found.started.elapsed() < SIGN_IN_LIFETIME).then_some(found)
    }

    /// Opens a session; its id (for the cookie).
    pub fn open(
        &self,
        area: Area,
        access_token: SecretString,
        acr: Option<String>,
        nir: Option<SecretString>,
        token_expiry: i64,
    ) -> Option<String> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().ok()?;
        sessions.retain(|_, s| self.alive(s));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            key(&id),
            Session {
                area,
                access_token,
                acr,
                nir,
                csrf,
                started: now,
                last_seen: now,
                token_expiry,
            },
        );
        Some(id)
    }

    fn alive(&self, session: &Session) -> bool {
        session.started.elapsed() < self.absolute
            && session.last_seen.elapsed() < self.idle
            && chrono::Utc::now().timestamp() < session.token_expiry
    }

    /// The live session of cookie `id` in `area`, seen now (its idle time starts again); an
    /// expired one is removed.
    pub fn touch<T>(&self, id: &str, area: Area, read: impl FnOnce(&Session) -> T) -> Option<T> {
        let mut sessions = self.sessions.lock().ok()?;
        let k = key(id);
        let alive = sessions.get(&k).map(|s| self.alive(s))?;
        if !alive {
            sessions.remove(&k);
            return None;
        }
        let session = sessions.get_mut(&k)?;
        if session.area != area {
            return None;
        }
        session.last_seen = Instant::now();
        Some(read(session))
    }

    /// Ends the session of cookie `id`.
    pub fn close(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&key(id));
        }
    }

    /// Sessions alive now (for tests and metrics).
    pub fn live(&self) -> usize {
        self.sessions
            .lock()
            .map(|s| s.values().filter(|s| self.alive(s)).count())
            .unwrap_or(0)
    }
}

/// The `Set-Cookie` value of a session cookie (an empty `value` and `Max-Age=0` remove it).
pub fn session_cookie(value: &str) -> String {
    let age = if value.is_empty() { "; Max-Age=0" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}")
}

/// The `Set-Cookie` value of the sign-in cookie (ten minutes).
pub fn sign_in_cookie(value: &str) -> String {
    let age = if value.is_empty() { 0 } else { 600 };
    format!("{SIGN_IN_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={age}")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n == name).then_some(v)
    })
}

/// Constant-time comparison of two CSRF tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_host_prefixed_secure_http_only_and_strict() {
        let c = session_cookie("abc");
        assert!(c.starts_with(
            "__Host-passerelle-session=abc; Path=/; Secure; HttpOnly; SameSite=Strict"
        ));
        assert!(!c.contains("Domain"));
        assert!(session_cookie("").ends_with("Max-Age=0"));
        assert!(sign_in_cookie("x").contains("SameSite=Lax"));
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name() {
        let header = "a=1; __Host-passerelle-session=xyz; b=2";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie("x__Host-passerelle-session=1", SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }

    #[test]
    fn sessions_end_when_idle_or_at_the_token_expiry() {
        let sessions = Sessions::new(Duration::from_millis(50), Duration::from_secs(60));
        let future = chrono::Utc::now().timestamp() + 3600;
        let id = sessions
            .open(Area::Console, SecretString::from("t"), None, None, future)
            .unwrap();
        assert!(sessions.touch(&id, Area::Console, |_| ()).is_some());
        assert!(
            sessions.touch(&id, Area::Journal, |_| ()).is_none(),
            "another area"
        );
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.touch(&id, Area::Console, |_| ()).is_none(), "idle");
        let past = chrono::Utc::now().timestamp() - 1;
        let id = sessions
            .open(Area::Console, SecretString::from("t"), None, None, past)
            .unwrap();
        assert!(
            sessions.touch(&id, Area::Console, |_| ()).is_none(),
            "token expired"
        );
    }
}
