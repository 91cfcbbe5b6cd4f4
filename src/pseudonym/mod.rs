//! Pseudonymisation: keyed, per-domain pseudonyms and masking functions.
//!
//! Owns: the hub's master secret (loading, generation, zeroization), per-domain keys derived
//! from it (`domain`, hashing with the CPU's SHA instructions in `sha_ni` when it has them), which key version is in force when (`keyring`), and the vectorised pseudonym and mask kernels the engine applies
//! inside its scan (`kernels`).
//!
//! Must never: register a function callable by name from SQL (a caller who can hash a guess can
//! re-identify), log or return inputs or keys, put a key in a policy or an error, or in a plan
//! other than the physical plan the engine ships to its own cluster over mutual TLS (a domain's
//! keyed states, `PseudonymDomain::to_wire`; never the master key).

pub mod domain;
pub mod kernels;
mod keyring;
mod master_key;
mod sha_ni;

pub use domain::{DomainError, PSEUDONYM_LEN, PseudonymDomain};
pub use keyring::KeyRing;
pub use master_key::{MasterKey, MasterKeyError};
