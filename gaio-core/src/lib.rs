//! The OS-independent heart of gaio.
//!
//! This crate owns everything that does not depend on which readiness API
//! the operating system offers:
//!
//! * the public vocabulary: [`Conn`] handles, [`Request`]s, [`Completion`]s,
//!   the buffer traits [`IoBuf`] / [`IoBufMut`] and the [`Error`] type;
//! * the [`Poller`] trait, the whole contract a backend (epoll, kqueue, ...)
//!   has to fulfil: register an fd, wait for readiness, wake a sleeper;
//! * the engine, written once, that turns readiness into completions:
//!   per-connection FIFO queues, partial reads and writes, deadlines, the
//!   shared swap memory and delivery of batches;
//! * the [`Watcher`] (inline or background-thread mode) and the cloneable
//!   [`Submitter`] used from other threads, both driven through the
//!   [`Submit`] trait.
//!
//! Applications normally use the `gaio` facade crate, which picks the poller
//! for the target and re-exports everything here.
//!
//! # Features
//!
//! * `tracing` (off by default): the engine's diagnostics (a hand-over the
//!   poller refused to re-register, running out of descriptors while
//!   accepting, a panic on the engine thread, shutting down) as
//!   [`tracing`](https://docs.rs/tracing) events. Off, the calls compile to
//!   nothing.
//! * `fake-poller`: the `fake` module, a deterministic poller with scripted
//!   readiness and I/O, for testing and fuzzing the engine without sockets.
//!
//! # Threads
//!
//! [`Watcher`] is `Send` when its context and buffer types are (it may move
//! to another thread, and is used from one at a time; an inline watcher on
//! io_uring waits only on the thread that first ran its I/O, see
//! [`Error::WrongThread`]); [`Submitter`] is
//! `Send + Sync` under the same condition, and `&Submitter` submits too, so
//! one can be shared behind an `Arc`. [`Conn`], [`Listener`] and
//! [`Completion`] are plain data. These hold by construction and are
//! checked at compile time below.
#![cfg(unix)]
#![deny(missing_debug_implementations)]

mod addr;
mod affinity;
mod backend;
mod background;
mod buf;
mod buf_pool;
mod command_queue;
mod completion;
mod conn;
mod conn_map;
mod cores;
mod diag;
mod engine;
mod error;
#[cfg(any(test, feature = "fake-poller"))]
pub mod fake;
#[cfg(any(test, feature = "fake-poller"))]
pub mod fake_ring;
mod fd_set;
mod net;
mod poller;
mod request;
mod shared;
mod socket_ref;
mod submit;
mod sys;
pub mod syscalls;
mod timer;
mod watcher;

pub use addr::{PeerAddr, UnixAddr};
pub use backend::{Backend, UnknownBackend};
pub use buf::{Buffer, IoBuf, IoBufAppend, IoBufMut};
pub use buf_pool::{BufPool, PoolBuf};
pub use bytes::{Bytes, BytesMut};
pub use completion::{Completion, Op};
pub use conn::{AcceptOptions, Conn, Listener};
pub use conn_map::ConnMap;
pub use cores::{Core, Cores, CoresBuilder, Spread, MAX_CORES};
pub use error::{Error, InvalidSetting, Rejected};
pub use fd_set::FdSet;
pub use net::{listen, listen_unix, Datagram};
pub use poller::{Event, Interest, Poller};
pub use request::Request;
pub use socket_ref::SocketRef;
pub use submit::{Submit, SubmitResult, Submitter};
pub use sys::{FdKind, IoOutcome};
pub use timer::Timer;
pub use watcher::{Builder, Mode, Watcher};

/// Default size of the shared swap memory used by reads without a buffer.
pub const DEFAULT_SWAP_SIZE: usize = 64 * 1024;
/// Default number of readiness events taken from the poller per wait.
pub const DEFAULT_MAX_EVENTS: usize = 1024;
/// Largest swap size a [`Builder`] accepts: 1 GiB. One swap read fills at
/// most one slab, and Linux moves less than 2 GiB per `read` anyway; a
/// larger slab would only be memory allocated up front for nothing.
pub const MAX_SWAP_SIZE: usize = 1 << 30;
/// Default [swap limit](Builder::swap_limit): 6 MiB, what a completion
/// poller's read buffers may take at most (on io_uring: 2,048 buffers of
/// 2 KiB and 32 of 64 KiB, made as reads need them).
pub const DEFAULT_SWAP_LIMIT: usize = 6 << 20;
/// Smallest [swap limit](Builder::swap_limit) a [`Builder`] accepts:
/// 256 KiB (one 64 KiB buffer and some small ones).
pub const MIN_SWAP_LIMIT: usize = 256 << 10;
/// Largest [swap limit](Builder::swap_limit) a [`Builder`] accepts: 1 GiB.
pub const MAX_SWAP_LIMIT: usize = 1 << 30;
/// Largest number of events per wait a [`Builder`] accepts: 1,048,576.
/// The event buffers are allocated up front (about 28 MB at this size);
/// one wait taking more than this many events gains nothing.
pub const MAX_EVENTS_PER_WAIT: usize = 1 << 20;

/// The thread-safety the crate docs promise, checked when this crate
/// compiles (the function is never called; its body must type-check).
#[allow(dead_code)]
fn promised_thread_safety<P: Poller, C: Send, B: IoBuf + Send>() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Watcher<P, C, B>>();
    send::<Submitter<P, C, B>>();
    sync::<Submitter<P, C, B>>();
    send::<Completion<C, B>>();
    send::<Rejected<C, B>>();
    send::<Request<C, B>>();
    send::<Conn>();
    sync::<Conn>();
    send::<Listener>();
    sync::<Listener>();
    send::<Error>();
    sync::<Error>();
}
