//! The scan of a trail folder, in named steps: list the segments, read the signed anchor and
//! head, set aside the segments retention left behind, read the segments record by record
//! along the chain, check the signed head. [`verify_dir`](super::verify_dir) scans in
//! [`Mode::Strict`], the writer in [`Mode::Recover`] before it continues a trail.
//!
//! Owns: [`Scan`] (what was found), the order of the checks, and so which [`Problem`] is
//! reported first.
//!
//! Must never: write, truncate or remove a file (what [`Mode::Recover`] tolerates — a torn last
//! line, records after the head — and the expired segments are only reported, for the writer
//! to repair); or pass over a record after the anchor without checking its link.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::problem::Problem;
use super::record::{GENESIS, RecordHeader, check_link, line_hash, parse_header, parse_time};
use super::segment::{SegmentInfo, lines, parse_segment_name};
use super::signed::{ANCHOR_FORMAT, HEAD_FORMAT, Signed, read_signed};
use super::{ANCHOR_FILE, HEAD_FILE};
use crate::audit::key::PublicKey;

/// How strict a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `audit verify`: everything must be covered by the signed head.
    Strict,
    /// Opening for writing: a torn last line and complete records after the head (a crash
    /// between the segment's fsync and the head's rename) are repaired.
    Recover,
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

/// Reads and checks every segment, the anchor and the head.
pub(crate) fn scan(dir: &Path, key: &PublicKey, mode: Mode) -> Result<Scan, Problem> {
    let listed = list_segments(dir)?;
    let (anchor, head) = read_anchor_and_head(dir, key)?;
    let (expired, listed) = set_aside_expired(listed, anchor.as_ref());
    let mut walk = Walk::start(mode, anchor.as_ref(), head.as_ref());
    let segments = read_segments(&mut walk, &listed)?;
    let unsigned_tail = check_head(&walk, &segments)?;
    let Walk {
        expected_seq,
        expected_prev,
        torn,
        records,
        ..
    } = walk;
    Ok(Scan {
        segments,
        expired,
        last_seq: expected_seq - 1,
        last_hash: expected_prev,
        head,
        anchor,
        unsigned_tail,
        torn,
        records,
    })
}

/// A segment file found in the folder.
struct Listed {
    /// The first seq its name gives.
    first_seq: u64,
    name: String,
    path: PathBuf,
}

/// Step 1: the segment files of `dir`, in the order of their first seq.
fn list_segments(dir: &Path) -> Result<Vec<Listed>, Problem> {
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
    Ok(files
        .into_iter()
        .map(|(first_seq, (name, path))| Listed {
            first_seq,
            name,
            path,
        })
        .collect())
}

/// Step 2: the signed anchor, then the signed head, each checked with `key` (`None` when its
/// file does not exist).
fn read_anchor_and_head(
    dir: &Path,
    key: &PublicKey,
) -> Result<(Option<Signed>, Option<Signed>), Problem> {
    let anchor = read_signed(dir, ANCHOR_FILE, ANCHOR_FORMAT, key)?;
    let head = read_signed(dir, HEAD_FILE, HEAD_FORMAT, key)?;
    Ok((anchor, head))
}

/// Step 3: with an anchor, the segments whose next segment starts at or before the first seq
/// after the anchor hold only expired records (retention was interrupted before deleting
/// them): their paths, set aside unread, and the segments left to read. Names sort like seqs,
/// so the expired ones are the first ones, and the last segment is never one of them.
fn set_aside_expired(listed: Vec<Listed>, anchor: Option<&Signed>) -> (Vec<PathBuf>, Vec<Listed>) {
    let start_seq = anchor.map_or(1, |a| a.seq + 1);
    let mut expired = Vec::new();
    let mut kept = Vec::new();
    let mut listed = listed.into_iter().peekable();
    while let Some(segment) = listed.next() {
        let next_first_seq = listed.peek().map(|s| s.first_seq);
        if next_first_seq.is_some_and(|next| next <= start_seq) && anchor.is_some() {
            expired.push(segment.path);
        } else {
            kept.push(segment);
        }
    }
    (expired, kept)
}

/// Step 4: every segment left, in order, read along the chain.
fn read_segments(walk: &mut Walk<'_>, listed: &[Listed]) -> Result<Vec<SegmentInfo>, Problem> {
    let mut segments = Vec::new();
    for (index, segment) in listed.iter().enumerate() {
        let is_last = index + 1 == listed.len();
        segments.push(walk.read_segment(segment, is_last)?);
    }
    Ok(segments)
}

