//! Protecting a table: primary secrets by the profile's rules, then secondary suppression so
//! that no primary cell can be recovered from the margins, then the attacker's audit, which has
//! the last word.
//!
//! Secondary suppression is the hypercube heuristic (Repsilber; Giessing's τ-ARGUS): for each
//! primary cell, hide the corners of a hypercube through it, one move per dimension (another
//! value at −1, or the margin at +1; in a hierarchy, a path through the levels that keeps every
//! subtotal: [`crate::secrecy::Dimension::moves_through`]), the corners being every
//! combination of the moves' coordinates, so that moving the primary by t moves every corner by
//! ±t without changing any published total. Of the hypercubes whose corners leave the primary
//! enough room, the one that hides the fewest units not hidden yet is chosen. The audit then
//! solves the attacker's program over the whole pattern (and the tables read beside it); a
//! primary it still finds exposed gets another hypercube, round after round, and a table that
//! cannot be protected is refused.
//!
//! Owns: the pattern of hidden cells and why each is hidden. Must never: return a pattern the
//! audit has not passed.

use std::collections::HashMap;

use serde::Serialize;

use super::audit::{AuditError, Finding, Means, Move, Neighbour, Tie, audit_tables};
use super::cube::Cube;
use super::profile::{PrimaryReason, Profile};

/// Why a published cell's values are hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    /// The cell breaks the profile's rule.
    Primary(PrimaryReason),
    /// The cell is hidden so that a primary cannot be recovered from it.
    Secondary,
}

impl Secret {
    /// The flag published beside a hidden value: `primary` or `secondary`.
    pub fn flag(self) -> &'static str {
        match self {
            Secret::Primary(_) => "primary",
            Secret::Secondary => "secondary",
        }
    }
}

/// A table's protection: the secret of each cell (none: published), and how it was reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Protection {
    pub secrets: Vec<Option<Secret>>,
    /// Audit rounds until the pattern passed.
    pub rounds: usize,
}

impl Protection {
    pub fn hidden(&self) -> Vec<bool> {
        self.secrets.iter().map(Option::is_some).collect()
    }

    /// Cells hidden as primary and as secondary secrets.
    pub fn counts(&self) -> (usize, usize) {
        let primary = self
            .secrets
            .iter()
            .filter(|s| matches!(s, Some(Secret::Primary(_))))
            .count();
        let secondary = self
            .secrets
            .iter()
            .filter(|s| matches!(s, Some(Secret::Secondary)))
            .count();
        (primary, secondary)
    }
}

/// Why a table is not published.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtectError {
    #[error("{} primary cell(s) stay exposed after {rounds} rounds of secondary suppression", findings.len())]
    Unprotectable {
        findings: Vec<Finding>,
        rounds: usize,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Audit rounds before a table is given up.
const MAX_ROUNDS: usize = 12;

/// Other coordinates tried per dimension when a hypercube is chosen (the margin, then the
/// values whose cells on the primary's line are largest).
const CANDIDATES_PER_DIMENSION: usize = 8;

/// The primary secret of each cell of `cube` under `profile`.
pub fn primaries(cube: &Cube, profile: &Profile) -> Vec<Option<PrimaryReason>> {
    (0..cube.len())
        .map(|index| {
            let cell = cube.cell(index);
            profile.count_rule(cell.units).or_else(|| {
                cube.measures()
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !m.kind.is_count())
                    .find_map(|(m, _)| profile.dominance_rule(cell.values[m], cell.largest[m]))
            })
        })
        .collect()
}

/// Protects `cube` under `profile`: primary secrets, secondary suppression, and an audit that
/// passed; or why it cannot be published.
pub fn protect(cube: &Cube, profile: &Profile) -> Result<Protection, ProtectError> {
    protect_with(cube, profile, &[])
}

