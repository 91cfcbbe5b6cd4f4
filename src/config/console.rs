//! `[console]`: the operators' console and the citizens' journal in the browser (`/console`,
//! `/moi`), signed in by OpenID Connect authorization code with PKCE.
//!
//! Owns: the keys, their defaults and the checks that need nothing but the configuration.
//! Must never: hold a secret in the configuration text (the client secret is read from a file).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[console]`: absent (the default), no page is served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The issuer operators and citizens sign in with, by its `[[identity.issuers]]` name or
    /// URL: its discovery document gives the authorization and token endpoints, and the access
    /// token it returns is validated like any bearer token (audience, algorithms, claims).
    pub issuer: String,
    /// The console's client id at that issuer.
    pub client_id: String,
    /// A file holding the client secret, for a confidential client; absent for a public client
    /// (PKCE alone).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The console's public base URL (`https://hub.example.gouv.fr`): the redirect URIs are
    /// `<base>/console/callback` and `<base>/moi/callback`, registered at the issuer.
    pub public_url: String,
    /// RFC 8707 `resource` sent with the authorization and token requests (e.g.
    /// `urn:passerelle`), when the issuer needs one to give a JWT access token.
    #[serde(default)]
    pub resource: Option<String>,
    /// A session ends after this long without a request, in seconds.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in whatever happens, in seconds (and never after
    /// its access token expires).
    #[serde(default = "default_absolute")]
    pub absolute_timeout_secs: u64,
    /// The lowest `acr` a citizen's ID token must carry to open the journal (`/moi`), among
    /// `eidas1` < `eidas2` < `eidas3`.
    #[serde(default = "default_citizen_acr")]
    pub citizen_acr: String,
    /// A folder shared by the gateways behind one load balancer, where sessions and pending
    /// sign-ins are kept sealed (any gateway then serves any session: no sticky balancer);
    /// absent, each gateway keeps its own in memory.
    #[serde(default)]
    pub sessions_dir: Option<PathBuf>,
}

fn default_idle() -> u64 {
    15 * 60
}

fn default_absolute() -> u64 {
    8 * 3600
}

fn default_citizen_acr() -> String {
    "eidas1".into()
}

/// The eIDAS levels in order (`acr` values as France Connect and ProConnect send them).
pub const ACR_LEVELS: [&str; 3] = ["eidas1", "eidas2", "eidas3"];

impl ConsoleConfig {
    /// A console for `issuer`, with the defaults (the demo builds its own).
    pub fn new(issuer: &str, client_id: &str, public_url: &str) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret_file: None,
            public_url: public_url.trim_end_matches('/').into(),
            resource: None,
            idle_timeout_secs: default_idle(),
            absolute_timeout_secs: default_absolute(),
            citizen_acr: default_citizen_acr(),
            sessions_dir: None,
        }
    }

    /// Checks that need nothing but this section: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.public_url) {
            Ok(url) if url.scheme() == "https" && url.query().is_none() => {}
            _ => problems.push((
                "console.public_url".into(),
                "must be an https URL without a query".into(),
            )),
        }
        if self.client_id.is_empty() {
            problems.push(("console.client_id".into(), "must not be empty".into()));
        }
        if !(60..=86_400).contains(&self.idle_timeout_secs) {
            problems.push((
                "console.idle_timeout_secs".into(),
                "must be between 60 and 86400".into(),
            ));
        }
        if !(300..=7 * 86_400).contains(&self.absolute_timeout_secs)
            || self.absolute_timeout_secs < self.idle_timeout_secs
        {
            problems.push((
                "console.absolute_timeout_secs".into(),
                "must be between 300 and 604800, and at least the idle timeout".into(),
            ));
        }
        if !ACR_LEVELS.contains(&self.citizen_acr.as_str()) {
            problems.push((
                "console.citizen_acr".into(),
                format!("must be one of {}", ACR_LEVELS.join(", ")),
            ));
        }
        problems
    }

    /// The redirect URI of a sign-in for `area` (`console` or `moi`).
    pub fn redirect_uri(&self, area: &str) -> String {
        format!("{}/{area}/callback", self.public_url.trim_end_matches('/'))
    }
}
