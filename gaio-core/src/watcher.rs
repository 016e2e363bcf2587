//! The `Watcher`: owns the engine (or the thread that turns it), hands out
//! completions, and closes everything when dropped.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fmt, io};

use crate::engine::{Config, Engine};
use crate::request::Request;
use crate::shared::Shared;
use crate::submit::{free_shared, submit_shared, watch_shared, SubmitResult};
use crate::{affinity, Completion, Conn, Error, IoBuf, Poller, Submit, Submitter};

/// Who turns the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The thread calling `wait_io` runs the I/O. Submissions from that
    /// thread try the I/O at once and cross no thread boundary at all.
    #[default]
    Inline,
    /// A background thread runs the I/O (gaio's model), so data keeps
    /// flowing while the user is busy with results; `wait_io` receives
    /// batches from it.
    Background,
}

/// Configures and creates a [`Watcher`].
pub struct Builder<P> {
    swap_size: usize,
    max_events: usize,
    mode: Mode,
    poller: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for Builder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("swap_size", &self.swap_size)
            .field("max_events", &self.max_events)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<P: Poller> Default for Builder<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Poller> Builder<P> {
    /// Defaults: 64 KiB of swap memory, 1024 events per wait, inline mode.
    pub fn new() -> Self {
        Builder {
            swap_size: crate::DEFAULT_SWAP_SIZE,
            max_events: crate::DEFAULT_MAX_EVENTS,
            mode: Mode::Inline,
            poller: PhantomData,
        }
    }

    /// Size of one slab of swap memory, the memory reads without a buffer
    /// fill. A single such read returns at most this many bytes.
    pub fn swap_size(mut self, bytes: usize) -> Self {
        self.swap_size = bytes;
        self
    }

    /// Most readiness events taken from the poller per wait.
    pub fn max_events(mut self, events: usize) -> Self {
        self.max_events = events;
        self
    }

    /// Inline or background-thread mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Creates the watcher.
    ///
    /// Fails with [`Error::Io`] if the poller cannot be created, and with
    /// [`Error::EmptyBuffer`] for a swap size of zero or
    /// [`Error::Io`]/`InvalidInput` for zero events per wait.
    pub fn build<C: Send + 'static, B: IoBuf>(self) -> Result<Watcher<P, C, B>, Error> {
        if self.swap_size == 0 {
            return Err(Error::EmptyBuffer);
        }
        if self.max_events == 0 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_events must be at least 1",
            )));
        }
        let shared = Arc::new(Shared::new(P::new()?));
        let config = Config {
            swap_size: self.swap_size,
            max_events: self.max_events,
        };
        let engine = Engine::new(Arc::clone(&shared), config);
        let driver = match self.mode {
            Mode::Inline => Driver::Inline(Box::new(engine)),
            Mode::Background => Driver::Background(Background::spawn(engine, &shared)?),
        };
        Ok(Watcher { shared, driver })
    }
}

/// The proactor: owns connections, runs their reads and writes, and hands
/// out completions in batches.
///
/// `P` is the poller (the `gaio` facade fixes it for the target), `C` the
/// user context every request carries, `B` the buffer type. Submit through
/// the [`Submit`] trait; other threads submit through a
/// [`Submitter`](Watcher::submitter).
pub struct Watcher<P: Poller, C, B> {
    shared: Arc<Shared<P, C, B>>,
    driver: Driver<P, C, B>,
}

enum Driver<P: Poller, C, B> {
    Inline(Box<Engine<P, C, B>>),
    Background(Background<C, B>),
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
    pub fn new() -> Result<Self, Error> {
        Builder::new().build()
    }

    /// A builder for a watcher with other settings.
    pub fn builder() -> Builder<P> {
        Builder::new()
    }
}

impl<P: Poller, C, B: IoBuf> Watcher<P, C, B> {
    /// The mode the watcher runs in.
    pub fn mode(&self) -> Mode {
        match self.driver {
            Driver::Inline(_) => Mode::Inline,
            Driver::Background(_) => Mode::Background,
        }
    }

    /// A handle that submits from other threads.
    pub fn submitter(&self) -> Submitter<P, C, B> {
        Submitter {
            shared: Arc::clone(&self.shared),
        }
    }

    /// True once the watcher is closed.
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
    pub fn wait_io(&mut self, out: &mut Vec<Completion<C, B>>) -> Result<usize, Error> {
        self.wait_until(out, None)
    }

    /// Like [`wait_io`](Watcher::wait_io), but returns `Ok(0)` if nothing
    /// completed within `timeout`.
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
        match &mut self.driver {
            Driver::Inline(engine) => engine.wait(out, limit),
            Driver::Background(bg) => bg.wait(out, limit),
        }
    }

    /// Pins the thread that runs the I/O to CPU `cpu`: the background
    /// thread in background mode, the calling thread in inline mode (call
    /// it from the thread that calls `wait_io`).
    ///
    /// gaio has separate poller and loop affinities because it runs two
    /// goroutines; here polling and the I/O loop are one thread, so one
    /// setter covers both. Fails with [`Error::InvalidCpu`] for a CPU that
    /// does not exist or that the process may not use.
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

impl<P: Poller, C, B: IoBuf> Submit for Watcher<P, C, B> {
    type Context = C;
    type Buf = B;

