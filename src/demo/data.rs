//! Synthetic demo datasets: the four Parquet files of the demo hub.
//!
//! This module owns the generation of `sante/sejours.parquet`, `fiscal/revenus.parquet`,
//! `social/allocataires.parquet` and `entreprises/etablissements.parquet` from a row count and a
//! seed. Every value is invented by a seeded pseudo-random generator from embedded public
//! reference tables (communes, ICD-10 and NAF codes, frequent surnames); no real person, company
//! or record is ever read or reproduced.
//!
//! It must never read real data, never touch the network, and never write outside the folder it
//! is given (plus sub-folders it creates). Files are written under a temporary name in their
//! final folder and renamed once complete, so an interrupted run never leaves a half file.
//!
//! Determinism: the same `rows` and `seed` give byte-identical files on every run and every
//! machine (for the same Arrow/Parquet versions). Person `i` of the population is derived from `(seed, i)` alone (a stateless
//! SplitMix64 stream), so the datasets agree on each person's NIR, sex, birth date and residence
//! without storing the population; only the rare NIR collisions are resolved once, up front, in a
//! small override table. Floating-point maths uses only IEEE-exact operations (no platform `exp`
//! or `ln`), so results do not depend on the system maths library.

mod reference;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use reference::{
    ACTIVITIES, ALSACE_SURNAMES, BIRTH_COUNTRIES, COMMUNES, COMOROS, Commune, DIAGNOSES,
    FIRST_NAMES, Family, INFANT_FALLBACK, PLACES, REGIONAL_SURNAMES, SAINTS, SURNAMES,
};

/// Default number of hospital stays (`passerelle demo` without `--rows`).
pub const DEFAULT_ROWS: u64 = 100_000;
/// Default seed of the demo hub.
pub const DEFAULT_SEED: u64 = 20_240_101;
/// Largest supported number of stays (10 million people, 4.5 million CAF recipients).
pub const MAX_ROWS: u64 = 20_000_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Number of hospital stays; the population is `max(rows / 2, 100)` people and the company
    /// register `max(rows / 20, 200)` establishments.
    pub rows: u64,
    /// Seed of every pseudo-random choice.
    pub seed: u64,
    /// Draw a progress bar on stderr (indicatif draws nothing when stderr is not a terminal).
    pub progress: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            rows: DEFAULT_ROWS,
            seed: DEFAULT_SEED,
            progress: false,
        }
    }
}

/// One dataset written by [`generate_datasets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedDataset {
    /// Catalog name, e.g. `sante.sejours`.
    pub name: &'static str,
    /// Path relative to the data folder, e.g. `sante/sejours.parquet`.
    pub relative_path: &'static str,
    /// Number of rows written.
    pub rows: u64,
}

/// Why the datasets could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("too many rows: {requested} requested, at most {max} supported")]
    TooManyRows { requested: u64, max: u64 },
    #[error("a generator thread stopped unexpectedly")]
    Worker,
}

/// Catalog names and relative paths of the four datasets.
pub const SEJOURS: (&str, &str) = ("sante.sejours", "sante/sejours.parquet");
pub const REVENUS: (&str, &str) = ("fiscal.revenus", "fiscal/revenus.parquet");
pub const ALLOCATAIRES: (&str, &str) = ("social.allocataires", "social/allocataires.parquet");
pub const ETABLISSEMENTS: (&str, &str) = (
    "entreprises.etablissements",
    "entreprises/etablissements.parquet",
);

/// Rows per Arrow record batch.
const CHUNK: usize = 65_536;
/// Rows per Parquet row group.
const ROW_GROUP: usize = 131_072;

/// Income year of `fiscal.revenus`; ages are ages reached in this year.
const INCOME_YEAR: i32 = 2024;
/// First and last day of the hospital stays.
const STAY_START: i32 = days_from_civil(2022, 1, 1);
const STAY_END: i32 = days_from_civil(2024, 12, 31);

// Independent random streams.
const DOMAIN_PERSON: u64 = 1;
const DOMAIN_ORDER: u64 = 2;
const DOMAIN_HOUSEHOLD: u64 = 3;
const DOMAIN_CAF: u64 = 4;
const DOMAIN_STAYS: u64 = 5;
const DOMAIN_COMPANIES: u64 = 6;
const DOMAIN_NUMBERING: u64 = 7;

/// Writes the four datasets under `data_dir` (creating sub-folders), returns what it wrote.
pub fn generate_datasets(
    data_dir: &Path,
    opts: &GenerateOptions,
) -> Result<Vec<GeneratedDataset>, GenerateError> {
    if opts.rows > MAX_ROWS {
        return Err(GenerateError::TooManyRows {
            requested: opts.rows,
            max: MAX_ROWS,
        });
    }
    let tables = Tables::new();
    let population = Population::build(&tables, opts.seed, population_size(opts.rows))?;
    let establishments = establishment_count(opts.rows);

    let total = opts.rows + 2 * population.size + establishments;
    let progress = progress_bar(opts.progress, total);
    let ctx = Ctx {
        tables: &tables,
        population: &population,
        opts,
        progress: &progress,
        data_dir,
    };

    let (stays, others) = std::thread::scope(|scope| {
        let stays = scope.spawn(|| write_stays(&ctx));
        let others = write_population_files(&ctx).and_then(|(revenus, allocataires)| {
            write_establishments(&ctx, establishments).map(|e| (revenus, allocataires, e))
        });
        (stays.join(), others)
    });
    progress.finish_and_clear();
    let stays = stays.map_err(|_| GenerateError::Worker)??;
    let (revenus, allocataires, etablissements) = others?;

    let dataset = |(name, relative_path): (&'static str, &'static str), rows| GeneratedDataset {
        name,
        relative_path,
        rows,
    };
    Ok(vec![
        dataset(SEJOURS, stays),
        dataset(REVENUS, revenus),
        dataset(ALLOCATAIRES, allocataires),
        dataset(ETABLISSEMENTS, etablissements),
    ])
}

/// Number of people in the synthetic population for `rows` hospital stays.
pub fn population_size(rows: u64) -> u64 {
    (rows / 2).max(100)
}

/// Number of establishments in the synthetic company register for `rows` hospital stays.
pub fn establishment_count(rows: u64) -> u64 {
    (rows / 20).max(200)
}

const PROGRESS_TEMPLATE: &str = "{msg} [{bar:40}] {percent:>3}% {pos}/{len} rows, {eta}";

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_message("synthetic datasets");
    match ProgressStyle::with_template(PROGRESS_TEMPLATE) {
        Ok(style) => bar.with_style(style.progress_chars("=> ")),
        Err(_) => bar,
    }
}

/// Everything the dataset writers share.
struct Ctx<'a> {
    tables: &'a Tables,
    population: &'a Population<'a>,
    opts: &'a GenerateOptions,
    progress: &'a ProgressBar,
    data_dir: &'a Path,
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser: a bijective 64-bit mix.
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream keyed by (seed, domain, a, b): cheap to create, so every person, chunk
/// and company gets its own stream and nothing depends on generation order.
#[derive(Debug, Clone)]
struct Rng64 {
    state: u64,
}