/// [`protect`] for a table read beside `neighbours` (the version it replaces, the tables
/// published from the same source). A cell equal to a neighbour's hidden cell is hidden here
/// too; a cell equal to a neighbour's published cell is known, and never chosen as a secondary
/// secret (hiding it would hide nothing). The audit covers the tables together: a neighbour's
/// primary cell that the new table exposes gets a hypercube through its cells here; a table
/// whose primary cell a neighbour publishes cannot be protected.
pub fn protect_with(
    cube: &Cube,
    profile: &Profile,
    neighbours: &[Neighbour<'_>],
) -> Result<Protection, ProtectError> {
    let primaries = primaries(cube, profile);
    let mut hidden: Vec<bool> = primaries.iter().map(Option::is_some).collect();
    let mut standing = vec![Standing::Free; cube.len()];
    for n in neighbours {
        for link in &n.links {
            match (link.tie, n.hidden[link.other_cell]) {
                (Tie::Equal, true) => {
                    hidden[link.cell] = true;
                    standing[link.cell] = Standing::Shared;
                }
                (Tie::Equal, false) => standing[link.cell] = Standing::Known,
                // A cell the neighbour hides is a cheap secondary here: patterns that agree
                // give the attacker who reads both little more than either.
                (_, true) if standing[link.cell] == Standing::Free => {
                    standing[link.cell] = Standing::Preferred
                }
                _ => {}
            }
        }
    }
    // Witnesses of the neighbours' own: for each of their primaries, a hypercube of cells
    // they hide (cells they publish cannot move).
    let mut neighbour_moves: Vec<(usize, Move)> = Vec::new();
    for (k, n) in neighbours.iter().enumerate() {
        let published: Vec<Standing> = n
            .hidden
            .iter()
            .map(|&h| if h { Standing::Free } else { Standing::Known })
            .collect();
        for (p, reason) in n
            .primaries
            .iter()
            .enumerate()
            .filter_map(|(p, r)| r.map(|r| (p, r)))
        {
            if let Some(corners) =
                best_hypercube(n.cube, &n.profile, reason, &n.hidden, &published, p, &[])
            {
                neighbour_moves.push((k + 1, corners));
            }
        }
    }
    // What hides a neighbour's primary stays hidden here: the cells tied to the corners of
    // its hypercubes (so that they can still move together, here and there).
    let mut tied: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (k, n) in neighbours.iter().enumerate() {
        for link in &n.links {
            tied.entry((k + 1, link.other_cell))
                .or_default()
                .push(link.cell);
        }
    }
    for (t, corners) in &neighbour_moves {
        for (c, _) in corners {
            for &here in tied.get(&(*t, *c)).into_iter().flatten() {
                hidden[here] = true;
                if standing[here] != Standing::Known {
                    standing[here] = Standing::Shared;
                }
            }
        }
    }
    let mut used: Vec<Vec<Move>> = vec![Vec::new(); cube.len()];
    // Largest primaries first: their hypercubes are the hardest to find, and the smaller ones
    // often fit in the corners already hidden.
    let mut order: Vec<usize> = (0..cube.len())
        .filter(|&c| primaries[c].is_some())
        .collect();
    order.sort_by(|a, b| cube.cell(*b).units.cmp(&cube.cell(*a).units).then(a.cmp(b)));
    let hypercube = |p: usize,
                     reason: PrimaryReason,
                     hidden: &mut Vec<bool>,
                     used: &mut Vec<Vec<Move>>|
     -> bool {
        let Some(corners) = best_hypercube(cube, profile, reason, hidden, &standing, p, &used[p])
        else {
            return false;
        };
        let progress = corners.iter().any(|&(c, _)| !hidden[c]);
        for &(c, _) in &corners {
            hidden[c] = true;
        }
        used[p].push(corners);
        progress
    };
    // A primary equal to a neighbour's hidden primary first takes that neighbour's hypercube,
    // when every corner has its cell here (then both move together, and the audit sees it).
    let mut back: HashMap<(usize, usize), usize> = HashMap::new();
    for (k, n) in neighbours.iter().enumerate() {
        for link in n.links.iter().filter(|l| l.tie == Tie::Equal) {
            back.insert((k + 1, link.other_cell), link.cell);
        }
    }
    for (t, corners) in &neighbour_moves {
        let Some(&(first, _)) = corners.first() else {
            continue;
        };
        let Some(&p) = back.get(&(*t, first)) else {
            continue;
        };
        let Some(reason) = primaries[p] else {
            continue;
        };
        let here: Option<Move> = corners
            .iter()
            .map(|&(c, sign)| back.get(&(*t, c)).map(|&h| (h, sign)))
            .collect();
        if let Some(here) = here
            && room(cube, profile, reason, p, &here) >= 1.0
        {
            for &(c, _) in &here {
                hidden[c] = true;
            }
            used[p].push(here);
        }
    }
    for &p in &order {
        if let Some(reason) = primaries[p]
            && used[p].is_empty()
        {
            hypercube(p, reason, &mut hidden, &mut used);
        }
    }
    // Hiding more cells only widens the attacker's intervals: a primary found protected in one
    // round stays protected, so later rounds audit only the cells found exposed (and every
    // neighbour's primaries).
    let mut suspects: Vec<usize> = order.clone();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let moves: Vec<Move> = used.iter().flatten().cloned().collect();
        let findings = audit_tables(
            Means::HUB,
            cube,
            &hidden,
            &primaries,
            profile,
            &suspects,
            &moves,
            neighbours,
            &neighbour_moves,
        )?;
        if findings.is_empty() {
            break;
        }
        if rounds >= MAX_ROUNDS {
            return Err(ProtectError::Unprotectable { findings, rounds });
        }
        // Each exposed primary, here or (through the cells tied to it) in a neighbour. A
        // neighbour's primary is exposed by what this table publishes of the cells that hid
        // it: those on its lines hidden there are hidden here too, and if that is not enough,
        // everything the neighbour hides.
        let mut exposed: Vec<(usize, PrimaryReason)> = Vec::new();
        let mut carried = false;
        for f in &findings {
            if f.table == 0 {
                exposed.extend(primaries[f.cell].map(|r| (f.cell, r)));
                continue;
            }
            let n = &neighbours[f.table - 1];
            let Some(reason) = n.primaries[f.cell] else {
                continue;
            };
            for link in n.links.iter().filter(|l| l.other_cell == f.cell) {
                exposed.push((link.cell, reason));
            }
            // On its lines: the cells hidden there, and the published ones that changed (the
            // difference between their versions is a sum of the hidden cells' changes).
            let mut around = vec![f.cell];
            for dim in 0..n.cube.dims().len() {
                for line in n.cube.lines_through(f.cell, dim) {
                    around.extend(line.parts.iter().chain([&line.total]));
                }
            }
            for link in n.links.iter().filter(|l| around.contains(&l.other_cell)) {
                let changed = link.tie != Tie::Equal && !n.hidden[link.other_cell];
                if (n.hidden[link.other_cell] || changed) && !hidden[link.cell] {
                    hidden[link.cell] = true;
                    carried = true;
                    if changed {
                        // Hidden here, it needs a hypercube of its own.
                        exposed.push((link.cell, reason));
                    }
                }
            }
        }
        if !carried && findings.iter().any(|f| f.table > 0) {
            for n in neighbours {
                for link in n.links.iter().filter(|l| n.hidden[l.other_cell]) {
                    if !hidden[link.cell] {
                        hidden[link.cell] = true;
                        carried = true;
                    }
                }
            }
        }
        exposed.sort_by_key(|(c, _)| *c);
        exposed.dedup_by_key(|(c, _)| *c);
        suspects = exposed
            .iter()
            .map(|(c, _)| *c)
            .filter(|&c| primaries[c].is_some())
            .collect();
        let mut progress = carried;
        for (p, reason) in exposed {
            if !hidden[p] {
                hidden[p] = true;
                progress = true;
            }
            progress |= hypercube(p, reason, &mut hidden, &mut used);
        }
        if !progress {
            progress = widen_lines(cube, &findings, &mut hidden);
        }
        if !progress {
            return Err(ProtectError::Unprotectable { findings, rounds });
        }
    }
    let secrets = (0..cube.len())
        .map(|c| match (primaries[c], hidden[c]) {
            (Some(reason), _) => Some(Secret::Primary(reason)),
            (None, true) => Some(Secret::Secondary),
            (None, false) => None,
        })
        .collect();
    Ok(Protection { secrets, rounds })
}

