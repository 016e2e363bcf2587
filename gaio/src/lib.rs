//! gaio: proactor-pattern networking for servers with very many connections.
//!
//! Hand a connected socket to a [`Watcher`], submit reads and writes on it,
//! and collect finished requests in batches from [`Watcher::wait_io`]. The
//! watcher does the I/O itself on edge-triggered epoll (Linux); there is no
//! task or thread per connection and no buffer per idle connection.
//!
//! ```no_run
//! use gaio::{Op, Submit, Watcher};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut w: Watcher = Watcher::new()?;
//!     // The watcher accepts too: every connection comes already watched.
//!     let listener = w.watch_listener(gaio::listen("127.0.0.1:0")?)?;
//!     w.accept_multishot(listener, ())?;
//!     let mut batch = Vec::new();
//!     while w.next_batch(&mut batch)? {
//!         for c in batch.drain(..) {
//!             match (c.op, c.error) {
//!                 (Op::Accept, None) => w.read(c.conn, (), vec![0; 4096])?,
//!                 (Op::Read, None) => {
//!                     // Echo what was read, then read again.
//!                     let mut buf = c.buffer.into_user().unwrap();
//!                     buf.truncate(c.bytes);
//!                     w.write(c.conn, (), buf)?;
//!                 }
//!                 (Op::Write, None) => {
//!                     let mut buf = c.buffer.into_user().unwrap();
//!                     buf.resize(4096, 0);
//!                     w.read(c.conn, (), buf)?;
//!                 }
//!                 (Op::Accept, Some(e)) => return Err(e.into()),
//!                 _ => w.free(c.conn)?, // end of stream, an error
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! The backend is chosen at compile time: epoll on Linux and Android,
//! kqueue on the BSDs and Apple systems, poll(2) elsewhere (or everywhere,
//! with the `force-poll` feature).
#![cfg(unix)]

pub use gaio_core::{
    listen, listen_unix, AcceptOptions, BufPool, Buffer, Bytes, BytesMut, Completion, Conn, ConnMap,
    Datagram, Error, Event, InvalidSetting, IoBuf, IoBufAppend, IoBufMut, Listener, Mode, Op, PeerAddr,
    Poller, PoolBuf, Rejected, Request, SocketRef, Submit, UnixAddr, DEFAULT_MAX_EVENTS, DEFAULT_SWAP_SIZE,
    MAX_EVENTS_PER_WAIT, MAX_SWAP_SIZE,
};

pub use gaio_poll::PollPoller;

cfg_if::cfg_if! {
    if #[cfg(feature = "force-poll")] {
        /// The poller used by this build: poll(2), forced by the
        /// `force-poll` feature.
        pub type DefaultPoller = gaio_poll::PollPoller;
    } else if #[cfg(any(target_os = "linux", target_os = "android"))] {
        /// The poller used on this target: epoll.
        pub type DefaultPoller = gaio_epoll::EpollPoller;
    } else if #[cfg(any(
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd",
        target_vendor = "apple"
    ))] {
        /// The poller used on this target: kqueue.
        pub type DefaultPoller = gaio_kqueue::KqueuePoller;
    } else {
        /// The poller used on this target: poll(2), the portable fallback.
        pub type DefaultPoller = gaio_poll::PollPoller;
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use gaio_epoll::EpollPoller;
#[cfg(any(
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_vendor = "apple"
))]
pub use gaio_kqueue::KqueuePoller;

/// The watcher for this target's poller. `C` is the context type every
/// request carries, `B` the buffer type (`Vec<u8>` unless chosen).
pub type Watcher<C = (), B = Vec<u8>> = gaio_core::Watcher<DefaultPoller, C, B>;

/// A handle that submits to a [`Watcher`] from other threads.
pub type Submitter<C = (), B = Vec<u8>> = gaio_core::Submitter<DefaultPoller, C, B>;

/// Configures a [`Watcher`]: `Builder::new().mode(Mode::Background).build()`.
pub type Builder = gaio_core::Builder<DefaultPoller>;

/// The result of a completion's operation, re-exported for convenience.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The README's examples, compiled as documentation tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
