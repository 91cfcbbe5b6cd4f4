//! A cluster's own certificate authority and its nodes' certificates, for `passerelle demo
//! --cluster N`, `passerelle cluster certs` and the tests.
//!
//! Each certificate names its role (`Role::dns_name`) and, for servers, the addresses others
//! dial (`localhost`, `127.0.0.1` and any given). The authority's key is dropped once it has
//! signed every node: nobody can add a node to the cluster without making a new authority.
//!
//! Must never: keep the authority's key, or write a private key readable by others.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::tls::Role;

/// The files of one node's identity.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files `write` made: the authority's certificate and one identity per node.
#[derive(Debug, Clone)]
pub struct ClusterFiles {
    pub ca: PathBuf,
    pub gateway: NodeFiles,
    pub scheduler: NodeFiles,
    pub executors: Vec<NodeFiles>,
}

/// Writes, in `dir` (made 0700), a new authority (`ca.pem`) and the certificates and keys of
/// one gateway, the scheduler and `executors` executors, servers valid for `localhost`,
/// `127.0.0.1` and `hosts`. Existing files are never overwritten.
pub fn write(dir: &Path, executors: usize, hosts: &[String]) -> Result<ClusterFiles, String> {
    let err = |e: rcgen::Error| format!("cluster certificates: {e}");
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "passerelle cluster CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::days(1);
    ca_params.not_after = now + time::Duration::days(825);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let ca = Issuer::new(ca_params, ca_key);
    crate::private_fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    write_public(&ca_path, ca_cert.pem().as_bytes())?;

    let node = |role: Role, name: &str, server: bool| -> Result<NodeFiles, String> {
        let mut names = vec![role.dns_name().to_string()];
        if server {
            names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
            names.extend(hosts.iter().cloned());
        }
        let mut params = CertificateParams::new(names).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("passerelle {name}"));
        params.distinguished_name = dn;
        params.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(825);
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &ca).map_err(err)?;
        let files = NodeFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        write_public(&files.cert, cert.pem().as_bytes())?;
        crate::secret_file::write_new_private(&files.key, key.serialize_pem().as_bytes())
            .map_err(|e| format!("{}: {e}", files.key.display()))?;
        Ok(files)
    };
    Ok(ClusterFiles {
        gateway: node(Role::Gateway, "gateway", false)?,
        scheduler: node(Role::Scheduler, "scheduler", true)?,
        executors: (1..=executors)
            .map(|i| node(Role::Executor, &format!("executor-{i}"), true))
            .collect::<Result<_, _>>()?,
        ca: ca_path,
    })
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}
