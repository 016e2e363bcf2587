//! State shared between the thread that turns the engine and every thread
//! that submits: the poller, the command queue and the flags that coalesce
//! wake-ups.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use crate::command_queue::CommandQueue;
use crate::net::{self, Dialled};
use crate::request::Request;
use crate::sys::{self, FdInfo, FdKind};
use crate::{AcceptOptions, Conn, Error, Interest, PeerAddr, Poller};

/// What a watched descriptor is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A connection (or a pipe, a datagram socket): reads and writes.
    Connection,
    /// A listening socket: accepts, each accepted socket configured so.
    Listener(AcceptOptions),
}

/// A command travelling from a submitting thread to the engine.
pub(crate) enum Command<C, B> {
    /// A descriptor handed over (already registered with the poller).
    Watch {
        conn: Conn,
        fd: OwnedFd,
        info: FdInfo,
        role: Role,
    },
    /// A socket dialled for a connect request (registered, the connect
    /// started, `dialled` says how far it got).
    Connect {
        fd: OwnedFd,
        info: FdInfo,
        request: Request<C, B>,
        dialled: Dialled,
    },
    /// Any other request.
    Submit(Request<C, B>),
    /// Free a connection.
    Free(Conn),
    /// Close gracefully, by this deadline at the latest.
    CloseGracefully(std::time::Instant),
    /// Cancel a sleep.
    CancelTimer(crate::Timer),
    /// A connection accepted by another watcher of a group (see `group`),
    /// registered with this watcher's poller: take it in and complete an
    /// accept with `context` and `peer`.
    Adopt {
        conn: Conn,
        fd: OwnedFd,
        info: FdInfo,
        context: C,
        peer: Option<PeerAddr>,
    },
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
    /// Background mode: the owning thread waits for the engine the
    /// background thread holds (see `background`). The engine must not
    /// sleep in the poller, and its holder hands it over after the turn.
    owner_waiting: AtomicBool,
    next_gen: AtomicU32,
    /// This watcher's identity, unique in the process: every `Conn` it
    /// hands out carries it, so a handle given to another watcher is
    /// recognised as foreign instead of naming one of that watcher's
    /// connections (generations alone repeat across watchers).
    pub(crate) id: u32,
    /// Thread id of the thread that turns the engine in background mode
    /// (0 in inline mode), for the affinity setter.
    pub(crate) engine_tid: AtomicI32,
    /// Connections in the engine's table, listeners not counted: stored
    /// by the engine as they come and go, read by a group spreading
    /// accepted connections (see `group`).
    pub(crate) conns: AtomicUsize,
    /// Connections a group has sent this watcher that its engine has not
    /// taken in yet.
    pub(crate) adopting: AtomicUsize,
}

