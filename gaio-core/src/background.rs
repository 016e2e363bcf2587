//! Background mode: the engine keeps turning while the owning thread is
//! busy, and that thread's `wait_io` turns it itself, with no hand-off,
//! whenever it waits.
//!
//! The engine sits behind a lock, and whoever holds the lock turns it:
//!
//! * **The owning thread, while it waits.** `wait_io` takes the engine
//!   and runs it exactly as inline mode does: the poller's wait, the I/O
//!   and the completions all on the waiting thread, nothing crossing
//!   threads. Its submissions take the engine too when it is free, so the
//!   I/O is tried at once, as in inline mode.
//! * **The background thread, once the owner has been away from
//!   `wait_io` for a while** (at least [`TAKE_OVER_AFTER`]). It takes the engine and turns it until the
//!   owner comes back, so writes keep draining, reads keep filling and
//!   deadlines and timers keep firing while the owner works on a batch.
//!   Completions collect in the engine until the next `wait_io`. The
//!   owner's submissions then travel through the command queue (as a
//!   `Submitter`'s do), and its next `wait_io` asks for the engine back:
//!   it raises `Shared::ask_for_engine`, which wakes the poller, and the
//!   background thread hands the engine over after that turn.
//!
//! A server answering each batch quickly therefore never crosses threads,
//! and pays what inline mode pays; one that works longer on a batch pays
//! one hand-off each way per long batch.
//!
//! To notice that the owner is away, the background thread looks at it
//! now and then: the owner counts its moves in and out of `wait_io` (a
//! store per move, no clock), and two looks a nap apart that see the same
//! count, outside `wait_io`, mean it has been away for that long. Naps
//! start at `TAKE_OVER_AFTER` and double up to [`MAX_NAP`] while the owner
//! keeps moving, so a busy server's owner is looked at about 125 times a
//! second and a busy owner is relieved within `2 × MAX_NAP` at most. Once
//! the owner has sat in one `wait_io` for [`DOZE_AFTER`] (an idle server)
//! the background thread sleeps until the owner leaves it, so an idle
//! watcher costs no CPU.
//!
//! A panic in the engine (user code it calls: buffers, `Drop` and `Clone`
//! of contexts) is caught on whichever thread it happens: the watcher
//! closes and `wait_io` reports it (see `engine::panic`).

use std::any::Any;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::{Engine, Sleep};
use crate::shared::Shared;
use crate::submit::{
    cancel_timer_shared, close_gracefully_shared, deadline_after, free_shared, submit_shared,
    watch_listener_shared, watch_shared,
};
use crate::{
    affinity, AcceptOptions, Completion, Conn, Error, IoBuf, Listener, Poller, Request, SubmitResult,
};

/// The shortest time the owning thread stays away from `wait_io` before
/// the background thread takes the engine: its first nap after taking
/// over or after the owner idled.
pub(crate) const TAKE_OVER_AFTER: Duration = Duration::from_millis(1);

/// The longest the background thread sleeps between two looks at an
/// owner that keeps coming back to `wait_io`. Each look that finds the
/// owner moved doubles the nap from [`TAKE_OVER_AFTER`] up to this: each
/// look is a timer wake-up, which costs 20–50 µs of CPU on this
/// benchmark's virtual machine.
pub(crate) const MAX_NAP: Duration = Duration::from_millis(8);

/// How long the owning thread sits in `wait_io` before the background
/// thread stops checking on it and sleeps until it leaves.
pub(crate) const DOZE_AFTER: Duration = Duration::from_millis(20);

/// Why the engine stopped, when it was not a close.
enum Ending {
    /// User code the engine called panicked, with this message.
    Panicked(String),
    /// The poller failed on the background thread.
    Failed(io::Error),
}

/// What the owning thread and the background thread share.
struct Relay<P: Poller, C, B> {
    /// Whoever holds it turns it.
    engine: Mutex<Engine<P, C, B>>,
    shared: Arc<Shared<P, C, B>>,
    /// How many times the owning thread has entered or left `wait_io`:
    /// odd while it is inside. Only the owning thread writes it; the
    /// background thread compares two looks to tell an owner that stayed
    /// away (or inside) from one that came and went.
    owner_moves: AtomicU64,
    /// The background thread sleeps until the owning thread leaves
    /// `wait_io`, which then wakes it.
    dozing: AtomicBool,
    ending: Mutex<Option<Ending>>,
}

