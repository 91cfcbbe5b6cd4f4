//! Deterministic randomness of the demo generator: keyed SplitMix64 streams, the hand-written
//! `exp` and `ln`, weighted draws, and the keyed permutation behind generated numbers.
//!
//! This module owns reproducibility: a draw depends only on `(seed, domain, a, b)`, never on
//! generation order, and floating-point maths uses only IEEE-exact operations, so the files are
//! byte-identical on every machine. It must never call a platform maths function (`f64::exp`,
//! `f64::ln`) or an OS or thread-local random source. It only produces synthetic numbers: it never
//! reads data and never touches the network.

// Domains of the independent random streams (the `domain` of `Rng64::stream`): one per kind of
// draw, all distinct, so no two kinds of value ever share a stream.
pub(super) const DOMAIN_PERSON: u64 = 1;
pub(super) const DOMAIN_ORDER: u64 = 2;
pub(super) const DOMAIN_HOUSEHOLD: u64 = 3;
pub(super) const DOMAIN_CAF: u64 = 4;
pub(super) const DOMAIN_STAYS: u64 = 5;
pub(super) const DOMAIN_COMPANIES: u64 = 6;
pub(super) const DOMAIN_NUMBERING: u64 = 7;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser: a bijective 64-bit mix.
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream keyed by (seed, domain, a, b): cheap to create, so every person, chunk
/// and company gets its own stream and nothing depends on generation order.
#[derive(Debug, Clone)]
pub(super) struct Rng64 {
    state: u64,
}

impl Rng64 {
    pub(super) fn stream(seed: u64, domain: u64, a: u64, b: u64) -> Self {
        let mut h = mix64(seed ^ 0x7061_7373_6572_656C);
        h = mix64(h ^ domain.wrapping_mul(GOLDEN));
        h = mix64(h ^ a);
        h = mix64(h ^ b.wrapping_add(0xD1B5_4A32_D192_ED03));
        Self { state: h }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1].
    fn unit_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Irwin–Hall approximation: sum of 12 uniforms minus 6).
    fn normal(&mut self) -> f64 {
        let mut sum = 0.0;
        for _ in 0..12 {
            sum += self.unit();
        }
        sum - 6.0
    }

    /// Log-normal with the given median and log-scale spread.
    pub(super) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * det_exp(sigma * self.normal())
    }

    /// Exponential with the given mean.
    pub(super) fn exponential(&mut self, mean: f64) -> f64 {
        -det_ln(self.unit_open()) * mean
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T], fallback: T) -> T {
        items
            .get(self.index(items.len()))
            .copied()
            .unwrap_or(fallback)
    }
}

/// `e^x` with IEEE-exact operations only (range reduction and a Taylor polynomial).
fn det_exp(x: f64) -> f64 {
    let x = x.clamp(-700.0, 700.0);
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = x - k * std::f64::consts::LN_2;
    let mut sum = 1.0;
    for n in (1..=13).rev() {
        sum = 1.0 + r * sum / f64::from(n);
    }
    sum * pow2(k as i32)
}

/// `ln(x)` for x > 0 with IEEE-exact operations only (exponent split and an atanh series).
fn det_ln(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 0.0;
    }
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7FF) as i32 - 1023;
    let mut mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if mantissa > std::f64::consts::SQRT_2 {
        mantissa /= 2.0;
        exponent += 1;
    }
    let t = (mantissa - 1.0) / (mantissa + 1.0);
    let t2 = t * t;
    let mut term = t;
    let mut sum = 0.0;
    for n in 0..12 {
        sum += term / f64::from(2 * n + 1);
        term *= t2;
    }
    f64::from(exponent) * std::f64::consts::LN_2 + 2.0 * sum
}

fn pow2(k: i32) -> f64 {
    let k = k.clamp(-1022, 1023);
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// Index drawn with the weights whose running totals are `cum`, restricted to `lo..hi`.
pub(super) fn weighted_in(cum: &[u64], lo: usize, hi: usize, rng: &mut Rng64) -> usize {
    let hi = hi.min(cum.len());
    if lo >= hi {
        return lo.min(cum.len().saturating_sub(1));
    }
    let base = if lo == 0 {
        0
    } else {
        cum.get(lo - 1).copied().unwrap_or(0)
    };
    let top = cum.get(hi - 1).copied().unwrap_or(base);
    let x = base + rng.below(top - base);
    cum.partition_point(|&c| c <= x).clamp(lo, hi - 1)
}

pub(super) fn weighted(cum: &[u64], rng: &mut Rng64) -> usize {
    weighted_in(cum, 0, cum.len(), rng)
}

/// Index drawn with the floating-point weights whose running totals are `cum`.
pub(super) fn weighted_f64(cum: &[f64], rng: &mut Rng64) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.unit() * total;
    cum.partition_point(|&c| c <= x)
        .min(cum.len().saturating_sub(1))
}

pub(super) fn running_total<I: IntoIterator<Item = u64>>(weights: I) -> Vec<u64> {
    let mut sum = 0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

pub(super) fn running_total_f64<I: IntoIterator<Item = f64>>(weights: I) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

/// Draws from a small discrete distribution given as probabilities (the last value absorbs
/// the remainder).
pub(super) fn discrete(probabilities: &[f64], rng: &mut Rng64) -> usize {
    let mut u = rng.unit();
    for (k, p) in probabilities.iter().enumerate() {
        if u < *p {
            return k;
        }
        u -= p;
    }
    probabilities.len().saturating_sub(1)
}

/// Keyed bijection of `0..size` (`size` at most `2^(2 * half_bits)`): a four-round Feistel
/// network on `2 * half_bits` bits, with cycle-walking back into `0..size`.
pub(super) fn permute(value: u64, size: u64, half_bits: u32, key: u64) -> u64 {
    if value >= size {
        return value % size.max(1);
    }
    let mask = (1u64 << half_bits) - 1;
    let mut x = value;
    loop {
        let (mut left, mut right) = (x >> half_bits, x & mask);
        for round in 0..4u64 {
            let f = mix64(right ^ key ^ round.wrapping_mul(GOLDEN)) & mask;
            (left, right) = (right, left ^ f);
        }
        x = (left << half_bits) | right;
        // The walk stays on the cycle of `value`, which contains `value` itself, so it ends.
        if x < size {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn deterministic_maths_is_accurate() {
        for x in [-20.0, -1.5, -0.3, 0.0, 0.2, 1.0, 3.7, 12.0] {
            let e: f64 = det_exp(x);
            assert!((e - x.exp()).abs() <= 1e-12 * x.exp(), "exp({x})");
        }
        for x in [1e-12, 0.001, 0.5, 1.0, 1.5, 2.0, 10.0, 12345.678] {
            let l: f64 = det_ln(x);
            assert!((l - x.ln()).abs() <= 1e-12, "ln({x})");
        }
    }

    #[test]
    fn permutation_is_a_bijection() {
        for (size, half_bits) in [(1_000u64, 5u32), (9_000, 7), (70_000, 9)] {
            let mut seen = HashSet::new();
            for v in 0..size {
                let p = permute(v, size, half_bits, 0xC0FFEE);
                assert!(p < size);
                assert!(seen.insert(p), "{v} collides");
            }
        }
    }
}
