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
//! The attacker may read other tables beside the one audited ([`Neighbour`]): the version of
//! the same table that readers saw before (differencing across data versions), and the tables
//! published from the same source (linked tables). Each comes with the [`Tie`]s that hold
//! between its cells and the audited table's (a shared cell is equal in both; a cell of the new
//! version is equal to, at least or at most its old value), and the audit then covers every
//! primary cell of every table read together.
//!
//! Owns: the linear program (with `good_lp` and its pure-Rust `microlp` solver, and on large
//! groups `clarabel`'s interior-point method as a hint of which values to free), the protection
//! test of each primary cell. Must never: pass a table whose program could not be solved (a
//! solver failure is a failed audit), or count a cell protected on a point no exact program
//! gave.

use std::collections::{HashMap, HashSet};

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
    /// 0: the audited table; `k`: its `k`-th neighbour.
    pub table: usize,
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

/// How a value of the audited table relates to a value of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tie {
    /// The same cell of the same data (linked tables), or a cell unchanged between versions.
    Equal,
    /// The new version's value is at least the old one (the cell grew).
    AtLeast,
    /// The new version's value is at most the old one (the cell shrank).
    AtMost,
    /// The same cell with another value, in no direction an attacker knows: no relation (the
    /// audit's witnesses still move the two together).
    Changed,
}

impl Tie {
    /// The tie that holds between a new value and an old one.
    pub fn between(new: f64, old: f64) -> Tie {
        if super::cube::close(new, old) {
            Tie::Equal
        } else if new > old {
            Tie::AtLeast
        } else {
            Tie::AtMost
        }
    }
}

/// One value of the audited table tied to one value of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub cell: usize,
    pub measure: usize,
    pub other_cell: usize,
    pub other_measure: usize,
    pub tie: Tie,
}

/// A table an attacker reads beside the audited one: its cells (true values), what it hides
/// and why, its profile, and the ties between its values and the audited table's.
#[derive(Debug, Clone)]
pub struct Neighbour<'a> {
    pub cube: &'a Cube,
    pub hidden: Vec<bool>,
    pub primaries: Vec<Option<PrimaryReason>>,
    pub profile: Profile,
    pub links: Vec<Link>,
}

/// The attacker's knowledge of one table with `hidden` cells (and of its neighbours): a
/// variable per hidden cell and measure, the relations between them, split into independent
/// groups.
pub struct Attacker<'a> {
    /// The audited table first, then its neighbours.
    tables: Vec<&'a Cube>,
    /// Each table's measures' unit in the program: their grand totals (values of one order
    /// keep the simplex's tolerances meaningful, and a sum's rounding far below them).
    scale: Vec<Vec<f64>>,
    /// `(table, cell, measure)` → variable.
    variables: HashMap<(usize, usize, usize), usize>,
    /// Each variable's true value (scaled): a feasible point of every program.
    truth: Vec<f64>,
    relations: Vec<Relation>,
    /// Group of each variable, and the relations of each group.
    group: Vec<usize>,
    by_group: HashMap<usize, Vec<usize>>,
    /// The relations each variable appears in.
    by_variable: Vec<Vec<usize>>,
}

