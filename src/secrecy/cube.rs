//! A table of aggregates as statistical offices publish it: every combination of its
//! dimensions' values, each dimension with its margin (`Ensemble`, the total over its values),
//! and for each cell what the hub counted from the microdata.
//!
//! Owns: the cells' layout (coordinates ↔ index), the lines a margin sums (a margin and the
//! cells it totals, along one dimension), and which relations hold in the data (a count of rows
//! or a sum is additive along every dimension; a count of distinct units only along the
//! dimensions where each unit has one value, which the data shows).
//! Must never: read microdata (it is given cells), or accept cells whose rows or sums do not add
//! up (a table whose margins are not the totals of their lines is refused, never protected).

use serde::{Deserialize, Serialize};

/// The label of a dimension's margin in published tables.
pub const TOTAL_LABEL: &str = "Ensemble";

/// One dimension of a table: its values (the margin comes after them), and where the
/// dimension is a hierarchy (NAF division → section, commune → département → région), the
/// parent of each value: a value is then also the margin of its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    pub values: Vec<String>,
    /// The coordinate of each value's parent (the margin for the top level); empty for a flat
    /// dimension, whose values all add up to the margin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<usize>,
}

impl Dimension {
    /// A flat dimension of `values`.
    pub fn flat(name: impl Into<String>, values: Vec<String>) -> Dimension {
        Dimension {
            name: name.into(),
            values,
            parents: Vec::new(),
        }
    }

    /// The coordinate of this dimension's margin.
    pub fn total(&self) -> usize {
        self.values.len()
    }

    /// Coordinates along this dimension: its values and its margin.
    pub fn size(&self) -> usize {
        self.values.len() + 1
    }

    /// The label of coordinate `i`.
    pub fn label(&self, i: usize) -> &str {
        self.values.get(i).map_or(TOTAL_LABEL, String::as_str)
    }

    /// The labels of coordinate `v` from the coarsest level down (the margin: none).
    pub fn path(&self, v: usize) -> Vec<&str> {
        let mut path = Vec::new();
        let mut at = Some(v);
        while let Some(n) = at.filter(|&n| n < self.total()) {
            path.push(self.label(n));
            at = self.parent(n);
        }
        path.reverse();
        path
    }

    /// The parent of value `v` (the margin's own parent is none).
    pub fn parent(&self, v: usize) -> Option<usize> {
        if v >= self.total() {
            return None;
        }
        Some(self.parents.get(v).copied().unwrap_or(self.total()))
    }

    /// The children of each coordinate (values, then the margin).
    pub fn children(&self) -> Vec<Vec<usize>> {
        let mut children = vec![Vec::new(); self.size()];
        for v in 0..self.total() {
            if let Some(p) = self.parent(v) {
                children[p].push(v);
            }
        }
        children
    }

    /// Whether the parents form a tree under the margin (every chain reaches it).
    fn is_tree(&self) -> bool {
        if self.parents.is_empty() {
            return true;
        }
        if self.parents.len() != self.values.len() {
            return false;
        }
        (0..self.total()).all(|v| {
            let mut at = v;
            for _ in 0..=self.total() {
                match self.parents.get(at) {
                    Some(&p) if p == self.total() => return true,
                    Some(&p) if p < self.total() && p != at => at = p,
                    _ => return false,
                }
            }
            false
        })
    }

    /// The ways coordinate `here` can move by +1 while every relation of this dimension
    /// holds, each as `(coordinate, sign)` with `here` first at +1: along a path from a value
    /// without children up to the margin (all +1), or from one such value to another through
    /// their closest common ancestor (+1 on `here`'s side, −1 on the other, the ancestor
    /// unchanged). On a flat dimension: `here` and another value (−1), or `here` and the
    /// margin (+1).
    pub fn moves_through(&self, here: usize) -> Vec<Vec<(usize, f64)>> {
        let children = self.children();
        let total = self.total();
        let chain_up = |mut v: usize| {
            let mut path = vec![v];
            while let Some(p) = self.parent(v) {
                path.push(p);
                v = p;
            }
            path
        };
        // Values without children under `c` (itself if it has none).
        let leaves_under = |c: usize| {
            let mut stack = vec![c];
            let mut leaves = Vec::new();
            while let Some(n) = stack.pop() {
                if children[n].is_empty() {
                    leaves.push(n);
                } else {
                    stack.extend(children[n].iter().rev());
                }
            }
            leaves
        };
        let mut moves: Vec<Vec<(usize, f64)>> = Vec::new();
        let up_from_here = chain_up(here);
        for leaf in leaves_under(here) {
            if leaf == total {
                continue;
            }
            // The path from this leaf up to `here`, then `here`'s ancestors.
            let mut below: Vec<usize> = chain_up(leaf);
            below.truncate(below.iter().position(|&n| n == here).unwrap_or(0));
            // Up to the margin: every node +1.
            let mut to_margin: Vec<(usize, f64)> = vec![(here, 1.0)];
            to_margin.extend(below.iter().map(|&n| (n, 1.0)));
            to_margin.extend(up_from_here[1..].iter().map(|&n| (n, 1.0)));
            moves.push(to_margin);
            // Across to another leaf, through each strict ancestor of `here`.
            for (k, &ancestor) in up_from_here.iter().enumerate().skip(1) {
                let side = up_from_here[k - 1];
                for &other in children[ancestor].iter().filter(|&&c| c != side) {
                    for other_leaf in leaves_under(other) {
                        let mut across: Vec<(usize, f64)> = vec![(here, 1.0)];
                        across.extend(below.iter().map(|&n| (n, 1.0)));
                        across.extend(up_from_here[1..k].iter().map(|&n| (n, 1.0)));
                        let mut down = chain_up(other_leaf);
                        down.truncate(down.iter().position(|&n| n == ancestor).unwrap_or(0));
                        across.extend(down.iter().map(|&n| (n, -1.0)));
                        moves.push(across);
                    }
                }
            }
        }
        moves
    }
}

