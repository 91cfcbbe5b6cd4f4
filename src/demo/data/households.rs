//! The tax household (foyer fiscal) and CAF file of a synthetic person: family situation,
//! children, tax parts, reference income, income tax (barème 2025) and monthly benefits.
//!
//! Amounts are invented from plausible distributions and public scales: it must never read real
//! income or benefit data, and never touch the network. Writing the files is the job of
//! `population_files`.

use super::population::{Person, Population};
use super::random::{DOMAIN_CAF, DOMAIN_HOUSEHOLD, DOMAIN_NUMBERING, Rng64, discrete, permute};

/// The tax household (foyer fiscal) a person belongs to; minors and some young adults are
/// attached to their parents' household.
#[derive(Debug, Clone, Copy)]
pub(super) struct Household {
    attached: bool,
    pub(super) head_age: u32,
    pub(super) situation: &'static str,
    pub(super) children: u32,
    pub(super) parts_x2: u32,
    pub(super) rfr: i64,
    pub(super) tax: i64,
}

impl Household {
    fn couple(&self) -> bool {
        matches!(self.situation, "M" | "O")
    }
}

/// Persons looked back at to find the household a dependant joins.
const LOOK_BACK: u64 = 64;

/// The household person `i` lives in, as `(the index of its declarant, the household)`: a
/// dependant (a minor, or a young adult attached to their parents) joins the household of the
/// nearest preceding independent adult 18 to 45 years older (within [`LOOK_BACK`] persons), so
/// that one household has several members who share its situation, parts, income and tax;
/// everyone else (and a dependant with no such adult nearby) declares their own.
pub(super) fn household_of(
    seed: u64,
    population: &Population<'_>,
    i: u64,
    person: &Person,
) -> (u64, Household) {
    let own = derive_household(seed, i, person);
    if !own.attached {
        return (i, own);
    }
    for j in (i.saturating_sub(LOOK_BACK)..i).rev() {
        let adult = population.person(j);
        if !(person.age + 18..=person.age + 45).contains(&adult.age) {
            continue;
        }
        let head = derive_household(seed, j, &adult);
        if !head.attached {
            // A dependant keeps its own status (no CAF file of its own).
            return (
                j,
                Household {
                    attached: true,
                    ..head
                },
            );
        }
    }
    (i, own)
}

/// The tax household number (`id_foyer`) of the household declared by person `declarant`:
/// 13 digits, a keyed permutation of the index (so numbers say nothing of the order).
pub(super) fn foyer_number(seed: u64, declarant: u64) -> u64 {
    let key = Rng64::stream(seed, DOMAIN_NUMBERING, 1, 0).next_u64();
    1_000_000_000_000 + permute(declarant, 1 << 38, 19, key)
}

