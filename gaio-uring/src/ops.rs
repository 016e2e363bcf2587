//! The I/O a ring has in flight, by descriptor and slot: what each
//! request was given (so that the result is taken for the same memory),
//! and its result once the kernel posted it.
//!
//! A descriptor has four slots: its read (or accept), its write, and a
//! readiness poll for each direction. At most one request is in a slot,
//! so a connection has at most one read and one write in flight, the
//! heads of its lists. A request's user data is its index with a tag
//! that changes at each reuse of the index: the completion of a request
//! that was cancelled and forgotten is recognised and dropped.
//!
//! A buffer-select read, the read every idle connection has pending, has
//! no entry while it waits: its descriptor's read slot holds what it was
//! given (its ring, its size, a generation), and its user data names the
//! descriptor. The entry is made when the kernel answers or the engine
//! asks about it ([`Ops::find`], [`Ops::resolve`]). So an idle
//! connection costs this table its slot row and nothing else.

use std::collections::HashMap;
use std::os::fd::RawFd;

use bytes::Bytes;

/// The read (or accept) slot.
pub(crate) const READ: usize = 0;
/// The write slot.
pub(crate) const WRITE: usize = 1;
/// The readiness poll for reading.
pub(crate) const POLL_IN: usize = 2;
/// The readiness poll for writing.
pub(crate) const POLL_OUT: usize = 3;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `recv` (stream socket) or `read` into the caller's memory.
    Direct,
    /// `recv` or `read` into a buffer the kernel picks from the buffer
    /// ring.
    Select,
    /// `send`/`sendmsg` (stream socket) or `write`/`writev`.
    Write,
    /// `accept4`.
    Accept,
    /// `recvmsg` of one datagram, with its sender, into the caller's
    /// memory.
    RecvMsg,
    /// `recvmsg` of one datagram, with its sender, into a buffer the
    /// kernel picks from the buffer ring.
    SelectMsg,
    /// `connect` of a stream socket to an IP address.
    Connect,
    /// `shutdown(SHUT_WR)`.
    Shutdown,
    /// A one-shot readiness poll.
    Poll,
}

/// Where a request stands.
#[derive(Debug)]
pub(crate) enum State {
    /// The kernel has it (or it is queued for the kernel).
    InFlight,
    /// Answered `ENOBUFS` (no buffer in the ring): to be submitted again
    /// once buffers come back.
    Starved,
    /// Posted: the result (`res`, `flags` of the completion) waits for
    /// the engine's next call.
    Landed { res: i32, flags: u32 },
    /// What a buffer-select read brought and the engine has not taken
    /// yet (it offered less room than the read filled): the bytes wait in
    /// [`Ops::take_leftover`]'s table.
    Leftover,
}

/// Memory a request points the kernel to besides the caller's buffers
/// (a gathered write's array and header, an accept's or a datagram's
/// address), kept at a
/// fixed address (boxed) in a pool: only requests that need one hold one,
/// so an idle connection's pending read costs no more than its slot.
pub(crate) struct Mem {
    pub(crate) iov: Vec<libc::iovec>,
    pub(crate) msg: libc::msghdr,
    pub(crate) peer: libc::sockaddr_storage,
    pub(crate) peer_len: libc::socklen_t,
}

// SAFETY: the raw pointers in `iov` and `msg` are only addresses handed to
// the kernel (the caller's buffers, this box's own `iov`); nothing here
// dereferences them, so moving the box to another thread cannot make a
// data race.
unsafe impl Send for Mem {}

impl Mem {
    fn new() -> Box<Mem> {
        // SAFETY: `msghdr` and `sockaddr_storage` are plain C structs for
        // which all-zero bytes are a valid value (null pointers, zero
        // lengths, family AF_UNSPEC).
        let (msg, peer) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Box::new(Mem {
            iov: Vec::new(),
            msg,
            peer,
            peer_len: 0,
        })
    }

