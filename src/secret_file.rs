//! Secret files (the pseudonymisation master key, the audit signing key, TLS private keys):
//! read only when group and others cannot read them, written new with mode 0600.
//!
//! Must never: return a secret read from a file others may read, overwrite an existing file, or
//! put file contents in an error.

use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

/// Why a secret file could not be used (the contents never appear).
#[derive(Debug)]
pub enum SecretFileError {
    /// The file could not be read or written (the `io::ErrorKind` as text).
    Io(String),
    /// Group or others may read it.
    TooOpen,
}

/// Reads `path`, refusing a file whose mode lets group or others in.
pub fn read_private(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    let io = |e: std::io::Error| SecretFileError::Io(e.kind().to_string());
    let metadata = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // SECURITY: a secret others can read is no longer a secret: refuse it.
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(SecretFileError::TooOpen);
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    Ok(Zeroizing::new(std::fs::read_to_string(path).map_err(io)?))
}

/// Writes `bytes` to a new file (missing parents created 0700, the file 0600, synced); never
/// overwrites.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        crate::private_fs::create_dir_all(parent)?;
    }
    let mut file = crate::private_fs::options()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
