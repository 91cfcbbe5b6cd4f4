//! The on-disk format: hash-chained JSON-lines segments, the signed head, the signed retention
//! anchor; and the scan that verifies them (used by `passerelle audit verify` and by
//! [`super::AuditLog::open`] before it continues a trail).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::AuditEvent;
use super::key::{PublicKey, SigningKey};

/// `prev` of the first record of a trail: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The signed head: last seq, last hash, segment, time.
pub const HEAD_FILE: &str = "head.json";
/// The signed anchor left by retention: the last expired record's seq and hash.
pub const ANCHOR_FILE: &str = "anchor.json";
/// The public key that verifies heads and anchors (hex), written when a trail is opened.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";
/// Lock held by the one process writing the trail.
pub(crate) const LOCK_FILE: &str = ".lock";

pub(crate) const HEAD_FORMAT: &str = "passerelle-audit-head/1";
pub(crate) const ANCHOR_FORMAT: &str = "passerelle-audit-anchor/1";

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

/// Hex SHA-256 of a record's line, without its terminating newline.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

#[derive(Serialize)]
struct RecordOut<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// One record's line, newline included.
pub(crate) fn encode_record(
    seq: u64,
    prev: &str,
    event: &AuditEvent,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(&RecordOut { seq, prev, event })?;
    line.push(b'\n');
    Ok(line)
}

/// What verification reads of each record: the chain fields and the time.
#[derive(Deserialize)]
struct RecordHeader {
    seq: u64,
    prev: String,
    #[serde(default)]
    time: Option<String>,
}

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
            time: super::event::format_time(&Utc::now()),
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
    fn new(file: Option<&str>, line: Option<usize>, seq: Option<u64>, message: String) -> Self {
        Self {
            file: file.map(str::to_string),
            line,
            seq,
            message,
        }
    }
}

/// How strict a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `audit verify`: everything must be covered by the signed head.
    Strict,
    /// Opening for writing: a torn last line and complete records after the head (a crash
    /// between the segment's fsync and the head's rename) are repaired.
    Recover,
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

/// What a scan found.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    /// Segments holding records after the anchor (plus an empty last one), in order.
    pub segments: Vec<SegmentInfo>,
    /// Segments entirely before the anchor (retention interrupted before deleting them).
    pub expired: Vec<PathBuf>,
    pub last_seq: u64,
    pub last_hash: String,
    pub head: Option<Signed>,
    pub anchor: Option<Signed>,
    /// Records after the head (only in [`Mode::Recover`]).
    pub unsigned_tail: u64,
    /// A torn last line: (segment, length to truncate it to) (only in [`Mode::Recover`]).
    pub torn: Option<(PathBuf, u64)>,
    /// Records checked (after the anchor).
    pub records: u64,
}

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

/// Lines with their index; `None` for a last piece without its newline.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Option<&[u8]>)> {
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

