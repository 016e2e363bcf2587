//! The `Watcher`: owns the engine (or the thread that turns it), hands out
//! completions, and closes everything when dropped.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::background::Background;
use crate::engine::{Config, Engine};
use crate::request::Request;
use crate::shared::Shared;
use crate::submit::{deadline_after, SubmitResult};
use crate::{
    affinity, AcceptOptions, Backend, Completion, Conn, Error, IoBuf, Listener, Poller, SocketRef, Submit,
    Submitter,
};

/// Who turns the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// The thread calling `wait_io` runs the I/O. Submissions from that
    /// thread try the I/O at once and cross no thread boundary at all.
    #[default]
    Inline,
    /// The I/O keeps flowing while the user is busy with results (gaio's
    /// model): a thread of the watcher's own turns the engine whenever
    /// the owning thread has been away from `wait_io` for about a
    /// millisecond, and hands it back when that thread waits again.
    ///
    /// While the owning thread is in `wait_io` it runs the I/O itself, as
    /// in inline mode, so a server that answers each batch promptly pays
    /// no hand-off between threads and runs at inline mode's speed. One
    /// that works on a batch for longer pays one hand-off each way per such
    /// batch, and meanwhile writes drain, reads fill, deadlines and timers
    /// fire. An idle watcher's background thread sleeps.
    Background,
}

/// Configures and creates a [`Watcher`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<P> {
    swap_size: usize,
    swap_limit: usize,
    max_events: usize,
    max_queued_write_bytes: Option<usize>,
    mode: Mode,
    backend: Backend,
    poller: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for Builder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("swap_size", &self.swap_size)
            .field("swap_limit", &self.swap_limit)
            .field("max_events", &self.max_events)
            .field("max_queued_write_bytes", &self.max_queued_write_bytes)
            .field("mode", &self.mode)
            .field("backend", &self.backend)
            .finish()
    }
}

// By hand: a derive would ask `P: Clone` of the poller type.
impl<P> Clone for Builder<P> {
    fn clone(&self) -> Self {
        Builder {
            swap_size: self.swap_size,
            swap_limit: self.swap_limit,
            max_events: self.max_events,
            max_queued_write_bytes: self.max_queued_write_bytes,
            mode: self.mode,
            backend: self.backend,
            poller: PhantomData,
        }
    }
}

impl<P: Poller> Default for Builder<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Poller> Builder<P> {
    /// Defaults: 64 KiB of swap memory (a 6 MiB limit on io_uring), 1024
    /// events per wait, no cap on queued write bytes, inline mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, Error, Poller, Watcher};
    ///
    /// fn watcher<P: Poller>() -> Result<Watcher<P, (), Vec<u8>>, Error> {
    ///     Builder::new().build() // what `Watcher::new()` does
    /// }
    /// ```
    pub fn new() -> Self {
        Builder {
            swap_size: crate::DEFAULT_SWAP_SIZE,
            swap_limit: crate::DEFAULT_SWAP_LIMIT,
            max_events: crate::DEFAULT_MAX_EVENTS,
            max_queued_write_bytes: None,
            mode: Mode::Inline,
            backend: Backend::Auto,
            poller: PhantomData,
        }
    }

    /// Size of one slab of swap memory, the memory reads without a buffer
    /// fill. A single such read returns at most this many bytes. From 1 to
    /// [`MAX_SWAP_SIZE`](crate::MAX_SWAP_SIZE); [`build`](Self::build)
    /// refuses other values.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, Poller};
    ///
    /// fn builder<P: Poller>() -> Builder<P> {
    ///     // Bulk transfers: up to 1 MiB per swap read.
    ///     Builder::new().swap_size(1 << 20)
    /// }
    /// ```
    pub fn swap_size(mut self, bytes: usize) -> Self {
        self.swap_size = bytes;
        self
    }