/// What a measure counts or sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// `count` of rows (stays, establishments): additive along every dimension.
    Rows,
    /// Count of distinct statistical units (patients, households, companies).
    Units,
    /// `sum` of a non-negative magnitude (turnover, tax): additive along every dimension.
    Sum,
}

impl MeasureKind {
    /// Counts are protected by the threshold rule; magnitudes by the margin rule.
    pub fn is_count(self) -> bool {
        matches!(self, MeasureKind::Rows | MeasureKind::Units)
    }
}

/// A published measure of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measure {
    pub name: String,
    pub kind: MeasureKind,
}

/// What the hub computed for one cell: its distinct statistical units, the value of each
/// measure, and for each magnitude its largest contributor's share (one unit's total in the
/// cell; 0 for counts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellFacts {
    pub units: u64,
    pub values: Vec<f64>,
    pub largest: Vec<f64>,
}

/// A margin and the cells it totals along one dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub total: usize,
    pub parts: Vec<usize>,
}

/// Why cells cannot form a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CubeError {
    #[error("a table needs at least one dimension and one measure")]
    Empty,
    #[error("dimension `{0}` has no value")]
    EmptyDimension(String),
    #[error("the levels of dimension `{0}` do not form a hierarchy under its margin")]
    NotATree(String),
    #[error("a cell is outside the table or given twice")]
    BadCell,
    #[error("a cell has {got} values for {expected} measures")]
    Width { got: usize, expected: usize },
    #[error("a cell has a negative or non-finite value")]
    Negative,
    #[error(
        "measure `{measure}` does not add up along `{dimension}`: its margins are not the totals of their lines"
    )]
    NotAdditive { measure: String, dimension: String },
    #[error("measure `{0}` counts units but differs from the cell's units")]
    UnitsMismatch(String),
    #[error("a table of more than {0} cells is refused")]
    TooLarge(usize),
}

/// Largest number of cells (margins included) a table may have.
pub const MAX_CELLS: usize = 200_000;

/// A table: dimensions, measures and every cell (margins included).
#[derive(Debug, Clone)]
pub struct Cube {
    dims: Vec<Dimension>,
    measures: Vec<Measure>,
    cells: Vec<CellFacts>,
    strides: Vec<usize>,
    /// `[measure][dimension]`: the measure's margins along this dimension are the sums of
    /// their lines (else a margin is only known to lie between its largest part and the sum).
    additive: Vec<Vec<bool>>,
}