/// Background mode's side of a watcher, held by the owning thread.
pub(crate) struct Background<P: Poller, C, B> {
    relay: Arc<Relay<P, C, B>>,
    thread: Option<JoinHandle<()>>,
}

impl<P: Poller, C: Send + 'static, B: IoBuf> Background<P, C, B> {
    pub(crate) fn spawn(engine: Engine<P, C, B>, shared: &Arc<Shared<P, C, B>>) -> Result<Self, Error> {
        let relay = Arc::new(Relay {
            engine: Mutex::new(engine),
            shared: Arc::clone(shared),
            owner_moves: AtomicU64::new(0),
            dozing: AtomicBool::new(false),
            ending: Mutex::new(None),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread_relay = Arc::clone(&relay);
        let thread = std::thread::Builder::new()
            .name("gaio-watcher".into())
            .spawn(move || {
                let _ = started_tx.send(affinity::current_tid());
                thread_relay.run();
            })?;
        // Publish the thread id before `build` returns, so the affinity
        // setter always has it.
        if let Ok(tid) = started_rx.recv() {
            shared.engine_tid.store(tid, Ordering::Release);
        }
        Ok(Background {
            relay,
            thread: Some(thread),
        })
    }
}

impl<P: Poller, C, B: IoBuf> Background<P, C, B> {
    /// `wait_io`: takes the engine (asking the background thread for it if
    /// that has it) and turns it on this thread until completions are
    /// ready or `limit` passes.
    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Completion<C, B>>,
        limit: Option<Instant>,
    ) -> Result<usize, Error> {
        let relay = &*self.relay;
        relay.owner_moves();
        let mut engine = relay.engine_for_owner();
        let waited = match relay.guarded(&mut engine, |e| e.wait(out, limit)) {
            // The poller failed: as on the background thread, the watcher
            // closes, and the error comes after the last batch.
            Some(Err(Error::Io(e))) => {
                crate::diag::error_event!(error = %e, "poller failed; shutting the watcher down");
                relay.end(Ending::Failed(e));
                relay.guarded(&mut engine, |e| e.shutdown_settled());
                None
            }
            other => other,
        };
        let result = match waited {
            Some(Err(Error::WatcherClosed)) | None => {
                // Closed, or a panic just closed it: hand out what the
                // close completed, then say why it closed.
                let ready = engine.ready_mut();
                if ready.is_empty() {
                    Err(relay.closed_error())
                } else {
                    let n = ready.len();
                    crate::engine::hand_over(ready, out);
                    Ok(n)
                }
            }
            Some(other) => other,
        };
        drop(engine);
        relay.owner_moves();
        if relay.dozing.load(Ordering::SeqCst) {
            self.wake_thread();
        }
        result
    }

    /// A call from the owning thread with `arg`: `direct` on the engine at
    /// once when it is free, `queued` (through the command queue, as a
    /// `Submitter` does) when the background thread is turning it, and
    /// `after_panic` if `direct` panicked (the watcher is closed then).
    fn on_engine<T, R>(
        &self,
        arg: T,
        direct: impl FnOnce(&mut Engine<P, C, B>, T) -> R,
        queued: impl FnOnce(&Shared<P, C, B>, T) -> R,
        after_panic: R,
    ) -> R {
        match self.relay.free_engine() {
            Some(mut engine) => self
                .relay
                .guarded(&mut engine, |e| direct(e, arg))
                .unwrap_or(after_panic),
            None => queued(&self.relay.shared, arg),
        }
    }

    /// A submission from the owning thread (the I/O tried at once when the
    /// engine is free).
    pub(crate) fn submit(&self, request: Request<C, B>) -> SubmitResult<C, B> {
        self.on_engine(request, |e, r| e.submit_as_queued(r), submit_shared, Ok(()))
    }

    pub(crate) fn watch(&self, fd: OwnedFd) -> Result<Conn, Error> {
        self.on_engine(fd, |e, fd| e.watch(fd), watch_shared, Err(Error::WatcherClosed))
    }

    pub(crate) fn watch_listener(&self, fd: OwnedFd, options: AcceptOptions) -> Result<Listener, Error> {
        self.on_engine(
            fd,
            |e, fd| e.watch_listener(fd, options),
            |shared, fd| watch_listener_shared(shared, fd, options),
            Err(Error::WatcherClosed),
        )
    }

    pub(crate) fn free(&self, conn: Conn) -> Result<(), Error> {
        self.on_engine(conn, |e, conn| e.free(conn), free_shared, Ok(()))
    }

    /// `queued_write_bytes`, counted on the engine itself, after the
    /// owner's requests still in the command queue.
    pub(crate) fn queued_write_bytes(&self, conn: Conn) -> Option<usize> {
        let mut engine = self.relay.engine_for_owner();
        self.relay
            .guarded(&mut engine, |e| {
                e.drain_commands();
                e.queued_write_bytes(conn)
            })
            .flatten()
    }

    pub(crate) fn close_gracefully(&self, timeout: Duration) {
        // After the owner's requests still queued from when the background
        // thread held the engine: they are part of what the graceful close
        // lets finish.
        let direct = |e: &mut Engine<P, C, B>, timeout| {
            e.drain_commands();
            e.close_gracefully(deadline_after(timeout));
        };
        self.on_engine(timeout, direct, close_gracefully_shared, ());
    }

    pub(crate) fn cancel_timer(&self, timer: crate::Timer) {
        // The sleep may still be queued (submitted while the background
        // thread held the engine).
        let direct = |e: &mut Engine<P, C, B>, timer| {
            e.drain_commands();
            e.cancel_timer(timer);
        };
        self.on_engine(timer, direct, cancel_timer_shared, ());
    }
}

