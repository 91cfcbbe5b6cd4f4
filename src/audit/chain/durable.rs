//! Durable writes in the trail's folder: a file replaced atomically, a folder fsynced.
//!
//! Owns: the order temporary file, fsync, rename, fsync of the folder (files `0600`).
//!
//! Must never: return `Ok` before what it wrote (the file's bytes, the rename, a creation or
//! removal in the folder) is on disk.

use std::io::Write;
use std::path::Path;

/// Writes `name` in `dir` atomically: temporary file, fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        // SECURITY: 0600, also over a temporary file a crash left with another mode.
        let mut file = crate::private_fs::create_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// fsync of a folder, so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
