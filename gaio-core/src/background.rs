//! Background mode: a thread of its own turns the engine and posts each
//! batch of completions to a mailbox the owning thread's `wait_io` takes
//! them from.

use std::any::Any;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::engine::{Engine, Sleep};
use crate::shared::Shared;
use crate::{affinity, Completion, Error, IoBuf, Poller};

/// Completions travelling from the background thread to `wait_io`.
struct Inbox<C, B> {
    batch: Vec<Completion<C, B>>,
    /// The engine has shut down (or failed) and will send nothing more.
    finished: bool,
    failure: Option<io::Error>,
    /// The engine thread panicked, with this message: every `wait_io`
    /// after the last batch fails with `Error::Panicked`.
    panicked: Option<String>,
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

pub(crate) struct Background<C, B> {
    mailbox: Arc<Mailbox<C, B>>,
    thread: Option<JoinHandle<()>>,
}

impl<C, B: IoBuf> Background<C, B> {
    pub(crate) fn spawn<P: Poller>(
        mut engine: Engine<P, C, B>,
        shared: &Shared<P, C, B>,
    ) -> Result<Self, Error>
    where
        C: Send + 'static,
    {
        let mailbox = Arc::new(Mailbox {
            inbox: Mutex::new(Inbox {
                batch: Vec::new(),
                finished: false,
                failure: None,
                panicked: None,
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

    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Completion<C, B>>,
        limit: Option<Instant>,
    ) -> Result<usize, Error> {
        let mut inbox = self.mailbox.lock();
        loop {
            if !inbox.batch.is_empty() {
                let n = inbox.batch.len();
                crate::engine::hand_over(&mut inbox.batch, out);
                return Ok(n);
            }
            if inbox.finished {
                if let Some(message) = &inbox.panicked {
                    return Err(Error::Panicked {
                        message: message.as_str().into(),
                    });
                }
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
    pub(crate) fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The thread only panics on a bug in the engine; re-raising it
            // inside drop would abort, so it is dropped here.
            let _ = thread.join();
        }
    }
}

/// The background thread: turn the engine, post each batch, stop after the
/// engine has shut down. A panic (in user code the engine called, or a bug)
/// closes the watcher and is reported to `wait_io` (see `engine::panic`).
fn run_background<P: Poller, C, B: IoBuf>(engine: &mut Engine<P, C, B>, mailbox: &Mailbox<C, B>) {
    let Err(payload) = catch_unwind(AssertUnwindSafe(|| turn_until_finished(engine, mailbox))) else {
        return;
    };
    let message = panic_message(payload.as_ref());
    crate::diag::error_event!(%message, "the watcher's engine thread panicked; closing the watcher");
    engine.close_after_panic();
    let mut inbox = mailbox.lock();
    crate::engine::hand_over(engine.ready_mut(), &mut inbox.batch);
    inbox.panicked = Some(message);
    inbox.finished = true;
    let waiting = inbox.waiting;
    drop(inbox);
    if waiting {
        mailbox.ready.notify_one();
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

/// The loop of [`run_background`].
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // an error only a diagnostic reads
fn turn_until_finished<P: Poller, C, B: IoBuf>(engine: &mut Engine<P, C, B>, mailbox: &Mailbox<C, B>) {
    loop {
        let failure = engine.turn(Sleep::UpTo, None).err();
        if let Some(e) = &failure {
            crate::diag::error_event!(error = %e, "poller failed; shutting the watcher down");
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