impl<'a> Attacker<'a> {
    /// What an attacker knows of `cube` once the cells marked in `hidden` are hidden.
    pub fn new(cube: &'a Cube, hidden: &[bool]) -> Attacker<'a> {
        Attacker::joint(cube, hidden, &[])
    }

    /// What an attacker knows of `cube` with `hidden` cells, read together with `neighbours`.
    pub fn joint(cube: &'a Cube, hidden: &[bool], neighbours: &[Neighbour<'a>]) -> Attacker<'a> {
        let tables: Vec<&'a Cube> = std::iter::once(cube)
            .chain(neighbours.iter().map(|n| n.cube))
            .collect();
        let hiddens: Vec<&[bool]> = std::iter::once(hidden)
            .chain(neighbours.iter().map(|n| n.hidden.as_slice()))
            .collect();
        let mut variables = HashMap::new();
        for (t, table) in tables.iter().enumerate() {
            for (cell, _) in hiddens[t].iter().enumerate().filter(|(_, h)| **h) {
                for m in 0..table.measures().len() {
                    let id = variables.len();
                    variables.insert((t, cell, m), id);
                }
            }
        }
        let scale: Vec<Vec<f64>> = tables
            .iter()
            .map(|table| {
                let grand =
                    table.index(&table.dims().iter().map(|d| d.total()).collect::<Vec<_>>());
                (0..table.measures().len())
                    .map(|m| table.value(grand, m).max(1.0))
                    .collect()
            })
            .collect();
        // `coefficient × value` in the program, the value in units of `per` (a published value
        // is a constant).
        let term =
            |t: usize, cell: usize, m: usize, coefficient: f64, per: f64, r: &mut Relation| {
                match variables.get(&(t, cell, m)) {
                    Some(&id) => r.terms.push((id, coefficient * scale[t][m] / per)),
                    None => r.constant += coefficient * tables[t].value(cell, m) / per,
                }
            };
        let mut relations = Vec::new();
        for (t, table) in tables.iter().enumerate() {
            let hidden = hiddens[t];
            for (m, &per) in scale[t].iter().enumerate() {
                for dim in 0..table.dims().len() {
                    let additive = table.additive(m, dim);
                    for line in table.lines(dim) {
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
                        term(t, line.total, m, 1.0, per, &mut sum);
                        for &part in &line.parts {
                            term(t, part, m, -1.0, per, &mut sum);
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
                                    term(t, part, m, 1.0, per, &mut le);
                                    term(t, line.total, m, -1.0, per, &mut le);
                                    relations.push(le);
                                }
                            }
                        }
                    }
                }
            }
            // In each hidden cell, no more distinct units than rows.
            let kinds: Vec<MeasureKind> = table.measures().iter().map(|m| m.kind).collect();
            if let (Some(u), Some(r)) = (
                kinds.iter().position(|k| *k == MeasureKind::Units),
                kinds.iter().position(|k| *k == MeasureKind::Rows),
            ) {
                let per = scale[t][u].max(scale[t][r]);
                for (cell, _) in hidden.iter().enumerate().filter(|(_, h)| **h) {
                    let mut le = Relation {
                        terms: Vec::new(),
                        constant: 0.0,
                        equal: false,
                    };
                    term(t, cell, u, 1.0, per, &mut le);
                    term(t, cell, r, -1.0, per, &mut le);
                    relations.push(le);
                }
            }
        }
        // The ties between the audited table and each neighbour.
        for (k, neighbour) in neighbours.iter().enumerate() {
            let t = k + 1;
            for link in neighbour.links.iter().filter(|l| l.tie != Tie::Changed) {
                let per = scale[0][link.measure].max(scale[t][link.other_measure]);
                // new − old, = 0 or ≤ 0; old − new ≤ 0.
                let sign = if link.tie == Tie::AtLeast { -1.0 } else { 1.0 };
                let mut r = Relation {
                    terms: Vec::new(),
                    constant: 0.0,
                    equal: link.tie == Tie::Equal,
                };
                term(0, link.cell, link.measure, sign, per, &mut r);
                term(t, link.other_cell, link.other_measure, -sign, per, &mut r);
                relations.push(r);
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
        let mut truth = vec![0.0; variables.len()];
        for (&(t, cell, m), &v) in &variables {
            truth[v] = tables[t].value(cell, m) / scale[t][m];
        }
        let mut by_variable = vec![Vec::new(); variables.len()];
        for (i, r) in relations.iter().enumerate() {
            for &(v, _) in &r.terms {
                if by_variable[v].last() != Some(&i) {
                    by_variable[v].push(i);
                }
            }
        }
        Attacker {
            tables,
            scale,
            variables,
            truth,
            relations,
            group,
            by_group,
            by_variable,
        }
    }

    /// How far the hidden values can move together along `direction` (`(table, cell,
    /// measure, change per unit of t)`, in the measure's own unit) from the truth while every
    /// relation holds: the interval of `t`, which contains 0 (unbounded ends are infinite).
    /// Exact, and cheap: one pass over the relations the direction touches. A direction through
    /// a published cell cannot move.
    pub fn segment(&self, direction: &[(usize, usize, usize, f64)]) -> (f64, f64) {
        const EPS: f64 = 1e-12;
        let mut d: HashMap<usize, f64> = HashMap::new();
        for &(t, cell, m, change) in direction {
            match self.variable(t, cell, m) {
                Some(v) => *d.entry(v).or_default() += change / self.scale[t][m],
                None if change != 0.0 => return (0.0, 0.0),
                None => {}
            }
        }
        let (mut low, mut high) = (f64::NEG_INFINITY, f64::INFINITY);
        let mut bound = |slope: f64, room: f64| {
            // slope × t ≤ room, with room ≥ 0.
            if slope > EPS {
                high = high.min(room / slope);
            } else if slope < -EPS {
                low = low.max(room / slope);
            }
        };
        let mut seen = HashSet::new();
        for (&v, &dv) in &d {
            // Non-negative: −dv × t ≤ truth.
            bound(-dv, self.truth[v].max(0.0));
            for &r in &self.by_variable[v] {
                if !seen.insert(r) {
                    continue;
                }
                let relation = &self.relations[r];
                let mut at_truth = relation.constant;
                let mut slope = 0.0;
                for &(w, coefficient) in &relation.terms {
                    at_truth += coefficient * self.truth[w];
                    slope += coefficient * d.get(&w).copied().unwrap_or(0.0);
                }
                if relation.equal {
                    if slope.abs() > EPS {
                        return (0.0, 0.0);
                    }
                } else {
                    bound(slope, (-at_truth).max(0.0));
                }
            }
        }
        (low.min(0.0), high.max(0.0))
    }

    /// The interval the attacker narrows measure `m` of hidden cell `cell` of the audited
    /// table to (a published cell: its value).
    pub fn interval(&self, cell: usize, m: usize) -> Result<Interval, AuditError> {
        self.interval_in(0, cell, m)
    }

    /// [`Attacker::interval`] in table `t` (0: the audited table, `k`: its `k`-th neighbour).
    pub fn interval_in(&self, t: usize, cell: usize, m: usize) -> Result<Interval, AuditError> {
        let Some(target) = self.variable(t, cell, m) else {
            let v = self.tables[t].value(cell, m);
            return Ok(Interval { low: v, high: v });
        };
        let low = self.optimum(&[(target, 1.0)], false)?.value;
        let high = self.optimum(&[(target, 1.0)], true)?.value;
        Ok(Interval {
            low: low.unwrap_or(0.0).max(0.0) * self.scale[t][m],
            high: high.unwrap_or(f64::INFINITY) * self.scale[t][m],
        })
    }

    /// The variable of measure `m` of hidden cell `cell` of table `t`.
    fn variable(&self, t: usize, cell: usize, m: usize) -> Option<usize> {
        self.variables.get(&(t, cell, m)).copied()
    }

    /// The smallest (or largest) value of `Σ weight × variable` over the variables' group (they
    /// must share one), and a point of the program that reaches it; no value when unbounded.
    fn optimum(&self, objective: &[(usize, f64)], maximise: bool) -> Result<Optimum, AuditError> {
        self.optimum_over(objective, maximise, None)
    }

    /// The values that move away from the truth at the sparsest optimum of `variable`
    /// (largest or smallest) over its whole group, largest moves first, `variable` first;
    /// `None` when the solver does not end. Found by clarabel (an interior-point method,
    /// sparse: about a second on 7 000 values where microlp's exact program takes minutes),
    /// with a small cost on every move so that the optimum takes the fewest values along
    /// (an interior point otherwise spreads a move over every way there is, and no few of
    /// them suffice). A hint only: its point is feasible within the solver's tolerances, so the
    /// audit never counts it as a witness; it solves microlp's exact program over these values
    /// instead.
    fn moving_at_optimum(&self, variable: usize, maximise: bool) -> Option<Vec<usize>> {
        use clarabel::algebra::CscMatrix;
        use clarabel::solver::{
            DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
        };
        /// Scaled values are at most about their grand total (1): a bound far above keeps the
        /// iterates finite (the exact program that follows has none).
        const UPPER: f64 = 8.0;
        /// A deviation from the truth below this (scaled) is no move.
        const MOVES: f64 = 1e-7;
        /// The cost of moving a value by one grand total: small beside the objective's 1, so a
        /// way through fewer than a thousand values is worth taking all the way.
        const PENALTY: f64 = 1e-3;
        let relations = self.by_group.get(&self.group[variable])?;
        let mut column: HashMap<usize, usize> = HashMap::new();
        let mut of_column: Vec<usize> = Vec::new();
        for &r in relations {
            for &(v, _) in &self.relations[r].terms {
                column.entry(v).or_insert_with(|| {
                    of_column.push(v);
                    of_column.len() - 1
                });
            }
        }
        let n = of_column.len();
        // In deviations from the truth (y = x − truth), equalities first (the zero cone).
        let (mut rows, mut cols, mut values, mut b) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut push_row = |terms: &[(usize, f64)], rhs: f64, b: &mut Vec<f64>| {
            for &(v, c) in terms {
                rows.push(b.len());
                cols.push(column[&v]);
                values.push(c);
            }
            b.push(rhs);
        };
        let mut equalities = 0;
        for &r in relations.iter().filter(|&&r| self.relations[r].equal) {
            push_row(&self.relations[r].terms, 0.0, &mut b);
            equalities += 1;
        }
        for &r in relations.iter().filter(|&&r| !self.relations[r].equal) {
            let relation = &self.relations[r];
            let at_truth: f64 = relation.constant
                + relation
                    .terms
                    .iter()
                    .map(|&(v, c)| c * self.truth[v])
                    .sum::<f64>();
            push_row(&relation.terms, (-at_truth).max(0.0), &mut b);
        }
        for &v in &of_column {
            push_row(&[(v, -1.0)], self.truth[v], &mut b);
            push_row(&[(v, 1.0)], UPPER, &mut b);
        }
        // |y| ≤ s, s in columns n..2n, each at a small cost: the optimum moves as few values
        // as it can (one interior point otherwise spreads the move over every way there is).
        for c in 0..n {
            for sign in [1.0, -1.0] {
                rows.push(b.len());
                cols.push(c);
                values.push(sign);
                rows.push(b.len());
                cols.push(n + c);
                values.push(-1.0);
                b.push(0.0);
            }
        }
        let a = CscMatrix::new_from_triplets(b.len(), 2 * n, rows, cols, values);
        let p = CscMatrix::<f64>::zeros((2 * n, 2 * n));
        let mut q = vec![PENALTY; 2 * n];
        q[..n].fill(0.0);
        q[column[&variable]] = if maximise { -1.0 } else { 1.0 };
        let cones = [
            SupportedConeT::ZeroConeT(equalities),
            SupportedConeT::NonnegativeConeT(b.len() - equalities),
        ];
        let settings = DefaultSettingsBuilder::default()
            .verbose(false)
            .max_iter(200)
            .build()
            .ok()?;
        let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings).ok()?;
        solver.solve();
        if !matches!(
            solver.solution.status,
            SolverStatus::Solved | SolverStatus::AlmostSolved
        ) {
            return None;
        }
        let mut moving: Vec<(usize, f64)> = solver
            .solution
            .x
            .iter()
            .take(n)
            .enumerate()
            .filter(|(_, y)| y.abs() > MOVES)
            .map(|(c, y)| (of_column[c], y.abs()))
            .collect();
        moving.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut order = vec![variable];
        order.extend(
            moving
                .into_iter()
                .map(|(v, _)| v)
                .filter(|&v| v != variable),
        );
        Some(order)
    }

    /// The variables within `hops` relations of `from`, at most `cap` of them.
    fn around(&self, from: usize, hops: usize, cap: usize) -> HashSet<usize> {
        let mut near = HashSet::from([from]);
        let mut frontier = vec![from];
        for _ in 0..hops {
            let mut next = Vec::new();
            for v in frontier {
                for &r in &self.by_variable[v] {
                    for &(w, _) in &self.relations[r].terms {
                        if near.len() >= cap {
                            return near;
                        }
                        if near.insert(w) {
                            next.push(w);
                        }
                    }
                }
            }
            frontier = next;
        }
        near
    }

    /// [`Attacker::optimum`] with only the variables in `only` free, every other one held at
    /// its true value (`None`: all free). Held values keep every relation satisfiable, so each
    /// point found is one the attacker cannot exclude: a local program gives an interval inside
    /// the true one, enough to find a cell protected, never to find it exposed.
    fn optimum_over(
        &self,
        objective: &[(usize, f64)],
        maximise: bool,
        only: Option<&HashSet<usize>>,
    ) -> Result<Optimum, AuditError> {
        let Some(&(first, _)) = objective.first() else {
            return Ok(Optimum::default());
        };
        let group = self.group[first];
        let all = self.by_group.get(&group).map(Vec::as_slice).unwrap_or(&[]);
        let local: Vec<usize>;
        let relations = match only {
            None => all,
            Some(only) => {
                local = all
                    .iter()
                    .copied()
                    .filter(|&r| {
                        self.relations[r]
                            .terms
                            .iter()
                            .any(|(v, _)| only.contains(v))
                    })
                    .collect();
                local.as_slice()
            }
        };
        let free = |v: &usize| only.is_none_or(|o| o.contains(v));
        if relations.is_empty() {
            // No relation bounds it: anything non-negative.
            return Ok(Optimum {
                value: (!maximise).then_some(0.0),
                point: Vec::new(),
            });
        }
        // The program is solved in deviations from the truth (x = truth + y, y free): every
        // relation holds at y = 0, so the simplex starts from a feasible point instead of
        // searching for one (that search was most of the time on tables of thousands of cells).
        let mut problem = ProblemVariables::new();
        let mut lp_vars = HashMap::new();
        for &r in relations {
            for &(v, _) in self.relations[r].terms.iter().filter(|(v, _)| free(v)) {
                lp_vars.entry(v).or_insert_with(|| problem.add(variable()));
            }
        }
        let mut goal = Expression::from(0.0);
        for &(v, weight) in objective {
            goal.add_mul(weight, lp_vars[&v]);
        }
        let unsolved = if maximise {
            problem.maximise(goal.clone())
        } else {
            problem.minimise(goal.clone())
        };
        let mut model = unsolved.using(microlp);
        for &r in relations {
            let relation = &self.relations[r];
            let mut constant = relation.constant;
            let mut expression = Expression::from(0.0);
            for &(v, coefficient) in &relation.terms {
                // A held variable stays at its true value: no deviation.
                if let Some(&lp) = lp_vars.get(&v) {
                    expression.add_mul(coefficient, lp);
                }
                constant += coefficient * self.truth[v];
            }
            // At the truth an equality's constant is 0 and an inequality's at most 0, up to
            // rounding: never let rounding make y = 0 infeasible.
            let constant = if relation.equal {
                0.0
            } else {
                constant.min(0.0)
            };
            model.add_constraint(if relation.equal {
                expression.eq(0.0)
            } else {
                (expression + constant).leq(0.0)
            });
        }
        // Non-negative values: y ≥ −truth.
        for (&v, &lp) in &lp_vars {
            model.add_constraint(Expression::from(lp).geq(-self.truth[v]));
        }
        let base: f64 = objective.iter().map(|&(v, w)| w * self.truth[v]).sum();
        match model.solve() {
            Ok(solution) => Ok(Optimum {
                value: Some(base + solution.eval(&goal)),
                point: lp_vars
                    .iter()
                    .map(|(&v, &lp)| (v, self.truth[v] + solution.value(lp)))
                    .collect(),
            }),
            Err(ResolutionError::Unbounded) => Ok(Optimum::default()),
            Err(e) => Err(AuditError(e.to_string())),
        }
    }
}

