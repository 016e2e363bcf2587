//! A floor for echo servers on io_uring, the ring's counterpart of the mio
//! loop: the least a server on a ring does per message, with none of a
//! library's guarantees, to measure how far gaio-uring is from it.
//!
//! One ring (single issuer, deferred task running), one multishot accept,
//! and per connection one multishot receive kept armed, taking 2 KiB
//! buffers from a provided-buffer ring (gaio-uring's small size): after
//! the first message a connection costs no submission to read, and the
//! kernel arms no poll per message. Each message is copied into the
//! connection's output and sent with one `send` request; what arrives
//! while a send is in flight waits in a second buffer.
//!
//! What it gives up, and gaio cannot: it reads ahead of any request (a
//! client that sends and never reads makes it buffer without bound), so it
//! has no back-pressure; a receive that found the buffer ring empty is
//! armed again only after the batch; a failed accept (out of descriptors)
//! is armed again at once; a client dropped after a failed send keeps its
//! socket until its receive ends. It is a yardstick for the ping-pong
//! scenario, not a server to copy.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

use crate::control::note_accepted;

/// Buffers in the provided-buffer ring (a power of two).
const BUFFERS: u16 = 4096;
/// The size of each buffer.
const BUFFER_SIZE: usize = 2048;
/// The buffer group the receives take from.
const GROUP: u16 = 0;
/// What a completion is for, in its user data's top byte.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;
const KIND: u64 = 0xff << 56;
/// A slot's generation, in the user data's bits 32-55.
const GEN_MASK: u32 = (1 << 24) - 1;

/// One client.
struct Client {
    fd: OwnedFd,
    /// Bumped when the slot is reused: a late completion for the slot's
    /// last client does not match.
    gen: u32,
    /// The bytes of the send in flight (none: empty), untouched until it
    /// completes: the kernel reads them.
    sending: Vec<u8>,
    /// What arrived while a send was in flight.
    pending: Vec<u8>,
    /// Its receive ended (end of stream, an error): closed once no send
    /// is in flight.
    ended: bool,
}

/// The provided-buffer ring: entries the kernel takes buffers from, and
/// the buffers. Never freed: the kernel may use them until the ring is
/// gone, and the server runs until the process ends.
struct Buffers {
    entries: *mut BufRingEntry,
    /// `BUFFERS * BUFFER_SIZE` bytes the kernel writes into: raw, so that
    /// no reference to the whole area exists while it does.
    memory: *mut u8,
    tail: u16,
}

impl Buffers {
    /// Makes the ring with every buffer in it and registers it with `ring`.
    fn new(ring: &IoUring) -> io::Result<Buffers> {
        let layout = std::alloc::Layout::from_size_align(
            usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a nonzero size.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let bytes = std::alloc::Layout::from_size_align(usize::from(BUFFERS) * BUFFER_SIZE, 64)
            .map_err(io::Error::other)?;
        // SAFETY: the layout has a nonzero size.
        let memory = unsafe { std::alloc::alloc_zeroed(bytes) };
        if memory.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut buffers = Buffers {
            entries,
            memory,
            tail: 0,
        };
        for bid in 0..BUFFERS {
            buffers.give_back(bid);
        }
        buffers.publish();
        // SAFETY: the entries are page-aligned and hold `BUFFERS` entries;
        // they and the buffers they point to are never freed, so they
        // outlive the ring.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)?
        };
        Ok(buffers)
    }

