//! The `Submit` trait (every way to hand work to a watcher) and the
//! cloneable `Submitter` for threads other than the one that waits.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::request::{Request, Target};
use crate::shared::{Command, Role, Shared};
use crate::{
    AcceptOptions, Conn, Error, IoBuf, IoBufAppend, IoBufMut, Listener, Op, PeerAddr, Poller, Rejected,
};

/// Result of a submission: on refusal the request's context and buffer
/// come back inside [`Rejected`].
pub type SubmitResult<C, B> = Result<(), Rejected<C, B>>;

/// Handing connections and requests to a watcher.
///
/// Implemented by [`Watcher`](crate::Watcher) (from the thread that owns it)
/// and [`Submitter`] (from any thread). Requests on one connection complete
/// in submission order per direction: reads in order among reads, writes in
/// order among writes.
///
/// # Errors
///
/// A refused submission returns [`Rejected`], which hands the request's
/// context and buffer back with the reason:
///
/// * [`Error::WatcherClosed`]: the watcher is closed
///   ([`close`](Submit::close), the end of
///   [`close_gracefully`](Submit::close_gracefully), a panic in user code,
///   or the [`Watcher`](crate::Watcher) dropped).
/// * [`Error::ForeignConn`]: another watcher handed the handle out.
/// * [`Error::EmptyBuffer`]: a read whose buffer has no room.
/// * [`Error::NotSupported`]: the connection's kind does not have the
///   operation (`op` names it). A listener only accepts and detaches; a
///   datagram socket does not `read_full`, `read_append` or `shutdown`; a
///   stream socket does not `recv_from` or `send_to`; a descriptor that is
///   not a socket (a pipe) only reads, writes and detaches.
/// * [`Error::WriteQueueFull`]: a write or a datagram send that would
///   take its connection past the
///   [`max_queued_write_bytes`](crate::Builder::max_queued_write_bytes)
///   cap.
///
/// A close from another thread (a [`Submitter`]'s `close`, the end of a
/// graceful close) races the owning thread, which may be answering a batch
/// it has not yet been told was the last. So the [`Watcher`](crate::Watcher)
/// itself does not refuse a request with [`Error::WatcherClosed`] until its
/// thread knows: it called [`close`](Submit::close), or `wait_io` returned
/// `Err(WatcherClosed)` (`next_batch`, `false`). Until then the request is
/// taken and completes with [`Error::WatcherClosed`] in the next batch, and
/// a loop that answers each completion with a request and `?` ends through
/// `next_batch`, not through an error. A hand-over ([`watch`](Submit::watch),
/// [`watch_listener`](Submit::watch_listener)) then succeeds too, with a
/// handle that names no connection (the descriptor is closed at once): a
/// server stopped by a signal while it starts ends the same way.
///
/// The thread running the I/O decides the last two. From the watcher's
/// owning thread in inline mode, they refuse the request at once; through a
/// [`Submitter`], or in background mode, the submission succeeds and the
/// request completes at once with the error.
///
/// A request on a handle that names no connection any more (freed,
/// detached, or stale) is not refused: it completes with
/// [`Error::ConnClosed`], as does every pending request of a connection
/// when it is freed. A request pending when the watcher closes completes
/// with [`Error::WatcherClosed`]; one whose deadline has already passed at
/// submission completes at once with [`Error::Deadline`]. A request whose
/// system call fails (a reset, a broken pipe) completes with
/// [`Error::Io`]. Each method below names the errors it adds.
///
/// # Panics
///
/// Only if user code it runs panics: a submission calls the buffer's
/// [`IoBuf`] methods (to check that a read has room, and from the owning
/// thread in inline mode to run the I/O at once), and may clone a
/// multishot accept's context. In inline mode the panic unwinds out of
/// the submission and the next call closes the watcher; in background
/// mode it is caught, the watcher closes, and the submission returns
/// `Ok`. Either way the request whose code panicked may never complete
/// (dropped with its context and buffer if the panic came before the
/// watcher stored it; see the
/// [`Watcher`](crate::Watcher#panics-in-user-code)).
pub trait Submit {
    /// The user context every request carries and its completion returns.
    type Context;
    /// The buffer type requests carry.
    type Buf: IoBuf;

