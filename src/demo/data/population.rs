//! The synthetic population: person `i` (NIR, sex, birth date, age, residence, surname,
//! diabetes) is derived from `(seed, i)` alone, so the datasets agree on every person without
//! storing the population.
//!
//! Every person is invented from embedded reference tables: it must never read real data or
//! touch the network. It guarantees that no two people share a NIR: the rare order-number
//! collisions are resolved once, up front, in [`Population::build`].

use std::collections::{HashMap, HashSet};

use super::calendar::{civil_from_days, days_from_civil};
use super::random::{DOMAIN_ORDER, DOMAIN_PERSON, Rng64, weighted, weighted_in};
use super::reference::{
    ALSACE_SURNAMES, BIRTH_COUNTRIES, COMMUNES, COMOROS, Commune, REGIONAL_SURNAMES, SURNAMES,
};
use super::tables::{FALLBACK_COMMUNE, Tables};
use super::{GenerateError, MAX_ROWS};

/// Income year of `fiscal.revenus`; ages are ages reached in this year.
pub(super) const INCOME_YEAR: i32 = 2024;

/// What every dataset knows about person `i`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Person {
    /// 13-digit NIR (without its 2-digit key).
    pub(super) nir: u64,
    pub(super) female: bool,
    /// Birth date, days since 1970-01-01.
    pub(super) birth: i32,
    /// Age reached in [`INCOME_YEAR`].
    pub(super) age: u32,
    /// Index in [`COMMUNES`] of the commune of residence.
    commune: usize,
    pub(super) postcode: &'static str,
    pub(super) surname: &'static str,
    /// 0: none, 1: type 1, 2: type 2.
    pub(super) diabetes: u8,
}

impl Person {
    pub(super) fn commune(&self) -> &'static Commune {
        COMMUNES.get(self.commune).unwrap_or(&FALLBACK_COMMUNE)
    }
}

/// The population: person `i` is derived from `(seed, i)`; `overrides` holds the few people
/// whose first NIR order number collided with an earlier person's NIR.
pub(super) struct Population<'a> {
    tables: &'a Tables,
    seed: u64,
    pub(super) size: u64,
    overrides: HashMap<u64, u64>,
}

impl<'a> Population<'a> {
    pub(super) fn build(tables: &'a Tables, seed: u64, size: u64) -> Result<Self, GenerateError> {
        let mut seen = HashSet::with_capacity(size as usize);
        let mut overrides = HashMap::new();
        for i in 0..size {
            let person = derive_person(tables, seed, i);
            let prefix = person.nir / 1000;
            let mut attempt = 0;
            // INVARIANT: every NIR of the population is unique; a person whose order number
            // collides draws another one, recorded in `overrides` for `person()`.
            while !seen.insert(prefix * 1000 + order_number(seed, i, attempt)) {
                attempt += 1;
                if attempt > 4_096 {
                    return Err(GenerateError::TooManyRows {
                        requested: size * 2,
                        max: MAX_ROWS,
                    });
                }
            }
            if attempt > 0 {
                overrides.insert(i, attempt);
            }
        }
        Ok(Self {
            tables,
            seed,
            size,
            overrides,
        })
    }

    pub(super) fn person(&self, i: u64) -> Person {
        let mut person = derive_person(self.tables, self.seed, i);
        if let Some(&attempt) = self.overrides.get(&i) {
            person.nir = person.nir / 1000 * 1000 + order_number(self.seed, i, attempt);
        }
        person
    }
}

/// NIR order number (001–999) of person `i` at the given attempt.
fn order_number(seed: u64, i: u64, attempt: u64) -> u64 {
    1 + Rng64::stream(seed, DOMAIN_ORDER, i, attempt).below(999)
}

fn derive_person(t: &Tables, seed: u64, i: u64) -> Person {
    let mut rng = Rng64::stream(seed, DOMAIN_PERSON, i, 0);
    let band = weighted(&t.age_cum, &mut rng) as u32;
    let age = if band >= 20 {
        100
    } else {
        band * 5 + rng.below(5) as u32
    };
    let birth_year = INCOME_YEAR - age as i32;
    let year_start = days_from_civil(birth_year, 1, 1);
    let year_len = days_from_civil(birth_year + 1, 1, 1) - year_start;
    let birth = year_start + rng.below(year_len as u64) as i32;
    let (_, birth_month, _) = civil_from_days(birth);
    let female = rng.chance(match age {
        0..=49 => 0.49,
        50..=64 => 0.51,
        65..=74 => 0.53,
        75..=84 => 0.58,
        _ => 0.67,
    });
    let commune = weighted(&t.commune_cum, &mut rng);
    let c = COMMUNES.get(commune).unwrap_or(&FALLBACK_COMMUNE);
    let postcode = rng.pick(c.postcodes, "75001");
    let surname = surname(t, c, &mut rng);
    let birthplace = birthplace(t, commune, age, &mut rng);
    let diabetes = diabetes(age, female, c.departement.len() == 3, &mut rng);
    let sex = if female { 2 } else { 1 };
    let yy = birth_year.rem_euclid(100) as u64;
    let prefix =
        ((sex * 100 + yy) * 100 + u64::from(birth_month)) * 100_000 + u64::from(birthplace);
    let nir = prefix * 1000 + order_number(seed, i, 0);
    Person {
        nir,
        female,
        birth,
        age,
        commune,
        postcode,
        surname,
        diabetes,
    }
}