    /// Makes `msg` a message of the slices `bufs` (gathered in `iov`) and
    /// no control data; returns it. The header is made anew: a box from
    /// the pool keeps what its last request left in it.
    pub(crate) fn message(&mut self, bufs: impl IntoIterator<Item = (*mut u8, usize)>) -> &mut libc::msghdr {
        self.iov.clear();
        self.iov.extend(bufs.into_iter().map(|(base, len)| libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        }));
        // SAFETY: all-zero bytes are a valid `msghdr` (see `new`).
        self.msg = unsafe { std::mem::zeroed() };
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        &mut self.msg
    }

    /// Makes `msg` (see [`message`](Mem::message)) a receive of one
    /// datagram into `len` bytes at `base` (null: a buffer the kernel
    /// picks), with room for its sender's address in `peer`.
    pub(crate) fn datagram_receive(&mut self, base: *mut u8, len: usize) -> &mut libc::msghdr {
        self.message([(base, len)]);
        // No family until the kernel writes one: a sender without an
        // address (an unbound Unix socket) leaves it so.
        self.peer.ss_family = libc::AF_UNSPEC as libc::sa_family_t;
        self.msg.msg_name = std::ptr::from_mut(&mut self.peer).cast();
        self.msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        &mut self.msg
    }

    /// Makes `msg` (see [`message`](Mem::message)) a send of `len` bytes
    /// at `base` as one datagram to `to`.
    pub(crate) fn datagram_send(
        &mut self,
        base: *const u8,
        len: usize,
        to: &rustix::net::SocketAddrAny,
    ) -> &libc::msghdr {
        self.message([(base.cast_mut(), len)]);
        let to_len = self.set_peer(to);
        self.msg.msg_name = std::ptr::from_mut(&mut self.peer).cast();
        self.msg.msg_namelen = to_len;
        &self.msg
    }

    /// Puts `to` in `peer` (and its length in `peer_len`), for a connect;
    /// returns them.
    pub(crate) fn address(
        &mut self,
        to: &rustix::net::SocketAddrAny,
    ) -> (*const libc::sockaddr, libc::socklen_t) {
        let len = self.set_peer(to);
        self.peer_len = len;
        (std::ptr::from_ref(&self.peer).cast(), len)
    }

    /// Copies `to` into `peer`; returns its length.
    fn set_peer(&mut self, to: &rustix::net::SocketAddrAny) -> libc::socklen_t {
        let len = (to.addr_len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: `to` holds `addr_len()` bytes of address, and the
        // storage has room for any address (the copy is bounded by its
        // size); the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                to.as_ptr().cast::<u8>(),
                std::ptr::from_mut(&mut self.peer).cast::<u8>(),
                len,
            );
        }
        len as libc::socklen_t
    }

    /// After a datagram receive ([`datagram_receive`](Mem::datagram_receive))
    /// ended: whether the datagram was cut (`MSG_TRUNC`), and the length
    /// of its sender's address in `peer` (0: none).
    pub(crate) fn received(&self) -> (bool, libc::socklen_t) {
        (self.msg.msg_flags & libc::MSG_TRUNC != 0, self.msg.msg_namelen)
    }
}

/// One request, in the slot table.
pub(crate) struct Op {
    pub(crate) tag: u32,
    pub(crate) live: bool,
    pub(crate) fd: RawFd,
    pub(crate) slot: usize,
    pub(crate) kind: Kind,
    pub(crate) state: State,
    /// The first byte the request was given, and how many: the result is
    /// handed only to a call offering the same memory.
    pub(crate) addr: usize,
    pub(crate) len: usize,
    /// The buffer ring a buffer-select read takes from.
    pub(crate) group: u8,
    /// A read's descriptor is a stream socket (`recv`, not `read`): for a
    /// buffer-select read's submission again after `ENOBUFS`, and for
    /// what its completion tells of the socket.
    pub(crate) stream: bool,
    /// Index plus one of the request's `Mem` in the pool (0: none).
    mem: u32,
    /// A buffer-select read started without an entry: the slot value it
    /// had then (its user data names it), else 0.
    light: u32,
}

/// Every request of a ring, found by descriptor and slot or by user data.
#[derive(Default)]
pub(crate) struct Ops {
    ops: Vec<Op>,
    free: Vec<u32>,
    /// Per descriptor number, its read and write slots: the request's
    /// index plus one (0: none), or a buffer-select read without an entry
    /// ([`LIGHT`]).
    by_fd: Vec<[u32; 2]>,
    /// The readiness polls' slots (connects and datagram sockets use
    /// them, seldom many at once), by descriptor and slot.
    polls: HashMap<(RawFd, usize), u32>,
    /// The generation of the next entry-less read (12 bits).
    light_gen: u32,
    live: usize,
    /// Boxed: the kernel holds addresses inside them, which must not move
    /// when the pool grows.
    #[allow(clippy::vec_box)]
    mems: Vec<Box<Mem>>,
    free_mems: Vec<u32>,
    /// Bytes of requests in [`State::Leftover`], by request index.
    leftovers: Vec<(u32, Bytes)>,
}

