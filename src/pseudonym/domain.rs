//! Pseudonymisation domains and their keys.
//!
//! A domain's key is derived from the hub's master secret with HKDF-SHA-256 (salt
//! `passerelle/pseudonymisation/v1`, info `domain=<id>;version=<n>`). A pseudonym is
//! HMAC-SHA-256(domain key, normalised value), truncated to 128 bits and encoded as base64url
//! without padding: 22 characters. Normalisation: surrounding and inner ASCII whitespace
//! removed, ASCII letters upper-cased (so `2a` and `2A` are one Corsican département code).
//!
//! Collisions: with 128-bit pseudonyms, the probability of any collision among n distinct
//! values is about n² / 2¹²⁹: at n = 100 million, 1.5 × 10⁻²³ — negligible.
//!
//! Computation: HMAC-SHA-256 as RFC 2104 defines it, written with the raw SHA-256 compression
//! function. The states after absorbing the key's ipad and opad blocks are computed once per
//! domain; a value of at most 55 normalised bytes (a NIR has 13) then costs exactly two
//! compressions: one inner block (value, `0x80`, zeros, bit length of 64 + len) and one outer
//! block (inner digest, `0x80`, zeros, bit length 768). When the CPU has SHA instructions, such
//! one-block values already in normal form go through `sha_ni`, two at a time in a
//! [`PseudonymBatch`]; every other value (and every value on other CPUs) goes through
//! `sha2::compress256`, with more inner blocks for longer values. Known-answer tests check
//! both paths, for every length from 0 to 199, against the `hmac` crate.
//!
//! INVARIANT: the two keyed SHA-256 states (inner and outer hashes already absorbed the key)
//! are computed once per domain, stay private to this file, and are zeroized on drop; the key
//! itself is zeroized as soon as they are computed and never leaves this file. The states leave
//! it once, for the cluster (issue #24): [`PseudonymDomain::to_wire`] gives them to the engine's
//! plan codec, which ships them inside a physical plan over mutual TLS to the scheduler and
//! executors that run that plan (docs/security.md, "The cluster"). (Each value
//! works on a stack copy of a state, which its first compression overwrites; those copies are
//! not zeroized separately, as with the `hmac` crate's clones before.)

use sha2::digest::generic_array::GenericArray;
use sha2::digest::generic_array::typenum::U64;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::MasterKey;
use super::sha_ni::ShaNi;

/// Length of an encoded pseudonym.
pub const PSEUDONYM_LEN: usize = 22;

/// Values a [`PseudonymBatch`] hashes side by side with SHA instructions. Measured on the
/// two-core bench machine (stand-alone, one-block HMACs): 1 lane 13.5, 2 lanes 17.4–18.1,
/// 4 lanes 16.4–17.0, 8 lanes 15.3 M values/s.
const LANES: usize = 2;

const SALT: &[u8] = b"passerelle/pseudonymisation/v1";

/// One SHA-256 message block.
type Block = GenericArray<u8, U64>;

/// SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// base64url alphabet (RFC 4648, section 5).
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Why a domain key could not be derived (never carries key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("pseudonymisation domain key could not be derived")]
    Derivation,
}

/// SHA-256 states after the key's ipad and opad blocks: as secret as the key itself.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct KeyedStates {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl KeyedStates {
    fn new(key: &[u8; 32]) -> KeyedStates {
        let mut block = Block::default();
        let mut keyed = KeyedStates {
            inner: SHA256_IV,
            outer: SHA256_IV,
        };
        for (state, pad) in [(&mut keyed.inner, 0x36u8), (&mut keyed.outer, 0x5c)] {
            // The key (32 bytes) padded with zeros to the block size, XOR the pad byte.
            block.fill(pad);
            for (b, k) in block.iter_mut().zip(key) {
                *b = k ^ pad;
            }
            sha2::compress256(state, std::slice::from_ref(&block));
        }
        block.as_mut_slice().zeroize();
        keyed
    }
}