impl Rng64 {
    fn stream(seed: u64, domain: u64, a: u64, b: u64) -> Self {
        let mut h = mix64(seed ^ 0x7061_7373_6572_656C);
        h = mix64(h ^ domain.wrapping_mul(GOLDEN));
        h = mix64(h ^ a);
        h = mix64(h ^ b.wrapping_add(0xD1B5_4A32_D192_ED03));
        Self { state: h }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1].
    fn unit_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Irwin–Hall approximation: sum of 12 uniforms minus 6).
    fn normal(&mut self) -> f64 {
        let mut sum = 0.0;
        for _ in 0..12 {
            sum += self.unit();
        }
        sum - 6.0
    }

    /// Log-normal with the given median and log-scale spread.
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * det_exp(sigma * self.normal())
    }

    /// Exponential with the given mean.
    fn exponential(&mut self, mean: f64) -> f64 {
        -det_ln(self.unit_open()) * mean
    }

    fn pick<T: Copy>(&mut self, items: &[T], fallback: T) -> T {
        items
            .get(self.index(items.len()))
            .copied()
            .unwrap_or(fallback)
    }
}

/// `e^x` with IEEE-exact operations only (range reduction and a Taylor polynomial).
fn det_exp(x: f64) -> f64 {
    let x = x.clamp(-700.0, 700.0);
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = x - k * std::f64::consts::LN_2;
    let mut sum = 1.0;
    for n in (1..=13).rev() {
        sum = 1.0 + r * sum / f64::from(n);
    }
    sum * pow2(k as i32)
}

/// `ln(x)` for x > 0 with IEEE-exact operations only (exponent split and an atanh series).
fn det_ln(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 0.0;
    }
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7FF) as i32 - 1023;
    let mut mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if mantissa > std::f64::consts::SQRT_2 {
        mantissa /= 2.0;
        exponent += 1;
    }
    let t = (mantissa - 1.0) / (mantissa + 1.0);
    let t2 = t * t;
    let mut term = t;
    let mut sum = 0.0;
    for n in 0..12 {
        sum += term / f64::from(2 * n + 1);
        term *= t2;
    }
    f64::from(exponent) * std::f64::consts::LN_2 + 2.0 * sum
}

fn pow2(k: i32) -> f64 {
    let k = k.clamp(-1022, 1023);
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// Index drawn with the weights whose running totals are `cum`, restricted to `lo..hi`.
fn weighted_in(cum: &[u64], lo: usize, hi: usize, rng: &mut Rng64) -> usize {
    let hi = hi.min(cum.len());
    if lo >= hi {
        return lo.min(cum.len().saturating_sub(1));
    }
    let base = if lo == 0 {
        0
    } else {
        cum.get(lo - 1).copied().unwrap_or(0)
    };
    let top = cum.get(hi - 1).copied().unwrap_or(base);
    let x = base + rng.below(top - base);
    cum.partition_point(|&c| c <= x).clamp(lo, hi - 1)
}

fn weighted(cum: &[u64], rng: &mut Rng64) -> usize {
    weighted_in(cum, 0, cum.len(), rng)
}

/// Index drawn with the floating-point weights whose running totals are `cum`.
fn weighted_f64(cum: &[f64], rng: &mut Rng64) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.unit() * total;
    cum.partition_point(|&c| c <= x)
        .min(cum.len().saturating_sub(1))
}

