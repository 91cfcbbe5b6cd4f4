//! Secrecy profiles: the rule a published cell must obey, per legal secret, and what the
//! attacker's audit requires of a hidden one.
//!
//! Owns: the four named profiles and their defaults, and the primary rule of one cell.
//! Must never: weaken a default silently (an operator's override is explicit, in the policy
//! set, and shown in explain).

use serde::{Deserialize, Serialize};

/// A secrecy profile: when a cell is a primary secret, and how far an attacker's interval
/// around a hidden cell must reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A cell with fewer statistical units than this (patients, households, companies) is a
    /// primary secret.
    pub min_units: u64,
    /// A magnitude cell whose largest contributor (one unit) holds more than this share of it
    /// is a primary secret (`0.85`: the (1, 85 %) dominance rule); none: no dominance rule.
    #[serde(default)]
    pub dominance: Option<f64>,
    /// An empty cell (no unit) is a primary secret too (default: not, an empty cell says
    /// nothing about anyone).
    #[serde(default)]
    pub empty_is_secret: bool,
    /// A hidden magnitude cell is protected when the attacker's interval reaches at least this
    /// share of its value below and above it (`0.15`).
    #[serde(default = "default_margin")]
    pub magnitude_margin: f64,
}

fn default_margin() -> f64 {
    0.15
}

/// Why a cell is a primary secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryReason {
    /// Fewer units than the profile's `min_units` (and at least one).
    TooFewUnits,
    /// No unit, under a profile whose empty cells are secret.
    Empty,
    /// One unit holds more than the profile's dominance share of a magnitude.
    Dominance,
}

impl Profile {
    /// The built-in profile called `name`: `medical`, `tax`, `business` or `statistical`.
    pub fn named(name: &str) -> Option<Profile> {
        let profile = |min_units, dominance| Profile {
            min_units,
            dominance,
            empty_is_secret: false,
            magnitude_margin: default_margin(),
        };
        match name {
            // Health data: at least 11 patients or stays per published cell.
            "medical" => Some(profile(11, None)),
            // Tax secret: at least 11 households per cell.
            "tax" => Some(profile(11, None)),
            // Business secret: at least 3 companies, none above 85 % of a magnitude.
            "business" => Some(profile(3, Some(0.85))),
            // Statistical secret (law 51-711): at least 3 units, 85 % dominance.
            "statistical" => Some(profile(3, Some(0.85))),
            _ => None,
        }
    }

    /// The names of the built-in profiles.
    pub const NAMES: [&'static str; 4] = ["medical", "tax", "business", "statistical"];

    /// Problems of an operator's profile, if any (`(key, message)`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.min_units == 0 {
            problems.push(("min_units".into(), "must be at least 1".into()));
        }
        if let Some(d) = self.dominance
            && !(d > 0.0 && d < 1.0)
        {
            problems.push((
                "dominance".into(),
                "must be a share strictly between 0 and 1".into(),
            ));
        }
        if !(self.magnitude_margin > 0.0 && self.magnitude_margin < 1.0) {
            problems.push((
                "magnitude_margin".into(),
                "must be a share strictly between 0 and 1".into(),
            ));
        }
        problems
    }

    /// Whether a cell of `units` statistical units is a primary secret by its count.
    pub fn count_rule(&self, units: u64) -> Option<PrimaryReason> {
        match units {
            0 if self.empty_is_secret => Some(PrimaryReason::Empty),
            0 => None,
            n if n < self.min_units => Some(PrimaryReason::TooFewUnits),
            _ => None,
        }
    }

    /// Whether a magnitude cell of `total` whose largest contributor holds `largest` is a
    /// primary secret by dominance.
    pub fn dominance_rule(&self, total: f64, largest: f64) -> Option<PrimaryReason> {
        let share = self.dominance?;
        (total > 0.0 && largest > share * total).then_some(PrimaryReason::Dominance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rules_at_the_thresholds_edges() {
        let medical = Profile::named("medical").unwrap();
        assert_eq!(medical.count_rule(10), Some(PrimaryReason::TooFewUnits));
        assert_eq!(medical.count_rule(11), None);
        assert_eq!(medical.count_rule(1), Some(PrimaryReason::TooFewUnits));
        assert_eq!(
            medical.count_rule(0),
            None,
            "an empty cell is no secret by default"
        );
        let tax = Profile::named("tax").unwrap();
        assert_eq!(tax.count_rule(10), Some(PrimaryReason::TooFewUnits));
        assert_eq!(tax.count_rule(11), None);
        let business = Profile::named("business").unwrap();
        assert_eq!(business.count_rule(2), Some(PrimaryReason::TooFewUnits));
        assert_eq!(business.count_rule(3), None);
        let strict = Profile {
            empty_is_secret: true,
            ..business
        };
        assert_eq!(strict.count_rule(0), Some(PrimaryReason::Empty));
    }

    #[test]
    fn dominance_at_its_edge() {
        let business = Profile::named("business").unwrap();
        assert_eq!(business.dominance_rule(1000.0, 849.0), None);
        assert_eq!(
            business.dominance_rule(1000.0, 851.0),
            Some(PrimaryReason::Dominance)
        );
        assert_eq!(business.dominance_rule(0.0, 0.0), None);
        let medical = Profile::named("medical").unwrap();
        assert_eq!(
            medical.dominance_rule(1000.0, 1000.0),
            None,
            "no dominance rule"
        );
    }

    #[test]
    fn every_named_profile_is_valid_and_nonsense_is_refused() {
        for name in Profile::NAMES {
            assert!(
                Profile::named(name).unwrap().problems().is_empty(),
                "{name}"
            );
        }
        let bad = Profile {
            min_units: 0,
            dominance: Some(1.2),
            empty_is_secret: false,
            magnitude_margin: 0.0,
        };
        assert_eq!(bad.problems().len(), 3);
    }
}
