//! The cost of protecting a table of the statistical secret (primary rules, hypercube
//! suppression, the attacker's audit), by table size.
//!
//! `cargo bench --bench secrecy` builds tables of random microdata (the generator of the
//! oracle test, `tests/integration/secrecy_data.rs`) with three measures (rows, distinct
//! units, a magnitude) under the `medical` and `business` profiles, from a 2-dimension table
//! to one the size of the demo's stays table (18 regions × 6 age bands × 22 chapters), and
//! prints, per table: cells, primary and secondary secrets, audit rounds, and the time of
//! `protect` (best of `RUNS`).
//!
//! Then the cost of a new version audited together with the one it replaces
//! (`protect_with`): one record in twenty removed and 5 % new ones, protected alone and
//! beside the previous version, with the secondary secrets each needs
//! (`SECRECY_VERSIONS_ONLY=1` runs this part alone; `SECRECY_RECORDS=60000` only the tables
//! of that many records).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup"
)]

#[path = "../tests/integration/secrecy_data.rs"]
#[allow(dead_code, reason = "shared with the oracle test")]
mod data;

use std::time::{Duration, Instant};

use passerelle::secrecy::{Cube, Link, Neighbour, Profile, Tie, primaries, protect, protect_with};

const RUNS: usize = 3;

fn main() {
    if std::env::var("SECRECY_VERSIONS_ONLY").is_ok() {
        versions();
        return;
    }
    // Sparse tables (few records a cell) hide most cells; dense ones few.
    let cases: &[(&str, &[usize], usize)] = &[
        ("22 × 19", &[22, 19], 2_000),
        ("18 × 6 × 22", &[18, 6, 22], 20_000),
        ("18 × 6 × 22", &[18, 6, 22], 60_000),
        ("18 × 6 × 22", &[18, 6, 22], 300_000),
        ("14 × 9 × 23", &[14, 9, 23], 40_000),
        ("10 × 6 × 5 × 4", &[10, 6, 5, 4], 30_000),
    ];
    println!("| table | records | profile | cells | primary | secondary | rounds | protect |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for &(name, sizes, records) in cases {
        let count = records;
        let records = data::microdata(11, sizes, records);
        let (dims, measures, cells) = data::table(sizes, &records);
        let cube = Cube::new(dims, measures, cells).unwrap();
        for profile in ["medical", "business"] {
            let p = Profile::named(profile).unwrap();
            let mut best = Duration::MAX;
            let mut last = None;
            for _ in 0..RUNS {
                let start = Instant::now();
                let protection = protect(&cube, &p);
                best = best.min(start.elapsed());
                last = Some(protection);
            }
            let (primary, secondary, rounds) = match last.unwrap() {
                Ok(protection) => {
                    let (p, s) = protection.counts();
                    (p.to_string(), s.to_string(), protection.rounds.to_string())
                }
                Err(e) => ("refused".into(), e.to_string(), "-".into()),
            };
            println!(
                "| {name} | {count} | {profile} | {} | {primary} | {secondary} | {rounds} | {:.1} ms |",
                cube.len(),
                best.as_secs_f64() * 1e3
            );
        }
    }
    versions();
}

/// A new version alone and beside the one it replaces.
fn versions() {
    let cases: &[(&str, &[usize], usize)] = &[
        ("22 × 19", &[22, 19], 20_000),
        ("18 × 6 × 22", &[18, 6, 22], 300_000),
        ("18 × 6 × 22", &[18, 6, 22], 60_000),
    ];
    println!();
    println!(
        "| table | records | profile | secondary alone | secondary together | protect alone | protect together |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    let only: Option<usize> = std::env::var("SECRECY_RECORDS")
        .ok()
        .and_then(|r| r.parse().ok());
    for &(name, sizes, count) in cases.iter().filter(|c| only.is_none_or(|r| r == c.2)) {
        let old_records = data::microdata(11, sizes, count);
        let mut new_records: Vec<data::Record> = old_records
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 20 != 0)
            .map(|(_, r)| data::Record {
                unit: r.unit,
                at: r.at.clone(),
                amount: r.amount,
            })
            .collect();
        new_records.extend(data::microdata(12, sizes, count / 20));
        let cube_of = |records: &[data::Record]| {
            let (dims, measures, cells) = data::table(sizes, records);
            Cube::new(dims, measures, cells).unwrap()
        };
        let (old, new) = (cube_of(&old_records), cube_of(&new_records));
        for profile in ["medical", "business"] {
            let p = Profile::named(profile).unwrap();
            let Ok(old_protection) = protect(&old, &p) else {
                continue;
            };
            let links: Vec<Link> = (0..new.len())
                .flat_map(|c| {
                    let (new, old) = (&new, &old);
                    (0..3).map(move |m| Link {
                        cell: c,
                        measure: m,
                        other_cell: c,
                        other_measure: m,
                        tie: match Tie::between(new.value(c, m), old.value(c, m)) {
                            // Records removed and added: no cell's direction is public.
                            Tie::Equal => Tie::Equal,
                            _ => Tie::Changed,
                        },
                    })
                })
                .collect();
            let neighbours = [Neighbour {
                cube: &old,
                hidden: old_protection.hidden(),
                primaries: primaries(&old, &p),
                profile: p.clone(),
                links,
            }];
            let (mut alone_time, mut together_time) = (Duration::MAX, Duration::MAX);
            let (mut alone, mut together) = (None, None);
            // One run: a joint protection of a sparse table takes minutes.
            for _ in 0..1 {
                let start = Instant::now();
                alone = Some(protect(&new, &p));
                alone_time = alone_time.min(start.elapsed());
                let start = Instant::now();
                together = Some(protect_with(&new, &p, &neighbours));
                together_time = together_time.min(start.elapsed());
            }
            let describe = |r: Option<Result<passerelle::secrecy::Protection, _>>| match r {
                Some(Ok(protection)) => protection.counts().1.to_string(),
                Some(Err(e)) => format!("refused ({e})"),
                None => "-".into(),
            };
            let (alone_secondary, together_secondary) = (describe(alone), describe(together));
            println!(
                "| {name} | {count} | {profile} | {alone_secondary} | {together_secondary} | {:.1} ms | {:.1} ms |",
                alone_time.as_secs_f64() * 1e3,
                together_time.as_secs_f64() * 1e3
            );
        }
    }
}
