//! The size and modification time of a data file: what caches built from a file (lookup key
//! indexes, Arrow schemas) compare to notice that the file was replaced.
//!
//! Must never: be taken as proof that a file is unchanged when it could not be read (no stamp
//! then: callers treat that as "read the file again").

use std::path::Path;
use std::time::SystemTime;

/// Size and modification time of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: SystemTime,
}

impl FileStamp {
    /// The file's stamp, or `None` when its metadata cannot be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok()?,
        })
    }

    /// The stamp as text (`<bytes>:<nanoseconds since the epoch>`), to store beside something
    /// built from the file.
    pub fn token(&self) -> String {
        let nanos = self
            .modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}:{nanos}", self.len)
    }
}
