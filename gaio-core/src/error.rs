//! Errors reported at submission and in completions.

use std::{fmt, io};

use crate::Op;

/// Why a request failed or was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed its side: a read found end of stream. For
    /// `read_full`, the completion still reports the bytes read before it.
    Eof,
    /// The request's deadline passed before it completed; the completion
    /// reports how many bytes were moved before that.
    Deadline,
    /// The connection was freed (or the handle is stale: it names a
    /// connection that no longer exists).
    ConnClosed,
    /// The watcher was closed.
    WatcherClosed,
    /// A [`sleep_until`](crate::Submit::sleep_until) was cancelled with
    /// [`cancel_timer`](crate::Submit::cancel_timer) before its deadline.
    Cancelled,
    /// The thread running the watcher's I/O panicked (in background mode:
    /// user code such as an [`IoBuf`](crate::IoBuf) method or a `Drop` runs
    /// on it), or an earlier call panicked and unwound out of the watcher
    /// (inline mode). The watcher closed itself: its sockets are closed and
    /// its pending requests came back with [`Error::WatcherClosed`].
    Panicked {
        /// In background mode, the panic's message, when it had one. In
        /// inline mode the panic itself unwound into the caller, message
        /// and all; this then says only that an earlier call panicked.
        message: Box<str>,
    },
    /// The connection handle is not one of this watcher's: another watcher
    /// handed it out (a request must go to the watcher that owns its
    /// connection), or it is the `conn` of a notification or a sleep,
    /// which names no connection.
    ForeignConn,
    /// A read was submitted with a buffer of length zero (or, for
    /// `read_append`, no spare capacity): it needs room for at least one
    /// byte.
    EmptyBuffer,
    /// The poller refused the file descriptor at hand-over (for example a
    /// regular file, which epoll cannot watch). The descriptor was closed.
    NotPollable(io::Error),
    /// The descriptor is a socket of a type the watcher does not handle:
    /// neither a stream socket (TCP, Unix stream) nor a datagram socket
    /// (UDP, Unix datagram); seqpacket and raw sockets, for instance. The
    /// descriptor was closed.
    UnsupportedSocket,
    /// [`watch_listener`](crate::Submit::watch_listener) was given a socket
    /// that is not listening (call `listen` first, or use
    /// [`listen`](crate::listen)). The descriptor was closed.
    NotListening,
    /// The operation does not apply to this kind of connection: `accept`
    /// on a connection that is not a listener, a read on a listener,
    /// `read_full` or `shutdown` on a datagram socket, `send_to` on a
    /// stream socket.
    NotSupported {
        /// The operation refused.
        op: Op,
    },
    /// A write would take the bytes queued on its connection past the
    /// watcher's [`max_queued_write_bytes`](crate::Builder::max_queued_write_bytes).
    /// The write was not queued; its buffer comes back.
    WriteQueueFull {
        /// Bytes queued on the connection and not yet written.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// A datagram was longer than the buffer it was received into: the
    /// buffer holds its first bytes (the completion's `bytes`), the rest
    /// was discarded by the kernel.
    Truncated,
    /// A [`Builder`](crate::Builder) setting is out of its range (boxed:
    /// every completion carries an `Option<Error>`, kept small).
    InvalidSetting(Box<InvalidSetting>),
    /// The CPU number passed to an affinity setter does not exist or is not
    /// available to this process.
    InvalidCpu {
        /// The CPU number asked for.
        cpu: usize,
    },
    /// An inline watcher whose I/O is bound to one thread was asked to wait
    /// from another: on io_uring, the ring belongs to the thread that first
    /// ran the watcher's I/O, the only one the kernel lets enter it
    /// (`IORING_SETUP_SINGLE_ISSUER`). Nothing was done and nothing is
    /// lost: wait from that thread again. A watcher meant to move between
    /// threads after its first I/O is built with
    /// [`Mode::Background`](crate::Mode::Background) or on epoll
    /// ([`Backend::Epoll`](crate::Backend::Epoll)); one moved before its
    /// first I/O binds to the thread it moved to. Once the watcher is
    /// closed, any thread may collect what it hands back.
    ///
    /// Submitting from the wrong thread is accepted, but a request that
    /// has to end a read or write in the ring there (a `free`, a `detach`
    /// behind a read, a `close`) makes the ring give up: its requests end
    /// without their I/O and no thread may enter it again, so every wait
    /// then answers this error. Close such a watcher.
    WrongThread,
    /// The operating system reported an error (reset, broken pipe, ...).
    Io(io::Error),
}

