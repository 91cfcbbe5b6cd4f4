//! End-to-end tests of [`generate_datasets`]: the four files read back together, checked
//! against each other (same people, same NIRs), against `policies/datasets.toml`, and for
//! determinism. The unit tests of each part live beside its code.

use super::calendar::civil_from_days;
use super::companies::luhn_remainder;
use super::reference::{ACTIVITIES, COMMUNES, DIAGNOSES};
use super::stays::{STAY_END, STAY_START, round_cents};
use super::*;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};

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
    // Households (id_foyer): the members of one share its situation, parts, income and tax;
    // dependants make some households larger than one person.
    let foyers = strings(&revenus, "id_foyer");
    let situations = strings(&revenus, "situation_familiale");
    let incomes = ints64(&revenus, "revenu_fiscal_reference");
    let mut households: HashMap<&str, (i64, i64, u64, &str, usize)> = HashMap::new();
    for k in 0..foyers.len() {
        assert!(foyers[k].len() == 13 && foyers[k].bytes().all(|b| b.is_ascii_digit()));
        let this = (
            incomes[k],
            taxes[k],
            parts[k].to_bits(),
            situations[k].as_str(),
        );
        let entry = households
            .entry(foyers[k].as_str())
            .or_insert((this.0, this.1, this.2, this.3, 0));
        assert_eq!(
            (entry.0, entry.1, entry.2, entry.3),
            this,
            "household {}",
            foyers[k]
        );
        entry.4 += 1;
    }
    let shared = households.values().filter(|h| h.4 > 1).count();
    assert!(
        households.len() < 950 && shared > 50,
        "{} households, {shared} of several people",
        households.len()
    );

    // sante.sejours.
    let ids = ints64(&stays, "id_sejour");
    let unique: std::collections::HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 2_000, "stay ids are unique");
    assert!(ids.iter().all(|&id| id > 0));
    let ascending = ids.windows(2).filter(|w| w[1] == w[0] + 1).count();
    assert!(
        ascending < 20,
        "stay ids are not sequential ({ascending} steps of 1)"
    );
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
    let catalog: toml::Table = include_str!("../../../policies/datasets.toml")
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

/// The 10 million CAF numbers are seven digits and all distinct: the first 9 million ranks in
/// 1000000–9999999 (as before), the last million in 0000000–0999999.
#[test]
fn caf_numbers_fill_the_seven_digit_space_once() {
    use super::households::{MAX_CAF_FILES, caf_number};
    let mut seen = vec![false; MAX_CAF_FILES as usize];
    let ranks = (0..200_000u64).chain(8_800_000..MAX_CAF_FILES);
    for rank in ranks {
        let number = caf_number(DEFAULT_SEED, rank);
        assert!(number < MAX_CAF_FILES, "rank {rank}: {number}");
        assert_eq!(number < 1_000_000, rank >= 9_000_000, "rank {rank}");
        assert!(!seen[number as usize], "rank {rank}: {number} twice");
        seen[number as usize] = true;
    }
    assert!(
        seen[..1_000_000].iter().all(|&s| s),
        "the last million is a permutation"
    );
}

/// Columns of many distinct values (identifiers, amounts) fall back to plain pages once their
/// dictionary holds `parquet_layout::DICTIONARY_PAGE_BYTES`, instead of carrying a dictionary
/// of up to 1 MiB that every read of the row group decodes whole; columns of few values keep
/// theirs, and pages hold `parquet_layout::PAGE_ROWS` rows at most.
#[test]
fn dictionaries_stay_small_and_pages_short() {
    use crate::parquet_layout::{DICTIONARY_PAGE_BYTES, PAGE_ROWS};
    let (dir, _) = generate(20_000, 11);
    let file = File::open(dir.path().join(SEJOURS.1)).unwrap();
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    let metadata = reader.metadata().clone();
    let row_group = metadata.row_group(0);
    let mut dictionaries = HashMap::new();
    for chunk in row_group.columns() {
        let name = chunk.column_path().string();
        if let Some(start) = chunk.dictionary_page_offset() {
            let bytes = usize::try_from(chunk.data_page_offset() - start).unwrap();
            // (The writer checks its limit once per write batch: one batch may go over.)
            assert!(bytes < 2 * DICTIONARY_PAGE_BYTES, "{name}: {bytes} bytes");
            dictionaries.insert(name, bytes);
        }
    }
    for few in ["region", "sexe", "diagnostic", "date_entree"] {
        assert!(dictionaries.contains_key(few), "{few} lost its dictionary");
    }
    // 20 000 distinct stay numbers: a dictionary of more than 64 KiB, had it been kept.
    assert!(
        dictionaries["id_sejour"] < DICTIONARY_PAGE_BYTES + 32 * 1024,
        "{dictionaries:?}"
    );
    let pages = metadata
        .offset_index()
        .expect("the offset index is written");
    for (column, index) in pages[0].iter().enumerate() {
        let starts: Vec<i64> = index
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .chain([row_group.num_rows()])
            .collect();
        // (The limit is checked once per write batch of 1 024 rows.)
        for pair in starts.windows(2) {
            assert!(
                pair[1] - pair[0] <= (PAGE_ROWS + 1024) as i64,
                "column {column}: {pair:?}"
            );
        }
    }
}
