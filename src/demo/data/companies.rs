//! `entreprises.etablissements`: the synthetic company register (SIREN and SIRET with their
//! Luhn keys, invented names, NAF activity, headcount, turnover), written establishment by
//! establishment.
//!
//! Every company is invented (SIRENs from 300000000 up, clear of public bodies' numbers): it
//! must never read a real register or touch the network, and it writes only through [`Output`]
//! (temporary file, then rename).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::random::{DOMAIN_COMPANIES, DOMAIN_NUMBERING, Rng64, permute, weighted, weighted_in};
use super::reference::{
    self, ACTIVITIES, COMMUNES, Commune, FIRST_NAMES, PLACES, SAINTS, SURNAMES,
};
use super::tables::{FALLBACK_COMMUNE, Tables};
use super::writer::{CHUNK, Output, field, push_digits, schema};
use super::{Ctx, ETABLISSEMENTS, GenerateError};

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
pub(super) fn luhn_remainder(value: u64) -> u64 {
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

pub(super) fn write_establishments(ctx: &Ctx<'_>, rows: u64) -> Result<u64, GenerateError> {
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

    fn luhn_ok(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_digit()) && luhn_remainder(s.parse().unwrap()) == 0
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
}