/// What one linear program gave: the optimum (none: unbounded), and the feasible point that
/// reaches it (every variable of the group).
#[derive(Default)]
struct Optimum {
    value: Option<f64>,
    point: Vec<(usize, f64)>,
}

/// The values an attacker cannot exclude, as far as the programs solved so far show: every
/// feasible point found widens each variable's range. A cell whose witnessed range already
/// protects it needs no program of its own (its true interval can only be wider).
struct Witnesses {
    low: Vec<f64>,
    high: Vec<f64>,
    /// Variables found unbounded above.
    unbounded: Vec<bool>,
}

impl Witnesses {
    /// What one program maximising (or minimising) `variable` found: its point, and the bound
    /// it reached (none when maximised: unbounded above).
    fn record(&mut self, variable: usize, maximise: bool, optimum: &Optimum) {
        self.see(&optimum.point);
        match (maximise, optimum.value) {
            (true, None) => self.unbounded[variable] = true,
            (true, Some(high)) => self.high[variable] = self.high[variable].max(high),
            (false, Some(low)) => self.low[variable] = self.low[variable].min(low),
            (false, None) => {}
        }
    }

    fn see(&mut self, point: &[(usize, f64)]) {
        for &(v, x) in point {
            self.low[v] = self.low[v].min(x);
            self.high[v] = self.high[v].max(x);
        }
    }

