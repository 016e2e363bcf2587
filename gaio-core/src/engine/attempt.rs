//! One request's I/O, tried once against its connection's readiness.
//!
//! The same attempt serves a request already pending in the slab (driven
//! by an event) and a request just submitted to an idle connection, which
//! is tried before it is stored: when it completes at once it never
//! touches the slab or the timer heap.

use std::io::IoSlice;
use std::os::fd::AsFd;

use bytes::Bytes;

use super::complete::Extra;
use super::conn_state::{
    rearm, ConnState, DGRAM, EOF, HUP, READABLE, SHORT_READ_DRAINS, STREAM, URGENT, WRITABLE,
};
use super::drive::unwritten;
use super::slab::Node;
use super::swap::Swap;
use super::Dir;
use crate::request::{AppendView, ReadView};
use crate::{Conn, Error, IoBuf, IoOutcome, Op, Poller};

/// What an attempt came to.
pub(super) enum Attempt {
    /// The request is over: complete it with this error (`None`:
    /// success) and, for a swap read, the slice read; anything more is in
    /// [`IoState::extra`].
    Done(Option<Error>, Bytes),
    /// The request waits for readiness (or for a retry after ENOBUFS);
    /// its progress so far is recorded in the node.
    Wait,
}

/// The engine state an attempt needs besides the connection and the node.
pub(super) struct IoState<B> {
    /// Swap memory for buffer-less reads.
    pub(super) swap: Swap,
    /// `<B as IoBufMut>::as_bytes_mut`, learnt from the first read with
    /// its own buffer: the same function for every request of this buffer
    /// type, so kept once here rather than in every pending request.
    pub(super) read_view: Option<ReadView<B>>,
    /// `<B as IoBufAppend>`'s methods, learnt as `read_view` is.
    pub(super) append_view: Option<AppendView<B>>,
    /// Connections to retry soon after ENOBUFS, with the direction.
    pub(super) starved: Vec<(Conn, Dir)>,
    /// What the next completion made adds besides an error and a swap
    /// slice (see [`Extra`]), and whether anything was set: most
    /// completions have nothing to take.
    extra: Extra,
    has_extra: bool,
}

/// An [`IoState`] together with the poller, for one attempt.
pub(super) struct Io<'a, P, B> {
    pub(super) poller: &'a P,
    pub(super) state: &'a mut IoState<B>,
}

impl<B> IoState<B> {
    pub(super) fn new(swap_size: usize) -> Self {
        IoState {
            swap: Swap::new(swap_size),
            read_view: None,
            append_view: None,
            starved: Vec::new(),
            extra: Extra::default(),
            has_extra: false,
        }
    }

    /// The extra of the next completion, to fill in.
    pub(super) fn extra_mut(&mut self) -> &mut Extra {
        self.has_extra = true;
        &mut self.extra
    }

    /// The extra of the completion being made (empty unless set).
    #[inline]
    pub(super) fn take_extra(&mut self) -> Extra {
        if self.has_extra {
            self.has_extra = false;
            std::mem::take(&mut self.extra)
        } else {
            Extra::default()
        }
    }

    /// Pairs this state with the poller that does the system calls.
    pub(super) fn with<'a, P>(&'a mut self, poller: &'a P) -> Io<'a, P, B> {
        Io { poller, state: self }
    }
}

