//! The attacker's audit: before a table is published, a linear program over everything it
//! publishes computes, for each hidden primary cell, the interval an attacker can narrow it to.
//!
//! What the attacker knows: every published value; that values are non-negative; that a count
//! of rows or a sum adds up along every dimension (a margin is the sum of its line); that a
//! count of distinct units adds up along the dimensions where the data shows it does, and
//! elsewhere lies between its line's largest part and its sum; and, in each cell, that there
//! are no more distinct units than rows. Those are the relations that hold, so the intervals
//! are the tightest a reader of the table alone can reach.
//!
//! A count cell is protected when its interval reaches the profile's threshold and is at
//! least that wide (the ends rounded to whole units, as an attacker would); a magnitude cell
//! when its interval reaches `magnitude_margin` of its value below and above it.
//!
//! Owns: the linear program (with `good_lp` and its pure-Rust `microlp` solver), the
//! protection test of each primary cell. Must never: pass a table whose program could not be
//! solved (a solver failure is a failed audit).

use std::collections::HashMap;

use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolverModel, microlp, variable,
};
use serde::Serialize;

use super::cube::{Cube, MeasureKind};
use super::profile::{PrimaryReason, Profile};

/// How far an attacker can narrow a hidden value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    /// `f64::INFINITY` when nothing bounds it from above.
    pub high: f64,
}

/// A hidden primary cell the attacker narrows too much.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub cell: usize,
    pub measure: usize,
    pub value: f64,
    pub interval: Interval,
}

/// The audit could not be carried out (the table is then not published).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the attacker's linear program could not be solved: {0}")]
pub struct AuditError(pub String);

/// `sum(coefficient × variable) + constant` is `== 0` (or `<= 0`).
#[derive(Debug, Clone)]
struct Relation {
    terms: Vec<(usize, f64)>,
    constant: f64,
    equal: bool,
}

/// The attacker's knowledge of one table with `hidden` cells: a variable per hidden cell and
/// measure, the relations between them, split into independent groups.
pub struct Attacker<'a> {
    cube: &'a Cube,
    /// Each measure's unit in the program: its grand total (values of one order keep the
    /// simplex's tolerances meaningful, and a sum's rounding far below them).
    scale: Vec<f64>,
    variables: HashMap<(usize, usize), usize>,
    relations: Vec<Relation>,
    /// Group of each variable, and the relations of each group.
    group: Vec<usize>,
    by_group: HashMap<usize, Vec<usize>>,
}

impl<'a> Attacker<'a> {
    /// What an attacker knows of `cube` once the cells marked in `hidden` are hidden.
    pub fn new(cube: &'a Cube, hidden: &[bool]) -> Attacker<'a> {
        let mut variables = HashMap::new();
        for (cell, _) in hidden.iter().enumerate().filter(|(_, h)| **h) {
            for m in 0..cube.measures().len() {
                let id = variables.len();
                variables.insert((cell, m), id);
            }
        }
        let grand = cube.index(&cube.dims().iter().map(|d| d.total()).collect::<Vec<_>>());
        let scale: Vec<f64> = (0..cube.measures().len())
            .map(|m| cube.value(grand, m).max(1.0))
            .collect();
        let term = |cell: usize, m: usize, coefficient: f64, r: &mut Relation| match variables
            .get(&(cell, m))
        {
            Some(&id) => r.terms.push((id, coefficient)),
            None => r.constant += coefficient * cube.value(cell, m) / scale[m],
        };
        let mut relations = Vec::new();
        for m in 0..cube.measures().len() {
            for dim in 0..cube.dims().len() {
                let additive = cube.additive(m, dim);
                for line in cube.lines(dim) {
                    let touched = hidden[line.total] || line.parts.iter().any(|&c| hidden[c]);
                    if !touched {
                        continue;
                    }
                    // Σ parts − margin = 0 (additive) or ≥ 0 (distinct units).
                    let mut sum = Relation {
                        terms: Vec::new(),
                        constant: 0.0,
                        equal: additive,
                    };
                    term(line.total, m, 1.0, &mut sum);
                    for &part in &line.parts {
                        term(part, m, -1.0, &mut sum);
                    }
                    relations.push(sum);
                    if !additive {
                        // Each part ≤ the margin.
                        for &part in &line.parts {
                            if hidden[part] || hidden[line.total] {
                                let mut le = Relation {
                                    terms: Vec::new(),
                                    constant: 0.0,
                                    equal: false,
                                };
                                term(part, m, 1.0, &mut le);
                                term(line.total, m, -1.0, &mut le);
                                relations.push(le);
                            }
                        }
                    }
                }
            }
        }
        // In each hidden cell, no more distinct units than rows.
        let kinds: Vec<MeasureKind> = cube.measures().iter().map(|m| m.kind).collect();
        if let (Some(u), Some(r)) = (
            kinds.iter().position(|k| *k == MeasureKind::Units),
            kinds.iter().position(|k| *k == MeasureKind::Rows),
        ) {
            for (cell, _) in hidden.iter().enumerate().filter(|(_, h)| **h) {
                let mut le = Relation {
                    terms: Vec::new(),
                    constant: 0.0,
                    equal: false,
                };
                term(cell, u, scale[u], &mut le);
                term(cell, r, -scale[r], &mut le);
                relations.push(le);
            }
        }
        relations.retain(|r| !r.terms.is_empty());
        // Independent groups (union-find over variables sharing a relation).
        let mut parent: Vec<usize> = (0..variables.len()).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for r in &relations {
            let first = find(&mut parent, r.terms[0].0);
            for &(v, _) in &r.terms[1..] {
                let root = find(&mut parent, v);
                parent[root] = first;
            }
        }
        let group: Vec<usize> = (0..variables.len()).map(|v| find(&mut parent, v)).collect();
        let mut by_group: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, r) in relations.iter().enumerate() {
            by_group.entry(group[r.terms[0].0]).or_default().push(i);
        }
        Attacker {
            cube,
            scale,
            variables,
            relations,
            group,
            by_group,
        }
    }