    /// Submits a request built with [`Request`]; every other submission
    /// method is a shorthand for this one.
    ///
    /// # Errors
    ///
    /// Those of the request's operation: see the method of the same name,
    /// and the trait's [errors](Submit#errors).
    ///
    /// # Examples
    ///
    /// Requests built first, submitted later:
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Request, Submit};
    /// # fn f<S: Submit<Context = u32, Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// let requests = [
    ///     Request::write(conn, 1, b"PING\r\n".to_vec()),
    ///     Request::read(conn, 2, vec![0; 512]).deadline(deadline),
    /// ];
    /// for request in requests {
    ///     w.submit(request)?;
    /// }
    /// # Ok(()) }
    /// ```
    fn submit(
        &mut self,
        request: Request<Self::Context, Self::Buf>,
    ) -> SubmitResult<Self::Context, Self::Buf>;

    /// Hands a connected stream socket, a datagram socket (UDP, Unix
    /// datagram) or any other descriptor the poller accepts (a pipe) over
    /// to the watcher and returns its handle. The descriptor is put in
    /// non-blocking mode and closed by the watcher when the connection is
    /// freed or the watcher closes; on error it is closed at once.
    ///
    /// A write to a socket whose peer has gone away fails with `EPIPE`
    /// and never raises SIGPIPE. A pipe has no such per-write flag: a write
    /// to a pipe with no reader raises SIGPIPE, which kills the process
    /// unless it ignores the signal (Rust programs do, from `main`; a
    /// library loaded by another program may not).
    ///
    /// # Errors
    ///
    /// * [`Error::WatcherClosed`]: the watcher is closed (through the
    ///   [`Watcher`](crate::Watcher), once its thread knows; see
    ///   [above](Submit#errors)).
    /// * [`Error::UnsupportedSocket`]: a socket that is neither a stream
    ///   nor a datagram socket (seqpacket, raw).
    /// * [`Error::NotPollable`]: the poller refused the descriptor (epoll
    ///   refuses a regular file).
    /// * [`Error::Io`]: a system call failed while the descriptor was
    ///   prepared (put in non-blocking mode, say).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::TcpStream;
    /// use gaio_core::Submit;
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S) -> Result<(), gaio_core::Error> {
    /// let stream = TcpStream::connect("127.0.0.1:6379")?;
    /// let conn = w.watch(stream)?; // moved in: the watcher owns the socket now
    /// w.write(conn, (), b"PING\r\n".to_vec())?;
    /// w.read_swap(conn, ())?;
    /// # Ok(()) }
    /// ```
    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error>;

    /// Hands a listening socket over, for [`accept`](Submit::accept):
    /// every connection accepted on it gets `options`. The descriptor is
    /// put in non-blocking mode; on error it is closed at once.
    ///
    /// # Errors
    ///
    /// * [`Error::WatcherClosed`]: the watcher is closed (as for
    ///   [`watch`](Submit::watch)).
    /// * [`Error::NotListening`]: a datagram socket, or a stream socket
    ///   that is not listening. Apple systems cannot tell the latter: there
    ///   its first accept completes with an [`Error::Io`] (`EINVAL`)
    ///   instead.
    /// * [`Error::UnsupportedSocket`]: neither a stream nor a datagram
    ///   socket, or not a socket at all.
    /// * [`Error::NotPollable`]: the poller refused the descriptor.
    /// * [`Error::Io`]: a system call failed, such as setting one of the
    ///   `options` on the listener.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{AcceptOptions, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S) -> Result<(), gaio_core::Error> {
    /// let options = AcceptOptions::new().keepalive(true).recv_buffer_size(256 * 1024);
    /// let listener = w.watch_listener_with(gaio_core::listen("0.0.0.0:8080")?, options)?;
    /// w.accept_multishot(listener, ())?;
    /// # Ok(()) }
    /// ```
    fn watch_listener_with(
        &mut self,
        listener: impl Into<OwnedFd>,
        options: AcceptOptions,
    ) -> Result<Listener, Error>;

    /// [`watch_listener_with`](Submit::watch_listener_with) the default
    /// options (`TCP_NODELAY` on accepted TCP connections).
    ///
    /// # Errors
    ///
    /// Those of [`watch_listener_with`](Submit::watch_listener_with).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::Submit;
    /// # fn f(w: &mut impl Submit<Context = (), Buf = Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// let listener = w.watch_listener(gaio_core::listen("127.0.0.1:0")?)?;
    /// w.accept(listener, ())?;
    /// # Ok(()) }
    /// ```
    fn watch_listener(&mut self, listener: impl Into<OwnedFd>) -> Result<Listener, Error> {
        self.watch_listener_with(listener, AcceptOptions::default())
    }

    /// Closes the connection; each of its pending requests completes with
    /// [`Error::ConnClosed`]. Freeing a connection twice, through a stale
    /// handle, or after the watcher closed (which closes every connection)
    /// does nothing. A listener is freed through its
    /// [`conn`](Listener::conn). A stream connection freed after its
    /// [`shutdown`](Submit::shutdown) completed, or during a
    /// [graceful close](Submit::close_gracefully), lingers until its peer
    /// closes (see there); the handle is stale at once all the same.
    ///
    /// # Errors
    ///
    /// Only [`Error::ForeignConn`], for a handle another watcher handed
    /// out: a loop handling the completions that a `close` from another
    /// thread brings can `free` with `?`. The connection a notification's
    /// or a timer's completion names is none: freeing it does nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Completion, Submit};
    /// # fn f<S: Submit>(w: &mut S, c: Completion<S::Context, S::Buf>) -> Result<(), gaio_core::Error> {
    /// // End of stream, a reset, a deadline...: done with this client.
    /// if c.error.is_some() {
    ///     w.free(c.conn)?;
    /// }
    /// # Ok(()) }
    /// ```
    fn free(&mut self, conn: Conn) -> Result<(), Error>;

    /// Closes the watcher: every connection is closed, every pending
    /// request completes with [`Error::WatcherClosed`] (handed out by the
    /// next `wait_io`), and later submissions are refused. Closing twice is
    /// harmless. Through the [`Watcher`](crate::Watcher), every socket is
    /// closed when this returns; through a [`Submitter`], the thread running
    /// the I/O closes them as soon as it wakes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Poller, Submit, Watcher};
    ///
    /// fn stop<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) -> Result<(), gaio_core::Error> {
    ///     w.close();
    ///     assert!(w.is_closed());
    ///     let mut batch = Vec::new();
    ///     while w.next_batch(&mut batch)? {
    ///         batch.clear(); // the requests that were pending, with `WatcherClosed`
    ///     }
    ///     Ok(())
    /// }
    /// ```
    fn close(&mut self);

    /// Closes the watcher gracefully, within `timeout`: stops taking new
    /// work, lets the work under way finish, then closes.
    ///
    /// - Every listener and datagram socket closes at once: their pending
    ///   requests complete with [`Error::ConnClosed`] (a multishot accept
    ///   ends).
    /// - Each stream connection is half-closed (`SHUT_WR`, as
    ///   [`shutdown`](Submit::shutdown)) once the writes queued on it are
    ///   written: its peer reads every response, then end of stream. Reads
    ///   and writes keep working meanwhile, so the loop handles the
    ///   completions as usual and frees each connection as its peer closes.
    /// - Once every connection has been freed, or when `timeout` has
    ///   passed, the watcher closes as [`close`](Submit::close) does: what
    ///   is still pending completes with [`Error::WatcherClosed`], and
    ///   [`Watcher::next_batch`](crate::Watcher::next_batch) ends the loop.
    ///
    /// A stream connection freed meanwhile (its client closed, or a write
    /// to it failed with `BrokenPipe` after the half-close while the
    /// client still sends) lingers: the watcher half-closes its socket,
    /// reads and drops what the client sends until the client closes, and
    /// only then closes it, or at the deadline. Closing a socket with bytes
    /// unread would make the kernel reset the connection and discard the
    /// responses still in its send buffer, on their way to the client. A
    /// lingering socket counts as a connection not yet freed.
    ///
    /// Connections watched after the call are not half-closed by it. From
    /// another thread (a signal handler's), call it through a
    /// [`Submitter`]. After `close`, it does nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use gaio_core::{Error, Op, Poller, Submit, Watcher};
    ///
    /// fn serve<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) -> Result<(), Error> {
    ///     let listener = w.watch_listener(gaio_core::listen("127.0.0.1:0")?)?;
    ///     w.accept_multishot(listener, ())?;
    ///     let mut stopper = w.submitter();
    ///     std::thread::spawn(move || {
    ///         // ... on Ctrl-C, say:
    ///         stopper.close_gracefully(Duration::from_secs(5));
    ///     });
    ///     let mut batch = Vec::new();
    ///     while w.next_batch(&mut batch)? {
    ///         for c in batch.drain(..) {
    ///             match (c.op, c.error) {
    ///                 (Op::Accept, None) => { /* serve c.conn */ }
    ///                 (Op::Accept, Some(_)) => {} // closed: no longer accepting
    ///                 (_, Some(_)) => w.free(c.conn)?, // end of stream, ...
    ///                 _ => { /* ... */ }
    ///             }
    ///         }
    ///     }
    ///     Ok(()) // closed: every connection done, or the time was up
    /// }
    /// ```
    fn close_gracefully(&mut self, timeout: Duration);

    /// Reads at least one byte into `buf` (from its start): the
    /// completion's [`data`](crate::Completion::data) is the bytes read. On
    /// a datagram socket, receives one datagram and its sender, as
    /// [`recv_from`](Submit::recv_from) does.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)), and with
    /// [`Error::EmptyBuffer`] for an empty `buf`. Completes with
    /// [`Error::Eof`] once the peer has closed its side (every later read
    /// does too), and on a datagram socket with [`Error::Truncated`] for a
    /// datagram longer than `buf`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// // A `Vec`'s length is the room a read fills: `vec![0; n]`, not
    /// // `Vec::with_capacity(n)` (which `read_append` takes).
    /// w.read(conn, (), vec![0; 4096])?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "recv")]
    fn read(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufMut,
    {
        self.submit(Request::read(conn, context, buf))
    }

    /// Like [`read`](Submit::read), failing with [`Error::Deadline`] if
    /// nothing arrived by `deadline`.
    ///
    /// # Errors
    ///
    /// Those of [`read`](Submit::read), and [`Error::Deadline`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// // A client silent for 30 seconds gets `Error::Deadline`.
    /// let deadline = Instant::now() + Duration::from_secs(30);
    /// w.read_timeout(conn, (), vec![0; 4096], deadline)?;
    /// # Ok(()) }
    /// ```
    fn read_timeout(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufMut,
    {
        self.submit(Request::read(conn, context, buf).deadline(deadline))
    }

    /// Reads at least one byte into the watcher's swap memory: an idle
    /// connection waiting this way holds no buffer. The completion's buffer
    /// is a [`Buffer::Swap`](crate::Buffer::Swap) slice of exactly the bytes
    /// read.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)). Completes
    /// with [`Error::Eof`] once the peer has closed its side, and on a
    /// datagram socket with [`Error::Truncated`] for a datagram longer than
    /// the swap size.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Buffer, Completion, Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn, c: Completion<(), Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// w.read_swap(conn, ())?;
    /// // ... and in its completion `c`:
    /// if let Buffer::Swap(bytes) = c.buffer {
    ///     println!("{} bytes", bytes.len()); // valid for as long as it is held
    /// }
    /// # Ok(()) }
    /// ```
    fn read_swap(&mut self, conn: Conn, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::read_swap(conn, context))
    }

    /// Like [`read_swap`](Submit::read_swap), with a deadline.
    ///
    /// # Errors
    ///
    /// Those of [`read_swap`](Submit::read_swap), and [`Error::Deadline`]
    /// if nothing arrived by `deadline`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// // An idle keep-alive connection, given a minute before it is dropped.
    /// w.read_swap_timeout(conn, (), Instant::now() + Duration::from_secs(60))?;
    /// # Ok(()) }
    /// ```
    fn read_swap_timeout(
        &mut self,
        conn: Conn,
        context: Self::Context,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::read_swap(conn, context).deadline(deadline))
    }

    /// Reads at least one byte into `buf`'s spare capacity and extends its
    /// length by the bytes read; the completion's `bytes` is how many, and
    /// [`data`](crate::Completion::data) those bytes. The watcher grows
    /// nothing: reserve room first.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)), and with
    /// [`Error::EmptyBuffer`] for a `buf` with no spare capacity.
    /// Completes with [`Error::Eof`] once the peer has closed its side.
    ///
    /// # Examples
    ///
    /// A message that may arrive in pieces collects in one buffer, with no
    /// copy and no second buffer of "pending" bytes:
    ///
    /// ```no_run
    /// use gaio_core::{BytesMut, Submit};
    /// # fn f<S: Submit<Context = (), Buf = BytesMut>>(w: &mut S, conn: gaio_core::Conn) -> Result<(), gaio_core::Error> {
    /// let mut request = BytesMut::with_capacity(4096);
    /// // ... later, while the request is not whole yet:
    /// request.reserve(1024);
    /// w.read_append(conn, (), request)?;
    /// # Ok(()) }
    /// ```
    fn read_append(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufAppend,
    {
        self.submit(Request::read_append(conn, context, buf))
    }

    /// Like [`read_append`](Submit::read_append), failing with
    /// [`Error::Deadline`] if nothing arrived by `deadline`.
    ///
    /// # Errors
    ///
    /// Those of [`read_append`](Submit::read_append), and
    /// [`Error::Deadline`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn, mut pending: Vec<u8>) -> Result<(), gaio_core::Error> {
    /// // The rest of a request has 10 seconds to arrive.
    /// pending.reserve(4096);
    /// w.read_append_timeout(conn, (), pending, Instant::now() + Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    fn read_append_timeout(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufAppend,
    {
        self.submit(Request::read_append(conn, context, buf).deadline(deadline))
    }

    /// Fills the whole of `buf`.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)), and with
    /// [`Error::EmptyBuffer`] for an empty `buf`. End of stream before
    /// `buf` is full completes with [`Error::Eof`] and the number of bytes
    /// read before it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// // A frame's 4-byte length prefix, whole or not at all.
    /// w.read_full(conn, (), vec![0; 4])?;
    /// # Ok(()) }
    /// ```
    fn read_full(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufMut,
    {
        self.submit(Request::read_full(conn, context, buf))
    }

    /// Like [`read_full`](Submit::read_full), with a deadline.
    ///
    /// # Errors
    ///
    /// Those of [`read_full`](Submit::read_full), and [`Error::Deadline`]
    /// with the bytes read so far if `buf` is not full by `deadline`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn, len: usize) -> Result<(), gaio_core::Error> {
    /// // A frame's body, `len` bytes, within 5 seconds.
    /// w.read_full_timeout(conn, (), vec![0; len], Instant::now() + Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    fn read_full_timeout(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufMut,
    {
        self.submit(Request::read_full(conn, context, buf).deadline(deadline))
    }

    /// Writes every byte of `buf`. A write that cannot finish waits in its
    /// queue (nothing is copied); an error reports the bytes written before
    /// it. An empty `buf` completes, with 0 bytes, once the writes before it
    /// are done (as std's `write_all(&[])` succeeds): a server may write
    /// whatever its protocol produced without testing for nothing. On a
    /// connected datagram socket an empty `buf` is an empty datagram.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)), and with
    /// [`Error::WriteQueueFull`] past the watcher's cap on queued bytes.
    /// Completes with [`Error::Io`] if the peer has gone away (`EPIPE`,
    /// `ECONNRESET`; never a SIGPIPE on a socket), with the bytes written
    /// before.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// w.write(conn, (), b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "sendmsg", alias = "writev")]
    fn write(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::write(conn, context, buf))
    }

    /// Like [`write`](Submit::write), failing with [`Error::Deadline`] and
    /// the partial byte count if not all was written by `deadline`.
    ///
    /// # Errors
    ///
    /// Those of [`write`](Submit::write), and [`Error::Deadline`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn, response: Vec<u8>) -> Result<(), gaio_core::Error> {
    /// // A client that does not read its response within 10 seconds is dropped.
    /// w.write_timeout(conn, (), response, Instant::now() + Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    fn write_timeout(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::write(conn, context, buf).deadline(deadline))
    }

    /// Accepts one connection on `listener`. The completion
    /// ([`Op::Accept`](crate::Op::Accept)) carries the new connection,
    /// already watched, in `conn`, and its peer's address in `peer`; a
    /// failed accept carries the listener's handle in `conn` (use the
    /// context to tell listeners apart). Several accepts may wait on one
    /// listener; they complete in order.
    ///
    /// When the process or the system is out of descriptors (EMFILE,
    /// ENFILE) or the kernel out of memory for sockets (ENOBUFS, ENOMEM), a
    /// pending accept does not fail and does not spin: it is retried every
    /// 20 ms while connections wait. If it has a deadline that passes while
    /// the shortage lasts, it completes with that error (EMFILE, ENFILE,
    /// or ENOBUFS for either memory error) rather than
    /// [`Error::Deadline`], so the cause shows.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)). Completes
    /// with [`Error::ConnClosed`] once the listener is freed (or closed by
    /// [`close_gracefully`](Submit::close_gracefully)), and with
    /// [`Error::Io`] for an error of `accept(2)` that is not retried (a
    /// connection aborted before it was taken is skipped, not reported),
    /// or [`Error::NotPollable`] if the poller refused the new socket.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::Submit;
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S) -> Result<(), gaio_core::Error> {
    /// let listener = w.watch_listener(gaio_core::listen("0.0.0.0:8080")?)?;
    /// w.accept(listener, ())?;
    /// // Its completion: `c.conn` is the new connection, `c.peer` its address.
    /// # Ok(()) }
    /// ```
    #[doc(alias = "accept4")]
    fn accept(
        &mut self,
        listener: Listener,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::accept(listener, context))
    }

    /// Like [`accept`](Submit::accept), failing with [`Error::Deadline`]
    /// if no connection came by `deadline`.
    ///
    /// # Errors
    ///
    /// Those of [`accept`](Submit::accept), and [`Error::Deadline`] (or
    /// the shortage that held the accept up, as an [`Error::Io`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Listener, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, listener: Listener) -> Result<(), gaio_core::Error> {
    /// // The one client a test expects, within a second.
    /// w.accept_timeout(listener, (), Instant::now() + Duration::from_secs(1))?;
    /// # Ok(()) }
    /// ```
    fn accept_timeout(
        &mut self,
        listener: Listener,
        context: Self::Context,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::accept(listener, context).deadline(deadline))
    }

    /// Accepts every connection that arrives on `listener`, for as long as
    /// it is watched: one request, one [`Op::Accept`](crate::Op::Accept)
    /// completion per connection (each with a clone of `context`, the new
    /// connection in `conn`, its peer in `peer`). It stays pending (a
    /// burst is taken whole on one wake-up; running out of descriptors
    /// waits and retries, as [`accept`](Submit::accept) does) until it
    /// ends with one completion carrying an error. Accepts submitted after
    /// it on the same listener wait until it ends.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)). Ends with
    /// [`Error::ConnClosed`] once the listener is freed (or closed by
    /// [`close_gracefully`](Submit::close_gracefully)),
    /// [`Error::WatcherClosed`], an [`Error::Io`] for an error of
    /// `accept(2)` that is not retried, or [`Error::NotPollable`] if the
    /// poller refused a new socket.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Completion, Error, Listener, Op, Submit};
    /// # fn f<S: Submit<Context = ()>>(w: &mut S, listener: Listener, c: Completion<(), S::Buf>) -> Result<(), Error> {
    /// w.accept_multishot(listener, ())?;
    /// // ... in the completion loop:
    /// match (c.op, c.error) {
    ///     (Op::Accept, None) => { /* serve c.conn */ }
    ///     (Op::Accept, Some(e)) => { /* the listener was freed, or failed: e */ }
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "accept4")]
    fn accept_multishot(
        &mut self,
        listener: Listener,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Context: Clone,
    {
        self.submit(Request::accept_multishot(listener, context))
    }

    /// Dials `addr` (TCP over IPv4 or IPv6, or a Unix socket path) without
    /// blocking. The completion ([`Op::Connect`](crate::Op::Connect))
    /// carries the new connection in `conn` (already watched, with
    /// `TCP_NODELAY` on for TCP) and `addr` in `peer`; on failure its
    /// error, the socket already closed.
    ///
    /// # Errors
    ///
    /// Refused with [`Error::WatcherClosed`] once the watcher is closed,
    /// and otherwise only if no socket could be made: [`Error::Io`] (out of
    /// descriptors, say) or [`Error::NotPollable`]. Completes with
    /// [`Error::Io`] if the connection could not be made (refused,
    /// unreachable, or an unnamed Unix address), or with
    /// [`Error::WatcherClosed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use gaio_core::{PeerAddr, Submit};
    /// # fn f<S: Submit<Context = &'static str, Buf = Vec<u8>>>(w: &mut S) -> Result<(), gaio_core::Error> {
    /// let cache: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    /// w.connect(cache, "cache")?;
    /// w.connect(PeerAddr::unix_path("/run/app.sock"), "app")?;
    /// // Each completion: `c.conn` is the new connection, or `c.error` why not.
    /// # Ok(()) }
    /// ```
    fn connect(
        &mut self,
        addr: impl Into<PeerAddr>,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::connect(addr, context))
    }

    /// Like [`connect`](Submit::connect), failing with [`Error::Deadline`]
    /// if the connection was not made by `deadline`.
    ///
    /// # Errors
    ///
    /// Those of [`connect`](Submit::connect), and [`Error::Deadline`] (the
    /// socket then closed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{PeerAddr, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, upstream: PeerAddr) -> Result<(), gaio_core::Error> {
    /// w.connect_timeout(upstream, (), Instant::now() + Duration::from_secs(3))?;
    /// # Ok(()) }
    /// ```
    fn connect_timeout(
        &mut self,
        addr: impl Into<PeerAddr>,
        context: Self::Context,
        deadline: Instant,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::connect(addr, context).deadline(deadline))
    }

    /// Shuts the connection's write side down (`SHUT_WR`: the peer reads
    /// end of stream) once every write submitted before has been written;
    /// reads keep working. "Send the response, then close" is a `write`
    /// and a `shutdown`, and a `free` once the shutdown has completed.
    ///
    /// A stream connection freed after its shutdown completed lingers, as
    /// nginx's lingering close does: the watcher keeps its socket open and
    /// reads and drops what the peer still sends (as it turns: inside
    /// `wait_io`, in inline mode), until the peer closes, for 2 s at most,
    /// then closes it. Closed at once with bytes unread (a client
    /// pipelining on after an error response), the kernel would reset the
    /// connection and discard the response still on its way. A sixteenth
    /// of the process's descriptor limit may linger at a time (64 at the
    /// usual 1,024; at most 4,096; past that, freed ones close at once),
    /// and they all close when accepting finds the process out of
    /// descriptors, or when the watcher closes. A graceful close lingers
    /// until its own deadline.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)); only a
    /// stream socket has a write side to shut down
    /// ([`Error::NotSupported`] otherwise). Completes with [`Error::Io`]
    /// if `shutdown(2)` fails (the connection is already gone, say). A
    /// shutdown after one that completed succeeds without asking the
    /// kernel again: the write side is shut.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// w.write(conn, (), b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n".to_vec())?;
    /// w.shutdown(conn, ())?; // after the write: the client reads it, then end of stream
    /// # Ok(()) }
    /// ```
    #[doc(alias = "SHUT_WR")]
    fn shutdown(&mut self, conn: Conn, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::shutdown(conn, context))
    }

    /// Hands the socket back once every write (and shutdown) submitted
    /// before has completed: the completion
    /// ([`Op::Detach`](crate::Op::Detach)) carries it in `detached`,
    /// deregistered, open and still in non-blocking mode; the watcher
    /// never touches it again. Requests submitted after the detach
    /// complete with [`Error::ConnClosed`].
    ///
    /// Reads (and accepts) still waiting do not hold the detach back, so
    /// an idle connection detaches at once: they complete right after the
    /// detach, with [`Error::ConnClosed`] and what they took so far (none,
    /// but for a [`read_full`](Submit::read_full) partly filled, whose
    /// bytes are in its buffer); the bytes they waited for stay in the
    /// socket, for its next owner. (A read whose
    /// bytes the kernel was landing as the detach came, on io_uring,
    /// completes with them, before the detach.) Coming after the detach, a
    /// loop that frees a connection on any error frees a stale handle,
    /// which does nothing. Moving a connection to another watcher this way
    /// loses and duplicates no byte.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)); every kind
    /// of connection can be detached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::TcpStream;
    /// use gaio_core::{Completion, Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn, c: Completion<(), Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// w.detach(conn, ())?;
    /// // ... and in its completion:
    /// if let Some(fd) = c.detached {
    ///     let stream = TcpStream::from(fd);
    ///     stream.set_nonblocking(false)?; // for code that blocks
    /// }
    /// # Ok(()) }
    /// ```
    fn detach(&mut self, conn: Conn, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::detach(conn, context))
    }

    /// Sends `context` to the watcher: it completes there
    /// ([`Op::Notify`](crate::Op::Notify), no connection, no error) in the
    /// next batch, in the order notifications were submitted from one
    /// thread. From another thread, through a [`Submitter`], this is how
    /// application events (a message for a client of this watcher, a
    /// shutdown) join the I/O in one `wait_io` loop. Wakes the watcher if
    /// it sleeps; costs no system call if it is awake.
    ///
    /// # Errors
    ///
    /// [`Error::WatcherClosed`] once the watcher is closed (the context
    /// comes back in the [`Rejected`]). A notification accepted just before
    /// the watcher closes completes with [`Error::WatcherClosed`]: each is
    /// handed out exactly once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Op, Poller, Submit, Watcher};
    ///
    /// enum Event { Io, Broadcast(String) }
    ///
    /// fn run<P: Poller>(w: &mut Watcher<P, Event, Vec<u8>>) -> Result<(), gaio_core::Error> {
    ///     let mut other_thread = w.submitter();
    ///     std::thread::spawn(move || {
    ///         let _ = other_thread.notify(Event::Broadcast("hello".into()));
    ///     });
    ///     let mut batch = Vec::new();
    ///     w.wait_io(&mut batch)?;
    ///     if let Some(c) = batch.first() {
    ///         assert_eq!(c.op, Op::Notify);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    fn notify(&mut self, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::notify(context))
    }

    /// Completes at `deadline`, never before, with `context`
    /// ([`Op::Sleep`](crate::Op::Sleep), no connection, no error). Timers
    /// complete in deadline order, equal deadlines in submission order.
    /// The [`Timer`](crate::Timer) returned cancels it
    /// ([`cancel_timer`](Submit::cancel_timer)); a deadline already past
    /// completes in the next batch. Idle timeouts and periodic work need
    /// no loop of their own: resubmit the sleep from its completion.
    ///
    /// # Errors
    ///
    /// [`Error::WatcherClosed`] once the watcher is closed; a sleep pending
    /// when it closes completes with [`Error::WatcherClosed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use gaio_core::{Op, Poller, Submit, Watcher};
    ///
    /// fn tick<P: Poller>(w: &mut Watcher<P, u32, Vec<u8>>) -> Result<(), gaio_core::Error> {
    ///     let start = Instant::now();
    ///     w.sleep_until(start + Duration::from_millis(100), 1)?;
    ///     let mut batch = Vec::new();
    ///     w.wait_io(&mut batch)?;
    ///     assert_eq!((batch[0].op, batch[0].context), (Op::Sleep, 1));
    ///     assert!(start.elapsed() >= Duration::from_millis(100));
    ///     Ok(())
    /// }
    /// ```
    fn sleep_until(
        &mut self,
        deadline: Instant,
        context: Self::Context,
    ) -> Result<crate::Timer, Rejected<Self::Context, Self::Buf>> {
        let request = Request::sleep_until(deadline, context);
        let timer = request.timer().expect("a sleep has a timer");
        self.submit(request).map(|()| timer)
    }

    /// [`sleep_until`](Submit::sleep_until) `duration` from now.
    ///
    /// # Errors
    ///
    /// As [`sleep_until`](Submit::sleep_until).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use gaio_core::Submit;
    /// # fn f(w: &mut impl Submit<Context = &'static str, Buf = Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// w.sleep(Duration::from_secs(1), "flush stats")?; // and again from its completion
    /// # Ok(()) }
    /// ```
    fn sleep(
        &mut self,
        duration: Duration,
        context: Self::Context,
    ) -> Result<crate::Timer, Rejected<Self::Context, Self::Buf>> {
        self.sleep_until(deadline_after(duration), context)
    }

    /// Cancels a [`sleep_until`](Submit::sleep_until): if it is still
    /// pending, it completes in the next batch with [`Error::Cancelled`]
    /// and its context. If it has fired already (its completion is out, or
    /// in a batch not yet handed out), or `timer` is not this watcher's,
    /// this does nothing: every sleep completes exactly once, fired or
    /// cancelled.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room. After the watcher closes it
    /// does nothing (its sleeps completed with [`Error::WatcherClosed`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use gaio_core::{Error, Op, Poller, Submit, Watcher};
    ///
    /// fn f<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) -> Result<(), Error> {
    ///     let timer = w.sleep(Duration::from_secs(60), ())?;
    ///     w.cancel_timer(timer)?;
    ///     let mut batch = Vec::new();
    ///     w.wait_io(&mut batch)?;
    ///     assert_eq!(batch[0].op, Op::Sleep);
    ///     assert!(matches!(batch[0].error, Some(Error::Cancelled)));
    ///     Ok(())
    /// }
    /// ```
    fn cancel_timer(&mut self, timer: crate::Timer) -> Result<(), Error>;

    /// Receives one datagram into `buf` (from its start). The completion
    /// carries the sender in `peer`; a datagram longer than `buf` keeps its
    /// first bytes and completes with [`Error::Truncated`].
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)), and with
    /// [`Error::EmptyBuffer`] for an empty `buf`; only a datagram socket
    /// receives ([`Error::NotSupported`] otherwise). Completes with
    /// [`Error::Truncated`] for a datagram longer than `buf`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::UdpSocket;
    /// use gaio_core::Submit;
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S) -> Result<(), gaio_core::Error> {
    /// let conn = w.watch(UdpSocket::bind("0.0.0.0:5353")?)?;
    /// w.recv_from(conn, (), vec![0; 1500])?;
    /// // Its completion: `c.data()` is the datagram, `c.peer` its sender.
    /// # Ok(()) }
    /// ```
    #[doc(alias = "recvfrom", alias = "recvmsg")]
    fn recv_from(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
    ) -> SubmitResult<Self::Context, Self::Buf>
    where
        Self::Buf: IoBufMut,
    {
        self.submit(Request::recv_from(conn, context, buf))
    }

    /// Receives one datagram into the watcher's swap memory (one datagram
    /// per completion, at most the swap size: longer ones are truncated
    /// and say so).
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)); only a
    /// datagram socket receives ([`Error::NotSupported`] otherwise).
    /// Completes with [`Error::Truncated`] for a datagram longer than the
    /// swap size.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, conn: Conn) -> Result<(), gaio_core::Error> {
    /// w.recv_from_swap(conn, ())?;
    /// // Its completion: a `Buffer::Swap` of the datagram, `c.peer` its sender.
    /// # Ok(()) }
    /// ```
    fn recv_from_swap(
        &mut self,
        conn: Conn,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::recv_from_swap(conn, context))
    }

    /// Sends `buf` as one datagram to `addr`.
    ///
    /// # Errors
    ///
    /// Refused as every submission is ([errors](Submit#errors)), and with
    /// [`Error::WriteQueueFull`] past the watcher's cap on queued bytes;
    /// only a datagram socket sends to an address
    /// ([`Error::NotSupported`] otherwise). Completes with [`Error::Io`]
    /// if the system refuses the datagram (too long for the socket, or an
    /// unnamed Unix address).
    ///
    /// # Examples
    ///
    /// Echoing a datagram received with [`recv_from`](Submit::recv_from):
    ///
    /// ```no_run
    /// use gaio_core::{Completion, Submit};
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S, c: Completion<(), Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// let n = c.bytes;
    /// if let (Some(sender), Some(mut datagram)) = (c.peer, c.buffer.into_user()) {
    ///     datagram.truncate(n);
    ///     w.send_to(c.conn, (), datagram, sender)?;
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "sendto")]
    fn send_to(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
        addr: impl Into<PeerAddr>,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::send_to(conn, context, buf, addr))
    }

    /// Sends `buf` as one datagram on a connected datagram socket (the same
    /// as [`write`](Submit::write) there).
    ///
    /// # Errors
    ///
    /// Those of [`write`](Submit::write). On a datagram socket that is not
    /// connected, it completes with an [`Error::Io`]: the datagram has no
    /// destination.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::UdpSocket;
    /// use gaio_core::Submit;
    /// # fn f<S: Submit<Context = (), Buf = Vec<u8>>>(w: &mut S) -> Result<(), gaio_core::Error> {
    /// let socket = UdpSocket::bind("0.0.0.0:0")?;
    /// socket.connect("127.0.0.1:8125")?;
    /// let conn = w.watch(socket)?;
    /// w.send(conn, (), b"requests:1|c".to_vec())?;
    /// # Ok(()) }
    /// ```
    fn send(
        &mut self,
        conn: Conn,
        context: Self::Context,
        buf: Self::Buf,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::write(conn, context, buf))
    }
}