impl Cube {
    /// The table of `dims` and `measures` from its cells, given by coordinates (a cell not
    /// given is empty). Refused when a cell is outside the table or given twice, when values are
    /// negative, or when a count of rows or a sum does not add up along a dimension.
    pub fn new(
        dims: Vec<Dimension>,
        measures: Vec<Measure>,
        facts: impl IntoIterator<Item = (Vec<usize>, CellFacts)>,
    ) -> Result<Cube, CubeError> {
        if dims.is_empty() || measures.is_empty() {
            return Err(CubeError::Empty);
        }
        if let Some(d) = dims.iter().find(|d| d.values.is_empty()) {
            return Err(CubeError::EmptyDimension(d.name.clone()));
        }
        if let Some(d) = dims.iter().find(|d| !d.is_tree()) {
            return Err(CubeError::NotATree(d.name.clone()));
        }
        let mut strides = vec![0; dims.len()];
        let mut len = 1usize;
        for (j, d) in dims.iter().enumerate().rev() {
            strides[j] = len;
            len = len
                .checked_mul(d.size())
                .filter(|&n| n <= MAX_CELLS)
                .ok_or(CubeError::TooLarge(MAX_CELLS))?;
        }
        let empty = CellFacts {
            units: 0,
            values: vec![0.0; measures.len()],
            largest: vec![0.0; measures.len()],
        };
        let mut cells: Vec<Option<CellFacts>> = vec![None; len];
        for (coords, mut cell) in facts {
            if coords.len() != dims.len() || coords.iter().zip(&dims).any(|(&c, d)| c >= d.size()) {
                return Err(CubeError::BadCell);
            }
            if cell.values.len() != measures.len() {
                return Err(CubeError::Width {
                    got: cell.values.len(),
                    expected: measures.len(),
                });
            }
            cell.largest.resize(measures.len(), 0.0);
            if cell
                .values
                .iter()
                .chain(&cell.largest)
                .any(|v| !v.is_finite() || *v < 0.0)
            {
                return Err(CubeError::Negative);
            }
            let index: usize = coords.iter().zip(&strides).map(|(c, s)| c * s).sum();
            if cells[index].replace(cell).is_some() {
                return Err(CubeError::BadCell);
            }
        }
        let cells: Vec<CellFacts> = cells
            .into_iter()
            .map(|c| c.unwrap_or_else(|| empty.clone()))
            .collect();
        let mut cube = Cube {
            additive: Vec::new(),
            dims,
            measures,
            cells,
            strides,
        };
        for (m, measure) in cube.measures.iter().enumerate() {
            if measure.kind == MeasureKind::Units
                && cube.cells.iter().any(|c| c.values[m] != c.units as f64)
            {
                return Err(CubeError::UnitsMismatch(measure.name.clone()));
            }
        }
        let mut additive = Vec::with_capacity(cube.measures.len());
        for (m, measure) in cube.measures.iter().enumerate() {
            let mut along = Vec::with_capacity(cube.dims.len());
            for j in 0..cube.dims.len() {
                let adds = cube.lines(j).all(|line| {
                    let sum: f64 = line.parts.iter().map(|&c| cube.cells[c].values[m]).sum();
                    close(sum, cube.cells[line.total].values[m])
                });
                if !adds && measure.kind != MeasureKind::Units {
                    return Err(CubeError::NotAdditive {
                        measure: measure.name.clone(),
                        dimension: cube.dims[j].name.clone(),
                    });
                }
                along.push(adds);
            }
            additive.push(along);
        }
        cube.additive = additive;
        Ok(cube)
    }

    pub fn dims(&self) -> &[Dimension] {
        &self.dims
    }

    pub fn measures(&self) -> &[Measure] {
        &self.measures
    }

    /// Number of cells, margins included.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn cell(&self, index: usize) -> &CellFacts {
        &self.cells[index]
    }

    /// The value of measure `m` in cell `index`.
    pub fn value(&self, index: usize, m: usize) -> f64 {
        self.cells[index].values[m]
    }

    /// The index of the cell at `coords`.
    pub fn index(&self, coords: &[usize]) -> usize {
        coords.iter().zip(&self.strides).map(|(c, s)| c * s).sum()
    }

    /// The coordinates of cell `index`.
    pub fn coords(&self, index: usize) -> Vec<usize> {
        self.strides
            .iter()
            .zip(&self.dims)
            .map(|(s, d)| (index / s) % d.size())
            .collect()
    }

    /// Whether measure `m`'s margins along dimension `dim` are the sums of their lines.
    pub fn additive(&self, m: usize, dim: usize) -> bool {
        self.additive[m][dim]
    }

    /// Every line along dimension `dim`: a margin and the cells it totals (in a hierarchy, a
    /// value and its children too).
    pub fn lines(&self, dim: usize) -> impl Iterator<Item = Line> + '_ {
        let stride = self.strides[dim];
        let size = self.dims[dim].size();
        let children = self.dims[dim].children();
        (0..self.cells.len()).flat_map(move |t| {
            let here = (t / stride) % size;
            let base = t - here * stride;
            (!children[here].is_empty()).then(|| Line {
                total: t,
                parts: children[here].iter().map(|v| base + v * stride).collect(),
            })
        })
    }

    /// The lines along `dim` that cell `index` is in: as a part of its parent's, and as the
    /// margin of its own children's.
    pub fn lines_through(&self, index: usize, dim: usize) -> Vec<Line> {
        let d = &self.dims[dim];
        let stride = self.strides[dim];
        let here = (index / stride) % d.size();
        let base = index - here * stride;
        let children = d.children();
        d.parent(here)
            .into_iter()
            .chain(std::iter::once(here))
            .filter(|&n| !children[n].is_empty())
            .map(|n| Line {
                total: base + n * stride,
                parts: children[n].iter().map(|v| base + v * stride).collect(),
            })
            .collect()
    }

    /// The cell `index` moved to coordinate `to` along `dim`.
    pub fn moved(&self, index: usize, dim: usize, to: usize) -> usize {
        let stride = self.strides[dim];
        let here = (index / stride) % self.dims[dim].size();
        index - here * stride + to * stride
    }
}

