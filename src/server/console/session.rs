//! The console's cookies: a random session id in a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Strict), the cookie binding a sign-in to its browser, and the comparison of form
//! tokens. The sessions themselves are the gateway's (`gateway::sessions`).
//!
//! Must never: put a token in a cookie, or compare a form token in variable time.

pub use crate::gateway::sessions::{Area, random_token};

/// The session cookie's name (`__Host-`: Secure, path `/`, no `Domain`, RFC 6265bis).
pub const SESSION_COOKIE: &str = "__Host-passerelle-session";
/// The cookie that binds a sign-in to the browser that started it (`Lax`: it must come back
/// with the issuer's redirect, a cross-site navigation).
pub const SIGN_IN_COOKIE: &str = "__Host-passerelle-sign-in";

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
}
