//! `Request`: one operation on one connection, as submitted.

use std::time::Instant;

use crate::{Conn, Error, IoBuf, IoBufAppend, IoBufMut, Listener, Op, PeerAddr, Rejected, Timer};

/// The mutable view of a read's own buffer: `<B as IoBufMut>::as_bytes_mut`,
/// captured where `B: IoBufMut` is known so the engine needs only `B: IoBuf`.
pub(crate) type ReadView<B> = fn(&mut B) -> &mut [u8];

/// `<B as IoBufAppend>`'s two methods, captured as [`ReadView`] is.
pub(crate) struct AppendView<B> {
    pub(crate) spare: fn(&mut B) -> &mut [std::mem::MaybeUninit<u8>],
    pub(crate) extend: unsafe fn(&mut B, usize),
}

// Function pointers copy whatever `B` is (a derive would ask `B: Copy`).
impl<B> Clone for AppendView<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for AppendView<B> {}

/// Where a read puts its bytes, or what a write sends.
pub(crate) enum Target<B> {
    /// The request's own buffer, with its read view for reads.
    User(B, Option<ReadView<B>>),
    /// The watcher's shared swap memory.
    Swap,
    /// No buffer (accept, shutdown, detach).
    None,
    /// Where a connect request dials.
    Addr(PeerAddr),
    /// A buffer whose spare capacity a read fills (see `IoBufAppend`).
    Append(B, AppendView<B>),
    /// A datagram to send to an address.
    Dest(B, PeerAddr),
    /// A sleep's timer (its deadline is the request's).
    Timer(Timer),
}

/// One operation on one connection: what to do, with which buffer, carrying
/// which context, and until when.
///
/// The [`Submit`](crate::Submit) methods (`read`, `write`, ...) build and
/// submit these; build one yourself to submit requests generically.
#[must_use = "a request does nothing until it is submitted"]
pub struct Request<C, B> {
    pub(crate) conn: Conn,
    pub(crate) op: Op,
    pub(crate) context: C,
    pub(crate) target: Target<B>,
    pub(crate) deadline: Option<Instant>,
    /// For a multishot accept: how to copy the context into each
    /// completion (`C::clone`, captured where `C: Clone` is known).
    pub(crate) repeat: Option<fn(&C) -> C>,
}

impl<C, B: IoBuf> Request<C, B> {
    /// A read of at least one byte into `buf` (see
    /// [`Submit::read`](crate::Submit::read)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::read(conn, (), vec![0; 4096]);
    /// assert_eq!(request.op(), Op::Read);
    /// # }
    /// ```
    pub fn read(conn: Conn, context: C, buf: B) -> Self
    where
        B: IoBufMut,
    {
        Self::new(conn, Op::Read, context, Target::User(buf, Some(B::as_bytes_mut)))
    }

    /// A read of at least one byte into the watcher's swap memory (see
    /// [`Submit::read_swap`](crate::Submit::read_swap)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<u64, Vec<u8>> = Request::read_swap(conn, 42);
    /// assert_eq!((request.conn(), request.op()), (conn, Op::Read));
    /// # }
    /// ```
    pub fn read_swap(conn: Conn, context: C) -> Self {
        Self::new(conn, Op::Read, context, Target::Swap)
    }

    /// A read of at least one byte into `buf`'s spare capacity, extending
    /// its length (see [`Submit::read_append`](crate::Submit::read_append)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::read_append(conn, (), Vec::with_capacity(4096));
    /// assert_eq!(request.op(), Op::ReadAppend);
    /// # }
    /// ```
    pub fn read_append(conn: Conn, context: C, buf: B) -> Self
    where
        B: IoBufAppend,
    {
        let view = AppendView {
            spare: B::spare_capacity,
            extend: B::extend_filled,
        };
        Self::new(conn, Op::ReadAppend, context, Target::Append(buf, view))
    }

    /// A read that fills the whole of `buf`, or fails (see
    /// [`Submit::read_full`](crate::Submit::read_full)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let header: Request<(), [u8; 8]> = Request::read_full(conn, (), [0; 8]);
    /// assert_eq!(header.op(), Op::ReadFull);
    /// # }
    /// ```
    pub fn read_full(conn: Conn, context: C, buf: B) -> Self
    where
        B: IoBufMut,
    {
        Self::new(
            conn,
            Op::ReadFull,
            context,
            Target::User(buf, Some(B::as_bytes_mut)),
        )
    }

    /// A write of every byte of `buf` (see
    /// [`Submit::write`](crate::Submit::write)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), &'static [u8]> = Request::write(conn, (), b"+PONG\r\n");
    /// assert_eq!(request.op(), Op::Write);
    /// # }
    /// ```
    pub fn write(conn: Conn, context: C, buf: B) -> Self {
        Self::new(conn, Op::Write, context, Target::User(buf, None))
    }