/// When no hypercube is left to add for the exposed cells of `findings` (of this table): on
/// each line through each of them, the largest value still published is hidden too, room for
/// the attacker's interval. Whether any cell was hidden (none: every such line is hidden).
fn widen_lines(cube: &Cube, findings: &[Finding], hidden: &mut [bool]) -> bool {
    let mut progress = false;
    for f in findings.iter().filter(|f| f.table == 0) {
        for dim in 0..cube.dims().len() {
            for line in cube.lines_through(f.cell, dim) {
                let largest = line
                    .parts
                    .iter()
                    .chain([&line.total])
                    .filter(|&&c| !hidden[c])
                    .max_by(|&&a, &&b| {
                        cube.value(a, f.measure)
                            .total_cmp(&cube.value(b, f.measure))
                    });
                if let Some(&c) = largest {
                    hidden[c] = true;
                    progress = true;
                }
            }
        }
    }
    progress
}

/// The cheapest hypercube through primary `p` not in `used` whose corners leave `p` enough room
/// (else the roomiest); its corners, `p` included, with the sign each moves by when `p` moves.
/// What a neighbour says of a cell, for the choice of secondary secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Not tied to a cell a neighbour hides.
    Free,
    /// A neighbour publishes its value: hiding it hides nothing.
    Known,
    /// A neighbour hides it: a cheap secondary.
    Preferred,
    /// Hidden here because a neighbour hides it (equal, or a corner of its hypercubes).
    Shared,
}

