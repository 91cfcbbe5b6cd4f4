//! `passerelle audit verify`: a whole trail folder ([`verify_dir`], a strict [`scan`]) or one
//! segment file on its own ([`verify_segment`]), and the report printed when all is well.
//!
//! Owns: [`VerifyReport`] and which key is trusted (the one passed, else the folder's
//! `audit.pub`).
//!
//! Must never: repair anything (a torn line or records after the signed head are problems
//! here), or report a trail intact that has no signed head.

use std::path::Path;

use super::problem::Problem;
use super::record::{GENESIS, check_link, line_hash, parse_header};
use super::scan::{Mode, scan};
use super::segment::lines;
use super::{HEAD_FILE, PUBLIC_KEY_FILE};
use crate::audit::key::PublicKey;

/// What a successful verification found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub records: u64,
    pub segments: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: String,
    pub anchor_seq: Option<u64>,
    pub public_key: String,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.records == 0 {
            write!(f, "intact: no records")?;
        } else {
            write!(
                f,
                "intact: {} records (seq {} to {}) in {} segment(s)",
                self.records, self.first_seq, self.last_seq, self.segments
            )?;
        }
        write!(
            f,
            "; signed head at seq {} (hash {}), key {}",
            self.last_seq, self.last_hash, self.public_key
        )?;
        if let Some(anchor) = self.anchor_seq {
            write!(f, "; records up to seq {anchor} expired (signed anchor)")?;
        }
        Ok(())
    }
}

/// Verifies a whole trail folder: every segment's chain, the anchor and the signed head.
/// `public_key`: the key to trust; `None` reads `audit.pub` from the folder.
pub fn verify_dir(dir: &Path, public_key: Option<&PublicKey>) -> Result<VerifyReport, Problem> {
    let key = match public_key {
        Some(key) => *key,
        None => PublicKey::load_file(&dir.join(PUBLIC_KEY_FILE)).map_err(|e| {
            Problem::new(
                Some(PUBLIC_KEY_FILE),
                None,
                None,
                format!("{e} (pass --public-key)"),
            )
        })?,
    };
    let scan = scan(dir, &key, Mode::Strict)?;
    if scan.head.is_none() {
        return Err(Problem::new(
            Some(HEAD_FILE),
            None,
            None,
            "missing: not an audit trail folder, or its head was removed".into(),
        ));
    }
    let first_seq = scan.anchor.as_ref().map_or(1, |a| a.seq + 1);
    Ok(VerifyReport {
        records: scan.records,
        segments: scan.segments.iter().filter(|s| s.last_seq > 0).count(),
        first_seq,
        last_seq: scan.last_seq,
        last_hash: scan.last_hash,
        anchor_seq: scan.anchor.map(|a| a.seq),
        public_key: key.to_hex(),
    })
}

/// Verifies one segment file on its own: records are consecutive and each chains to the one
/// before (the first to the genesis value when it is seq 1). Returns (first seq, last seq,
/// last hash). The head and the neighbouring segments are not checked.
pub fn verify_segment(path: &Path) -> Result<(u64, u64, String), Problem> {
    let name = file_name(path);
    let bytes = std::fs::read(path).map_err(|e| {
        Problem::new(
            Some(&name),
            None,
            None,
            format!("cannot read: {}", e.kind()),
        )
    })?;
    let mut expected: Option<(u64, String)> = None;
    let mut first = 0;
    for (index, line) in lines(&bytes) {
        let number = index + 1;
        let Some(line) = line else {
            let seq = expected.as_ref().map(|(s, _)| *s);
            return Err(Problem::new(
                Some(&name),
                Some(number),
                seq,
                "incomplete last record (truncated or torn write)".into(),
            ));
        };
        let header = parse_header(line).ok_or_else(|| {
            let seq = expected.as_ref().map(|(s, _)| *s);
            Problem::new(
                Some(&name),
                Some(number),
                seq,
                "not a valid audit record (modified)".into(),
            )
        })?;
        match &expected {
            None => {
                first = header.seq;
                if header.seq == 1 && header.prev != GENESIS {
                    return Err(Problem::new(
                        Some(&name),
                        Some(number),
                        Some(1),
                        "record seq 1 does not chain to the genesis value".into(),
                    ));
                }
            }
            Some((seq, prev)) => check_link(&name, number, *seq, prev, &header)?,
        }
        expected = Some((header.seq + 1, line_hash(line)));
    }
    match expected {
        Some((next, hash)) => Ok((first, next - 1, hash)),
        None => Err(Problem::new(Some(&name), None, None, "no records".into())),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
