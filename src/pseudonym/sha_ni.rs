//! HMAC-SHA-256 of one-block messages with the CPU's SHA extensions, several messages at a time.
//!
//! Owns: the SHA-256 compression function written with the x86-64 SHA instructions
//! (`sha256rnds2`, `sha256msg1`, `sha256msg2`), and the HMAC of messages whose padded inner
//! block is a single 64-byte block (normalised values of at most 55 bytes: every NIR, SIREN,
//! SIRET). `N` independent messages are hashed in one pass so that their dependency chains
//! overlap: one message at a time, SHA-NI rounds wait for each other.
//!
//! Must never: keep a key or a keyed state (the caller passes its states on each call and they
//! live only in registers and this call's stack frame), run without the CPU features it names
//! ([`ShaNi`] exists only after they were detected), or compute anything other than standard
//! SHA-256: `domain`'s tests compare every result with the `sha2` and `hmac` crates.
//!
//! This is the crate's only `unsafe` code: calling the `#[target_feature]` function from code
//! compiled without those features. The instructions themselves are safe intrinsics; vectors are
//! built from byte arrays with `bytemuck` (no raw pointer).

/// Proof that this CPU has the SHA, SSSE3 and SSE4.1 instructions (x86-64 only).
#[derive(Clone, Copy, Debug)]
pub(super) struct ShaNi {
    _detected: Detected,
}

#[cfg(target_arch = "x86_64")]
type Detected = ();
/// On other architectures a `ShaNi` cannot exist.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
enum Detected {}

