//! Issuer binding of the member rules: which trusted issuer may satisfy each habilitation's
//! `members` and the `[operators]` section.
//!
//! Owns: the check that no rule can be satisfied by two trusted issuers (then a principal of
//! one could pass for another's: same `sub`, or a `roles` claim minted by any issuer), and that
//! a named issuer exists and is trusted for what the rule uses. The hub runs it at start, in
//! `passerelle check`, on every reload and on every submitted version.
//!
//! Must never: read the configuration itself (the hub hands the trusted issuers in).

use std::path::Path;

use super::PolicySet;
use super::habilitation::{TrustedIssuer, issuer_problem};
use super::source::{PolicyFiles, Problem};

impl PolicySet {
    /// Problems of the member rules under `issuers`, against `habilitations.toml` in `dir`.
    pub fn issuer_problems(&self, dir: &Path, issuers: &[TrustedIssuer]) -> Vec<Problem> {
        let file = dir.join(PolicyFiles::HABILITATIONS);
        let mut problems = Vec::new();
        let operators = &self.habilitations.operators;
        if let Some(message) = issuer_problem(
            "`[operators]`",
            operators.issuer.as_deref(),
            &operators.attributes_used(),
            issuers,
        ) {
            problems.push(Problem::new(&file, None, message));
        }
        for h in &self.habilitations.list {
            if let Some(message) = issuer_problem(
                &format!("habilitation `{}`", h.id),
                h.members.issuer.as_deref(),
                &h.members.attributes_used(),
                issuers,
            ) {
                problems.push(Problem::new(&file, Some(h.line), message));
            }
        }
        problems
    }
}