fn parse_header(line: &[u8]) -> Option<RecordHeader> {
    serde_json::from_slice::<RecordHeader>(line).ok()
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The `seq`/`prev` checks of one record against what was expected.
fn check_link(
    file: &str,
    line: usize,
    expected_seq: u64,
    expected_prev: &str,
    header: &RecordHeader,
) -> Result<(), Problem> {
    if header.seq < expected_seq {
        return Err(Problem::new(
            Some(file),
            Some(line),
            Some(header.seq),
            format!(
                "record seq {} found where seq {expected_seq} was expected: records reordered or duplicated",
                header.seq
            ),
        ));
    }
    if header.seq > expected_seq {
        return Err(Problem::new(
            Some(file),
            Some(line),
            Some(expected_seq),
            format!(
                "record seq {expected_seq} is missing (found seq {} in its place): removed or moved",
                header.seq
            ),
        ));
    }
    if header.prev != expected_prev {
        let before = expected_seq.saturating_sub(1);
        return Err(Problem::new(
            Some(file),
            Some(line),
            Some(before),
            format!(
                "record seq {before} was modified: its hash does not match the `prev` of record seq {expected_seq}"
            ),
        ));
    }
    Ok(())
}

fn read_signed(
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

/// Reads and checks every segment, the anchor and the head.
pub(crate) fn scan(dir: &Path, key: &PublicKey, mode: Mode) -> Result<Scan, Problem> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Problem::new(
            None,
            None,
            None,
            format!("cannot read {}: {}", dir.display(), e.kind()),
        )
    })?;
    let mut files = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(seq) = parse_segment_name(&name) {
            files.insert(seq, (name, entry.path()));
        }
    }
    let anchor = read_signed(dir, ANCHOR_FILE, ANCHOR_FORMAT, key)?;
    let head = read_signed(dir, HEAD_FILE, HEAD_FORMAT, key)?;

    let (start_seq, start_hash) = anchor
        .as_ref()
        .map_or((1, GENESIS.to_string()), |a| (a.seq + 1, a.hash.clone()));
    let mut expected_seq = start_seq;
    let mut expected_prev = start_hash.clone();
    let mut hash_at_head: Option<String> = head
        .as_ref()
        .filter(|h| h.seq + 1 == start_seq)
        .map(|_| start_hash);
    let mut segments = Vec::new();
    let mut expired = Vec::new();
    let mut torn = None;
    let mut records = 0u64;
    let ordered: Vec<(u64, (String, PathBuf))> = files.into_iter().collect();

    for (index, (name_seq, (name, path))) in ordered.iter().enumerate() {
        let next_name_seq = ordered.get(index + 1).map(|(s, _)| *s);
        if next_name_seq.is_some_and(|next| next <= start_seq) && anchor.is_some() {
            expired.push(path.clone());
            continue;
        }
        let is_last = index + 1 == ordered.len();
        let bytes = std::fs::read(path).map_err(|e| {
            Problem::new(Some(name), None, None, format!("cannot read: {}", e.kind()))
        })?;
        let mut info = SegmentInfo {
            name: name.clone(),
            path: path.clone(),
            first_seq: *name_seq,
            last_seq: 0,
            last_hash: String::new(),
            first_time: None,
            last_time: None,
            len: bytes.len() as u64,
        };
        let mut offset = 0u64;
        let mut first_in_file = true;
        for (i, line) in lines(&bytes) {
            let number = i + 1;
            let Some(line) = line else {
                if mode == Mode::Recover && is_last {
                    torn = Some((path.clone(), offset));
                    info.len = offset;
                    break;
                }
                return Err(Problem::new(
                    Some(name),
                    Some(number),
                    Some(expected_seq),
                    format!("record seq {expected_seq} is incomplete: truncated or torn write"),
                ));
            };
            offset += line.len() as u64 + 1;
            let header = parse_header(line).ok_or_else(|| {
                Problem::new(
                    Some(name),
                    Some(number),
                    Some(expected_seq),
                    format!("record seq {expected_seq} is not a valid audit record: modified"),
                )
            })?;
            if first_in_file && header.seq != *name_seq {
                return Err(Problem::new(
                    Some(name),
                    Some(number),
                    Some(header.seq.min(*name_seq)),
                    format!(
                        "segment should start at seq {name_seq} but its first record is seq {}: records removed, moved or file renamed",
                        header.seq
                    ),
                ));
            }
            first_in_file = false;
            let hash = line_hash(line);
            if anchor.is_some() && header.seq < start_seq && records == 0 {
                // Before the anchor: retention was interrupted; only the anchor's own record
                // is checked.
                if let Some(a) = anchor.as_ref().filter(|a| a.seq == header.seq)
                    && a.hash != hash
                {
                    return Err(Problem::new(
                        Some(name),
                        Some(number),
                        Some(header.seq),
                        format!(
                            "record seq {} does not match the signed anchor: modified",
                            header.seq
                        ),
                    ));
                }
                continue;
            }
            check_link(name, number, expected_seq, &expected_prev, &header)?;
            if head.as_ref().is_some_and(|h| h.seq == header.seq) {
                hash_at_head = Some(hash.clone());
            }
            let time = parse_time(header.time.as_deref());
            if info.first_time.is_none() {
                info.first_time = time;
            }
            info.last_time = time;
            info.last_seq = header.seq;
            info.last_hash = hash.clone();
            expected_prev = hash;
            expected_seq += 1;
            records += 1;
        }
        if info.last_seq == 0 {
            if !is_last || *name_seq != expected_seq {
                return Err(Problem::new(
                    Some(name),
                    None,
                    Some(expected_seq),
                    "segment holds no record where records were expected: emptied".into(),
                ));
            }
            info.first_seq = expected_seq;
        }
        segments.push(info);
    }

    let last_seq = expected_seq - 1;
    let last_hash = expected_prev;
    let mut unsigned_tail = 0;
    match &head {
        None => {
            if records > 0 || anchor.is_some() {
                return Err(Problem::new(
                    Some(HEAD_FILE),
                    None,
                    None,
                    "missing while the trail holds records: head removed".into(),
                ));
            }
        }
        Some(h) => {
            if h.seq > last_seq {
                let file = segments.last().map(|s| s.name.clone());
                return Err(Problem::new(
                    file.as_deref(),
                    None,
                    Some(last_seq + 1),
                    format!(
                        "records seq {} to {} are missing: the trail was truncated (the signed head is at seq {})",
                        last_seq + 1,
                        h.seq,
                        h.seq
                    ),
                ));
            }
            if hash_at_head.as_deref() != Some(h.hash.as_str()) {
                return Err(Problem::new(
                    Some(HEAD_FILE),
                    None,
                    Some(h.seq),
                    format!(
                        "record seq {} does not match the signed head: modified, or head replaced",
                        h.seq
                    ),
                ));
            }
            if h.seq < last_seq {
                if mode == Mode::Strict {
                    return Err(Problem::new(
                        Some(HEAD_FILE),
                        None,
                        Some(h.seq + 1),
                        format!(
                            "records seq {} to {last_seq} come after the signed head (seq {}): not covered by a signature (appended, or the writer stopped before signing; opening the trail for writing adopts them)",
                            h.seq + 1,
                            h.seq
                        ),
                    ));
                }
                unsigned_tail = last_seq - h.seq;
            } else if h.seq > 0 {
                let last_segment = segments
                    .iter()
                    .rev()
                    .find(|s| s.last_seq > 0)
                    .map(|s| s.name.as_str());
                if last_segment != Some(h.segment.as_str()) {
                    return Err(Problem::new(
                        Some(HEAD_FILE),
                        None,
                        Some(h.seq),
                        format!(
                            "names segment `{}` but record seq {} is in `{}`: segments renamed or replaced",
                            h.segment,
                            h.seq,
                            last_segment.unwrap_or("")
                        ),
                    ));
                }
            }
        }
    }
    Ok(Scan {
        segments,
        expired,
        last_seq,
        last_hash,
        head,
        anchor,
        unsigned_tail,
        torn,
        records,
    })
}

/// Writes `name` in `dir` atomically: temporary file, fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        // SECURITY: 0600, also over a temporary file a crash left with another mode.
        let mut file = super::private::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        super::private::restrict(&file)?;
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