impl<P: Poller, B: IoBuf> Io<'_, P, B> {
    /// Reads for `node` while `conn` is readable: once for `Read`, until
    /// the buffer is full for `ReadFull`; one datagram on a datagram socket.
    pub(super) fn read<C>(
        &mut self,
        conn_state: &mut ConnState,
        conn: Conn,
        node: &mut Node<C, B>,
    ) -> Attempt {
        if conn_state.has(DGRAM) {
            return self.recv(conn_state, conn, node);
        }
        loop {
            if conn_state.has(EOF) {
                return Attempt::Done(Some(Error::Eof), Bytes::new());
            }
            if !conn_state.has(READABLE) {
                return Attempt::Wait;
            }
            let fd = conn_state.fd.as_fd();
            let kind = conn_state.kind();
            let (outcome, wanted, swap) = match &mut node.buf {
                None => match self.poller.read_lent(fd) {
                    // A completion poller's own memory, lent as it is.
                    Some((outcome, lent)) => (outcome, lent.len(), lent),
                    None => self.state.swap.read(self.poller, fd, kind),
                },
                Some(buf) if node.op == Op::ReadAppend => {
                    let (outcome, wanted) = self.append(fd, kind, buf);
                    (outcome, wanted, Bytes::new())
                }
                // The kernel may still write into this read's buffer: not
                // a look at it until the read has ended (the completion
                // poller's rule, see `Poller::read_in_flight`).
                Some(_) if self.poller.read_in_flight(fd) => (IoOutcome::WouldBlock, 0, Bytes::new()),
                Some(buf) => {
                    // A buffer whose `as_bytes_mut` disagrees with
                    // `as_bytes` (or shrank under a `read_full`) gives an
                    // empty region here rather than a slicing panic.
                    let region = self.region(buf, node.done);
                    let wanted = region.len();
                    // An empty region only happens with such a buffer
                    // (submission refuses empty buffers): never read 0 bytes
                    // and mistake that for end of stream.
                    if wanted == 0 {
                        return Attempt::Done(Some(Error::EmptyBuffer), Bytes::new());
                    }
                    (self.poller.read(fd, kind, region), wanted, Bytes::new())
                }
            };
            match outcome {
                IoOutcome::Done(0) => {
                    conn_state.set(EOF, true);
                    return Attempt::Done(Some(Error::Eof), Bytes::new());
                }
                IoOutcome::Done(n) => {
                    node.done += n;
                    // A short read proves the receive queue empty only
                    // where the kernel stops short for no other reason
                    // (`SHORT_READ_DRAINS`: plain TCP, whose reads also stop
                    // at an urgent mark, announced as `URGENT`), and while
                    // the peer has not hung up (no further edge would
                    // come). Then the next read waits for an edge and saves
                    // the `recv` that would say EAGAIN; otherwise it tries.
                    if n < wanted && conn_state.has(SHORT_READ_DRAINS) && !conn_state.has(HUP | URGENT) {
                        self.not_ready(conn_state, conn, Dir::Read);
                    }
                    // One read completes a `read` or a `read_append`; a
                    // `read_full` goes on until its buffer is full.
                    if node.op != Op::ReadFull || n >= wanted {
                        return Attempt::Done(None, swap);
                    }
                }
                other => return self.stopped(conn_state, conn, Dir::Read, other),
            }
        }
    }

    /// One read into `buf`'s spare capacity, extending its length by the
    /// bytes read: the outcome and the room the read was offered.
    fn append(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        kind: crate::FdKind,
        buf: &mut B,
    ) -> (IoOutcome, usize) {
        let Some(view) = self.state.append_view else {
            return (IoOutcome::Failed(std::io::ErrorKind::InvalidInput.into()), 0);
        };
        let spare = (view.spare)(buf);
        let offered = spare.len();
        if offered == 0 {
            // Only a buffer that changed under the watcher (submission
            // refuses one with no room): never read 0 bytes and mistake
            // that for end of stream.
            return (IoOutcome::Failed(std::io::ErrorKind::WriteZero.into()), 0);
        }
        let start = spare.as_ptr() as *const u8;
        let (outcome, filled) = self.poller.read_uninit(fd, kind, spare);
        let n = filled.len();
        // As for swap memory: only a filled prefix of the spare capacity
        // proves initialised bytes.
        assert!(
            n <= offered && (n == 0 || std::ptr::eq(filled.as_ptr(), start)),
            "Poller::read_uninit returned a slice outside the buffer it was given"
        );
        if let IoOutcome::Done(_) = outcome {
            // SAFETY: `filled` is a `&mut [u8]` of `n` bytes at the start of
            // the spare capacity (checked above), so those bytes are
            // initialised, and `n` is at most the spare capacity's length.
            unsafe { (view.extend)(buf, n) };
            return (IoOutcome::Done(n), offered);
        }
        (outcome, offered)
    }

    /// The region of a read's own buffer from `done` on. A buffer whose
    /// `as_bytes_mut` disagrees with `as_bytes` (or shrank under a
    /// `read_full`) gives an empty region rather than a slicing panic.
    pub(super) fn region<'b>(&self, buf: &'b mut B, done: usize) -> &'b mut [u8] {
        match self.state.read_view {
            Some(view) => view(buf).get_mut(done..).unwrap_or_default(),
            None => &mut [][..],
        }
    }

    /// Writes `node`, the only write pending on `conn`, while `conn` is
    /// writable, until it is all written; on a datagram socket, sends it as
    /// one datagram (to `dest`, for a send-to).
    pub(super) fn write_one<C>(
        &mut self,
        conn_state: &mut ConnState,
        conn: Conn,
        node: &mut Node<C, B>,
        dest: Option<&crate::PeerAddr>,
    ) -> Attempt {
        if conn_state.has(DGRAM) {
            return self.send(conn_state, conn, node, dest);
        }
        loop {
            if !conn_state.has(WRITABLE) {
                return Attempt::Wait;
            }
            let bytes = unwritten(node);
            if bytes.is_empty() {
                // Only a buffer that changed under the watcher can be empty
                // here: complete it rather than send nothing forever.
                return Attempt::Done(None, Bytes::new());
            }
            let offered = bytes.len();
            let outcome = self
                .poller
                .write(conn_state.fd.as_fd(), conn_state.kind(), &[IoSlice::new(bytes)]);
            match outcome {
                IoOutcome::Done(n) => {
                    node.done += n;
                    if n >= offered {
                        return Attempt::Done(None, Bytes::new());
                    }
                    // A short write to a stream socket filled its send
                    // buffer: wait for an edge. Other descriptors try again.
                    if conn_state.has(STREAM) {
                        self.not_ready(conn_state, conn, Dir::Write);
                    }
                }
                other => return self.stopped(conn_state, conn, Dir::Write, other),
            }
        }
    }

    /// Records that `conn` would block in `dir`: the next attempt waits
    /// for an edge (a level-triggered poller is re-armed for it).
    pub(super) fn not_ready(&mut self, conn_state: &mut ConnState, conn: Conn, dir: Dir) {
        conn_state.set_ready(dir, false);
        rearm(self.poller, conn_state, conn, dir);
    }

    /// What an outcome other than `Done` means for a request in `dir`:
    /// wait for an edge (would block) or for a retry soon (the kernel is
    /// short of buffers), or finish with the error.
    pub(super) fn stopped(
        &mut self,
        conn_state: &mut ConnState,
        conn: Conn,
        dir: Dir,
        outcome: IoOutcome,
    ) -> Attempt {
        match outcome {
            IoOutcome::Done(_) => unreachable!("only outcomes other than Done are given here"),
            IoOutcome::WouldBlock => {
                if dir == Dir::Read {
                    // Drained for certain: past any urgent mark.
                    conn_state.set(URGENT, false);
                }
                self.not_ready(conn_state, conn, dir);
                Attempt::Wait
            }
            IoOutcome::Starved => {
                crate::diag::debug_event!(fd = conn.fd, ?dir, "starved of kernel buffers; retrying soon");
                self.state.starved.push((conn, dir));
                Attempt::Wait
            }
            IoOutcome::Failed(e) => Attempt::Done(Some(Error::Io(e)), Bytes::new()),
        }
    }
}
