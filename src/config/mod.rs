//! Configuration: `passerelle.toml` + `PASSERELLE_…` environment variables + command-line flags
//! → one validated [`Config`].
//!
//! Owns: the shape of the configuration file, its defaults, environment overrides, resolution of
//! relative paths against the file's own folder (so a hub folder can be moved whole), and the
//! checks that need nothing but the configuration itself.
//!
//! Must never: read any file other than the configuration file, open sockets, hold secrets (the
//! pseudonymisation master key is *named* here, loaded by `pseudonym`), or start anything.
//!
//! Environment variables: every key can be set as `PASSERELLE_<SECTION>__<KEY>` (double
//! underscore between levels), e.g. `PASSERELLE_SERVER__LISTEN=0.0.0.0:8443`. Arrays take a TOML
//! value: `PASSERELLE_IDENTITY__ISSUERS='[{issuer="https://…", audience="passerelle"}]'`.
//! Variables without a double underscore (such as `PASSERELLE_MASTER_KEY`) are not configuration
//! keys and are ignored here.

mod limits;
mod locate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use limits::LimitsConfig;
pub use locate::locate_key;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PASSERELLE_";

/// Algorithms an issuer may sign access tokens with: asymmetric only.
pub const ALLOWED_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// The whole validated configuration of one hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub pseudonymisation: PseudonymisationConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The configuration file this was read from (empty when built in code).
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[server]`: the HTTPS listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (HTTPS only; there is no plain HTTP listener).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain presented to clients.
    pub tls_cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, SEC1 or PKCS#1).
    pub tls_key: PathBuf,
    /// Optional PEM bundle of CAs whose client certificates are accepted (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Upper bound for one request, in seconds (query timeouts are set separately).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

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
}

/// `[data]`: where the datasets' Parquet files live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
}

/// `[policy]`: the policy set (Casbin model and rules, habilitations, dataset catalog).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy set in force.
    pub dir: PathBuf,
    /// Where submitted policy versions are kept (history, rollback).
    #[serde(default = "default_history_dir")]
    pub history_dir: PathBuf,
    /// How often the policy folder is checked for changes, in seconds (0: never; SIGHUP
    /// still reloads).
    #[serde(default = "default_watch")]
    pub watch_interval_secs: u64,
}

/// `[pseudonymisation]`: where the master secret comes from (never the secret itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymisationConfig {
    /// File holding the master secret (must not be readable by group or others).
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the master secret (hex), used instead of a file.
    #[serde(default)]
    pub master_key_env: Option<String>,
    /// Key rotations: from `from` on, `domain` uses key `version` (new pseudonyms).
    #[serde(default)]
    pub rotations: Vec<RotationConfig>,
    /// Keep pseudonymised extracts (a copy of a dataset per domain and key version whose
    /// pseudonymised columns hold their pseudonyms), built in the background on first use, so
    /// that queries read pseudonyms instead of computing them (see `docs/operations.md`).
    #[serde(default = "default_true")]
    pub extracts: bool,
    /// Where extracts are kept (0700; each as large as its dataset).
    #[serde(default = "default_extracts_dir")]
    pub extracts_dir: PathBuf,
}

fn default_extracts_dir() -> PathBuf {
    "extracts".into()
}

fn default_true() -> bool {
    true
}

/// `[[pseudonymisation.rotations]]`: a new key version of a domain from a date on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    pub domain: String,
    /// 2 or more (version 1 is every domain's first key).
    pub version: u32,
    /// First day of the new version, `"YYYY-MM-DD"`.
    pub from: chrono::NaiveDate,
}

/// `[audit]`: where the audit trail is written, and how (see `docs/operations.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "default_audit_dir")]
    pub dir: PathBuf,
    /// Ed25519 seed (64 hex characters) signing the head; refused if group or others can read it.
    #[serde(default = "default_audit_signing_key")]
    pub signing_key_file: PathBuf,
    /// A new segment starts before a record would make the current one larger than this.
    #[serde(default = "default_segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// A new segment starts once the current one's first record is this old, in seconds.
    #[serde(default = "default_segment_max_age")]
    pub segment_max_age_secs: u64,
    /// Whole segments whose last record is older than this many months are removed (a signed
    /// anchor keeps the rest verifiable); 0 keeps everything.
    #[serde(default = "default_retention_months")]
    pub retention_months: u32,
    /// How long the writer waits for more events before committing a batch, in ms (0: commit
    /// as soon as the queue is empty).
    #[serde(default)]
    pub commit_interval_ms: u64,
}

