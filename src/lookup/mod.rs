//! Lookup: per-record "tell us once" reads for administrations.
//!
//! Owns (as the lookup issue lands): the key index (a lookup never scans), traceability
//! parameters (`context`, `recipient`, `object`), field scopes from the `AccessPlan`, rate
//! limits per organisation and habilitation.
//!
//! Must never: run arbitrary SQL, enumerate (no wildcard, range, prefix or empty key), or
//! return a field that the habilitation does not grant.
//!
//! Not built yet: `GET /v1/lookup/...` does not exist until the lookup issue lands.