fn best_hypercube(
    cube: &Cube,
    profile: &Profile,
    reason: PrimaryReason,
    hidden: &[bool],
    standing: &[Standing],
    p: usize,
    used: &[Move],
) -> Option<Move> {
    let dims = cube.dims().len();
    let coords = cube.coords(p);
    // Per dimension, the ways to move the primary's coordinate (`(coordinate, sign)`: another
    // value of its line at −1, its margin at +1; in a hierarchy, paths through the levels):
    // through the margin first, then those whose cells on the primary's line are largest.
    let mut choices: Vec<Vec<Vec<(usize, f64)>>> = Vec::with_capacity(dims);
    for (j, dim) in cube.dims().iter().enumerate() {
        let total = dim.total();
        let weight = |path: &[(usize, f64)]| {
            path.iter()
                .skip(1)
                .map(|&(v, _)| cube.cell(cube.moved(p, j, v)).units)
                .min()
                .unwrap_or(0)
        };
        let mut moves = dim.moves_through(coords[j]);
        moves.sort_by(|a, b| {
            let margin = |m: &[(usize, f64)]| m.iter().any(|&(v, _)| v == total);
            margin(b)
                .cmp(&margin(a))
                .then(weight(b).cmp(&weight(a)))
                .then(a.len().cmp(&b.len()))
        });
        moves.truncate(CANDIDATES_PER_DIMENSION);
        choices.push(moves);
    }
    if choices.iter().any(Vec::is_empty) {
        return None;
    }
    let mut best: Option<(bool, f64, f64, Move)> = None;
    let mut pick = vec![0usize; dims];
    'outer: loop {
        // The corners of this hypercube (one coordinate of each dimension's move) and their
        // signs (the product of the coordinates').
        let mut corners: Move = vec![(p, 1.0)];
        for (j, choice) in choices.iter().enumerate() {
            let path = &choice[pick[j]];
            let mut next = Vec::with_capacity(corners.len() * path.len());
            for &(cell, sign) in &corners {
                for &(v, s) in path {
                    next.push((cube.moved(cell, j, v), sign * s));
                }
            }
            corners = next;
        }
        // A corner whose value a neighbour publishes cannot move.
        let movable = corners
            .iter()
            .all(|&(c, _)| c == p || standing[c] != Standing::Known);
        if movable && !used.contains(&corners) {
            let room = room(cube, profile, reason, p, &corners);
            let mut cost: f64 = corners
                .iter()
                .filter(|(c, _)| !hidden[*c])
                .map(|(c, _)| match standing[*c] {
                    Standing::Preferred => 0.5,
                    _ => 1.0 + cube.cell(*c).units as f64,
                })
                .sum();
            // A hypercube moves with the neighbours' cells only if all its corners are hidden
            // there too, or none is tied to one: any other is a witness the audit cannot use
            // (its linear program then decides, at far greater cost).
            let shared = |c: usize| matches!(standing[c], Standing::Shared | Standing::Preferred);
            let consistent = corners.iter().all(|&(c, _)| shared(c))
                || corners
                    .iter()
                    .all(|&(c, _)| standing[c] != Standing::Shared);
            if !consistent {
                cost += 1e6;
            }
            let enough = room >= 1.0;
            let better = match &best {
                None => true,
                Some((b_enough, b_room, b_cost, _)) => match (enough, *b_enough) {
                    (true, false) => true,
                    (false, true) => false,
                    (true, true) => cost < *b_cost,
                    (false, false) => room > *b_room || (room == *b_room && cost < *b_cost),
                },
            };
            if better {
                best = Some((enough, room, cost, corners));
            }
        }
        // Next combination.
        for j in 0..dims {
            pick[j] += 1;
            if pick[j] < choices[j].len() {
                continue 'outer;
            }
            pick[j] = 0;
        }
        break;
    }
    best.map(|(_, _, _, cells)| cells)
}