    /// Dials `addr` (see [`Submit::connect`](crate::Submit::connect)). The
    /// request's connection is made when it is submitted; until then
    /// [`conn`](Request::conn) names none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use gaio_core::{Op, Request};
    ///
    /// let upstream: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    /// let request: Request<(), Vec<u8>> = Request::connect(upstream, ());
    /// assert_eq!(request.op(), Op::Connect);
    /// ```
    pub fn connect(addr: impl Into<PeerAddr>, context: C) -> Self {
        Self::new(Conn::NONE, Op::Connect, context, Target::Addr(addr.into()))
    }

    /// Accepts a connection on `listener` (see
    /// [`Submit::accept`](crate::Submit::accept)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(listener: gaio_core::Listener) {
    /// let request: Request<(), Vec<u8>> = Request::accept(listener, ());
    /// assert_eq!((request.conn(), request.op()), (listener.conn(), Op::Accept));
    /// # }
    /// ```
    pub fn accept(listener: Listener, context: C) -> Self {
        Self::new(listener.conn(), Op::Accept, context, Target::None)
    }

    /// Accepts every connection that arrives on `listener`, each completion
    /// carrying a clone of `context` (see
    /// [`Submit::accept_multishot`](crate::Submit::accept_multishot)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(listener: gaio_core::Listener) {
    /// // Every connection's completion carries "public".
    /// let request: Request<&str, Vec<u8>> = Request::accept_multishot(listener, "public");
    /// assert_eq!(request.op(), Op::Accept);
    /// # }
    /// ```
    pub fn accept_multishot(listener: Listener, context: C) -> Self
    where
        C: Clone,
    {
        let mut req = Self::new(listener.conn(), Op::Accept, context, Target::None);
        req.repeat = Some(C::clone);
        req
    }

    /// Shuts the write side down once every write before it is done (see
    /// [`Submit::shutdown`](crate::Submit::shutdown)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::shutdown(conn, ());
    /// assert_eq!(request.op(), Op::Shutdown);
    /// # }
    /// ```
    pub fn shutdown(conn: Conn, context: C) -> Self {
        Self::new(conn, Op::Shutdown, context, Target::None)
    }

    /// Hands the socket back once every request before it is done (see
    /// [`Submit::detach`](crate::Submit::detach)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::detach(conn, ());
    /// assert_eq!(request.op(), Op::Detach);
    /// # }
    /// ```
    pub fn detach(conn: Conn, context: C) -> Self {
        Self::new(conn, Op::Detach, context, Target::None)
    }

    /// Receives one datagram into `buf`, with its sender's address (see
    /// [`Submit::recv_from`](crate::Submit::recv_from)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::recv_from(conn, (), vec![0; 1500]);
    /// assert_eq!(request.op(), Op::RecvFrom);
    /// # }
    /// ```
    pub fn recv_from(conn: Conn, context: C, buf: B) -> Self
    where
        B: IoBufMut,
    {
        Self::new(
            conn,
            Op::RecvFrom,
            context,
            Target::User(buf, Some(B::as_bytes_mut)),
        )
    }

    /// Receives one datagram into swap memory, with its sender's address
    /// (see [`Submit::recv_from_swap`](crate::Submit::recv_from_swap)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::recv_from_swap(conn, ());
    /// assert_eq!(request.op(), Op::RecvFrom);
    /// # }
    /// ```
    pub fn recv_from_swap(conn: Conn, context: C) -> Self {
        Self::new(conn, Op::RecvFrom, context, Target::Swap)
    }

    /// Sends `buf` as one datagram to `addr` (see
    /// [`Submit::send_to`](crate::Submit::send_to)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use gaio_core::{Op, Request};
    /// # fn f(conn: gaio_core::Conn) {
    /// let collector: SocketAddr = "127.0.0.1:8125".parse().unwrap();
    /// let request: Request<(), Vec<u8>> = Request::send_to(conn, (), b"hits:1|c".to_vec(), collector);
    /// assert_eq!(request.op(), Op::SendTo);
    /// # }
    /// ```
    pub fn send_to(conn: Conn, context: C, buf: B, addr: impl Into<PeerAddr>) -> Self {
        Self::new(conn, Op::SendTo, context, Target::Dest(buf, addr.into()))
    }

    /// Completes on the watcher it is submitted to with `context`, on no
    /// connection (see [`Submit::notify`](crate::Submit::notify)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    ///
    /// let request: Request<&str, Vec<u8>> = Request::notify("reload");
    /// assert_eq!(request.op(), Op::Notify);
    /// ```
    pub fn notify(context: C) -> Self {
        Self::new(Conn::NONE, Op::Notify, context, Target::None)
    }

