//! Signed statements about the trail: the head (`head.json`) and the retention anchor
//! (`anchor.json`), their canonical bytes, signing, and reading one back from the folder.
//!
//! Owns: the two formats and what the Ed25519 signature covers.
//!
//! Must never: return a statement read from disk that has another format, another key than
//! the trail's, or a signature that does not verify; or keep the signing key it is lent.

use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::problem::Problem;
use crate::audit::event::format_time;
use crate::audit::key::{PublicKey, SigningKey};

pub(crate) const HEAD_FORMAT: &str = "passerelle-audit-head/1";
pub(crate) const ANCHOR_FORMAT: &str = "passerelle-audit-anchor/1";

/// A signed statement about the trail: the head (`head.json`) or the retention anchor
/// (`anchor.json`). The signature is Ed25519 over [`Signed::canonical_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub format: String,
    pub seq: u64,
    pub hash: String,
    pub segment: String,
    pub time: String,
    /// Public key (hex) of the signer.
    pub key: String,
    /// Ed25519 signature (hex).
    pub signature: String,
}

impl Signed {
    pub(crate) fn sign(
        format: &str,
        seq: u64,
        hash: &str,
        segment: &str,
        key: &SigningKey,
    ) -> Self {
        let mut signed = Self {
            format: format.to_string(),
            seq,
            hash: hash.to_string(),
            segment: segment.to_string(),
            time: format_time(&Utc::now()),
            key: key.public_key().to_hex(),
            signature: String::new(),
        };
        signed.signature = key.sign_hex(&signed.canonical_bytes());
        signed
    }

    /// `format \n seq \n hash \n segment \n time \n key \n`: what is signed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            self.format, self.seq, self.hash, self.segment, self.time, self.key
        )
        .into_bytes()
    }

    fn check(&self, format: &str, key: &PublicKey) -> Result<(), String> {
        if self.format != format {
            return Err(format!("format is `{}`, not `{format}`", self.format));
        }
        if self.key != key.to_hex() {
            return Err("signed by another key than the trail's public key".into());
        }
        if !key.verify_hex(&self.canonical_bytes(), &self.signature) {
            return Err("signature does not verify".into());
        }
        Ok(())
    }
}

/// The statement `name` of `dir`, checked: `None` when the file does not exist.
pub(super) fn read_signed(
    dir: &Path,
    name: &str,
    format: &str,
    key: &PublicKey,
) -> Result<Option<Signed>, Problem> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Problem::new(
                Some(name),
                None,
                None,
                format!("cannot read: {}", e.kind()),
            ));
        }
    };
    let signed: Signed = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            Some(name),
            None,
            None,
            format!("not a signed {format} statement ({e}): replaced or forged"),
        )
    })?;
    signed
        .check(format, key)
        .map_err(|e| Problem::new(Some(name), None, None, format!("{e}: replaced or forged")))?;
    Ok(Some(signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::GENESIS;

    #[test]
    fn signed_statements_verify_only_with_their_key() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let head = Signed::sign(HEAD_FORMAT, 3, GENESIS, "audit-000000000001.jsonl", &key);
        assert!(head.check(HEAD_FORMAT, &key.public_key()).is_ok());
        assert!(head.check(ANCHOR_FORMAT, &key.public_key()).is_err());
        assert!(head.check(HEAD_FORMAT, &other.public_key()).is_err());
        let mut forged = head.clone();
        forged.seq = 2;
        assert!(forged.check(HEAD_FORMAT, &key.public_key()).is_err());
    }
}