fn surname(t: &Tables, c: &Commune, rng: &mut Rng64) -> &'static str {
    if matches!(c.departement, "57" | "67" | "68") && rng.chance(0.35) {
        return rng.pick(ALSACE_SURNAMES, "MULLER");
    }
    if let Some((_, names)) = REGIONAL_SURNAMES.iter().find(|(r, _)| *r == c.region) {
        let share = if c.departement.len() == 3 { 0.6 } else { 0.35 };
        if rng.chance(share) {
            return rng.pick(names, "MARTIN");
        }
    }
    SURNAMES
        .get(weighted(&t.surname_cum, rng))
        .copied()
        .unwrap_or("MARTIN")
}

/// Five-digit birthplace of the NIR: département and commune (`75114`, `97411`), or `99` and
/// an INSEE country code for people born abroad (`99352`).
fn birthplace(t: &Tables, commune: usize, age: u32, rng: &mut Rng64) -> u32 {
    let c = COMMUNES.get(commune).unwrap_or(&FALLBACK_COMMUNE);
    let mayotte = c.departement == "976";
    let abroad = if mayotte {
        0.45
    } else {
        match age {
            0..=17 => 0.03,
            18..=24 => 0.08,
            25..=64 => 0.14,
            _ => 0.11,
        }
    };
    if rng.chance(abroad) {
        if mayotte {
            return COMOROS;
        }
        let k = weighted(&t.country_cum, rng);
        return BIRTH_COUNTRIES.get(k).map_or(99_350, |&(code, _)| code);
    }
    let local = if c.departement.len() == 3 { 0.85 } else { 0.45 };
    let place = if c.region != "94" && rng.chance(local) {
        let (lo, hi) = t
            .departement_range
            .get(commune)
            .copied()
            .unwrap_or((0, COMMUNES.len()));
        weighted_in(&t.birth_cum, lo, hi, rng)
    } else {
        weighted(&t.birth_cum, rng)
    };
    let born = COMMUNES.get(place).unwrap_or(&FALLBACK_COMMUNE);
    // Paris, Marseille and Lyon births are registered by arrondissement.
    match born.code {
        "75056" => 75_101 + rng.below(20) as u32,
        "13055" => 13_201 + rng.below(16) as u32,
        "69123" => 69_381 + rng.below(9) as u32,
        code => code.parse().unwrap_or(75_101),
    }
}

fn diabetes(age: u32, female: bool, overseas: bool, rng: &mut Rng64) -> u8 {
    let type1 = if age >= 2 { 0.004 } else { 0.0 };
    let type2 = match age {
        0..=29 => 0.001,
        30..=44 => 0.015,
        45..=54 => 0.05,
        55..=64 => 0.10,
        65..=74 => 0.15,
        75..=84 => 0.18,
        _ => 0.14,
    } * if female { 0.85 } else { 1.15 }
        * if overseas { 1.6 } else { 1.0 };
    let u = rng.unit();
    if u < type1 {
        1
    } else if u < type1 + type2 {
        2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::data::writer::push_digits;

    #[test]
    fn population_nirs_are_unique_and_well_formed() {
        let tables = Tables::new();
        let size = 200_000;
        let population = Population::build(&tables, 3, size).unwrap();
        let mut seen = HashSet::new();
        for i in 0..size {
            let p = population.person(i);
            assert!(seen.insert(p.nir), "duplicate nir for person {i}");
            let mut s = String::new();
            push_digits(&mut s, p.nir, 13);
            let (year, month, _) = civil_from_days(p.birth);
            assert_eq!(&s[0..1], if p.female { "2" } else { "1" });
            assert_eq!(s[1..3].parse::<i32>().unwrap(), year % 100);
            assert_eq!(s[3..5].parse::<u32>().unwrap(), month);
            assert!(
                !s[5..7].starts_with("20"),
                "no Corsican birth in a 13-digit NIR"
            );
            let order: u32 = s[10..13].parse().unwrap();
            assert!((1..=999).contains(&order));
            assert!(p.age <= 100);
        }
        // Collisions do happen at this size and are resolved.
        assert!(!population.overrides.is_empty());
    }
}
