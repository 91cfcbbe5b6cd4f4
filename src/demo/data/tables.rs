//! Reference tables prepared for sampling: running totals over the embedded tables of
//! `reference` (age pyramid, communes, surnames, countries of birth, diagnoses, activities),
//! built once per run and shared by every dataset.
//!
//! It only reshapes embedded public reference data and invented frequencies: it must never read
//! a file, real data or the network, and never hold anything that describes a real person or
//! company.

use super::random::{running_total, running_total_f64};
use super::reference::{
    self, ACTIVITIES, BIRTH_COUNTRIES, COMMUNES, Commune, DIAGNOSES, Family, INFANT_FALLBACK,
    SURNAMES,
};

/// Population age pyramid (France, 1 January 2024, rounded): weight per five-year band from
/// 0–4 to 95–99, then age 100.
const AGE_PYRAMID: [u64; 21] = [
    530, 580, 610, 610, 560, 550, 600, 630, 630, 630, 670, 660, 630, 580, 560, 430, 300, 210, 110,
    35, 3,
];

/// Age bands of the diagnosis table.
pub(super) fn stay_band(age: u32) -> usize {
    match age {
        0 => 0,
        1..=14 => 1,
        15..=44 => 2,
        45..=64 => 3,
        65..=79 => 4,
        _ => 5,
    }
}

/// The reference tables as running totals, ready for weighted draws.
pub(super) struct Tables {
    pub(super) age_cum: Vec<u64>,
    pub(super) commune_cum: Vec<u64>,
    /// Same weights without Corsica: a 13-digit NIR cannot carry a 2A/2B birth département.
    pub(super) birth_cum: Vec<u64>,
    /// For each commune, the index range of its département (communes are grouped by
    /// département).
    pub(super) departement_range: Vec<(usize, usize)>,
    pub(super) surname_cum: Vec<u64>,
    pub(super) country_cum: Vec<u64>,
    /// Diagnosis running totals per (sex, age band, diabetes type).
    diagnosis_cum: Vec<Vec<f64>>,
    pub(super) infant_fallback: usize,
    pub(super) activity_cum: Vec<u64>,
}

impl Tables {
    pub(super) fn new() -> Self {
        let commune_cum = running_total(COMMUNES.iter().map(|c| u64::from(c.weight)));
        let birth_cum = running_total(COMMUNES.iter().map(|c| {
            if c.region == "94" {
                0
            } else {
                u64::from(c.weight)
            }
        }));
        let mut departement_range = Vec::with_capacity(COMMUNES.len());
        let mut start = 0;
        for (k, c) in COMMUNES.iter().enumerate() {
            if COMMUNES.get(start).map(|s| s.departement) != Some(c.departement) {
                start = k;
            }
            let end = COMMUNES
                .iter()
                .skip(k)
                .position(|o| o.departement != c.departement)
                .map_or(COMMUNES.len(), |p| k + p);
            departement_range.push((start, end));
        }
        // Zipf-like surname frequencies: the 10th name is about half as frequent as the first.
        let surname_cum =
            running_total((0..SURNAMES.len() as u64).map(|rank| 1_000_000 / (rank + 10)));
        let country_cum = running_total(BIRTH_COUNTRIES.iter().map(|&(_, w)| u64::from(w)));
        let mut diagnosis_cum = Vec::with_capacity(2 * 6 * 3);
        for female in [false, true] {
            for band in 0..6 {
                for diabetes in 0..3u8 {
                    diagnosis_cum.push(diagnosis_weights(female, band, diabetes));
                }
            }
        }
        let infant_fallback = DIAGNOSES
            .iter()
            .position(|d| d.code == INFANT_FALLBACK)
            .unwrap_or(0);
        Self {
            age_cum: running_total(AGE_PYRAMID),
            commune_cum,
            birth_cum,
            departement_range,
            surname_cum,
            country_cum,
            diagnosis_cum,
            infant_fallback,
            activity_cum: running_total(ACTIVITIES.iter().map(|a| u64::from(a.weight))),
        }
    }

    pub(super) fn diagnoses(&self, female: bool, band: usize, diabetes: u8) -> &[f64] {
        let index = (usize::from(female) * 6 + band.min(5)) * 3 + usize::from(diabetes.min(2));
        self.diagnosis_cum.get(index).map_or(&[], Vec::as_slice)
    }
}

/// Share of a diabetic patient's stays whose main diagnosis is diabetes itself (E10–E14).
const DIABETES_MAIN_SHARE: f64 = 0.45;

fn diagnosis_weights(female: bool, band: usize, diabetes: u8) -> Vec<f64> {
    let base = |d: &reference::Diagnosis| {
        let w = f64::from(d.weights.get(band).copied().unwrap_or(0));
        let sex = if female { d.female } else { d.male };
        let diabetic = if diabetes > 0 { d.diabetic } else { 1.0 };
        w * sex * diabetic
    };
    let general: f64 = DIAGNOSES
        .iter()
        .filter(|d| matches!(d.family, Family::General | Family::Birth))
        .map(base)
        .sum();
    let family = match diabetes {
        1 => Some(Family::Diabetes1),
        2 => Some(Family::Diabetes2),
        _ => None,
    };
    let diabetic_total: f64 = DIAGNOSES
        .iter()
        .filter(|d| Some(d.family) == family)
        .map(base)
        .sum();
    let scale = if diabetic_total > 0.0 {
        general * DIABETES_MAIN_SHARE / (1.0 - DIABETES_MAIN_SHARE) / diabetic_total
    } else {
        0.0
    };
    running_total_f64(DIAGNOSES.iter().map(|d| match d.family {
        Family::General | Family::Birth => base(d),
        f if Some(f) == family => base(d) * scale,
        _ => 0.0,
    }))
}

/// Commune returned for an out-of-range index, so a lookup never panics (weighted draws over
/// `COMMUNES` always give a valid index).
pub(super) const FALLBACK_COMMUNE: Commune = Commune {
    code: "75056",
    name: "Paris",
    departement: "75",
    region: "11",
    postcodes: &["75001"],
    weight: 0,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn communes_cover_every_region_with_realistic_shares() {
        let tables = Tables::new();
        let mut by_region: BTreeMap<&str, u64> = BTreeMap::new();
        for c in COMMUNES {
            *by_region.entry(c.region).or_default() += u64::from(c.weight);
            assert!(!c.postcodes.is_empty());
            assert_eq!(c.code.len(), 5);
            assert!(
                c.postcodes
                    .iter()
                    .all(|p| p.len() == 5 && p.bytes().all(|b| b.is_ascii_digit()))
            );
        }
        assert_eq!(by_region.len(), 18, "{by_region:?}");
        let total: u64 = by_region.values().sum();
        let share = |r: &str| by_region[r] as f64 / total as f64;
        assert!((0.11..0.13).contains(&share("84")));
        assert!((0.17..0.20).contains(&share("11")));
        assert!(COMMUNES.len() >= 80);
        for code in [
            "75056", "69123", "13055", "31555", "34172", "63113", "38185", "97411", "2A004",
        ] {
            assert!(COMMUNES.iter().any(|c| c.code == code), "{code}");
        }
        // Département ranges are contiguous and consistent.
        for (k, &(lo, hi)) in tables.departement_range.iter().enumerate() {
            assert!(lo <= k && k < hi);
            assert!(
                COMMUNES[lo..hi]
                    .iter()
                    .all(|c| c.departement == COMMUNES[k].departement)
            );
        }
    }
}