    /// The witnessed range of `variable`, in the measure's own unit.
    fn interval(&self, variable: usize, scale: f64) -> Interval {
        Interval {
            low: self.low[variable].max(0.0) * scale,
            high: if self.unbounded[variable] {
                f64::INFINITY
            } else {
                self.high[variable] * scale
            },
        }
    }
}

/// Unsettled targets in a group above which the bulk programs (largest and smallest sum) are
/// worth solving before each target's own.
const BULK_FROM: usize = 8;

/// Variables of a group above which its bulk programs are not solved.
const BULK_MAX_VARIABLES: usize = 3_000;

/// Variables of a group above which a target's whole program is not solved (its local ones
/// decide, on the safe side).
pub const WHOLE_MAX_VARIABLES: usize = 3_000;

/// The local programs tried before a target's whole one: (relations away, most variables).
const LOCAL_PROGRAMS: [(usize, usize); 2] = [(3, 300), (5, 800)];

/// The local programs over the values a target's sparsest optimum moves, tried next: the
/// largest moves first, at most this many values free.
const HINTED_PROGRAMS: [usize; 3] = [100, 300, 1_000];

/// A hidden primary value the audit must find protected.
struct Target<'p> {
    table: usize,
    cell: usize,
    measure: usize,
    kind: MeasureKind,
    variable: usize,
    value: f64,
    profile: &'p Profile,
}