/// The keyed function of one domain at one key version. `Debug` shows no key material.
#[derive(Clone)]
pub struct PseudonymDomain {
    id: String,
    version: u32,
    keyed: KeyedStates,
    /// The CPU's SHA instructions, when it has them.
    sha_ni: Option<ShaNi>,
}

impl std::fmt::Debug for PseudonymDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymDomain")
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PseudonymDomain {
    /// Derives the domain key `version` of domain `id` from the master secret.
    pub fn derive(
        master: &MasterKey,
        id: &str,
        version: u32,
    ) -> Result<PseudonymDomain, DomainError> {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(SALT), master.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        let info = format!("domain={id};version={version}");
        // 32 bytes is far below HKDF-SHA-256's 8160-byte limit: expand cannot fail.
        // SECURITY: any failure refuses the domain; a key is never defaulted.
        hkdf.expand(info.as_bytes(), key.as_mut())
            .map_err(|_| DomainError::Derivation)?;
        Ok(PseudonymDomain {
            id: id.to_string(),
            version,
            keyed: KeyedStates::new(&key),
            sha_ni: ShaNi::detect(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The pseudonym of `value`, written into `out` (no allocation).
    #[inline]
    pub fn pseudonymise_into(&self, value: &[u8], out: &mut [u8; PSEUDONYM_LEN]) {
        let mut block = [0u8; 64];
        if let Some(sha_ni) = self.sha_ni
            && one_block(value, &mut block)
        {
            let [mac] = sha_ni.hmac_128(&self.keyed.inner, &self.keyed.outer, &[block]);
            encode_base64url_16(&mac, out);
        } else {
            self.pseudonymise_portable(value, out);
        }
    }

    /// Pseudonyms of many values, in the order they are pushed, appended to `out`.
    pub fn batch(&self, out: Vec<[u8; PSEUDONYM_LEN]>) -> PseudonymBatch<'_> {
        PseudonymBatch {
            domain: self,
            out,
            blocks: [[0; 64]; LANES],
            slots: [0; LANES],
            pending: 0,
        }
    }

    /// The same domain without the SHA instructions (tests compare both paths).
    #[cfg(test)]
    pub(crate) fn portable(&self) -> PseudonymDomain {
        PseudonymDomain {
            sha_ni: None,
            ..self.clone()
        }
    }

    /// The pseudonym of `value` with `sha2::compress256`: any length, any CPU.
    fn pseudonymise_portable(&self, value: &[u8], out: &mut [u8; PSEUDONYM_LEN]) {
        // Inner hash: SHA-256 resumed after the ipad block, over the normalised value.
        let mut state = self.keyed.inner;
        let mut block = [0u8; 64];
        let (fill, len) = absorb_normalised(&mut state, &mut block, value);
        // Padding: 0x80, zeros, then the message bit length (ipad block + value), big-endian.
        block[fill] = 0x80;
        if fill >= 56 {
            compress(&mut state, &block);
            block = [0u8; 64];
        }
        let bits = (64 + len).wrapping_mul(8);
        block[56..].copy_from_slice(&bits.to_be_bytes());
        compress(&mut state, &block);

        // Outer hash: resumed after the opad block, over the 32-byte inner digest.
        // (Indexed loops over plain arrays: the iterator form over `GenericArray` was not
        // inlined without LTO; with the plain arrays, 6.1 → 8.0 M values/s stand-alone.)
        let mut outer = [0u8; 64];
        for w in 0..8 {
            outer[4 * w..4 * w + 4].copy_from_slice(&state[w].to_be_bytes());
        }
        outer[32] = 0x80;
        outer[56..].copy_from_slice(&((64u64 + 32) * 8).to_be_bytes());
        let mut digest = self.keyed.outer;
        compress(&mut digest, &outer);

        // The first 128 bits of the MAC (the first four state words, big-endian).
        let mut mac = [0u8; 16];
        for w in 0..4 {
            mac[4 * w..4 * w + 4].copy_from_slice(&digest[w].to_be_bytes());
        }
        encode_base64url_16(&mac, out);
    }

    /// The domain as the cluster's plan codec ships it: version, the two keyed states (as
    /// secret as the key: whoever holds them computes this domain's pseudonyms, and nothing
    /// else — neither the master key nor another domain's key follows from them), then the id.
    pub fn to_wire(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(4 + 64 + self.id.len()));
        out.extend_from_slice(&self.version.to_le_bytes());
        for word in self.keyed.inner.iter().chain(&self.keyed.outer) {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(self.id.as_bytes());
        out
    }

    /// A domain from [`Self::to_wire`]'s bytes (an executor's copy of the plan's domain).
    pub fn from_wire(bytes: &[u8]) -> Result<PseudonymDomain, DomainError> {
        if bytes.len() < 4 + 64 {
            return Err(DomainError::Derivation);
        }
        let (version, rest) = bytes.split_at(4);
        let (states, id) = rest.split_at(64);
        let mut keyed = KeyedStates {
            inner: [0; 8],
            outer: [0; 8],
        };
        for (i, word) in states.chunks_exact(4).enumerate() {
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            if i < 8 {
                keyed.inner[i] = word;
            } else {
                keyed.outer[i - 8] = word;
            }
        }
        Ok(PseudonymDomain {
            id: std::str::from_utf8(id)
                .map_err(|_| DomainError::Derivation)?
                .to_string(),
            version: u32::from_le_bytes([version[0], version[1], version[2], version[3]]),
            keyed,
            sha_ni: ShaNi::detect(),
        })
    }

    /// The pseudonym of `value` as a `String` (tests, lookups' audit keys).
    pub fn pseudonymise(&self, value: &str) -> String {
        let mut out = [0u8; PSEUDONYM_LEN];
        self.pseudonymise_into(value.as_bytes(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Pseudonyms computed in push order, [`LANES`] one-block values at a time with SHA instructions.
pub struct PseudonymBatch<'d> {
    domain: &'d PseudonymDomain,
    out: Vec<[u8; PSEUDONYM_LEN]>,
    /// Padded inner blocks waiting for a full set of lanes, and their places in `out`.
    blocks: [[u8; 64]; LANES],
    slots: [usize; LANES],
    pending: usize,
}

impl PseudonymBatch<'_> {
    /// Appends the pseudonym of `value` (written once its lanes are full, or at `finish`).
    #[inline]
    #[allow(clippy::needless_range_loop, reason = "indexed like `one_block`")]
    pub fn push(&mut self, value: &[u8]) {
        let domain = self.domain;
        if let Some(sha_ni) = domain.sha_ni
            && one_block(value, &mut self.blocks[self.pending])
        {
            self.slots[self.pending] = self.out.len();
            self.out.push([0; PSEUDONYM_LEN]);
            self.pending += 1;
            if self.pending == LANES {
                let macs = sha_ni.hmac_128(&domain.keyed.inner, &domain.keyed.outer, &self.blocks);
                for lane in 0..LANES {
                    encode_base64url_16(&macs[lane], &mut self.out[self.slots[lane]]);
                }
                self.pending = 0;
            }
        } else {
            let mut pseudonym = [0; PSEUDONYM_LEN];
            domain.pseudonymise_portable(value, &mut pseudonym);
            self.out.push(pseudonym);
        }
    }

    /// Every pushed value's pseudonym, in push order.
    pub fn finish(mut self) -> Vec<[u8; PSEUDONYM_LEN]> {
        let domain = self.domain;
        if let Some(sha_ni) = domain.sha_ni {
            for (block, slot) in self.blocks.iter().zip(self.slots).take(self.pending) {
                let [mac] = sha_ni.hmac_128(
                    &domain.keyed.inner,
                    &domain.keyed.outer,
                    std::array::from_ref(block),
                );
                encode_base64url_16(&mac, &mut self.out[slot]);
            }
        }
        self.out
    }
}

/// Writes the padded inner block of `value` (value, `0x80`, zeros, bit length of the ipad block
/// and the value) when `value` is already in normal form and fits in one block (at most 55
/// bytes); returns whether it did.
#[inline(always)]
fn one_block(value: &[u8], block: &mut [u8; 64]) -> bool {
    if value.len() > 55 {
        return false;
    }
    *block = [0; 64];
    let normal = copy_if_normal(value, block);
    block[value.len()] = 0x80;
    let bits = (64 + value.len() as u64) * 8;
    block[56..].copy_from_slice(&bits.to_be_bytes());
    normal
}

/// Copies `value` (shorter than a block) to the start of `block`, checking as it copies that it
/// is already in normal form (no ASCII whitespace, no ASCII lower case); returns whether it is.
#[inline(always)]
#[allow(clippy::needless_range_loop, reason = "see the loop")]
fn copy_if_normal(value: &[u8], block: &mut [u8; 64]) -> bool {
    let mut normal = true;
    // Indexed, like the rest of the hot path: without LTO, `zip` was left as a call.
    for i in 0..value.len() {
        let b = value[i];
        normal &= !b.is_ascii_whitespace() & !b.is_ascii_lowercase();
        block[i] = b;
    }
    normal
}

/// Absorbs the normalised form of `value` (ASCII whitespace dropped, ASCII letters upper-cased)
/// into `state`, compressing every full block; returns how many bytes are left in `block`
/// (always < 64, the rest of `block` is zero) and the normalised length.
#[inline]
fn absorb_normalised(state: &mut [u32; 8], block: &mut [u8; 64], value: &[u8]) -> (usize, u64) {
    // Fast path: a short value already in normal form (every NIR) is copied as is, checked
    // byte by byte as it is copied (the block starts zeroed, so a failed check leaves only
    // bytes that the slow path overwrites or zeroes).
    if value.len() < 64 && copy_if_normal(value, block) {
        return (value.len(), value.len() as u64);
    }
    let mut fill = 0;
    let mut len = 0u64;
    for &b in value {
        if b.is_ascii_whitespace() {
            continue;
        }
        block[fill] = b.to_ascii_uppercase();
        fill += 1;
        len += 1;
        if fill == block.len() {
            compress(state, block);
            fill = 0;
        }
    }
    block[fill..].fill(0);
    (fill, len)
}

/// 16 bytes as 22 base64url characters without padding.
#[inline(always)]
fn encode_base64url_16(bytes: &[u8; 16], out: &mut [u8; PSEUDONYM_LEN]) {
    // Indexed loops: without LTO, `chunks_exact(..).zip(..)` was left as a call per value.
    for g in 0..5 {
        let n = (u32::from(bytes[3 * g]) << 16)
            | (u32::from(bytes[3 * g + 1]) << 8)
            | u32::from(bytes[3 * g + 2]);
        for i in 0..4 {
            out[4 * g + i] = BASE64URL[((n >> (18 - 6 * i)) & 63) as usize];
        }
    }
    // 15 bytes made 20 characters; the last byte makes two (6 bits, then 2 bits and 4 zeros).
    let last = bytes[15];
    out[20] = BASE64URL[usize::from(last >> 2)];
    out[21] = BASE64URL[usize::from((last & 3) << 4)];
}

/// One SHA-256 compression of a plain 64-byte block.
#[inline(always)]
fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, std::slice::from_ref(Block::from_slice(block)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([7u8; 32])
    }

    #[test]
    fn same_value_same_domain_same_pseudonym_and_normalised() {
        let d = PseudonymDomain::derive(&master(), "projet-diabete", 1).unwrap();
        let a = d.pseudonymise("1840375056123");
        assert_eq!(a.len(), PSEUDONYM_LEN);
        assert_eq!(a, d.pseudonymise(" 1840375056123 "));
        assert_eq!(d.pseudonymise("2a004"), d.pseudonymise("2A004"));
        assert_ne!(a, d.pseudonymise("1840375056124"));
    }

    #[test]
    fn a_domain_shipped_to_the_cluster_gives_the_same_pseudonyms_and_nothing_else() {
        let d = PseudonymDomain::derive(&master(), "projet-diabete", 3).unwrap();
        let wire = d.to_wire();
        // SECURITY: the master key is not in the bytes; the keyed states are.
        assert!(!wire.windows(32).any(|w| w == [7u8; 32]));
        let copy = PseudonymDomain::from_wire(&wire).unwrap();
        assert_eq!((copy.id(), copy.version()), ("projet-diabete", 3));
        for value in ["1840375056123", "", &"x".repeat(120)] {
            assert_eq!(copy.pseudonymise(value), d.pseudonymise(value));
        }
        assert!(PseudonymDomain::from_wire(&wire[..60]).is_err());
    }

    #[test]
    fn domains_and_versions_do_not_share_pseudonyms() {
        let m = master();
        let a = PseudonymDomain::derive(&m, "projet-diabete", 1)
            .unwrap()
            .pseudonymise("1840375056123");
        let b = PseudonymDomain::derive(&m, "projet-emploi", 1)
            .unwrap()
            .pseudonymise("1840375056123");
        let c = PseudonymDomain::derive(&m, "projet-diabete", 2)
            .unwrap()
            .pseudonymise("1840375056123");
        let other_master = MasterKey::from_bytes([8u8; 32]);
        let d = PseudonymDomain::derive(&other_master, "projet-diabete", 1)
            .unwrap()
            .pseudonymise("1840375056123");
        assert!(a != b && a != c && a != d && b != c);
    }

    proptest::proptest! {
        /// The identifier normal form (ASCII whitespace dropped, ASCII letters upper-cased):
        /// any value and its normal form get one pseudonym, on the one-block fast path, the
        /// batch lanes and the slow path alike, equal to the `hmac` crate's.
        #[test]
        fn a_value_and_its_normal_form_share_one_pseudonym(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..140),
            spaces in proptest::collection::vec((0usize..140, proptest::sample::select(vec![b' ', b'\t', b'\n', b'\r', 0x0c])), 0..6),
        ) {
            let m = master();
            let d = PseudonymDomain::derive(&m, "projet-diabete", 1).unwrap();
            let mut spaced = value.clone();
            for (at, space) in spaces {
                spaced.insert(at.min(spaced.len()), space);
            }
            let normal: Vec<u8> = value
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .map(u8::to_ascii_uppercase)
                .collect();
            let expected = reference(&m, "projet-diabete", 1, &normal);
            proptest::prop_assert_eq!(&fast(&d, &value), &expected);
            proptest::prop_assert_eq!(&fast(&d, &spaced), &expected);
            proptest::prop_assert_eq!(&fast(&d, &normal), &expected);
            let mut batch = d.batch(Vec::new());
            for v in [&value, &spaced, &normal] {
                batch.push(v);
            }
            for out in batch.finish() {
                proptest::prop_assert_eq!(&String::from_utf8(out.to_vec()).unwrap(), &expected);
            }
        }
    }

    #[test]
    fn long_values_with_spaces_normalise_across_buffer_boundaries() {
        let d = PseudonymDomain::derive(&master(), "x", 1).unwrap();
        let long = "ab ".repeat(100);
        assert_eq!(d.pseudonymise(&long), d.pseudonymise(&"AB".repeat(100)));
    }

    /// The pseudonym as the `hmac` crate computes it, from the same derived key.
    fn reference(master: &MasterKey, id: &str, version: u32, value: &[u8]) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(SALT), master.expose());
        let mut key = [0u8; 32];
        hkdf.expand(
            format!("domain={id};version={version}").as_bytes(),
            &mut key,
        )
        .unwrap();
        let normalised: Vec<u8> = value
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(u8::to_ascii_uppercase)
            .collect();
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(&normalised);
        let digest = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    }

    fn fast(domain: &PseudonymDomain, value: &[u8]) -> String {
        let mut out = [0u8; PSEUDONYM_LEN];
        domain.pseudonymise_into(value, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn known_answers_match_the_hmac_crate_for_every_length_up_to_200() {
        let m = master();
        let d = PseudonymDomain::derive(&m, "projet-diabete", 1).unwrap();
        // Pinned values (independently computed with Python's hmac and hashlib).
        assert_eq!(d.pseudonymise("1840375056123"), "4TBASDxFA2_YNgulKd_l3g");
        assert_eq!(d.pseudonymise(""), "cETOl1th7mHluSTmHCaDuw");
        let other = PseudonymDomain::derive(&other_master(), "x", 7).unwrap();
        for len in 0..200usize {
            let digits: Vec<u8> = (0..len).map(|i| b'0' + (i % 10) as u8).collect();
            // Lower-case letters, every ASCII whitespace, upper case, punctuation and UTF-8:
            // normalised lengths cross the 55/56 and 64-byte block boundaries.
            let mixed: Vec<u8> = "ab \t2a\nZé\r\x0c-x".bytes().cycle().take(len).collect();
            let spaced: Vec<u8> = digits
                .iter()
                .enumerate()
                .flat_map(|(i, &b)| if i % 7 == 3 { vec![b' ', b] } else { vec![b] })
                .collect();
            let binary: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            for value in [&digits, &mixed, &spaced, &binary] {
                let expected = reference(&m, "projet-diabete", 1, value);
                // With the CPU's SHA instructions when it has them, and without.
                assert_eq!(fast(&d, value), expected, "{len}");
                assert_eq!(fast(&d.portable(), value), expected, "{len}");
                assert_eq!(
                    fast(&other, value),
                    reference(&other_master(), "x", 7, value)
                );
            }
        }
    }

    /// Values of every kind in one batch: one-block values in normal form (the lanes), values
    /// to normalise, long values and empty ones, in every order and count.
    #[test]
    fn a_batch_gives_each_value_its_own_pseudonym_in_order() {
        let m = master();
        let d = PseudonymDomain::derive(&m, "projet-diabete", 1).unwrap();
        let kinds: Vec<Vec<u8>> = vec![
            b"1840375056123".to_vec(),
            b"2a004".to_vec(),
            b"".to_vec(),
            b" 2840375056124".to_vec(),
            vec![b'7'; 55],
            vec![b'8'; 56],
            b"ab ".repeat(40),
            "Zé".as_bytes().to_vec(),
        ];
        for count in 0..40usize {
            for start in 0..kinds.len() {
                let values: Vec<&[u8]> = (0..count)
                    .map(|i| kinds[(start + i * (i + 1) / 2) % kinds.len()].as_slice())
                    .collect();
                for domain in [&d, &d.portable()] {
                    let mut batch = domain.batch(Vec::new());
                    for value in &values {
                        batch.push(value);
                    }
                    let got = batch.finish();
                    assert_eq!(got.len(), values.len());
                    for (pseudonym, value) in got.iter().zip(&values) {
                        assert_eq!(
                            std::str::from_utf8(pseudonym).unwrap(),
                            reference(&m, "projet-diabete", 1, value)
                        );
                    }
                }
            }
        }
    }

    fn other_master() -> MasterKey {
        MasterKey::from_bytes([200; 32])
    }

    #[test]
    fn base64url_encoding_matches_the_base64_crate() {
        use base64::Engine;
        for seed in 0u8..=255 {
            let bytes: [u8; 16] = std::array::from_fn(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(97))
            });
            let mut out = [0u8; PSEUDONYM_LEN];
            encode_base64url_16(&bytes, &mut out);
            assert_eq!(
                out.as_slice(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(bytes)
                    .as_bytes()
            );
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let d = PseudonymDomain::derive(&master(), "projet-diabete", 3).unwrap();
        let text = format!("{d:?}");
        assert!(text.contains("projet-diabete") && text.contains('3'));
        assert!(!text.contains("keyed") && !text.contains("inner") && !text.contains("outer"));
    }
}