/// A cloneable handle that submits to a watcher from any thread.
///
/// Requests travel through the watcher's command queue: a double buffer
/// behind a mutex, held only to push or to swap the buffers (so steady
/// traffic allocates nothing); the thread turning the watcher is woken
/// only if it sleeps, and wake-ups are coalesced. Obtained from
/// [`Watcher::submitter`](crate::Watcher::submitter).
///
/// Every method takes `&mut self` through [`Submit`], and `&Submitter`
/// implements [`Submit`] too (as `&File` implements `Write`): threads can
/// share one submitter behind an `Arc` and submit through `&*submitter`.
///
/// ```no_run
/// use std::sync::Arc;
/// use gaio_core::{Poller, Submit, Watcher};
///
/// fn share<P: Poller>(w: &Watcher<P, u64, Vec<u8>>, conn: gaio_core::Conn) {
///     let submitter = Arc::new(w.submitter());
///     for i in 0..4 {
///         let submitter = Arc::clone(&submitter);
///         std::thread::spawn(move || {
///             let mut s = &*submitter;
///             s.write(conn, i, b"hello".to_vec()).unwrap();
///         });
///     }
/// }
/// ```
pub struct Submitter<P: Poller, C, B> {
    pub(crate) shared: Arc<Shared<P, C, B>>,
}