    /// The most memory reads without a buffer may take at once on a
    /// completion backend (io_uring), in bytes: a hard cap. There the
    /// kernel reads into buffers of the watcher's own (made as reads need
    /// them, up to this limit) and only when data arrives; when every
    /// buffer holds data not yet handed out, or slices users still hold,
    /// reads wait for one to come back (back-pressure: nothing is lost,
    /// no error). From [`MIN_SWAP_LIMIT`](crate::MIN_SWAP_LIMIT) to
    /// [`MAX_SWAP_LIMIT`](crate::MAX_SWAP_LIMIT), default
    /// [`DEFAULT_SWAP_LIMIT`](crate::DEFAULT_SWAP_LIMIT);
    /// [`build`](Self::build) refuses other values.
    ///
    /// Readiness backends (epoll, kqueue, poll(2)) copy each such read
    /// into the swap slab ([`swap_size`](Self::swap_size)) as it happens,
    /// so their swap memory is a slab or a few, and this setting does not
    /// apply to them.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, Poller};
    ///
    /// fn builder<P: Poller>() -> Builder<P> {
    ///     // Ten thousand clients sending at once take at most 4 MiB.
    ///     Builder::new().swap_limit(4 << 20)
    /// }
    /// ```
    pub fn swap_limit(mut self, bytes: usize) -> Self {
        self.swap_limit = bytes;
        self
    }

    /// Most readiness events taken from the poller per wait. From 1 to
    /// [`MAX_EVENTS_PER_WAIT`](crate::MAX_EVENTS_PER_WAIT);
    /// [`build`](Self::build) refuses other values.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, Poller};
    ///
    /// fn builder<P: Poller>() -> Builder<P> {
    ///     Builder::new().max_events(4096)
    /// }
    /// ```
    pub fn max_events(mut self, events: usize) -> Self {
        self.max_events = events;
        self
    }

    /// Most bytes queued for writing on one connection, not yet written
    /// (default: no limit). A write that would take its connection past
    /// it is refused with [`Error::WriteQueueFull`] and its buffer handed
    /// back, so a peer that never reads cannot grow the server's memory
    /// without bound; a single write larger than the limit is always
    /// refused. From the owning thread in inline mode the refusal is
    /// immediate (a [`Rejected`](crate::Rejected)); through a
    /// [`Submitter`] or in background mode the write completes at once
    /// with the error. From 1 to `u32::MAX` (4 GiB less one byte);
    /// [`build`](Self::build) refuses other values.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, Poller};
    ///
    /// fn builder<P: Poller>() -> Builder<P> {
    ///     // A client may have at most 1 MiB of responses waiting for it.
    ///     Builder::new().max_queued_write_bytes(1 << 20)
    /// }
    /// ```
    pub fn max_queued_write_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_write_bytes = Some(bytes);
        self
    }

    /// Inline or background-thread mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, Mode, Poller};
    ///
    /// fn builder<P: Poller>() -> Builder<P> {
    ///     Builder::new().mode(Mode::Background)
    /// }
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The kernel interface to run on. [`Backend::Auto`] (the default)
    /// lets the poller choose: on Linux, `gaio`'s poller takes io_uring
    /// where it can be used and epoll otherwise (see
    /// [`Watcher::backend`] for what was chosen). Naming a backend makes
    /// [`build`](Self::build) fail if it cannot be had, with the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Backend, Builder, Poller};
    ///
    /// fn builder<P: Poller>() -> Builder<P> {
    ///     Builder::new().backend(Backend::Epoll)
    /// }
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Creates the watcher.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidSetting`]: a setting out of its range (its `name`
    ///   is the method's: `swap_size`, `swap_limit`, `max_events` or
    ///   `max_queued_write_bytes`), checked before anything is allocated.
    /// * [`Error::Io`]: the poller (out of descriptors, say) or the
    ///   background thread could not be created; `Unsupported` if the
    ///   [backend](Self::backend) asked for cannot be had, saying why.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Builder, Error, Mode, Poller, Watcher};
    ///
    /// fn watcher<P: Poller>() -> Result<Watcher<P, u64, Vec<u8>>, Error> {
    ///     Builder::new().swap_size(256 * 1024).mode(Mode::Background).build()
    /// }
    ///
    /// fn refused<P: Poller>() {
    ///     let e = Builder::<P>::new().swap_size(0).build::<(), Vec<u8>>().unwrap_err();
    ///     assert!(matches!(e, Error::InvalidSetting(s) if s.name == "swap_size"));
    /// }
    /// ```
    pub fn build<C: Send + 'static, B: IoBuf>(self) -> Result<Watcher<P, C, B>, Error> {
        in_range("swap_size", self.swap_size, 1, crate::MAX_SWAP_SIZE)?;
        in_range(
            "swap_limit",
            self.swap_limit,
            crate::MIN_SWAP_LIMIT,
            crate::MAX_SWAP_LIMIT,
        )?;
        in_range("max_events", self.max_events, 1, crate::MAX_EVENTS_PER_WAIT)?;
        if let Some(limit) = self.max_queued_write_bytes {
            in_range("max_queued_write_bytes", limit, 1, u32::MAX as usize)?;
        }
        let poller = P::open(self.backend, self.mode)?;
        poller.limit_swap(self.swap_limit)?;
        let shared = Arc::new(Shared::new(poller));
        let config = Config {
            swap_size: self.swap_size,
            max_events: self.max_events,
            max_queued_write_bytes: self.max_queued_write_bytes,
        };
        let engine = Engine::new(Arc::clone(&shared), config);
        let driver = match self.mode {
            Mode::Inline => Driver::Inline(Box::new(engine)),
            Mode::Background => Driver::Background(Background::spawn(engine, &shared)?),
        };
        Ok(Watcher {
            shared,
            driver,
            late: Vec::new(),
            told_closed: false,
        })
    }
}

