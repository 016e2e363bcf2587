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
#![cfg(unix)]

mod addr;
mod affinity;
mod buf;
mod buf_pool;
mod command_queue;
mod completion;
mod conn;
mod conn_map;
mod engine;
mod error;
#[cfg(any(test, feature = "fake-poller"))]
pub mod fake;
mod net;
mod poller;
mod request;
mod shared;
mod socket_ref;
mod submit;
mod sys;
mod watcher;

pub use addr::{PeerAddr, UnixAddr};
pub use buf::{Buffer, IoBuf, IoBufAppend, IoBufMut};
pub use buf_pool::{BufPool, PoolBuf};
pub use bytes::{Bytes, BytesMut};
pub use completion::{Completion, Op};
pub use conn::{AcceptOptions, Conn, Listener};
pub use conn_map::ConnMap;
pub use error::{Error, InvalidSetting, Rejected};
pub use net::{listen, listen_unix, Datagram};
pub use poller::{Event, Poller};
pub use request::Request;
pub use socket_ref::SocketRef;
pub use submit::{Submit, SubmitResult, Submitter};
pub use sys::{FdKind, IoOutcome};
pub use watcher::{Builder, Mode, Watcher};

/// Default size of the shared swap memory used by reads without a buffer.
pub const DEFAULT_SWAP_SIZE: usize = 64 * 1024;
/// Default number of readiness events taken from the poller per wait.
pub const DEFAULT_MAX_EVENTS: usize = 1024;
/// Largest swap size a [`Builder`] accepts: 1 GiB. One swap read fills at
/// most one slab, and Linux moves less than 2 GiB per `read` anyway; a
/// larger slab would only be memory allocated up front for nothing.
pub const MAX_SWAP_SIZE: usize = 1 << 30;
/// Largest number of events per wait a [`Builder`] accepts: 1,048,576.
/// The event buffers are allocated up front (about 28 MB at this size);
/// one wait taking more than this many events gains nothing.
pub const MAX_EVENTS_PER_WAIT: usize = 1 << 20;
