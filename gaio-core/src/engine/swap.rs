//! The shared swap memory that reads without a buffer fill.
//!
//! Reads go into the free tail of one slab; each read's bytes are split off
//! as a reference-counted [`Bytes`] that stays valid while the user holds
//! it. When the tail gets short, the slab is reclaimed in place if no slice
//! of it is still held, otherwise a fresh slab is taken. A read is never
//! given a tiny remainder: it always has at least a quarter of a slab.

use std::os::fd::BorrowedFd;

use bytes::{Bytes, BytesMut};

use crate::sys::{self, IoOutcome};

pub(super) struct Swap {
    arena: BytesMut,
    slab: usize,
}

impl Swap {
    pub(super) fn new(slab: usize) -> Self {
        let slab = slab.max(64);
        Swap {
            arena: BytesMut::with_capacity(slab),
            slab,
        }
    }

    /// Reads from `fd` into swap memory. Returns the outcome, how many
    /// bytes the read offered room for, and on `Done(n)` with `n > 0` the
    /// slice holding the `n` bytes read.
    pub(super) fn read(&mut self, fd: BorrowedFd<'_>) -> (IoOutcome, usize, Bytes) {
        if self.arena.capacity() < self.slab / 4 {
            // The arena is empty (its bytes were split off), so this either
            // reclaims the slab in place or takes a fresh one: no copy.
            self.arena.reserve(self.slab);
        }
        let spare = self.arena.spare_capacity_mut();
        let offered = spare.len();
        let outcome = sys::read_uninit(fd, spare);
        match outcome {
            IoOutcome::Done(n) if n > 0 => {
                // SAFETY: `read_uninit` returned `Done(n)`: the kernel wrote
                // the first `n` bytes of the spare capacity, and `n` is at
                // most the spare capacity's length.
                unsafe { self.arena.set_len(n) };
                (outcome, offered, self.arena.split().freeze())
            }
            other => (other, offered, Bytes::new()),
        }
    }
}