impl ShaNi {
    /// `Some` when the CPU has the instructions this module uses.
    pub(super) fn detect() -> Option<ShaNi> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            return Some(ShaNi { _detected: () });
        }
        None
    }

    /// The first 128 bits of HMAC-SHA-256 of `N` messages, each given as its padded inner
    /// block (message, `0x80`, zeros, bit length of ipad block + message). `inner` and `outer`
    /// are the SHA-256 states after the key's ipad and opad blocks.
    #[inline]
    pub(super) fn hmac_128<const N: usize>(
        self,
        inner: &[u32; 8],
        outer: &[u32; 8],
        blocks: &[[u8; 64]; N],
    ) -> [[u8; 16]; N] {
        #[cfg(target_arch = "x86_64")]
        {
            #[allow(unsafe_code, reason = "target_feature call after runtime detection")]
            // SAFETY: `self` exists only if `detect` found sha, sse2, ssse3 and sse4.1, the
            // features `x86::hmac_128` is compiled for; it reads and writes nothing but its
            // arguments and return value.
            unsafe {
                x86::hmac_128(inner, outer, blocks)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self._detected {}
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_set_epi32, _mm_set_epi64x,
        _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi8,
        _mm_shuffle_epi32, _mm_unpackhi_epi64, _mm_unpacklo_epi64,
    };

    /// SHA-256 round constants (FIPS 180-4, 4.2.2), four per round group.
    const K: [[u32; 4]; 16] = [
        [0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5],
        [0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5],
        [0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3],
        [0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174],
        [0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc],
        [0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da],
        [0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7],
        [0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967],
        [0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13],
        [0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85],
        [0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3],
        [0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070],
        [0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5],
        [0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3],
        [0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208],
        [0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2],
    ];

    /// A SHA-256 state in the two registers the SHA instructions work on: words A, B, E, F
    /// and C, D, G, H (A and C in the highest lane).
    #[derive(Clone, Copy)]
    struct State {
        abef: __m128i,
        cdgh: __m128i,
    }

    /// Four 32-bit words, the first in the lowest lane.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn words(w: [u32; 4]) -> __m128i {
        // `as i32` reinterprets the bits (the intrinsic's parameter type), it changes none.
        _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    #[inline]
    fn state(s: &[u32; 8]) -> State {
        let dcba = _mm_shuffle_epi32::<0xB1>(words([s[0], s[1], s[2], s[3]]));
        let efgh = _mm_shuffle_epi32::<0x1B>(words([s[4], s[5], s[6], s[7]]));
        State {
            abef: _mm_alignr_epi8::<8>(dcba, efgh),
            cdgh: _mm_blend_epi16::<0xF0>(efgh, dcba),
        }
    }

    /// Words A, B, C, D and E, F, G, H of a state, the first in the lowest lane: the digest
    /// as SHA-256 message words (the digest's big-endian bytes, already decoded).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    #[inline]
    fn digest_words(s: State) -> [__m128i; 2] {
        [
            _mm_shuffle_epi32::<0xB1>(_mm_unpackhi_epi64(s.abef, s.cdgh)),
            _mm_shuffle_epi32::<0xB1>(_mm_unpacklo_epi64(s.abef, s.cdgh)),
        ]
    }

    /// The 16 message words of a block, four per vector, decoded from big-endian.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    #[inline]
    fn block_words(block: &[u8; 64]) -> [__m128i; 4] {
        let big_endian = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let parts: &[[u8; 16]; 4] = bytemuck::cast_ref(block);
        let word =
            |i: usize| _mm_shuffle_epi8(bytemuck::cast::<[u8; 16], __m128i>(parts[i]), big_endian);
        [word(0), word(1), word(2), word(3)]
    }

    /// One SHA-256 compression of each of `N` independent blocks, interleaved round by round.
    /// (Indexed loops: without LTO, iterator adaptors were left as calls inside this
    /// target-feature function and the rounds were not unrolled, 5.0 instead of 13 M/s.)
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    #[inline]
    #[allow(clippy::needless_range_loop, reason = "see above")]
    fn compress<const N: usize>(states: &mut [State; N], mut w: [[__m128i; 4]; N]) {
        let start = *states;
        for group in 0..16 {
            let k = words(K[group]);
            for l in 0..N {
                // Message schedule: the first four groups are the block, the next ones
                // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four words at a time.
                let next = if group < 4 {
                    w[l][group]
                } else {
                    let sigma0 = _mm_sha256msg1_epu32(w[l][0], w[l][1]);
                    let with_t7 = _mm_add_epi32(sigma0, _mm_alignr_epi8::<4>(w[l][3], w[l][2]));
                    let next = _mm_sha256msg2_epu32(with_t7, w[l][3]);
                    w[l] = [w[l][1], w[l][2], w[l][3], next];
                    next
                };
                let wk = _mm_add_epi32(next, k);
                states[l].cdgh = _mm_sha256rnds2_epu32(states[l].cdgh, states[l].abef, wk);
                states[l].abef = _mm_sha256rnds2_epu32(
                    states[l].abef,
                    states[l].cdgh,
                    _mm_shuffle_epi32::<0x0E>(wk),
                );
            }
        }
        for l in 0..N {
            states[l].abef = _mm_add_epi32(states[l].abef, start[l].abef);
            states[l].cdgh = _mm_add_epi32(states[l].cdgh, start[l].cdgh);
        }
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    #[inline]
    #[allow(clippy::needless_range_loop, reason = "see `compress`")]
    pub(super) fn hmac_128<const N: usize>(
        inner: &[u32; 8],
        outer: &[u32; 8],
        blocks: &[[u8; 64]; N],
    ) -> [[u8; 16]; N] {
        let mut states = [state(inner); N];
        let mut message = [[words([0; 4]); 4]; N];
        for l in 0..N {
            message[l] = block_words(&blocks[l]);
        }
        compress(&mut states, message);

        // Outer block: the 32-byte inner digest, 0x80, zeros, bit length (64 + 32) * 8.
        let pad = words([0x8000_0000, 0, 0, 0]);
        let length = words([0, 0, 0, (64 + 32) * 8]);
        for l in 0..N {
            let [abcd, efgh] = digest_words(states[l]);
            message[l] = [abcd, efgh, pad, length];
        }
        let mut states = [state(outer); N];
        compress(&mut states, message);

        // The first four words of the MAC, big-endian.
        let big_endian = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let mut macs = [[0u8; 16]; N];
        for l in 0..N {
            let [abcd, _] = digest_words(states[l]);
            macs[l] = bytemuck::cast::<__m128i, [u8; 16]>(_mm_shuffle_epi8(abcd, big_endian));
        }
        macs
    }
}
