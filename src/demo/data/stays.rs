//! `sante.sejours`: synthetic hospital stays (patient, admission and discharge dates, ICD-10
//! main diagnosis, cost) drawn from the synthetic population and written chunk by chunk.
//!
//! Patients are people of the synthetic population and diagnoses come from the embedded ICD-10
//! table: it must never read real medical data or touch the network, and it writes only through
//! [`Output`] (temporary file, then rename).

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::calendar::{age_at, days_from_civil};
use super::population::{Person, Population};
use super::random::{DOMAIN_STAYS, Rng64, weighted_f64};
use super::reference::{DIAGNOSES, Family, INFANT_FALLBACK};
use super::tables::stay_band;
use super::writer::{CHUNK, Output, field, push_digits, schema};
use super::{Ctx, GenerateError, SEJOURS};

/// First and last day of the hospital stays.
pub(super) const STAY_START: i32 = days_from_civil(2022, 1, 1);
pub(super) const STAY_END: i32 = days_from_civil(2024, 12, 31);

/// Rounds an amount in euros to the cent.
pub(super) fn round_cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

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

pub(super) fn write_stays(ctx: &Ctx<'_>) -> Result<u64, GenerateError> {
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
            id.push(stay_id(ctx.opts.seed, start + k));
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

/// The `id_sejour` of the `n`-th stay: unique (a bijection of the 40-bit sequence number) but
/// not sequential, so that gaps between the ids a row filter lets through do not count the
/// stays it hides.
fn stay_id(seed: u64, n: u64) -> i64 {
    const MASK: u64 = (1 << 40) - 1;
    // Odd multipliers and xor are bijections modulo 2^40; the seed moves the whole mapping.
    let mut x = (n ^ seed.wrapping_mul(0x2545_f491)) & MASK;
    x = x.wrapping_mul(0x9e37_79b9_7f4b) & MASK;
    x ^= x >> 17;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93 | 1) & MASK;
    x ^= x >> 19;
    (x + 1) as i64
}
