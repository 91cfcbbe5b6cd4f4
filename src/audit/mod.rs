//! Audit: one tamper-evident record for every decision, written before the answer leaves.
//!
//! Owns (as the audit issue lands): audit events, the hash-chained append-only segment files
//! with a signed head, `passerelle audit verify`, journal queries.
//!
//! Must never: hold result rows, tokens or raw identifiers (keys are pseudonymised in an
//! audit-only domain), or let a request succeed when its record cannot be written.
//!
//! Not built yet: until the audit issue lands, no audit trail is written, and
//! `passerelle audit verify` says so and exits non-zero.
