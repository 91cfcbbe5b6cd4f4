//! How the hub writes its own Parquet files (the demo hub's datasets and the pseudonymised
//! extracts): the page and dictionary limits they share, measured in `docs/benchmarks.md`
//! ("Speed (issue #23)").
//!
//! Owns: those limits. Must never: choose compression or row groups (each writer's, after
//! its readers: the extracts copy their data file's), or anything of a file's contents.

use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};

/// Rows per data page at most: a read of a few rows decodes pages of this size, and page
/// statistics prune at this grain.
pub const PAGE_ROWS: usize = 4096;

/// A column's dictionary page, at most. A column of many distinct values (an identifier, an
/// amount) falls back to plain pages once its dictionary holds this much, instead of at
/// arrow-rs's default of 1 MiB: every read of a row group decodes its dictionary whole, and
/// a `LIMIT 10` paid for two dictionaries of 0.7 and 1 MiB in each row group it touched.
/// Columns of few values (a region, a date, a diagnosis: 0.1 to 5 KB here) keep theirs.
pub const DICTIONARY_PAGE_BYTES: usize = 64 * 1024;

/// Writer properties with the hub's page and dictionary limits and page statistics.
pub fn writer_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
}
