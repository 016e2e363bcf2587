//! The shared swap memory that reads without a buffer fill.
//!
//! Reads go into the free tail of one slab; each read's bytes are split off
//! as a reference-counted [`Bytes`] that stays valid while the user holds
//! it. When the tail gets short, the slab is reclaimed in place if no slice
//! of it is still held, otherwise a fresh slab is taken. A read is never
//! given a tiny remainder: it always has at least a quarter of a slab.

use std::os::fd::BorrowedFd;

use bytes::{Bytes, BytesMut};

use crate::{IoOutcome, Poller};

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
    pub(super) fn read<P: Poller>(&mut self, poller: &P, fd: BorrowedFd<'_>) -> (IoOutcome, usize, Bytes) {
        if self.arena.capacity() < self.slab / 4 {
            // The arena is empty (its bytes were split off), so this either
            // reclaims the slab in place or takes a fresh one: no copy.
            self.arena.reserve(self.slab);
        }
        let spare = self.arena.spare_capacity_mut();
        let offered = spare.len();
        let start = spare.as_ptr() as *const u8;
        let (outcome, filled) = poller.read_uninit(fd, spare);
        let n = filled.len();
        // Only a filled prefix of the spare capacity proves initialised
        // bytes; a poller returning anything else is a bug in it.
        assert!(
            n <= offered && (n == 0 || std::ptr::eq(filled.as_ptr(), start)),
            "Poller::read_uninit returned a slice outside the buffer it was given"
        );
        match outcome {
            IoOutcome::Done(_) if n > 0 => {
                // SAFETY: `filled` is a `&mut [u8]` of `n` bytes starting
                // at the spare capacity (checked above). A `&mut [u8]` only
                // ever covers initialised memory, so the first `n` bytes of
                // the spare capacity are initialised.
                unsafe { self.arena.set_len(n) };
                (IoOutcome::Done(n), offered, self.arena.split().freeze())
            }
            IoOutcome::Done(_) => (IoOutcome::Done(0), offered, Bytes::new()),
            other => (other, offered, Bytes::new()),
        }
    }
}