/// `Ok` if `min <= value <= max`, else the error naming the setting.
fn in_range(name: &'static str, value: usize, min: usize, max: usize) -> Result<(), Error> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidSetting(Box::new(crate::InvalidSetting {
            name,
            value,
            min,
            max,
        })))
    }
}

/// The proactor: owns connections, runs their reads and writes, and hands
/// out completions in batches.
///
/// `P` is the poller (the `gaio` facade fixes it for the target), `C` the
/// user context every request carries, `B` the buffer type. Submit through
/// the [`Submit`] trait; other threads submit through a
/// [`Submitter`](Watcher::submitter).
///
/// # Panics in user code
///
/// The thread doing the I/O calls user code: the buffer's [`IoBuf`],
/// [`IoBufMut`](crate::IoBufMut) and [`IoBufAppend`](crate::IoBufAppend)
/// methods, `Clone` of a multishot accept's context, and `Drop` of
/// contexts and buffers. If that code panics, the watcher closes itself:
/// every socket is closed, submissions are refused with
/// [`Error::WatcherClosed`], the pending requests come back from
/// `wait_io` with [`Error::WatcherClosed`], and from then on every
/// `wait_io` fails with [`Error::Panicked`]. A request whose code
/// panicked before the watcher stored it (in a submission) is dropped,
/// with its context and buffer, and never completes.
/// * In [`Mode::Background`] the panic is caught on whichever thread ran
///   the I/O (the background thread, or the owning thread inside
///   `wait_io` or a submission) and its message passed on; a `wait_io`
///   blocked at that moment wakes up.
/// * In [`Mode::Inline`] the panic happens on the caller's thread, inside
///   the call that ran the user code (`wait_io`, or a submission that tried
///   the I/O at once), and unwinds into the caller like any panic of its
///   own. If the caller catches it and goes on, the watcher is *poisoned*,
///   as a `Mutex` is: the next call closes it as above. Dropping the
///   watcher, during the unwinding or later, closes every socket.
pub struct Watcher<P: Poller, C, B> {
    shared: Arc<Shared<P, C, B>>,
    driver: Driver<P, C, B>,
    /// Submissions that raced a close from elsewhere: they complete with
    /// `WatcherClosed` in the next batch (see `submit`).
    late: Vec<Completion<C, B>>,
    /// The owning thread knows the watcher is closed: it called `close`,
    /// or a wait told it so. Its submissions are refused from then on.
    told_closed: bool,
}

