//! The on-disk format: hash-chained JSON-lines segments, the signed head, the signed retention
//! anchor; and the scan that verifies them (used by `passerelle audit verify` and by
//! [`super::AuditLog::open`] before it continues a trail).
//!
//! Owns: the trail's file names ([`HEAD_FILE`], [`ANCHOR_FILE`], [`PUBLIC_KEY_FILE`], the
//! lock) and, one part each: segment files (`segment`), record lines and their links
//! (`record`), signed statements (`signed`), what is found wrong (`problem`), the scan in named
//! steps (`scan`), verification (`verify`), durable writes (`durable`).
//!
//! Must never: call a trail intact before every record after the anchor is chained to the one
//! before it and the signed head checked with the trail's public key; or keep a signing key
//! (the writer lends it to [`Signed::sign`] for one statement).

mod durable;
mod problem;
mod record;
mod scan;
mod segment;
mod signed;
mod verify;

pub use problem::Problem;
pub use record::{GENESIS, line_hash};
pub use segment::{parse_segment_name, segment_name};
pub use signed::Signed;
pub use verify::{VerifyReport, verify_dir, verify_segment};

pub(crate) use durable::{sync_dir, write_atomic};
pub(crate) use record::encode_record;
pub(crate) use scan::{Mode, scan};
pub(crate) use segment::SegmentInfo;
pub(crate) use signed::{ANCHOR_FORMAT, HEAD_FORMAT};

/// The signed head: last seq, last hash, segment, time.
pub const HEAD_FILE: &str = "head.json";
/// The signed anchor left by retention: the last expired record's seq and hash.
pub const ANCHOR_FILE: &str = "anchor.json";
/// The public key that verifies heads and anchors (hex), written when a trail is opened.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";
/// Lock held by the one process writing the trail.
pub(crate) const LOCK_FILE: &str = ".lock";