/// The primary cells (of `primaries`) that `hidden` leaves unprotected under `profile`, with the
/// attacker's interval of each; empty when the table may be published.
pub fn audit(
    cube: &Cube,
    hidden: &[bool],
    primaries: &[Option<PrimaryReason>],
    profile: &Profile,
) -> Result<Vec<Finding>, AuditError> {
    let cells: Vec<usize> = (0..cube.len()).collect();
    audit_cells(cube, hidden, primaries, profile, &cells, &[])
}

/// A way the hidden cells may move together without changing anything published (the
/// corners of a hypercube and their signs): `(cell, ±1)`.
pub type Move = Vec<(usize, f64)>;

/// [`audit`] restricted to the primary cells among `cells` (hiding more cells only widens an
/// attacker's intervals, so a cell found protected stays protected when more are hidden).
pub fn audit_cells(
    cube: &Cube,
    hidden: &[bool],
    primaries: &[Option<PrimaryReason>],
    profile: &Profile,
    cells: &[usize],
    moves: &[Move],
) -> Result<Vec<Finding>, AuditError> {
    audit_joint(cube, hidden, primaries, profile, cells, moves, &[])
}

/// [`audit_cells`] with the attacker reading `neighbours` too: the primary cells among `cells`
/// of the audited table and every hidden primary cell of every neighbour must be protected
/// (a finding's `table` says whose it is).
///
/// The attacker's program is solved as few times as the answer allows. Every feasible point
/// found is a witness: values the attacker cannot exclude. The first witnesses come from
/// `moves` (the suppression's hypercubes, mirrored in each neighbour through the cells they
/// share: each is followed as far as every relation allows, an exact and cheap computation),
/// then, while many targets are unsettled, from the largest and smallest sum of the targets
/// of each group; a target whose witnessed range already protects it is done, and only the
/// others get their own programs: first local ones (the target and the hidden values within a
/// few relations of it free, every other one at its true value: each point is still one the
/// attacker cannot exclude), then the whole one, whose points serve the next targets. A target
/// found exposed is judged on its exact interval (both of its whole programs), except in a
/// group of more than [`WHOLE_MAX_VARIABLES`] values, where one whole program costs minutes:
/// there the local programs are followed by local programs over the values the target's
/// sparsest optimum moves ([`Attacker::moving_at_optimum`]), and a target none of them shows
/// protected counts as exposed, so that the suppression hides more (or the table is refused),
/// erring on the safe side only.
pub fn audit_joint(
    cube: &Cube,
    hidden: &[bool],
    primaries: &[Option<PrimaryReason>],
    profile: &Profile,
    cells: &[usize],
    moves: &[Move],
    neighbours: &[Neighbour<'_>],
) -> Result<Vec<Finding>, AuditError> {
    audit_tables(
        Means::HUB,
        cube,
        hidden,
        primaries,
        profile,
        cells,
        moves,
        neighbours,
        &[],
    )
}

/// The programs an audit may solve: the local ones around each target, and the size of group
/// above which no whole program is solved. The hub's are fixed ([`Means::HUB`]); tests narrow
/// them to judge one way of finding witnesses alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Means {
    local: &'static [(usize, usize)],
    whole_max: usize,
}