enum Driver<P: Poller, C, B> {
    Inline(Box<Engine<P, C, B>>),
    Background(Background<P, C, B>),
}

#[cfg(test)]
impl<P: Poller, C, B> Watcher<P, C, B> {
    /// The inline engine, for tests that look at its internals.
    pub(crate) fn inline_engine(&self) -> Option<&Engine<P, C, B>> {
        match &self.driver {
            Driver::Inline(engine) => Some(engine),
            Driver::Background(_) => None,
        }
    }
}

impl<P: Poller, C: Send + 'static, B: IoBuf> Watcher<P, C, B> {
    /// A watcher with default settings (inline mode).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller cannot be created (out of descriptors,
    /// say).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Bytes, Error, Poller, Watcher};
    ///
    /// // Each request carries a `u64` (a request id, say); swap reads hand
    /// // back `Bytes`, which this watcher can also write without a copy.
    /// fn watcher<P: Poller>() -> Result<Watcher<P, u64, Bytes>, Error> {
    ///     Watcher::new()
    /// }
    /// ```
    pub fn new() -> Result<Self, Error> {
        Builder::new().build()
    }

    /// A builder for a watcher with other settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Error, Mode, Poller, Watcher};
    ///
    /// fn watcher<P: Poller>() -> Result<Watcher<P, (), Vec<u8>>, Error> {
    ///     Watcher::<P, (), Vec<u8>>::builder().mode(Mode::Background).build()
    /// }
    /// ```
    pub fn builder() -> Builder<P> {
        Builder::new()
    }
}

impl<P: Poller, C, B: IoBuf> Watcher<P, C, B> {
    /// The kernel interface this watcher runs on: what
    /// [`Builder::backend`] asked for, or what the poller chose for
    /// [`Backend::Auto`] (never `Auto` itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Backend, Poller, Watcher};
    ///
    /// fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>) {
    ///     if w.backend() == Backend::Uring {
    ///         println!("the kernel does the I/O, one system call per turn");
    ///     }
    /// }
    /// ```
    pub fn backend(&self) -> Backend {
        self.shared.poller.backend()
    }

    /// The mode this watcher runs in.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Mode, Poller, Watcher};
    ///
    /// fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>) {
    ///     match w.mode() {
    ///         Mode::Inline => println!("the I/O runs in wait_io"),
    ///         Mode::Background => println!("the I/O goes on while this thread is busy"),
    ///         _ => {}
    ///     }
    /// }
    /// ```
    pub fn mode(&self) -> Mode {
        match self.driver {
            Driver::Inline(_) => Mode::Inline,
            Driver::Background(_) => Mode::Background,
        }
    }

    /// A handle that submits from other threads.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use gaio_core::{Poller, Submit, Watcher};
    ///
    /// fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>) {
    ///     let mut submitter = w.submitter();
    ///     std::thread::spawn(move || {
    ///         std::thread::sleep(Duration::from_secs(60));
    ///         submitter.close(); // time is up
    ///     });
    /// }
    /// ```
    #[must_use]
    pub fn submitter(&self) -> Submitter<P, C, B> {
        Submitter {
            shared: Arc::clone(&self.shared),
        }
    }

