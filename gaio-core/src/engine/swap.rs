//! The shared swap memory that reads without a buffer fill.
//!
//! Reads go into the free tail of one slab; each read's bytes are split off
//! as a reference-counted [`Bytes`] that stays valid while the user holds
//! it. When the tail gets short, the slab is reclaimed in place if no slice
//! of it is still held; otherwise a retired slab that nobody holds any more
//! is taken back, and only if there is none is a fresh slab allocated (the
//! current one is retired). So a loop that still holds the last slice when
//! it asks for the next read (an echo writing the slice back) allocates
//! nothing in steady state. At most [`MAX_RETIRED`] slabs are kept. A read
//! is never given a tiny remainder: it always has at least a quarter of a
//! slab, and at least what the poller's
//! [`swap_read_room`](crate::Poller::swap_read_room) asks (up to a whole
//! slab). A datagram receive needs room for the largest datagram that fits
//! the swap size, plus one byte to tell a longer one (truncated) from one
//! that fits: it takes a whole slab (each slab has that extra byte).

use std::os::fd::BorrowedFd;

use bytes::{Bytes, BytesMut};

use crate::{Datagram, FdKind, IoOutcome, Poller};

/// Most slabs kept for reuse besides the current one. A thousand busy
/// connections can hold two batches of slices, several slabs' worth, at
/// once; the engine drops the retired slabs when it goes idle.
const MAX_RETIRED: usize = 8;

pub(super) struct Swap {
    arena: BytesMut,
    /// Earlier slabs, possibly still held by users' slices.
    retired: Vec<BytesMut>,
    slab: usize,
    /// Slabs allocated after the first, for tests.
    #[cfg(test)]
    fresh: usize,
}

impl Swap {
    pub(super) fn new(slab: usize) -> Self {
        // The builder refuses 0; never let a read be offered 0 bytes (a
        // 0-byte read would look like end of stream).
        let slab = slab.max(1);
        Swap {
            arena: BytesMut::with_capacity(slab + 1),
            retired: Vec::new(),
            slab,
            #[cfg(test)]
            fresh: 0,
        }
    }

    /// True if slabs besides the current one are kept.
    pub(super) fn holds_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Forgets the retired slabs: memory nobody holds goes back now, and
    /// slices still held keep theirs alive until dropped.
    pub(super) fn drop_retired(&mut self) {
        self.retired = Vec::new();
    }

    /// Gives the arena a whole slab: its own if no slice of it is held, a
    /// free retired one, or a fresh one.
    fn refill(&mut self) {
        // Every slab has room for a whole datagram and the byte after it.
        let room = self.slab + 1;
        // The arena is empty (its bytes were all split off), so reclaiming
        // copies nothing.
        if self.arena.try_reclaim(room) {
            return;
        }
        let slab = room;
        if let Some(free) = self
            .retired
            .iter_mut()
            .find_map(|r| r.try_reclaim(slab).then_some(r))
        {
            std::mem::swap(&mut self.arena, free);
            return;
        }
        #[cfg(test)]
        {
            self.fresh += 1;
        }
        let old = std::mem::replace(&mut self.arena, BytesMut::with_capacity(room));
        if self.retired.len() == MAX_RETIRED {
            // Forget the oldest; its holders keep it alive until they drop it.
            self.retired.remove(0);
        }
        self.retired.push(old);
    }

    /// Receives one datagram from `fd` into swap memory: the outcome, what
    /// the receive learnt, and on `Done(n)` the slice of the `n` bytes kept.
    pub(super) fn recv_from<P: Poller>(
        &mut self,
        poller: &P,
        fd: BorrowedFd<'_>,
    ) -> (IoOutcome, Datagram, Bytes) {
        if self.arena.capacity() < self.slab + 1 {
            self.refill();
        }
        let spare = self.arena.spare_capacity_mut();
        // The configured size, and one byte to tell a longer datagram.
        let offered = spare.len().min(self.slab + 1);
        let spare = &mut spare[..offered];
        let start = spare.as_ptr() as *const u8;
        let (outcome, filled, datagram) = poller.recv_from_uninit(fd, spare);
        let n = filled.len();
        assert!(
            n < offered && (n == 0 || std::ptr::eq(filled.as_ptr(), start)),
            "Poller::recv_from_uninit returned a slice outside the buffer it was given"
        );
        match outcome {
            IoOutcome::Done(_) => {
                // SAFETY: `filled` is a `&mut [u8]` of `n` bytes starting at
                // the spare capacity (checked above), so the first `n` bytes
                // of the spare capacity are initialised.
                unsafe { self.arena.set_len(n) };
                (IoOutcome::Done(n), datagram, self.arena.split().freeze())
            }
            other => (other, datagram, Bytes::new()),
        }
    }