    fn submit(&mut self, request: Request<C, B>) -> SubmitResult<C, B> {
        match &mut self.driver {
            Driver::Inline(engine) => engine.submit(request),
            Driver::Background(_) => submit_shared(&self.shared, request),
        }
    }

    fn watch(&mut self, fd: impl Into<OwnedFd>) -> Result<Conn, Error> {
        match &mut self.driver {
            Driver::Inline(engine) => engine.watch(fd.into()),
            Driver::Background(_) => watch_shared(&self.shared, fd.into()),
        }
    }

    fn free(&mut self, conn: Conn) -> Result<(), Error> {
        match &mut self.driver {
            Driver::Inline(engine) => engine.free(conn),
            Driver::Background(_) => free_shared(&self.shared, conn),
        }
    }

    fn close(&mut self) {
        match &mut self.driver {
            Driver::Inline(engine) => engine.shutdown(),
            Driver::Background(bg) => {
                // Wait for the I/O thread to finish shutting down, so every
                // socket is closed when `close` returns, as in inline mode.
                self.shared.close();
                bg.join();
            }
        }
    }
}

impl<P: Poller, C, B> Drop for Watcher<P, C, B> {
    fn drop(&mut self) {
        self.shared.close();
        if let Driver::Background(bg) = &mut self.driver {
            bg.join();
        }
        // Inline: dropping the engine closes every descriptor and drops
        // every buffer.
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

// ----- background mode -------------------------------------------------------

/// Completions travelling from the background thread to `wait_io`.
struct Inbox<C, B> {
    batch: Vec<Completion<C, B>>,
    /// The engine has shut down (or failed) and will send nothing more.
    finished: bool,
    failure: Option<io::Error>,
    /// The owning thread sleeps on the condition variable: only then does
    /// the engine thread pay for a wake-up (a futex call) after a post.
    waiting: bool,
}

struct Mailbox<C, B> {
    inbox: Mutex<Inbox<C, B>>,
    ready: Condvar,
}

impl<C, B> Mailbox<C, B> {
    fn lock(&self) -> MutexGuard<'_, Inbox<C, B>> {
        // A panic while holding the lock cannot leave the inbox
        // inconsistent (it is only appended to and drained).
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Background<C, B> {
    mailbox: Arc<Mailbox<C, B>>,
    thread: Option<JoinHandle<()>>,
}

impl<C, B: IoBuf> Background<C, B> {
    fn spawn<P: Poller>(mut engine: Engine<P, C, B>, shared: &Shared<P, C, B>) -> Result<Self, Error>
    where
        C: Send + 'static,
    {
        let mailbox = Arc::new(Mailbox {
            inbox: Mutex::new(Inbox {
                batch: Vec::new(),
                finished: false,
                failure: None,
                waiting: false,
            }),
            ready: Condvar::new(),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread_mailbox = Arc::clone(&mailbox);
        let thread = std::thread::Builder::new()
            .name("gaio-watcher".into())
            .spawn(move || {
                let _ = started_tx.send(affinity::current_tid());
                run_background(&mut engine, &thread_mailbox);
            })?;
        // Publish the thread id before `build` returns, so the affinity
        // setter always has it.
        if let Ok(tid) = started_rx.recv() {
            shared.engine_tid.store(tid, Ordering::Release);
        }
        Ok(Background {
            mailbox,
            thread: Some(thread),
        })
    }

    fn wait(&mut self, out: &mut Vec<Completion<C, B>>, limit: Option<Instant>) -> Result<usize, Error> {
        let mut inbox = self.mailbox.lock();
        loop {
            if !inbox.batch.is_empty() {
                let n = inbox.batch.len();
                crate::engine::hand_over(&mut inbox.batch, out);
                return Ok(n);
            }
            if inbox.finished {
                return Err(inbox.failure.take().map_or(Error::WatcherClosed, Error::Io));
            }
            let timeout = match limit {
                None => None,
                Some(limit) => {
                    let now = Instant::now();
                    if now >= limit {
                        return Ok(0);
                    }
                    Some(limit - now)
                }
            };
            inbox.waiting = true;
            inbox = match timeout {
                None => self.mailbox.ready.wait(inbox).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    self.mailbox
                        .ready
                        .wait_timeout(inbox, t)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            inbox.waiting = false;
        }
    }
}

impl<C, B> Background<C, B> {
    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The thread only panics on a bug in the engine; re-raising it
            // inside drop would abort, so it is dropped here.
            let _ = thread.join();
        }
    }
}

/// The background thread: turn the engine, post each batch, stop after the
/// engine has shut down.
fn run_background<P: Poller, C, B: IoBuf>(engine: &mut Engine<P, C, B>, mailbox: &Mailbox<C, B>) {
    loop {
        let failure = engine.turn(true, None).err();
        if let Some(e) = &failure {
            tracing::error!(error = %e, "poller failed; shutting the watcher down");
        }
        if failure.is_some() || engine.close_requested() {
            engine.shutdown();
        }
        let finished = engine.is_finished();
        if !engine.ready_mut().is_empty() || finished {
            let mut inbox = mailbox.lock();
            crate::engine::hand_over(engine.ready_mut(), &mut inbox.batch);
            if failure.is_some() {
                inbox.failure = failure;
            }
            inbox.finished |= finished;
            let waiting = inbox.waiting;
            drop(inbox);
            if waiting {
                mailbox.ready.notify_one();
            }
        }
        if finished {
            return;
        }
    }
}
