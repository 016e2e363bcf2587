//! State shared between the thread that turns the engine and every thread
//! that submits: the poller, the command queue and the flags that coalesce
//! wake-ups.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use crate::command_queue::CommandQueue;
use crate::request::Request;
use crate::sys::{self, FdInfo};
use crate::{Conn, Error, Poller};

/// A command travelling from a submitting thread to the engine.
pub(crate) enum Command<C, B> {
    /// A descriptor handed over (already registered with the poller).
    Watch { conn: Conn, fd: OwnedFd, info: FdInfo },
    /// A read or write.
    Submit(Request<C, B>),
    /// Free a connection.
    Free(Conn),
}

/// The identity the next watcher gets.
static NEXT_WATCHER_ID: AtomicU32 = AtomicU32::new(1);

/// What every handle of one watcher points to.
pub(crate) struct Shared<P, C, B> {
    pub(crate) poller: P,
    pub(crate) queue: CommandQueue<Command<C, B>>,
    /// Set by the engine just before it sleeps in the poller; the first
    /// submitter to see it clears it and wakes the poller. Later submitters
    /// see it clear and skip the wake-up system call.
    sleeping: AtomicBool,
    next_gen: AtomicU32,
    /// This watcher's identity, unique in the process: every `Conn` it
    /// hands out carries it, so a handle given to another watcher is
    /// recognised as foreign instead of naming one of that watcher's
    /// connections (generations alone repeat across watchers).
    pub(crate) id: u32,
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
            next_gen: AtomicU32::new(1),
            id: NEXT_WATCHER_ID.fetch_add(1, Ordering::Relaxed),
            engine_tid: AtomicI32::new(0),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Marks the watcher closed and wakes the engine. Returns false if it
    /// was already closed. The command queue refuses every push from now
    /// on, in the same step (see `command_queue`), so the engine's first
    /// look at the queue after this sees every command ever accepted.
    pub(crate) fn close(&self) -> bool {
        let first = self.queue.close();
        if first {
            // A failed wake leaves the engine to notice at its next turn.
            let _ = self.poller.wake();
        }
        first
    }

    /// Checks, prepares and registers a descriptor. On success the caller
    /// owns a registered descriptor and a fresh handle for it.
    pub(crate) fn register(&self, fd: OwnedFd) -> Result<(Conn, OwnedFd, FdInfo), Error> {
        if self.is_closed() {
            return Err(Error::WatcherClosed);
        }
        // Whether a socket is plain TCP matters only to an edge-triggered
        // poller that reports urgent data (see `FdInfo::plain_tcp`).
        let info = sys::prepare(fd.as_fd(), P::REPORTS_URGENT && !P::LEVEL_TRIGGERED)?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let conn = Conn {
            fd: raw as u32,
            gen: self.next_gen.fetch_add(1, Ordering::Relaxed),
            owner: self.id,
        };
        match self.poller.register(fd.as_fd(), conn.token()) {
            Ok(()) => {}
            // The poller already holds this descriptor number: the engine
            // does too, for a descriptor closed behind the watcher's back
            // (the OS reuses a number only after a close), or for the
            // same descriptor handed over twice through a second `OwnedFd`.
            // That registration is stale: replace it. The engine forgets
            // the stale connection, without closing or deregistering the
            // number again, when this hand-over reaches it.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                let _ = self.poller.deregister(fd.as_fd());
                self.poller
                    .register(fd.as_fd(), conn.token())
                    .map_err(Error::NotPollable)?;
            }
            Err(e) => return Err(Error::NotPollable(e)),
        }
        Ok((conn, fd, info))
    }

    /// `Err(ForeignConn)` if `conn` was handed out by another watcher.
    pub(crate) fn check_owner(&self, conn: Conn) -> Result<(), Error> {
        if conn.owner == self.id {
            Ok(())
        } else {
            Err(Error::ForeignConn)
        }
    }

    /// Queues a command for the engine and wakes it if it sleeps. A closed
    /// watcher hands the command back instead.
    pub(crate) fn push(&self, cmd: Command<C, B>) -> Result<(), Command<C, B>> {
        self.queue.push(cmd)?;
        // SeqCst pairs with `prepare_sleep`: either the engine sees the
        // command in the queue, or this swap sees it sleeping.
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.poller.wake();
        }
        Ok(())
    }

    /// Hands a registered descriptor over to the engine. If the watcher
    /// closed meanwhile, the descriptor is deregistered and closed here,
    /// since the engine will never see it.
    pub(crate) fn push_watch(&self, conn: Conn, fd: OwnedFd, info: FdInfo) -> Result<(), Error> {
        match self.push(Command::Watch { conn, fd, info }) {
            Ok(()) => Ok(()),
            Err(Command::Watch { fd, .. }) => {
                let _ = self.poller.deregister(fd.as_fd());
                drop(fd);
                Err(Error::WatcherClosed)
            }
            Err(_) => unreachable!("push hands back the command it was given"),
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