/// Where the walk along the chain stands: the record expected next, and what was met so far.
struct Walk<'a> {
    mode: Mode,
    anchor: Option<&'a Signed>,
    head: Option<&'a Signed>,
    /// The first seq after the anchor (1 without one).
    start_seq: u64,
    expected_seq: u64,
    expected_prev: String,
    /// The hash of the record the head names, once met (the anchor's when the head is at it).
    hash_at_head: Option<String>,
    torn: Option<(PathBuf, u64)>,
    records: u64,
}

impl<'a> Walk<'a> {
    /// The walk starts where the anchor leaves the chain: after it, or at seq 1 and the genesis
    /// value without one.
    fn start(mode: Mode, anchor: Option<&'a Signed>, head: Option<&'a Signed>) -> Self {
        let (start_seq, start_hash) =
            anchor.map_or((1, GENESIS.to_string()), |a| (a.seq + 1, a.hash.clone()));
        let hash_at_head = head
            .filter(|h| h.seq + 1 == start_seq)
            .map(|_| start_hash.clone());
        Self {
            mode,
            anchor,
            head,
            start_seq,
            expected_seq: start_seq,
            expected_prev: start_hash,
            hash_at_head,
            torn: None,
            records: 0,
        }
    }

    /// One segment: its records, each where the chain expects it.
    fn read_segment(&mut self, segment: &Listed, is_last: bool) -> Result<SegmentInfo, Problem> {
        let Listed {
            first_seq: name_seq,
            name,
            path,
        } = segment;
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
                if self.mode == Mode::Recover && is_last {
                    self.torn = Some((path.clone(), offset));
                    info.len = offset;
                    break;
                }
                return Err(Problem::new(
                    Some(name),
                    Some(number),
                    Some(self.expected_seq),
                    format!(
                        "record seq {} is incomplete: truncated or torn write",
                        self.expected_seq
                    ),
                ));
            };
            offset += line.len() as u64 + 1;
            let header = parse_header(line).ok_or_else(|| {
                Problem::new(
                    Some(name),
                    Some(number),
                    Some(self.expected_seq),
                    format!(
                        "record seq {} is not a valid audit record: modified",
                        self.expected_seq
                    ),
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
            self.follow(name, number, line, &header, &mut info)?;
        }
        if info.last_seq == 0 {
            if !is_last || *name_seq != self.expected_seq {
                return Err(Problem::new(
                    Some(name),
                    None,
                    Some(self.expected_seq),
                    "segment holds no record where records were expected: emptied".into(),
                ));
            }
            info.first_seq = self.expected_seq;
        }
        Ok(info)
    }

    /// One record: before the anchor only the anchor's own record is checked; after it, the
    /// record must link to the one before, and the chain moves on.
    fn follow(
        &mut self,
        name: &str,
        number: usize,
        line: &[u8],
        header: &RecordHeader,
        info: &mut SegmentInfo,
    ) -> Result<(), Problem> {
        let hash = line_hash(line);
        if self.anchor.is_some() && header.seq < self.start_seq && self.records == 0 {
            // Before the anchor: retention was interrupted; only the anchor's own record
            // is checked.
            if let Some(a) = self.anchor.filter(|a| a.seq == header.seq)
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
            return Ok(());
        }
        check_link(name, number, self.expected_seq, &self.expected_prev, header)?;
        if self.head.is_some_and(|h| h.seq == header.seq) {
            self.hash_at_head = Some(hash.clone());
        }
        let time = parse_time(header.time.as_deref());
        if info.first_time.is_none() {
            info.first_time = time;
        }
        info.last_time = time;
        info.last_seq = header.seq;
        info.last_hash = hash.clone();
        self.expected_prev = hash;
        self.expected_seq += 1;
        self.records += 1;
        Ok(())
    }
}

/// Step 5: the signed head covers the chain: present when the trail holds records, not beyond
/// its end, at a record whose hash it holds, naming that record's segment. Returns how many
/// records come after it (a problem in [`Mode::Strict`]).
fn check_head(walk: &Walk<'_>, segments: &[SegmentInfo]) -> Result<u64, Problem> {
    let last_seq = walk.expected_seq - 1;
    let Some(h) = walk.head else {
        if walk.records > 0 || walk.anchor.is_some() {
            return Err(Problem::new(
                Some(HEAD_FILE),
                None,
                None,
                "missing while the trail holds records: head removed".into(),
            ));
        }
        return Ok(0);
    };
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
    if walk.hash_at_head.as_deref() != Some(h.hash.as_str()) {
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
        if walk.mode == Mode::Strict {
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
        return Ok(last_seq - h.seq);
    }
    if h.seq > 0 {
        check_head_segment(h, segments)?;
    }
    Ok(0)
}

/// The head names the segment that holds its record (the last one holding records).
fn check_head_segment(h: &Signed, segments: &[SegmentInfo]) -> Result<(), Problem> {
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
    Ok(())
}
