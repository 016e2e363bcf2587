//! The ring engine's swap memory: a provided-buffer ring
//! (`IORING_REGISTER_PBUF_RING`), from which the kernel takes a buffer only
//! when data arrives for a read that asked for one.
//!
//! Buffers are made as they are needed, up to the ring's most: a ring
//! starts with a few, and whenever a read found it empty or fewer than a
//! quarter of those made are free, as many again are made
//! ([`BufRing::grow_if_short`]), until the most is reached. So an idle or
//! quiet watcher holds little memory, and the most is a hard cap on what
//! reads without a buffer take.
//!
//! Each buffer is a [`Bytes`] of its own, made once. A read's data is lent
//! to its completion as a slice of that buffer (a reference count, no copy,
//! no allocation after the buffer's first loan), and the buffer goes back
//! into the ring once the user has dropped every slice of it: the engine
//! calls [`BufRing::recycle`], which looks at the lent buffers only. So
//! the kernel never writes into memory a user can still read, and a ring
//! with no free buffer is back-pressure (the kernel answers a read with
//! `ENOBUFS`; the engine re-arms it after a recycle), never lost data.

use std::alloc::Layout;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::Bytes;
use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The ring's entry array must be page-aligned.
const PAGE: usize = 4096;

/// A registered provided-buffer ring and its buffers.
pub(crate) struct BufRing {
    /// The buffer group reads name to take from this ring.
    bgid: u16,
    /// `entries - 1`: entries is a power of two.
    mask: u16,
    /// The most buffers this ring makes (at most its entries).
    most: u16,
    /// The size of each buffer.
    size: usize,
    /// The entry array the kernel reads (page-aligned, zeroed at first).
    entries_at: *mut BufRingEntry,
    layout: Layout,
    /// Buffer `bid` is `buffers[bid]`. While it is in the ring this is its
    /// only handle, and only the kernel touches its bytes.
    buffers: Vec<Bytes>,
    /// Buffers lent to completions, by id.
    lent: Vec<u16>,
    /// The next entry to fill; published to the kernel by `publish`.
    tail: u16,
    /// Still registered with a ring: its memory must outlive the
    /// registration.
    registered: bool,
}

// SAFETY: the raw pointer is the ring's own allocation, written only
// through `&mut self`; moving the ring to another thread moves that
// exclusive access with it (the kernel's reads do not depend on the
// thread).
unsafe impl Send for BufRing {}