    /// The interval the attacker narrows measure `m` of hidden cell `cell` to (a published
    /// cell: its value).
    pub fn interval(&self, cell: usize, m: usize) -> Result<Interval, AuditError> {
        let Some(&target) = self.variables.get(&(cell, m)) else {
            let v = self.cube.value(cell, m);
            return Ok(Interval { low: v, high: v });
        };
        let low = self.optimum(target, false)?.unwrap_or(0.0).max(0.0);
        let high = self.optimum(target, true)?.unwrap_or(f64::INFINITY);
        Ok(Interval {
            low: low * self.scale[m],
            high: high * self.scale[m],
        })
    }

    /// The smallest (or largest) value of variable `target`; `None` when unbounded.
    fn optimum(&self, target: usize, maximise: bool) -> Result<Option<f64>, AuditError> {
        let group = self.group[target];
        let relations = self.by_group.get(&group).map(Vec::as_slice).unwrap_or(&[]);
        if relations.is_empty() {
            // No relation bounds it: anything non-negative.
            return Ok(if maximise { None } else { Some(0.0) });
        }
        let mut problem = ProblemVariables::new();
        let mut lp_vars = HashMap::new();
        for &r in relations {
            for &(v, _) in &self.relations[r].terms {
                lp_vars
                    .entry(v)
                    .or_insert_with(|| problem.add(variable().min(0.0)));
            }
        }
        let objective = lp_vars[&target];
        let unsolved = if maximise {
            problem.maximise(objective)
        } else {
            problem.minimise(objective)
        };
        let mut model = unsolved.using(microlp);
        for &r in relations {
            let relation = &self.relations[r];
            let mut expression = Expression::from(relation.constant);
            for &(v, coefficient) in &relation.terms {
                expression.add_mul(coefficient, lp_vars[&v]);
            }
            model.add_constraint(if relation.equal {
                expression.eq(0.0)
            } else {
                expression.leq(0.0)
            });
        }
        match model.solve() {
            Ok(solution) => Ok(Some(solution.value(objective))),
            Err(ResolutionError::Unbounded) => Ok(None),
            Err(e) => Err(AuditError(e.to_string())),
        }
    }
}

