//! Completions: what `wait_io` hands back for each finished request.

use std::os::fd::OwnedFd;

use crate::{Buffer, Conn, Error, IoBuf, PeerAddr};

/// The kind of operation a completion reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A read of at least one byte (own buffer or swap memory); on a
    /// datagram socket, one datagram.
    Read,
    /// A read that fills its whole buffer or fails.
    ReadFull,
    /// A read that appends to its buffer's spare capacity.
    ReadAppend,
    /// A write of all the buffer's bytes; on a datagram socket, one
    /// datagram.
    Write,
    /// A connection accepted from a listener.
    Accept,
    /// A connection dialled with [`Submit::connect`](crate::Submit::connect).
    Connect,
    /// The write side shut down after every earlier write.
    Shutdown,
    /// The socket handed back after every earlier request.
    Detach,
    /// One datagram received, with its sender's address.
    RecvFrom,
    /// One datagram sent to an address.
    SendTo,
    /// A [`notify`](crate::Submit::notify): a context sent to this
    /// watcher, on no connection.
    Notify,
    /// A [`sleep_until`](crate::Submit::sleep_until) whose deadline came,
    /// or that was cancelled, on no connection.
    Sleep,
}

impl Op {
    /// True for the operations that wait for the socket to be readable
    /// (reads, accepts, receives): they complete in order among
    /// themselves. The others wait for writability and complete in order
    /// among themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::Op;
    ///
    /// assert!(Op::Accept.is_read());
    /// assert!(!Op::Shutdown.is_read()); // ordered with the writes
    /// ```
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Op::Read | Op::ReadFull | Op::ReadAppend | Op::Accept | Op::RecvFrom
        )
    }

    /// The operation's name, as in the `Submit` method that starts it.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::Op;
    ///
    /// assert_eq!(Op::ReadFull.name(), "read_full");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::ReadFull => "read_full",
            Op::ReadAppend => "read_append",
            Op::Write => "write",
            Op::Accept => "accept",
            Op::Connect => "connect",
            Op::Shutdown => "shutdown",
            Op::Detach => "detach",
            Op::RecvFrom => "recv_from",
            Op::SendTo => "send_to",
            Op::Notify => "notify",
            Op::Sleep => "sleep_until",
        }
    }
}

/// One finished request. Only the watcher makes them; the struct may gain
/// fields, so a pattern that takes it apart needs `..`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion<C, B> {
    /// What the request was.
    pub op: Op,
    /// The connection it ran on; for a successful [`Op::Accept`], the new
    /// connection (already watched), and for [`Op::Connect`], the dialled
    /// one (dead if the connect failed). The request's context tells which
    /// listener an accept was on. [`Op::Notify`] and [`Op::Sleep`] run on
    /// no connection: theirs names none, and requests on it fail with
    /// [`Error::ForeignConn`].
    pub conn: Conn,
    /// The context it carried, unchanged.
    pub context: C,
    /// Bytes moved: read into the buffer from its start, or written from
    /// the buffer's start. Set on errors too (partial progress).
    pub bytes: usize,
    /// The buffer, handed back.
    pub buffer: Buffer<B>,
    /// `None` on success, otherwise why the request ended.
    pub error: Option<Error>,
    /// [`Op::Accept`]: the new connection's peer; [`Op::RecvFrom`] (and a
    /// read on a datagram socket): the sender; [`Op::SendTo`]: the
    /// destination; [`Op::Connect`]: the address dialled.
    pub peer: Option<PeerAddr>,
    /// [`Op::Detach`]: the socket, handed back (deregistered, open, still
    /// in non-blocking mode); the watcher never touches it again.
    pub detached: Option<OwnedFd>,
}

impl<C, B: IoBuf> Completion<C, B> {
    /// The bytes moved: for a read, the bytes read; for a write, the bytes
    /// written. Valid on error completions too (partial progress). For a
    /// [`read_append`](crate::Submit::read_append), the bytes this read
    /// appended (at the end of the buffer).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::Completion;
    ///
    /// fn show(c: &Completion<(), Vec<u8>>) {
    ///     // The buffer may be larger than what this read filled.
    ///     println!("read {:?}", String::from_utf8_lossy(c.data()));
    /// }
    /// ```
    pub fn data(&self) -> &[u8] {
        let all = self.buffer.as_bytes();
        let n = self.bytes.min(all.len());
        if self.op == Op::ReadAppend {
            &all[all.len() - n..]
        } else {
            &all[..n]
        }
    }

    /// `Ok(bytes)` on success, the error otherwise (consuming the error).
    ///
    /// # Errors
    ///
    /// The completion's [`error`](Completion::error), taken out of it: a
    /// second call returns `Ok`.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Completion, Error};
    ///
    /// fn show(mut c: Completion<(), Vec<u8>>) {
    ///     match c.result() {
    ///         Ok(n) => println!("{n} bytes"),
    ///         Err(Error::Eof) => println!("end of stream"),
    ///         Err(e) => println!("failed after {} bytes: {e}", c.bytes),
    ///     }
    /// }
    /// ```
    pub fn result(&mut self) -> Result<usize, Error> {
        match self.error.take() {
            None => Ok(self.bytes),
            Some(e) => Err(e),
        }
    }
}