pub(super) fn derive_household(seed: u64, i: u64, person: &Person) -> Household {
    let mut rng = Rng64::stream(seed, DOMAIN_HOUSEHOLD, i, 0);
    let attached = person.age < 18 || (person.age <= 20 && rng.chance(0.5));
    let head_age = if attached {
        person.age + 26 + rng.below(10) as u32
    } else {
        person.age
    };
    let situations = ["M", "O", "C", "D", "V"];
    let probabilities: [f64; 5] = if attached {
        [0.55, 0.15, 0.15, 0.15, 0.0]
    } else {
        match head_age {
            0..=29 => [0.10, 0.12, 0.75, 0.03, 0.0],
            30..=44 => [0.40, 0.18, 0.32, 0.10, 0.0],
            45..=64 => [0.55, 0.08, 0.18, 0.17, 0.02],
            65..=79 => [0.58, 0.03, 0.09, 0.14, 0.16],
            _ => [0.35, 0.01, 0.08, 0.09, 0.47],
        }
    };
    let situation = situations
        .get(discrete(&probabilities, &mut rng))
        .copied()
        .unwrap_or("C");
    let children = if attached {
        1 + discrete(&[0.30, 0.42, 0.20, 0.06, 0.015, 0.005], &mut rng) as u32
    } else {
        let probabilities: &[f64] = match head_age {
            0..=24 => &[0.93, 0.05, 0.02],
            25..=34 => &[0.55, 0.20, 0.17, 0.06, 0.015, 0.004, 0.001],
            35..=49 => &[0.30, 0.22, 0.30, 0.13, 0.035, 0.01, 0.005],
            50..=59 => &[0.60, 0.22, 0.13, 0.04, 0.01],
            _ => &[0.97, 0.02, 0.01],
        };
        discrete(probabilities, &mut rng) as u32
    };
    let couple = matches!(situation, "M" | "O");

    let c = person.commune();
    let regional = match c.region {
        "11" => 1.25,
        "06" => 0.4,
        "01" | "02" | "03" | "04" => 0.7,
        "94" => 0.9,
        _ => 1.0,
    };
    let mut income = earnings(head_age, &mut rng);
    if couple {
        income += if rng.chance(0.75) {
            earnings(head_age.saturating_sub(2), &mut rng)
        } else {
            rng.unit() * 6_000.0
        };
    }
    if rng.chance(0.01) {
        income *= 3.0 + 7.0 * rng.unit(); // capital income, large estates
    }
    let no_income = if !attached && person.age <= 24 {
        0.18
    } else if head_age >= 65 {
        0.01
    } else {
        0.035
    };
    if rng.chance(no_income) {
        income = 0.0;
    }
    let rfr = (income * regional).round() as i64;

    let mut parts_x2 = if couple || (situation == "V" && children > 0) {
        4
    } else {
        2
    };
    for k in 1..=children {
        parts_x2 += if k <= 2 { 1 } else { 2 };
    }
    if !couple && situation != "V" && children > 0 {
        parts_x2 += 1; // single parent (case T)
    }
    if children == 0 && !couple && head_age >= 74 && rng.chance(0.2) {
        parts_x2 += 1; // widow(er) who raised children, veterans (case L, W)
    } else if rng.chance(0.02) {
        parts_x2 += 1; // disability card
    }
    let tax = income_tax(rfr, parts_x2, couple);
    Household {
        attached,
        head_age,
        situation,
        children,
        parts_x2,
        rfr,
        tax,
    }
}

/// Declared yearly income of one adult, by age.
fn earnings(age: u32, rng: &mut Rng64) -> f64 {
    let median = match age {
        0..=24 => 9_000.0,
        25..=34 => 19_000.0,
        35..=49 => 23_000.0,
        50..=64 => 24_000.0,
        65..=79 => 19_000.0,
        _ => 16_000.0,
    };
    rng.lognormal(median, 0.6)
}

/// Income tax on 2024 income (barème 2025): family quotient with its cap, then the décote and
/// the 61 € collection threshold.
fn income_tax(rfr: i64, parts_x2: u32, couple: bool) -> i64 {
    fn scale(quotient: f64) -> f64 {
        const BRACKETS: [(f64, f64); 4] = [
            (11_497.0, 0.11),
            (29_315.0, 0.30),
            (83_823.0, 0.41),
            (180_294.0, 0.45),
        ];
        let mut tax = 0.0;
        for (k, &(from, rate)) in BRACKETS.iter().enumerate() {
            let to = BRACKETS.get(k + 1).map_or(f64::INFINITY, |b| b.0);
            if quotient > from {
                tax += (quotient.min(to) - from) * rate;
            }
        }
        tax
    }
    let income = rfr.max(0) as f64;
    let parts = f64::from(parts_x2) / 2.0;
    let base_parts = if couple { 2.0 } else { 1.0 };
    let full = parts * scale(income / parts);
    let capped =
        base_parts * scale(income / base_parts) - 1_791.0 * ((parts - base_parts) * 2.0).max(0.0);
    let mut tax = full.max(capped);
    let (threshold, flat) = if couple {
        (3_277.0, 1_483.0)
    } else {
        (1_982.0, 897.0)
    };
    if tax < threshold {
        tax -= (flat - 0.4525 * tax).max(0.0);
    }
    let tax = tax.max(0.0).round();
    if tax < 61.0 { 0 } else { tax as i64 }
}

