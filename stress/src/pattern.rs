//! A verifiable byte stream: byte `off` of stream `id` is a fixed function
//! of both, taken from a random table, so filling and checking are plain
//! memory copies and compares.
//!
//! The table period is a prime (65,521), so a stream that lost, duplicated
//! or reordered bytes, or received another stream's bytes, mismatches
//! unless the shift is a multiple of the period *and* the stream offsets
//! line up, which the checks at message boundaries rule out in practice.

use crate::Rng;

/// Length of one period of the pattern.
const PERIOD: usize = 65_521;
/// Offset between the patterns of consecutive streams (a unit mod PERIOD).
const STREAM_STRIDE: u64 = 7_919;

/// The pattern of every stream of one run.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Two periods, so any period-long window is one contiguous slice.
    table: Vec<u8>,
}

impl Pattern {
    /// The pattern of the run seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut first = vec![0; PERIOD];
        Rng::new(seed).fill(&mut first);
        let mut table = first.clone();
        table.extend_from_slice(&first);
        Pattern { table }
    }

    fn start(stream: u64, off: u64) -> usize {
        let p = PERIOD as u64;
        ((off % p + (stream % p) * STREAM_STRIDE) % p) as usize
    }

    /// Fills `buf` with bytes `off..off + buf.len()` of stream `stream`.
    pub fn fill(&self, stream: u64, off: u64, buf: &mut [u8]) {
        let mut pos = Self::start(stream, off);
        for chunk in buf.chunks_mut(PERIOD) {
            chunk.copy_from_slice(&self.table[pos..pos + chunk.len()]);
            pos = (pos + chunk.len()) % PERIOD;
        }
    }

    /// Bytes `off..off + len` of stream `stream`, as a new vector.
    pub fn bytes(&self, stream: u64, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(stream, off, &mut v);
        v
    }

    /// Checks that `data` is bytes `off..off + data.len()` of stream
    /// `stream`; returns the index of the first wrong byte if it is not.
    pub fn check(&self, stream: u64, off: u64, data: &[u8]) -> Result<(), usize> {
        let mut pos = Self::start(stream, off);
        let mut at = 0;
        for chunk in data.chunks(PERIOD) {
            let want = &self.table[pos..pos + chunk.len()];
            if chunk != want {
                let i = chunk.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Err(at + i);
            }
            at += chunk.len();
            pos = (pos + chunk.len()) % PERIOD;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_check_agree_across_periods_and_split_points() {
        let p = Pattern::new(7);
        let whole = p.bytes(3, 100, 3 * PERIOD + 17);
        assert!(p.check(3, 100, &whole).is_ok());
        // Any split of the stream checks piecewise at its own offset.
        let (a, b) = whole.split_at(PERIOD + 5);
        assert!(p.check(3, 100, a).is_ok());
        assert!(p.check(3, 100 + a.len() as u64, b).is_ok());
        // A shifted, corrupted or foreign slice does not.
        assert!(p.check(3, 101, a).is_err());
        assert!(p.check(4, 100, a).is_err());
        let mut bad = whole.clone();
        bad[PERIOD + 9] ^= 1;
        assert_eq!(p.check(3, 100, &bad), Err(PERIOD + 9));
    }
}
