//! Pseudonymisation domains and their keys.
//!
//! A domain's key is derived from the hub's master secret with HKDF-SHA-256 (salt
//! `passerelle/pseudonymisation/v1`, info `domain=<id>;version=<n>`). A pseudonym is
//! HMAC-SHA-256(domain key, normalised value), truncated to 128 bits and encoded as base64url
//! without padding: 22 characters. Normalisation: surrounding and inner ASCII whitespace
//! removed, ASCII letters upper-cased (so `2a` and `2A` are one Corsican département code).
//!
//! Collisions: with 128-bit pseudonyms, the probability of any collision among n distinct
//! values is about n² / 2¹²⁹: at n = 100 million, 1.5 × 10⁻²³ — negligible.
//!
//! INVARIANT: the keyed HMAC state (inner and outer hashes already absorbed the key) is
//! computed once per domain and cloned per value; the key itself never leaves this file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::MasterKey;

/// Length of an encoded pseudonym.
pub const PSEUDONYM_LEN: usize = 22;

const SALT: &[u8] = b"passerelle/pseudonymisation/v1";

/// Why a domain key could not be derived (never carries key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("pseudonymisation domain key could not be derived")]
    Derivation,
}

/// The keyed function of one domain at one key version. `Debug` shows no key material.
#[derive(Clone)]
pub struct PseudonymDomain {
    id: String,
    version: u32,
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for PseudonymDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymDomain")
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PseudonymDomain {
    /// Derives the domain key `version` of domain `id` from the master secret.
    pub fn derive(
        master: &MasterKey,
        id: &str,
        version: u32,
    ) -> Result<PseudonymDomain, DomainError> {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(SALT), master.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        let info = format!("domain={id};version={version}");
        // 32 bytes is far below HKDF-SHA-256's 8160-byte limit: expand cannot fail.
        // SECURITY: any failure refuses the domain; a key is never defaulted.
        hkdf.expand(info.as_bytes(), key.as_mut())
            .map_err(|_| DomainError::Derivation)?;
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref())
            .map_err(|_| DomainError::Derivation)?;
        Ok(PseudonymDomain {
            id: id.to_string(),
            version,
            keyed,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The pseudonym of `value`, written into `out` (no allocation).
    pub fn pseudonymise_into(&self, value: &[u8], out: &mut [u8; PSEUDONYM_LEN]) {
        let mut mac = self.keyed.clone();
        feed_normalised(&mut mac, value);
        let digest = mac.finalize().into_bytes();
        // 16 bytes encode to exactly 22 base64url characters without padding.
        let _ = URL_SAFE_NO_PAD.encode_slice(&digest[..16], out);
    }

    /// The pseudonym of `value` as a `String` (tests, lookups' audit keys).
    pub fn pseudonymise(&self, value: &str) -> String {
        let mut out = [0u8; PSEUDONYM_LEN];
        self.pseudonymise_into(value.as_bytes(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Feeds the normalised form of `value`: ASCII whitespace dropped, ASCII letters upper-cased.
fn feed_normalised(mac: &mut Hmac<Sha256>, value: &[u8]) {
    let clean = value
        .iter()
        .all(|b| !b.is_ascii_whitespace() && !b.is_ascii_lowercase());
    if clean {
        mac.update(value);
        return;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    for &b in value {
        if b.is_ascii_whitespace() {
            continue;
        }
        buf[n] = b.to_ascii_uppercase();
        n += 1;
        if n == buf.len() {
            mac.update(&buf);
            n = 0;
        }
    }
    mac.update(&buf[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([7u8; 32])
    }

    #[test]
    fn same_value_same_domain_same_pseudonym_and_normalised() {
        let d = PseudonymDomain::derive(&master(), "projet-diabete", 1).unwrap();
        let a = d.pseudonymise("1840375056123");
        assert_eq!(a.len(), PSEUDONYM_LEN);
        assert_eq!(a, d.pseudonymise(" 1840375056123 "));
        assert_eq!(d.pseudonymise("2a004"), d.pseudonymise("2A004"));
        assert_ne!(a, d.pseudonymise("1840375056124"));
    }

    #[test]
    fn domains_and_versions_do_not_share_pseudonyms() {
        let m = master();
        let a = PseudonymDomain::derive(&m, "projet-diabete", 1)
            .unwrap()
            .pseudonymise("1840375056123");
        let b = PseudonymDomain::derive(&m, "projet-emploi", 1)
            .unwrap()
            .pseudonymise("1840375056123");
        let c = PseudonymDomain::derive(&m, "projet-diabete", 2)
            .unwrap()
            .pseudonymise("1840375056123");
        let other_master = MasterKey::from_bytes([8u8; 32]);
        let d = PseudonymDomain::derive(&other_master, "projet-diabete", 1)
            .unwrap()
            .pseudonymise("1840375056123");
        assert!(a != b && a != c && a != d && b != c);
    }

    #[test]
    fn long_values_with_spaces_normalise_across_buffer_boundaries() {
        let d = PseudonymDomain::derive(&master(), "x", 1).unwrap();
        let long = "ab ".repeat(100);
        assert_eq!(d.pseudonymise(&long), d.pseudonymise(&"AB".repeat(100)));
    }

    #[test]
    fn debug_shows_no_key() {
        let d = PseudonymDomain::derive(&master(), "projet-diabete", 3).unwrap();
        let text = format!("{d:?}");
        assert!(text.contains("projet-diabete") && text.contains('3'));
        assert!(!text.contains("keyed"));
    }
}
