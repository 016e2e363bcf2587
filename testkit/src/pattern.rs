//! Verifiable byte streams: bytes a sender produces and a receiver checks
//! knowing only where in the stream they belong, so that lost, repeated,
//! reordered or misrouted bytes show.
//!
//! Two kinds, each with the bytes its users have always sent (tests and
//! tools compare against them, and a seed printed by an earlier run must
//! replay the same bytes):
//!
//! * [`xorshift_bytes`]: a fresh vector per seed (gaio's integration
//!   tests: one seed per connection and message).
//! * [`Periodic`]: a table of [`PERIOD`] bytes repeated forever; byte
//!   `off` of a stream is `table[off % PERIOD]`. Filling and checking are
//!   slice copies and compares at any offset, however long the stream
//!   (the benchmark's load generator, the stress tools). Its two tables
//!   are [`Periodic::fixed`] (the benchmark's) and [`Periodic::seeded`]
//!   (the stress tools', one per run seed).
//!
//! The period is a prime, so it is not a multiple of any message size: a
//! chunk sent at the wrong offset mismatches unless the shift is a
//! multiple of the period. Streams that share one table start at offsets
//! [`STREAM_STRIDE`] apart ([`stream_offset`]), so one stream's bytes do
//! not pass as another's.

use crate::rng::SplitMix64;

/// Length of one period of a [`Periodic`] pattern: the largest prime below
/// 2^16.
pub const PERIOD: usize = 65_521;

/// Offset between the starts of consecutive streams sharing a [`Periodic`]
/// table (a prime, and a unit modulo [`PERIOD`], so every stream number
/// below `PERIOD` starts somewhere else).
pub const STREAM_STRIDE: u64 = 7_919;

/// The golden-ratio constant, 2^64 / φ: where both xorshift patterns start.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// One step of Marsaglia's xorshift64 (shifts 13, 7, 17); returns the new
/// state. A non-zero state never becomes zero.
fn xorshift64(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// `len` bytes of the pattern of `seed`: the low byte of each xorshift64
/// state, starting from `seed * GOLDEN | 1`. Different seeds give
/// unrelated bytes, so a test gives each connection (or message) its own
/// seed and catches bytes delivered to the wrong one.
///
/// This is the pattern of gaio's integration tests (`util::pattern`).
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(GOLDEN) | 1;
    (0..len).map(|_| xorshift64(&mut x) as u8).collect()
}

/// Where byte `off` of stream `stream` lies in a [`Periodic`] table: the
/// streams start [`STREAM_STRIDE`] bytes apart. The result is below
/// [`PERIOD`].
pub fn stream_offset(stream: u64, off: u64) -> u64 {
    let p = PERIOD as u64;
    (off % p + (stream % p) * STREAM_STRIDE) % p
}

/// A pattern that repeats every [`PERIOD`] bytes: byte `off` of the stream
/// is `table[off % PERIOD]`.
///
/// The table is stored with a tail of `max_window` more bytes (the period
/// again, cut short), so a window of up to `max_window` bytes from any
/// offset is one contiguous slice ([`window`](Self::window)); longer
/// spans are filled and checked piecewise.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// One period, then `max_window` bytes more.
    table: Vec<u8>,
    max_window: usize,
}

impl Periodic {
    /// The benchmark's pattern: each byte is bits 24..32 of successive
    /// xorshift64 states started at the golden-ratio constant. The same
    /// table in every process, so a server and a load generator need agree
    /// on nothing.
    ///
    /// # Panics
    /// If `max_window` is 0.
    pub fn fixed(max_window: usize) -> Self {
        let mut x = GOLDEN;
        let period = (0..PERIOD).map(|_| (xorshift64(&mut x) >> 24) as u8).collect();
        Periodic::from_period(period, max_window)
    }

    /// The stress tools' pattern for a run seeded with `seed`: the period
    /// is [`SplitMix64::new(seed)`](SplitMix64::new)'s
    /// [`fill`](SplitMix64::fill).
    ///
    /// # Panics
    /// If `max_window` is 0.
    pub fn seeded(seed: u64, max_window: usize) -> Self {
        let mut period = vec![0; PERIOD];
        SplitMix64::new(seed).fill(&mut period);
        Periodic::from_period(period, max_window)
    }

    fn from_period(period: Vec<u8>, max_window: usize) -> Self {
        assert!(max_window > 0, "a pattern window must hold at least one byte");
        let table = period.iter().cycle().take(PERIOD + max_window).copied().collect();
        Periodic { table, max_window }
    }

    /// The longest slice [`window`](Self::window) hands out.
    pub fn max_window(&self) -> usize {
        self.max_window
    }

    /// The `len` bytes of the pattern from stream offset `offset`, as one
    /// slice of the table.
    ///
    /// # Panics
    /// If `len` exceeds [`max_window`](Self::max_window).
    pub fn window(&self, offset: u64, len: usize) -> &[u8] {
        assert!(
            len <= self.max_window,
            "pattern window of {len} bytes is too long (at most {})",
            self.max_window
        );
        let start = (offset % PERIOD as u64) as usize;
        &self.table[start..start + len]
    }