impl Ops {
    /// The request in `fd`'s `slot`, if any (an entry-less read gets its
    /// entry now).
    pub(crate) fn find(&mut self, fd: RawFd, slot: usize) -> Option<u32> {
        let at = self.slot_value(fd, slot);
        if at & LIGHT != 0 {
            return Some(self.materialize(fd, at));
        }
        at.checked_sub(1)
    }

    /// Whether `fd`'s `slot` holds a request.
    pub(crate) fn occupied(&self, fd: RawFd, slot: usize) -> bool {
        self.slot_value(fd, slot) != 0
    }

    /// What `fd`'s `slot` holds (0: nothing).
    fn slot_value(&self, fd: RawFd, slot: usize) -> u32 {
        if slot >= POLL_IN {
            return self.polls.get(&(fd, slot)).copied().unwrap_or(0);
        }
        let row = usize::try_from(fd).ok().and_then(|n| self.by_fd.get(n));
        row.map_or(0, |slots| slots[slot])
    }

    /// Puts `value` in `fd`'s `slot` (0 empties it).
    fn set_slot(&mut self, fd: RawFd, slot: usize, value: u32) {
        if slot >= POLL_IN {
            if value == 0 {
                self.polls.remove(&(fd, slot));
            } else {
                self.polls.insert((fd, slot), value);
            }
            return;
        }
        let Ok(number) = usize::try_from(fd) else {
            return;
        };
        if self.by_fd.len() <= number {
            if value == 0 {
                return;
            }
            // Only as far as the descriptor: the rows' pages are touched
            // as descriptors are, not ahead of them.
            self.by_fd.resize(number + 1, [0; 2]);
        }
        self.by_fd[number][slot] = value;
    }

    /// Starts a buffer-select read of at most `len` bytes (up to
    /// [`LIGHT_LEN`]) on `fd` from ring `group` without an entry; returns
    /// its user data.
    pub(crate) fn start_light(&mut self, fd: RawFd, group: u8, stream: bool, len: usize) -> u64 {
        debug_assert_eq!(self.slot_value(fd, READ), 0, "read slot of fd {fd} taken");
        debug_assert!(len <= LIGHT_LEN as usize && group <= 1);
        self.light_gen = (self.light_gen + 1) & LIGHT_GEN_MASK;
        let value = LIGHT
            | (u32::from(group) << 30)
            | (u32::from(stream) << 29)
            | (self.light_gen << LIGHT_GEN_SHIFT)
            | (len as u32 & LIGHT_LEN);
        self.set_slot(fd, READ, value);
        self.live += 1;
        light_user_data(fd, value)
    }

    /// Makes the entry of `fd`'s entry-less read, whose slot value is
    /// `value`; returns its index.
    fn materialize(&mut self, fd: RawFd, value: u32) -> u32 {
        // `start` counts it again and wants the slot empty.
        self.set_slot(fd, READ, 0);
        self.live -= 1;
        let len = (value & LIGHT_LEN) as usize;
        let idx = self.start(fd, READ, Kind::Select, 0, len);
        let op = &mut self.ops[idx as usize];
        op.group = ((value >> 30) & 1) as u8;
        op.stream = value & (1 << 29) != 0;
        op.light = value;
        idx
    }

    /// The live request `user_data` names, if it is still in the table
    /// (an entry-less read gets its entry now).
    pub(crate) fn resolve(&mut self, user_data: u64) -> Option<u32> {
        if user_data & LIGHT_USER_DATA == 0 {
            return self.named(user_data);
        }
        let fd = ((user_data >> 32) as u32 & !(1 << 31)) as RawFd;
        let value = user_data as u32;
        let at = self.slot_value(fd, READ);
        if at == value {
            return Some(self.materialize(fd, value));
        }
        // Its entry was made already (the engine asked about it).
        let idx = at.checked_sub(1).filter(|_| at & LIGHT == 0)?;
        (self.ops[idx as usize].light == value).then_some(idx)
    }

    pub(crate) fn get(&self, idx: u32) -> &Op {
        &self.ops[idx as usize]
    }

    pub(crate) fn get_mut(&mut self, idx: u32) -> &mut Op {
        &mut self.ops[idx as usize]
    }

    /// Requests in the table (in flight, or with results not taken yet).
    pub(crate) fn in_flight(&self) -> usize {
        self.live
    }