impl Error {
    /// The OS error behind this error, if there is one: that of
    /// [`Io`](Error::Io) and [`NotPollable`](Error::NotPollable).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use gaio_core::Error;
    ///
    /// let reset = Error::from(io::Error::from(io::ErrorKind::ConnectionReset));
    /// assert_eq!(reset.os_error().map(io::Error::kind), Some(io::ErrorKind::ConnectionReset));
    /// assert!(Error::Eof.os_error().is_none());
    /// ```
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io(e) | Error::NotPollable(e) => Some(e),
            _ => None,
        }
    }

    /// The closest [`io::ErrorKind`] for this error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use gaio_core::Error;
    ///
    /// assert_eq!(Error::Deadline.kind(), ErrorKind::TimedOut);
    /// assert_eq!(Error::Eof.kind(), ErrorKind::UnexpectedEof);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Eof => io::ErrorKind::UnexpectedEof,
            Error::Deadline => io::ErrorKind::TimedOut,
            Error::ConnClosed | Error::WatcherClosed => io::ErrorKind::NotConnected,
            // Not `Interrupted`: std's I/O helpers retry that, and a
            // cancelled timer is not to be waited for again.
            Error::Cancelled | Error::WrongThread => io::ErrorKind::Other,
            Error::ForeignConn => io::ErrorKind::InvalidInput,
            Error::Panicked { .. } => io::ErrorKind::Other,
            Error::EmptyBuffer | Error::InvalidCpu { .. } | Error::InvalidSetting(_) => {
                io::ErrorKind::InvalidInput
            }
            Error::UnsupportedSocket | Error::NotSupported { .. } => io::ErrorKind::Unsupported,
            Error::NotListening => io::ErrorKind::InvalidInput,
            Error::WriteQueueFull { .. } => io::ErrorKind::WouldBlock,
            Error::Truncated => io::ErrorKind::InvalidData,
            Error::NotPollable(e) | Error::Io(e) => e.kind(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Eof => f.write_str("end of stream: the peer closed the connection"),
            Error::Deadline => f.write_str("deadline passed before the request completed"),
            Error::ConnClosed => f.write_str("connection closed"),
            Error::WatcherClosed => f.write_str("watcher closed"),
            Error::Cancelled => f.write_str("timer cancelled before its deadline"),
            Error::ForeignConn => f.write_str("the connection belongs to another watcher, or to none"),
            Error::Panicked { message } => write!(f, "the watcher's engine panicked: {message}"),
            Error::EmptyBuffer => f.write_str("empty buffer: a read needs room for at least one byte"),
            Error::NotPollable(e) => write!(f, "the poller cannot watch this descriptor: {e}"),
            Error::UnsupportedSocket => f.write_str("neither a stream nor a datagram socket"),
            Error::NotListening => f.write_str("the socket is not listening"),
            Error::NotSupported { op } => {
                write!(f, "{} is not supported on this kind of connection", op.name())
            }
            Error::WriteQueueFull { queued, limit } => {
                write!(f, "write queue full: {queued} bytes queued, the limit is {limit}")
            }
            Error::Truncated => f.write_str("datagram truncated: it was longer than the buffer"),
            Error::InvalidSetting(s) => write!(
                f,
                "{} = {} is out of range: it must be between {} and {}",
                s.name, s.value, s.min, s.max
            ),
            Error::InvalidCpu { cpu } => {
                write!(f, "cpu {cpu} does not exist or is not available to this process")
            }
            Error::WrongThread => f.write_str(
                "this watcher's I/O belongs to the thread that first ran it (io_uring, inline mode): \
                 wait from that thread, or build the watcher in background mode or on epoll",
            ),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

/// `Display` already includes an OS error's message (`Io`, `NotPollable`),
/// so `source` does not return that error again: it returns the OS error's
/// own source, if it has one. An error chain shows each message once; the
/// OS error itself is [`Error::os_error`].
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::NotPollable(e) => e.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// An errno from a rustix call, as an [`Error::Io`]. A function, not a
/// `From` impl: rustix stays out of the public API.
pub(crate) fn errno(e: rustix::io::Errno) -> Error {
    Error::Io(e.into())
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(other.kind(), other),
        }
    }
}

