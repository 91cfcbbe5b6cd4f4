//! Sealed boxes: AES-256-GCM under a key derived from the master secret for one purpose
//! (`pseudonym::MasterKey::purpose_key`), so that what one gateway seals any gateway of the hub
//! opens, and nothing else can read, forge or move it.
//!
//! Owns: the cipher, the nonce (random, 96 bits, per box) and the binding of a box to its
//! context (associated data: a box sealed for one use or name never opens as another).
//! Must never: reuse a nonce, open a box without checking its tag, or keep a plaintext longer
//! than its caller (opened plaintexts are zeroized when dropped).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// Seals and opens boxes under one key.
pub struct SealedBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedBox(<redacted>)")
    }
}

impl SealedBox {
    /// A box with this 32-byte key (`None` only if the cipher refuses it).
    pub fn new(key: &[u8; 32]) -> Option<Self> {
        let key = UnboundKey::new(&AES_256_GCM, key).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `plain` sealed for `context`: a random nonce, the ciphertext and its tag.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        let mut body = Zeroizing::new(plain.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut *body,
            )
            .ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Some(out)
    }

    /// What `sealed` holds, if it was sealed by this key for `context` and is unchanged.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = Zeroizing::new(body.to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_opens_only_with_its_key_its_context_and_unchanged() {
        let sealer = SealedBox::new(&[7; 32]).unwrap();
        let sealed = sealer.seal(b"a", b"secret").unwrap();
        assert_eq!(sealer.open(b"a", &sealed).unwrap().as_slice(), b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "never in clear");
        assert!(sealer.open(b"b", &sealed).is_none(), "another context");
        assert!(
            SealedBox::new(&[8; 32])
                .unwrap()
                .open(b"a", &sealed)
                .is_none()
        );
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(sealer.open(b"a", &changed).is_none(), "changed");
        assert!(sealer.open(b"a", &sealed[..5]).is_none(), "cut");
        assert_ne!(
            sealer.seal(b"a", b"secret").unwrap(),
            sealed,
            "a nonce per box"
        );
    }
}
