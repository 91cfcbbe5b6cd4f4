//! Files and folders that are the hub's alone (the audit trail, pseudonymised extracts, secret
//! keys): folders are created `0700`, files `0600`, whatever the process umask (another user
//! of the host must not read who looked up whom, or the raw columns beside a pseudonym).
//!
//! Owns: how the hub creates private folders and files. Must never: loosen the mode of an
//! existing file or folder, or tighten an existing folder (an operator may have granted an
//! auditors' group read access on purpose; [`warn_if_open`] says so in the log).

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of private folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each `0700`.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Options that create a file `0600` (an existing file keeps its mode).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Sets a file being rewritten (a leftover temporary file) back to `0600`.
pub fn restrict(file: &std::fs::File) -> std::io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
}

/// Creates (or truncates) `path` for writing, `0600` even if it existed with another mode.
pub fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    let file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Logs a warning when `dir` (`what` it holds) lets its group or others in.
pub fn warn_if_open(dir: &Path, what: &str) {
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            what,
            "folder readable by others than the hub; 0700 is advised"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_0700_and_files_0600_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        for d in [root.path().join("a"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, DIR_MODE, "{}", d.display());
        }
        let file = dir.join("f");
        options().create_new(true).write(true).open(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }
}