/// Equal up to the rounding of sums of floating-point values.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table of one count of rows from its inner cells (margins computed).
    pub fn counts(rows: &[&[u64]]) -> Cube {
        let dims = vec![
            Dimension::flat("r", (0..rows.len()).map(|i| format!("r{i}")).collect()),
            Dimension::flat("c", (0..rows[0].len()).map(|i| format!("c{i}")).collect()),
        ];
        let (nr, nc) = (rows.len(), rows[0].len());
        let mut facts = Vec::new();
        for r in 0..=nr {
            for c in 0..=nc {
                let v: u64 = (0..nr)
                    .filter(|&i| r == nr || i == r)
                    .flat_map(|i| {
                        (0..nc)
                            .filter(move |&k| c == nc || k == c)
                            .map(move |k| rows[i][k])
                    })
                    .sum();
                facts.push((
                    vec![r, c],
                    CellFacts {
                        units: v,
                        values: vec![v as f64],
                        largest: vec![],
                    },
                ));
            }
        }
        Cube::new(
            dims,
            vec![Measure {
                name: "n".into(),
                kind: MeasureKind::Rows,
            }],
            facts,
        )
        .unwrap()
    }

    #[test]
    fn coordinates_lines_and_margins() {
        let cube = counts(&[&[1, 2, 3], &[4, 5, 6]]);
        assert_eq!(cube.len(), 3 * 4);
        let grand = cube.index(&[2, 3]);
        assert_eq!(cube.value(grand, 0), 21.0);
        assert_eq!(cube.coords(grand), vec![2, 3]);
        assert_eq!(
            cube.lines(0).count(),
            4,
            "one line per column, margin included"
        );
        assert_eq!(cube.lines(1).count(), 3);
        let lines = cube.lines_through(cube.index(&[1, 1]), 1);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].total, cube.index(&[1, 3]));
        assert_eq!(lines[0].parts.len(), 3);
        assert_eq!(cube.moved(cube.index(&[1, 1]), 0, 0), cube.index(&[0, 1]));
        assert!(cube.additive(0, 0) && cube.additive(0, 1));
        assert_eq!(cube.dims()[0].label(2), TOTAL_LABEL);
    }

    #[test]
    fn rows_that_do_not_add_up_are_refused() {
        let dims = vec![Dimension::flat("d", vec!["a".into(), "b".into()])];
        let measures = vec![Measure {
            name: "n".into(),
            kind: MeasureKind::Rows,
        }];
        let cell = |v: f64| CellFacts {
            units: v as u64,
            values: vec![v],
            largest: vec![],
        };
        let bad = Cube::new(
            dims.clone(),
            measures.clone(),
            [
                (vec![0], cell(1.0)),
                (vec![1], cell(2.0)),
                (vec![2], cell(4.0)),
            ],
        );
        assert!(matches!(bad, Err(CubeError::NotAdditive { .. })), "{bad:?}");
        let twice = Cube::new(
            dims.clone(),
            measures.clone(),
            [(vec![0], cell(1.0)), (vec![0], cell(1.0))],
        );
        assert_eq!(twice.err(), Some(CubeError::BadCell));
        let outside = Cube::new(dims.clone(), measures.clone(), [(vec![3], cell(1.0))]);
        assert_eq!(outside.err(), Some(CubeError::BadCell));
        let negative = Cube::new(dims, measures, [(vec![0], cell(-1.0))]);
        assert_eq!(negative.err(), Some(CubeError::Negative));
    }

    #[test]
    fn distinct_units_are_additive_only_where_the_data_says_so() {
        // Patients by chapter: one patient has stays in both chapters, so the margin (2) is
        // less than the sum of its parts (3).
        let dims = vec![Dimension::flat("chapitre", vec!["A".into(), "B".into()])];
        let measures = vec![Measure {
            name: "patients".into(),
            kind: MeasureKind::Units,
        }];
        let cell = |v: u64| CellFacts {
            units: v,
            values: vec![v as f64],
            largest: vec![],
        };
        let cube = Cube::new(
            dims,
            measures,
            [(vec![0], cell(1)), (vec![1], cell(2)), (vec![2], cell(2))],
        )
        .unwrap();
        assert!(!cube.additive(0, 0));
    }
}
