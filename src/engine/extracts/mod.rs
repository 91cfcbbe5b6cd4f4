//! Pseudonymised extracts: a copy of a dataset file in which the columns a project sees
//! pseudonymised already hold their pseudonyms, so that its queries read pseudonyms instead of
//! computing one HMAC per row and per query.
//!
//! One extract per (data file, pseudonymisation domain, key version, set of pseudonymised
//! columns), in `pseudonymisation.extracts_dir`. The first query that could use a missing or
//! stale extract starts its build in the background (one build at a time) and is answered by
//! computing pseudonyms in the scan, as every query is when extracts are off; queries switch
//! to the extract once it is complete. Every other column is copied as is: row filters, masks,
//! hidden columns and the barrier apply to an extract exactly as to the data file.
//!
//! Owns: building extracts (temporary file, 0600, fsync, rename), recognising a valid one
//! (on disk from an earlier run too), removing extracts of older key versions. One part each:
//! what this process knows of each extract and when to build (`cache`), the build itself
//! (`build`), what an extract records of its origin and the check of it (`provenance`), names
//! and private files in the folder (`store`).
//!
//! Must never: serve an extract whose data file changed since it was built (size and
//! modification time, checked on every use), whose key differs (a probe pseudonym computed
//! with the domain in force is compared with the one stored in the extract), or whose version
//! or column set differ; hold a raw value of a pseudonymised column; name a value, a path or a
//! key in what a caller can see (extracts are never named in answers or errors).

mod build;
mod cache;
mod provenance;
mod store;
#[cfg(test)]
mod testing;

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;

pub use cache::Extracts;

/// An extract ready to be scanned in place of its data file.
#[derive(Debug, Clone)]
pub struct Extract {
    pub path: PathBuf,
    /// Its Arrow schema, without the file's key-value metadata (source stamp, probe).
    pub schema: SchemaRef,
}