    /// The `len` bytes the kernel put in buffer `bid`, whose completion
    /// was taken and which is not given back yet.
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < BUFFERS, "a buffer id the ring never had");
        // SAFETY: buffer `bid` lies inside `memory`; the kernel wrote it
        // before posting the completion that named it, and takes it again
        // only after `give_back` and `publish`, which the caller makes once
        // it is done with the slice (the borrow of `self` ends first).
        unsafe {
            std::slice::from_raw_parts(
                self.memory.add(usize::from(bid) * BUFFER_SIZE),
                len.min(BUFFER_SIZE),
            )
        }
    }

    /// Puts buffer `bid` back in the ring (seen by the kernel at the next
    /// `publish`).
    fn give_back(&mut self, bid: u16) {
        let at = usize::from(self.tail & (BUFFERS - 1));
        let addr = self.memory as u64 + u64::from(bid) * BUFFER_SIZE as u64;
        // SAFETY: `at` is below `BUFFERS`, the number of entries allocated;
        // the kernel reads an entry only once the tail published past it,
        // and this one is past the published tail.
        let entry = unsafe { &mut *self.entries.add(at) };
        entry.set_addr(addr);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see the buffers given back.
    fn publish(&self) {
        // SAFETY: the tail is the entries' first entry's last field, a
        // u16 the kernel reads; a release store makes the entries written
        // before it visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            (*tail.cast::<std::sync::atomic::AtomicU16>())
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Makes the ring the server runs on, with its buffer ring registered:
/// what [`run`] needs of the kernel (single issuer, deferred task running,
/// provided-buffer rings).
fn ring_with_buffers() -> io::Result<(IoUring, Buffers)> {
    let ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(16 * 1024)
        .build(4096)?;
    let buffers = Buffers::new(&ring)?;
    Ok((ring, buffers))
}

/// Whether this process can run the floor: the ring it needs can be made
/// here (a kernel of 6.1 or later, io_uring not blocked).
pub fn available() -> io::Result<()> {
    ring_with_buffers().map(drop)
}

/// Queues `sqe`, submitting what is queued first if the queue is full.
fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every request points to memory that outlives it: a
        // client's `sending` buffer (untouched until its send completes;
        // the client is dropped only after that, and the clients are never
        // dropped when the loop ends), or none (accepts and buffer-select
        // receives).
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// The user data of a request of `kind` for the client of generation
/// `gen` in `slot`.
fn user_data(kind: u64, gen: u32, slot: usize) -> u64 {
    kind | (u64::from(gen) << 32) | slot as u64
}

/// The slot and generation a client request's user data names.
fn slot_and_gen(user_data: u64) -> (usize, u32) {
    (
        (user_data & 0xffff_ffff) as usize,
        ((user_data & !KIND) >> 32) as u32,
    )
}

fn recv_multi(fd: RawFd, slot: usize, gen: u32) -> squeue::Entry {
    opcode::RecvMulti::new(Fd(fd), GROUP)
        .build()
        .user_data(user_data(RECV, gen, slot))
}

fn send(client: &Client, slot: usize) -> squeue::Entry {
    let len = u32::try_from(client.sending.len()).unwrap_or(u32::MAX);
    opcode::Send::new(Fd(client.fd.as_raw_fd()), client.sending.as_ptr(), len)
        .build()
        .user_data(user_data(SEND, client.gen, slot))
}

/// Serves echo on `listener` until the process ends.
pub fn run(listener: TcpListener) -> io::Result<()> {
    let (mut ring, mut buffers) = ring_with_buffers()?;
    let listener = OwnedFd::from(listener);
    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
        .build()
        .user_data(ACCEPT);
    push(&mut ring, &accept)?;
    // Never dropped, even when an error ends the loop: the `sending`
    // buffers of sends in flight must outlive the ring, which is dropped
    // after them.
    let mut clients: std::mem::ManuallyDrop<Vec<Option<Client>>> = std::mem::ManuallyDrop::new(Vec::new());
    let mut free_slots: Vec<usize> = Vec::new();
    let mut next_gen = 0u32;
    let mut starved: Vec<(usize, u32)> = Vec::new();
    let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
    loop {
        ring.submit_and_wait(1)?;
        done.extend(ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        let mut gave_back = false;
        for (user_data, res, flags) in done.drain(..) {
            if user_data & KIND == ACCEPT {
                if !cqueue::more(flags) {
                    push(&mut ring, &accept)?;
                }
                if res < 0 {
                    continue;
                }
                // SAFETY: the kernel just made this descriptor for us.
                let fd = unsafe { OwnedFd::from_raw_fd(res) };
                rustix::net::sockopt::set_tcp_nodelay(&fd, true)?;
                note_accepted();
                next_gen = (next_gen + 1) & GEN_MASK;
                let slot = free_slots.pop().unwrap_or_else(|| {
                    clients.push(None);
                    clients.len() - 1
                });
                push(&mut ring, &recv_multi(fd.as_raw_fd(), slot, next_gen))?;
                clients[slot] = Some(Client {
                    fd,
                    gen: next_gen,
                    sending: Vec::new(),
                    pending: Vec::new(),
                    ended: false,
                });
                continue;
            }
            let (slot, gen) = slot_and_gen(user_data);
            let bid = cqueue::buffer_select(flags);
            let matching = clients
                .get_mut(slot)
                .and_then(Option::as_mut)
                .filter(|c| c.gen == gen);
            let Some(client) = matching else {
                if let Some(bid) = bid {
                    buffers.give_back(bid);
                    gave_back = true;
                }
                continue;
            };
            if user_data & KIND == RECV {
                if res == -enobufs() {
                    starved.push((slot, gen));
                    continue;
                }
                if res <= 0 {
                    client.ended = true;
                } else {
                    let bid = bid.expect("a receive with data names its buffer");
                    let data = buffers.bytes(bid, res as usize);
                    if client.sending.is_empty() {
                        client.sending.extend_from_slice(data);
                        push(&mut ring, &send(client, slot))?;
                    } else {
                        client.pending.extend_from_slice(data);
                    }
                    buffers.give_back(bid);
                    gave_back = true;
                    if !cqueue::more(flags) {
                        push(&mut ring, &recv_multi(client.fd.as_raw_fd(), slot, gen))?;
                    }
                    continue;
                }
            } else if res <= 0 {
                client.ended = true;
                client.sending.clear();
            } else {
                client.sending.drain(..res as usize);
                if client.sending.is_empty() {
                    std::mem::swap(&mut client.sending, &mut client.pending);
                }
                if !client.sending.is_empty() {
                    push(&mut ring, &send(client, slot))?;
                    continue;
                }
            }
            if client.ended && client.sending.is_empty() {
                // Its receive is over (or ends with the descriptor's last
                // reference); no send is in flight.
                clients[slot] = None;
                free_slots.push(slot);
            }
        }
        if gave_back {
            buffers.publish();
        }
        for (slot, gen) in starved.drain(..) {
            if let Some(client) = clients[slot].as_ref().filter(|c| c.gen == gen) {
                push(&mut ring, &recv_multi(client.fd.as_raw_fd(), slot, gen))?;
            }
        }
    }
}

fn enobufs() -> i32 {
    rustix::io::Errno::NOBUFS.raw_os_error()
}