impl<P: Poller, C, B> Background<P, C, B> {
    /// Closes the watcher and waits for the background thread, which
    /// shuts the engine down (every socket closed) before it ends.
    pub(crate) fn close(&mut self) {
        self.relay.shared.close();
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The thread catches every panic of the engine; one here would
            // be a bug in this file, and re-raising it inside `drop` would
            // abort, so it is dropped.
            let _ = thread.join();
        }
    }

    fn wake_thread(&self) {
        self.relay.dozing.store(false, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

/// What the background thread does next.
enum Step {
    /// Take the engine: the owner has been away since the last look.
    TakeOver,
    /// Look again after a nap.
    Nap,
    /// Sleep until the owner leaves the `wait_io` it is in (at this move
    /// count).
    Doze(u64),
}

impl<P: Poller, C, B> Relay<P, C, B> {
    /// The owning thread enters or leaves `wait_io`.
    fn owner_moves(&self) {
        // Only this thread writes the count, so a load and a store do.
        // SeqCst pairs with `doze`: the background thread either sees the
        // owner leave or is woken by it.
        let moves = self.owner_moves.load(Ordering::Relaxed);
        self.owner_moves.store(moves.wrapping_add(1), Ordering::SeqCst);
    }

    /// The engine for the owning thread's `wait_io`: at once if it is
    /// free, else asked back from the background thread, which hands it
    /// over after its current turn.
    fn engine_for_owner(&self) -> MutexGuard<'_, Engine<P, C, B>> {
        if let Some(engine) = self.free_engine() {
            return engine;
        }
        self.shared.ask_for_engine();
        let engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.got_engine();
        engine
    }

    /// The engine if nobody holds it. Every call into the engine catches
    /// panics (`guarded`), so a poisoned lock only means a panic outside
    /// the engine's logic: the engine itself is consistent.
    fn free_engine(&self) -> Option<MutexGuard<'_, Engine<P, C, B>>> {
        match self.engine.try_lock() {
            Ok(engine) => Some(engine),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Runs `call` on the engine; after a panic in it, closes the watcher
    /// and returns `None`.
    fn guarded<R>(
        &self,
        engine: &mut Engine<P, C, B>,
        call: impl FnOnce(&mut Engine<P, C, B>) -> R,
    ) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(|| call(engine))) {
            Ok(result) => Some(result),
            Err(payload) => {
                self.after_panic(engine, payload.as_ref());
                None
            }
        }
    }

    fn after_panic(&self, engine: &mut Engine<P, C, B>, payload: &(dyn Any + Send)) {
        let message = panic_message(payload);
        crate::diag::error_event!(%message, "the watcher's engine panicked; closing the watcher");
        engine.close_after_panic();
        self.end(Ending::Panicked(message));
    }

    /// Records why the engine stopped, if nothing did before.
    fn end(&self, ending: Ending) {
        self.ending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(ending);
    }

    /// What `wait_io` returns once everything is handed out: `Panicked` on
    /// every call after a panic, the poller's failure once, else
    /// `WatcherClosed`.
    fn closed_error(&self) -> Error {
        let mut ending = self.ending.lock().unwrap_or_else(|p| p.into_inner());
        match &*ending {
            Some(Ending::Panicked(message)) => Error::Panicked {
                message: message.as_str().into(),
            },
            Some(Ending::Failed(_)) => match ending.take() {
                Some(Ending::Failed(e)) => Error::Io(e),
                _ => unreachable!("matched just above"),
            },
            None => Error::WatcherClosed,
        }
    }

    /// What the background thread does next, given the owner's move count
    /// at its last look (`seen`) and when that count was first seen.
    fn next_step(&self, seen: &mut Seen) -> Step {
        let moves = self.owner_moves.load(Ordering::SeqCst);
        if moves != seen.moves {
            // The owner came or went since the last look.
            *seen = Seen {
                moves,
                since: Instant::now(),
            };
            return Step::Nap;
        }
        if moves % 2 == 0 {
            // Away from `wait_io` since before the last look, a nap ago.
            Step::TakeOver
        } else if seen.since.elapsed() >= DOZE_AFTER {
            Step::Doze(moves)
        } else {
            Step::Nap
        }
    }

    /// Sleeps until the owning thread leaves the `wait_io` it was in at
    /// move count `moves` (or the watcher closes: `close` wakes this
    /// thread too).
    fn doze(&self, moves: u64) {
        self.dozing.store(true, Ordering::SeqCst);
        if self.owner_moves.load(Ordering::SeqCst) == moves && !self.shared.is_closed() {
            std::thread::park();
        }
        self.dozing.store(false, Ordering::SeqCst);
    }
}

