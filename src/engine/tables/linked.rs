//! Linked tables: tables computed from the same source share cells — the grand total, and every
//! margin over the dimensions they have in common (same column, same derivation). A shared cell
//! hidden in one table and published in the other gives it back; hidden in both, it ties the
//! two attackers' programs together, which each table's own audit does not see.
//!
//! While shared cells are published in both tables, the tables' hidden cells are tied by no
//! relation but those published margins (any two tables of counts with equal shared margins are
//! the margins of some non-negative table crossing them), so each table's own audit holds for
//! both together. This module checks exactly that; a table that breaks it is not published (a
//! joint protection of linked tables is not implemented).
//!
//! Owns: finding the shared cells of two published batches and any hidden among them. Must
//! never: let a table through whose shared cells it could not compare (unreadable: refused).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};

use crate::policy::tables::TableSpec;
use crate::secrecy::TOTAL_LABEL;

/// Why `spec` (published as `batch`) cannot be published beside `other` (published as
/// `other_batch`), if it cannot.
pub fn conflict(
    spec: &TableSpec,
    batch: &RecordBatch,
    other: &TableSpec,
    other_batch: &RecordBatch,
) -> Option<String> {
    if spec.source != other.source {
        return None;
    }
    // Dimensions in common: (index in spec, index in other).
    let common: Vec<(usize, usize)> = spec
        .dimensions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            other
                .dimensions
                .iter()
                .position(|o| o.column == d.column && o.derivation == d.derivation)
                .map(|k| (i, k))
        })
        .collect();
    let mine: Vec<usize> = common.iter().map(|(i, _)| *i).collect();
    let theirs: Vec<usize> = common.iter().map(|(_, k)| *k).collect();
    let (Some(a), Some(b)) = (
        shared_cells(spec, batch, &mine),
        shared_cells(other, other_batch, &theirs),
    ) else {
        return Some(format!(
            "linked with `{}` (same source): its cells cannot be compared",
            other.id
        ));
    };
    let mut keys: Vec<&Vec<String>> = a
        .iter()
        .filter(|(key, hidden)| **hidden || b.get(*key).copied().unwrap_or(false))
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    keys.first().map(|key| {
        let names: Vec<String> = mine
            .iter()
            .zip(key.iter())
            .map(|(&i, label)| format!("{} = {label}", spec.dimensions[i].name))
            .collect();
        let cell = if names.is_empty() {
            "the grand total".to_string()
        } else {
            names.join(", ")
        };
        format!(
            "linked with `{}` (same source): their shared cell ({cell}) is hidden in one of them, and linked tables are not protected jointly; define them over dimensions that share only published margins, or publish one",
            other.id
        )
    })
}

/// The cells of `batch` every other table of the source may share (all dimensions but
/// `common` at their margin), by their labels on `common`, and whether each is hidden.
fn shared_cells(
    spec: &TableSpec,
    batch: &RecordBatch,
    common: &[usize],
) -> Option<HashMap<Vec<String>, bool>> {
    let labels: Vec<_> = spec
        .dimensions
        .iter()
        .map(|d| {
            batch
                .column_by_name(&d.name)?
                .as_string_opt::<i32>()
                .cloned()
        })
        .collect::<Option<Vec<_>>>()?;
    let flags: Vec<_> = spec
        .measures
        .iter()
        .map(|m| batch.column_by_name(&format!("{}_secret", m.name)).cloned())
        .collect::<Option<Vec<_>>>()?;
    let mut cells = HashMap::new();
    for row in 0..batch.num_rows() {
        let outside_at_margin = (0..labels.len())
            .filter(|j| !common.contains(j))
            .all(|j| labels[j].value(row) == TOTAL_LABEL);
        if !outside_at_margin {
            continue;
        }
        let key: Vec<String> = common
            .iter()
            .map(|&j| labels[j].value(row).to_string())
            .collect();
        let hidden = flags.iter().any(|f| !f.is_null(row));
        cells.insert(key, hidden);
    }
    Some(cells)
}
