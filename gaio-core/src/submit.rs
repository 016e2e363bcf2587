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
pub trait Submit {
    /// The user context every request carries and its completion returns.
    type Context;
    /// The buffer type requests carry.
    type Buf: IoBuf;

    /// Submits a request built with [`Request`]; every other submission
    /// method is a shorthand for this one.
    fn submit(
        &mut self,
        request: Request<Self::Context, Self::Buf>,
    ) -> SubmitResult<Self::Context, Self::Buf>;

    /// Hands a connected stream socket, a datagram socket (UDP, Unix
    /// datagram) or any other descriptor the poller accepts (a pipe) over
    /// to the watcher and returns its handle. The descriptor is put in
    /// non-blocking mode and closed by the watcher when the connection is
    /// freed or the watcher closes; on error it is closed at once.
    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error>;

    /// Hands a listening socket over, for [`accept`](Submit::accept):
    /// every connection accepted on it gets `options`. Fails with
    /// [`Error::NotListening`] for a socket that is not listening (the
    /// descriptor is then closed, as on every error).
    fn watch_listener_with(
        &mut self,
        listener: impl Into<OwnedFd>,
        options: AcceptOptions,
    ) -> Result<Listener, Error>;

    /// [`watch_listener_with`](Submit::watch_listener_with) the default
    /// options (`TCP_NODELAY` on accepted TCP connections).
    ///
    /// ```no_run
    /// use gaio_core::Submit;
    /// # fn f(w: &mut impl Submit<Context = (), Buf = Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// let listener = w.watch_listener(gaio_core::listen("127.0.0.1:0")?)?;
    /// w.accept(listener, ()).map_err(|r| r.error)?;
    /// # Ok(()) }
    /// ```
    fn watch_listener(&mut self, listener: impl Into<OwnedFd>) -> Result<Listener, Error> {
        self.watch_listener_with(listener, AcceptOptions::default())
    }

    /// Closes the connection; each of its pending requests completes with
    /// [`Error::ConnClosed`]. Freeing a connection twice, through a stale
    /// handle, or after the watcher closed (which closes every connection)
    /// does nothing. Fails only with [`Error::ForeignConn`], for a handle
    /// another watcher handed out: so a loop handling the completions that
    /// a `close` from another thread brings can `free` with `?`.
    fn free(&mut self, conn: Conn) -> Result<(), Error>;

    /// Closes the watcher: every connection is closed, every pending
    /// request completes with [`Error::WatcherClosed`] (handed out by the
    /// next `wait_io`), and later submissions are refused. Closing twice is
    /// harmless. Through the [`Watcher`](crate::Watcher), every socket is
    /// closed when this returns; through a [`Submitter`], the thread running
    /// the I/O closes them as soon as it wakes.
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
    /// Connections watched after the call are not half-closed by it. From
    /// another thread (a signal handler's), call it through a
    /// [`Submitter`]. After `close`, it does nothing.
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

    /// Reads at least one byte into `buf` (from its start).
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
    fn read_swap(&mut self, conn: Conn, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::read_swap(conn, context))
    }

    /// Like [`read_swap`](Submit::read_swap), with a deadline.
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
    /// nothing: reserve room first (a buffer with no spare capacity is
    /// refused with [`Error::EmptyBuffer`]).
    ///
    /// A message that may arrive in pieces collects in one buffer, with no
    /// copy and no second buffer of "pending" bytes:
    ///
    /// ```no_run
    /// use gaio_core::{BytesMut, Submit};
    /// # fn f<S: Submit<Context = (), Buf = BytesMut>>(w: &mut S, conn: gaio_core::Conn) {
    /// let mut request = BytesMut::with_capacity(4096);
    /// // ... later, while the request is not whole yet:
    /// request.reserve(1024);
    /// w.read_append(conn, (), request).unwrap();
    /// # }
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

    /// Fills the whole of `buf`. End of stream first completes with
    /// [`Error::Eof`] and the number of bytes read before it.
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
    fn accept(
        &mut self,
        listener: Listener,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::accept(listener, context))
    }

    /// Like [`accept`](Submit::accept), failing with [`Error::Deadline`]
    /// if no connection came by `deadline`.
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
    /// ends with one completion carrying an error: [`Error::ConnClosed`]
    /// once the listener is freed, [`Error::WatcherClosed`], or an error
    /// of `accept(2)` that is not retried. Accepts submitted after it on
    /// the same listener wait until it ends.
    ///
    /// ```no_run
    /// use gaio_core::{Error, Op, Submit};
    /// # fn f<S: Submit<Context = ()>>(w: &mut S, listener: gaio_core::Listener) -> Result<(), Error> {
    /// w.accept_multishot(listener, ())?;
    /// // ... in the completion loop:
    /// # let c: gaio_core::Completion<(), S::Buf> = todo!();
    /// match (c.op, c.error) {
    ///     (Op::Accept, None) => { /* serve c.conn */ }
    ///     (Op::Accept, Some(e)) => { /* the listener was freed, or failed: e */ }
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
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
    /// `TCP_NODELAY` on for TCP) and `addr` in `peer`; on failure (refused,
    /// unreachable, deadline) its error, the socket already closed. Refused
    /// at submission only if no socket could be made (out of descriptors).
    fn connect(
        &mut self,
        addr: impl Into<PeerAddr>,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::connect(addr, context))
    }

    /// Like [`connect`](Submit::connect), failing with [`Error::Deadline`]
    /// if the connection was not made by `deadline`.
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
    /// and a `shutdown`, and a `free` when the peer has closed too.
    fn shutdown(&mut self, conn: Conn, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::shutdown(conn, context))
    }

    /// Hands the socket back once every request submitted before has
    /// completed: the completion ([`Op::Detach`](crate::Op::Detach))
    /// carries it in `detached`, deregistered, open and still in
    /// non-blocking mode; the watcher never touches it again. Requests
    /// submitted after the detach complete with [`Error::ConnClosed`].
    fn detach(&mut self, conn: Conn, context: Self::Context) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::detach(conn, context))
    }

    /// Receives one datagram into `buf` (from its start). The completion
    /// carries the sender in `peer`; a datagram longer than `buf` keeps its
    /// first bytes and completes with [`Error::Truncated`].
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
    fn recv_from_swap(
        &mut self,
        conn: Conn,
        context: Self::Context,
    ) -> SubmitResult<Self::Context, Self::Buf> {
        self.submit(Request::recv_from_swap(conn, context))
    }

    /// Sends `buf` as one datagram to `addr`.
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
    if let Err(e) = shared.check_owner(request.conn) {
        return Err(request.reject(e));
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
    let deadline = Instant::now().checked_add(timeout).unwrap_or_else(far_future);
    let _ = shared.push(Command::CloseGracefully(deadline));
}

/// A deadline no timeout reaches: a century from now.
pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

pub(crate) fn free_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, conn: Conn) -> Result<(), Error> {
    shared.check_owner(conn)?;
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
}