/// The primary cells (of `primaries`) that `hidden` leaves unprotected under `profile`, with the
/// attacker's interval of each; empty when the table may be published.
pub fn audit(
    cube: &Cube,
    hidden: &[bool],
    primaries: &[Option<PrimaryReason>],
    profile: &Profile,
) -> Result<Vec<Finding>, AuditError> {
    let attacker = Attacker::new(cube, hidden);
    let mut findings = Vec::new();
    for (cell, reason) in primaries.iter().enumerate() {
        let Some(reason) = reason else { continue };
        if !hidden[cell] {
            return Err(AuditError(format!("primary cell {cell} is published")));
        }
        for (m, measure) in cube.measures().iter().enumerate() {
            let value = cube.value(cell, m);
            let needs = if measure.kind.is_count() {
                *reason != PrimaryReason::Dominance
            } else {
                value > 0.0
            };
            if !needs {
                continue;
            }
            let interval = attacker.interval(cell, m)?;
            if !protected(measure.kind, value, interval, profile) {
                findings.push(Finding {
                    cell,
                    measure: m,
                    value,
                    interval,
                });
            }
        }
    }
    Ok(findings)
}

/// Whether `interval` protects a hidden cell of `value`.
pub fn protected(kind: MeasureKind, value: f64, interval: Interval, profile: &Profile) -> bool {
    const EPS: f64 = 1e-6;
    if kind.is_count() {
        // Whole units: an attacker rounds the ends inwards.
        let threshold = profile.min_units as f64;
        let high = (interval.high + EPS).floor();
        let low = (interval.low - EPS).ceil().max(0.0);
        high >= threshold && high - low >= threshold
    } else {
        let margin = profile.magnitude_margin * value;
        interval.low <= value - margin + EPS * value.max(1.0)
            && interval.high >= value + margin - EPS * value.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::cube::tests::counts;
    use super::*;

    fn hide(cube: &Cube, cells: &[[usize; 2]]) -> Vec<bool> {
        let mut hidden = vec![false; cube.len()];
        for c in cells {
            hidden[cube.index(c)] = true;
        }
        hidden
    }

    #[test]
    fn one_hidden_cell_in_a_line_is_recovered_by_subtraction() {
        let cube = counts(&[&[3, 20, 30], &[40, 50, 60]]);
        let hidden = hide(&cube, &[[0, 0]]);
        let attacker = Attacker::new(&cube, &hidden);
        let i = attacker.interval(cube.index(&[0, 0]), 0).unwrap();
        assert!(
            (i.low - 3.0).abs() < 1e-6 && (i.high - 3.0).abs() < 1e-6,
            "{i:?}"
        );
    }

    #[test]
    fn a_rectangle_of_four_hides_within_its_smallest_corners() {
        // Hide (0,0), (0,1), (1,0), (1,1): the attacker knows the row and column sums, so the
        // primary (3) can move by t with (0,1) and (1,0) moving by −t: t ≤ 20 and 40, and
        // down by min(3, 50).
        let cube = counts(&[&[3, 20, 30], &[40, 50, 60]]);
        let hidden = hide(&cube, &[[0, 0], [0, 1], [1, 0], [1, 1]]);
        let attacker = Attacker::new(&cube, &hidden);
        let i = attacker.interval(cube.index(&[0, 0]), 0).unwrap();
        assert!((i.low - 0.0).abs() < 1e-6, "{i:?}");
        assert!((i.high - 23.0).abs() < 1e-6, "{i:?}");
        let profile = Profile::named("medical").unwrap();
        assert!(protected(MeasureKind::Rows, 3.0, i, &profile));
        let primaries: Vec<_> = (0..cube.len())
            .map(|c| (c == cube.index(&[0, 0])).then_some(PrimaryReason::TooFewUnits))
            .collect();
        assert!(
            audit(&cube, &hidden, &primaries, &profile)
                .unwrap()
                .is_empty()
        );
        // With only (0,0) and (0,1) hidden, column 0 gives the primary away.
        let hidden = hide(&cube, &[[0, 0], [0, 1]]);
        let findings = audit(&cube, &hidden, &primaries, &profile).unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
    }

    #[test]
    fn the_count_rule_rounds_to_whole_units() {
        let p = Profile::named("medical").unwrap();
        let at = |low, high| protected(MeasureKind::Rows, 3.0, Interval { low, high }, &p);
        assert!(at(0.0, 11.0));
        assert!(!at(0.0, 10.999));
        assert!(!at(0.5, 11.2), "[1, 11] is 10 wide");
        assert!(at(0.0, f64::INFINITY));
        let m = |low, high| protected(MeasureKind::Sum, 100.0, Interval { low, high }, &p);
        assert!(m(85.0, 115.0));
        assert!(!m(86.0, 1000.0));
        assert!(!m(0.0, 114.0));
    }
}