/// How much room a hypercube leaves its primary, as a share of what the profile needs (1 or
/// more: enough), over every measure the primary must be protected on.
fn room(
    cube: &Cube,
    profile: &Profile,
    reason: PrimaryReason,
    p: usize,
    corners: &[(usize, f64)],
) -> f64 {
    let mut worst = f64::INFINITY;
    for (m, measure) in cube.measures().iter().enumerate() {
        let value = cube.value(p, m);
        // Moving p up by t moves the corners of sign −1 down by t, and the others up.
        let min_of = |sign: f64| {
            corners
                .iter()
                .filter(|(c, s)| *c != p && *s == sign)
                .map(|(c, _)| cube.value(*c, m))
                .fold(f64::INFINITY, f64::min)
        };
        let up = min_of(-1.0);
        let down = min_of(1.0).min(value);
        let share = if measure.kind.is_count() {
            if reason == PrimaryReason::Dominance {
                continue;
            }
            let need = profile.min_units as f64;
            ((value + up) / need).min((up + down) / need)
        } else {
            if value <= 0.0 {
                continue;
            }
            let need = profile.magnitude_margin * value;
            (up / need).min(down / need)
        };
        worst = worst.min(share);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::super::audit::{Attacker, Link, audit, audit_joint};
    use super::super::cube::tests::counts;
    use super::*;

    fn hide(cube: &Cube, cells: &[[usize; 2]]) -> Vec<bool> {
        let mut hidden = vec![false; cube.len()];
        for c in cells {
            hidden[cube.index(c)] = true;
        }
        hidden
    }

    /// `new` read beside `old` (the same layout: every cell shared), tied as the values hold.
    fn beside<'a>(
        new: &Cube,
        old: &'a Cube,
        hidden: Vec<bool>,
        profile: &Profile,
    ) -> Neighbour<'a> {
        Neighbour {
            cube: old,
            hidden,
            primaries: primaries(old, profile),
            profile: profile.clone(),
            links: (0..new.len())
                .map(|c| Link {
                    cell: c,
                    measure: 0,
                    other_cell: c,
                    other_measure: 0,
                    tie: Tie::between(new.value(c, 0), old.value(c, 0)),
                })
                .collect(),
        }
    }

    /// With no hypercube left, each line through an exposed cell gives up its largest
    /// published value, until none is left.
    #[test]
    fn an_exposed_cell_with_no_hypercube_left_widens_its_lines() {
        let cube = counts(&[&[3, 20, 30], &[40, 50, 60]]);
        let p = cube.index(&[0, 0]);
        let mut hidden = hide(&cube, &[[0, 0], [0, 1], [1, 0], [1, 1]]);
        let finding = Finding {
            table: 0,
            cell: p,
            measure: 0,
            value: 3.0,
            interval: super::super::audit::Interval {
                low: 3.0,
                high: 3.0,
            },
        };
        assert!(widen_lines(
            &cube,
            std::slice::from_ref(&finding),
            &mut hidden
        ));
        // Row 0: its margin (53, above 30); column 0: its margin (43).
        let now: Vec<usize> = (0..cube.len()).filter(|&c| hidden[c]).collect();
        let mut expected: Vec<usize> = [[0, 0], [0, 1], [1, 0], [1, 1], [0, 3], [2, 0]]
            .iter()
            .map(|c| cube.index(c))
            .collect();
        expected.sort_unstable();
        assert_eq!(now, expected);
        let mut all = vec![true; cube.len()];
        assert!(!widen_lines(&cube, &[finding], &mut all));
    }

    #[test]
    fn differencing_two_versions_recovers_a_cell_each_hides_unless_audited_together() {
        let profile = Profile::named("medical").unwrap();
        // Version 1: the small cell (3) hidden in a rectangle over columns 0 and 1.
        let old = counts(&[&[3, 20, 30], &[40, 50, 60]]);
        let rectangle = [[0, 0], [0, 1], [1, 0], [1, 1]];
        let old_hidden = hide(&old, &rectangle);
        assert!(
            audit(&old, &old_hidden, &primaries(&old, &profile), &profile)
                .unwrap()
                .is_empty()
        );
        // Version 2: one cell grew (60 → 70). Protected alone, a rectangle over columns 0 and
        // 2 is as good, and the version is safe on its own.
        let new = counts(&[&[3, 20, 30], &[40, 50, 70]]);
        let alone = hide(&new, &[[0, 0], [0, 2], [1, 0], [1, 2]]);
        let new_primaries = primaries(&new, &profile);
        assert!(
            audit(&new, &alone, &new_primaries, &profile)
                .unwrap()
                .is_empty()
        );
        // Read together: (0, 1) did not change and version 2 publishes it, so version 1's
        // row 0 gives its small cell away, and version 2's with it.
        let neighbours = [beside(&new, &old, old_hidden, &profile)];
        let attacker = Attacker::joint(&new, &alone, &neighbours);
        for (t, cube) in [(0, &new), (1, &old)] {
            let i = attacker.interval_in(t, cube.index(&[0, 0]), 0).unwrap();
            assert!(
                (i.low - 3.0).abs() < 1e-6 && (i.high - 3.0).abs() < 1e-6,
                "version {t}: {i:?}"
            );
        }
        let every: Vec<usize> = (0..new.len()).collect();
        let findings = audit_joint(
            &new,
            &alone,
            &new_primaries,
            &profile,
            &every,
            &[],
            &neighbours,
        )
        .unwrap();
        assert!(findings.iter().any(|f| f.table == 1), "{findings:?}");
        // Protected together: what version 1 hid and did not change stays hidden, and the
        // two versions withstand the attacker together.
        let protection = protect_with(&new, &profile, &neighbours).unwrap();
        let hidden = protection.hidden();
        for c in rectangle {
            assert!(hidden[new.index(&c)], "{c:?}");
        }
        assert!(
            audit_joint(
                &new,
                &hidden,
                &new_primaries,
                &profile,
                &every,
                &[],
                &neighbours
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn a_linked_table_hides_what_its_neighbour_hides_and_nothing_it_publishes() {
        let profile = Profile::named("medical").unwrap();
        let cube = counts(&[&[3, 20, 30], &[40, 50, 60]]);
        // A neighbour sharing every cell, which hid the small cell with columns 0 and 2.
        let theirs = [[0, 0], [0, 2], [1, 0], [1, 2]];
        let neighbours = [beside(&cube, &cube, hide(&cube, &theirs), &profile)];
        let protection = protect_with(&cube, &profile, &neighbours).unwrap();
        assert_eq!(protection.hidden(), hide(&cube, &theirs), "{protection:?}");
        // A neighbour with a looser rule publishes the small cell: no pattern here can hide
        // it again, and the table is refused.
        let mut loose = profile.clone();
        loose.min_units = 3;
        let mut neighbour = beside(&cube, &cube, vec![false; cube.len()], &loose);
        neighbour.primaries = primaries(&cube, &loose);
        let refused = protect_with(&cube, &profile, &[neighbour]);
        assert!(
            matches!(refused, Err(ProtectError::Unprotectable { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_small_cell_gets_a_rectangle_and_the_audit_passes() {
        let cube = counts(&[&[3, 20, 30], &[40, 50, 60], &[70, 80, 90]]);
        let profile = Profile::named("medical").unwrap();
        let protection = protect(&cube, &profile).unwrap();
        let (primary, secondary) = protection.counts();
        assert_eq!(primary, 1);
        assert_eq!(secondary, 3, "{protection:?}");
        assert_eq!(
            protection.secrets[cube.index(&[0, 0])],
            Some(Secret::Primary(PrimaryReason::TooFewUnits))
        );
        // Margins are not hidden when inner cells can do.
        for total in [
            cube.index(&[3, 3]),
            cube.index(&[0, 3]),
            cube.index(&[3, 0]),
        ] {
            assert_eq!(protection.secrets[total], None);
        }
    }

    #[test]
    fn a_table_with_no_secret_is_published_whole() {
        let cube = counts(&[&[30, 20], &[40, 50]]);
        let protection = protect(&cube, &Profile::named("medical").unwrap()).unwrap();
        assert_eq!(protection.counts(), (0, 0));
    }

    #[test]
    fn a_lone_small_line_takes_its_margin_with_it() {
        // One row: the small cell's only partners are in that row and its margin.
        let cube = counts(&[&[2, 40, 50]]);
        let profile = Profile::named("medical").unwrap();
        let protection = protect(&cube, &profile).unwrap();
        let hidden = protection.hidden();
        assert!(
            audit(&cube, &hidden, &primaries(&cube, &profile), &profile)
                .unwrap()
                .is_empty()
        );
    }
}
