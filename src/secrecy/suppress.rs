//! Protecting a table: primary secrets by the profile's rules, then secondary suppression so
//! that no primary cell can be recovered from the margins, then the attacker's audit, which has
//! the last word.
//!
//! Secondary suppression is the hypercube heuristic (Repsilber; Giessing's τ-ARGUS): for each
//! primary cell, hide the corners of a hypercube through it, one other coordinate per
//! dimension (another value, or the margin), so that moving the primary by t moves every
//! corner by ±t without changing any published total. Of the hypercubes whose corners leave the
//! primary enough room, the one that hides the fewest units not hidden yet is chosen. The audit
//! then solves the attacker's program over the whole pattern; a primary it still finds exposed
//! gets another hypercube, round after round, and a table that cannot be protected is refused.
//!
//! Owns: the pattern of hidden cells and why each is hidden. Must never: return a pattern the
//! audit has not passed.

use serde::Serialize;

use super::audit::{AuditError, Finding, Move, audit_cells};
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
    let primaries = primaries(cube, profile);
    let mut hidden: Vec<bool> = primaries.iter().map(Option::is_some).collect();
    let mut used: Vec<Vec<Move>> = vec![Vec::new(); cube.len()];
    // Largest primaries first: their hypercubes are the hardest to find, and the smaller ones
    // often fit in the corners already hidden.
    let mut order: Vec<usize> = (0..cube.len())
        .filter(|&c| primaries[c].is_some())
        .collect();
    order.sort_by(|a, b| cube.cell(*b).units.cmp(&cube.cell(*a).units).then(a.cmp(b)));
    for &p in &order {
        if let Some(corners) = best_hypercube(cube, profile, &primaries, &hidden, p, &used[p]) {
            for &(c, _) in &corners {
                hidden[c] = true;
            }
            used[p].push(corners);
        }
    }
    // Hiding more cells only widens the attacker's intervals: a primary found protected in one
    // round stays protected, so later rounds audit only the cells found exposed.
    let mut suspects: Vec<usize> = order.clone();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let moves: Vec<Move> = suspects.iter().flat_map(|&p| used[p].clone()).collect();
        let findings = audit_cells(cube, &hidden, &primaries, profile, &suspects, &moves)?;
        if findings.is_empty() {
            break;
        }
        if rounds >= MAX_ROUNDS {
            return Err(ProtectError::Unprotectable { findings, rounds });
        }
        let mut exposed: Vec<usize> = findings.iter().map(|f| f.cell).collect();
        exposed.dedup();
        suspects = exposed.clone();
        let mut progress = false;
        for p in exposed {
            if let Some(corners) = best_hypercube(cube, profile, &primaries, &hidden, p, &used[p]) {
                progress |= corners.iter().any(|&(c, _)| !hidden[c]);
                for &(c, _) in &corners {
                    hidden[c] = true;
                }
                used[p].push(corners);
            }
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

/// The cheapest hypercube through primary `p` not in `used` whose corners leave `p` enough room
/// (else the roomiest); its corners, `p` included, with the sign each moves by when `p` moves.
fn best_hypercube(
    cube: &Cube,
    profile: &Profile,
    primaries: &[Option<PrimaryReason>],
    hidden: &[bool],
    p: usize,
    used: &[Move],
) -> Option<Move> {
    let dims = cube.dims().len();
    let coords = cube.coords(p);
    // Per dimension, the other coordinates to try, and whether moving there flips the sign of
    // a corner's change (two values of a line move in opposite directions; a value and its
    // margin in the same one).
    let mut choices: Vec<Vec<(usize, f64)>> = Vec::with_capacity(dims);
    for (j, dim) in cube.dims().iter().enumerate() {
        let here = coords[j];
        let total = dim.total();
        let mut others: Vec<usize> = (0..dim.size()).filter(|&v| v != here).collect();
        let weight = |v: usize| cube.cell(cube.moved(p, j, v)).units;
        others.sort_by(|a, b| {
            (*b == total)
                .cmp(&(*a == total))
                .then(weight(*b).cmp(&weight(*a)))
        });
        others.truncate(CANDIDATES_PER_DIMENSION);
        choices.push(
            others
                .into_iter()
                .map(|v| {
                    let sign = if here != total && v != total {
                        -1.0
                    } else {
                        1.0
                    };
                    (v, sign)
                })
                .collect(),
        );
    }
    let reason = primaries[p]?;
    let mut best: Option<(bool, f64, f64, Move)> = None;
    let mut pick = vec![0usize; dims];
    'outer: loop {
        // The corners of this hypercube and their signs.
        let mut corners = Vec::with_capacity(1 << dims);
        for mask in 0..(1usize << dims) {
            let mut cell = p;
            let mut sign = 1.0;
            for (j, choice) in choices.iter().enumerate() {
                if mask & (1 << j) != 0 {
                    let (v, s) = choice[pick[j]];
                    cell = cube.moved(cell, j, v);
                    sign *= s;
                }
            }
            corners.push((cell, sign));
        }
        if !used.contains(&corners) {
            let room = room(cube, profile, reason, p, &corners);
            let cost: f64 = corners
                .iter()
                .filter(|(c, _)| !hidden[*c])
                .map(|(c, _)| 1.0 + cube.cell(*c).units as f64)
                .sum();
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
    use super::super::audit::audit;
    use super::super::cube::tests::counts;
    use super::*;

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
