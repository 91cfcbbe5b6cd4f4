//! Engine: secure DataFusion sessions that apply an `AccessPlan`, and the result encoders.
//!
//! Owns (as the secure SQL engine issue lands): a fresh session per request whose catalog lists
//! only the datasets the plan allows; secure table providers (raw scan → row filter → masks →
//! a barrier no user predicate can be pushed beneath); the read-only statement allow-list at
//! the planner level; per-query limits; JSON, NDJSON, CSV, Arrow IPC and Parquet encoders.
//!
//! Must never: decide who may see what (it only applies an `AccessPlan` from `policy`), let a
//! user expression touch a row the row filter hides, or name a hidden column in an error.
//!
//! Not built yet: nothing here serves queries today; `POST /v1/query` does not exist until the
//! secure SQL engine issue lands.