/// A [`Builder`](crate::Builder) setting out of its range: which, what was
/// given, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The setting, as the builder method is named (`swap_size`, ...).
    pub name: &'static str,
    /// The value given.
    pub value: usize,
    /// The smallest value allowed.
    pub min: usize,
    /// The largest value allowed.
    pub max: usize,
}

/// A request the watcher refused at submission, with everything it carried,
/// so nothing is lost: the context and the buffer come back to the caller.
pub struct Rejected<C, B> {
    /// Why the request was refused.
    pub error: Error,
    /// The context the request carried.
    pub context: C,
    /// The buffer the request carried, if it had one.
    pub buffer: Option<B>,
    /// The address the request carried: where a connect dials, where a
    /// `send_to` sends.
    pub peer: Option<crate::PeerAddr>,
}

impl<C, B> Rejected<C, B> {
    /// The completion a request of `op` on `conn` makes when, instead of
    /// being refused, it completes at once with this error: nothing moved,
    /// its context and buffer handed back.
    pub(crate) fn into_completion(self, op: crate::Op, conn: crate::Conn) -> crate::Completion<C, B> {
        let buffer = match self.buffer {
            Some(b) => crate::Buffer::User(b),
            None if op.is_read() && op != crate::Op::Accept => crate::Buffer::Swap(bytes::Bytes::new()),
            None => crate::Buffer::None,
        };
        crate::Completion {
            op,
            conn,
            context: self.context,
            bytes: 0,
            buffer,
            error: Some(self.error),
            peer: self.peer,
            detached: None,
        }
    }
}

impl<C, B> fmt::Debug for Rejected<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .field("has_buffer", &self.buffer.is_some())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<C, B> fmt::Display for Rejected<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request refused: {}", self.error)
    }
}

/// `Display` includes the refusal's [`Error`], so `source` skips it and
/// returns that error's own source: each message shows once in a chain.
impl<C, B> std::error::Error for Rejected<C, B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<C, B> From<Rejected<C, B>> for Error {
    fn from(r: Rejected<C, B>) -> Self {
        r.error
    }
}

impl<C, B> From<Rejected<C, B>> for io::Error {
    fn from(r: Rejected<C, B>) -> Self {
        r.error.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of an error chain: the error's, then each source's.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[test]
    fn an_os_error_shows_once_in_an_error_chain() {
        let reset = || io::Error::from_raw_os_error(104); // ECONNRESET
        let reset_text = reset().to_string();
        for e in [Error::Io(reset()), Error::NotPollable(reset())] {
            let messages = chain(&e);
            assert_eq!(messages.len(), 1, "{messages:?}");
            assert!(messages[0].contains(&reset_text), "{messages:?}");
            assert_eq!(e.os_error().map(io::Error::raw_os_error), Some(Some(104)));
        }
        let refused: Rejected<(), Vec<u8>> = Rejected {
            error: Error::Io(reset()),
            context: (),
            buffer: None,
            peer: None,
        };
        let messages = chain(&refused);
        assert_eq!(messages, [format!("request refused: {reset_text}")]);
    }

    #[test]
    fn a_wrapped_error_with_a_source_of_its_own_keeps_it() {
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("inner cause")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Error::Io(io::Error::other(Outer(Inner)));
        assert_eq!(chain(&e), ["outer", "inner cause"]);
    }
}
