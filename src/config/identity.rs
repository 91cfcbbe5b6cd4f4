//! `[identity]` and `[[identity.issuers]]`: which OpenID Connect issuers are trusted, how their
//! keys are fetched and kept, and how tokens are checked; the rule on issuer URLs.
//!
//! Owns: the keys, their defaults, the checks that need nothing but the configuration, and
//! [`check_issuer_url`] (also applied by `identity` to every URL an issuer's discovery names).
//! Must never: contact an issuer, or accept an issuer URL that is neither `https://` nor on a
//! loopback host, or a symmetric signature algorithm.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Algorithms an issuer may sign access tokens with: asymmetric only.
pub const ALLOWED_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// Principal attributes an issuer may be trusted to assert (`claims`), as policies name them
/// (whatever the token's claim is called: `groups_claim`, `roles_claim`, …). The subject is
/// always the issuer's own. `nir` is never a policy attribute: it opens a citizen's own journal
/// (`/moi`) when the issuer that signed the person in is trusted to assert it.
pub const ATTRIBUTES: &[&str] = &["groups", "roles", "organisation", "idp", "email", "nir"];

/// `[identity]`: which OpenID Connect issuers are trusted, and how tokens are checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Trusted issuers; several at once. No issuer means no token is ever accepted.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Largest bearer token accepted, in bytes.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    /// How often each issuer's JWKS is refreshed in the background, in seconds.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// Minimum delay between two refreshes forced by an unknown `kid`, in seconds.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_secs: u64,
    /// How long a key that left the JWKS is still accepted, in seconds.
    #[serde(default = "default_key_grace")]
    pub retired_key_grace_secs: u64,
    /// How long an issuer's keys are trusted after the last successful JWKS fetch, in seconds.
    /// While the issuer is unreachable, cached keys keep working this long; then every token
    /// of that issuer is refused (and readiness drops) until a fetch succeeds again. Must be
    /// greater than `jwks_refresh_secs`.
    #[serde(default = "default_max_key_age")]
    pub max_key_age_secs: u64,
    /// Timeout of each HTTP call to an issuer (discovery, JWKS), in seconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_secs: u64,
    /// Optional extra PEM CA bundle to reach issuers (e.g. a private PKI).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[[identity.issuers]]`: one trusted OpenID Connect issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Issuer identifier; discovery at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Short name policies use for this issuer (`members = { issuer = "…" }`), so that its URL
    /// can change between environments without touching them. Default: the issuer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Principal attributes this issuer is trusted to assert (see [`ATTRIBUTES`]). None: it
    /// authenticates subjects only; an attribute it is not trusted for is ignored (absent).
    #[serde(default)]
    pub claims: Vec<String>,
    /// Audience that access tokens must carry in `aud`.
    pub audience: String,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default = "default_idp_claim")]
    pub idp_claim: String,
    #[serde(default = "default_organisation_claim")]
    pub organisation_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// Signature algorithms accepted from this issuer (subset of RS256, PS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The JWT header `typ` this issuer's access tokens must carry, e.g. `at+jwt` (RFC 9068;
    /// `application/at+jwt` is the same). None: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_typ: Option<String>,
}

fn default_leeway() -> u64 {
    60
}
fn default_max_token() -> usize {
    16 * 1024
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refresh() -> u64 {
    10
}
fn default_key_grace() -> u64 {
    3600
}
fn default_max_key_age() -> u64 {
    24 * 3600
}
fn default_http_timeout() -> u64 {
    5
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_idp_claim() -> String {
    "idp_id".into()
}
fn default_organisation_claim() -> String {
    "siret".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_algorithms() -> Vec<String> {
    ALLOWED_ALGORITHMS
        .iter()
        .map(|a| (*a).to_string())
        .collect()
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            leeway_secs: default_leeway(),
            max_token_bytes: default_max_token(),
            jwks_refresh_secs: default_jwks_refresh(),
            jwks_min_refresh_secs: default_jwks_min_refresh(),
            retired_key_grace_secs: default_key_grace(),
            max_key_age_secs: default_max_key_age(),
            http_timeout_secs: default_http_timeout(),
            ca_file: None,
        }
    }
}

impl IssuerConfig {
    /// An issuer with the contract's default claim names.
    /// It is trusted for no attribute (`claims` empty: subjects only); see [`Self::asserting`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            name: None,
            claims: Vec::new(),
            audience: audience.into(),
            subject_claim: default_subject_claim(),
            idp_claim: default_idp_claim(),
            organisation_claim: default_organisation_claim(),
            groups_claim: default_groups_claim(),
            roles_claim: default_roles_claim(),
            email_claim: default_email_claim(),
            algorithms: default_algorithms(),
            require_typ: None,
        }
    }

    /// The same issuer, named `name` and trusted to assert `attributes`.
    pub fn asserting(mut self, name: &str, attributes: &[&str]) -> Self {
        self.name = Some(name.to_string());
        self.claims = attributes.iter().map(|a| (*a).to_string()).collect();
        self
    }

    /// The name policies use: `name`, or the issuer URL.
    pub fn policy_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.issuer)
    }

    /// Whether this issuer is trusted to assert `attribute` (one of [`ATTRIBUTES`]).
    pub fn asserts(&self, attribute: &str) -> bool {
        self.claims.iter().any(|c| c == attribute)
    }
}