    /// True once the watcher is closed: by [`close`](Submit::close), at
    /// the end of [`close_gracefully`](Submit::close_gracefully), or after
    /// a panic in user code.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Poller, Submit, Watcher};
    ///
    /// fn f<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) {
    ///     assert!(!w.is_closed());
    ///     w.close();
    ///     assert!(w.is_closed());
    /// }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Blocks until at least one request completes, then appends every
    /// ready completion to `out` and returns how many it appended.
    ///
    /// Keep reusing one `out` and drain it between calls: a batch handed
    /// to an empty `out` trades places with the watcher's own vector
    /// instead of being copied, and neither side allocates once both have
    /// grown to the usual batch size.
    ///
    /// After [`close`](Submit::close), pending requests come back with
    /// [`Error::WatcherClosed`] in the next batches; once everything has
    /// been handed out this returns `Err(Error::WatcherClosed)`.
    ///
    /// # Errors
    ///
    /// * [`Error::WatcherClosed`]: the watcher is closed and every
    ///   completion has been handed out.
    /// * [`Error::Panicked`]: in its place, when the watcher closed
    ///   because user code panicked (see
    ///   [Panics in user code](Watcher#panics-in-user-code)).
    /// * [`Error::Io`]: the poller failed. In inline mode the watcher stays
    ///   open and the next call tries again; in background mode the I/O
    ///   thread closes the watcher, and this error comes once, after the
    ///   last batch.
    /// * [`Error::WrongThread`]: an inline watcher on io_uring was moved
    ///   to another thread after its first I/O; its ring stays with the
    ///   thread that ran it. Nothing was done.
    ///
    /// # Panics
    ///
    /// In inline mode, when user code that the I/O calls panics: the panic
    /// unwinds out of this call, and the next call closes the watcher.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Error, Poller, Watcher};
    ///
    /// fn turn<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) -> Result<(), Error> {
    ///     let mut batch = Vec::new(); // kept from one call to the next
    ///     let n = w.wait_io(&mut batch)?;
    ///     assert_eq!(batch.len(), n);
    ///     for c in batch.drain(..) {
    ///         println!("{:?} on {:?}: {} bytes", c.op, c.conn, c.bytes);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    #[doc(alias = "epoll_wait", alias = "kevent")]
    pub fn wait_io(&mut self, out: &mut Vec<Completion<C, B>>) -> Result<usize, Error> {
        self.wait_until(out, None)
    }

