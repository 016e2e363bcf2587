//! A growable array stored in fixed-size chunks that never move.
//!
//! A `Vec` doubles by reallocating and copying; the freed old block often
//! stays resident (the allocator keeps it for reuse), so a table grown to
//! ten thousand connections can pin about as much garbage as it holds.
//! Chunks are allocated once at their final size and never copied, so the
//! memory a table holds is what it uses, rounded up to one chunk.

use std::ops::{Index, IndexMut};

/// Entries per chunk (a power of two, so indexing is a shift and a mask).
const CHUNK: usize = 1024;

pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Chunked<T> {
    pub(super) const fn new() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends `value` at index `len()`.
    pub(super) fn push(&mut self, value: T) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk with room").push(value);
        self.len += 1;
    }

    /// Grows to at least `len` entries, filling new ones with `fill()`.
    pub(super) fn grow_to(&mut self, len: usize, mut fill: impl FnMut() -> T) {
        while self.len < len {
            self.push(fill());
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK).and_then(|c| c.get(i % CHUNK))
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK).and_then(|c| c.get_mut(i % CHUNK))
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunked, CHUNK};

    #[test]
    fn indexes_across_chunk_boundaries_without_moving_entries() {
        let mut c = Chunked::new();
        for i in 0..(3 * CHUNK + 5) {
            c.push(i);
        }
        let first_chunk = &c[0] as *const usize;
        c.grow_to(5 * CHUNK, || 7);
        assert_eq!(c.len(), 5 * CHUNK);
        // Growing never moved existing entries.
        assert_eq!(&c[0] as *const usize, first_chunk);
        assert_eq!(
            (c[CHUNK - 1], c[CHUNK], c[3 * CHUNK + 4]),
            (CHUNK - 1, CHUNK, 3 * CHUNK + 4)
        );
        assert_eq!(c[3 * CHUNK + 5], 7);
        c[CHUNK] = 99;
        assert_eq!(c.get(CHUNK), Some(&99));
        assert_eq!(c.get(5 * CHUNK), None);
        assert_eq!(c.get_mut(5 * CHUNK + 3), None);
    }
}