impl Means {
    pub(crate) const HUB: Means = Means {
        local: &LOCAL_PROGRAMS,
        whole_max: WHOLE_MAX_VARIABLES,
    };
}

/// [`audit_joint`] within `means`, with moves of the neighbours' own (`(table, corners)`, the
/// table counted from 1) as witnesses too.
#[allow(
    clippy::too_many_arguments,
    reason = "the audit's inputs: one table, its neighbours, the witnesses of each"
)]
pub(crate) fn audit_tables(
    means: Means,
    cube: &Cube,
    hidden: &[bool],
    primaries: &[Option<PrimaryReason>],
    profile: &Profile,
    cells: &[usize],
    moves: &[Move],
    neighbours: &[Neighbour<'_>],
    neighbour_moves: &[(usize, Move)],
) -> Result<Vec<Finding>, AuditError> {
    let attacker = Attacker::joint(cube, hidden, neighbours);
    let mut targets = Vec::new();
    attacker.targets(0, hidden, primaries, profile, cells, &mut targets)?;
    for (k, n) in neighbours.iter().enumerate() {
        let all: Vec<usize> = (0..n.cube.len()).collect();
        attacker.targets(
            k + 1,
            &n.hidden,
            &n.primaries,
            &n.profile,
            &all,
            &mut targets,
        )?;
    }
    // The true values are a feasible point.
    let mut seen = Witnesses {
        low: attacker.truth.clone(),
        high: attacker.truth.clone(),
        unbounded: vec![false; attacker.variables.len()],
    };
    // Witnesses along the moves: the counts together (rows and units move alike, so no cell
    // gets more units than rows), each sum alone. A move of one table is tried twice: with
    // every tied hidden value of the other tables moving alike (a move through cells that
    // changed between versions keeps each tie's slack), and with the equal ones only.
    let kinds_of = |table: &Cube| -> Vec<Vec<usize>> {
        let measures = table.measures();
        let mut kinds: Vec<Vec<usize>> = vec![
            (0..measures.len())
                .filter(|&m| measures[m].kind.is_count())
                .collect(),
        ];
        kinds.extend(
            (0..measures.len())
                .filter(|&m| !measures[m].kind.is_count())
                .map(|m| vec![m]),
        );
        kinds.retain(|ms| !ms.is_empty());
        kinds
    };
    // Each value's tied values in the other tables, both ways: `(table, cell, measure)` →
    // `(table, cell, measure, equal)`.
    type Mirrors = HashMap<(usize, usize, usize), Vec<(usize, usize, usize, bool)>>;
    let mut mirrors: Mirrors = HashMap::new();
    for (k, n) in neighbours.iter().enumerate() {
        for link in &n.links {
            let equal = link.tie == Tie::Equal;
            mirrors
                .entry((0, link.cell, link.measure))
                .or_default()
                .push((k + 1, link.other_cell, link.other_measure, equal));
            mirrors
                .entry((k + 1, link.other_cell, link.other_measure))
                .or_default()
                .push((0, link.cell, link.measure, equal));
        }
    }
    let tagged = moves
        .iter()
        .map(|m| (0, m))
        .chain(neighbour_moves.iter().map(|(t, m)| (*t, m)));
    for (table, corners) in tagged {
        for ms in kinds_of(attacker.tables[table]) {
            for every_tie in [true, false] {
                let mut direction: Vec<(usize, usize, usize, f64)> = Vec::new();
                for &(cell, sign) in corners {
                    for &m in &ms {
                        direction.push((table, cell, m, sign));
                        for &(t, other, om, equal) in
                            mirrors.get(&(table, cell, m)).into_iter().flatten()
                        {
                            if (equal || every_tie) && attacker.variable(t, other, om).is_some() {
                                direction.push((t, other, om, sign));
                            }
                        }
                    }
                }
                let (low, high) = attacker.segment(&direction);
                for t in [low, high] {
                    let mut point = Vec::with_capacity(direction.len());
                    for &(table, cell, m, sign) in &direction {
                        let Some(v) = attacker.variable(table, cell, m) else {
                            continue;
                        };
                        if t.is_infinite() {
                            if sign * t > 0.0 {
                                seen.unbounded[v] = true;
                            }
                        } else {
                            point
                                .push((v, attacker.truth[v] + t * sign / attacker.scale[table][m]));
                        }
                    }
                    seen.see(&point);
                }
                if neighbours.is_empty() {
                    break;
                }
            }
        }
    }
    let settled = |seen: &Witnesses, t: &Target| {
        protected(
            t.kind,
            t.value,
            seen.interval(t.variable, attacker.scale[t.table][t.measure]),
            t.profile,
        )
    };
    let mut by_group: HashMap<usize, Vec<(usize, f64)>> = HashMap::new();
    for t in targets.iter().filter(|t| !settled(&seen, t)) {
        by_group
            .entry(attacker.group[t.variable])
            .or_default()
            .push((t.variable, 1.0));
    }
    // (Not on the largest groups, where one whole program costs more than the local ones of
    // every target.)
    let mut group_size: HashMap<usize, usize> = HashMap::new();
    for &g in &attacker.group {
        *group_size.entry(g).or_default() += 1;
    }
    for (_, objective) in by_group
        .iter()
        .filter(|(g, o)| o.len() > BULK_FROM && group_size[*g] <= BULK_MAX_VARIABLES)
    {
        for maximise in [true, false] {
            seen.see(&attacker.optimum(objective, maximise)?.point);
        }
    }
    let mut findings = Vec::new();
    for t in &targets {
        if settled(&seen, t) {
            continue;
        }
        // Local programs first (cheap, and each point a witness), the whole one last.
        for &(hops, cap) in means.local {
            if settled(&seen, t) {
                break;
            }
            let near = attacker.around(t.variable, hops, cap);
            for maximise in [true, false] {
                let local = attacker.optimum_over(&[(t.variable, 1.0)], maximise, Some(&near))?;
                seen.record(t.variable, maximise, &local);
            }
        }
        if settled(&seen, t) {
            continue;
        }
        // On the largest groups, where no exact whole program is solved: local programs over
        // the values the target's sparsest optimum moves (its way through the whole group, as
        // an interior-point solver finds it in about a second where the exact program over
        // thousands of values takes minutes).
        let largest = group_size[&attacker.group[t.variable]] > means.whole_max;
        for maximise in [true, false] {
            if !largest || settled(&seen, t) || (!maximise && seen.low[t.variable] <= 0.0) {
                continue;
            }
            let Some(moving) = attacker.moving_at_optimum(t.variable, maximise) else {
                continue;
            };
            for cap in HINTED_PROGRAMS {
                let free: HashSet<usize> = moving.iter().take(cap).copied().collect();
                let local = attacker.optimum_over(&[(t.variable, 1.0)], maximise, Some(&free))?;
                seen.record(t.variable, maximise, &local);
                if settled(&seen, t) || free.len() == moving.len() {
                    break;
                }
            }
        }
        if settled(&seen, t) {
            continue;
        }
        // There the whole program costs minutes: a cell no local program shows protected
        // counts as exposed (more cells are hidden, or the table is refused), which errs on
        // the safe side only.
        if largest {
            findings.push(Finding {
                table: t.table,
                cell: t.cell,
                measure: t.measure,
                value: t.value,
                interval: seen.interval(t.variable, attacker.scale[t.table][t.measure]),
            });
            continue;
        }
        let up = attacker.optimum(&[(t.variable, 1.0)], true)?;
        seen.record(t.variable, true, &up);
        if settled(&seen, t) {
            continue;
        }
        let down = attacker.optimum(&[(t.variable, 1.0)], false)?;
        seen.record(t.variable, false, &down);
        let interval = seen.interval(t.variable, attacker.scale[t.table][t.measure]);
        if !protected(t.kind, t.value, interval, t.profile) {
            findings.push(Finding {
                table: t.table,
                cell: t.cell,
                measure: t.measure,
                value: t.value,
                interval,
            });
        }
    }
    Ok(findings)
}

impl Attacker<'_> {
    /// The hidden primary values of table `t` among `cells` the audit must find protected.
    fn targets<'p>(
        &self,
        t: usize,
        hidden: &[bool],
        primaries: &[Option<PrimaryReason>],
        profile: &'p Profile,
        cells: &[usize],
        targets: &mut Vec<Target<'p>>,
    ) -> Result<(), AuditError> {
        let table = self.tables[t];
        for &cell in cells {
            let Some(reason) = primaries[cell] else {
                continue;
            };
            if !hidden[cell] {
                return Err(AuditError(format!(
                    "primary cell {cell} of table {t} is published"
                )));
            }
            for (m, measure) in table.measures().iter().enumerate() {
                let value = table.value(cell, m);
                let needs = if measure.kind.is_count() {
                    reason != PrimaryReason::Dominance
                } else {
                    value > 0.0
                };
                if let (true, Some(variable)) = (needs, self.variable(t, cell, m)) {
                    targets.push(Target {
                        table: t,
                        cell,
                        measure: m,
                        kind: measure.kind,
                        variable,
                        value,
                        profile,
                    });
                }
            }
        }
        Ok(())
    }
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

    /// The hint of the large groups: the sparsest optimum of a cell moves its own rectangle
    /// only, not another one its group holds (whose values could move too, uselessly).
    #[test]
    fn the_sparsest_optimum_moves_only_the_way_it_takes() {
        let cube = counts(&[&[3, 20, 30, 40], &[40, 50, 60, 70], &[15, 25, 35, 45]]);
        let first = [[0, 0], [0, 1], [1, 0], [1, 1]];
        let second = [[1, 2], [1, 3], [2, 2], [2, 3]];
        let hidden = hide(&cube, &[first, second].concat());
        let attacker = Attacker::new(&cube, &hidden);
        let var = |c: &[usize; 2]| attacker.variable(0, cube.index(c), 0).unwrap();
        let target = var(&[0, 0]);
        assert_eq!(
            attacker.group[target],
            attacker.group[var(&[2, 3])],
            "one group"
        );
        let moving = attacker.moving_at_optimum(target, true).unwrap();
        assert_eq!(moving[0], target);
        let moving: HashSet<usize> = moving.into_iter().collect();
        let expected: HashSet<usize> = first.iter().map(var).collect();
        assert_eq!(moving, expected);
        // The exact program over those values alone reaches the whole program's optimum.
        let local = attacker
            .optimum_over(&[(target, 1.0)], true, Some(&moving))
            .unwrap();
        let whole = attacker.optimum(&[(target, 1.0)], true).unwrap();
        assert!((local.value.unwrap() - whole.value.unwrap()).abs() < 1e-9);
        assert!((whole.value.unwrap() * attacker.scale[0][0] - 23.0).abs() < 1e-6);
    }

    /// The hint path alone (no hypercube, no local program, no whole program: every target
    /// judged on the programs over the values its sparsest optimum moves) never finds a cell
    /// protected that the exact intervals expose, and on these tables finds what they find.
    #[test]
    fn the_hinted_programs_alone_agree_with_the_exact_intervals() {
        let profile = Profile::named("medical").unwrap();
        let hint_only = Means {
            local: &[],
            whole_max: 0,
        };
        let cube = counts(&[
            &[3, 20, 30, 40, 12],
            &[40, 50, 2, 70, 9],
            &[15, 25, 35, 45, 30],
            &[5, 60, 22, 18, 41],
        ]);
        let primary_cells = [[0, 0], [1, 2], [3, 0]];
        let primaries: Vec<_> = (0..cube.len())
            .map(|c| {
                primary_cells
                    .iter()
                    .any(|p| cube.index(p) == c)
                    .then_some(PrimaryReason::TooFewUnits)
            })
            .collect();
        let patterns: [&[[usize; 2]]; 4] = [
            // Rectangles through each primary: protected.
            &[
                [0, 0],
                [0, 1],
                [1, 0],
                [1, 1],
                [1, 2],
                [1, 3],
                [2, 2],
                [2, 3],
                [3, 0],
                [3, 1],
                [2, 0],
                [2, 1],
            ],
            // One rectangle shared by two primaries, the third hidden alone: it is exposed.
            &[[0, 0], [0, 2], [1, 0], [1, 2], [3, 0]],
            // A longer cycle only (through three rows).
            &[
                [0, 0],
                [0, 1],
                [1, 1],
                [1, 2],
                [2, 2],
                [2, 0],
                [3, 0],
                [3, 3],
                [2, 3],
            ],
            // Everything on the primaries' lines.
            &[
                [0, 0],
                [0, 1],
                [0, 2],
                [0, 3],
                [0, 4],
                [1, 0],
                [2, 0],
                [3, 0],
                [1, 2],
                [1, 1],
                [2, 2],
                [3, 2],
                [3, 1],
                [3, 3],
            ],
        ];
        let every: Vec<usize> = (0..cube.len()).collect();
        for pattern in patterns {
            let hidden = hide(&cube, pattern);
            let attacker = Attacker::new(&cube, &hidden);
            let exposed: Vec<usize> = primary_cells
                .iter()
                .map(|p| cube.index(p))
                .filter(|&c| {
                    let i = attacker.interval(c, 0).unwrap();
                    !protected(MeasureKind::Rows, cube.value(c, 0), i, &profile)
                })
                .collect();
            let hinted: Vec<usize> = audit_tables(
                hint_only,
                &cube,
                &hidden,
                &primaries,
                &profile,
                &every,
                &[],
                &[],
                &[],
            )
            .unwrap()
            .iter()
            .map(|f| f.cell)
            .collect();
            assert_eq!(hinted, exposed, "pattern {pattern:?}");
        }
    }

    #[test]
    fn a_move_goes_as_far_as_every_relation_allows() {
        let cube = counts(&[&[3, 20, 30], &[40, 50, 60]]);
        let hidden = hide(&cube, &[[0, 0], [0, 1], [1, 0], [1, 1]]);
        let attacker = Attacker::new(&cube, &hidden);
        let at = |c: [usize; 2], sign: f64| (0, cube.index(&c), 0, sign);
        // The rectangle: (0,0) and (1,1) up by t, (0,1) and (1,0) down: every margin holds;
        // (0,0) ≥ 0 and (0,1) ≥ 0 bound it.
        let rectangle = [
            at([0, 0], 1.0),
            at([0, 1], -1.0),
            at([1, 0], -1.0),
            at([1, 1], 1.0),
        ];
        assert_eq!(attacker.segment(&rectangle), (-3.0, 20.0));
        // Two corners only: the column margins change, so it cannot move at all.
        assert_eq!(
            attacker.segment(&[at([0, 0], 1.0), at([0, 1], -1.0)]),
            (0.0, 0.0)
        );
        // Through a published cell: no move.
        assert_eq!(attacker.segment(&[at([0, 2], 1.0)]), (0.0, 0.0));
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