    /// Completes at `deadline`, not before, with `context`, on no
    /// connection (see [`Submit::sleep_until`](crate::Submit::sleep_until)).
    /// [`timer`](Request::timer) names it for
    /// [`cancel_timer`](crate::Submit::cancel_timer).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Op, Request};
    ///
    /// let request: Request<&str, Vec<u8>> = Request::sleep_until(Instant::now() + Duration::from_secs(1), "tick");
    /// assert_eq!(request.op(), Op::Sleep);
    /// assert!(request.timer().is_some());
    /// ```
    pub fn sleep_until(deadline: Instant, context: C) -> Self {
        let mut req = Self::new(Conn::NONE, Op::Sleep, context, Target::Timer(Timer::next()));
        req.deadline = Some(deadline);
        req
    }

    /// Sets a deadline: if the request has not completed by then, it
    /// completes with [`Error::Deadline`] and the bytes moved so far. A
    /// deadline already past at submission completes at once, without I/O.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Request, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// w.submit(Request::read_full(conn, (), vec![0; 4]).deadline(deadline))?;
    /// # Ok(()) }
    /// ```
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn new(conn: Conn, op: Op, context: C, target: Target<B>) -> Self {
        Request {
            conn,
            op,
            context,
            target,
            deadline: None,
            repeat: None,
        }
    }

    /// The connection the request is for (the listener's, for an accept).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::Request;
    /// # fn f(conn: gaio_core::Conn) {
    /// let request: Request<(), Vec<u8>> = Request::write(conn, (), b"bye\n".to_vec());
    /// assert_eq!(request.conn(), conn);
    /// # }
    /// ```
    pub fn conn(&self) -> Conn {
        self.conn
    }

    /// The operation.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Op, Request};
    ///
    /// fn is_write<C, B: gaio_core::IoBuf>(request: &Request<C, B>) -> bool {
    ///     matches!(request.op(), Op::Write | Op::SendTo)
    /// }
    /// ```
    pub fn op(&self) -> Op {
        self.op
    }

    /// The timer of a [`sleep_until`](Request::sleep_until) request, for
    /// [`cancel_timer`](crate::Submit::cancel_timer); `None` for the
    /// others.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use gaio_core::Request;
    ///
    /// let a: Request<(), Vec<u8>> = Request::sleep_until(Instant::now(), ());
    /// let b: Request<(), Vec<u8>> = Request::sleep_until(Instant::now(), ());
    /// assert_ne!(a.timer(), b.timer()); // each sleep has its own
    /// ```
    pub fn timer(&self) -> Option<Timer> {
        match self.target {
            Target::Timer(t) => Some(t),
            _ => None,
        }
    }

    /// True for the requests that run on no connection (notify, sleep):
    /// the engine takes them without looking for one.
    pub(crate) fn is_connless(&self) -> bool {
        matches!(self.op, Op::Notify | Op::Sleep)
    }

    /// Checks what can be checked without the engine: a read has room for
    /// a byte. Hands the request back as a rejection otherwise.
    /// (Checked by reference: a request is moved as little as possible on
    /// the way to the engine.)
    #[inline]
    pub(crate) fn check(&mut self) -> Result<(), Error> {
        // A read target's length is the same through `as_bytes` and
        // `as_bytes_mut`. A write of nothing is a write: it completes, with
        // 0 bytes, once the writes before it are done.
        let empty = match &mut self.target {
            Target::Swap | Target::None | Target::Addr(_) | Target::Timer(_) => false,
            Target::User(b, Some(_)) => b.as_bytes().is_empty(),
            Target::User(_, None) => false,
            // An empty datagram is a datagram.
            Target::Dest(..) => false,
            // No room to append to.
            Target::Append(b, view) => (view.spare)(b).is_empty(),
        };
        if empty {
            Err(Error::EmptyBuffer)
        } else {
            Ok(())
        }
    }

    /// Turns the request into a rejection carrying its context, buffer and
    /// address.
    pub(crate) fn reject(self, error: Error) -> Rejected<C, B> {
        let (buffer, peer) = match self.target {
            Target::User(b, _) | Target::Append(b, _) => (Some(b), None),
            Target::Dest(b, addr) => (Some(b), Some(addr)),
            Target::Addr(addr) => (None, Some(addr)),
            Target::Swap | Target::None | Target::Timer(_) => (None, None),
        };
        Rejected {
            error,
            context: self.context,
            buffer,
            peer,
        }
    }
}

/// Shows what a request is without asking anything of its context and
/// buffer types.
impl<C, B> std::fmt::Debug for Request<C, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::User(..) => "own buffer",
            Target::Swap => "swap memory",
            Target::None => "none",
            Target::Addr(_) => "address",
            Target::Append(..) => "spare capacity",
            Target::Dest(..) => "datagram to an address",
            Target::Timer(_) => "timer",
        };
        f.debug_struct("Request")
            .field("conn", &self.conn)
            .field("op", &self.op)
            .field("target", &target)
            .field("deadline", &self.deadline)
            .field("multishot", &self.repeat.is_some())
            .finish_non_exhaustive()
    }
}