    /// Reads from `fd` into swap memory. Returns the outcome, how many
    /// bytes the read offered room for, and on `Done(n)` with `n > 0` the
    /// slice holding the `n` bytes read.
    pub(super) fn read<P: Poller>(
        &mut self,
        poller: &P,
        fd: BorrowedFd<'_>,
        kind: FdKind,
    ) -> (IoOutcome, usize, Bytes) {
        // At least a quarter of a slab, and room for whatever result the
        // poller holds (a completion poller's retry must find room for all
        // of what the first call started).
        let least = (self.slab / 4).max(poller.swap_read_room().min(self.slab)).max(1);
        if self.arena.capacity() < least {
            self.refill();
        }
        // A reclaimed slab may be larger than asked for: a read still gets
        // at most the configured swap size.
        let spare = self.arena.spare_capacity_mut();
        let limit = spare.len().min(self.slab);
        let spare = &mut spare[..limit];
        let offered = spare.len();
        let start = spare.as_ptr() as *const u8;
        let (outcome, filled) = poller.read_uninit(fd, kind, spare);
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::Swap;
    use crate::fake::{dummy_fd, FakePoller};
    use crate::{FdKind, IoOutcome, Poller};

    #[test]
    fn holding_one_slice_while_reading_the_next_allocates_no_new_slabs() {
        let poller = FakePoller::new().unwrap();
        let fd = dummy_fd();
        // SAFETY: `fd` outlives the poller, which is dropped first.
        unsafe { poller.register(fd.as_fd(), 1) }.unwrap();
        let mut swap = Swap::new(4096);
        let mut held = None;
        let rounds = if cfg!(miri) { 60 } else { 2000 };
        for round in 0..rounds {
            let msg: Vec<u8> = (0..1500u32).map(|i| (i * 7 + round) as u8).collect();
            crate::fake::last().send(fd.as_fd().as_raw_fd_u32(), &msg);
            let mut got = Vec::new();
            while got.len() < msg.len() {
                let (outcome, _, bytes) = swap.read(&poller, fd.as_fd(), FdKind::Other);
                assert!(
                    matches!(outcome, IoOutcome::Done(n) if n == bytes.len() && n > 0),
                    "{outcome:?}"
                );
                got.extend_from_slice(&bytes);
                // Like an echo: the previous slice is released only after
                // the next read was made.
                held = Some(bytes);
            }
            assert_eq!(got, msg);
        }
        drop(held);
        assert!(swap.fresh <= 2, "allocated {} fresh slabs", swap.fresh);
    }

    #[test]
    fn slices_held_for_long_force_fresh_slabs_but_stay_valid() {
        let poller = FakePoller::new().unwrap();
        let fd = dummy_fd();
        // SAFETY: `fd` outlives the poller, which is dropped first.
        unsafe { poller.register(fd.as_fd(), 1) }.unwrap();
        let mut swap = Swap::new(256);
        let mut kept = Vec::new();
        for round in 0..100u8 {
            crate::fake::last().send(fd.as_fd().as_raw_fd_u32(), &[round; 100]);
            let (_, _, bytes) = swap.read(&poller, fd.as_fd(), FdKind::Other);
            kept.push(bytes);
        }
        for (round, b) in kept.iter().enumerate() {
            assert_eq!(&b[..], &[round as u8; 100][..], "slice {round} was overwritten");
        }
    }

    trait RawU32 {
        fn as_raw_fd_u32(&self) -> u32;
    }
    impl RawU32 for std::os::fd::BorrowedFd<'_> {
        fn as_raw_fd_u32(&self) -> u32 {
            std::os::fd::AsRawFd::as_raw_fd(self) as u32
        }
    }
}
