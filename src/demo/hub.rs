//! Creates (or reuses) a demo hub folder: policies, synthetic data, master key, TLS material
//! and `passerelle.toml`. The folder is self-contained and movable: every path in the
//! configuration is relative to it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DemoError;
use super::data::{GenerateOptions, generate_datasets};
use crate::audit::SigningKey;
use crate::pseudonym::MasterKey;

/// The policy set shipped with passerelle and copied into every demo hub.
pub const POLICY_FILES: &[(&str, &str)] = &[
    ("model.conf", include_str!("../../policies/model.conf")),
    ("policy.csv", include_str!("../../policies/policy.csv")),
    (
        "habilitations.toml",
        include_str!("../../policies/habilitations.toml"),
    ),
    (
        "datasets.toml",
        include_str!("../../policies/datasets.toml"),
    ),
    ("tables.toml", include_str!("../../policies/tables.toml")),
];

/// Where things live inside a hub folder.
#[derive(Debug, Clone)]
pub struct HubLayout {
    pub root: PathBuf,
}

impl HubLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("passerelle.toml")
    }
    pub fn policies(&self) -> PathBuf {
        self.root.join("policies")
    }
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn master_key(&self) -> PathBuf {
        self.root.join("keys").join("master.key")
    }
    /// The audit signing key (Ed25519 seed, mode 0600); its public half is `audit-signing.pub`.
    pub fn audit_signing_key(&self) -> PathBuf {
        self.root.join("keys").join("audit-signing.key")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.tls().join("ca.pem")
    }
    fn manifest(&self) -> PathBuf {
        self.data().join("demo-manifest.json")
    }
}

/// What the data folder was generated with, so a second run knows whether to regenerate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    rows: u64,
    seed: u64,
    generator: String,
    datasets: Vec<(String, String, u64)>,
}

/// What `ensure` did.
#[derive(Debug, Clone)]
pub struct HubReport {
    pub created: bool,
    pub regenerated_data: bool,
    pub datasets: Vec<(String, u64)>,
    pub seconds: f64,
}