impl BufRing {
    /// Registers a ring for at most `most` buffers (1 to 32768) of `size`
    /// bytes each with `ring`, as buffer group `bgid`, with the first
    /// `first` of them made and in it.
    pub(crate) fn new(ring: &IoUring, bgid: u16, most: u16, size: usize, first: u16) -> io::Result<BufRing> {
        if most == 0 || most > 1 << 15 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a buffer ring has 1 to 32768 buffers of 1 byte to 4 GiB",
            ));
        }
        let entries = most.next_power_of_two();
        let bytes = (usize::from(entries) * std::mem::size_of::<BufRingEntry>()).next_multiple_of(PAGE);
        let layout = Layout::from_size_align(bytes, PAGE).map_err(io::Error::other)?;
        // SAFETY: the layout's size is at least one page.
        let entries_at = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries_at.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring_buffers = BufRing {
            bgid,
            mask: entries - 1,
            most,
            size,
            entries_at,
            layout,
            buffers: Vec::new(),
            lent: Vec::with_capacity(usize::from(most)),
            tail: 0,
            registered: false,
        };
        // SAFETY: the entry array is page-aligned, zeroed (an empty ring)
        // and holds `entries` entries; it stays allocated while registered
        // (`Drop` leaks it rather than free it then).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries_at as u64, entries, bgid, 0)?;
        }
        ring_buffers.registered = true;
        ring_buffers.grow(first.max(1));
        Ok(ring_buffers)
    }

    /// Makes up to `more` buffers (fewer if the most would be passed) and
    /// puts them in the ring; returns how many were made.
    pub(crate) fn grow(&mut self, more: u16) -> u16 {
        let made = self.buffers.len() as u16;
        let more = more.min(self.most - made);
        self.buffers.reserve_exact(usize::from(more));
        for bid in made..made + more {
            let buffer = Bytes::from(vec![0u8; self.size]);
            // A `Bytes` made from a `Vec` allocates its shared header at
            // its first clone or slice: done here, so that lending a
            // buffer never allocates.
            drop(buffer.clone());
            self.buffers.push(buffer);
            self.push(bid);
        }
        if more > 0 {
            self.publish();
        }
        more
    }

    /// Grows the ring by as many buffers as it has (up to its most) when a
    /// read found it empty (`ran_dry`) or fewer than a quarter of its
    /// buffers are free; returns how many were made.
    pub(crate) fn grow_if_short(&mut self, ran_dry: bool) -> u16 {
        if !ran_dry && self.available() * 4 >= self.buffers.len() {
            return 0;
        }
        self.grow(self.buffers.len() as u16)
    }

    /// Buffers in the ring (not lent).
    pub(crate) fn available(&self) -> usize {
        self.buffers.len() - self.lent.len()
    }

    /// Buffers made so far, and the most there can be.
    pub(crate) fn made(&self) -> (usize, usize) {
        (self.buffers.len(), usize::from(self.most))
    }

    /// Lends the first `len` bytes of buffer `bid`, which the kernel filled
    /// for a completion (`cqueue::buffer_select` named it).
    ///
    /// # Panics
    ///
    /// If `bid` is not a buffer of this ring that is in it, or `len`
    /// exceeds its size: the kernel never says so, so the engine's
    /// bookkeeping would be wrong.
    pub(crate) fn take(&mut self, bid: u16, len: usize) -> Bytes {
        let buffer = &self.buffers[usize::from(bid)];
        assert!(!self.lent.contains(&bid), "buffer {bid} is lent already");
        self.lent.push(bid);
        // The kernel has written these bytes and let go of the buffer (it
        // left the ring with the completion), so they may be read now.
        buffer.slice(..len)
    }

    /// Gives back to the kernel every lent buffer whose slices have all
    /// been dropped; returns how many.
    pub(crate) fn recycle(&mut self) -> usize {
        let mut back = 0;
        let mut i = 0;
        while i < self.lent.len() {
            let bid = self.lent[i];
            if self.buffers[usize::from(bid)].is_unique() {
                self.lent.swap_remove(i);
                self.push(bid);
                back += 1;
            } else {
                i += 1;
            }
        }
        if back > 0 {
            self.publish();
        }
        back
    }

    /// Unregisters the ring from `ring`; its memory can then be freed.
    pub(crate) fn unregister(&mut self, ring: &IoUring) -> io::Result<()> {
        if self.registered {
            ring.submitter().unregister_buf_ring(self.bgid)?;
            self.registered = false;
        }
        Ok(())
    }

    /// Writes buffer `bid` into the next entry (not yet visible to the
    /// kernel: see `publish`).
    fn push(&mut self, bid: u16) {
        let buffer = &self.buffers[usize::from(bid)];
        let slot = usize::from(self.tail & self.mask);
        // SAFETY: `slot` is within the entry array. The kernel reads only
        // the entries between its head and the published tail, which this
        // one is past, so nothing reads it while it is written; the setters
        // write the address, length and id, not the field of entry 0 that
        // holds the tail.
        let entry = unsafe { &mut *self.entries_at.add(slot) };
        entry.set_addr(buffer.as_ptr() as u64);
        entry.set_len(buffer.len() as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every entry written so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries_at` is the first entry of the registered ring,
        // whose tail field the kernel reads with an acquire load; the
        // release store orders the entries written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries_at).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // Still registered (the io_uring may outlive this): the kernel
            // may read the entries and write the buffers in it, so both
            // are leaked rather than freed under it. The engine unregisters
            // first; this is the last line.
            std::mem::forget(std::mem::take(&mut self.buffers));
            return;
        }
        // SAFETY: allocated in `new` with this layout, and no longer
        // registered, so the kernel no longer reads it.
        unsafe { std::alloc::dealloc(self.entries_at.cast(), self.layout) };
    }
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("group", &self.bgid)
            .field("entries", &self.buffers.len())
            .field("lent", &self.lent.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{cqueue, opcode, squeue, types};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    const GROUP: u16 = 7;

    /// A receive of at most `len` bytes into a buffer the kernel picks
    /// from `GROUP`.
    fn recv(ring: &mut IoUring, fd: &UnixStream, len: u32, user_data: u64) {
        let sqe = opcode::Recv::new(types::Fd(fd.as_raw_fd()), std::ptr::null_mut(), len)
            .buf_group(GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data);
        // SAFETY: the receive names no memory of ours (the kernel picks a
        // buffer from the ring, which outlives the operation) and `fd`
        // stays open until its completion is reaped below.
        unsafe { ring.submission().push(&sqe) }.expect("room in the submission queue");
    }

    /// Submits and waits for one completion: `(user_data, result, buffer id)`.
    fn complete(ring: &mut IoUring) -> (u64, i32, Option<u16>) {
        ring.submit_and_wait(1).expect("submit_and_wait");
        let cqe = ring.completion().next().expect("a completion");
        (cqe.user_data(), cqe.result(), cqueue::buffer_select(cqe.flags()))
    }

    fn setup(entries: u16, size: usize) -> Option<(IoUring, BufRing, UnixStream, UnixStream)> {
        setup_growing(entries, size, entries)
    }

    /// A ring of at most `most` buffers, `first` of them made.
    fn setup_growing(
        most: u16,
        size: usize,
        first: u16,
    ) -> Option<(IoUring, BufRing, UnixStream, UnixStream)> {
        // Where the probe says no ring can be used, there is nothing to
        // test; it says why.
        if let Err(why) = crate::probe() {
            eprintln!("NOT TESTED: io_uring cannot be used on this machine: {why}");
            return None;
        }
        let ring = IoUring::new(8).expect("ring");
        let bufs = BufRing::new(&ring, GROUP, most, size, first).expect("register the buffer ring");
        let (ours, peer) = UnixStream::pair().expect("socket pair");
        Some((ring, bufs, ours, peer))
    }

    #[test]
    fn the_kernel_fills_a_buffer_of_the_ring_and_never_more_than_asked() {
        let Some((mut ring, mut bufs, ours, mut peer)) = setup(4, 16) else {
            return;
        };
        assert_eq!(bufs.available(), 4);
        peer.write_all(b"hello, ring").unwrap();
        recv(&mut ring, &ours, 5, 1);
        let (data, res, bid) = complete(&mut ring);
        assert_eq!((data, res), (1, 5), "asked for 5 bytes");
        let first = bufs.take(bid.expect("a buffer was picked"), 5);
        assert_eq!(&first[..], b"hello");
        assert_eq!(bufs.available(), 3);
        recv(&mut ring, &ours, 16, 2);
        let (_, res, bid) = complete(&mut ring);
        assert_eq!(res, 6);
        let second = bufs.take(bid.unwrap(), 6);
        assert_eq!(&second[..], b", ring");
        drop((first, second));
        assert_eq!(bufs.recycle(), 2);
        assert_eq!(bufs.available(), 4);
        bufs.unregister(&ring).unwrap();
    }

    #[test]
    fn an_empty_ring_is_back_pressure_until_a_buffer_comes_back() {
        let Some((mut ring, mut bufs, ours, mut peer)) = setup(2, 8) else {
            return;
        };
        let mut held = Vec::new();
        for (i, word) in [&b"one"[..], b"two"].into_iter().enumerate() {
            peer.write_all(word).unwrap();
            recv(&mut ring, &ours, 8, i as u64);
            let (_, res, bid) = complete(&mut ring);
            assert_eq!(res, 3);
            held.push(bufs.take(bid.unwrap(), 3));
        }
        assert_eq!(bufs.available(), 0);
        // Data waits, and no buffer is free: the kernel says ENOBUFS and
        // takes nothing from the socket.
        peer.write_all(b"three").unwrap();
        recv(&mut ring, &ours, 8, 3);
        let (_, res, bid) = complete(&mut ring);
        assert_eq!((res, bid), (-rustix::io::Errno::NOBUFS.raw_os_error(), None));
        // Nothing comes back while every slice is held.
        assert_eq!(bufs.recycle(), 0);
        // The user drops one buffer's slice, on another thread.
        let one = held.remove(0);
        std::thread::spawn(move || drop(one)).join().unwrap();
        assert_eq!(bufs.recycle(), 1);
        recv(&mut ring, &ours, 8, 4);
        let (_, res, bid) = complete(&mut ring);
        assert_eq!(res, 5);
        assert_eq!(
            &bufs.take(bid.unwrap(), 5)[..],
            b"three",
            "the data waited in the socket"
        );
        assert_eq!(&held[0][..], b"two", "a held slice is never overwritten");
        bufs.unregister(&ring).unwrap();
    }

    #[test]
    fn buffers_are_made_as_reads_need_them_and_never_past_the_most() {
        let Some((mut ring, mut bufs, ours, mut peer)) = setup_growing(5, 8, 1) else {
            return;
        };
        assert_eq!((bufs.made(), bufs.available()), ((1, 5), 1));
        let mut held = Vec::new();
        // Each step: a read takes a free buffer and its slice is held; when
        // fewer than a quarter are free, the ring grows by as many as it
        // has, up to 5.
        for (step, made) in [2, 4, 4, 5].into_iter().enumerate() {
            peer.write_all(&[b'a' + step as u8]).unwrap();
            recv(&mut ring, &ours, 8, step as u64);
            let (_, res, bid) = complete(&mut ring);
            assert_eq!(res, 1, "step {step}");
            held.push(bufs.take(bid.unwrap(), 1));
            bufs.grow_if_short(false);
            assert_eq!(bufs.made(), (made, 5), "step {step}");
        }
        // Four held, one free: the last read takes it, and none is made.
        peer.write_all(b"e").unwrap();
        recv(&mut ring, &ours, 8, 9);
        let (_, res, bid) = complete(&mut ring);
        assert_eq!(res, 1);
        held.push(bufs.take(bid.unwrap(), 1));
        assert_eq!(bufs.grow(5), 0, "the most is made");
        assert_eq!((bufs.made(), bufs.available()), ((5, 5), 0));
        peer.write_all(b"f").unwrap();
        recv(&mut ring, &ours, 8, 10);
        let (_, res, _) = complete(&mut ring);
        assert_eq!(
            res,
            -rustix::io::Errno::NOBUFS.raw_os_error(),
            "at the most: back-pressure"
        );
        let words: Vec<u8> = held.iter().map(|b| b[0]).collect();
        assert_eq!(words, b"abcde", "held slices keep their bytes");
        drop(held.remove(0));
        assert_eq!(bufs.recycle(), 1);
        recv(&mut ring, &ours, 8, 11);
        let (_, res, bid) = complete(&mut ring);
        assert_eq!(res, 1);
        assert_eq!(&bufs.take(bid.unwrap(), 1)[..], b"f");
        bufs.unregister(&ring).unwrap();
    }

    #[test]
    fn a_slice_outlives_the_ring() {
        let Some((mut ring, mut bufs, ours, mut peer)) = setup(2, 8) else {
            return;
        };
        peer.write_all(b"kept").unwrap();
        recv(&mut ring, &ours, 8, 1);
        let (_, res, bid) = complete(&mut ring);
        let kept = bufs.take(bid.unwrap(), res as usize);
        bufs.unregister(&ring).unwrap();
        drop((bufs, ring));
        assert_eq!(&kept[..], b"kept");
    }

    #[test]
    fn bad_shapes_are_refused() {
        let Some((ring, _bufs, _, _)) = setup(2, 8) else {
            return;
        };
        for (entries, size) in [(0, 8), (4, 0), (40_000, 8)] {
            let e = BufRing::new(&ring, 9, entries, size, 1).expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{entries} × {size}");
        }
    }
}
