//! The bytes the load generator sends, so every echo can be checked.
//!
//! Byte `i` of a stream is byte `i % PERIOD` of one fixed pseudo-random
//! table, [`gaio_testkit::pattern::Periodic::fixed`], whose period (a
//! prime) is not a multiple of any message size, so a misplaced, lost or
//! repeated chunk never matches by accident. The table is kept with a tail
//! of [`MAX_SLICE`] extra bytes, so any window of up to that length
//! starting anywhere in the period is one contiguous slice: sending and
//! checking are plain slice operations (`write_all`, `==`).

use std::sync::LazyLock;

use gaio_testkit::pattern::Periodic;
pub use gaio_testkit::pattern::PERIOD;
use gaio_testkit::pattern::STREAM_STRIDE;

/// Longest window [`window`] hands out.
pub const MAX_SLICE: usize = 128 * 1024;

static PATTERN: LazyLock<Periodic> = LazyLock::new(|| Periodic::fixed(MAX_SLICE));

/// The `len` bytes of the pattern starting at stream offset `offset`.
///
/// # Panics
/// If `len` exceeds [`MAX_SLICE`].
pub fn window(offset: u64, len: usize) -> &'static [u8] {
    PATTERN.window(offset, len)
}

/// The stream offset where message `round` of connection `conn` starts,
/// for protocols that send one message of `size` bytes per round:
/// connections start [`STREAM_STRIDE`] bytes apart.
pub fn message_offset(conn: usize, round: u64, size: usize) -> u64 {
    (conn as u64)
        .wrapping_mul(STREAM_STRIDE)
        .wrapping_add(round.wrapping_mul(size as u64 + 13))
}

/// Checks that `got` is the pattern at `offset`; on a mismatch returns
/// the index of the first differing byte.
pub fn check(got: &[u8], offset: u64) -> Result<(), usize> {
    PATTERN.check(offset, got)
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