fn default_audit_dir() -> PathBuf {
    "audit".into()
}
fn default_audit_signing_key() -> PathBuf {
    "keys/audit-signing.key".into()
}
fn default_segment_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_segment_max_age() -> u64 {
    24 * 3600
}
fn default_retention_months() -> u32 {
    12
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_request_timeout() -> u64 {
    300
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_max_body() -> usize {
    1024 * 1024
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

impl Default for DataConfig {
    fn default() -> Self {
        Self { dir: "data".into() }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: "policies".into(),
            history_dir: default_history_dir(),
            watch_interval_secs: default_watch(),
        }
    }
}

fn default_history_dir() -> PathBuf {
    "policy-history".into()
}
fn default_watch() -> u64 {
    2
}

impl Default for PseudonymisationConfig {
    fn default() -> Self {
        Self {
            master_key_file: Some("keys/master.key".into()),
            master_key_env: None,
            rotations: Vec::new(),
            extracts: true,
            extracts_dir: default_extracts_dir(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: default_audit_dir(),
            signing_key_file: default_audit_signing_key(),
            segment_max_bytes: default_segment_max_bytes(),
            segment_max_age_secs: default_segment_max_age(),
            retention_months: default_retention_months(),
            commit_interval_ms: 0,
        }
    }
}

impl IssuerConfig {
    /// An issuer with the contract's default claim names.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            subject_claim: default_subject_claim(),
            idp_claim: default_idp_claim(),
            organisation_claim: default_organisation_claim(),
            groups_claim: default_groups_claim(),
            roles_claim: default_roles_claim(),
            email_claim: default_email_claim(),
            algorithms: default_algorithms(),
        }
    }
}

/// One thing wrong with a configuration: which file, which key, where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file (or `environment` for a `PASSERELLE_…` variable).
    pub file: String,
    /// 1-based line of the key in the file, when it could be found.
    pub line: Option<usize>,
    /// Dotted key, e.g. `identity.issuers[0].issuer`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: `{}`: {}",
                self.file, line, self.key, self.message
            ),
            None => write!(f, "{}: `{}`: {}", self.file, self.key, self.message),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{}", join_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads `path`, applies `PASSERELLE_…` overrides, resolves relative paths against the
    /// file's folder and validates the result. Every problem found is reported, not only the
    /// first.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            file: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        let file = path.display().to_string();
        let figment = Figment::from(Toml::string(&text))
            // Only variables with a `__` are keys; `PASSERELLE_MASTER_KEY` and friends are not.
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            );
        let mut config: Config = figment
            .extract()
            .map_err(|errors| ConfigError::Invalid(figment_problems(errors, &file, &text)))?;
        config.source = path.to_path_buf();
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        config.resolve_paths(&base);
        let problems: Vec<ConfigProblem> = config
            .problems()
            .into_iter()
            .map(|(key, message)| ConfigProblem {
                line: locate_key(&text, &key),
                file: file.clone(),
                key,
                message,
            })
            .collect();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Makes every relative path absolute against `base` (the configuration file's folder).
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.server.tls_cert);
        resolve(&mut self.server.tls_key);
        if let Some(ca) = self.server.client_ca.as_mut() {
            resolve(ca);
        }
        if let Some(ca) = self.identity.ca_file.as_mut() {
            resolve(ca);
        }
        resolve(&mut self.data.dir);
        resolve(&mut self.policy.dir);
        resolve(&mut self.policy.history_dir);
        if let Some(key) = self.pseudonymisation.master_key_file.as_mut() {
            resolve(key);
        }
        resolve(&mut self.pseudonymisation.extracts_dir);
        resolve(&mut self.audit.dir);
        resolve(&mut self.audit.signing_key_file);
        if let Some(dir) = self.limits.spill_dir.as_mut() {
            resolve(dir);
        }
    }

    /// Checks that need nothing but the configuration: `(key, message)` per problem.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.server.request_timeout_secs == 0 {
            problems.push((
                "server.request_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.server.max_body_bytes == 0 {
            problems.push(("server.max_body_bytes".into(), "must be at least 1".into()));
        }
        problems.extend(self.limits.problems());
        if self.identity.max_token_bytes < 256 {
            problems.push((
                "identity.max_token_bytes".into(),
                "must be at least 256".into(),
            ));
        }
        if self.identity.http_timeout_secs == 0 {
            problems.push((
                "identity.http_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.identity.max_key_age_secs <= self.identity.jwks_refresh_secs.max(1) {
            // SECURITY: a bound on how long keys are trusted without the issuer confirming
            // them; shorter than a refresh, keys would lapse in normal operation.
            problems.push((
                "identity.max_key_age_secs".into(),
                format!(
                    "must be greater than identity.jwks_refresh_secs ({})",
                    self.identity.jwks_refresh_secs
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, issuer) in self.identity.issuers.iter().enumerate() {
            let key = |leaf: &str| format!("identity.issuers[{i}].{leaf}");
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
        let p = &self.pseudonymisation;
        let mut seen_versions = std::collections::HashSet::new();
        for (i, r) in p.rotations.iter().enumerate() {
            let key = format!("pseudonymisation.rotations[{i}]");
            if r.version < 2 {
                problems.push((
                    format!("{key}.version"),
                    "rotations start at version 2 (version 1 is the first key)".into(),
                ));
            }
            if !seen_versions.insert((r.domain.clone(), r.version)) {
                problems.push((
                    format!("{key}.version"),
                    format!("version {} of `{}` is listed twice", r.version, r.domain),
                ));
            }
            let later_but_older = p
                .rotations
                .iter()
                .any(|o| o.domain == r.domain && o.version < r.version && o.from >= r.from);
            if later_but_older {
                problems.push((
                    format!("{key}.from"),
                    "a higher version must start after the lower ones".into(),
                ));
            }
        }
        match (&p.master_key_file, &p.master_key_env) {
            (None, None) => problems.push((
                "pseudonymisation.master_key_file".into(),
                "set `master_key_file` or `master_key_env`".into(),
            )),
            (Some(_), Some(_)) => problems.push((
                "pseudonymisation.master_key_env".into(),
                "set only one of `master_key_file` and `master_key_env`".into(),
            )),
            _ => {}
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

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn figment_problems(errors: figment::Error, file: &str, text: &str) -> Vec<ConfigProblem> {
    errors
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.to_lowercase().contains("environment"));
            ConfigProblem {
                file: if from_env {
                    "environment".into()
                } else {
                    file.to_string()
                },
                line: if from_env {
                    None
                } else {
                    locate_key(text, &key)
                },
                key: if key.is_empty() { "(file)".into() } else { key },
                message: e.kind.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::result_large_err, reason = "figment::Jail's closure signature")]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("passerelle.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Loads inside a figment `Jail`, so that tests setting environment variables cannot
    /// leak into each other.
    fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|_| {
            result = Some(Config::load(path));
            Ok(())
        });
        result.unwrap()
    }

    const MINIMAL: &str = "[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n";

    #[test]
    fn relative_paths_resolve_against_the_file_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&write(dir.path(), MINIMAL)).unwrap();
        assert_eq!(config.server.tls_cert, dir.path().join("tls/cert.pem"));
        assert_eq!(config.data.dir, dir.path().join("data"));
        assert_eq!(
            config.pseudonymisation.master_key_file,
            Some(dir.path().join("keys/master.key"))
        );
        assert_eq!(config.server.listen, default_listen());
    }

    #[test]
    fn unknown_key_is_named_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("{MINIMAL}lisen = \"127.0.0.1:1\"\n"));
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("passerelle.toml:4"), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "[server]\nlisten = \"not an address\"\ntls_cert = \"c\"\ntls_key = \"k\"\n",
        );
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("`server.listen`"), "{err}");
        assert!(err.contains("passerelle.toml:2"), "{err}");
    }

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

    #[test]
    fn issuer_problems_name_the_array_index_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}\n[[identity.issuers]]\nissuer = \"https://a.example\"\naudience = \"p\"\n\n\
             [[identity.issuers]]\nissuer = \"http://b.example\"\naudience = \"\"\nalgorithms = [\"HS256\"]\n"
        );
        let err = load(&write(dir.path(), &text)).unwrap_err();
        let ConfigError::Invalid(problems) = err else {
            panic!("expected invalid")
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"identity.issuers[1].issuer"), "{keys:?}");
        assert!(keys.contains(&"identity.issuers[1].audience"), "{keys:?}");
        assert!(keys.contains(&"identity.issuers[1].algorithms"), "{keys:?}");
        let issuer = problems
            .iter()
            .find(|p| p.key == "identity.issuers[1].issuer")
            .unwrap();
        assert_eq!(issuer.line, Some(10));
    }

    #[test]
    fn rotations_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}[[pseudonymisation.rotations]]\ndomain = \"d\"\nversion = 3\nfrom = \"2026-01-01\"\n\n\
             [[pseudonymisation.rotations]]\ndomain = \"d\"\nversion = 2\nfrom = \"2026-06-01\"\n\n\
             [[pseudonymisation.rotations]]\ndomain = \"d\"\nversion = 1\nfrom = \"2025-01-01\"\n"
        );
        let err = load(&write(dir.path(), &text)).unwrap_err().to_string();
        assert!(err.contains("pseudonymisation.rotations[0].from"), "{err}");
        assert!(
            err.contains("pseudonymisation.rotations[2].version"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_a_key() {
        // figment::Jail isolates the environment for this test.
        figment::Jail::expect_with(|jail| {
            jail.set_env("PASSERELLE_SERVER__LISTEN", "127.0.0.1:9443");
            jail.set_env("PASSERELLE_MASTER_KEY", "not a configuration key");
            let dir = jail.directory().to_path_buf();
            let config = Config::load(&write(&dir, MINIMAL)).unwrap();
            assert_eq!(config.server.listen.port(), 9443);
            Ok(())
        });
    }
}
