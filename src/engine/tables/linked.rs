//! What ties a table's cells to another table's: the version it replaces (differencing across
//! data versions) and the tables published from the same source (linked tables).
//!
//! Two tables of one source share cells: the grand total, and every margin over the dimensions
//! they have in common (same column, same derivation); two versions of a table share every cell
//! whose labels both have. A shared value is tied by what holds between the two: equal (linked
//! tables of one data version, or a cell unchanged between versions), at least or at most (a
//! cell that grew or shrank). An attacker who reads both knows those ties; the audit then covers
//! the tables together (`secrecy::audit_joint`).
//!
//! Owns: finding the shared cells and measures of two tables and the tie of each. Must never:
//! tie values that are not the same quantity (different sources, units, columns or
//! derivations are not shared).

use std::collections::HashMap;

use crate::policy::tables::TableSpec;
use crate::secrecy::{Cube, Link, MeasureKind, Tie};

/// The ties between `cube` (of `spec`) and `other` (of `other_spec`); none when they are not
/// computed from the same source.
pub fn links(spec: &TableSpec, cube: &Cube, other_spec: &TableSpec, other: &Cube) -> Vec<Link> {
    if spec.source != other_spec.source {
        return Vec::new();
    }
    // Dimensions in common: (index here, index there).
    let mut common: Vec<(usize, usize)> = Vec::new();
    for (i, d) in spec.dimensions.iter().enumerate() {
        let found = other_spec.dimensions.iter().enumerate().position(|(k, o)| {
            o.column == d.column && o.derivation == d.derivation && !common.iter().any(|c| c.1 == k)
        });
        if let Some(k) = found {
            common.push((i, k));
        }
    }
    // Measures that are the same quantity: (index here, index there).
    let measures: Vec<(usize, usize)> = spec
        .measures
        .iter()
        .enumerate()
        .filter_map(|(m, a)| {
            other_spec
                .measures
                .iter()
                .position(|b| {
                    a.kind == b.kind
                        && a.column == b.column
                        && a.per_unit == b.per_unit
                        && (a.kind != MeasureKind::Units || spec.unit == other_spec.unit)
                })
                .map(|o| (m, o))
        })
        .collect();
    if measures.is_empty()
        || cube.dims().len() != spec.dimensions.len()
        || other.dims().len() != other_spec.dimensions.len()
    {
        return Vec::new();
    }
    // Each common dimension's coordinates there, by label (the margin to the margin).
    let there: Vec<HashMap<&str, usize>> = common
        .iter()
        .map(|&(_, k)| {
            let d = &other.dims()[k];
            (0..d.size()).map(|v| (d.label(v), v)).collect()
        })
        .collect();
    let mut links = Vec::new();
    'cells: for cell in 0..cube.len() {
        let coords = cube.coords(cell);
        // Shared: every dimension not in common at its margin.
        let at_margin = |j: usize| coords[j] == cube.dims()[j].total();
        if !(0..coords.len()).all(|j| common.iter().any(|c| c.0 == j) || at_margin(j)) {
            continue;
        }
        let mut other_coords: Vec<usize> = other.dims().iter().map(|d| d.total()).collect();
        for (n, &(i, k)) in common.iter().enumerate() {
            let label = cube.dims()[i].label(coords[i]);
            match there[n].get(label) {
                Some(&v) => other_coords[k] = v,
                // A value the other table does not have: nothing shared.
                None => continue 'cells,
            }
        }
        let other_cell = other.index(&other_coords);
        for &(m, o) in &measures {
            links.push(Link {
                cell,
                measure: m,
                other_cell,
                other_measure: o,
                tie: Tie::between(cube.value(cell, m), other.value(other_cell, o)),
            });
        }
    }
    links
}