/// The owner's move count at the background thread's last look, and when
/// it was first seen.
struct Seen {
    moves: u64,
    since: Instant,
}

impl<P: Poller, C, B: IoBuf> Relay<P, C, B> {
    /// The background thread: watch the owner, turn the engine while it
    /// is away, and shut the engine down once the watcher is closed.
    fn run(&self) {
        // How long to sleep between looks at an owner that keeps coming
        // back: doubled by every look that finds nothing to do.
        let mut nap = TAKE_OVER_AFTER;
        let mut seen = Seen {
            moves: u64::MAX,
            since: Instant::now(),
        };
        loop {
            if self.shared.is_closed() {
                self.finish();
                return;
            }
            match self.next_step(&mut seen) {
                Step::Nap => {
                    std::thread::park_timeout(nap);
                    nap = (nap * 2).min(MAX_NAP);
                }
                Step::Doze(moves) => {
                    self.doze(moves);
                    nap = TAKE_OVER_AFTER;
                }
                Step::TakeOver => {
                    nap = TAKE_OVER_AFTER;
                    // Once handed back, the owner's next move starts the
                    // watch afresh.
                    seen.moves = u64::MAX;
                    match self.free_engine() {
                        Some(mut engine) => {
                            self.turn_while_away(&mut engine);
                            if engine.is_finished() {
                                return;
                            }
                        }
                        None => std::thread::park_timeout(TAKE_OVER_AFTER),
                    }
                }
            }
        }
    }

    /// Turns the engine until the owner asks for it back or the engine
    /// has shut down.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // an error only a diagnostic reads
    fn turn_while_away(&self, engine: &mut Engine<P, C, B>) {
        while !engine.is_finished() && !self.shared.owner_waits() {
            let turned = self.guarded(engine, |e| {
                let failure = e.turn(Sleep::UpTo, None).err();
                if failure.is_some() || e.close_requested() {
                    e.shutdown_settled();
                }
                failure
            });
            if let Some(Some(e)) = turned {
                crate::diag::error_event!(error = %e, "poller failed; shutting the watcher down");
                self.end(Ending::Failed(e));
            }
        }
    }

    /// Shuts the engine down after a close, unless the owner's `wait_io`
    /// already did.
    fn finish(&self) {
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        if !engine.is_finished() {
            self.guarded(&mut engine, |e| e.shutdown_settled());
        }
    }
}

/// The message a panic carried: its `&str` or `String` payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}