    /// Fills `buf` with the pattern from stream offset `offset` on (any
    /// length).
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut at = offset % PERIOD as u64;
        for chunk in buf.chunks_mut(self.max_window) {
            chunk.copy_from_slice(self.window(at, chunk.len()));
            at = (at + chunk.len() as u64) % PERIOD as u64;
        }
    }

    /// The `len` bytes of the pattern from stream offset `offset`, as a new
    /// vector (any length).
    pub fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(offset, &mut v);
        v
    }

    /// Checks that `data` is the pattern from stream offset `offset` on
    /// (any length); on a mismatch returns the index in `data` of the
    /// first wrong byte.
    pub fn check(&self, offset: u64, data: &[u8]) -> Result<(), usize> {
        let mut at = offset % PERIOD as u64;
        let mut done = 0;
        for chunk in data.chunks(self.max_window) {
            let want = self.window(at, chunk.len());
            if chunk != want {
                let i = chunk.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Err(done + i);
            }
            done += chunk.len();
            at = (at + chunk.len() as u64) % PERIOD as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a, to pin long byte strings in one number.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        })
    }

    // The pinned values below were produced by the copies this module
    // replaces (gaio/tests/util, bench/src/pattern.rs,
    // stress/src/pattern.rs): tests and tools compare against these bytes.

    #[test]
    fn xorshift_bytes_are_the_integration_tests_bytes() {
        assert_eq!(xorshift_bytes(0, 8), [65, 65, 41, 37, 101, 1, 113, 13]);
        assert_eq!(fnv(&xorshift_bytes(1 << 32, 1000)), 0x1D9F_3222_1E44_31AD);
        assert_eq!(fnv(&xorshift_bytes(u64::MAX, 100_000)), 0xF731_37B0_5DB4_6926);
        // A prefix of a longer run.
        assert_eq!(xorshift_bytes(9, 10), xorshift_bytes(9, 100)[..10]);
        assert_ne!(xorshift_bytes(9, 100), xorshift_bytes(10, 100));
    }

    #[test]
    fn the_fixed_table_is_the_benchmarks() {
        let p = Periodic::fixed(128 * 1024);
        assert_eq!(p.window(0, 8), [11, 2, 229, 54, 161, 78, 214, 26]);
        assert_eq!(fnv(p.window(0, PERIOD)), 0x94A2_0854_F935_C76F);
    }

    #[test]
    fn a_seeded_table_is_the_stress_tools() {
        let p = Periodic::seeded(7, PERIOD);
        assert_eq!(p.window(0, 8), [168, 69, 15, 4, 138, 229, 20, 216]);
        assert_eq!(fnv(p.window(0, PERIOD)), 0x0C0D_36D9_B906_E2F1);
        assert_eq!(
            fnv(&p.bytes(stream_offset(3, 100), 3 * PERIOD + 17)),
            0xFCE4_51AD_55CF_3640
        );
        assert_ne!(p.window(0, 64), Periodic::seeded(8, PERIOD).window(0, 64));
    }

    #[test]
    fn windows_wrap_around_the_period() {
        let p = Periodic::fixed(16);
        let a = p.window(PERIOD as u64 - 3, 10);
        assert_eq!(a, p.window(2 * PERIOD as u64 - 3, 10));
        assert_eq!(&a[3..], p.window(0, 7));
        assert!(p.check(PERIOD as u64 - 3, a).is_ok());
        assert_eq!(p.check(0, p.window(1, 10)), Err(0));
    }

    #[test]
    #[should_panic(expected = "too long")]
    fn a_window_longer_than_the_tail_panics() {
        Periodic::fixed(16).window(5, 17);
    }

    #[test]
    fn fill_and_check_agree_across_periods_and_split_points() {
        // A short tail, so long spans go piecewise through the table.
        for max_window in [1, 1000, PERIOD, 2 * PERIOD + 1] {
            let p = Periodic::seeded(7, max_window);
            let start = stream_offset(3, 100);
            let whole = p.bytes(start, 3 * PERIOD + 17);
            assert_eq!(whole, Periodic::seeded(7, PERIOD).bytes(start, whole.len()));
            assert!(p.check(start, &whole).is_ok());
            // Any split of the stream checks piecewise at its own offset.
            let (a, b) = whole.split_at(PERIOD + 5);
            assert!(p.check(start, a).is_ok());
            assert!(p.check(start + a.len() as u64, b).is_ok());
            // A shifted, corrupted or foreign slice does not.
            assert!(p.check(start + 1, a).is_err());
            assert!(p.check(stream_offset(4, 100), a).is_err());
            let mut bad = whole.clone();
            bad[PERIOD + 9] ^= 1;
            assert_eq!(p.check(start, &bad), Err(PERIOD + 9));
        }
    }

    #[test]
    fn streams_start_apart() {
        assert_eq!(stream_offset(0, 5), 5);
        assert_eq!(stream_offset(1, 0), STREAM_STRIDE);
        assert_eq!(stream_offset(2, PERIOD as u64), 2 * STREAM_STRIDE);
        assert!(stream_offset(u64::MAX, u64::MAX) < PERIOD as u64);
        let starts: std::collections::HashSet<u64> =
            (0..PERIOD as u64).map(|s| stream_offset(s, 0)).collect();
        assert_eq!(starts.len(), PERIOD);
    }
}