    /// [`wait_io`](Watcher::wait_io) for a loop that runs until the
    /// watcher closes: appends the next batch to `out` and returns
    /// `Ok(true)`, or `Ok(false)` once the watcher has closed and every
    /// completion has been handed out. Other errors come back as they
    /// are.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] and [`Error::Io`], as [`wait_io`](Watcher::wait_io)
    /// returns them.
    ///
    /// # Panics
    ///
    /// As [`wait_io`](Watcher::wait_io): in inline mode, when user code
    /// that the I/O calls panics.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f<P: gaio_core::Poller>(w: &mut gaio_core::Watcher<P, (), Vec<u8>>) -> Result<(), gaio_core::Error> {
    /// let mut batch = Vec::new();
    /// while w.next_batch(&mut batch)? {
    ///     for c in batch.drain(..) {
    ///         // ...
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn next_batch(&mut self, out: &mut Vec<Completion<C, B>>) -> Result<bool, Error> {
        match self.wait_io(out) {
            Ok(_) => Ok(true),
            Err(Error::WatcherClosed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Like [`wait_io`](Watcher::wait_io), but returns `Ok(0)` if nothing
    /// completed within `timeout`.
    ///
    /// # Errors
    ///
    /// Those of [`wait_io`](Watcher::wait_io).
    ///
    /// # Panics
    ///
    /// As [`wait_io`](Watcher::wait_io): in inline mode, when user code
    /// that the I/O calls panics.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use gaio_core::{Error, Poller, Watcher};
    ///
    /// fn serve<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) -> Result<(), Error> {
    ///     let mut batch = Vec::new();
    ///     loop {
    ///         if w.wait_io_timeout(&mut batch, Duration::from_millis(100))? == 0 {
    ///             // A quiet 100 ms: time for housekeeping.
    ///         }
    ///         for c in batch.drain(..) {
    ///             // ...
    ///         }
    ///     }
    /// }
    /// ```
    pub fn wait_io_timeout(
        &mut self,
        out: &mut Vec<Completion<C, B>>,
        timeout: Duration,
    ) -> Result<usize, Error> {
        let limit = Instant::now().checked_add(timeout);
        self.wait_until(out, limit)
    }

    fn wait_until(
        &mut self,
        out: &mut Vec<Completion<C, B>>,
        limit: Option<Instant>,
    ) -> Result<usize, Error> {
        if !self.late.is_empty() {
            // What the engine completed before these requests were refused
            // (those pending at the close among them) comes first: on a
            // connection, requests complete in submission order. The
            // watcher is closed, so this does not wait.
            let before = match self.wait_driver(out, Some(Instant::now())) {
                Ok(n) => n,
                Err(Error::WatcherClosed | Error::Panicked { .. }) => 0,
                Err(e) => return Err(e),
            };
            let n = self.late.len();
            crate::engine::hand_over(&mut self.late, out);
            return Ok(before + n);
        }
        let waited = self.wait_driver(out, limit);
        if matches!(waited, Err(Error::WatcherClosed | Error::Panicked { .. })) {
            self.told_closed = true;
        }
        waited
    }

    /// The engine's turn of `wait_until`.
    fn wait_driver(
        &mut self,
        out: &mut Vec<Completion<C, B>>,
        limit: Option<Instant>,
    ) -> Result<usize, Error> {
        match &mut self.driver {
            // Refused before the engine turns: nothing is taken from the
            // poller, so nothing is lost, and the right thread finds it all.
            // Completions already made (requests refused or ended at
            // submission) are handed out. A closed watcher hands out what
            // was pending from any thread (the poller gives up what it
            // cannot end from here: `Poller::usable_here`).
            Driver::Inline(engine) if !self.shared.is_closed() && !self.shared.poller.usable_here() => {
                match engine.hand_out_ready(out) {
                    0 => Err(Error::WrongThread),
                    n => Ok(n),
                }
            }
            Driver::Inline(engine) => engine.guarded(|e| e.wait(out, limit)),
            Driver::Background(bg) => bg.wait(out, limit),
        }
    }

    /// The bytes queued for writing on `conn` and not yet written: `None`
    /// for a connection this watcher does not have. In background mode the
    /// owning thread takes the engine for the moment of the count (from
    /// the watcher's thread, after its current turn, if that is running
    /// it), after the requests other threads queued. In inline mode it
    /// counts what the watcher has taken in: writes (and connections)
    /// that a [`Submitter`](crate::Submitter) on another thread sent a
    /// moment ago are counted from this thread's next submission or
    /// `wait_io`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    ///
    /// fn slow_reader<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> bool {
    ///     // More than 1 MiB not yet taken by the peer: stop producing for it.
    ///     w.queued_write_bytes(conn).is_some_and(|n| n > 1 << 20)
    /// }
    /// ```
    pub fn queued_write_bytes(&self, conn: Conn) -> Option<usize> {
        match &self.driver {
            Driver::Inline(engine) => engine.queued_write_bytes(conn),
            Driver::Background(bg) => bg.queued_write_bytes(conn),
        }
    }

    /// The socket behind `conn`, to read its addresses and change its
    /// options after the hand-over (`TCP_NODELAY`, keep-alive, buffer
    /// sizes): `None` for a connection this watcher does not have (freed,
    /// never watched here, or handed over as the watcher was being closed
    /// from elsewhere: see [`Submit`'s errors](Submit#errors)) and in
    /// background mode, where the socket belongs to the I/O thread. There,
    /// set options before [`watch`](Submit::watch) or through
    /// [`AcceptOptions`](crate::AcceptOptions), and take the peer's address
    /// from the accept's completion.
    ///
    /// Listeners answer too. The borrow lasts until the next call that
    /// takes the watcher mutably, which is what could close the socket. A
    /// connection a [`Submitter`](crate::Submitter) on another thread
    /// handed over a moment ago answers from this thread's next submission
    /// or `wait_io`, which take it in.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Poller, Submit, Watcher};
    ///
    /// fn serve<P: Poller>(w: &mut Watcher<P, (), Vec<u8>>) -> Result<(), gaio_core::Error> {
    ///     let listener = w.watch_listener(gaio_core::listen("127.0.0.1:0")?)?;
    ///     if let Some(socket) = w.socket(listener.conn()) {
    ///         println!("listening on {}", socket.local_addr()?);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn socket(&self, conn: Conn) -> Option<SocketRef<'_>> {
        match &self.driver {
            Driver::Inline(engine) => engine.socket(conn).map(SocketRef::new),
            Driver::Background(_) => None,
        }
    }

    /// Pins the thread that runs the I/O to CPU `cpu`: the background
    /// thread in background mode (which runs the I/O while the owning
    /// thread is busy; while it waits, the owning thread runs it), the
    /// calling thread in inline mode (call it from the thread that calls
    /// `wait_io`).
    ///
    /// gaio has separate poller and loop affinities because it runs two
    /// goroutines; here polling and the I/O loop are one thread, so one
    /// setter covers both.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidCpu`]: a CPU that does not exist, is offline, or
    ///   that the process may not use (outside its cpuset).
    /// * [`Error::Io`]: any other failure of `sched_setaffinity`, and on
    ///   systems other than Linux and Android always (`Unsupported`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Error, Poller, Watcher};
    ///
    /// fn pin<P: Poller>(w: &Watcher<P, (), Vec<u8>>) -> Result<(), Error> {
    ///     // Keep the I/O on CPU 2, next to the NIC's interrupts, say.
    ///     w.set_affinity(2)
    /// }
    /// ```
    #[doc(alias = "sched_setaffinity")]
    pub fn set_affinity(&self, cpu: usize) -> Result<(), Error> {
        match self.driver {
            Driver::Inline(_) => affinity::pin(None, cpu),
            Driver::Background(_) => {
                let tid = self.shared.engine_tid.load(Ordering::Acquire);
                affinity::pin(Some(tid), cpu)
            }
        }
    }
}

impl<P: Poller, C, B: IoBuf> Watcher<P, C, B> {
    /// A hand-over refused because the watcher was closed before this
    /// thread was told (from another thread, by a graceful close's end,
    /// or by a panic in user code): `Ok` with a handle that names no
    /// connection (the descriptor is closed), whose requests complete
    /// with [`Error::WatcherClosed`] in the next batch, as a request
    /// submitted then does. So a server that a signal stops while it
    /// starts ends through `next_batch`, not through an error.
    fn unless_closed_elsewhere(&self, watched: Result<Conn, Error>, raw: RawFd) -> Result<Conn, Error> {
        match watched {
            Err(Error::WatcherClosed) if !self.told_closed => Ok(self.shared.new_handle(raw)),
            other => other,
        }
    }

    /// What the watcher's handles share, for a group of watchers.
    pub(crate) fn shared(&self) -> &Arc<Shared<P, C, B>> {
        &self.shared
    }

    /// Spreads the connections `listener`'s multishot accept takes over
    /// `group` (see `engine::spread`). Inline mode only: the cores run
    /// their watchers inline.
    pub(crate) fn spread_accepts(
        &mut self,
        listener: Listener,
        group: Arc<crate::engine::Group<P, C, B>>,
        me: usize,
    ) {
        match &mut self.driver {
            Driver::Inline(engine) => engine.spread_accepts(listener, group, me),
            Driver::Background(_) => unreachable!("a group's watchers run inline"),
        }
    }
}

impl<P: Poller, C, B: IoBuf> Submit for Watcher<P, C, B> {
    type Context = C;
    type Buf = B;

    #[inline]
    fn submit(&mut self, request: Request<C, B>) -> SubmitResult<C, B> {
        let (op, conn) = (request.op(), request.conn());
        let result = match &mut self.driver {
            Driver::Inline(engine) => engine.guarded(|e| e.submit(request)),
            Driver::Background(bg) => bg.submit(request),
        };
        match result {
            // Closed from another thread (or by a graceful close's end)
            // while this thread was answering completions it had not yet
            // been told were the last: the request completes with
            // `WatcherClosed`, as it would had it been submitted a moment
            // earlier, so a loop answering each completion with a request
            // ends through `next_batch`, not through an error.
            Err(rejected) if matches!(rejected.error, Error::WatcherClosed) && !self.told_closed => {
                self.late.push(rejected.into_completion(op, conn));
                Ok(())
            }
            other => other,
        }
    }

    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error> {
        let fd = fd.into();
        let raw = fd.as_raw_fd();
        let watched = match &mut self.driver {
            Driver::Inline(engine) => engine.guarded(|e| e.watch(fd)),
            Driver::Background(bg) => bg.watch(fd),
        };
        self.unless_closed_elsewhere(watched, raw)
    }

    fn watch_listener_with(
        &mut self,
        listener: impl Into<OwnedFd>,
        options: AcceptOptions,
    ) -> Result<Listener, Error> {
        let fd = listener.into();
        let raw = fd.as_raw_fd();
        let watched = match &mut self.driver {
            Driver::Inline(engine) => engine.guarded(|e| e.watch_listener(fd, options)),
            Driver::Background(bg) => bg.watch_listener(fd, options),
        };
        self.unless_closed_elsewhere(watched.map(|l| l.0), raw)
            .map(Listener)
    }

    fn free(&mut self, conn: Conn) -> Result<(), Error> {
        match &mut self.driver {
            Driver::Inline(engine) => engine.guarded(|e| e.free(conn)),
            Driver::Background(bg) => bg.free(conn),
        }
    }

    fn close(&mut self) {
        self.told_closed = true;
        match &mut self.driver {
            Driver::Inline(engine) => engine.guarded(|e| e.shutdown_settled()),
            // Waits for the I/O thread to finish shutting down, so every
            // socket is closed when `close` returns, as in inline mode.
            Driver::Background(bg) => bg.close(),
        }
    }

    fn close_gracefully(&mut self, timeout: Duration) {
        match &mut self.driver {
            Driver::Inline(engine) => {
                let deadline = deadline_after(timeout);
                // After what other threads submitted before this call and
                // the engine has not taken in yet: it is part of what the
                // graceful close lets finish (as in background mode).
                engine.guarded(|e| {
                    e.drain_commands();
                    e.close_gracefully(deadline);
                });
            }
            Driver::Background(bg) => bg.close_gracefully(timeout),
        }
    }

    fn cancel_timer(&mut self, timer: crate::Timer) -> Result<(), Error> {
        match &mut self.driver {
            // The sleep may still be queued (submitted through a
            // `Submitter`, its timer passed to this thread): take the queue
            // in first, as background mode does.
            Driver::Inline(engine) => engine.guarded(|e| {
                e.drain_commands();
                e.cancel_timer(timer);
            }),
            Driver::Background(bg) => bg.cancel_timer(timer),
        }
        Ok(())
    }
}

impl<P: Poller, C, B> Drop for Watcher<P, C, B> {
    fn drop(&mut self) {
        self.shared.close();
        match &mut self.driver {
            Driver::Background(bg) => bg.close(),
            // Closes every descriptor, including those handed over through
            // a `Submitter` and still queued (the queue outlives the
            // watcher while a `Submitter` lives). After a panic went
            // through the engine, or while one unwinds through this drop,
            // only the descriptors: a second panic here would abort.
            Driver::Inline(engine) => {
                if engine.is_poisoned() || std::thread::panicking() {
                    engine.close_descriptors();
                } else {
                    engine.shutdown();
                }
            }
        }
    }
}

impl<P: Poller, C, B> fmt::Debug for Watcher<P, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field(
                "mode",
                &match self.driver {
                    Driver::Inline(_) => Mode::Inline,
                    Driver::Background(_) => Mode::Background,
                },
            )
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}