/// Creates the hub in `dir` if missing; reuses it otherwise (regenerating the data only when
/// `rows`/`seed` differ from what is there, or files are missing).
pub fn ensure(dir: &Path, rows: u64, seed: u64, progress: bool) -> Result<HubReport, DemoError> {
    let started = std::time::Instant::now();
    let layout = HubLayout::new(dir);
    let created = !layout.config().exists();
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, &e))?;
    if created {
        write_policies(&layout)?;
        write_tls(&layout)?;
        if !layout.master_key().exists() {
            MasterKey::generate()?.write_new_file(&layout.master_key())?;
        }
        // The trail's folder is the hub's alone, as the trail itself would create it.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(layout.audit())
            .map_err(|e| DemoError::io(&layout.root, &e))?;
        write_file(&layout.config(), CONFIG_TEMPLATE.as_bytes())?;
    }
    // Also for hubs created before the audit trail existed.
    if !layout.audit_signing_key().exists() {
        let path = layout.audit_signing_key();
        SigningKey::generate()
            .and_then(|key| key.write_new_files(&path))
            .map_err(|e| DemoError::Io {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    let wanted_generator = generator_version();
    let current: Option<Manifest> = std::fs::read(layout.manifest())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let up_to_date = current.as_ref().is_some_and(|m| {
        m.rows == rows
            && m.seed == seed
            && m.generator == wanted_generator
            && m.datasets
                .iter()
                .all(|(_, path, _)| layout.data().join(path).exists())
    });
    let manifest = if up_to_date {
        current.unwrap_or_else(|| Manifest {
            rows,
            seed,
            generator: wanted_generator.clone(),
            datasets: Vec::new(),
        })
    } else {
        let written = generate_datasets(
            &layout.data(),
            &GenerateOptions {
                rows,
                seed,
                progress,
            },
        )?;
        let manifest = Manifest {
            rows,
            seed,
            generator: wanted_generator,
            datasets: written
                .iter()
                .map(|d| (d.name.to_string(), d.relative_path.to_string(), d.rows))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_file(&layout.manifest(), &json)?;
        manifest
    };
    Ok(HubReport {
        created,
        regenerated_data: !up_to_date,
        datasets: manifest
            .datasets
            .iter()
            .map(|(name, _, rows)| (name.clone(), *rows))
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn generator_version() -> String {
    format!("passerelle {}", env!("CARGO_PKG_VERSION"))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DemoError::io(parent, &e))?;
    }
    std::fs::write(path, bytes).map_err(|e| DemoError::io(path, &e))
}

fn write_policies(layout: &HubLayout) -> Result<(), DemoError> {
    for (name, text) in POLICY_FILES {
        write_file(&layout.policies().join(name), text.as_bytes())?;
    }
    Ok(())
}

/// A demo CA and a server certificate for localhost/127.0.0.1/::1 signed by it. The CA's key
/// is dropped once it has signed: only `ca.pem` (public) is kept for clients' `--cacert`.
fn write_tls(layout: &HubLayout) -> Result<(), DemoError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let tls_err = |e: rcgen::Error| DemoError::Tls(e.to_string());
    let now = time::OffsetDateTime::now_utc();

    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "passerelle demo CA");
    ca_name.push(DnType::OrganizationName, "passerelle demo hub");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::days(1);
    ca_params.not_after = now + time::Duration::days(825);
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let ca = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(tls_err)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "passerelle demo hub");
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = params.signed_by(&key, &ca).map_err(tls_err)?;

    write_file(&layout.ca_cert(), ca_cert.pem().as_bytes())?;
    write_file(&layout.tls().join("cert.pem"), cert.pem().as_bytes())?;
    write_private(
        &layout.tls().join("key.pem"),
        key.serialize_pem().as_bytes(),
    )
}

/// Writes a private file (mode 0600 on Unix), refusing to overwrite.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    crate::secret_file::write_new_private(path, bytes).map_err(|e| DemoError::io(path, &e))
}

/// `passerelle.toml` of a new demo hub.
const CONFIG_TEMPLATE: &str = r#"# passerelle configuration of a demo hub (generated by `passerelle demo`).
#
# Paths are relative to this file's folder: the hub folder can be moved whole.
# `passerelle serve --config passerelle.toml` serves this hub and trusts ONLY the issuers
# listed below. The demo's development issuer is never one of them: it exists only while
# `passerelle demo` runs. To try the hub with a real provider, append a table such as:
#
#   [[identity.issuers]]
#   issuer = "https://auth.example.gouv.fr"   # discovery at {issuer}/.well-known/openid-configuration
#   audience = "passerelle"
#   name = "demo"                             # the name policies give this issuer
#   claims = ["groups", "roles", "organisation"]   # what it is trusted to assert (none: subjects only)
#   require_typ = "at+jwt"                    # if its access tokens are RFC 9068 ones
#
# With several issuers, the habilitations and [operators] must name theirs (`issuer = "…"`):
# `passerelle check` says which.
#
# Every key can also be set by an environment variable, e.g. PASSERELLE_SERVER__LISTEN.
# See docs/operations.md for every section and key.

[server]
listen = "127.0.0.1:8443"
tls_cert = "tls/cert.pem"
tls_key = "tls/key.pem"
# GET /metrics without a token, on its own listener (HTTPS, same certificate); "" for none.
# On the main listener, /metrics is for operators only.
metrics_listen = "127.0.0.1:9464"

[flight]
# Arrow Flight SQL (gRPC over TLS, same certificate and tokens as HTTPS); "" for none.
listen = "127.0.0.1:8444"

[data]
dir = "data"

[policy]
dir = "policies"
history_dir = "policy-history"
watch_interval_secs = 2

[pseudonymisation]
master_key_file = "keys/master.key"

[audit]
dir = "audit"
signing_key_file = "keys/audit-signing.key"

[identity]
leeway_secs = 60
"#;
