//! Random microdata and the full tables computed from it by brute force, for the statistical
//! secret's oracle test and its benchmark (`benches/secrecy.rs` includes this file).

use std::collections::{HashMap, HashSet};

use passerelle::secrecy::{CellFacts, Dimension, Measure, MeasureKind};
use rand::{Rng, SeedableRng};

/// One microdata record: its statistical unit, its value on each dimension, a magnitude.
pub struct Record {
    pub unit: u32,
    pub at: Vec<usize>,
    pub amount: f64,
}

/// Random microdata: `records` rows over dimensions of `sizes`, skewed so that some cells are
/// small, some units appear in several cells and some cells have a dominant contributor.
pub fn microdata(seed: u64, sizes: &[usize], records: usize) -> Vec<Record> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let units = (records / 3).max(2) as u32;
    (0..records)
        .map(|_| {
            let at = sizes
                .iter()
                .map(|&n| {
                    // Skewed: the first values are common, the last ones rare.
                    let x: f64 = rng.random::<f64>();
                    ((x * x) * n as f64) as usize
                })
                .collect();
            let unit = rng.random_range(0..units);
            // A few units are giants.
            let amount = if unit % 17 == 0 {
                rng.random_range(5_000.0..50_000.0)
            } else {
                rng.random_range(10.0..500.0)
            };
            Record { unit, at, amount }
        })
        .collect()
}

/// A table as `Cube::new` takes it: dimensions, measures, cells by coordinates.
pub type Table = (Vec<Dimension>, Vec<Measure>, Vec<(Vec<usize>, CellFacts)>);

/// The full table (margins included) of `records`, computed by brute force.
pub fn table(sizes: &[usize], records: &[Record]) -> Table {
    let dims: Vec<Dimension> = sizes
        .iter()
        .enumerate()
        .map(|(j, &n)| Dimension::flat(format!("d{j}"), (0..n).map(|v| format!("v{v}")).collect()))
        .collect();
    let measures = vec![
        Measure {
            name: "lignes".into(),
            kind: MeasureKind::Rows,
        },
        Measure {
            name: "unites".into(),
            kind: MeasureKind::Units,
        },
        Measure {
            name: "montant".into(),
            kind: MeasureKind::Sum,
        },
    ];
    let mut cells = Vec::new();
    for coords in grid(sizes) {
        let inside: Vec<&Record> = records
            .iter()
            .filter(|r| {
                coords
                    .iter()
                    .zip(&r.at)
                    .zip(sizes)
                    .all(|((&c, &a), &n)| c == n || c == a)
            })
            .collect();
        let units: HashSet<u32> = inside.iter().map(|r| r.unit).collect();
        let mut by_unit: HashMap<u32, f64> = HashMap::new();
        for r in &inside {
            *by_unit.entry(r.unit).or_default() += r.amount;
        }
        let sum: f64 = inside.iter().map(|r| r.amount).sum();
        let largest = by_unit.values().copied().fold(0.0, f64::max);
        cells.push((
            coords,
            CellFacts {
                units: units.len() as u64,
                values: vec![inside.len() as f64, units.len() as f64, sum],
                largest: vec![0.0, 0.0, largest],
            },
        ));
    }
    (dims, measures, cells)
}

/// Every coordinate of a table of `sizes` (each dimension's margin is `size`).
pub fn grid(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut all = vec![Vec::new()];
    for &n in sizes {
        all = all
            .into_iter()
            .flat_map(|prefix: Vec<usize>| {
                (0..=n).map(move |v| {
                    let mut c = prefix.clone();
                    c.push(v);
                    c
                })
            })
            .collect();
    }
    all
}
