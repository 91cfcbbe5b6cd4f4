//! Pseudonymising a column of 13-character NIRs (issue: pseudonymisation; goal ≥ 10 million
//! values per second per core). Run with `cargo bench --bench pseudonym`; criterion reports
//! the time per batch of 1 048 576 values, and the throughput in elements per second.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use arrow::array::StringArray;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use passerelle::pseudonym::kernels::{partial, postcode_departement, pseudonymise};
use passerelle::pseudonym::{MasterKey, PseudonymDomain};

const N: usize = 1 << 20;

fn nirs() -> StringArray {
    (0..N as u64)
        .map(|i| {
            Some(format!(
                "{}{:02}{:02}{:08}",
                1 + i % 2,
                i % 100,
                1 + i % 12,
                i
            ))
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let domain =
        PseudonymDomain::derive(&MasterKey::from_bytes([9; 32]), "projet-diabete", 1).unwrap();
    let column = nirs();
    let postcodes: StringArray = (0..N)
        .map(|i| Some(format!("{:05}", 1000 + (i * 7) % 95000)))
        .collect();
    let mut group = c.benchmark_group("pseudonym kernels (1 Mi values, one core)");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("pseudonymise NIR (HMAC-SHA-256, base64url)", |b| {
        b.iter(|| pseudonymise(&domain, &column).unwrap())
    });
    group.bench_function("partial:4", |b| b.iter(|| partial(&column, 4).unwrap()));
    group.bench_function("postcode to departement", |b| {
        b.iter(|| postcode_departement(&postcodes).unwrap())
    });
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
