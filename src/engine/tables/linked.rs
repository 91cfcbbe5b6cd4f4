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

/// The ties between a table's new version (`cube` of `spec`) and the version it replaces
/// (`old` of `old_spec`): a cell unchanged is equal in both. Where the source only grew (no
/// value of any cell went down, as when records are only ever added) an attacker may know it,
/// and each cell that grew is at least its old value; likewise where it only shrank. Where
/// values went both ways, which cells grew is not public: a changed cell is tied by nothing.
pub fn version_links(spec: &TableSpec, cube: &Cube, old_spec: &TableSpec, old: &Cube) -> Vec<Link> {
    let mut links = links(spec, cube, old_spec, old);
    let grew = links.iter().any(|l| l.tie == Tie::AtLeast);
    let shrank = links.iter().any(|l| l.tie == Tie::AtMost);
    if grew && shrank {
        for link in links.iter_mut().filter(|l| l.tie != Tie::Equal) {
            link.tie = Tie::Changed;
        }
    }
    links
}

/// Why `spec` and `other_spec` (of the same source) cannot be audited together, if they
/// cannot: a column that both break down, but not along levels they share from the coarsest
/// (different bands or prefixes of one column, or a level of one that is not the top of the
/// other's hierarchy). Their cells are then related by sums this module does not tie, and an
/// audit without them would be too weak.
pub fn incompatible(spec: &TableSpec, other_spec: &TableSpec) -> Option<String> {
    if spec.source != other_spec.source {
        return None;
    }
    for d in &spec.dimensions {
        for o in &other_spec.dimensions {
            let shares_a_column = d.levels().any(|a| o.levels().any(|b| a.column == b.column));
            if !shares_a_column {
                continue;
            }
            let common = d
                .levels()
                .zip(o.levels())
                .take_while(|(a, b)| a.column == b.column && a.derivation == b.derivation)
                .count();
            let same_column_elsewhere = d
                .levels()
                .skip(common)
                .any(|a| o.levels().skip(common).any(|b| a.column == b.column));
            let level_of_one_in_other = d.levels().skip(common).any(|a| {
                o.levels()
                    .any(|b| a.column == b.column && a.derivation == b.derivation)
            }) || o.levels().skip(common).any(|b| {
                d.levels()
                    .any(|a| a.column == b.column && a.derivation == b.derivation)
            });
            if common == 0 || same_column_elsewhere || level_of_one_in_other {
                return Some(format!(
                    "`{}` and `{}` both break down column `{}` but not along levels they share from the coarsest (dimension `{}` here, `{}` there); tables of one source are audited together only then: use the same levels, or nest the finer one under the coarser with `within`",
                    spec.id,
                    other_spec.id,
                    d.levels()
                        .find(|a| o.levels().any(|b| a.column == b.column))
                        .map_or("", |a| a.column.as_str()),
                    d.name,
                    o.name
                ));
            }
        }
    }
    None
}

/// The ties between `cube` (of `spec`) and `other` (of `other_spec`); none when they are not
/// computed from the same source. Only for tables that are not [`incompatible`].
pub fn links(spec: &TableSpec, cube: &Cube, other_spec: &TableSpec, other: &Cube) -> Vec<Link> {
    if spec.source != other_spec.source
        || cube.dims().len() != spec.dimensions.len()
        || other.dims().len() != other_spec.dimensions.len()
    {
        return Vec::new();
    }
    // Dimensions in common and how many levels they share, coarsest first (a flat dimension
    // shares its one level with the top level of a hierarchy on the same column and
    // derivation): (index here, index there, levels shared).
    let mut common: Vec<(usize, usize, usize)> = Vec::new();
    for (i, d) in spec.dimensions.iter().enumerate() {
        let best = other_spec
            .dimensions
            .iter()
            .enumerate()
            .filter(|(k, _)| !common.iter().any(|c| c.1 == *k))
            .map(|(k, o)| {
                let shared = d
                    .levels()
                    .zip(o.levels())
                    .take_while(|(a, b)| a.column == b.column && a.derivation == b.derivation)
                    .count();
                (k, shared)
            })
            .filter(|(_, shared)| *shared > 0)
            .max_by_key(|(_, shared)| *shared);
        if let Some((k, shared)) = best {
            common.push((i, k, shared));
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
    if measures.is_empty() {
        return Vec::new();
    }
    // Each common dimension's coordinates there, by their labels' path (the margin: none).
    let there: Vec<HashMap<Vec<&str>, usize>> = common
        .iter()
        .map(|&(_, k, _)| {
            let d = &other.dims()[k];
            (0..d.size()).map(|v| (d.path(v), v)).collect()
        })
        .collect();
    let mut links = Vec::new();
    'cells: for cell in 0..cube.len() {
        let coords = cube.coords(cell);
        let mut other_coords: Vec<usize> = other.dims().iter().map(|d| d.total()).collect();
        for (j, dim) in cube.dims().iter().enumerate() {
            let path = dim.path(coords[j]);
            match common.iter().position(|c| c.0 == j) {
                // Shared down to the levels both tables have, and only values the other has.
                Some(n) if path.len() <= common[n].2 => match there[n].get(&path) {
                    Some(&v) => other_coords[common[n].1] = v,
                    None => continue 'cells,
                },
                // Not shared: only its margin.
                _ if path.is_empty() => {}
                _ => continue 'cells,
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
