//! Pseudonymisation on the demo hub's real columns: stable inside a project, unrelated across
//! projects, not a plain hash, no collisions at scale, NULLs kept.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, StringArray};
use base64::Engine;
use md5::Digest as _;
use passerelle::pseudonym::kernels::pseudonymise;
use passerelle::pseudonym::{MasterKey, PseudonymDomain};

use crate::support::hub;

fn master() -> MasterKey {
    MasterKey::load_file(&hub().layout().master_key()).unwrap()
}

/// Every value of a string column of a demo dataset.
fn column(relative: &str, name: &str) -> StringArray {
    let file = std::fs::File::open(hub().layout().data().join(relative)).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .clone();
        out.extend(col.iter().map(|v| v.map(str::to_string)));
    }
    out.into_iter().collect()
}

fn pseudonyms(domain: &PseudonymDomain, values: &StringArray) -> Vec<String> {
    let out = pseudonymise(domain, values).unwrap();
    out.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect()
}

fn join_count(left: &[String], right: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in right {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    left.iter()
        .map(|l| counts.get(l.as_str()).copied().unwrap_or(0))
        .sum()
}

#[test]
fn same_nir_across_datasets_joins_exactly_like_the_raw_join() {
    let m = master();
    let diabete = PseudonymDomain::derive(&m, "projet-diabete", 1).unwrap();
    let sejours = column("sante/sejours.parquet", "nir");
    let revenus = column("fiscal/revenus.parquet", "nir");
    let raw = |a: &StringArray| a.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>();
    let raw_join = join_count(&raw(&sejours), &raw(&revenus));
    assert!(raw_join > 0);
    assert_eq!(
        join_count(
            &pseudonyms(&diabete, &sejours),
            &pseudonyms(&diabete, &revenus)
        ),
        raw_join
    );
}

#[test]
fn projects_share_no_pseudonym_and_none_is_a_plain_hash() {
    let m = master();
    let diabete = PseudonymDomain::derive(&m, "projet-diabete", 1).unwrap();
    let emploi = PseudonymDomain::derive(&m, "projet-emploi", 1).unwrap();
    let nirs = column("fiscal/revenus.parquet", "nir");
    let a: HashSet<String> = pseudonyms(&diabete, &nirs).into_iter().collect();
    let b: HashSet<String> = pseudonyms(&emploi, &nirs).into_iter().collect();
    assert_eq!(a.len(), nirs.len(), "distinct NIRs, distinct pseudonyms");
    assert!(
        a.is_disjoint(&b),
        "projet-diabete and projet-emploi share a pseudonym"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for nir in nirs.iter().flatten().take(500) {
        let digests: Vec<Vec<u8>> = vec![
            md5::Md5::digest(nir).to_vec(),
            sha1::Sha1::digest(nir).to_vec(),
            sha2::Sha256::digest(nir).to_vec(),
        ];
        for d in digests {
            for encoded in [
                hex::encode(&d),
                b64.encode(&d),
                b64url.encode(&d),
                hex::encode(&d[..16]),
                b64url.encode(&d[..16]),
            ] {
                assert!(
                    !a.contains(&encoded) && !b.contains(&encoded),
                    "a pseudonym equals a plain hash"
                );
            }
        }
        assert!(!a.contains(nir), "a pseudonym equals its raw value");
    }
}

#[test]
fn nulls_stay_null() {
    let domain = PseudonymDomain::derive(&master(), "projet-diabete", 1).unwrap();
    let input = StringArray::from(vec![None, Some("1840375056123"), None]);
    let out = pseudonymise(&domain, &input).unwrap();
    assert_eq!(out.null_count(), 2);
    assert!(out.is_valid(1));
}

#[test]
fn key_rotation_gives_new_pseudonyms() {
    let m = master();
    let v1 = PseudonymDomain::derive(&m, "projet-diabete", 1).unwrap();
    let v2 = PseudonymDomain::derive(&m, "projet-diabete", 2).unwrap();
    let nirs = column("fiscal/revenus.parquet", "nir");
    let a: HashSet<String> = pseudonyms(&v1, &nirs).into_iter().collect();
    let b: HashSet<String> = pseudonyms(&v2, &nirs).into_iter().collect();
    assert!(a.is_disjoint(&b));
}

#[test]
fn no_collision_across_ten_million_distinct_nirs() {
    let domain =
        PseudonymDomain::derive(&MasterKey::from_bytes([42; 32]), "collisions", 1).unwrap();
    let threads = 2u64;
    let per = 5_000_000u64;
    let parts: Vec<Vec<u128>> = std::thread::scope(|scope| {
        (0..threads)
            .map(|t| {
                let domain = domain.clone();
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(per as usize);
                    let mut buf = [0u8; passerelle::pseudonym::PSEUDONYM_LEN];
                    for i in t * per..(t + 1) * per {
                        // Distinct 13-digit NIR-shaped values: sex, year, month, then i.
                        let nir = format!("1{:02}{:02}{:08}", i % 100, 1 + i % 12, i);
                        domain.pseudonymise_into(nir.as_bytes(), &mut buf);
                        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(buf)
                            .unwrap();
                        out.push(u128::from_be_bytes(bytes[..16].try_into().unwrap()));
                    }
                    out
                })
            })
            .map(|h| h.join().unwrap())
            .collect()
    });
    let mut all: Vec<u128> = parts.into_iter().flatten().collect();
    assert_eq!(all.len(), 10_000_000);
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "collision among 10 million pseudonyms");
}