    /// Puts a new request in `fd`'s empty `slot`; returns its index.
    pub(crate) fn start(&mut self, fd: RawFd, slot: usize, kind: Kind, addr: usize, len: usize) -> u32 {
        assert!(fd >= 0, "descriptors are not negative");
        debug_assert_eq!(self.slot_value(fd, slot), 0, "slot {slot} of fd {fd} taken");
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                self.ops.push(Op {
                    tag: 0,
                    live: false,
                    fd: -1,
                    slot: 0,
                    kind,
                    state: State::InFlight,
                    addr: 0,
                    len: 0,
                    group: 0,
                    stream: false,
                    mem: 0,
                    light: 0,
                });
                u32::try_from(self.ops.len() - 1).expect("fewer than 4 billion requests")
            }
        };
        let op = &mut self.ops[idx as usize];
        op.live = true;
        op.fd = fd;
        op.slot = slot;
        op.kind = kind;
        op.state = State::InFlight;
        op.addr = addr;
        op.len = len;
        op.group = 0;
        op.stream = false;
        self.set_slot(fd, slot, idx + 1);
        self.live += 1;
        idx
    }

    /// Takes request `idx` out of the table: its slot is free, and a
    /// completion still to come for it will not match.
    pub(crate) fn end(&mut self, idx: u32) {
        let op = &mut self.ops[idx as usize];
        debug_assert!(op.live);
        if matches!(op.state, State::Leftover) {
            self.leftovers.retain(|(i, _)| *i != idx);
        }
        let op = &mut self.ops[idx as usize];
        if op.mem != 0 {
            self.free_mems.push(op.mem - 1);
            op.mem = 0;
        }
        op.live = false;
        op.light = 0;
        op.tag = op.tag.wrapping_add(1);
        op.state = State::InFlight;
        let (fd, slot) = (op.fd, op.slot);
        self.set_slot(fd, slot, 0);
        self.free.push(idx);
        self.live -= 1;
    }

    /// Request `idx`'s memory for the kernel, taken from the pool at its
    /// first use.
    pub(crate) fn mem_mut(&mut self, idx: u32) -> &mut Mem {
        if self.ops[idx as usize].mem == 0 {
            let at = match self.free_mems.pop() {
                Some(at) => at,
                None => {
                    self.mems.push(Mem::new());
                    u32::try_from(self.mems.len() - 1).expect("fewer than 4 billion requests")
                }
            };
            self.ops[idx as usize].mem = at + 1;
        }
        &mut self.mems[(self.ops[idx as usize].mem - 1) as usize]
    }

    /// Request `idx`'s memory, if it took some.
    pub(crate) fn mem(&self, idx: u32) -> Option<&Mem> {
        let at = self.ops[idx as usize].mem.checked_sub(1)?;
        Some(&self.mems[at as usize])
    }

    /// Keeps `bytes` for request `idx`, which goes to [`State::Leftover`].
    pub(crate) fn set_leftover(&mut self, idx: u32, bytes: Bytes) {
        self.ops[idx as usize].state = State::Leftover;
        self.leftovers.push((idx, bytes));
    }

    /// Takes request `idx`'s leftover bytes (its state goes back to
    /// in flight; the caller sets what follows).
    pub(crate) fn take_leftover(&mut self, idx: u32) -> Option<Bytes> {
        let at = self.leftovers.iter().position(|(i, _)| *i == idx)?;
        self.ops[idx as usize].state = State::InFlight;
        Some(self.leftovers.swap_remove(at).1)
    }

    /// The user data naming request `idx` to the kernel: its index, its
    /// buffer group (bit 31) and its tag (31 bits); or, for a read started
    /// without an entry, what it was started with.
    pub(crate) fn user_data(&self, idx: u32) -> u64 {
        let op = &self.ops[idx as usize];
        if op.light != 0 {
            return light_user_data(op.fd, op.light);
        }
        (u64::from(op.tag & TAG_MASK) << 32) | (u64::from(op.group) << 31) | u64::from(idx)
    }

    /// The live request `user_data` names, if it is still in the table.
    fn named(&self, user_data: u64) -> Option<u32> {
        let idx = (user_data & u64::from(INDEX_MASK)) as u32;
        let tag = (user_data >> 32) as u32;
        let op = self.ops.get(idx as usize)?;
        (op.live && op.tag & TAG_MASK == tag).then_some(idx)
    }
}

/// The bits of a user data's low half that hold the index.
const INDEX_MASK: u32 = (1 << 31) - 1;
/// The bits of a tag that go into a user data (its top bit is left clear,
/// so no user data is the ring's own, all ones).
const TAG_MASK: u32 = (1 << 31) - 1;