impl IdentityConfig {
    /// The trusted issuer called `name` in policies, or whose URL is `name`.
    pub fn issuer_named(&self, name: &str) -> Option<&IssuerConfig> {
        self.issuers
            .iter()
            .find(|i| i.policy_name() == name || i.issuer == name)
    }

    /// Checks that need nothing but this section: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.max_token_bytes < 256 {
            problems.push((
                "identity.max_token_bytes".into(),
                "must be at least 256".into(),
            ));
        }
        if self.http_timeout_secs == 0 {
            problems.push((
                "identity.http_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.max_key_age_secs <= self.jwks_refresh_secs.max(1) {
            // SECURITY: a bound on how long keys are trusted without the issuer confirming
            // them; shorter than a refresh, keys would lapse in normal operation.
            problems.push((
                "identity.max_key_age_secs".into(),
                format!(
                    "must be greater than identity.jwks_refresh_secs ({})",
                    self.jwks_refresh_secs
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (i, issuer) in self.issuers.iter().enumerate() {
            let key = |leaf: &str| format!("identity.issuers[{i}].{leaf}");
            if let Some(name) = &issuer.name {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    problems.push((
                        key("name"),
                        "a short name: letters, digits, `-`, `_`, `.` (at most 64)".into(),
                    ));
                }
            }
            if !names.insert(issuer.policy_name().to_string()) {
                problems.push((key("name"), "another issuer has this name".into()));
            }
            for claim in &issuer.claims {
                if !ATTRIBUTES.contains(&claim.as_str()) {
                    problems.push((
                        key("claims"),
                        format!(
                            "`{claim}` is not a principal attribute ({})",
                            ATTRIBUTES.join(", ")
                        ),
                    ));
                }
            }
            if let Err(message) = check_issuer_url(&issuer.issuer) {
                problems.push((key("issuer"), message));
            }
            if !seen.insert(issuer.issuer.trim_end_matches('/').to_string()) {
                problems.push((key("issuer"), "this issuer is listed twice".into()));
            }
            if issuer.audience.trim().is_empty() {
                problems.push((key("audience"), "must not be empty".into()));
            }
            if issuer.algorithms.is_empty() {
                problems.push((key("algorithms"), "must list at least one algorithm".into()));
            }
            for alg in &issuer.algorithms {
                if !ALLOWED_ALGORITHMS.contains(&alg.as_str()) {
                    problems.push((
                        key("algorithms"),
                        format!(
                            "`{alg}` is not allowed (asymmetric only: {})",
                            ALLOWED_ALGORITHMS.join(", ")
                        ),
                    ));
                }
            }
            for (leaf, claim) in [
                ("subject_claim", &issuer.subject_claim),
                ("idp_claim", &issuer.idp_claim),
                ("organisation_claim", &issuer.organisation_claim),
                ("groups_claim", &issuer.groups_claim),
                ("roles_claim", &issuer.roles_claim),
                ("email_claim", &issuer.email_claim),
            ] {
                if claim.trim().is_empty() {
                    problems.push((key(leaf), "must not be empty".into()));
                }
            }
        }
        problems
    }
}

/// An issuer must be `https://`, or `http://` on a loopback host (local development only).
pub fn check_issuer_url(issuer: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(issuer).map_err(|_| format!("`{issuer}` is not a valid URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an issuer has no query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an issuer URL carries no credentials".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => {
            Err("`http://` issuers are refused unless their host is a loopback address".into())
        }
        other => Err(format!("scheme `{other}` is not allowed (use https)")),
    }
}

/// Whether `url`'s host is a loopback address (or `localhost`).
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_issuer_is_refused_unless_loopback() {
        assert!(check_issuer_url("http://auth.example.gouv.fr").is_err());
        assert!(check_issuer_url("http://10.0.0.1/realm").is_err());
        assert!(check_issuer_url("http://127.0.0.1:9000").is_ok());
        assert!(check_issuer_url("http://[::1]:9000").is_ok());
        assert!(check_issuer_url("http://localhost:9000").is_ok());
        assert!(check_issuer_url("https://auth.example.gouv.fr").is_ok());
        assert!(check_issuer_url("ftp://auth.example.gouv.fr").is_err());
        assert!(check_issuer_url("https://user:pw@auth.example.gouv.fr").is_err());
    }
}