impl<P: Poller, C, B> Shared<P, C, B> {
    pub(crate) fn new(poller: P) -> Self {
        Shared {
            poller,
            queue: CommandQueue::new(),
            sleeping: AtomicBool::new(false),
            owner_waiting: AtomicBool::new(false),
            next_gen: AtomicU32::new(1),
            id: NEXT_WATCHER_ID.fetch_add(1, Ordering::Relaxed),
            engine_tid: AtomicI32::new(0),
            conns: AtomicUsize::new(0),
            adopting: AtomicUsize::new(0),
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

    /// Whether a socket being handed over must be asked if it is plain
    /// TCP: it matters only to an edge-triggered poller that reports urgent
    /// data (see `FdInfo::plain_tcp`).
    fn learn_protocol(&self) -> bool {
        self.poller.reports_urgent() && !self.poller.level_triggered()
    }

    /// Checks, prepares and registers a descriptor. On success the caller
    /// owns a registered descriptor and a fresh handle for it.
    pub(crate) fn register(&self, fd: OwnedFd) -> Result<(Conn, OwnedFd, FdInfo), Error> {
        if self.is_closed() {
            return Err(Error::WatcherClosed);
        }
        let info = sys::prepare(fd.as_fd(), self.learn_protocol())?;
        // A datagram socket is watched for writability only once a send
        // had to wait (see `Poller::register_for`).
        let interest = if info.kind == FdKind::DatagramSocket {
            Interest::READ
        } else {
            Interest::BOTH
        };
        let conn = self.enroll_for(fd.as_fd(), interest)?;
        Ok((conn, fd, info))
    }

    /// [`register`](Self::register) for a listening socket, whose
    /// accepted connections get `options`.
    pub(crate) fn register_listener(
        &self,
        fd: OwnedFd,
        options: AcceptOptions,
    ) -> Result<(Conn, OwnedFd, FdInfo), Error> {
        if self.is_closed() {
            return Err(Error::WatcherClosed);
        }
        let info = net::prepare_listener(fd.as_fd(), self.learn_protocol())?;
        // Set once here, these reach every accepted connection: no system
        // call per accept.
        net::configure_listener(fd.as_fd(), info.tcp, &options)?;
        let conn = self.enroll(fd.as_fd())?;
        Ok((conn, fd, info))
    }

    /// Creates a socket for `addr`, starts connecting it (unless the
    /// poller completes I/O: the engine then does) and registers it.
    /// Fails only if no socket can be made or registered; a connect that
    /// fails at once is reported in `Dialled`, for the engine to complete.
    pub(crate) fn dial(&self, addr: &PeerAddr) -> Result<(Conn, OwnedFd, FdInfo, Dialled), Error> {
        if self.is_closed() {
            return Err(Error::WatcherClosed);
        }
        // Sockets made here carry no upper-layer protocol: a TCP one is
        // plain TCP.
        let tcp = matches!(addr, PeerAddr::Inet(_));
        // A completion poller connects in the engine, on its ring.
        let (fd, dialled) = net::dial(addr, true, !self.poller.completes_io())?;
        let info = FdInfo {
            kind: FdKind::StreamSocket,
            plain_tcp: tcp && self.learn_protocol(),
            tcp,
        };
        let conn = self.enroll(fd.as_fd())?;
        Ok((conn, fd, info, dialled))
    }

    /// Gives an open descriptor a fresh handle and registers it with the
    /// poller under that handle's token.
    pub(crate) fn enroll(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<Conn, Error> {
        self.enroll_for(fd, Interest::BOTH)
    }

    /// [`enroll`](Self::enroll), watching for the directions of `interest`
    /// (see `Poller::register_for`).
    pub(crate) fn enroll_for(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        interest: Interest,
    ) -> Result<Conn, Error> {
        let conn = self.new_handle(std::os::fd::AsRawFd::as_raw_fd(&fd));
        // SAFETY: `fd` belongs to a hand-over or a dial whose `OwnedFd`
        // goes to the engine's table (through a command), and every path
        // that closes it deregisters it first: the engine's `free_conn`,
        // `try_detach` and `shutdown`, a refused hand-over
        // (`watch_shared`), and the engine's shutdown of commands it never
        // applied.
        let registered = unsafe { self.poller.register_for(fd, conn.token(), interest) };
        match registered {
            Ok(()) => {}
            // The poller already holds this descriptor number: the engine
            // does too, for a descriptor closed behind the watcher's back
            // (the OS reuses a number only after a close), or for the
            // same descriptor handed over twice through a second `OwnedFd`.
            // That registration is stale: replace it. The engine forgets
            // the stale connection, without closing or deregistering the
            // number again, when this hand-over reaches it.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                let _ = self.poller.deregister(fd);
                // SAFETY: as for the first registration above.
                unsafe { self.poller.register_for(fd, conn.token(), interest) }
                    .map_err(Error::NotPollable)?;
            }
            Err(e) => return Err(Error::NotPollable(e)),
        }
        Ok(conn)
    }

    /// A new handle of this watcher for descriptor number `raw`, with a
    /// generation no other handle has: what [`enroll_for`](Self::enroll_for)
    /// registers, and what a hand-over that raced a close from another
    /// thread returns without registering (`Watcher::watch`), which then
    /// matches nothing, in the engine or in a `ConnMap`.
    pub(crate) fn new_handle(&self, raw: std::os::fd::RawFd) -> Conn {
        Conn {
            fd: raw as u32,
            gen: self.next_gen.fetch_add(1, Ordering::Relaxed),
            owner: self.id,
        }
    }

    /// Whether `free(conn)` has a connection of this watcher to close:
    /// `Ok(false)` for the handle that names none (a notification's or a
    /// timer's), `Err(ForeignConn)` for another watcher's.
    pub(crate) fn check_free(&self, conn: Conn) -> Result<bool, Error> {
        if conn == Conn::NONE {
            return Ok(false);
        }
        self.check_owner(conn)?;
        Ok(true)
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
    pub(crate) fn push_watch(&self, conn: Conn, fd: OwnedFd, info: FdInfo, role: Role) -> Result<(), Error> {
        match self.push(Command::Watch { conn, fd, info, role }) {
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
        if self.queue.is_pending() || self.is_closed() || self.owner_waiting.load(Ordering::SeqCst) {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Connections this watcher holds or is about to: what a group
    /// spreading connections calls its load.
    pub(crate) fn load(&self) -> usize {
        self.conns.load(Ordering::Relaxed) + self.adopting.load(Ordering::Relaxed)
    }

    /// Called by the engine after the poller returned.
    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Background mode: the owning thread asks for the engine, waking it
    /// if it sleeps in the poller. SeqCst pairs with `prepare_sleep`: the
    /// engine either sees the request or is woken.
    pub(crate) fn ask_for_engine(&self) {
        self.owner_waiting.store(true, Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.poller.wake();
        }
    }

    /// Background mode: the owning thread has the engine it asked for.
    pub(crate) fn got_engine(&self) {
        self.owner_waiting.store(false, Ordering::SeqCst);
    }

    /// Background mode: the owning thread waits for the engine.
    pub(crate) fn owner_waits(&self) -> bool {
        self.owner_waiting.load(Ordering::SeqCst)
    }
}