fn running_total<I: IntoIterator<Item = u64>>(weights: I) -> Vec<u64> {
    let mut sum = 0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

fn running_total_f64<I: IntoIterator<Item = f64>>(weights: I) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

/// Draws from a small discrete distribution given as probabilities (the last value absorbs
/// the remainder).
fn discrete(probabilities: &[f64], rng: &mut Rng64) -> usize {
    let mut u = rng.unit();
    for (k, p) in probabilities.iter().enumerate() {
        if u < *p {
            return k;
        }
        u -= p;
    }
    probabilities.len().saturating_sub(1)
}

// ---------------------------------------------------------------------------------------------
// Calendar (proleptic Gregorian, days since 1970-01-01 as in Arrow Date32)
// ---------------------------------------------------------------------------------------------

const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe as i32 + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

/// Completed years between two dates.
fn age_at(birth: i32, day: i32) -> u32 {
    let (by, bm, bd) = civil_from_days(birth);
    let (y, m, d) = civil_from_days(day);
    let years = y - by - i32::from((m, d) < (bm, bd));
    years.max(0) as u32
}

// ---------------------------------------------------------------------------------------------
// Reference tables prepared for sampling
// ---------------------------------------------------------------------------------------------

/// Population age pyramid (France, 1 January 2024, rounded): weight per five-year band from
/// 0–4 to 95–99, then age 100.
const AGE_PYRAMID: [u64; 21] = [
    530, 580, 610, 610, 560, 550, 600, 630, 630, 630, 670, 660, 630, 580, 560, 430, 300, 210, 110,
    35, 3,
];

/// Age bands of the diagnosis table.
fn stay_band(age: u32) -> usize {
    match age {
        0 => 0,
        1..=14 => 1,
        15..=44 => 2,
        45..=64 => 3,
        65..=79 => 4,
        _ => 5,
    }
}

struct Tables {
    age_cum: Vec<u64>,
    commune_cum: Vec<u64>,
    /// Same weights without Corsica: a 13-digit NIR cannot carry a 2A/2B birth département.
    birth_cum: Vec<u64>,
    /// For each commune, the index range of its département (communes are grouped by
    /// département).
    departement_range: Vec<(usize, usize)>,
    surname_cum: Vec<u64>,
    country_cum: Vec<u64>,
    /// Diagnosis running totals per (sex, age band, diabetes type).
    diagnosis_cum: Vec<Vec<f64>>,
    infant_fallback: usize,
    activity_cum: Vec<u64>,
}

impl Tables {
    fn new() -> Self {
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

    fn diagnoses(&self, female: bool, band: usize, diabetes: u8) -> &[f64] {
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

// ---------------------------------------------------------------------------------------------
// Population
// ---------------------------------------------------------------------------------------------

/// What every dataset knows about person `i`.
#[derive(Debug, Clone, Copy)]
struct Person {
    /// 13-digit NIR (without its 2-digit key).
    nir: u64,
    female: bool,
    /// Birth date, days since 1970-01-01.
    birth: i32,
    /// Age reached in [`INCOME_YEAR`].
    age: u32,
    /// Index in [`COMMUNES`] of the commune of residence.
    commune: usize,
    postcode: &'static str,
    surname: &'static str,
    /// 0: none, 1: type 1, 2: type 2.
    diabetes: u8,
}

impl Person {
    fn commune(&self) -> &'static Commune {
        COMMUNES.get(self.commune).unwrap_or(&FALLBACK_COMMUNE)
    }
}

const FALLBACK_COMMUNE: Commune = Commune {
    code: "75056",
    name: "Paris",
    departement: "75",
    region: "11",
    postcodes: &["75001"],
    weight: 0,
};

/// The population: person `i` is derived from `(seed, i)`; `overrides` holds the few people
/// whose first NIR order number collided with an earlier person's NIR.
struct Population<'a> {
    tables: &'a Tables,
    seed: u64,
    size: u64,
    overrides: HashMap<u64, u64>,
}

impl<'a> Population<'a> {
    fn build(tables: &'a Tables, seed: u64, size: u64) -> Result<Self, GenerateError> {
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

    fn person(&self, i: u64) -> Person {
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

// ---------------------------------------------------------------------------------------------
// Tax household and CAF file of a person
// ---------------------------------------------------------------------------------------------

/// The tax household (foyer fiscal) a person belongs to; minors and some young adults are
/// attached to their parents' household.
#[derive(Debug, Clone, Copy)]
struct Household {
    attached: bool,
    head_age: u32,
    situation: &'static str,
    children: u32,
    parts_x2: u32,
    rfr: i64,
    tax: i64,
}

impl Household {
    fn couple(&self) -> bool {
        matches!(self.situation, "M" | "O")
    }
}

fn derive_household(seed: u64, i: u64, person: &Person) -> Household {
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
struct CafFile {
    quotient: i32,
    benefits: f64,
}

/// The CAF file of an adult, if this person is a recipient (about 45 % of the population).
fn derive_caf(seed: u64, i: u64, person: &Person, hh: &Household) -> Option<CafFile> {
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

/// Seven-digit CAF number of the `rank`-th recipient: a keyed permutation of the rank, so
/// numbers are unique and look unordered.
fn caf_number(seed: u64, rank: u64) -> u64 {
    let key = Rng64::stream(seed, DOMAIN_NUMBERING, 0, 0).next_u64();
    1_000_000 + permute(rank, 9_000_000, 12, key)
}

/// Keyed bijection of `0..size` (`size` at most `2^(2 * half_bits)`): a four-round Feistel
/// network on `2 * half_bits` bits, with cycle-walking back into `0..size`.
fn permute(value: u64, size: u64, half_bits: u32, key: u64) -> u64 {
    if value >= size {
        return value % size.max(1);
    }
    let mask = (1u64 << half_bits) - 1;
    let mut x = value;
    loop {
        let (mut left, mut right) = (x >> half_bits, x & mask);
        for round in 0..4u64 {
            let f = mix64(right ^ key ^ round.wrapping_mul(GOLDEN)) & mask;
            (left, right) = (right, left ^ f);
        }
        x = (left << half_bits) | right;
        // The walk stays on the cycle of `value`, which contains `value` itself, so it ends.
        if x < size {
            return x;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// A Parquet file being written under a temporary name; removed unless committed.
struct Output {
    tmp: PathBuf,
    target: PathBuf,
    writer: Option<ArrowWriter<BufWriter<File>>>,
}

impl Output {
    fn create(
        data_dir: &Path,
        relative: &str,
        schema: &SchemaRef,
        opts: &GenerateOptions,
        dataset: &str,
    ) -> Result<Self, GenerateError> {
        // INVARIANT: `relative` is one of the four constant dataset paths, so every file lands
        // inside `data_dir`.
        let target = data_dir.join(relative);
        let folder = target.parent().unwrap_or(data_dir).to_path_buf();
        fs::create_dir_all(&folder).map_err(|source| GenerateError::Write {
            path: folder.clone(),
            source,
        })?;
        let file_name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("dataset.parquet");
        let tmp = folder.join(format!(".{file_name}.partial"));
        let file = File::create(&tmp).map_err(|source| GenerateError::Write {
            path: tmp.clone(),
            source,
        })?;
        let mut output = Self {
            tmp,
            target,
            writer: None,
        };
        let metadata = vec![
            KeyValue::new("passerelle.dataset".to_string(), dataset.to_string()),
            KeyValue::new("passerelle.synthetic".to_string(), "true".to_string()),
            KeyValue::new("passerelle.seed".to_string(), opts.seed.to_string()),
            KeyValue::new("passerelle.rows".to_string(), opts.rows.to_string()),
        ];
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .set_created_by("passerelle demo".to_string())
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            schema.clone(),
            Some(props),
        )?;
        output.writer = Some(writer);
        Ok(output)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), GenerateError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.write(batch)?;
        }
        Ok(())
    }

    /// Writes the footer, syncs the file and renames it to its final name.
    fn commit(mut self) -> Result<(), GenerateError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let result = (|| {
            let file = writer
                .into_inner()?
                .into_inner()
                .map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&self.tmp, &self.target).map_err(|source| GenerateError::Write {
                path: self.target.clone(),
                source,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            drop(writer);
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// Appends `value` as exactly `width` decimal digits (zero-padded) to `out`.
fn push_digits(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = value;
    for slot in digits.iter_mut().rev().take(width.min(20)) {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &d in digits.iter().skip(20 - width.min(20)) {
        out.push(char::from(d));
    }
}

fn round_cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

// ----- sante.sejours ---------------------------------------------------------------------------

fn stays_schema() -> SchemaRef {
    schema(vec![
        field("id_sejour", DataType::Int64),
        field("nir", DataType::Utf8),
        field("nom", DataType::Utf8),
        field("date_naissance", DataType::Date32),
        field("sexe", DataType::Utf8),
        field("code_postal", DataType::Utf8),
        field("region", DataType::Utf8),
        field("date_entree", DataType::Date32),
        field("date_sortie", DataType::Date32),
        field("diagnostic", DataType::Utf8),
        field("cout", DataType::Float64),
    ])
}

fn write_stays(ctx: &Ctx<'_>) -> Result<u64, GenerateError> {
    let schema = stays_schema();
    let mut output = Output::create(ctx.data_dir, SEJOURS.1, &schema, ctx.opts, SEJOURS.0)?;
    let rows = ctx.opts.rows;
    let mut text = String::with_capacity(16);
    let mut start = 0u64;
    let mut chunk_index = 0u64;
    while start < rows {
        let n = (rows - start).min(CHUNK as u64) as usize;
        let mut rng = Rng64::stream(ctx.opts.seed, DOMAIN_STAYS, chunk_index, 0);
        let mut id = Vec::with_capacity(n);
        let mut nir = StringBuilder::with_capacity(n, n * 13);
        let mut nom = StringBuilder::with_capacity(n, n * 8);
        let mut birth = Vec::with_capacity(n);
        let mut sexe = StringBuilder::with_capacity(n, n);
        let mut postcode = StringBuilder::with_capacity(n, n * 5);
        let mut region = StringBuilder::with_capacity(n, n * 2);
        let mut entry = Vec::with_capacity(n);
        let mut exit = Vec::with_capacity(n);
        let mut diagnosis = StringBuilder::with_capacity(n, n * 5);
        let mut cost = Vec::with_capacity(n);
        for k in 0..n as u64 {
            let stay = draw_stay(ctx, &mut rng);
            let p = &stay.patient;
            id.push((start + k + 1) as i64);
            text.clear();
            push_digits(&mut text, p.nir, 13);
            nir.append_value(&text);
            nom.append_value(p.surname);
            birth.push(p.birth);
            sexe.append_value(if p.female { "2" } else { "1" });
            postcode.append_value(p.postcode);
            region.append_value(p.commune().region);
            entry.push(stay.entry);
            exit.push(stay.exit);
            diagnosis.append_value(stay.diagnosis);
            cost.push(stay.cost);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(id)),
            Arc::new(nir.finish()),
            Arc::new(nom.finish()),
            Arc::new(Date32Array::from(birth)),
            Arc::new(sexe.finish()),
            Arc::new(postcode.finish()),
            Arc::new(region.finish()),
            Arc::new(Date32Array::from(entry)),
            Arc::new(Date32Array::from(exit)),
            Arc::new(diagnosis.finish()),
            Arc::new(Float64Array::from(cost)),
        ];
        output.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        ctx.progress.inc(n as u64);
        start += n as u64;
        chunk_index += 1;
    }
    output.commit()?;
    Ok(rows)
}

struct Stay {
    patient: Person,
    entry: i32,
    exit: i32,
    diagnosis: &'static str,
    cost: f64,
}

/// Chooses a patient: a few people have many stays (chronic patients, dialysis), and older
/// people are admitted more often.
fn draw_patient(population: &Population<'_>, rng: &mut Rng64) -> Person {
    let n = population.size;
    let mut candidate = population.person(0);
    for attempt in 0..12 {
        let u = rng.unit();
        let i = if u < 0.55 {
            rng.below(n)
        } else if u < 0.85 {
            rng.below((n / 10).max(1))
        } else {
            rng.below((n / 100).max(1))
        };
        candidate = population.person(i);
        let mut weight = match candidate.age {
            0 => 0.6,
            1..=14 => 0.12,
            15..=44 => 0.25,
            45..=64 => 0.4,
            65..=79 => 0.75,
            _ => 1.0,
        };
        if candidate.diabetes > 0 {
            weight *= 1.5;
        }
        if attempt == 11 || rng.chance(weight) {
            break;
        }
    }
    candidate
}

fn draw_stay(ctx: &Ctx<'_>, rng: &mut Rng64) -> Stay {
    let patient = draw_patient(ctx.population, rng);
    let lower = patient.birth.max(STAY_START);
    let mut entry = lower + rng.below((STAY_END - lower + 1).max(1) as u64) as i32;
    let band = stay_band(age_at(patient.birth, entry));
    let table = ctx.tables.diagnoses(patient.female, band, patient.diabetes);
    let mut index = weighted_f64(table, rng);
    let mut at_birth = false;
    if DIAGNOSES
        .get(index)
        .is_some_and(|d| d.family == Family::Birth)
    {
        if patient.birth >= STAY_START {
            entry = patient.birth;
            at_birth = true;
        } else {
            index = ctx.tables.infant_fallback;
        }
    }
    let Some(d) = DIAGNOSES.get(index) else {
        return Stay {
            patient,
            entry,
            exit: entry,
            diagnosis: INFANT_FALLBACK,
            cost: 1_000.0,
        };
    };
    let mut los = if rng.chance(d.ambulatory) {
        0
    } else {
        1 + rng.exponential((d.mean_los - 1.0).max(0.1)) as i32
    };
    if los > 0 && rng.chance(0.03) {
        los *= 3; // complications, transfers awaiting a bed downstream
    }
    let mut los = los.min(180);
    if entry + los > STAY_END {
        if !at_birth {
            entry = (STAY_END - los).max(lower);
        }
        los = los.min(STAY_END - entry);
    }
    let cost = (d.base_cost + d.daily_cost * f64::from(los)) * rng.lognormal(1.0, 0.22);
    Stay {
        patient,
        entry,
        exit: entry + los,
        diagnosis: d.code,
        cost: round_cents(cost.max(50.0)),
    }
}

// ----- fiscal.revenus and social.allocataires --------------------------------------------------

fn revenus_schema() -> SchemaRef {
    schema(vec![
        field("nir", DataType::Utf8),
        field("annee", DataType::Int32),
        field("revenu_fiscal_reference", DataType::Int64),
        field("nombre_parts", DataType::Float64),
        field("montant_impot", DataType::Int64),
        field("situation_familiale", DataType::Utf8),
    ])
}

fn allocataires_schema() -> SchemaRef {
    schema(vec![
        field("numero_allocataire", DataType::Utf8),
        field("nir", DataType::Utf8),
        field("quotient_familial", DataType::Int32),
        field("nombre_enfants", DataType::Int32),
        field("commune", DataType::Utf8),
        field("montant_prestations", DataType::Float64),
    ])
}

/// Column buffers of `social.allocataires`, flushed every [`CHUNK`] rows.
struct CafColumns {
    numero: StringBuilder,
    nir: StringBuilder,
    quotient: Vec<i32>,
    children: Vec<i32>,
    commune: StringBuilder,
    benefits: Vec<f64>,
}

impl CafColumns {
    fn new() -> Self {
        Self {
            numero: StringBuilder::with_capacity(CHUNK, CHUNK * 7),
            nir: StringBuilder::with_capacity(CHUNK, CHUNK * 13),
            quotient: Vec::with_capacity(CHUNK),
            children: Vec::with_capacity(CHUNK),
            commune: StringBuilder::with_capacity(CHUNK, CHUNK * 5),
            benefits: Vec::with_capacity(CHUNK),
        }
    }

    fn len(&self) -> usize {
        self.quotient.len()
    }

    fn flush(&mut self, schema: &SchemaRef, output: &mut Output) -> Result<(), GenerateError> {
        if self.len() == 0 {
            return Ok(());
        }
        let full = std::mem::replace(self, Self::new());
        let columns: Vec<ArrayRef> = vec![
            Arc::new({ full.numero }.finish()),
            Arc::new({ full.nir }.finish()),
            Arc::new(Int32Array::from(full.quotient)),
            Arc::new(Int32Array::from(full.children)),
            Arc::new({ full.commune }.finish()),
            Arc::new(Float64Array::from(full.benefits)),
        ];
        output.write(&RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Writes `fiscal.revenus` (every person) and `social.allocataires` (CAF recipients) in one
/// pass over the population; returns their row counts.
fn write_population_files(ctx: &Ctx<'_>) -> Result<(u64, u64), GenerateError> {
    let seed = ctx.opts.seed;
    let revenus_schema = revenus_schema();
    let caf_schema = allocataires_schema();
    let mut revenus = Output::create(
        ctx.data_dir,
        REVENUS.1,
        &revenus_schema,
        ctx.opts,
        REVENUS.0,
    )?;
    let mut caf = Output::create(
        ctx.data_dir,
        ALLOCATAIRES.1,
        &caf_schema,
        ctx.opts,
        ALLOCATAIRES.0,
    )?;
    let size = ctx.population.size;
    let mut caf_columns = CafColumns::new();
    let mut recipients = 0u64;
    let mut text = String::with_capacity(16);
    let mut start = 0u64;
    while start < size {
        let n = (size - start).min(CHUNK as u64) as usize;
        let mut nir = StringBuilder::with_capacity(n, n * 13);
        let mut rfr = Vec::with_capacity(n);
        let mut parts = Vec::with_capacity(n);
        let mut tax = Vec::with_capacity(n);
        let mut situation = StringBuilder::with_capacity(n, n);
        for i in start..start + n as u64 {
            let person = ctx.population.person(i);
            let hh = derive_household(seed, i, &person);
            text.clear();
            push_digits(&mut text, person.nir, 13);
            nir.append_value(&text);
            rfr.push(hh.rfr);
            parts.push(f64::from(hh.parts_x2) / 2.0);
            tax.push(hh.tax);
            situation.append_value(hh.situation);
            if let Some(file) = derive_caf(seed, i, &person, &hh) {
                let mut number = String::with_capacity(7);
                push_digits(&mut number, caf_number(seed, recipients), 7);
                caf_columns.numero.append_value(&number);
                caf_columns.nir.append_value(&text);
                caf_columns.quotient.push(file.quotient);
                caf_columns.children.push(hh.children as i32);
                caf_columns.commune.append_value(person.commune().code);
                caf_columns.benefits.push(file.benefits);
                recipients += 1;
                if caf_columns.len() >= CHUNK {
                    caf_columns.flush(&caf_schema, &mut caf)?;
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(nir.finish()),
            Arc::new(Int32Array::from(vec![INCOME_YEAR; n])),
            Arc::new(Int64Array::from(rfr)),
            Arc::new(Float64Array::from(parts)),
            Arc::new(Int64Array::from(tax)),
            Arc::new(situation.finish()),
        ];
        revenus.write(&RecordBatch::try_new(revenus_schema.clone(), columns)?)?;
        ctx.progress.inc(2 * n as u64);
        start += n as u64;
    }
    caf_columns.flush(&caf_schema, &mut caf)?;
    revenus.commit()?;
    caf.commit()?;
    Ok((size, recipients))
}

// ----- entreprises.etablissements --------------------------------------------------------------

fn establishments_schema() -> SchemaRef {
    schema(vec![
        field("siret", DataType::Utf8),
        field("siren", DataType::Utf8),
        field("denomination", DataType::Utf8),
        field("naf", DataType::Utf8),
        field("effectif", DataType::Int32),
        field("chiffre_affaires", DataType::Int64),
        field("commune", DataType::Utf8),
        field("region", DataType::Utf8),
    ])
}

/// Luhn checksum over the decimal digits of `value` (valid when the result is 0).
fn luhn_remainder(value: u64) -> u64 {
    let mut v = value;
    let mut sum = 0;
    let mut double = false;
    while v > 0 {
        let mut d = v % 10;
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
        v /= 10;
    }
    sum % 10
}

/// Appends the digit that makes `body * 10 + digit` pass the Luhn check.
fn with_luhn_digit(body: u64) -> u64 {
    (0..10)
        .map(|d| body * 10 + d)
        .find(|&n| luhn_remainder(n) == 0)
        .unwrap_or(body * 10)
}

/// SIREN of the `k`-th company: a keyed permutation of `k` onto the 8-digit bodies from
/// 30000000 (numbers starting with 1 or 2 belong to public bodies), plus the Luhn key.
fn siren_number(seed: u64, k: u64) -> u64 {
    let key = Rng64::stream(seed, DOMAIN_NUMBERING, 1, 0).next_u64();
    with_luhn_digit(30_000_000 + permute(k, 70_000_000, 14, key))
}

fn company_name(activity: &reference::Activity, rng: &mut Rng64, t: &Tables) -> (String, bool) {
    let template = rng.pick(activity.names, "{N}");
    let surname = SURNAMES
        .get(weighted(&t.surname_cum, rng))
        .copied()
        .unwrap_or("MARTIN");
    let first = rng.pick(FIRST_NAMES, "JEAN");
    let place = rng.pick(PLACES, "MOULIN");
    let saint = rng.pick(SAINTS, "SAINT-JOSEPH");
    let name = template
        .replace("{N}", surname)
        .replace("{P}", first)
        .replace("{Q}", place)
        .replace("{S}", saint);
    // "DUPONT PIERRE": a sole trader, registered under the person's name, without a legal form.
    let sole_trader = template == "{N} {P}";
    if sole_trader {
        return (name, true);
    }
    let form = rng.pick(activity.forms, "");
    if !form.is_empty() && rng.chance(0.6) {
        (format!("{form} {name}"), false)
    } else {
        (name, false)
    }
}

/// A company of the register, laid out establishment by establishment.
struct Company {
    siren: u64,
    activity: &'static reference::Activity,
    name: String,
    /// An individual entrepreneur registered under their own name (no legal form, 0–1 staff).
    sole_trader: bool,
    /// Commune of the head office (first establishment).
    seat: usize,
    establishments: u32,
    /// Establishments already written.
    written: u32,
}

fn new_company(t: &Tables, seed: u64, k: u64, rng: &mut Rng64) -> Company {
    let activity = ACTIVITIES
        .get(weighted(&t.activity_cum, rng))
        .unwrap_or(&ACTIVITIES[0]);
    // Larger businesses (retail chains, transport, home care) more often have several sites.
    let multi_site = if activity.median_staff >= 10.0 {
        0.35
    } else if activity.median_staff == 0.0 {
        0.0
    } else {
        0.08
    };
    let establishments = if rng.chance(multi_site) {
        2 + (rng.exponential(1.5) as u32).min(10)
    } else {
        1
    };
    let (name, sole_trader) = company_name(activity, rng, t);
    let seat = weighted(&t.commune_cum, rng);
    Company {
        siren: siren_number(seed, k),
        activity,
        name,
        sole_trader,
        seat,
        establishments,
        written: 0,
    }
}

/// One establishment of `company`: (SIRET, commune, headcount, turnover).
fn next_establishment(
    t: &Tables,
    company: &mut Company,
    rng: &mut Rng64,
) -> (u64, &'static Commune, i32, i64) {
    let activity = company.activity;
    let first = company.written == 0;
    // NIC: a four-digit sequence (with gaps left by closed establishments) and the Luhn key of
    // the whole SIRET.
    let sequence = 1 + u64::from(company.written) * 2 + rng.below(2);
    let siret = with_luhn_digit(company.siren * 10_000 + sequence);
    let place = if first {
        company.seat
    } else if rng.chance(0.5) {
        let (lo, hi) = t
            .departement_range
            .get(company.seat)
            .copied()
            .unwrap_or((0, COMMUNES.len()));
        weighted_in(&t.commune_cum, lo, hi, rng)
    } else {
        weighted(&t.commune_cum, rng)
    };
    let headcount = if company.sole_trader {
        rng.below(2) as i32
    } else if activity.median_staff == 0.0 {
        0
    } else {
        let median = activity.median_staff * if first { 1.2 } else { 1.0 };
        (rng.lognormal(median, 0.8).round() as i32).clamp(0, 5_000)
    };
    let turnover = if headcount == 0 {
        rng.lognormal(activity.turnover, 0.6)
    } else {
        f64::from(headcount) * activity.turnover * rng.lognormal(1.0, 0.35)
    };
    company.written += 1;
    let commune = COMMUNES.get(place).unwrap_or(&FALLBACK_COMMUNE);
    (siret, commune, headcount, turnover.round() as i64)
}

fn write_establishments(ctx: &Ctx<'_>, rows: u64) -> Result<u64, GenerateError> {
    let t = ctx.tables;
    let seed = ctx.opts.seed;
    let schema = establishments_schema();
    let mut output = Output::create(
        ctx.data_dir,
        ETABLISSEMENTS.1,
        &schema,
        ctx.opts,
        ETABLISSEMENTS.0,
    )?;
    let mut rng = Rng64::stream(seed, DOMAIN_COMPANIES, 0, 0);
    let mut text = String::with_capacity(16);
    let mut written = 0u64;
    let mut companies = 0u64;
    let mut current: Option<Company> = None;
    while written < rows {
        let n = (rows - written).min(CHUNK as u64) as usize;
        let mut siret = StringBuilder::with_capacity(n, n * 14);
        let mut siren = StringBuilder::with_capacity(n, n * 9);
        let mut denomination = StringBuilder::with_capacity(n, n * 24);
        let mut naf = StringBuilder::with_capacity(n, n * 6);
        let mut staff = Vec::with_capacity(n);
        let mut turnover = Vec::with_capacity(n);
        let mut commune = StringBuilder::with_capacity(n, n * 5);
        let mut region = StringBuilder::with_capacity(n, n * 2);
        for _ in 0..n {
            if current
                .as_ref()
                .is_none_or(|c| c.written >= c.establishments)
            {
                current = Some(new_company(t, seed, companies, &mut rng));
                companies += 1;
            }
            let Some(company) = current.as_mut() else {
                continue;
            };
            let (siret_value, place, headcount, yearly) = next_establishment(t, company, &mut rng);
            text.clear();
            push_digits(&mut text, siret_value, 14);
            siret.append_value(&text);
            siren.append_value(text.get(..9).unwrap_or_default());
            denomination.append_value(&company.name);
            naf.append_value(company.activity.naf);
            staff.push(headcount);
            turnover.push(yearly);
            commune.append_value(place.code);
            region.append_value(place.region);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(siret.finish()),
            Arc::new(siren.finish()),
            Arc::new(denomination.finish()),
            Arc::new(naf.finish()),
            Arc::new(Int32Array::from(staff)),
            Arc::new(Int64Array::from(turnover)),
            Arc::new(commune.finish()),
            Arc::new(region.finish()),
        ];
        output.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        ctx.progress.inc(n as u64);
        written += n as u64;
    }
    output.commit()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::collections::BTreeMap;

    fn read(dir: &Path, relative: &str) -> RecordBatch {
        let file = File::open(dir.join(relative)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let schema = batches[0].schema();
        arrow::compute::concat_batches(&schema, &batches).unwrap()
    }

    fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
        let column = batch.column_by_name(name).unwrap().as_string::<i32>();
        assert_eq!(column.null_count(), 0, "{name} has nulls");
        column.iter().map(|v| v.unwrap().to_string()).collect()
    }

    fn dates(batch: &RecordBatch, name: &str) -> Vec<i32> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Date32Type>()
            .values()
            .to_vec()
    }

    fn ints32(batch: &RecordBatch, name: &str) -> Vec<i32> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int32Type>()
            .values()
            .to_vec()
    }

    fn ints64(batch: &RecordBatch, name: &str) -> Vec<i64> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    fn floats(batch: &RecordBatch, name: &str) -> Vec<f64> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
            .to_vec()
    }

    fn generate(rows: u64, seed: u64) -> (tempfile::TempDir, Vec<GeneratedDataset>) {
        let dir = tempfile::tempdir().unwrap();
        let written = generate_datasets(
            dir.path(),
            &GenerateOptions {
                rows,
                seed,
                progress: false,
            },
        )
        .unwrap();
        (dir, written)
    }

    fn luhn_ok(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_digit()) && luhn_remainder(s.parse().unwrap()) == 0
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-40_000, -1, 0, 1, 10_957, STAY_START, STAY_END, 19_782] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
            assert_eq!((date - epoch).num_days(), i64::from(days));
        }
        assert_eq!(
            age_at(days_from_civil(2000, 6, 15), days_from_civil(2024, 6, 14)),
            23
        );
        assert_eq!(
            age_at(days_from_civil(2000, 6, 15), days_from_civil(2024, 6, 15)),
            24
        );
    }

    #[test]
    fn deterministic_maths_is_accurate() {
        for x in [-20.0, -1.5, -0.3, 0.0, 0.2, 1.0, 3.7, 12.0] {
            let e: f64 = det_exp(x);
            assert!((e - x.exp()).abs() <= 1e-12 * x.exp(), "exp({x})");
        }
        for x in [1e-12, 0.001, 0.5, 1.0, 1.5, 2.0, 10.0, 12345.678] {
            let l: f64 = det_ln(x);
            assert!((l - x.ln()).abs() <= 1e-12, "ln({x})");
        }
    }

    #[test]
    fn luhn_matches_known_numbers() {
        // SIRETs quoted in the contract (DINUM-style public bodies).
        assert!(luhn_ok("13000170500016"));
        assert!(luhn_ok("11000400700016"));
        assert!(!luhn_ok("13000170500017"));
        for k in 0..1000 {
            let siren = siren_number(7, k);
            assert!(luhn_remainder(siren) == 0 && (300_000_000..1_000_000_000).contains(&siren));
        }
    }

    #[test]
    fn permutation_is_a_bijection() {
        for (size, half_bits) in [(1_000u64, 5u32), (9_000, 7), (70_000, 9)] {
            let mut seen = HashSet::new();
            for v in 0..size {
                let p = permute(v, size, half_bits, 0xC0FFEE);
                assert!(p < size);
                assert!(seen.insert(p), "{v} collides");
            }
        }
    }

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

    #[test]
    fn datasets_are_consistent() {
        let (dir, written) = generate(2_000, 11);
        let names: Vec<_> = written.iter().map(|d| (d.name, d.relative_path)).collect();
        assert_eq!(names, vec![SEJOURS, REVENUS, ALLOCATAIRES, ETABLISSEMENTS]);

        let stays = read(dir.path(), SEJOURS.1);
        let revenus = read(dir.path(), REVENUS.1);
        let caf = read(dir.path(), ALLOCATAIRES.1);
        let etab = read(dir.path(), ETABLISSEMENTS.1);

        // Row counts.
        assert_eq!(stays.num_rows(), 2_000);
        assert_eq!(revenus.num_rows(), 1_000);
        assert_eq!(etab.num_rows(), 200);
        assert_eq!(written[0].rows, 2_000);
        assert_eq!(written[1].rows, 1_000);
        assert_eq!(written[2].rows, caf.num_rows() as u64);
        assert_eq!(written[3].rows, 200);
        let share = caf.num_rows() as f64 / 1_000.0;
        assert!((0.35..0.55).contains(&share), "allocataires share {share}");

        // fiscal.revenus: one row per person.
        let population: Vec<String> = strings(&revenus, "nir");
        let population_set: HashSet<&String> = population.iter().collect();
        assert_eq!(population_set.len(), population.len());
        assert!(ints32(&revenus, "annee").iter().all(|&y| y == 2024));
        assert!(
            ints64(&revenus, "revenu_fiscal_reference")
                .iter()
                .all(|&v| v >= 0)
        );
        let parts = floats(&revenus, "nombre_parts");
        assert!(
            parts
                .iter()
                .all(|&p| (1.0..=8.0).contains(&p) && (p * 2.0).fract() == 0.0)
        );
        let taxes = ints64(&revenus, "montant_impot");
        let untaxed = taxes.iter().filter(|&&t| t == 0).count() as f64 / taxes.len() as f64;
        assert!((0.35..0.75).contains(&untaxed), "untaxed share {untaxed}");
        assert!(
            strings(&revenus, "situation_familiale")
                .iter()
                .all(|s| ["M", "C", "D", "V", "O"].contains(&s.as_str()))
        );

        // sante.sejours.
        let ids = ints64(&stays, "id_sejour");
        assert_eq!(ids, (1..=2_000).collect::<Vec<i64>>());
        let nirs = strings(&stays, "nir");
        let sexes = strings(&stays, "sexe");
        let births = dates(&stays, "date_naissance");
        let entries = dates(&stays, "date_entree");
        let exits = dates(&stays, "date_sortie");
        let names = strings(&stays, "nom");
        let postcodes = strings(&stays, "code_postal");
        let regions = strings(&stays, "region");
        let diagnoses = strings(&stays, "diagnostic");
        let costs = floats(&stays, "cout");
        let mut identity: HashMap<&str, (&str, i32, &str, &str)> = HashMap::new();
        for k in 0..stays.num_rows() {
            let nir = nirs[k].as_str();
            assert_eq!(nir.len(), 13);
            assert!(nir.bytes().all(|b| b.is_ascii_digit()));
            assert!(
                population_set.contains(&nirs[k]),
                "stay nir not in fiscal.revenus"
            );
            assert_eq!(&nir[0..1], sexes[k]);
            let (year, month, _) = civil_from_days(births[k]);
            assert_eq!(nir[1..3].parse::<i32>().unwrap(), year % 100);
            assert_eq!(nir[3..5].parse::<u32>().unwrap(), month);
            assert!(entries[k] >= STAY_START && exits[k] <= STAY_END);
            assert!(exits[k] >= entries[k]);
            assert!(entries[k] >= births[k]);
            assert!(costs[k] > 0.0 && (round_cents(costs[k]) - costs[k]).abs() < 1e-9);
            assert_eq!(postcodes[k].len(), 5);
            assert!(COMMUNES.iter().any(|c| c.region == regions[k]));
            assert!(DIAGNOSES.iter().any(|d| d.code == diagnoses[k]));
            assert_eq!(names[k], names[k].to_uppercase());
            let seen = identity.entry(nir).or_insert((
                names[k].as_str(),
                births[k],
                postcodes[k].as_str(),
                regions[k].as_str(),
            ));
            assert_eq!(
                *seen,
                (
                    names[k].as_str(),
                    births[k],
                    postcodes[k].as_str(),
                    regions[k].as_str()
                )
            );
            if diagnoses[k].starts_with('O') {
                assert_eq!(sexes[k], "2");
            }
        }
        // Some people have several stays; diabetes is well represented.
        assert!(identity.len() < 1_600);
        let diabetic = diagnoses
            .iter()
            .filter(|d| ["E10", "E11", "E13", "E14"].contains(&&d[..3]))
            .count();
        assert!(diabetic >= 40, "only {diabetic} diabetes stays");

        // social.allocataires.
        let numbers = strings(&caf, "numero_allocataire");
        assert!(
            numbers
                .iter()
                .all(|n| n.len() == 7 && n.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(numbers.iter().collect::<HashSet<_>>().len(), numbers.len());
        let caf_nirs = strings(&caf, "nir");
        assert_eq!(
            caf_nirs.iter().collect::<HashSet<_>>().len(),
            caf_nirs.len()
        );
        assert!(caf_nirs.iter().all(|n| population_set.contains(n)));
        assert!(ints32(&caf, "quotient_familial").iter().all(|&q| q >= 0));
        assert!(
            ints32(&caf, "nombre_enfants")
                .iter()
                .all(|&c| (0..=6).contains(&c))
        );
        assert!(
            floats(&caf, "montant_prestations")
                .iter()
                .all(|&m| m >= 0.0)
        );
        let communes: HashSet<&str> = COMMUNES.iter().map(|c| c.code).collect();
        assert!(
            strings(&caf, "commune")
                .iter()
                .all(|c| communes.contains(c.as_str()))
        );

        // entreprises.etablissements.
        let sirets = strings(&etab, "siret");
        let sirens = strings(&etab, "siren");
        assert_eq!(sirets.iter().collect::<HashSet<_>>().len(), sirets.len());
        for (siret, siren) in sirets.iter().zip(&sirens) {
            assert_eq!(siret.len(), 14);
            assert_eq!(siren.len(), 9);
            assert!(luhn_ok(siret), "siret {siret}");
            assert!(luhn_ok(siren), "siren {siren}");
            assert_eq!(&siret[..9], siren);
        }
        assert!(
            sirens.iter().collect::<HashSet<_>>().len() < sirens.len(),
            "no multi-site company"
        );
        assert!(ints32(&etab, "effectif").iter().all(|&e| e >= 0));
        assert!(ints64(&etab, "chiffre_affaires").iter().all(|&c| c >= 0));
        let nafs: HashSet<&str> = ACTIVITIES.iter().map(|a| a.naf).collect();
        assert!(
            strings(&etab, "naf")
                .iter()
                .all(|n| nafs.contains(n.as_str()))
        );
        for (commune, region) in strings(&etab, "commune")
            .iter()
            .zip(strings(&etab, "region"))
        {
            assert!(
                COMMUNES
                    .iter()
                    .any(|c| c.code == commune && c.region == region)
            );
        }

        // Parquet metadata and no leftover temporary files.
        let file = File::open(dir.path().join(SEJOURS.1)).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let meta = builder.metadata().file_metadata();
        assert_eq!(meta.created_by(), Some("passerelle demo"));
        let kv = meta.key_value_metadata().unwrap();
        assert!(
            kv.iter()
                .any(|e| e.key == "passerelle.seed" && e.value.as_deref() == Some("11"))
        );
        for folder in ["sante", "fiscal", "social", "entreprises"] {
            for entry in fs::read_dir(dir.path().join(folder)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(
                    name.ends_with(".parquet") && !name.starts_with('.'),
                    "{name}"
                );
            }
        }
    }

    /// Every value rendered as the catalog writes it (ISO dates).
    fn rendered(batch: &RecordBatch, name: &str) -> Vec<String> {
        let column = batch.column_by_name(name).unwrap();
        match column.data_type() {
            DataType::Utf8 => strings(batch, name),
            DataType::Int32 => ints32(batch, name).iter().map(i32::to_string).collect(),
            DataType::Int64 => ints64(batch, name).iter().map(i64::to_string).collect(),
            DataType::Float64 => floats(batch, name).iter().map(f64::to_string).collect(),
            DataType::Date32 => dates(batch, name)
                .iter()
                .map(|&d| {
                    let (y, m, d) = civil_from_days(d);
                    format!("{y:04}-{m:02}-{d:02}")
                })
                .collect(),
            other => panic!("unexpected type {other}"),
        }
    }

    /// `value` (rendered) is within the bound, compared as a number or as an ISO date.
    fn within(value: &str, bound: &toml::Value, at_least: bool) -> bool {
        let ordering = match bound {
            toml::Value::String(date) => value.cmp(date.as_str()),
            toml::Value::Integer(n) => value.parse::<f64>().unwrap().total_cmp(&(*n as f64)),
            toml::Value::Float(n) => value.parse::<f64>().unwrap().total_cmp(n),
            other => panic!("unexpected bound {other}"),
        };
        if at_least {
            ordering.is_ge()
        } else {
            ordering.is_le()
        }
    }

    #[test]
    fn catalog_describes_the_generated_data() {
        let catalog: toml::Table = include_str!("../../policies/datasets.toml")
            .parse()
            .unwrap();
        let (dir, _) = generate(20_000, 11);
        let datasets = catalog["datasets"].as_array().unwrap();
        let expected = [SEJOURS, REVENUS, ALLOCATAIRES, ETABLISSEMENTS];
        assert_eq!(datasets.len(), expected.len());
        let classes = [
            "direct_identifier",
            "quasi_identifier",
            "medical_secret",
            "tax_secret",
            "business_secret",
            "public",
        ];
        for (entry, (name, path)) in datasets.iter().zip(expected) {
            assert_eq!(entry["name"].as_str(), Some(name));
            assert_eq!(entry["path"].as_str(), Some(path));
            for key in ["title", "description", "secret", "legal_basis"] {
                assert!(!entry[key].as_str().unwrap().is_empty(), "{name}: {key}");
            }
            let batch = read(dir.path(), path);
            let schema = batch.schema();
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let fields = entry["fields"].as_array().unwrap();
            let described: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
            assert_eq!(
                described, columns,
                "{name}: catalog columns differ from the file"
            );
            for key in entry["primary_key"].as_array().unwrap() {
                assert!(
                    columns.contains(&key.as_str().unwrap()),
                    "{name}: primary key"
                );
            }
            for f in fields {
                let column = f["name"].as_str().unwrap();
                let what = format!("{name}.{column}");
                for key in ["title", "description", "example"] {
                    assert!(!f[key].as_str().unwrap().is_empty(), "{what}: {key}");
                }
                assert!(
                    classes.contains(&f["class"].as_str().unwrap()),
                    "{what}: class"
                );
                let data_type = schema.field_with_name(column).unwrap().data_type().clone();
                let type_ok = matches!(
                    (f["type"].as_str().unwrap(), &data_type),
                    ("string", DataType::Utf8)
                        | ("integer", DataType::Int32 | DataType::Int64)
                        | ("number", DataType::Float64)
                        | ("date", DataType::Date32)
                );
                assert!(type_ok, "{what}: catalog type vs {data_type}");
                let mut values = rendered(&batch, column);
                let example = f["example"].as_str().unwrap().to_string();
                let constraints = f["constraints"].as_table().unwrap();
                if constraints.get("required").and_then(toml::Value::as_bool) == Some(true) {
                    assert_eq!(
                        batch.column_by_name(column).unwrap().null_count(),
                        0,
                        "{what}"
                    );
                }
                if constraints.get("unique").and_then(toml::Value::as_bool) == Some(true) {
                    let distinct: HashSet<&String> = values.iter().collect();
                    assert_eq!(distinct.len(), values.len(), "{what}: not unique");
                }
                values.push(example);
                if let Some(allowed) = constraints.get("enum").and_then(toml::Value::as_array) {
                    let allowed: Vec<&str> = allowed.iter().map(|v| v.as_str().unwrap()).collect();
                    for v in &values {
                        assert!(allowed.contains(&v.as_str()), "{what}: {v} not in enum");
                    }
                }
                for (key, at_least) in [("minimum", true), ("maximum", false)] {
                    if let Some(bound) = constraints.get(key) {
                        for v in &values {
                            assert!(within(v, bound, at_least), "{what}: {v} breaks {key}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let (a, _) = generate(3_000, 5);
        let (b, _) = generate(3_000, 5);
        let (c, _) = generate(3_000, 6);
        for (_, relative) in [SEJOURS, REVENUS, ALLOCATAIRES, ETABLISSEMENTS] {
            let bytes_a = fs::read(a.path().join(relative)).unwrap();
            let bytes_b = fs::read(b.path().join(relative)).unwrap();
            let bytes_c = fs::read(c.path().join(relative)).unwrap();
            assert_eq!(
                bytes_a, bytes_b,
                "{relative} differs between identical runs"
            );
            assert_ne!(bytes_a, bytes_c, "{relative} ignores the seed");
        }
    }

    #[test]
    fn zero_rows_still_writes_every_file() {
        let (dir, written) = generate(0, 1);
        let rows: Vec<u64> = written.iter().map(|d| d.rows).collect();
        assert_eq!(rows[0], 0);
        assert_eq!(rows[1], 100);
        assert_eq!(rows[3], 200);
        assert_eq!(read_rows(dir.path(), SEJOURS.1), 0);
        assert_eq!(read_rows(dir.path(), REVENUS.1), 100);
        assert!(ProgressStyle::with_template(PROGRESS_TEMPLATE).is_ok());
    }

    fn read_rows(dir: &Path, relative: &str) -> i64 {
        let file = File::open(dir.join(relative)).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        builder.metadata().file_metadata().num_rows()
    }

    #[test]
    fn too_many_rows_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenerateOptions {
            rows: MAX_ROWS + 1,
            ..GenerateOptions::default()
        };
        assert!(matches!(
            generate_datasets(dir.path(), &opts),
            Err(GenerateError::TooManyRows { .. })
        ));
    }

    /// Timing of the default-scale and large runs:
    /// `cargo test --release -- --ignored --nocapture one_million`.
    #[test]
    #[ignore]
    fn one_million_stays_timing() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenerateOptions {
            rows: 1_000_000,
            seed: DEFAULT_SEED,
            progress: true,
        };
        let started = std::time::Instant::now();
        let written = generate_datasets(dir.path(), &opts).unwrap();
        let elapsed = started.elapsed();
        for d in &written {
            let size = fs::metadata(dir.path().join(d.relative_path))
                .unwrap()
                .len();
            println!("{:<28} {:>9} rows {:>11} bytes", d.name, d.rows, size);
        }
        println!("1 000 000 stays generated in {elapsed:.2?}");
    }
}
