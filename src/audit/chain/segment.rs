//! Segment files: their names (`audit-<first seq, 12 digits>.jsonl`), what is known of one
//! found on disk ([`SegmentInfo`]), and how its bytes split into lines.
//!
//! Owns: the name format (which sorts like the seqs) and the line splitting that tells a
//! complete last line from a torn one.
//!
//! Must never: take for a segment a file whose name is not `audit-<digits>.jsonl`, or hand out
//! a last piece without its newline as a complete line.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// `audit-000000000042.jsonl`: the segment whose first record is seq 42.
pub fn segment_name(first_seq: u64) -> String {
    format!("audit-{first_seq:012}.jsonl")
}

/// The first seq named by a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment as found on disk.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub name: String,
    pub path: PathBuf,
    pub first_seq: u64,
    /// 0 when the segment holds no record after the anchor.
    pub last_seq: u64,
    pub last_hash: String,
    pub first_time: Option<DateTime<Utc>>,
    pub last_time: Option<DateTime<Utc>>,
    pub len: u64,
}

/// Lines with their index; `None` for a last piece without its newline.
pub(super) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Option<&[u8]>)> {
    let complete = bytes.ends_with(b"\n");
    let body = if complete {
        &bytes[..bytes.len() - 1]
    } else {
        bytes
    };
    let pieces: Vec<&[u8]> = if body.is_empty() && complete {
        vec![&[][..]]
    } else if body.is_empty() {
        Vec::new()
    } else {
        body.split(|b| *b == b'\n').collect()
    };
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(move |(i, line)| (i, (complete || i + 1 < count).then_some(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_name(42), "audit-000000000042.jsonl");
        assert_eq!(parse_segment_name("audit-000000000042.jsonl"), Some(42));
        assert_eq!(parse_segment_name("audit-.jsonl"), None);
        assert_eq!(parse_segment_name("head.json"), None);
    }

    #[test]
    fn lines_mark_a_torn_tail() {
        let all: Vec<_> = lines(b"a\nb\n").collect();
        assert_eq!(all, vec![(0, Some(&b"a"[..])), (1, Some(&b"b"[..]))]);
        let torn: Vec<_> = lines(b"a\nb").collect();
        assert_eq!(torn, vec![(0, Some(&b"a"[..])), (1, None)]);
        assert_eq!(lines(b"").count(), 0);
    }
}
