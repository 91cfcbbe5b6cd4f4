//! The statistical secret against an independent oracle: tables computed here from random
//! microdata (rows, distinct units, a magnitude with its contributors), protected by
//! `passerelle::secrecy::protect`, then attacked with a linear program written here from the
//! microdata's own relations and solved by the oracle's own simplex, or for programs too large
//! for a dense tableau by clarabel's interior-point method (the gateway solves with `good_lp`
//! and microlp, and uses clarabel only to choose which values an exact microlp program frees:
//! no interval the gateway relies on comes from clarabel). Every primary cell must be protected: a count's interval
//! reaching the threshold and at least that wide, a magnitude's reaching the margin below and
//! above; a table that cannot be protected must be refused, never published.

use std::collections::{BTreeMap, HashMap, HashSet};

#[path = "secrecy_data.rs"]
mod data;

use data::{Record, grid, microdata, table};
use passerelle::secrecy::{
    CellFacts, Cube, MeasureKind, PrimaryReason, Profile, ProtectError, Secret, protect,
};

/// A row of the oracle's program: `coefficients · x (≤ | =) bound`.
#[derive(Clone, Copy, PartialEq)]
enum Sense {
    Le,
    Eq,
}

/// A dense row, as the simplex takes it.
type Row = (Vec<f64>, Sense, f64);

/// A sparse row: `(variable, coefficient)` pairs (a variable may repeat: its coefficients add).
type SparseRow = (Vec<(usize, f64)>, Sense, f64);

/// Programs with more variables than this go to clarabel: the dense tableau grows with the
/// square of the hidden values (a few seconds a solve at 1 000 in the test build).
const DENSE_MAX_VARIABLES: usize = 300;

/// The optimum of `objective · x` over `0 ≤ x ≤ upper` and `rows`, `None` when unbounded: by
/// the oracle's own simplex when the program is small (it leaves `upper` to the rows), else by
/// clarabel (the bounds keep its iterates away from infinity: without them, programs whose
/// equalities repeat one another ended in numerical errors).
fn optimum(
    n: usize,
    rows: &[SparseRow],
    objective: &[f64],
    maximise: bool,
    upper: &[f64],
) -> Option<f64> {
    if n <= DENSE_MAX_VARIABLES {
        let dense: Vec<Row> = rows
            .iter()
            .map(|(terms, sense, bound)| {
                let mut a = vec![0.0; n];
                for (j, v) in terms {
                    a[*j] += v;
                }
                (a, *sense, *bound)
            })
            .collect();
        simplex(n, &dense, objective, maximise)
    } else {
        Some(interior_point(n, rows, objective, maximise, upper))
    }
}

/// [`optimum`] by clarabel (an interior-point method; its answer is within about 1e-8 of the
/// optimum, relative to its size): equalities in the zero cone, inequalities and
/// `0 ≤ x ≤ upper` in the non-negative cone. Panics when it does not solve the program (the
/// true values are always feasible, and the bounds keep it bounded).
fn interior_point(
    n: usize,
    rows: &[SparseRow],
    objective: &[f64],
    maximise: bool,
    upper: &[f64],
) -> f64 {
    use clarabel::algebra::CscMatrix;
    use clarabel::solver::{
        DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
    };
    let (mut i, mut j, mut v, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ordered = rows
        .iter()
        .filter(|r| r.1 == Sense::Eq)
        .chain(rows.iter().filter(|r| r.1 == Sense::Le));
    for (row, (terms, _, bound)) in ordered.enumerate() {
        for (var, coefficient) in terms {
            i.push(row);
            j.push(*var);
            v.push(*coefficient);
        }
        b.push(*bound);
    }
    let equalities = rows.iter().filter(|r| r.1 == Sense::Eq).count();
    for (var, bound) in upper.iter().enumerate().take(n) {
        i.push(b.len());
        j.push(var);
        v.push(-1.0);
        b.push(0.0);
        i.push(b.len());
        j.push(var);
        v.push(1.0);
        b.push(*bound);
    }
    let a = CscMatrix::new_from_triplets(b.len(), n, i, j, v);
    let p = CscMatrix::<f64>::zeros((n, n));
    let sign = if maximise { -1.0 } else { 1.0 };
    let q: Vec<f64> = objective.iter().map(|c| sign * c).collect();
    let cones = [
        SupportedConeT::ZeroConeT(equalities),
        SupportedConeT::NonnegativeConeT(b.len() - equalities),
    ];
    // Its default settings first; when it stops short (these programs repeat equalities: a
    // cube's margins add up in several ways, and clarabel may end in a numerical error near the
    // optimum), its last point is taken if it is feasible: its value is then an inner bound of
    // the optimum, a point the attacker can reach, so the oracle's interval is at most the true
    // one and a solver's error can only make the oracle stricter. Else stronger
    // regularisation.
    for regularisation in [1e-8, 1e-6] {
        let settings = DefaultSettingsBuilder::default()
            .verbose(false)
            .max_iter(200)
            .static_regularization_constant(regularisation)
            .build()
            .unwrap();
        let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings).unwrap();
        solver.solve();
        let solved = matches!(
            solver.solution.status,
            SolverStatus::Solved | SolverStatus::AlmostSolved
        );
        if solved || solver.info.res_primal <= 1e-7 {
            return objective
                .iter()
                .zip(&solver.solution.x)
                .map(|(c, x)| c * x)
                .sum();
        }
    }
    panic!(
        "the oracle's interior-point solver did not solve a program ({n} variables, {} rows, maximise {maximise})",
        rows.len()
    );
}

