//! The `Submit` trait (every way to hand work to a watcher) and the
//! cloneable `Submitter` for threads other than the one that waits.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use crate::request::Request;
use crate::shared::{Command, Shared};
use crate::{Conn, Error, IoBuf, IoBufMut, Poller, Rejected};

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

    /// Hands a connected stream socket (or any other descriptor the poller
    /// accepts) over to the watcher and returns its handle. The descriptor
    /// is put in non-blocking mode and closed by the watcher when the
    /// connection is freed or the watcher closes; on error it is closed at
    /// once.
    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error>;

    /// Closes the connection; each of its pending requests completes with
    /// [`Error::ConnClosed`]. Freeing a connection twice, or through a stale
    /// handle, does nothing. Fails if the watcher is closed, or with
    /// [`Error::ForeignConn`] for a handle another watcher handed out.
    fn free(&mut self, conn: Conn) -> Result<(), Error>;

    /// Closes the watcher: every connection is closed, every pending
    /// request completes with [`Error::WatcherClosed`] (handed out by the
    /// next `wait_io`), and later submissions are refused. Closing twice is
    /// harmless. Through the [`Watcher`](crate::Watcher), every socket is
    /// closed when this returns; through a [`Submitter`], the thread running
    /// the I/O closes them as soon as it wakes.
    fn close(&mut self);

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
    /// it.
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
}

/// A cloneable handle that submits to a watcher from any thread.
///
/// Requests travel through a lock-free queue; the thread turning the
/// watcher is woken only if it sleeps, and wake-ups are coalesced.
/// Obtained from [`Watcher::submitter`](crate::Watcher::submitter).
pub struct Submitter<P: Poller, C, B> {
    pub(crate) shared: Arc<Shared<P, C, B>>,
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
    request: Request<C, B>,
) -> SubmitResult<C, B> {
    if shared.is_closed() {
        return Err(request.reject(Error::WatcherClosed));
    }
    if let Err(e) = shared.check_owner(request.conn) {
        return Err(request.reject(e));
    }
    // The queue refuses the request if the watcher closed since the check
    // above; it then comes back with its context and buffer.
    match shared.push(Command::Submit(request.validate()?)) {
        Ok(()) => Ok(()),
        Err(Command::Submit(request)) => Err(request.reject(Error::WatcherClosed)),
        Err(_) => unreachable!("push hands back the command it was given"),
    }
}

pub(crate) fn watch_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, fd: OwnedFd) -> Result<Conn, Error> {
    let (conn, fd, info) = shared.register(fd)?;
    shared.push_watch(conn, fd, info)?;
    Ok(conn)
}

pub(crate) fn free_shared<P: Poller, C, B>(shared: &Shared<P, C, B>, conn: Conn) -> Result<(), Error> {
    shared.check_owner(conn)?;
    shared.push(Command::Free(conn)).map_err(|_| Error::WatcherClosed)
}

impl<P: Poller, C, B: IoBuf> Submit for Submitter<P, C, B> {
    type Context = C;
    type Buf = B;

    fn submit(&mut self, request: Request<C, B>) -> SubmitResult<C, B> {
        submit_shared(&self.shared, request)
    }

    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error> {
        watch_shared(&self.shared, fd.into())
    }

    fn free(&mut self, conn: Conn) -> Result<(), Error> {
        free_shared(&self.shared, conn)
    }

    fn close(&mut self) {
        self.shared.close();
    }
}
