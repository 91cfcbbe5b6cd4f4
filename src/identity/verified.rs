//! Tokens already verified: the same access token presented again (a back office sends one
//! token for thousands of lookups) skips the signature check, which costs about 60 µs for
//! ES256, and nothing else.
//!
//! Owns: a bounded map from SHA-256(token, client certificate) to the [`Principal`] that the
//! full validation produced and the `kid` that signed it.
//!
//! Must never: answer for a token it has not seen verified (the key is a collision-resistant
//! digest of the exact bytes, and of the TLS client certificate, so a token bound to one
//! certificate is not reused over another connection), outlive the token (`exp` is checked
//! strictly at each hit; the validation's leeway is not granted twice), or outlive the key
//! (a hit is honoured only while the issuer still publishes the `kid`, within its grace
//! period). It stores no token: only digests and principals.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{ClientCertificate, Principal};

/// Entries kept at most (a few MB): beyond it, expired entries go, then everything.
pub const CAPACITY: usize = 16_384;

/// The cache of one issuer's verified tokens.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

struct Verified {
    principal: Principal,
    kid: String,
}

/// The cache key of a token as presented (with or without a client certificate).
pub fn digest(token: &str, certificate: Option<&ClientCertificate>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    // A separator no token contains (JWTs are base64url and dots), then the thumbprint.
    h.update([0u8]);
    if let Some(c) = certificate {
        h.update(c.thumbprint.as_bytes());
    }
    h.finalize().into()
}

impl VerifiedTokens {
    /// The principal of an already verified token, if it has not expired at `now` (seconds
    /// since the epoch) and `key_is_current(kid)` still holds.
    pub fn get(
        &self,
        digest: &[u8; 32],
        now: i64,
        key_is_current: impl FnOnce(&str) -> bool,
    ) -> Option<Principal> {
        let (principal, kid) = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let hit = entries.get(digest)?;
            (hit.principal.clone(), hit.kid.clone())
        };
        // SECURITY: strictly before `exp` (no leeway on a hit) and only while the signing key
        // is still published; otherwise the token goes through full validation again.
        (principal.expires_at > now && key_is_current(&kid)).then_some(principal)
    }

    /// Remembers a token that full validation accepted.
    pub fn insert(&self, digest: [u8; 32], principal: &Principal, kid: &str, now: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, v| v.principal.expires_at > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            digest,
            Verified {
                principal: principal.clone(),
                kid: kid.to_string(),
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(expires_at: i64) -> Principal {
        Principal {
            issuer: "https://idp".into(),
            issuer_name: "test".into(),
            idp_id: None,
            subject: "s".into(),
            organisation_siret: None,
            groups: vec![],
            roles: vec![],
            email: None,
            client_id: None,
            client_certificate: None,
            certificate_bound: false,
            expires_at,
        }
    }

    #[test]
    fn a_hit_needs_the_same_bytes_the_same_certificate_an_unexpired_token_and_its_key() {
        let cache = VerifiedTokens::default();
        let cert = ClientCertificate {
            thumbprint: "abc".into(),
        };
        let key = digest("a.b.c", Some(&cert));
        cache.insert(key, &principal(1_000), "k1", 500);
        assert!(cache.get(&key, 999, |k| k == "k1").is_some());
        // Expired (strictly), or its key retired: no hit.
        assert!(cache.get(&key, 1_000, |_| true).is_none());
        assert!(cache.get(&key, 999, |k| k != "k1").is_none());
        // Other bytes, another certificate, no certificate: other keys.
        assert!(
            cache
                .get(&digest("a.b.d", Some(&cert)), 999, |_| true)
                .is_none()
        );
        let other = ClientCertificate {
            thumbprint: "abd".into(),
        };
        assert!(
            cache
                .get(&digest("a.b.c", Some(&other)), 999, |_| true)
                .is_none()
        );
        assert!(cache.get(&digest("a.b.c", None), 999, |_| true).is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..(CAPACITY + 10) {
            cache.insert(digest(&i.to_string(), None), &principal(100), "k", 50);
        }
        // Full of live entries, it was emptied once, then refilled with the last few.
        assert!(cache.len() <= 11);
        // A full cache first drops the expired entries.
        let cache = VerifiedTokens::default();
        for i in 0..CAPACITY {
            let exp = if i % 2 == 0 { 100 } else { 1_000 };
            cache.insert(digest(&i.to_string(), None), &principal(exp), "k", 50);
        }
        cache.insert(digest("new", None), &principal(1_000), "k", 500);
        assert_eq!(cache.len(), CAPACITY / 2 + 1);
    }
}
