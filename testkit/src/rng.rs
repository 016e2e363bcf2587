//! Small seeded pseudo-random generators, so a test or tool run that
//! prints its seed can be replayed exactly. Not for anything secret.
//!
//! Two generators, because tools already depend on what each draws from a
//! given seed (a seed printed by an earlier run must replay the same run):
//!
//! * [`SplitMix64`]: what the stress tools (`soak`, `abuse`) draw sizes,
//!   behaviours and pattern tables from.
//! * [`XorShift64Star`]: the generator of gaio's model test
//!   (`gaio/tests/model.rs`), whose `GAIO_MODEL_SEED` replays a case; the
//!   same draws, for when that test takes it from here.
//!
//! Both are a few lines, fast and dependency-free; neither is meant to be
//! statistically strong beyond choosing sizes and branches.

/// SplitMix64 (Steele, Lea and Flood): a 64-bit counter stepped by the
/// golden-ratio constant and scrambled. Fast, and good enough for choosing
/// sizes and behaviours.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

/// Mixed into the seed so that seed 0 does not start from state 0.
const SPLITMIX_SEED_MASK: u64 = 0x5DEE_CE66_D1CE_4E5B;

impl SplitMix64 {
    /// A generator seeded with `seed`: the same seed gives the same
    /// sequence on every run and platform.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed ^ SPLITMIX_SEED_MASK)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift: no modulo bias worth
    /// caring about here.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as usize
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Log-uniform in `lo..=hi` (`lo >= 1`): every power of two between
    /// them is about as likely, so small and large sizes both occur often.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (llo, lhi) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((llo + u * (lhi - llo)).exp() as usize).clamp(lo, hi)
    }

    /// Fills `buf` with random bytes: each draw's 8 bytes in little-endian
    /// order, the last draw cut short.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// xorshift64* (Vigna), its state started by one SplitMix64 step of the
/// seed so that neighbouring seeds start far apart. Draws in a range by
/// modulo (a bias far below what a test notices).
#[derive(Debug, Clone)]
pub struct XorShift64Star(u64);

impl XorShift64Star {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // xorshift's state must not be zero.
        XorShift64Star((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `0..n` (`n > 0`), by modulo.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True with probability `num / den` (the model test's `chance(p)` is
    /// `chance(p, 100)`).
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items` (not empty), each as likely.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the draws, to pin long sequences in one number.
    fn fnv(words: impl IntoIterator<Item = u64>) -> u64 {
        let mut h = 0xCBF2_9CE4_8422_2325_u64;
        for w in words {
            for b in w.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
            }
        }
        h
    }

    // The pinned values below were produced by the copies these generators
    // replace (stress/src/rng.rs, gaio/tests/model.rs): a change here would
    // make every seed printed by an earlier run replay something else.

    #[test]
    fn splitmix64_draws_what_the_stress_tools_drew() {
        let mut r = SplitMix64::new(0);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                0x95B1_6F87_C43B_DE85,
                0x5D89_FAF7_885C_0810,
                0x9B89_248D_3008_3767
            ]
        );
        let mut r = SplitMix64::new(42);
        assert_eq!(fnv((0..1000).map(|_| r.next_u64())), 0x3326_CE55_5BF9_DB64);
        let mut r = SplitMix64::new(7);
        let drawn: Vec<u64> = (0..100)
            .map(|i| match i % 4 {
                0 => r.below(1000),
                1 => r.range(3, 17) as u64,
                2 => u64::from(r.chance(1, 3)),
                _ => r.log_uniform(1, 65536) as u64,
            })
            .collect();
        assert_eq!(fnv(drawn), 0x1638_02DF_7698_1AEA);
        let mut bytes = [0u8; 13];
        SplitMix64::new(5).fill(&mut bytes);
        assert_eq!(bytes, [180, 50, 220, 159, 83, 164, 128, 87, 210, 73, 50, 86, 73]);
    }

    #[test]
    fn xorshift64star_draws_what_the_model_test_drew() {
        let mut r = XorShift64Star::new(0);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                0x7BBC_B40D_5506_82D0,
                0xDE7F_E413_D00C_C9FD,
                0xB3C6_3835_3C66_8C91
            ]
        );
        let mut r = XorShift64Star::new(20_240_601);
        let drawn: Vec<u64> = (0..100)
            .map(|i| match i % 4 {
                0 => r.below(1000),
                1 => r.range(3, 17) as u64,
                2 => u64::from(r.chance(35, 100)),
                _ => r.pick(&[1u64, 2, 64]),
            })
            .collect();
        assert_eq!(fnv(drawn), 0x92C0_4BA6_FD50_AA63);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut a = SplitMix64::new(1);
        let mut b = XorShift64Star::new(1);
        for _ in 0..10_000 {
            assert!(a.below(7) < 7);
            assert!((5..=9).contains(&a.range(5, 9)));
            assert!((1..=4096).contains(&a.log_uniform(1, 4096)));
            assert!(b.below(7) < 7);
            assert!((5..=9).contains(&b.range(5, 9)));
        }
        assert_eq!(a.range(3, 3), 3);
        assert_eq!(b.range(3, 3), 3);
        assert!(!a.chance(0, 5) && a.chance(5, 5));
        assert!(!b.chance(0, 5) && b.chance(5, 5));
    }

    #[test]
    fn log_uniform_reaches_both_ends() {
        let mut r = SplitMix64::new(9);
        let draws: Vec<usize> = (0..20_000).map(|_| r.log_uniform(1, 1024)).collect();
        assert!(draws.contains(&1));
        assert!(draws.iter().any(|&d| d > 512));
        // About as many below 32 (the lower half of the exponents) as above.
        let low = draws.iter().filter(|&&d| d < 32).count();
        assert!((8_000..12_000).contains(&low), "{low} of 20000 below 32");
    }
}
