//! The audit signing key: an Ed25519 seed (32 random bytes, hex-encoded) in a file only the
//! service account may read (mode 0600), generated with the hub next to the master key. Its
//! public half (hex) is written next to it (`.pub`) and into the trail folder (`audit.pub`).

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

/// Length of the seed and of the public key, in bytes.
pub const SEED_BYTES: usize = 32;

/// Why the signing key could not be loaded or written. Never contains key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SigningKeyError {
    #[error("audit signing key file {file}: {reason}")]
    File { file: String, reason: String },
    #[error(
        "audit signing key file {0} is readable by group or others: run `chmod 600` on it (refusing to start)"
    )]
    TooOpen(String),
    #[error("audit signing key: {0} must hold 64 hexadecimal characters (32 bytes)")]
    Malformed(String),
    #[error("audit signing key: the system random generator failed")]
    Random,
}

/// The private signing key. `Debug` never prints it; the seed is zeroized on drop.
pub struct SigningKey {
    seed: Zeroizing<[u8; SEED_BYTES]>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public_hex())
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Result<Self, SigningKeyError> {
        let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
        getrandom::fill(seed.as_mut()).map_err(|_| SigningKeyError::Random)?;
        Self::from_seed(seed, "generated seed")
    }

    fn from_seed(seed: Zeroizing<[u8; SEED_BYTES]>, source: &str) -> Result<Self, SigningKeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| SigningKeyError::Malformed(source.to_string()))?;
        Ok(Self { seed, pair })
    }

    /// Loads the seed from a file, refusing a file that group or others may read.
    pub fn load_file(path: &Path) -> Result<Self, SigningKeyError> {
        let file = path.display().to_string();
        // SECURITY: a signing key others can read lets them forge heads: refuse to start.
        let text = crate::secret_file::read_private(path).map_err(|e| match e {
            crate::secret_file::SecretFileError::TooOpen => SigningKeyError::TooOpen(file.clone()),
            crate::secret_file::SecretFileError::Io(reason) => SigningKeyError::File {
                file: file.clone(),
                reason,
            },
        })?;
        let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| SigningKeyError::Malformed(file.clone()))?;
        Self::from_seed(seed, &file)
    }

    /// Writes the seed to a new file (mode 0600, never overwrites) and the public key to
    /// `<path>.pub` (see [`public_key_path`]).
    pub fn write_new_files(&self, path: &Path) -> Result<(), SigningKeyError> {
        let file = path.display().to_string();
        let err = |e: std::io::Error| SigningKeyError::File {
            file: file.clone(),
            reason: e.kind().to_string(),
        };
        let mut text = Zeroizing::new(hex::encode(self.seed.as_ref()));
        text.push('\n');
        crate::secret_file::write_new_private(path, text.as_bytes()).map_err(err)?;
        let public = public_key_path(path);
        std::fs::write(&public, format!("{}\n", self.public_hex())).map_err(|e| {
            SigningKeyError::File {
                file: public.display().to_string(),
                reason: e.kind().to_string(),
            }
        })
    }

    /// The public key, 32 bytes.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; SEED_BYTES];
        let raw = self.pair.public_key().as_ref();
        if raw.len() == SEED_BYTES {
            bytes.copy_from_slice(raw);
        }
        PublicKey(bytes)
    }

    fn public_hex(&self) -> String {
        hex::encode(self.public_key().0)
    }

    /// Ed25519 signature of `message`, 64 bytes, hex.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.pair.sign(message).as_ref())
    }
}

/// `keys/audit-signing.key` → `keys/audit-signing.pub`.
pub fn public_key_path(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; SEED_BYTES]);

impl PublicKey {
    /// Parses 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; SEED_BYTES];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Reads a public key file (64 hexadecimal characters).
    pub fn load_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("public key {}: {}", path.display(), e.kind()))?;
        Self::from_hex(&text).ok_or_else(|| {
            format!(
                "public key {}: must hold 64 hexadecimal characters",
                path.display()
            )
        })
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// True when `signature_hex` is this key's Ed25519 signature of `message`.
    pub fn verify_hex(&self, message: &[u8], signature_hex: &str) -> bool {
        let Ok(signature) = hex::decode(signature_hex) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_key_is_private_reloads_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit-signing.key");
        let key = SigningKey::generate().unwrap();
        key.write_new_files(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = SigningKey::load_file(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        let public = PublicKey::load_file(&public_key_path(&path)).unwrap();
        assert_eq!(public, key.public_key());
        let signature = loaded.sign_hex(b"hello");
        assert!(public.verify_hex(b"hello", &signature));
        assert!(!public.verify_hex(b"hellO", &signature));
        assert!(key.write_new_files(&path).is_err());
        let seed = std::fs::read_to_string(&path).unwrap();
        assert!(!format!("{key:?}").contains(seed.trim()));
    }

    #[cfg(unix)]
    #[test]
    fn key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing.key");
        SigningKey::generate()
            .unwrap()
            .write_new_files(&path)
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            SigningKey::load_file(&path),
            Err(SigningKeyError::TooOpen(_))
        ));
    }
}
