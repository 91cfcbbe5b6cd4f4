//! The hub's master secret: 32 random bytes, stored hex-encoded in a file that only the
//! service account may read (mode 0600), or given in an environment variable.

use std::path::Path;

use zeroize::Zeroizing;

use crate::config::PseudonymisationConfig;

/// Length of the master secret, in bytes.
pub const MASTER_KEY_BYTES: usize = 32;

/// The master secret. Zeroized on drop; `Debug` never prints it.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_BYTES]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Why the master secret could not be loaded or written. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key file {file}: {reason}")]
    File { file: String, reason: String },
    #[error(
        "master key file {0} is readable by group or others: run `chmod 600` on it (refusing to start)"
    )]
    TooOpen(String),
    #[error("master key: {0} must hold 64 hexadecimal characters (32 bytes)")]
    Malformed(String),
    #[error("master key: environment variable `{0}` is not set")]
    MissingEnv(String),
    #[error("master key: no source configured")]
    NoSource,
    #[error("master key: the system random generator failed")]
    Random,
}

impl MasterKey {
    /// A fresh random secret from the operating system.
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        getrandom::fill(bytes.as_mut()).map_err(|_| MasterKeyError::Random)?;
        Ok(Self(bytes))
    }

    /// Loads the secret as the `[pseudonymisation]` section says.
    pub fn load(config: &PseudonymisationConfig) -> Result<Self, MasterKeyError> {
        match (&config.master_key_file, &config.master_key_env) {
            (Some(file), _) => Self::load_file(file),
            (None, Some(var)) => {
                let value = Zeroizing::new(
                    std::env::var(var).map_err(|_| MasterKeyError::MissingEnv(var.clone()))?,
                );
                Self::from_hex(value.trim(), &format!("environment variable `{var}`"))
            }
            (None, None) => Err(MasterKeyError::NoSource),
        }
    }

    /// Loads the secret from a file, refusing a file that group or others may read.
    pub fn load_file(path: &Path) -> Result<Self, MasterKeyError> {
        let file = path.display().to_string();
        let text = crate::secret_file::read_private(path).map_err(|e| match e {
            crate::secret_file::SecretFileError::TooOpen => MasterKeyError::TooOpen(file.clone()),
            crate::secret_file::SecretFileError::Io(reason) => MasterKeyError::File {
                file: file.clone(),
                reason,
            },
        })?;
        Self::from_hex(text.trim(), &file)
    }

    fn from_hex(text: &str, source: &str) -> Result<Self, MasterKeyError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        hex::decode_to_slice(text, bytes.as_mut())
            .map_err(|_| MasterKeyError::Malformed(source.to_string()))?;
        Ok(Self(bytes))
    }

    /// Writes the secret to a new file created with mode 0600 (never overwrites).
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        let mut text = Zeroizing::new(hex::encode(self.0.as_ref()));
        text.push('\n');
        crate::secret_file::write_new_private(path, text.as_bytes()).map_err(|e| {
            MasterKeyError::File {
                file: path.display().to_string(),
                reason: e.kind().to_string(),
            }
        })
    }

    /// A master key from raw bytes (tests, benchmarks, key ceremonies).
    pub fn from_bytes(bytes: [u8; MASTER_KEY_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A 32-byte key for a purpose other than pseudonyms (e.g. sealing statement handles),
    /// derived with HKDF-SHA256 under its own salt and label: it reveals neither the master
    /// secret nor any pseudonymisation key, and every gateway of the hub derives the same one.
    pub fn purpose_key(&self, purpose: &str) -> Option<Zeroizing<[u8; 32]>> {
        let hkdf =
            hkdf::Hkdf::<sha2::Sha256>::new(Some(b"passerelle purpose key v1"), self.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA-256's limit: expand cannot fail.
        // SECURITY: any failure gives no key; a key is never defaulted.
        hkdf.expand(purpose.as_bytes(), key.as_mut()).ok()?;
        Some(key)
    }

    /// The secret bytes, for key derivation inside this module only.
    pub(crate) fn expose(&self) -> &[u8; MASTER_KEY_BYTES] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_keys_differ_by_purpose_and_from_the_master() {
        let key = MasterKey::from_bytes([3; MASTER_KEY_BYTES]);
        let a = key.purpose_key("statement handles").unwrap();
        assert_eq!(*a, *key.purpose_key("statement handles").unwrap());
        assert_ne!(*a, *key.purpose_key("other").unwrap());
        assert_ne!(&*a, key.expose());
    }

    #[test]
    fn written_key_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let key = MasterKey::generate().unwrap();
        key.write_new_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = MasterKey::load_file(&path).unwrap();
        assert_eq!(loaded.expose(), key.expose());
        // never overwrites an existing key
        assert!(key.write_new_file(&path).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::generate()
            .unwrap()
            .write_new_file(&path)
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_file(&path).unwrap_err();
        assert!(matches!(err, MasterKeyError::TooOpen(_)));
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "zz-not-hex-but-secret").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = MasterKey::load_file(&path).unwrap_err().to_string();
        assert!(!err.contains("zz-not-hex-but-secret"), "{err}");
        let key = MasterKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&hex::encode(key.expose())));
    }
}
