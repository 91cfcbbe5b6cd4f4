//! What is wrong with a trail: [`Problem`], the first thing found, with where it was found.
//!
//! Owns: how a problem is located (file, line, first bad record) and printed.
//!
//! Must never: hold an event's fields (a problem names a file, a line and seqs): it is printed
//! by `audit verify` and in the errors of [`crate::audit::AuditLog::open`].

/// The first thing found wrong with a trail, naming the segment, line and record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(.file, .line))]
pub struct Problem {
    /// Segment (or head/anchor file) where it was found.
    pub file: Option<String>,
    /// 1-based line in that segment.
    pub line: Option<usize>,
    /// The first bad record, when one can be named.
    pub seq: Option<u64>,
    pub message: String,
}

fn location(file: &Option<String>, line: &Option<usize>) -> String {
    match (file, line) {
        (Some(f), Some(l)) => format!("{f}:{l}: "),
        (Some(f), None) => format!("{f}: "),
        _ => String::new(),
    }
}

impl Problem {
    pub(crate) fn new(
        file: Option<&str>,
        line: Option<usize>,
        seq: Option<u64>,
        message: String,
    ) -> Self {
        Self {
            file: file.map(str::to_string),
            line,
            seq,
            message,
        }
    }
}
