//! Configuration: `passerelle.toml` + `PASSERELLE_…` environment variables + command-line flags
//! → one validated [`Config`].
//!
//! Owns: the shape of the configuration file, its defaults, environment overrides, resolution of
//! relative paths against the file's own folder (so a hub folder can be moved whole), and the
//! checks that need nothing but the configuration itself. Each section is a file of its own
//! (`server.rs`, `identity.rs`, `data.rs`, `policy.rs`, `pseudonymisation.rs`, `audit.rs`,
//! `limits.rs`) with its keys, defaults and checks; this one joins them into [`Config`], loads
//! it, resolves its paths and gathers every section's problems.
//!
//! Must never: read any file other than the configuration file, open sockets, hold secrets (the
//! pseudonymisation master key is *named* here, loaded by `pseudonym`), or start anything.
//!
//! Environment variables: every key can be set as `PASSERELLE_<SECTION>__<KEY>` (double
//! underscore between levels), e.g. `PASSERELLE_SERVER__LISTEN=0.0.0.0:8443`. Arrays take a TOML
//! value: `PASSERELLE_IDENTITY__ISSUERS='[{issuer="https://…", audience="passerelle"}]'`.
//! Variables without a double underscore (such as `PASSERELLE_MASTER_KEY`) are not configuration
//! keys and are ignored here.

mod audit;
mod cluster;
mod console;
mod data;
mod flight;
mod identity;
mod limits;
mod locate;
mod policy;
mod pseudonymisation;
mod server;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub use audit::{AuditConfig, is_node_name};
pub use cluster::ClusterConfig;
pub use console::{ACR_LEVELS, ConsoleConfig};
pub use data::DataConfig;
pub use flight::{ClientCredentialsConfig, FlightConfig};
pub use identity::{
    ALLOWED_ALGORITHMS, ATTRIBUTES, IdentityConfig, IssuerConfig, check_issuer_url,
    is_loopback_host,
};
pub use limits::{LimitsConfig, SQL_BYTES_CEILING};
pub use locate::locate_key;
pub use policy::PolicyConfig;
pub use pseudonymisation::{PseudonymisationConfig, RotationConfig};
pub use server::ServerConfig;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PASSERELLE_";

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
    #[serde(default)]
    pub flight: FlightConfig,
    /// `[console]`: the operators' console and citizens' journal; absent, no page is served.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// `[cluster]`: the Ballista cluster for large queries; absent, every query runs here.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// The configuration file this was read from (empty when built in code).
    #[serde(skip)]
    pub source: PathBuf,
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
        if let Some(dir) = self.data.tables_dir.as_mut() {
            resolve(dir);
        }
        if let Some(file) = self.data.credentials_file.as_mut() {
            resolve(file);
        }
        resolve(&mut self.policy.dir);
        resolve(&mut self.policy.history_dir);
        if let Some(file) = self.policy.credentials_file.as_mut() {
            resolve(file);
        }
        if let Some(key) = self.pseudonymisation.master_key_file.as_mut() {
            resolve(key);
        }
        resolve(&mut self.pseudonymisation.extracts_dir);
        resolve(&mut self.audit.dir);
        resolve(&mut self.audit.signing_key_file);
        if let Some(dir) = self.limits.spill_dir.as_mut() {
            resolve(dir);
        }
        if let Some(cluster) = self.cluster.as_mut() {
            resolve(&mut cluster.ca);
            resolve(&mut cluster.cert);
            resolve(&mut cluster.key);
        }
        if let Some(console) = self.console.as_mut() {
            if let Some(secret) = console.client_secret_file.as_mut() {
                resolve(secret);
            }
            if let Some(dir) = console.sessions_dir.as_mut() {
                resolve(dir);
            }
        }
    }

    /// Checks that need nothing but the configuration: `(key, message)` per problem, section
    /// by section.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = self.server.problems();
        problems.extend(self.limits.problems());
        problems.extend(self.identity.problems());
        problems.extend(self.pseudonymisation.problems());
        problems.extend(self.flight.problems());
        if let Some(exchange) = &self.flight.client_credentials
            && self.identity.issuer_named(&exchange.issuer).is_none()
        {
            problems.push((
                "flight.client_credentials.issuer".into(),
                "names no [[identity.issuers]] (by its name or its URL)".into(),
            ));
        }
        if let Some(console) = &self.console {
            problems.extend(console.problems());
            if self.identity.issuer_named(&console.issuer).is_none() {
                problems.push((
                    "console.issuer".into(),
                    "names no [[identity.issuers]] (by its name or its URL)".into(),
                ));
            }
        }
        if let Some(cluster) = &self.cluster {
            problems.extend(cluster.problems());
        }
        if !(1..=3).contains(&self.policy.approvals) {
            problems.push(("policy.approvals".into(), "must be 1, 2 or 3".into()));
        }
        problems.extend(self.audit.problems());
        problems
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
    use super::server::default_listen;
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
    fn the_client_credentials_exchange_names_a_trusted_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = "[[identity.issuers]]\nissuer = \"https://a.example\"\naudience = \"p\"\nname = \"admin\"\n";
        let unknown = format!(
            "{MINIMAL}[flight.client_credentials]\nissuer = \"https://b.example\"\nmax_concurrent = 0\n\n{issuer}"
        );
        let ConfigError::Invalid(problems) = load(&write(dir.path(), &unknown)).unwrap_err() else {
            panic!("expected invalid")
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&"flight.client_credentials.issuer"),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"flight.client_credentials.max_concurrent"),
            "{keys:?}"
        );
        for name in ["admin", "https://a.example"] {
            let known =
                format!("{MINIMAL}[flight.client_credentials]\nissuer = \"{name}\"\n\n{issuer}");
            let config = load(&write(dir.path(), &known)).unwrap();
            let exchange = config.flight.client_credentials.unwrap();
            assert_eq!(exchange.max_concurrent, 4);
            assert_eq!(exchange.resource, None);
        }
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
