//! The bytes the load generator sends, so every echo can be checked.
//!
//! Byte `i` of a stream is `TABLE[i % PERIOD]`, a pseudo-random table whose
//! period (a prime) is not a multiple of any message size, so a misplaced,
//! lost or repeated chunk never matches by accident. The table is stored
//! with a tail of [`MAX_SLICE`] extra bytes, so any window of up to that
//! length starting anywhere in the period is one contiguous slice: sending
//! and checking are plain slice operations (`write_all`, `==`).

use std::sync::LazyLock;

/// Period of the pattern (the largest prime below 2^16).
pub const PERIOD: usize = 65_521;
/// Longest window [`window`] hands out.
pub const MAX_SLICE: usize = 128 * 1024;

static TABLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let period: Vec<u8> = (0..PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    period.iter().cycle().take(PERIOD + MAX_SLICE).copied().collect()
});

/// The `len` bytes of the pattern starting at stream offset `offset`.
///
/// # Panics
/// If `len` exceeds [`MAX_SLICE`].
pub fn window(offset: u64, len: usize) -> &'static [u8] {
    assert!(len <= MAX_SLICE, "pattern window of {len} bytes is too long");
    let start = (offset % PERIOD as u64) as usize;
    &TABLE[start..start + len]
}

/// The stream offset where message `round` of connection `conn` starts,
/// for protocols that send one message of `size` bytes per round.
pub fn message_offset(conn: usize, round: u64, size: usize) -> u64 {
    (conn as u64)
        .wrapping_mul(7_919)
        .wrapping_add(round.wrapping_mul(size as u64 + 13))
}

/// Checks that `got` is the pattern at `offset`; on a mismatch returns
/// the index of the first differing byte.
pub fn check(got: &[u8], offset: u64) -> Result<(), usize> {
    let want = window(offset, got.len());
    if got == want {
        Ok(())
    } else {
        Err(got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_around_the_period() {
        let a = window(PERIOD as u64 - 3, 10);
        let b = window(2 * PERIOD as u64 - 3, 10);
        assert_eq!(a, b);
        assert_eq!(&a[3..], window(0, 7));
        assert!(check(a, PERIOD as u64 - 3).is_ok());
        assert_eq!(check(window(1, 10), 0), Err(0));
    }
}