impl<P: Poller, C, B> std::fmt::Debug for Submitter<P, C, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("watcher", &self.shared.id)
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

impl<P: Poller, C, B> Clone for Submitter<P, C, B> {
    fn clone(&self) -> Self {
        Submitter {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Poller, C, B: IoBuf> Submitter<P, C, B> {
    /// True once the watcher is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Poller, Submit, Watcher};
    ///
    /// fn f<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) {
    ///     let submitter = w.submitter();
    ///     assert!(!submitter.is_closed());
    ///     w.close();
    ///     assert!(submitter.is_closed()); // its submissions are refused from now on
    /// }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

/// Submission through the shared queue, used by `Submitter` and by a
/// background-mode `Watcher`.
#[inline]
pub(crate) fn submit_shared<P: Poller, C, B: IoBuf>(
    shared: &Shared<P, C, B>,
    mut request: Request<C, B>,
) -> SubmitResult<C, B> {
    if shared.is_closed() {
        return Err(request.reject(Error::WatcherClosed));
    }
    if request.op == Op::Connect {
        return connect_shared(shared, request);
    }
    if !request.is_connless() {
        if let Err(e) = shared.check_owner(request.conn) {
            return Err(request.reject(e));
        }
    }
    if let Err(e) = request.check() {
        return Err(request.reject(e));
    }
    // The queue refuses the request if the watcher closed since the check
    // above; it then comes back with its context and buffer.
    match shared.push(Command::Submit(request)) {
        Ok(()) => Ok(()),
        Err(Command::Submit(request)) => Err(request.reject(Error::WatcherClosed)),
        Err(_) => unreachable!("push hands back the command it was given"),
    }
}

/// A connect request through the shared queue: the socket is made, the
/// connect started and the socket registered here, on the submitting
/// thread; the engine waits for the connect to end.
fn connect_shared<P: Poller, C, B: IoBuf>(
    shared: &Shared<P, C, B>,
    mut request: Request<C, B>,
) -> SubmitResult<C, B> {
    let addr = match &request.target {
        Target::Addr(addr) => addr.clone(),
        _ => unreachable!("a connect request carries its address"),
    };
    let (conn, fd, info, dialled) = match shared.dial(&addr) {
        Ok(dialled) => dialled,
        Err(e) => return Err(request.reject(e)),
    };
    request.conn = conn;
    match shared.push(Command::Connect {
        fd,
        info,
        request,
        dialled,
    }) {
        Ok(()) => Ok(()),
        Err(Command::Connect { fd, request, .. }) => {
            let _ = shared.poller.deregister(fd.as_fd());
            drop(fd);
            Err(request.reject(Error::WatcherClosed))
        }
        Err(_) => unreachable!("push hands back the command it was given"),
    }
}

pub(crate) fn watch_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, fd: OwnedFd) -> Result<Conn, Error> {
    let (conn, fd, info) = shared.register(fd)?;
    shared.push_watch(conn, fd, info, Role::Connection)?;
    Ok(conn)
}

pub(crate) fn watch_listener_shared<P: Poller, C, B>(
    shared: &Shared<P, C, B>,
    fd: OwnedFd,
    options: AcceptOptions,
) -> Result<Listener, Error> {
    let (conn, fd, info) = shared.register_listener(fd, options)?;
    shared.push_watch(conn, fd, info, Role::Listener(options))?;
    Ok(Listener(conn))
}

/// Asks the thread running the I/O to close gracefully (refused, and
/// nothing to do, once the watcher is closed).
pub(crate) fn close_gracefully_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, timeout: Duration) {
    let _ = shared.push(Command::CloseGracefully(deadline_after(timeout)));
}

/// The instant `timeout` from now (a graceful close's end, a sleep's
/// deadline): a century from now for a timeout too long to add.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Asks the thread running the I/O to cancel `timer` (nothing to do once
/// the watcher is closed: its sleeps completed then).
pub(crate) fn cancel_timer_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, timer: crate::Timer) {
    let _ = shared.push(Command::CancelTimer(timer));
}

pub(crate) fn free_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, conn: Conn) -> Result<(), Error> {
    if !shared.check_free(conn)? {
        return Ok(());
    }
    // Refused only once the watcher is closed, which closes every
    // connection anyway: nothing left to do.
    let _ = shared.push(Command::Free(conn));
    Ok(())
}