/// The oracle's own solver, independent of the gateway's: a dense two-phase simplex for
/// `x ≥ 0` (Dantzig's pricing, Bland's rule once pivots stop improving, so that it cannot
/// cycle). The optimum of `objective · x` (maximised or minimised), `None` when unbounded;
/// panics when infeasible (the true values always satisfy the attacker's relations).
fn simplex(n: usize, rows: &[Row], objective: &[f64], maximise: bool) -> Option<f64> {
    const EPS: f64 = 1e-9;
    let m = rows.len();
    let slacks = rows.iter().filter(|r| r.1 == Sense::Le).count();
    let real = n + slacks; // originals and slacks/surpluses; artificials follow, one per row
    let width = real + m;
    let mut t = vec![vec![0.0; width + 1]; m];
    let mut basis = vec![0; m];
    let mut slack = n;
    for (i, (a, sense, b)) in rows.iter().enumerate() {
        let flip = if *b < 0.0 { -1.0 } else { 1.0 };
        for (j, v) in a.iter().enumerate() {
            t[i][j] = flip * v;
        }
        t[i][width] = flip * b;
        if *sense == Sense::Le {
            t[i][slack] = flip;
            slack += 1;
            if flip > 0.0 {
                basis[i] = slack - 1;
                continue;
            }
        }
        t[i][real + i] = 1.0;
        basis[i] = real + i;
    }
    // Pivots the tableau on (l, e).
    fn pivot(t: &mut [Vec<f64>], reduced: &mut [f64], basis: &mut [usize], l: usize, e: usize) {
        let p = t[l][e];
        for v in t[l].iter_mut() {
            *v /= p;
        }
        let row = t[l].clone();
        for (i, r) in t.iter_mut().enumerate() {
            if i != l && r[e] != 0.0 {
                let f = r[e];
                for (v, w) in r.iter_mut().zip(&row) {
                    *v -= f * w;
                }
            }
        }
        let f = reduced[e];
        for (v, w) in reduced.iter_mut().zip(&row) {
            *v -= f * w;
        }
        basis[l] = e;
    }
    // Maximises `d · x` over columns `0..cols`; `false` when unbounded.
    let optimise =
        |t: &mut Vec<Vec<f64>>, basis: &mut Vec<usize>, d: &[f64], cols: usize| -> bool {
            let rhs = t.first().map_or(0, |r| r.len() - 1);
            let mut reduced: Vec<f64> = (0..=rhs)
                .map(|j| {
                    if j < cols {
                        d[j] - (0..t.len()).map(|i| d[basis[i]] * t[i][j]).sum::<f64>()
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut stalled = 0;
            for _ in 0..200_000 {
                let entering = if stalled < 50 {
                    (0..cols)
                        .filter(|&j| reduced[j] > EPS)
                        .max_by(|a, b| reduced[*a].total_cmp(&reduced[*b]))
                } else {
                    (0..cols).find(|&j| reduced[j] > EPS)
                };
                let Some(e) = entering else { return true };
                let mut leaving: Option<usize> = None;
                for i in 0..t.len() {
                    if t[i][e] > EPS {
                        let ratio = t[i][rhs] / t[i][e];
                        let better = match leaving {
                            None => true,
                            Some(l) => {
                                let best = t[l][rhs] / t[l][e];
                                ratio < best - EPS || (ratio <= best + EPS && basis[i] < basis[l])
                            }
                        };
                        if better {
                            leaving = Some(i);
                        }
                    }
                }
                let Some(l) = leaving else { return false };
                if t[l][rhs] / t[l][e] > EPS {
                    stalled = 0;
                } else {
                    stalled += 1;
                }
                pivot(t, &mut reduced, basis, l, e);
            }
            panic!("the oracle's simplex did not end");
        };
    // Phase 1: drive the artificials to zero.
    let phase1: Vec<f64> = (0..width)
        .map(|j| if j >= real { -1.0 } else { 0.0 })
        .collect();
    assert!(optimise(&mut t, &mut basis, &phase1, width));
    let infeasibility: f64 = (0..m)
        .filter(|&i| basis[i] >= real)
        .map(|i| t[i][width])
        .sum();
    assert!(
        infeasibility < 1e-7,
        "the oracle's program is infeasible ({infeasibility})"
    );
    // Artificials left in the basis (at zero) leave it, or their row is redundant; then their
    // columns go.
    let mut keep = vec![true; m];
    for i in 0..m {
        if basis[i] >= real {
            match (0..real).find(|&j| t[i][j].abs() > 1e-7) {
                Some(j) => {
                    let mut unused = vec![0.0; width + 1];
                    pivot(&mut t, &mut unused, &mut basis, i, j);
                }
                None => keep[i] = false,
            }
        }
    }
    let mut tableau = Vec::new();
    let mut kept_basis = Vec::new();
    for i in 0..m {
        if keep[i] {
            let mut row = t[i][..real].to_vec();
            row.push(t[i][width]);
            tableau.push(row);
            kept_basis.push(basis[i]);
        }
    }
    // Phase 2: the objective.
    let sign = if maximise { 1.0 } else { -1.0 };
    let mut d = vec![0.0; real];
    for (j, c) in objective.iter().enumerate() {
        d[j] = sign * c;
    }
    if !optimise(&mut tableau, &mut kept_basis, &d, real) {
        return None;
    }
    Some(
        (0..tableau.len())
            .map(|i| d[kept_basis[i]] * tableau[i][real])
            .sum::<f64>()
            * sign,
    )
}

/// The oracle's attacker: the interval end of measure `m` of cell `target` given the published
/// cells (`hidden` false), from relations written here: margins are sums for rows and amounts;
/// for units, sums along the dimensions where the data adds up, else bounded by the largest part
/// and the sum; units ≤ rows in each cell. Each measure is counted in its grand total.
fn oracle_interval(
    sizes: &[usize],
    cells: &BTreeMap<Vec<usize>, Vec<f64>>,
    hidden: &HashSet<Vec<usize>>,
    target: &[usize],
    m: usize,
    maximise: bool,
) -> Option<f64> {
    use MeasureKind::{Rows, Sum, Units};
    oracle_interval_of(
        &[Rows, Units, Sum],
        sizes,
        cells,
        hidden,
        target,
        m,
        maximise,
    )
}

/// [`oracle_interval`] for a table whose measures are `kinds`.
fn oracle_interval_of(
    kinds: &[MeasureKind],
    sizes: &[usize],
    cells: &BTreeMap<Vec<usize>, Vec<f64>>,
    hidden: &HashSet<Vec<usize>>,
    target: &[usize],
    m: usize,
    maximise: bool,
) -> Option<f64> {
    let table = OracleTable {
        kinds,
        sizes,
        children: flat_children(sizes),
        cells,
        hidden,
    };
    oracle_joint(&[table], &[], (0, target, m), maximise)
}

/// One table as the oracle's attacker reads it: true values of every cell, which are hidden.
struct OracleTable<'a> {
    kinds: &'a [MeasureKind],
    /// Values per dimension (the margin's coordinate).
    sizes: &'a [usize],
    /// Per dimension, the coordinates each coordinate totals (the margin: the top level; in a
    /// hierarchy, a value: its children).
    children: Vec<Vec<Vec<usize>>>,
    cells: &'a BTreeMap<Vec<usize>, Vec<f64>>,
    hidden: &'a HashSet<Vec<usize>>,
}

/// The children of flat dimensions: the margin totals every value.
fn flat_children(sizes: &[usize]) -> Vec<Vec<Vec<usize>>> {
    sizes
        .iter()
        .map(|&n| {
            let mut c = vec![Vec::new(); n + 1];
            c[n] = (0..n).collect();
            c
        })
        .collect()
}

/// A value of one table tied to a value of another (`(table, cell, measure)` twice): `Eq`
/// when equal, `Le` when the first is at most the second.
type OracleTie = (
    (usize, Vec<usize>, usize),
    (usize, Vec<usize>, usize),
    Sense,
);

/// The attacker reading several `tables` at once, with the `ties` between their values:
/// the optimum of `target` (`(table, cell, measure)`).
fn oracle_joint(
    tables: &[OracleTable<'_>],
    ties: &[OracleTie],
    target: (usize, &[usize], usize),
    maximise: bool,
) -> Option<f64> {
    let mut vars = HashMap::new();
    for (i, t) in tables.iter().enumerate() {
        for cell in t.hidden {
            for k in 0..t.kinds.len() {
                let id = vars.len();
                vars.insert((i, cell.clone(), k), id);
            }
        }
    }
    let n = vars.len();
    // Values scaled by their grand totals: the dense simplex's pivots compare with an absolute
    // epsilon, and clarabel's numerical errors were fewer on the scaled programs too.
    let scale: Vec<Vec<f64>> = tables
        .iter()
        .map(|t| {
            (0..t.kinds.len())
                .map(|k| t.cells[t.sizes][k].max(1.0))
                .collect()
        })
        .collect();
    // Adds `coefficient × value(cell, k) / per` to a row under construction.
    let add =
        |row: &mut SparseRow, i: usize, cell: &Vec<usize>, k: usize, coefficient: f64, per: f64| {
            match vars.get(&(i, cell.clone(), k)) {
                Some(&v) => row.0.push((v, coefficient * scale[i][k] / per)),
                None => row.2 -= coefficient * tables[i].cells[cell][k] / per,
            }
        };
    let mut rows: Vec<SparseRow> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let units = t.kinds.iter().position(|k| *k == MeasureKind::Units);
        let rows_at = t.kinds.iter().position(|k| *k == MeasureKind::Rows);
        for (j, children) in t.children.iter().enumerate() {
            let parts_of = |total: &Vec<usize>| -> Vec<Vec<usize>> {
                children[total[j]]
                    .iter()
                    .map(|&v| {
                        let mut p = total.clone();
                        p[j] = v;
                        p
                    })
                    .collect()
            };
            let totals: Vec<&Vec<usize>> = t
                .cells
                .keys()
                .filter(|c| !children[c[j]].is_empty())
                .collect();
            let units_add = units.is_none_or(|u| {
                totals.iter().all(|total| {
                    let parts: f64 = parts_of(total).iter().map(|p| t.cells[p][u]).sum();
                    (parts - t.cells[*total][u]).abs() < 1e-9
                })
            });
            for total in totals {
                let parts = parts_of(total);
                if !t.hidden.contains(total) && parts.iter().all(|p| !t.hidden.contains(p)) {
                    continue;
                }
                for (k, &per) in scale[i].iter().enumerate() {
                    let equal = Some(k) != units || units_add;
                    let mut row: SparseRow =
                        (Vec::new(), if equal { Sense::Eq } else { Sense::Le }, 0.0);
                    add(&mut row, i, total, k, 1.0, per);
                    for p in &parts {
                        add(&mut row, i, p, k, -1.0, per);
                    }
                    rows.push(row);
                    if !equal {
                        for p in &parts {
                            let mut row: SparseRow = (Vec::new(), Sense::Le, 0.0);
                            add(&mut row, i, p, k, 1.0, per);
                            add(&mut row, i, total, k, -1.0, per);
                            rows.push(row);
                        }
                    }
                }
            }
        }
        if let (Some(u), Some(r)) = (units, rows_at) {
            for cell in t.hidden {
                let mut row: SparseRow = (Vec::new(), Sense::Le, 0.0);
                add(&mut row, i, cell, u, 1.0, 1.0);
                add(&mut row, i, cell, r, -1.0, 1.0);
                rows.push(row);
            }
        }
    }
    for ((a, ca, ka), (b, cb, kb), sense) in ties {
        let per = scale[*a][*ka].max(scale[*b][*kb]);
        let mut row: SparseRow = (Vec::new(), *sense, 0.0);
        add(&mut row, *a, ca, *ka, 1.0, per);
        add(&mut row, *b, cb, *kb, -1.0, per);
        rows.push(row);
    }
    rows.retain(|r| r.0.iter().any(|(_, v)| *v != 0.0));
    let (t, cell, m) = target;
    let mut objective = vec![0.0; n];
    objective[vars[&(t, cell.to_vec(), m)]] = 1.0;
    // Every value is at most its measure's grand total (counts and sums of non-negative
    // values; distinct units too: the grand total counts every unit once).
    let mut upper = vec![0.0; n];
    for ((i, _, k), &id) in &vars {
        upper[id] = tables[*i].cells[tables[*i].sizes][*k] / scale[*i][*k];
    }
    optimum(n, &rows, &objective, maximise, &upper).map(|v| v * scale[t][m])
}

/// Attacks the hidden value `target` (`(table, cell, measure)`) of `tables`, read with their
/// `ties`, with the oracle, and asserts that it is protected under `profile`: a count's interval
/// reaches the threshold and is at least that wide (ends rounded to whole units), a sum's
/// reaches the margin below and above its value.
fn assert_oracle_protects(
    tables: &[OracleTable<'_>],
    ties: &[OracleTie],
    target: (usize, &[usize], usize),
    kind: MeasureKind,
    value: f64,
    profile: &Profile,
    what: &str,
) {
    let low = oracle_joint(tables, ties, target, false).unwrap_or(0.0);
    let high = oracle_joint(tables, ties, target, true).unwrap_or(f64::INFINITY);
    if kind.is_count() {
        let threshold = profile.min_units as f64;
        let (low, high) = ((low - 1e-3).ceil().max(0.0), (high + 1e-3).floor());
        assert!(
            high >= threshold && high - low >= threshold,
            "{what}: {target:?} = {value} narrowed to [{low}, {high}]"
        );
    } else {
        let margin = profile.magnitude_margin * value;
        let slack = 1e-4 * value.max(1.0);
        assert!(
            low <= value - margin + slack && high >= value + margin - slack,
            "{what}: {target:?} sum {value} narrowed to [{low}, {high}]"
        );
    }
}

/// Protects the table of `records` and checks it against the oracle: `Ok(cells hidden)`, or
/// the refusal.
fn protect_and_check(
    sizes: &[usize],
    records: &[Record],
    profile: &Profile,
) -> Result<usize, ProtectError> {
    let (dims, measures, facts) = table(sizes, records);
    let cells: BTreeMap<Vec<usize>, Vec<f64>> = facts
        .iter()
        .map(|(c, f)| (c.clone(), f.values.clone()))
        .collect();
    let facts_by: HashMap<Vec<usize>, CellFacts> = facts.iter().cloned().collect();
    let cube = Cube::new(dims, measures, facts).unwrap();
    let protection = protect(&cube, profile)?;
    let hidden: HashSet<Vec<usize>> = (0..cube.len())
        .filter(|&i| protection.secrets[i].is_some())
        .map(|i| cube.coords(i))
        .collect();
    for i in 0..cube.len() {
        let coords = cube.coords(i);
        let facts = &facts_by[&coords];
        // The primary rules, recomputed here.
        let small = facts.units > 0 && facts.units < profile.min_units;
        let dominated = profile
            .dominance
            .is_some_and(|d| facts.values[2] > 0.0 && facts.largest[2] > d * facts.values[2]);
        match protection.secrets[i] {
            Some(Secret::Primary(reason)) => {
                assert!(
                    small || dominated,
                    "{coords:?} is no primary secret: {facts:?}"
                );
                assert_eq!(reason == PrimaryReason::TooFewUnits, small, "{coords:?}");
            }
            _ => assert!(
                !small && !dominated,
                "{coords:?} should be a primary secret: {facts:?}"
            ),
        }
        if !(small || dominated) {
            continue;
        }
        // Counts protected by the threshold (small cells), magnitudes by the margin (all).
        let threshold = profile.min_units as f64;
        if small {
            for k in [0, 1] {
                let low = oracle_interval(sizes, &cells, &hidden, &coords, k, false).unwrap_or(0.0);
                let high = oracle_interval(sizes, &cells, &hidden, &coords, k, true)
                    .unwrap_or(f64::INFINITY);
                let (low, high) = ((low - 1e-3).ceil().max(0.0), (high + 1e-3).floor());
                assert!(
                    high >= threshold && high - low >= threshold,
                    "{coords:?} measure {k} = {} narrowed to [{low}, {high}]",
                    facts.values[k]
                );
            }
        }
        let v = facts.values[2];
        if v > 0.0 {
            let low = oracle_interval(sizes, &cells, &hidden, &coords, 2, false).unwrap_or(0.0);
            let high =
                oracle_interval(sizes, &cells, &hidden, &coords, 2, true).unwrap_or(f64::INFINITY);
            let margin = profile.magnitude_margin * v;
            let slack = 1e-4 * v.max(1.0);
            assert!(
                low <= v - margin + slack && high >= v + margin - slack,
                "{coords:?} amount {v} narrowed to [{low}, {high}]"
            );
        }
    }
    Ok(hidden.len())
}

/// Random tables of two and three dimensions under a business-like profile (counts and
/// dominance): every one protected as the oracle checks, or refused.
#[test]
fn every_protected_table_withstands_the_oracles_attack() {
    let profile = Profile {
        min_units: 4,
        ..Profile::named("business").unwrap()
    };
    let mut refused = 0;
    let mut hidden = 0;
    let cases: Vec<(u64, Vec<usize>, usize)> = (0..16u64)
        .map(|seed| {
            let sizes = if seed % 2 == 0 {
                vec![3 + (seed as usize % 4), 2 + (seed as usize % 3)]
            } else {
                vec![3, 2 + (seed as usize % 3), 2]
            };
            (seed, sizes, 60 + 25 * seed as usize)
        })
        .collect();
    for (seed, sizes, records) in &cases {
        let data = microdata(*seed, sizes, *records);
        match protect_and_check(sizes, &data, &profile) {
            Ok(n) => hidden += n,
            Err(ProtectError::Unprotectable { .. }) => refused += 1,
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    assert!(hidden > 0, "the cases hide something");
    assert!(
        refused * 8 <= cases.len(),
        "{refused} of {} tables refused",
        cases.len()
    );
}

/// Differencing across data versions: a table's new version (records removed and added) is
/// protected together with the version readers saw, and the oracle, reading both with every tie
/// that holds between them (a cell unchanged is equal in both, one that grew is at least its
/// old value, one that shrank at most), finds every primary cell of both versions protected.
/// Protected alone, the new versions leave old primaries exposed in some cases: the joint
/// audit is what closes them.
#[test]
fn a_new_version_read_with_the_one_it_replaces_withstands_the_oracle() {
    use passerelle::secrecy::{Link, Neighbour, Tie, audit_joint, protect_with};
    let profile = Profile {
        min_units: 4,
        ..Profile::named("business").unwrap()
    };
    let kinds = [MeasureKind::Rows, MeasureKind::Units, MeasureKind::Sum];
    let (mut checked, mut exposed_alone) = (0, 0);
    // Two dimensions: the oracle's dense simplex takes minutes on two 3-dimension tables.
    const CASES: u64 = 8;
    for seed in 0..CASES {
        let sizes = vec![3 + seed as usize % 2, 3 + seed as usize % 3];
        let old_records = microdata(seed, &sizes, 70 + 10 * seed as usize);
        // The next version: one record in five removed, a few new ones.
        let mut new_records: Vec<Record> = old_records
            .iter()
            .enumerate()
            .filter(|(i, _)| !(i + seed as usize).is_multiple_of(5))
            .map(|(_, r)| Record {
                unit: r.unit,
                at: r.at.clone(),
                amount: r.amount,
            })
            .collect();
        new_records.extend(microdata(seed + 100, &sizes, 12));
        let cube_of = |records: &[Record]| {
            let (dims, measures, facts) = table(&sizes, records);
            Cube::new(dims, measures, facts).unwrap()
        };
        let (old, new) = (cube_of(&old_records), cube_of(&new_records));
        let Ok(old_protection) = protect(&old, &profile) else {
            continue;
        };
        let links: Vec<Link> = (0..new.len())
            .flat_map(|c| {
                let (new, old) = (&new, &old);
                (0..kinds.len()).map(move |k| Link {
                    cell: c,
                    measure: k,
                    other_cell: c,
                    other_measure: k,
                    tie: Tie::between(new.value(c, k), old.value(c, k)),
                })
            })
            .collect();
        let neighbour = Neighbour {
            cube: &old,
            hidden: old_protection.hidden(),
            primaries: passerelle::secrecy::primaries(&old, &profile),
            profile: profile.clone(),
            links,
        };
        let neighbours = [neighbour];
        // Protected alone, then read together: how often the old version is exposed.
        if let Ok(alone) = protect(&new, &profile) {
            let every: Vec<usize> = (0..new.len()).collect();
            let findings = audit_joint(
                &new,
                &alone.hidden(),
                &passerelle::secrecy::primaries(&new, &profile),
                &profile,
                &every,
                &[],
                &neighbours,
            )
            .unwrap();
            exposed_alone += usize::from(!findings.is_empty());
        }
        let Ok(new_protection) = protect_with(&new, &profile, &neighbours) else {
            continue;
        };
        // The oracle, on both versions with their ties.
        let as_map = |cube: &Cube| -> BTreeMap<Vec<usize>, Vec<f64>> {
            (0..cube.len())
                .map(|i| {
                    (
                        cube.coords(i),
                        (0..kinds.len()).map(|k| cube.value(i, k)).collect(),
                    )
                })
                .collect()
        };
        let hidden_of = |cube: &Cube, hidden: Vec<bool>| -> HashSet<Vec<usize>> {
            (0..cube.len())
                .filter(|&i| hidden[i])
                .map(|i| cube.coords(i))
                .collect()
        };
        let (new_cells, old_cells) = (as_map(&new), as_map(&old));
        let new_hidden = hidden_of(&new, new_protection.hidden());
        let old_hidden = hidden_of(&old, old_protection.hidden());
        let tables = [
            OracleTable {
                kinds: &kinds,
                sizes: &sizes,
                children: flat_children(&sizes),
                cells: &new_cells,
                hidden: &new_hidden,
            },
            OracleTable {
                kinds: &kinds,
                sizes: &sizes,
                children: flat_children(&sizes),
                cells: &old_cells,
                hidden: &old_hidden,
            },
        ];
        let mut ties: Vec<OracleTie> = Vec::new();
        for (coords, values) in &new_cells {
            for k in 0..kinds.len() {
                let (a, b) = (values[k], old_cells[coords][k]);
                let (n, o) = ((0, coords.clone(), k), (1, coords.clone(), k));
                ties.push(if (a - b).abs() < 1e-9 {
                    (n, o, Sense::Eq)
                } else if a < b {
                    (n, o, Sense::Le)
                } else {
                    (o, n, Sense::Le)
                });
            }
        }
        for (t, cube, protection) in [(0, &new, &new_protection), (1, &old, &old_protection)] {
            for i in 0..cube.len() {
                let Some(Secret::Primary(reason)) = protection.secrets[i] else {
                    continue;
                };
                let coords = cube.coords(i);
                for (k, kind) in kinds.iter().enumerate() {
                    let v = cube.value(i, k);
                    let needed = if kind.is_count() {
                        reason != PrimaryReason::Dominance
                    } else {
                        v > 0.0
                    };
                    if !needed {
                        continue;
                    }
                    assert_oracle_protects(
                        &tables,
                        &ties,
                        (t, &coords, k),
                        *kind,
                        v,
                        &profile,
                        &format!("seed {seed}: version {t}"),
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!(
        "secrecy: versions: {checked} hidden values attacked jointly, all protected; {exposed_alone} of {CASES} new versions protected alone exposed a cell"
    );
    assert!(checked > 50, "{checked}");
    assert!(
        exposed_alone > 0,
        "the attack is real: some version alone exposes a cell"
    );
}

/// Hierarchies: a dimension of six values in two groups (a NAF division within its section)
/// crossed with a flat one, every level published (values, group subtotals, margin). The
/// oracle, knowing that each group is the sum of its values and the margin the sum of the
/// groups, finds every primary cell protected, at the finer level and at the coarser one.
#[test]
fn a_hierarchy_withstands_the_oracle_at_every_level() {
    use passerelle::secrecy::{CellFacts, Dimension, Measure};
    let profile = Profile {
        min_units: 4,
        ..Profile::named("business").unwrap()
    };
    let kinds = [MeasureKind::Rows, MeasureKind::Units, MeasureKind::Sum];
    // Coordinates of the hierarchical dimension: group 0, its values 0-2, group 1, its values
    // 3-5; the margin is 8.
    let leaf = |v: usize| 1 + v + v / 3;
    let group = |v: usize| 4 * (v / 3);
    let hierarchy = Dimension {
        name: "division".into(),
        values: ["S0", "d0", "d1", "d2", "S1", "d3", "d4", "d5"]
            .map(String::from)
            .to_vec(),
        parents: vec![8, 0, 0, 0, 8, 4, 4, 4],
    };
    let mut children = vec![Vec::new(); 9];
    children[0] = vec![1, 2, 3];
    children[4] = vec![5, 6, 7];
    children[8] = vec![0, 4];
    let (mut checked, mut refused, mut coarse) = (0, 0, 0);
    for seed in 0..8u64 {
        let records = microdata(seed, &[6, 3], 80 + 15 * seed as usize);
        let mut facts = Vec::new();
        for c0 in 0..=8 {
            for c1 in 0..=3 {
                let inside: Vec<&Record> = records
                    .iter()
                    .filter(|r| {
                        (c0 == 8 || c0 == leaf(r.at[0]) || c0 == group(r.at[0]))
                            && (c1 == 3 || c1 == r.at[1])
                    })
                    .collect();
                let units: HashSet<u32> = inside.iter().map(|r| r.unit).collect();
                let mut by_unit: HashMap<u32, f64> = HashMap::new();
                for r in &inside {
                    *by_unit.entry(r.unit).or_default() += r.amount;
                }
                facts.push((
                    vec![c0, c1],
                    CellFacts {
                        units: units.len() as u64,
                        values: vec![
                            inside.len() as f64,
                            units.len() as f64,
                            inside.iter().map(|r| r.amount).sum(),
                        ],
                        largest: vec![0.0, 0.0, by_unit.values().copied().fold(0.0, f64::max)],
                    },
                ));
            }
        }
        let measures = ["lignes", "unites", "montant"]
            .iter()
            .zip(kinds)
            .map(|(name, kind)| Measure {
                name: name.to_string(),
                kind,
            })
            .collect();
        let dims = vec![
            hierarchy.clone(),
            Dimension::flat("region", vec!["r0".into(), "r1".into(), "r2".into()]),
        ];
        let cube = Cube::new(dims, measures, facts).unwrap();
        let protection = match protect(&cube, &profile) {
            Ok(p) => p,
            Err(ProtectError::Unprotectable { .. }) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("seed {seed}: {e}"),
        };
        let sizes = [8, 3];
        let cells: BTreeMap<Vec<usize>, Vec<f64>> = (0..cube.len())
            .map(|i| (cube.coords(i), (0..3).map(|k| cube.value(i, k)).collect()))
            .collect();
        let hidden: HashSet<Vec<usize>> = (0..cube.len())
            .filter(|&i| protection.secrets[i].is_some())
            .map(|i| cube.coords(i))
            .collect();
        let tables = [OracleTable {
            kinds: &kinds,
            sizes: &sizes,
            children: vec![children.clone(), flat_children(&[3])[0].clone()],
            cells: &cells,
            hidden: &hidden,
        }];
        for i in 0..cube.len() {
            let Some(Secret::Primary(reason)) = protection.secrets[i] else {
                continue;
            };
            let coords = cube.coords(i);
            coarse += usize::from(coords[0] == 0 || coords[0] == 4);
            for (k, kind) in kinds.iter().enumerate() {
                let v = cube.value(i, k);
                let needed = if kind.is_count() {
                    reason != PrimaryReason::Dominance
                } else {
                    v > 0.0
                };
                if !needed {
                    continue;
                }
                assert_oracle_protects(
                    &tables,
                    &[],
                    (0, &coords, k),
                    *kind,
                    v,
                    &profile,
                    &format!("seed {seed}"),
                );
                checked += 1;
            }
        }
    }
    eprintln!(
        "secrecy: hierarchy: {checked} hidden values attacked, {coarse} primaries at the coarser level, {refused} of 8 refused"
    );
    assert!(checked > 50 && coarse > 0, "{checked} {coarse}");
    assert!(refused <= 1, "{refused} of 8 refused");
}

/// The oracle is no rubber stamp: a small cell hidden alone is given back by its line, and
/// hidden with a rectangle it is not.
#[test]
fn the_oracle_recovers_a_cell_hidden_alone() {
    let sizes = [2, 3];
    let inner = [[3.0, 20.0, 30.0], [40.0, 50.0, 60.0]];
    let mut cells = BTreeMap::new();
    for coords in grid(&sizes) {
        let v: f64 = (0..2)
            .filter(|&r| coords[0] == 2 || coords[0] == r)
            .flat_map(|r| {
                (0..3)
                    .filter(|&c| coords[1] == 3 || coords[1] == c)
                    .map(move |c| inner[r][c])
            })
            .sum();
        cells.insert(coords, vec![v, v, v]);
    }
    let alone: HashSet<Vec<usize>> = [vec![0, 0]].into_iter().collect();
    for maximise in [false, true] {
        let end = oracle_interval(&sizes, &cells, &alone, &[0, 0], 0, maximise).unwrap();
        assert!((end - 3.0).abs() < 1e-6, "{end}");
    }
    let rectangle: HashSet<Vec<usize>> = [vec![0, 0], vec![0, 1], vec![1, 0], vec![1, 1]]
        .into_iter()
        .collect();
    let high = oracle_interval(&sizes, &cells, &rectangle, &[0, 0], 0, true).unwrap();
    assert!((high - 23.0).abs() < 1e-6, "{high}");
}

/// A medical table of the test hub's stays (region × ICD-10 chapter: stays, patients, cost),
/// computed by the hub's grouping queries and protected: every published value equals the
/// microdata's, recomputed here from the raw file; every cell with 1 to 10 patients is a
/// primary secret and hidden; and the oracle's attacker finds each sampled primary protected.
#[tokio::test]
async fn a_table_of_the_hubs_stays_publishes_exact_values_and_protects_its_small_cells() {
    use arrow::array::{Array, AsArray};
    use passerelle::engine::tables::build;
    use passerelle::policy::{Catalog, Tables};

    let source = crate::support::hub()
        .root
        .join("data/sante/sejours.parquet");
    let mut catalog = Catalog::parse(
        std::path::Path::new("datasets.toml"),
        include_str!("../../policies/datasets.toml"),
    )
    .unwrap();
    let tables = Tables::parse(
        std::path::Path::new("tables.toml"),
        r#"
[[tables]]
id = "stats.sejours_region_chapitre"
title = "Séjours, patients et coût par région et lettre de la CIM-10"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [
  { name = "region", column = "region" },
  { name = "chapitre", column = "diagnostic", prefix = 1 },
]
measures = [
  { name = "sejours", kind = "rows" },
  { name = "patients", kind = "units" },
  { name = "cout", kind = "sum", column = "cout" },
]
"#,
        &mut catalog,
    )
    .unwrap();
    let definition = tables.list[0].clone();
    let started = std::time::Instant::now();
    let table = build(&definition, &source, Vec::new()).await.unwrap();
    let (primary, secondary) = table.protection.counts();
    eprintln!(
        "secrecy: {} cells, {primary} primary, {secondary} secondary, {} rounds, built in {:?}",
        table.cube.len(),
        table.protection.rounds,
        started.elapsed()
    );
    assert!(primary > 0, "the test hub has small cells");

    // The microdata, read here with the parquet crate (no DataFusion).
    let file = std::fs::File::open(&source).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut records: Vec<(String, String, String, f64)> = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (region, diagnostic, nir) = (text("region"), text("diagnostic"), text("nir"));
        let cout = batch
            .column_by_name("cout")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone();
        for row in 0..batch.num_rows() {
            if region.is_null(row) || diagnostic.is_null(row) {
                continue;
            }
            let chapter: String = diagnostic.value(row).chars().take(1).collect();
            let cost = if cout.is_null(row) {
                0.0
            } else {
                cout.value(row)
            };
            records.push((
                region.value(row).into(),
                chapter,
                nir.value(row).into(),
                cost,
            ));
        }
    }
    let dims = table.cube.dims().to_vec();
    let sizes: Vec<usize> = dims.iter().map(|d| d.values.len()).collect();
    let mut cells: BTreeMap<Vec<usize>, Vec<f64>> = BTreeMap::new();
    let mut hidden: HashSet<Vec<usize>> = HashSet::new();
    let mut primaries = Vec::new();
    let batch = &table.batch;
    let label = |name: &str, row: usize| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .value(row)
            .to_string()
    };
    for row in 0..batch.num_rows() {
        let (region, chapter) = (label("region", row), label("chapitre", row));
        let inside: Vec<&(String, String, String, f64)> = records
            .iter()
            .filter(|r| {
                (region == "Ensemble" || r.0 == region) && (chapter == "Ensemble" || r.1 == chapter)
            })
            .collect();
        let units: HashSet<&str> = inside.iter().map(|r| r.2.as_str()).collect();
        let truth = [
            inside.len() as f64,
            units.len() as f64,
            inside.iter().map(|r| r.3).sum::<f64>(),
        ];
        let coords = vec![
            dims[0]
                .values
                .iter()
                .position(|v| *v == region)
                .unwrap_or(sizes[0]),
            dims[1]
                .values
                .iter()
                .position(|v| *v == chapter)
                .unwrap_or(sizes[1]),
        ];
        cells.insert(coords.clone(), truth.to_vec());
        let flag = batch
            .column_by_name("patients_secret")
            .unwrap()
            .as_string::<i32>();
        let small = truth[1] > 0.0 && truth[1] < 11.0;
        if flag.is_null(row) {
            assert!(
                !small,
                "{region} × {chapter}: {} patients published",
                truth[1]
            );
            let sejours = batch
                .column_by_name("sejours")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(row);
            let patients = batch
                .column_by_name("patients")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(row);
            let cost = batch
                .column_by_name("cout")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(row);
            assert_eq!(sejours as f64, truth[0], "{region} × {chapter}");
            assert_eq!(patients as f64, truth[1], "{region} × {chapter}");
            assert!(
                (cost - truth[2]).abs() <= 1e-6 * truth[2].max(1.0),
                "{region} × {chapter}: {cost} ≠ {}",
                truth[2]
            );
        } else {
            hidden.insert(coords.clone());
            for name in ["sejours", "patients", "cout"] {
                assert!(
                    batch.column_by_name(name).unwrap().is_null(row),
                    "{name} of a hidden cell"
                );
            }
            if small {
                assert_eq!(flag.value(row), "primary", "{region} × {chapter}");
                primaries.push(coords);
            }
        }
    }
    assert_eq!(
        cells.len(),
        table.cube.len(),
        "every cell is published, margins included"
    );
    // The oracle's attack on every primary's counts (stays and patients).
    let started = std::time::Instant::now();
    let attacked: Vec<&Vec<usize>> = primaries.iter().collect();
    for coords in &attacked {
        for k in [0, 1] {
            let high =
                oracle_interval(&sizes, &cells, &hidden, coords, k, true).unwrap_or(f64::INFINITY);
            let low = oracle_interval(&sizes, &cells, &hidden, coords, k, false).unwrap_or(0.0);
            let (low, high) = ((low - 1e-3).ceil().max(0.0), (high + 1e-3).floor());
            assert!(
                high >= 11.0 && high - low >= 11.0,
                "{coords:?} measure {k} narrowed to [{low}, {high}]"
            );
        }
    }
    eprintln!(
        "secrecy: the oracle attacked {} of {} primaries in {:?}",
        attacked.len(),
        primaries.len(),
        started.elapsed()
    );
}

/// The published tables of a hub, through the gateway: an aggregate-only habilitation reads its
/// protected table with any SQL and never reaches microdata; every published count of patients
/// is 0 or at least 11, every hidden one is flagged; the business table hides dominated cells;
/// a researcher does not see the observatory's table; `GET /v1/tables/{id}` describes it to
/// its habilitation and to operators (why a table failed: operators only), never to others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observatory_reads_its_protected_tables_and_never_the_microdata() {
    use arrow::array::AsArray;
    use serde_json::{Value, json};
    let h = crate::support::DemoServer::start_with(|_| {}).await;
    let c = &h.server.client;
    let observatory = h.token("observatoire-sante");
    let business = h.token("observatoire-entreprises");
    let fiscal = h.token("observatoire-fiscal");
    let researcher = h.token("chercheuse-diabete");
    let operator = h.token("operateur");
    let info = |id: &str, token: &str| {
        c.get(h.server.url(&format!("/v1/tables/{id}")))
            .bearer_auth(token.to_string())
            .send()
    };
    let sejours = "stats.sejours_region_age_chapitre";
    let etablissements = "stats.etablissements_naf_region";
    let foyers = "stats.foyers_situation_revenu";
    // Published by the hub in the background, after start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    for (id, token) in [
        (sejours, &observatory),
        (etablissements, &business),
        (foyers, &fiscal),
    ] {
        loop {
            let answer = info(id, token).await.unwrap();
            assert_eq!(answer.status(), 200);
            let view: Value = answer.json().await.unwrap();
            match view["status"]["state"].as_str() {
                Some("published") => {
                    let summary = &view["status"]["summary"];
                    assert!(summary["primary"].as_u64().unwrap() > 0, "{view}");
                    assert!(summary["cells"].as_u64().unwrap() >= 40, "{view}");
                    assert_eq!(view["id"], id);
                    break;
                }
                Some("pending") => {}
                other => panic!("{id}: {other:?} {view}"),
            }
            assert!(std::time::Instant::now() < deadline, "{id} never published");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    let query = |token: &str, sql: &str| {
        c.post(h.server.url("/v1/query"))
            .bearer_auth(token.to_string())
            .json(&json!({ "sql": sql }))
            .send()
    };
    // Any SQL over the table; the small cells are hidden and flagged.
    let answer = query(
        &observatory,
        "SELECT region, tranche_age, chapitre, sejours, patients, patients_secret FROM stats.sejours_region_age_chapitre",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    let rows = body["rows"].as_array().unwrap();
    assert!(rows.len() > 100);
    let mut hidden = 0;
    for row in rows {
        match row["patients"].as_i64() {
            Some(n) => {
                assert!(n == 0 || n >= 11, "a published cell of {n} patients: {row}");
                assert!(row["patients_secret"].is_null(), "{row}");
            }
            None => {
                hidden += 1;
                let flag = row["patients_secret"].as_str().unwrap();
                assert!(flag == "primary" || flag == "secondary", "{row}");
                assert!(row["sejours"].is_null(), "{row}");
            }
        }
    }
    assert!(hidden > 0);
    let answer = query(
        &observatory,
        "SELECT sejours, sejours_secret FROM stats.sejours_region_age_chapitre WHERE region = 'Ensemble' AND tranche_age = 'Ensemble' AND chapitre = 'Ensemble'",
    )
    .await
    .unwrap();
    let body: Value = answer.json().await.unwrap();
    // The grand total: published, or (on the test hub's 2 000 stays over 2 000 cells, where
    // only hypercubes through the margins protect some cells) a secondary secret.
    let total = &body["rows"][0];
    assert!(
        total["sejours"].as_i64().is_some_and(|n| n > 1000)
            || total["sejours_secret"] == "secondary",
        "{body}"
    );
    let answer = query(
        &observatory,
        "SELECT chapitre, sum(sejours) AS s FROM stats.sejours_region_age_chapitre WHERE region <> 'Ensemble' AND tranche_age = 'Ensemble' GROUP BY chapitre",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);

    // Never the microdata, by any name.
    for sql in [
        "SELECT count(*) FROM sante.sejours",
        "SELECT * FROM entreprises.etablissements LIMIT 1",
    ] {
        let answer = query(&observatory, sql).await.unwrap();
        assert!(
            answer.status().is_client_error(),
            "{sql}: {}",
            answer.status()
        );
    }
    // The business table: dominated cells hidden too.
    let answer = query(
        &business,
        "SELECT count(*) AS n FROM stats.etablissements_naf_region WHERE chiffre_affaires_secret IS NOT NULL",
    )
    .await
    .unwrap();
    let body: Value = answer.json().await.unwrap();
    assert!(body["rows"][0]["n"].as_i64().unwrap() > 0, "{body}");
    let view: Value = info(etablissements, &business)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        view["status"]["summary"]["primary_dominance"]
            .as_u64()
            .unwrap()
            > 0,
        "{view}"
    );
    assert_eq!(view["profile"]["dominance"], 0.85);
    // The hierarchy (NAF division within its section): published with the sections'
    // subtotals, each section hidden or published alike in the table by section and region
    // (they share it), and every published section the sum of its published divisions when
    // none is hidden.
    let rows = |token: &str, sql: &str| {
        let request = query(token, sql);
        async move {
            let body: Value = request.await.unwrap().json().await.unwrap();
            body["rows"].as_array().unwrap().clone()
        }
    };
    let activite = rows(
        &business,
        "SELECT section, division, etablissements FROM stats.etablissements_activite",
    )
    .await;
    let by_region = rows(
        &business,
        "SELECT section, etablissements FROM stats.etablissements_naf_region WHERE region = 'Ensemble'",
    )
    .await;
    assert!(activite.len() > 10, "{activite:?}");
    let mut sections = 0;
    for s in by_region.iter().filter(|r| r["section"] != "Ensemble") {
        let total = activite
            .iter()
            .find(|r| r["section"] == s["section"] && r["division"] == "Ensemble")
            .unwrap_or_else(|| panic!("{s}"));
        assert_eq!(total["etablissements"], s["etablissements"], "section {s}");
        let parts: Vec<Option<i64>> = activite
            .iter()
            .filter(|r| r["section"] == s["section"] && r["division"] != "Ensemble")
            .map(|r| r["etablissements"].as_i64())
            .collect();
        if let (Some(t), true) = (
            total["etablissements"].as_i64(),
            parts.iter().all(Option::is_some),
        ) {
            assert_eq!(parts.iter().flatten().sum::<i64>(), t, "section {s}");
        }
        sections += 1;
    }
    assert!(sections > 5);
    let view: Value = info("stats.etablissements_activite", &business)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["dimensions"][0]["within"][0]["name"], "section",
        "{view}"
    );

    // The tax table: households counted once (not their members), their tax summed once per
    // household, every published count of households 0 or at least 11; and no microdata.
    let answer = query(
        &fiscal,
        "SELECT situation, tranche_revenu, foyers, personnes, impot, foyers_secret FROM stats.foyers_situation_revenu",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    let rows = body["rows"].as_array().unwrap();
    assert!(rows.len() >= 40, "{body}");
    for row in rows {
        match row["foyers"].as_i64() {
            Some(n) => {
                assert!(
                    n == 0 || n >= 11,
                    "a published cell of {n} households: {row}"
                );
                assert!(row["personnes"].as_i64().unwrap() >= n, "{row}");
            }
            None => assert!(
                row["impot"].is_null() && row["foyers_secret"].is_string(),
                "{row}"
            ),
        }
    }
    let grand = rows
        .iter()
        .find(|r| r["situation"] == "Ensemble" && r["tranche_revenu"] == "Ensemble")
        .unwrap();
    assert!(
        grand["personnes"].as_i64() > grand["foyers"].as_i64(),
        "several people in some households: {grand}"
    );
    for sql in [
        "SELECT count(*) FROM fiscal.revenus",
        "SELECT * FROM stats.sejours_region_age_chapitre",
    ] {
        let answer = query(&fiscal, sql).await.unwrap();
        assert!(answer.status().is_client_error(), "{sql}");
    }

    // A researcher: no table, and nothing said about it.
    let answer = query(
        &researcher,
        "SELECT * FROM stats.sejours_region_age_chapitre",
    )
    .await
    .unwrap();
    assert!(answer.status().is_client_error());
    assert_eq!(info(sejours, &researcher).await.unwrap().status(), 404);
    assert_eq!(
        info("stats.nulle_part", &observatory)
            .await
            .unwrap()
            .status(),
        404
    );
    // One observatory does not see the other's table.
    assert_eq!(
        info(etablissements, &observatory).await.unwrap().status(),
        404
    );
    // The operator sees every table.
    let view: Value = info(sejours, &operator)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"]["state"], "published", "{view}");

    // Over Flight SQL alike: the table, not the microdata.
    let mut flight = crate::support::flight::FlightClient::connect(
        h.server.flight.unwrap(),
        &crate::support::hub().ca_pem(),
        &observatory,
    )
    .await;
    let (_, batches) = flight
        .query("SELECT count(*) AS n FROM stats.sejours_region_age_chapitre WHERE patients_secret IS NOT NULL")
        .await
        .unwrap();
    let n = batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(n as usize, hidden, "the same hidden cells over Flight");
    let refused = flight.query("SELECT count(*) FROM sante.sejours").await;
    assert!(refused.is_err(), "microdata over Flight");

    // Each publication is on the audit trail: which table, how many cells hidden, which data.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        use passerelle::audit::{AuditKind, Outcome};
        let events = passerelle::audit::read_events(&h.server.audit_dir).unwrap();
        let published: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == AuditKind::TablePublication && e.outcome == Outcome::Allowed)
            .map(|e| e.action.as_str())
            .collect();
        if published.len() >= 3 {
            for id in [sejours, etablissements, foyers] {
                let action = published
                    .iter()
                    .find(|a| a.contains(id))
                    .unwrap_or_else(|| panic!("{id}: {published:?}"));
                assert!(
                    action.contains("primary") && action.contains("data version"),
                    "{action}"
                );
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{published:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    h.server.shutdown(std::time::Duration::from_secs(5)).await;
}

/// A data folder of its own holding a copy of the test hub's `relative` file: (the folder's
/// temporary parent, the data folder, the copy).
fn data_folder_with(relative: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let copy = data.join(relative);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(
        crate::support::hub().root.join("data").join(relative),
        &copy,
    )
    .unwrap();
    (dir, data, copy)
}

/// Only the current version of a table is readable: once its source file changes (or a
/// published file is replaced), the table is unreadable until it is rebuilt, and the rebuilt
/// version carries the new data version; a copy of the same source keeps the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_is_readable_only_while_it_is_the_current_version() {
    use passerelle::engine::tables::{PublishedTables, TableStatus};
    use passerelle::policy::{PolicySet, PolicyTexts};

    let (dir, data, source) = data_folder_with("entreprises/etablissements.parquet");
    let hub_source = crate::support::hub()
        .root
        .join("data/entreprises/etablissements.parquet");
    let texts = PolicyTexts::read(&crate::support::hub().layout().policies()).unwrap();
    let set = PolicySet::from_texts(&dir.path().join("policies"), texts).unwrap();
    let id = "stats.etablissements_naf_region";
    let tables = PublishedTables::new(data.clone());
    assert!(!tables.servable(&set, id), "nothing published yet");
    tables.refresh(&set).await;
    assert!(tables.servable(&set, id));
    let version = |tables: &PublishedTables| match tables.status(id) {
        Some(TableStatus::Published { summary }) => summary.data_version,
        other => panic!("{other:?}"),
    };
    let first = version(&tables);

    // A copy of the same file (new modification time): same version, still readable.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::copy(&hub_source, &source).unwrap();
    assert!(tables.servable(&set, id));

    // The source changes: unreadable at once, until it is rebuilt.
    let bytes = std::fs::read(&hub_source).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let fewer = batches[0].slice(0, batches[0].num_rows() / 2);
    let file = std::fs::File::create(&source).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, fewer.schema(), None).unwrap();
    writer.write(&fewer).unwrap();
    writer.close().unwrap();
    assert!(
        !tables.servable(&set, id),
        "a table of the previous data is not read"
    );
    tables.refresh(&set).await;
    assert!(tables.servable(&set, id), "{:?}", tables.status(id));
    assert_ne!(version(&tables), first);
    // Audited together with the version it replaced, whose kept cells are then dropped.
    match tables.status(id) {
        Some(TableStatus::Published { summary }) => {
            assert_eq!(
                summary.audited_with_previous.as_deref(),
                Some(first.as_str())
            )
        }
        other => panic!("{other:?}"),
    }
    let truths = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(data.join(".tables"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{id}.truth-"))
            })
            .collect()
    };
    assert_eq!(truths().len(), 1, "{:?}", truths());

    // The published file replaced behind the hub's back: unreadable until adopted or rebuilt.
    let published = data.join(".tables").join(format!("{id}.parquet"));
    let kept = std::fs::read(&published).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&published, &kept).unwrap();
    assert!(!tables.servable(&set, id));
    tables.refresh(&set).await;
    assert!(
        tables.servable(&set, id),
        "the same provenance is adopted again"
    );

    // A new hub process finds the published file and adopts it without rebuilding.
    let again = PublishedTables::new(data.clone());
    again.refresh(&set).await;
    assert!(again.servable(&set, id));

    // Fail closed: the cells of the published version lost, a new version cannot be audited
    // with it and is refused (the operator is told how to publish without it).
    for truth in truths() {
        std::fs::remove_file(truth).unwrap();
    }
    let quarter = batches[0].slice(0, batches[0].num_rows() / 4);
    let file = std::fs::File::create(&source).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, quarter.schema(), None).unwrap();
    writer.write(&quarter).unwrap();
    writer.close().unwrap();
    again.refresh(&set).await;
    match again.status(id) {
        Some(TableStatus::Refused { reason }) => {
            assert!(reason.contains("cells were not kept"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!again.servable(&set, id));
    std::fs::remove_file(&published).unwrap();
    let fresh = PublishedTables::new(data.clone());
    fresh.refresh(&set).await;
    assert!(fresh.servable(&set, id), "{:?}", fresh.status(id));
}

/// Gateways sharing one data folder (issue #24) publish each version of a table once: two
/// registries refreshing at the same moment build it one after the other, the second adopts
/// what the first wrote (without the folder's build lock both would build, the second
/// replacing the first's file and truth, and the first would stop serving the table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_a_data_folder_publish_each_version_once() {
    use passerelle::engine::tables::{PublishedTables, TableStatus};
    use passerelle::policy::{PolicySet, PolicyTexts};

    let (dir, data, _source) = data_folder_with("entreprises/etablissements.parquet");
    let texts = PolicyTexts::read(&crate::support::hub().layout().policies()).unwrap();
    let set = PolicySet::from_texts(&dir.path().join("policies"), texts).unwrap();
    let id = "stats.etablissements_naf_region";
    let (a, b) = (
        PublishedTables::new(data.clone()),
        PublishedTables::new(data.clone()),
    );
    let published = data.join(".tables").join(format!("{id}.parquet"));
    tokio::join!(a.refresh(&set), b.refresh(&set));
    let summary = |tables: &PublishedTables| match tables.status(id) {
        Some(TableStatus::Published { summary }) => summary,
        other => panic!("{other:?}"),
    };
    assert_eq!(summary(&a), summary(&b), "one version, published once");
    assert!(a.servable(&set, id) && b.servable(&set, id));
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let written = inode(&published);
    // Refreshing again changes nothing on disk.
    tokio::join!(a.refresh(&set), b.refresh(&set));
    assert_eq!(inode(&published), written);
    let truths = std::fs::read_dir(data.join(".tables"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{id}.truth-"))
        })
        .count();
    assert_eq!(truths, 1);
}

/// A dimension's label of one source row, computed here independently of the hub's SQL: the
/// official ICD-10 chapters and NAF sections, ages in whole years.
fn oracle_label(
    derivation: &passerelle::policy::tables::Derivation,
    text: Option<String>,
    at: Option<chrono::NaiveDate>,
    birth: Option<chrono::NaiveDate>,
) -> Option<String> {
    use chrono::Datelike;
    use passerelle::policy::tables::Derivation;
    let band = |x: i64, bounds: &[i64]| -> Option<String> {
        if x < bounds[0] {
            return None;
        }
        let i = bounds.iter().rposition(|b| x >= *b)?;
        Some(match bounds.get(i + 1) {
            Some(next) => format!("{}-{}", bounds[i], next - 1),
            None => format!("{}+", bounds[i]),
        })
    };
    match derivation {
        Derivation::Value => text,
        Derivation::Prefix { n } => text.map(|t| t.chars().take(*n as usize).collect()),
        Derivation::Bands { bounds } => band(text?.parse::<f64>().ok()?.floor() as i64, bounds),
        Derivation::AgeBands { bounds, .. } => {
            let (birth, at) = (birth?, at?);
            let mut age = i64::from(at.year() - birth.year());
            if (at.month(), at.day()) < (birth.month(), birth.day()) {
                age -= 1;
            }
            band(age, bounds)
        }
        Derivation::Icd10Chapter => {
            let code = text?.to_uppercase();
            let code: String = code.chars().take(3).collect();
            // Official ranges (first and last code of each chapter).
            let chapters = [
                ("A00", "B99", "I"),
                ("C00", "D48", "II"),
                ("D50", "D89", "III"),
                ("E00", "E90", "IV"),
                ("F00", "F99", "V"),
                ("G00", "G99", "VI"),
                ("H00", "H59", "VII"),
                ("H60", "H95", "VIII"),
                ("I00", "I99", "IX"),
                ("J00", "J99", "X"),
                ("K00", "K93", "XI"),
                ("L00", "L99", "XII"),
                ("M00", "M99", "XIII"),
                ("N00", "N99", "XIV"),
                ("O00", "O99", "XV"),
                ("P00", "P96", "XVI"),
                ("Q00", "Q99", "XVII"),
                ("R00", "R99", "XVIII"),
                ("S00", "T98", "XIX"),
                ("V01", "Y98", "XX"),
                ("Z00", "Z99", "XXI"),
                ("U00", "U99", "XXII"),
            ];
            let found = chapters
                .iter()
                .find(|(first, last, _)| code.as_str() >= *first && code.as_str() <= *last);
            assert!(found.is_some(), "a diagnosis outside every chapter: {code}");
            found.map(|(_, _, c)| c.to_string())
        }
        Derivation::NafSection => {
            let division: u32 = text?.get(..2)?.parse().ok()?;
            let sections = [
                (1, 3, "A"),
                (5, 9, "B"),
                (10, 33, "C"),
                (35, 35, "D"),
                (36, 39, "E"),
                (41, 43, "F"),
                (45, 47, "G"),
                (49, 53, "H"),
                (55, 56, "I"),
                (58, 63, "J"),
                (64, 66, "K"),
                (68, 68, "L"),
                (69, 75, "M"),
                (77, 82, "N"),
                (84, 84, "O"),
                (85, 85, "P"),
                (86, 88, "Q"),
                (90, 93, "R"),
                (94, 96, "S"),
                (97, 98, "T"),
                (99, 99, "U"),
            ];
            let found = sections
                .iter()
                .find(|(first, last, _)| (*first..=*last).contains(&division));
            assert!(
                found.is_some(),
                "an activity outside every section: {division}"
            );
            found.map(|(_, _, s)| s.to_string())
        }
    }
}

/// Every table of the demo's `tables.toml`, built on the test hub, against the oracle: each
/// cell recomputed here from the source file (read with the parquet crate, labels derived
/// independently) equals every published value; exactly the cells breaking the profile's rule
/// are primary secrets; and the oracle's own simplex finds every primary cell protected (of the
/// tables small enough for it: see below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_demo_table_is_exact_and_withstands_the_oracle() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Date32Type, Float64Type};
    use passerelle::engine::tables::build;
    use passerelle::policy::tables::Derivation;
    use passerelle::policy::{PolicySet, PolicyTexts};

    let hub = crate::support::hub();
    let texts = PolicyTexts::read(&hub.layout().policies()).unwrap();
    let set = PolicySet::from_texts(&hub.layout().policies(), texts).unwrap();
    assert_eq!(set.tables.list.len(), 4, "the demo's tables");
    // Each table as the oracle reads it, for the joint attack on linked tables: its spec, its
    // level columns, its cells by their labels (true values) and which are hidden.
    struct Read<'s> {
        spec: &'s passerelle::policy::tables::TableSpec,
        /// Its level columns' names, and each cell's coordinates by its labels.
        names: Vec<String>,
        coords: HashMap<Vec<String>, Vec<usize>>,
        sizes: Vec<usize>,
        children: Vec<Vec<Vec<usize>>>,
        cells: BTreeMap<Vec<usize>, Vec<f64>>,
        hidden: HashSet<Vec<usize>>,
        primaries: Vec<(Vec<usize>, bool)>,
    }
    let mut read: Vec<Read<'_>> = Vec::new();
    let mut built: Vec<(
        &passerelle::policy::tables::TableSpec,
        passerelle::engine::tables::PublishedTable,
    )> = Vec::new();
    for spec in &set.tables.list {
        let source = hub
            .root
            .join("data")
            .join(&set.catalog.dataset(&spec.source).unwrap().path);
        // Built as the hub builds it: beside the tables of its source built before.
        let beside = built
            .iter()
            .filter(|(other, _)| other.source == spec.source)
            .map(|(other, t)| {
                let truth = passerelle::engine::tables::store::Truth {
                    spec: (*other).clone(),
                    source_stamp: String::new(),
                    dims: t.cube.dims().to_vec(),
                    measures: t.cube.measures().to_vec(),
                    cells: (0..t.cube.len()).map(|c| t.cube.cell(c).clone()).collect(),
                    hidden: t.protection.hidden(),
                    primaries: t
                        .protection
                        .secrets
                        .iter()
                        .map(|s| match s {
                            Some(Secret::Primary(r)) => Some(*r),
                            _ => None,
                        })
                        .collect(),
                };
                (truth, t.cube.clone())
            })
            .collect();
        let table = build(spec, &source, beside).await.unwrap();
        // One key column per level of each dimension, coarsest first.
        let levels: Vec<(usize, &passerelle::policy::tables::TableDimension)> = spec
            .dimensions
            .iter()
            .enumerate()
            .flat_map(|(j, d)| d.levels().map(move |l| (j, l)))
            .collect();
        let n = levels.len();

        // The microdata, cell by cell: rows, units, each sum, each unit's share of each sum.
        #[derive(Default)]
        struct Truth {
            rows: f64,
            units: HashSet<String>,
            sums: Vec<f64>,
            by_unit: Vec<HashMap<String, f64>>,
        }
        let sums: Vec<usize> = (0..spec.measures.len())
            .filter(|&m| spec.measures[m].kind == MeasureKind::Sum)
            .collect();
        let mut truth: HashMap<Vec<String>, Truth> = HashMap::new();
        let file = std::fs::File::open(&source).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let text_of = |batch: &arrow::record_batch::RecordBatch, column: &str| {
            arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Utf8).unwrap()
        };
        for batch in reader {
            let batch = batch.unwrap();
            let texts: Vec<_> = levels
                .iter()
                .map(|(_, d)| text_of(&batch, &d.column))
                .collect();
            let dates = |column: &str| {
                arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Date32)
                    .unwrap()
            };
            let ages: Vec<Option<(_, _)>> = levels
                .iter()
                .map(|(_, d)| match &d.derivation {
                    Derivation::AgeBands { at, .. } => Some((dates(&d.column), dates(at))),
                    _ => None,
                })
                .collect();
            let unit = text_of(&batch, &spec.unit);
            let amounts: Vec<_> = sums
                .iter()
                .map(|&m| {
                    let column = spec.measures[m].column.as_deref().unwrap();
                    arrow::compute::cast(batch.column_by_name(column).unwrap(), &DataType::Float64)
                        .unwrap()
                })
                .collect();
            'rows: for row in 0..batch.num_rows() {
                let mut labels = Vec::with_capacity(n);
                for (j, (_, d)) in levels.iter().enumerate() {
                    let text = texts[j].as_string::<i32>();
                    let text = (!text.is_null(row)).then(|| text.value(row).to_string());
                    let date = |a: &arrow::array::ArrayRef| {
                        let a = a.as_primitive::<Date32Type>();
                        (!a.is_null(row))
                            .then(|| {
                                chrono::NaiveDate::from_num_days_from_ce_opt(a.value(row) + 719_163)
                            })
                            .flatten()
                    };
                    let (birth, at) = match &ages[j] {
                        Some((b, a)) => (date(b), date(a)),
                        None => (None, None),
                    };
                    match oracle_label(&d.derivation, text, at, birth) {
                        Some(label) => labels.push(label),
                        None => continue 'rows,
                    }
                }
                let unit = unit.as_string::<i32>().value(row).to_string();
                // The row counts in its cell and in every margin above it (a level is
                // grouped only with the coarser levels of its dimension).
                for set_mask in 0..(1u32 << n) {
                    let nested = (1..n).all(|k| {
                        set_mask & (1 << k) == 0
                            || levels[k - 1].0 != levels[k].0
                            || set_mask & (1 << (k - 1)) != 0
                    });
                    if !nested {
                        continue;
                    }
                    let key: Vec<String> = (0..n)
                        .map(|j| {
                            if set_mask & (1 << j) != 0 {
                                labels[j].clone()
                            } else {
                                "Ensemble".to_string()
                            }
                        })
                        .collect();
                    let t = truth.entry(key).or_insert_with(|| Truth {
                        sums: vec![0.0; sums.len()],
                        by_unit: vec![HashMap::new(); sums.len()],
                        ..Truth::default()
                    });
                    t.rows += 1.0;
                    t.units.insert(unit.clone());
                    for (s, a) in amounts.iter().enumerate() {
                        let a = a.as_primitive::<Float64Type>();
                        let v = if a.is_null(row) { 0.0 } else { a.value(row) };
                        if spec.measures[sums[s]].per_unit {
                            // One value per unit (a household's tax on each member's row).
                            let previous = t.by_unit[s].insert(unit.clone(), v);
                            assert!(
                                previous.is_none_or(|p| p == v),
                                "{}: a unit with two values of a per-unit sum",
                                spec.id
                            );
                            if previous.is_none() {
                                t.sums[s] += v;
                            }
                        } else {
                            t.sums[s] += v;
                            *t.by_unit[s].entry(unit.clone()).or_default() += v;
                        }
                    }
                }
            }
        }

        // The published table, cell by cell, against the truth.
        let batch = &table.batch;
        let label = |name: &str, row: usize| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(row)
                .to_string()
        };
        let value = |name: &str, row: usize| -> Option<f64> {
            let c = arrow::compute::cast(batch.column_by_name(name).unwrap(), &DataType::Float64)
                .unwrap();
            let c = c.as_primitive::<Float64Type>();
            (!c.is_null(row)).then(|| c.value(row))
        };
        // Each dimension's values: the paths of its levels' labels (a value of a coarser level
        // ends in `Ensemble`), the margin all `Ensemble`.
        let dims = spec.dimensions.len();
        let path_of = |key: &[String], j: usize| -> Vec<String> {
            (0..n)
                .filter(|&k| levels[k].0 == j)
                .map(|k| key[k].clone())
                .collect()
        };
        let mut values: Vec<Vec<Vec<String>>> = vec![Vec::new(); dims];
        let mut rows_of: Vec<(Vec<String>, usize)> = Vec::new();
        for row in 0..batch.num_rows() {
            let key: Vec<String> = levels.iter().map(|(_, d)| label(&d.name, row)).collect();
            for (j, v) in values.iter_mut().enumerate() {
                let path = path_of(&key, j);
                if path[0] != "Ensemble" && !v.contains(&path) {
                    v.push(path);
                }
            }
            rows_of.push((key, row));
        }
        for key in truth.keys() {
            assert!(
                rows_of.iter().any(|(k, _)| k == key),
                "{}: cell {key:?} missing",
                spec.id
            );
        }
        let sizes: Vec<usize> = values.iter().map(Vec::len).collect();
        // A value's parent: its path with its finest label set to `Ensemble`.
        let children: Vec<Vec<Vec<usize>>> = values
            .iter()
            .map(|v| {
                let mut c = vec![Vec::new(); v.len() + 1];
                for (i, path) in v.iter().enumerate() {
                    let depth = path.iter().take_while(|l| *l != "Ensemble").count();
                    let mut parent = path.clone();
                    parent[depth - 1] = "Ensemble".into();
                    let at = v.iter().position(|p| *p == parent).unwrap_or(v.len());
                    c[at].push(i);
                }
                c
            })
            .collect();
        let mut cells: BTreeMap<Vec<usize>, Vec<f64>> = BTreeMap::new();
        let mut hidden: HashSet<Vec<usize>> = HashSet::new();
        let mut primaries: Vec<(Vec<usize>, bool)> = Vec::new();
        let mut published = 0;
        let mut coords_of: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
        for (key, row) in &rows_of {
            let coords: Vec<usize> = (0..dims)
                .map(|j| {
                    let path = path_of(key, j);
                    values[j]
                        .iter()
                        .position(|v| *v == path)
                        .unwrap_or(sizes[j])
                })
                .collect();
            let t = truth.get(key);
            let units = t.map_or(0, |t| t.units.len()) as u64;
            let expected: Vec<f64> = spec
                .measures
                .iter()
                .map(|m| match m.kind {
                    MeasureKind::Rows => t.map_or(0.0, |t| t.rows),
                    MeasureKind::Units => units as f64,
                    MeasureKind::Sum => {
                        let s = sums
                            .iter()
                            .position(|&i| spec.measures[i].name == m.name)
                            .unwrap();
                        t.map_or(0.0, |t| t.sums[s])
                    }
                })
                .collect();
            let small = units > 0 && units < spec.profile.min_units;
            let dominated = spec.profile.dominance.is_some_and(|d| {
                t.is_some_and(|t| {
                    (0..sums.len()).any(|s| {
                        let largest = t.by_unit[s].values().copied().fold(0.0, f64::max);
                        t.sums[s] > 0.0 && largest > d * t.sums[s]
                    })
                })
            });
            let flag = label(&format!("{}_secret", spec.measures[0].name), *row);
            let flag = (!batch
                .column_by_name(&format!("{}_secret", spec.measures[0].name))
                .unwrap()
                .is_null(*row))
            .then_some(flag);
            assert_eq!(
                flag.as_deref() == Some("primary"),
                small || dominated,
                "{}: {key:?} ({units} units, dominated {dominated}) flagged {flag:?}",
                spec.id
            );
            for (m, measure) in spec.measures.iter().enumerate() {
                match value(&measure.name, *row) {
                    Some(v) => {
                        published += 1;
                        let e = expected[m];
                        assert!(
                            (v - e).abs() <= 1e-6 * e.abs().max(1.0),
                            "{}: {key:?} {} published {v}, microdata {e}",
                            spec.id,
                            measure.name
                        );
                    }
                    None => assert!(flag.is_some(), "{}: {key:?} NULL without a flag", spec.id),
                }
            }
            if flag.is_some() {
                hidden.insert(coords.clone());
            }
            if small || dominated {
                primaries.push((coords.clone(), small));
            }
            coords_of.insert(key.clone(), coords.clone());
            cells.insert(coords, expected);
        }
        read.push(Read {
            spec,
            names: levels.iter().map(|(_, d)| d.name.clone()).collect(),
            coords: coords_of,
            sizes: sizes.clone(),
            children: children.clone(),
            cells: cells.clone(),
            hidden: hidden.clone(),
            primaries: primaries.clone(),
        });
        built.push((spec, table.clone()));
        assert!(published > 0, "{}", spec.id);

        // The oracle's attack on every primary; on the stays table (about 2 000 hidden values,
        // each of its programs one to two seconds in the test build) on 12 primaries spread
        // over the table by default (about a minute), on every one with SECRECY_ORACLE=all.
        let kinds: Vec<MeasureKind> = spec.measures.iter().map(|m| m.kind).collect();
        let every = std::env::var("SECRECY_ORACLE").is_ok_and(|v| v == "all");
        let step = if every || hidden.len() * kinds.len() <= 1_000 {
            1
        } else {
            primaries.len().div_ceil(12)
        };
        let started = std::time::Instant::now();
        let mut attacked = 0;
        for (coords, small) in primaries.iter().step_by(step) {
            for (m, kind) in kinds.iter().enumerate() {
                let v = cells[coords][m];
                let needed = if kind.is_count() { *small } else { v > 0.0 };
                if !needed {
                    continue;
                }
                let alone = [OracleTable {
                    kinds: &kinds,
                    sizes: &sizes,
                    children: children.clone(),
                    cells: &cells,
                    hidden: &hidden,
                }];
                assert_oracle_protects(
                    &alone,
                    &[],
                    (0, coords, m),
                    *kind,
                    v,
                    &spec.profile,
                    &spec.id,
                );
                attacked += 1;
            }
        }
        eprintln!(
            "secrecy: {}: {} cells, {} hidden, {} primary; {attacked} intervals attacked by the oracle in {:?}",
            spec.id,
            rows_of.len(),
            hidden.len(),
            primaries.len(),
            started.elapsed()
        );
    }

    // Linked tables read together (the two tables of establishments share the sections'
    // margins and the grand total): the oracle ties their shared cells (same labels on the
    // level columns both have, `Ensemble` on the others) and attacks every primary of both.
    let mut joint = 0;
    for (a, b) in (0..read.len()).flat_map(|a| (a + 1..read.len()).map(move |b| (a, b))) {
        let (x, y) = (&read[a], &read[b]);
        if x.spec.source != y.spec.source {
            continue;
        }
        let kinds_of =
            |r: &Read<'_>| -> Vec<MeasureKind> { r.spec.measures.iter().map(|m| m.kind).collect() };
        let (kx, ky) = (kinds_of(x), kinds_of(y));
        let mut ties: Vec<OracleTie> = Vec::new();
        for (key, cx) in &x.coords {
            let mut other = vec!["Ensemble".to_string(); y.names.len()];
            let shared = x.names.iter().zip(key).all(|(name, label)| {
                match y.names.iter().position(|n| n == name) {
                    Some(k) => {
                        other[k] = label.clone();
                        true
                    }
                    None => label == "Ensemble",
                }
            });
            let Some(cy) = shared.then(|| y.coords.get(&other)).flatten() else {
                continue;
            };
            for (m, measure) in x.spec.measures.iter().enumerate() {
                let Some(o) = y.spec.measures.iter().position(|n| n.name == measure.name) else {
                    continue;
                };
                let (vx, vy) = (x.cells[cx][m], y.cells[cy][o]);
                let (p, q) = ((0, cx.clone(), m), (1, cy.clone(), o));
                ties.push(if (vx - vy).abs() < 1e-6 * vx.abs().max(1.0) {
                    (p, q, Sense::Eq)
                } else if vx < vy {
                    (p, q, Sense::Le)
                } else {
                    (q, p, Sense::Le)
                });
            }
        }
        assert!(
            !ties.is_empty(),
            "{} and {} share cells",
            x.spec.id,
            y.spec.id
        );
        let tables = [
            OracleTable {
                kinds: &kx,
                sizes: &x.sizes,
                children: x.children.clone(),
                cells: &x.cells,
                hidden: &x.hidden,
            },
            OracleTable {
                kinds: &ky,
                sizes: &y.sizes,
                children: y.children.clone(),
                cells: &y.cells,
                hidden: &y.hidden,
            },
        ];
        for (t, r, kinds) in [(0, x, &kx), (1, y, &ky)] {
            for (coords, small) in &r.primaries {
                for (m, kind) in kinds.iter().enumerate() {
                    let v = r.cells[coords][m];
                    if !(if kind.is_count() { *small } else { v > 0.0 }) {
                        continue;
                    }
                    assert_oracle_protects(
                        &tables,
                        &ties,
                        (t, coords, m),
                        *kind,
                        v,
                        &r.spec.profile,
                        &format!("{} read with its linked table", r.spec.id),
                    );
                    joint += 1;
                }
            }
        }
        eprintln!(
            "secrecy: {} read with {}: {} ties, every primary of both protected",
            x.spec.id,
            y.spec.id,
            ties.len()
        );
    }
    assert!(joint > 0, "the linked tables were attacked together");
}

/// Linked tables (the same source): a table is protected and audited together with every
/// published table of its source; a cell they share (margins over their common dimensions, the
/// grand total) is hidden in both or published in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_tables_are_protected_together() {
    use passerelle::engine::tables::{PublishedTables, TableStatus};
    use passerelle::policy::{PolicySet, PolicyTexts};

    let (dir, data, _) = data_folder_with("sante/sejours.parquet");
    let mut texts = PolicyTexts::read(&crate::support::hub().layout().policies()).unwrap();
    // Without the demo's tables (and their rules): these four only.
    texts.rules = texts
        .rules
        .lines()
        .filter(|l| !l.contains("stats."))
        .collect::<Vec<_>>()
        .join("\n");
    // Four tables of the stays: by sex and letter, by sex and age band (sharing the sex
    // margins and the grand total, all large and published), by letter alone (sharing the
    // letters' margins with the first, where small letters are hidden), and by category.
    texts.tables = r#"
[[tables]]
id = "stats.a"
title = "a"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [{ name = "sexe", column = "sexe" }, { name = "lettre", column = "diagnostic", prefix = 1 }]
measures = [{ name = "patients", kind = "units" }]

[[tables]]
id = "stats.b"
title = "b"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [{ name = "sexe", column = "sexe" }, { name = "age", column = "date_naissance", age_at = "date_entree", bands = [0, 40, 75] }]
measures = [{ name = "patients", kind = "units" }]

[[tables]]
id = "stats.c"
title = "c"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [{ name = "lettre", column = "diagnostic", prefix = 1 }]
measures = [{ name = "patients", kind = "units" }]

[[tables]]
id = "stats.d"
title = "d"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [{ name = "categorie", column = "diagnostic", prefix = 3 }]
measures = [{ name = "patients", kind = "units" }]
"#
    .into();
    let set = PolicySet::from_texts(&dir.path().join("policies"), texts).unwrap();
    let tables = PublishedTables::new(data);
    tables.refresh(&set).await;
    let state = |id: &str| tables.status(id).unwrap();
    assert!(
        matches!(state("stats.a"), TableStatus::Published { .. }),
        "{:?}",
        state("stats.a")
    );
    assert!(
        matches!(state("stats.b"), TableStatus::Published { .. }),
        "{:?}",
        state("stats.b")
    );
    // stats.c shares the letters' margins with stats.a, where small letters are hidden: it is
    // protected and audited together with stats.a and stats.b.
    match state("stats.c") {
        TableStatus::Published { summary } => {
            assert_eq!(summary.audited_with_linked, 2, "{summary:?}");
            assert!(summary.primary > 0, "{summary:?}");
        }
        other => panic!("{other:?}"),
    }
    for id in ["stats.a", "stats.b", "stats.c"] {
        assert!(tables.servable(&set, id), "{id}");
    }
    // stats.d breaks the diagnoses down by their first three characters, which nest in the
    // letters of stats.a and stats.c without being a level of theirs: the sums that tie them
    // are not in the joint audit, so it is refused (fail closed), saying why.
    match state("stats.d") {
        TableStatus::Refused { reason } => assert!(
            reason.contains("both break down column `diagnostic`") && reason.contains("within"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(!tables.servable(&set, "stats.d"));
    // Each shared cell (a letter's margin over every sex in stats.a, that letter in stats.c)
    // is hidden in both or published in both with one value: no neighbour gives back what
    // the other hides.
    let read = |id: &str| {
        let spec = set.tables.get(id).unwrap();
        passerelle::engine::tables::store::read_batch(tables.dir(), spec).unwrap()
    };
    let (a, c) = (read("stats.a"), read("stats.c"));
    let cells = |batch: &arrow::record_batch::RecordBatch, sexe: bool| {
        use arrow::array::{Array, AsArray};
        let letters = batch
            .column_by_name("lettre")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let values = arrow::compute::cast(
            batch.column_by_name("patients").unwrap(),
            &arrow::datatypes::DataType::Float64,
        )
        .unwrap();
        let values = values
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone();
        let sexes = sexe.then(|| {
            batch
                .column_by_name("sexe")
                .unwrap()
                .as_string::<i32>()
                .clone()
        });
        let mut out = HashMap::new();
        for row in 0..batch.num_rows() {
            if sexes.as_ref().is_some_and(|s| s.value(row) != "Ensemble") {
                continue;
            }
            let value = (!values.is_null(row)).then(|| values.value(row));
            out.insert(letters.value(row).to_string(), value);
        }
        out
    };
    let (in_a, in_c) = (cells(&a, true), cells(&c, false));
    assert_eq!(in_c.len(), in_a.len());
    let mut hidden = 0;
    for (letter, value) in &in_c {
        assert_eq!(in_a.get(letter), Some(value), "letter {letter}");
        hidden += usize::from(value.is_none());
    }
    assert!(hidden > 0, "small letters are hidden in both");
}
