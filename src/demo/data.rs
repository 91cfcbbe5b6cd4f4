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
//! machine (for the same Arrow/Parquet versions). Person `i` of the population is derived from
//! `(seed, i)` alone (a stateless SplitMix64 stream), so the datasets agree on each person's NIR,
//! sex, birth date and residence without storing the population; only the rare NIR collisions
//! are resolved once, up front, in a small override table. Floating-point maths uses only
//! IEEE-exact operations (no platform `exp` or `ln`), so results do not depend on the system
//! maths library.
//!
//! Layout: this file holds the public interface and runs the writers (the stays on one thread,
//! the population files then the company register on another). `random` (seeded streams,
//! IEEE-exact maths), `calendar`, `reference` (embedded tables) and `tables` (the same, ready
//! for sampling) are the building blocks; `population` and `households` invent people and their
//! tax and CAF files; `stays`, `population_files` and `companies` lay out the four datasets;
//! `writer` owns the Parquet files (properties, temporary name, rename) and the progress bar.

mod calendar;
mod companies;
mod households;
mod population;
mod population_files;
mod random;
mod reference;
mod stays;
mod tables;
mod writer;

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use companies::write_establishments;
use population::Population;
use population_files::write_population_files;
use stays::write_stays;
use tables::Tables;
use writer::progress_bar;

/// Default number of hospital stays (`passerelle demo` without `--rows`).
pub const DEFAULT_ROWS: u64 = 100_000;
/// Default seed of the demo hub.
pub const DEFAULT_SEED: u64 = 20_240_101;
/// Largest supported number of stays (25 million people). CAF recipients are about 45 % of
/// the population, at most 10 million (the seven-digit numbering): `--rows 44500000` gives the
/// 10-million-row `social.allocataires` of the lookup benchmark (`benches/lookup.sh`).
pub const MAX_ROWS: u64 = 50_000_000;

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

/// Everything the dataset writers share.
struct Ctx<'a> {
    tables: &'a Tables,
    population: &'a Population<'a>,
    opts: &'a GenerateOptions,
    progress: &'a ProgressBar,
    data_dir: &'a Path,
}

#[cfg(test)]
mod tests;