/// In a slot value: a buffer-select read without an entry. Its other bits:
/// its ring (bit 30), a stream socket (bit 29), a generation
/// ([`LIGHT_GEN_SHIFT`]) and its size ([`LIGHT_LEN`]).
const LIGHT: u32 = 1 << 31;
/// The size bits of an entry-less read's slot value: up to 128 KiB.
pub(crate) const LIGHT_LEN: u32 = (1 << 17) - 1;
const LIGHT_GEN_SHIFT: u32 = 17;
const LIGHT_GEN_MASK: u32 = (1 << 12) - 1;
/// In a user data: an entry-less read's, whose bits 32–62 are its
/// descriptor and 0–31 its slot value. (The ring's own user data, all ones
/// in bits 32–62, would name a descriptor no process has.)
const LIGHT_USER_DATA: u64 = 1 << 63;

fn light_user_data(fd: RawFd, value: u32) -> u64 {
    LIGHT_USER_DATA | (u64::from(fd as u32) << 32) | u64::from(value)
}

/// The buffer group a request's user data names.
pub(crate) fn group_of(user_data: u64) -> usize {
    if user_data & LIGHT_USER_DATA != 0 {
        ((user_data >> 30) & 1) as usize
    } else {
        ((user_data >> 31) & 1) as usize
    }
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("live", &self.live).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_index_does_not_match_the_old_user_data() {
        let mut ops = Ops::default();
        let a = ops.start(7, READ, Kind::Direct, 0x1000, 64);
        let old = ops.user_data(a);
        assert_eq!(ops.named(old), Some(a));
        assert_eq!(ops.find(7, READ), Some(a));
        ops.end(a);
        assert_eq!(ops.find(7, READ), None);
        assert_eq!(ops.named(old), None);
        let b = ops.start(7, READ, Kind::Select, 0, 64);
        assert_eq!(b, a, "the index is reused");
        assert_ne!(ops.user_data(b), old);
        assert_eq!(ops.named(old), None);
        assert_eq!(ops.in_flight(), 1);
    }

    #[test]
    fn a_read_without_an_entry_gets_one_when_answered_or_asked_about() {
        let mut ops = Ops::default();
        let data = ops.start_light(9, 1, true, 2048);
        assert_eq!(
            (ops.in_flight(), ops.ops.len()),
            (1, 0),
            "no entry while it waits"
        );
        assert!(ops.occupied(9, READ) && !ops.occupied(9, WRITE));
        assert_eq!(group_of(data), 1);
        // The kernel answers: the entry is made, with what it was given.
        let idx = ops.resolve(data).expect("named");
        let op = ops.get(idx);
        assert_eq!(
            (op.fd, op.kind, op.len, op.group, op.stream),
            (9, Kind::Select, 2048, 1, true)
        );
        assert_eq!(ops.user_data(idx), data, "the kernel's name for it is kept");
        assert_eq!(ops.resolve(data), Some(idx), "named again: the same entry");
        assert_eq!(ops.find(9, READ), Some(idx));
        assert_eq!(ops.in_flight(), 1);
        ops.end(idx);
        assert_eq!(
            (ops.in_flight(), ops.resolve(data)),
            (0, None),
            "a late word matches nothing"
        );

        // Asked about first (a cancel), then answered.
        let data = ops.start_light(9, 0, false, 100);
        let idx = ops.find(9, READ).expect("made on asking");
        assert_eq!((ops.get(idx).len, ops.get(idx).group), (100, 0));
        assert_eq!(ops.resolve(data), Some(idx));
        ops.end(idx);
        // A new read on the same descriptor is not the old one's.
        let newer = ops.start_light(9, 0, false, 100);
        assert_ne!(newer, data);
        assert_eq!(ops.resolve(data), None);
        assert!(ops.resolve(newer).is_some());
    }

    #[test]
    fn slots_of_one_descriptor_are_independent() {
        let mut ops = Ops::default();
        let r = ops.start(3, READ, Kind::Direct, 1, 1);
        let w = ops.start(3, WRITE, Kind::Write, 2, 1);
        let p = ops.start(3, POLL_OUT, Kind::Poll, 0, 0);
        assert_eq!(
            [
                ops.find(3, READ),
                ops.find(3, WRITE),
                ops.find(3, POLL_IN),
                ops.find(3, POLL_OUT)
            ],
            [Some(r), Some(w), None, Some(p)]
        );
        ops.end(w);
        assert_eq!(ops.find(3, READ), Some(r));
        assert_eq!(ops.find(3, WRITE), None);
        assert_eq!(ops.find(1000, READ), None);
    }
}
