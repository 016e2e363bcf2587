//! State shared between the thread that turns the engine and every thread
//! that submits: the poller, the command queue and the flags that coalesce
//! wake-ups.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use crate::command_queue::CommandQueue;
use crate::request::Request;
use crate::sys::{self, FdKind};
use crate::{Conn, Error, Poller};

/// A command travelling from a submitting thread to the engine.
pub(crate) enum Command<C, B> {
    /// A descriptor handed over (already registered with the poller).
    Watch { conn: Conn, fd: OwnedFd, kind: FdKind },
    /// A read or write.
    Submit(Request<C, B>),
    /// Free a connection.
    Free(Conn),
}

/// What every handle of one watcher points to.
pub(crate) struct Shared<P, C, B> {
    pub(crate) poller: P,
    pub(crate) queue: CommandQueue<Command<C, B>>,
    /// Set by the engine just before it sleeps in the poller; the first
    /// submitter to see it clears it and wakes the poller. Later submitters
    /// see it clear and skip the wake-up system call.
    sleeping: AtomicBool,
    closed: AtomicBool,
    next_gen: AtomicU32,
    /// Thread id of the thread that turns the engine in background mode
    /// (0 in inline mode), for the affinity setter.
    pub(crate) engine_tid: AtomicI32,
}

impl<P: Poller, C, B> Shared<P, C, B> {
    pub(crate) fn new(poller: P) -> Self {
        Shared {
            poller,
            queue: CommandQueue::new(),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            next_gen: AtomicU32::new(1),
            engine_tid: AtomicI32::new(0),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the watcher closed and wakes the engine. Returns false if it
    /// was already closed.
    pub(crate) fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        if first {
            // A failed wake leaves the engine to notice at its next turn.
            let _ = self.poller.wake();
        }
        first
    }

    /// Checks, prepares and registers a descriptor. On success the caller
    /// owns a registered descriptor and a fresh handle for it.
    pub(crate) fn register(&self, fd: OwnedFd) -> Result<(Conn, OwnedFd, FdKind), Error> {
        if self.is_closed() {
            return Err(Error::WatcherClosed);
        }
        let kind = sys::prepare(fd.as_fd())?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let conn = Conn {
            fd: raw as u32,
            gen: self.next_gen.fetch_add(1, Ordering::Relaxed),
        };
        self.poller
            .register(fd.as_fd(), conn.token())
            .map_err(Error::NotPollable)?;
        Ok((conn, fd, kind))
    }

    /// Queues a command for the engine and wakes it if it sleeps.
    pub(crate) fn push(&self, cmd: Command<C, B>) {
        self.queue.push(cmd);
        // SeqCst pairs with `prepare_sleep`: either the engine sees the
        // command in the queue, or this swap sees it sleeping.
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.poller.wake();
        }
    }

    /// Called by the engine before it blocks in the poller. Returns false
    /// if it must not block because work arrived meanwhile.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.queue.is_pending() || self.is_closed() {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Called by the engine after the poller returned.
    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