/// A CAF recipient's file.
#[derive(Debug, Clone, Copy)]
pub(super) struct CafFile {
    pub(super) quotient: i32,
    pub(super) benefits: f64,
}

/// The CAF file of an adult, if this person is a recipient (about 45 % of the population).
pub(super) fn derive_caf(seed: u64, i: u64, person: &Person, hh: &Household) -> Option<CafFile> {
    if person.age < 18 || hh.attached {
        return None;
    }
    let mut rng = Rng64::stream(seed, DOMAIN_CAF, i, 0);
    let monthly = hh.rfr.max(0) as f64 / 12.0;
    let adults = if hh.couple() { 2.0 } else { 1.0 };
    let children = hh.children;
    // CAF parts: 1 per adult, 0.5 for each of the first two children, 1 for the third, 0.5 after.
    let mut parts = adults;
    for k in 1..=children {
        parts += if k == 3 { 1.0 } else { 0.5 };
    }
    let per_part = monthly / parts;
    let working_age = hh.head_age < 65;
    let mut benefits = 0.0;
    if children >= 2 {
        let extra = f64::from(children - 2);
        let full = 148.52 + 190.29 * extra;
        let rfr = hh.rfr as f64;
        benefits += if rfr > 99_922.0 + 5_663.0 * extra {
            full / 4.0
        } else if rfr > 74_966.0 + 5_663.0 * extra {
            full / 2.0
        } else {
            full
        };
    }
    if children >= 3 && hh.rfr < 45_000 {
        benefits += 185.0;
    }
    if per_part < 1_000.0 && rng.chance(0.7) {
        let housing = (420.0 - 0.35 * per_part + 40.0 * f64::from(children)).clamp(25.0, 600.0);
        benefits += housing * (0.9 + 0.2 * rng.unit());
    }
    if working_age && (hh.head_age >= 25 || children > 0) && hh.rfr < 8_000 {
        let kids = f64::from(children);
        let base =
            635.71 * (adults * 1.5 - 0.5 + 0.3 * kids.min(2.0) + 0.4 * (kids - 2.0).max(0.0));
        benefits += (base - monthly).max(0.0);
    }
    let per_adult = monthly / adults;
    if working_age && (500.0..=1_900.0).contains(&per_adult) {
        benefits += (60.0 + 200.0 * (1.0 - (per_adult - 1_100.0).abs() / 800.0)).max(0.0);
    }
    if (20..=64).contains(&person.age) && rng.chance(0.025) {
        benefits += (1_016.05 - 0.3 * monthly).max(0.0);
    }
    let p = if benefits > 0.0 {
        0.95
    } else if children > 0 {
        0.5
    } else {
        0.1
    };
    if !rng.chance(p) {
        return None;
    }
    if benefits <= 0.0 {
        benefits = if children > 0 {
            // PAJE basic allowance for a child under three (full or partial rate).
            if rng.chance(0.7) { 184.81 } else { 92.41 }
        } else if hh.head_age < 30 {
            120.0 + 140.0 * rng.unit() // student housing aid
        } else {
            0.0 // open file, no payment this month
        };
    }
    let benefits = (benefits * 100.0).round() / 100.0;
    let quotient = ((monthly + benefits) / parts).round() as i32;
    Some(CafFile { quotient, benefits })
}

/// Most CAF files in one population: every seven-digit number once.
pub(super) const MAX_CAF_FILES: u64 = 10_000_000;

/// Seven-digit CAF number of the `rank`-th recipient (`rank < MAX_CAF_FILES`): a keyed
/// permutation of the rank, so numbers are unique and look unordered. The first 9 million
/// ranks take 1000000–9999999; the last million (only in the largest hubs) take
/// 0000000–0999999, so smaller hubs keep the numbers they always had.
pub(super) fn caf_number(seed: u64, rank: u64) -> u64 {
    let key = Rng64::stream(seed, DOMAIN_NUMBERING, 0, 0).next_u64();
    if rank < 9_000_000 {
        1_000_000 + permute(rank, 9_000_000, 12, key)
    } else {
        permute(rank - 9_000_000, 1_000_000, 10, key)
    }
}
