//! The key ring: which key version of each pseudonymisation domain is in force on a date, and
//! the derived domain functions (derived once, then shared).
//!
//! Rotating a domain (a new `[[pseudonymisation.rotations]]` entry with a higher version and a
//! start date) gives new pseudonyms from that date on; answers record the version that served
//! them (the audit issue writes it down).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;

use super::{DomainError, MasterKey, PseudonymDomain};
use crate::config::RotationConfig;

/// Derived domain functions, by (domain, version).
pub struct KeyRing {
    master: MasterKey,
    rotations: Vec<RotationConfig>,
    derived: RwLock<HashMap<(String, u32), Arc<PseudonymDomain>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("rotations", &self.rotations)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    pub fn new(master: MasterKey, rotations: Vec<RotationConfig>) -> Self {
        Self {
            master,
            rotations,
            derived: RwLock::new(HashMap::new()),
        }
    }

    /// A key for `purpose`, derived from the master secret (see [`MasterKey::purpose_key`]).
    pub fn purpose_key(&self, purpose: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.master.purpose_key(purpose)
    }

    /// The key version of `domain` in force on `date` (1 until a rotation starts).
    pub fn version_on(&self, domain: &str, date: NaiveDate) -> u32 {
        self.rotations
            .iter()
            .filter(|r| r.domain == domain && r.from <= date)
            .map(|r| r.version)
            .max()
            .unwrap_or(1)
    }

    /// The domain function in force on `date`.
    pub fn domain_on(
        &self,
        domain: &str,
        date: NaiveDate,
    ) -> Result<Arc<PseudonymDomain>, DomainError> {
        self.domain(domain, self.version_on(domain, date))
    }

    /// The domain function of `domain` at `version`, derived on first use.
    pub fn domain(&self, domain: &str, version: u32) -> Result<Arc<PseudonymDomain>, DomainError> {
        let key = (domain.to_string(), version);
        if let Some(d) = self.derived.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(d);
        }
        let derived = Arc::new(PseudonymDomain::derive(&self.master, domain, version)?);
        if let Ok(mut map) = self.derived.write() {
            map.insert(key, derived.clone());
        }
        Ok(derived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn rotation_gives_new_pseudonyms_from_its_date_on() {
        let ring = KeyRing::new(
            MasterKey::from_bytes([3; 32]),
            vec![
                RotationConfig {
                    domain: "projet-diabete".into(),
                    version: 2,
                    from: date("2026-06-01"),
                },
                RotationConfig {
                    domain: "projet-diabete".into(),
                    version: 3,
                    from: date("2027-01-01"),
                },
            ],
        );
        assert_eq!(ring.version_on("projet-diabete", date("2026-05-31")), 1);
        assert_eq!(ring.version_on("projet-diabete", date("2026-06-01")), 2);
        assert_eq!(ring.version_on("projet-diabete", date("2027-03-01")), 3);
        assert_eq!(ring.version_on("projet-emploi", date("2027-03-01")), 1);
        let before = ring
            .domain_on("projet-diabete", date("2026-05-31"))
            .unwrap();
        let after = ring
            .domain_on("projet-diabete", date("2026-06-01"))
            .unwrap();
        assert_eq!(after.version(), 2);
        assert_ne!(
            before.pseudonymise("1840375056123"),
            after.pseudonymise("1840375056123")
        );
        // The same version is derived once and shared.
        let again = ring
            .domain_on("projet-diabete", date("2026-07-01"))
            .unwrap();
        assert!(Arc::ptr_eq(&after, &again));
    }
}
