//! A growable array stored in fixed-size chunks that never move.
//!
//! A `Vec` doubles by reallocating and copying; the freed old block often
//! stays resident (the allocator keeps it for reuse), so a table grown to
//! ten thousand connections can pin about as much garbage as it holds.
//! Chunks are allocated once at their final size and never copied, so the
//! memory a table holds is what it uses, rounded up to one chunk.
//!
//! A table does not shrink by itself. Its owner gives memory back with
//! [`Chunked::truncate`] or [`Chunked::trim_trailing`], which free every
//! chunk past the new end (and shrink the small vector of chunk pointers);
//! the engine does so once it has been idle after a burst. Only trailing
//! chunks can go: an entry's index is its identity (a descriptor number, a
//! slab slot), so entries never move, and a chunk stays while it or any
//! chunk after it holds an entry that must be kept. The last chunk kept
//! keeps its full allocation, so entries kept in it do not move either.

use std::ops::{Index, IndexMut};

/// Entries per chunk (a power of two, so indexing is a shift and a mask).
pub(super) const CHUNK: usize = 1024;

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

    /// Entries the allocated chunks have room for: a multiple of the chunk
    /// size, at least `len()`.
    pub(super) fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    /// Shortens the table to `len` entries, dropping the ones past it,
    /// frees every chunk that no longer holds an entry and shrinks the
    /// vector of chunk pointers to fit. Entries kept never move. Does
    /// nothing if the table is no longer than `len`.
    ///
    /// Costs one drop per entry dropped, and at most one reallocation of
    /// the vector of chunks (24 bytes per chunk).
    pub(super) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let keep = len.div_ceil(CHUNK);
        self.chunks.truncate(keep);
        self.chunks.shrink_to_fit();
        if let Some(last) = self.chunks.last_mut() {
            // Keeps its allocation: the entries left in it stay put.
            last.truncate(len - (keep - 1) * CHUNK);
        }
        self.len = len;
    }

    /// Truncates the table after its last entry for which `empty` is false
    /// (to nothing if there is none), freeing the chunks past it.
    ///
    /// Looks only at the trailing entries that go, plus one.
    pub(super) fn trim_trailing(&mut self, empty: impl Fn(&T) -> bool) {
        let mut end = self.len;
        while end > 0 && empty(&self[end - 1]) {
            end -= 1;
        }
        self.truncate(end);
    }

    /// Appends `value` at index `len()`.
    pub(super) fn push(&mut self, value: T) {
        let chunk = self.len / CHUNK;
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[chunk].push(value);
        self.len += 1;
    }

    /// Removes entry `i` and returns it, the last entry taking its place
    /// (the only entry that moves). Keeps the chunks' memory
    /// ([`shrink_to_len`](Chunked::shrink_to_len) gives it back).
    ///
    /// # Panics
    ///
    /// If `i` is out of bounds.
    pub(super) fn swap_remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "swap_remove index {i} out of bounds ({})", self.len);
        let last = self.chunks[(self.len - 1) / CHUNK].pop().expect("the last entry");
        self.len -= 1;
        if i == self.len {
            last
        } else {
            std::mem::replace(&mut self[i], last)
        }
    }

    /// Frees the chunks that hold no entry (past `len()`).
    pub(super) fn shrink_to_len(&mut self) {
        self.chunks.truncate(self.len.div_ceil(CHUNK));
        self.chunks.shrink_to_fit();
    }

    /// Grows to at least `len` entries, filling new ones with `fill()`.
    #[cfg(test)]
    pub(super) fn grow_to(&mut self, len: usize, mut fill: impl FnMut() -> T) {
        while self.len < len {
            self.push(fill());
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK).and_then(|c| c.get(i % CHUNK))
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
    }

    #[test]
    fn truncation_frees_trailing_chunks_without_moving_entries() {
        let mut c = Chunked::new();
        for i in 0..(5 * CHUNK + 5) {
            c.push(i);
        }
        assert_eq!(c.capacity(), 6 * CHUNK);
        let kept = [0, CHUNK, 2 * CHUNK + 3].map(|i| &c[i] as *const usize);
        c.truncate(2 * CHUNK + 4);
        assert_eq!((c.len(), c.capacity()), (2 * CHUNK + 4, 3 * CHUNK));
        // The vector of chunk pointers shrank too.
        assert_eq!(c.chunks.capacity(), 3);
        assert_eq!(kept, [0, CHUNK, 2 * CHUNK + 3].map(|i| &c[i] as *const usize));
        assert_eq!((c[0], c[CHUNK], c[2 * CHUNK + 3]), (0, CHUNK, 2 * CHUNK + 3));
        assert_eq!(c.get(2 * CHUNK + 4), None);
        assert_eq!(c.get(5 * CHUNK), None);
        // Growing again fills the last chunk kept in place, then adds one.
        c.grow_to(3 * CHUNK + 1, || 7);
        assert_eq!(&c[2 * CHUNK + 3] as *const usize, kept[2]);
        assert_eq!((c[2 * CHUNK + 4], c[3 * CHUNK], c.capacity()), (7, 7, 4 * CHUNK));
        // Truncating to a length not shorter is a no-op.
        c.truncate(3 * CHUNK + 1);
        c.truncate(usize::MAX);
        assert_eq!((c.len(), c.capacity()), (3 * CHUNK + 1, 4 * CHUNK));
        // A whole number of chunks keeps exactly those.
        c.truncate(CHUNK);
        assert_eq!((c.len(), c.capacity(), c[CHUNK - 1]), (CHUNK, CHUNK, CHUNK - 1));
        assert_eq!(&c[0] as *const usize, kept[0]);
        c.truncate(0);
        assert_eq!((c.len(), c.capacity(), c.chunks.capacity()), (0, 0, 0));
        c.push(5);
        assert_eq!((c.len(), c.capacity(), c[0]), (1, CHUNK, 5));
    }

    #[test]
    fn trailing_empty_entries_are_trimmed() {
        let mut c: Chunked<Option<u32>> = Chunked::new();
        c.grow_to(4 * CHUNK, || None);
        c[5] = Some(5);
        c[CHUNK + 1] = Some(1);
        c.trim_trailing(Option::is_none);
        assert_eq!((c.len(), c.capacity()), (CHUNK + 2, 2 * CHUNK));
        assert_eq!((c[5], c[CHUNK + 1]), (Some(5), Some(1)));
        // Nothing trailing is empty: nothing changes.
        c.trim_trailing(Option::is_none);
        assert_eq!((c.len(), c.capacity()), (CHUNK + 2, 2 * CHUNK));
        c[CHUNK + 1] = None;
        c.trim_trailing(Option::is_none);
        assert_eq!((c.len(), c.capacity(), c[5]), (6, CHUNK, Some(5)));
        c[5] = None;
        c.trim_trailing(Option::is_none);
        assert_eq!((c.len(), c.capacity()), (0, 0));
        c.trim_trailing(Option::is_none);
        assert_eq!(c.len(), 0);
    }
}
