//! Access: what a plan does to Arrow data, shared by SQL answers (`engine`) and lookups
//! (`lookup`): row filters as DataFusion expressions (`filter`) and column treatments on raw
//! values (`treatment`).
//!
//! Owns: turning the `AccessPlan`'s typed row filters and `ColumnTreatment`s into work on
//! batches. Must never: decide who may see what (the plan does), build SQL text, or treat a
//! column without its key (a pseudonymised column without its domain is an error, never the
//! raw value).

mod filter;
mod treatment;

pub use filter::{row_passes_filters, to_expr};
pub use treatment::{apply_treatment, masked_type};