impl<P: Poller, C, B: IoBuf> Submit for Submitter<P, C, B> {
    type Context = C;
    type Buf = B;

    fn submit(&mut self, request: Request<C, B>) -> SubmitResult<C, B> {
        submit_shared(&self.shared, request)
    }

    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error> {
        (&*self).watch(fd)
    }

    fn watch_listener_with(
        &mut self,
        listener: impl Into<OwnedFd>,
        options: AcceptOptions,
    ) -> Result<Listener, Error> {
        (&*self).watch_listener_with(listener, options)
    }

    fn free(&mut self, conn: Conn) -> Result<(), Error> {
        (&*self).free(conn)
    }

    fn close(&mut self) {
        (&*self).close()
    }

    fn close_gracefully(&mut self, timeout: Duration) {
        (&*self).close_gracefully(timeout)
    }

    fn cancel_timer(&mut self, timer: crate::Timer) -> Result<(), Error> {
        (&*self).cancel_timer(timer)
    }
}

/// Submission from a shared reference: every operation of a [`Submitter`]
/// needs only `&self` (the queue takes its own lock).
impl<P: Poller, C, B: IoBuf> Submit for &Submitter<P, C, B> {
    type Context = C;
    type Buf = B;

    fn submit(&mut self, request: Request<C, B>) -> SubmitResult<C, B> {
        submit_shared(&self.shared, request)
    }

    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error> {
        watch_shared(&self.shared, fd.into())
    }

    fn watch_listener_with(
        &mut self,
        listener: impl Into<OwnedFd>,
        options: AcceptOptions,
    ) -> Result<Listener, Error> {
        watch_listener_shared(&self.shared, listener.into(), options)
    }

    fn free(&mut self, conn: Conn) -> Result<(), Error> {
        free_shared(&self.shared, conn)
    }

    fn close(&mut self) {
        self.shared.close();
    }

    fn close_gracefully(&mut self, timeout: Duration) {
        close_gracefully_shared(&self.shared, timeout);
    }

    fn cancel_timer(&mut self, timer: crate::Timer) -> Result<(), Error> {
        cancel_timer_shared(&self.shared, timer);
        Ok(())
    }
}
