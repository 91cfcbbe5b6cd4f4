//! The cost of protecting a table of the statistical secret (primary rules, hypercube
//! suppression, the attacker's audit), by table size.
//!
//! `cargo bench --bench secrecy` builds tables of random microdata (the generator of the
//! oracle test, `tests/integration/secrecy_data.rs`) with three measures (rows, distinct
//! units, a magnitude) under the `medical` and `business` profiles, from a 2-dimension table
//! to one the size of the demo's stays table (18 regions × 6 age bands × 22 chapters), and
//! prints, per table: cells, primary and secondary secrets, audit rounds, and the time of
//! `protect` (best of `RUNS`).

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

use passerelle::secrecy::{Cube, Profile, protect};

const RUNS: usize = 3;

fn main() {
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
}
