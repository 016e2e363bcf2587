//! gaio: proactor-pattern networking for servers with very many connections.
//!
//! Hand a connected socket to a [`Watcher`], submit reads and writes on it,
//! and collect finished requests in batches from [`Watcher::wait_io`]. The
//! watcher does the I/O itself: on Linux on an io_uring ring where the
//! kernel lets this process use one, else on edge-triggered epoll; on
//! kqueue on the BSDs and Apple systems. There is no task or thread per
//! connection and no buffer per idle connection.
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
//! # Backends and cfgs
//!
//! The poller type, [`DefaultPoller`], is chosen at compile time:
//! `LinuxPoller` on Linux, epoll on Android, kqueue on FreeBSD, NetBSD,
//! OpenBSD, DragonFly and the Apple systems (the `gaio_kqueue` cfg, which
//! gaio-kqueue's build script sets: the one list of those targets), poll(2)
//! on other unixes. On Linux the backend is then chosen at run time, per
//! watcher: [`Backend::Auto`] (the default) takes io_uring for an inline
//! watcher where the kernel has everything the engine uses and lets this
//! process use it (no seccomp filter or sysctl forbidding it, enough
//! locked memory), else epoll, and epoll for a background one; the
//! `GAIO_BACKEND` environment variable (`uring` or `epoll`) overrides
//! that, and `Builder::backend` names one.
//!
//! To run on the portable poll(2) poller everywhere, build with the
//! `gaio_force_poll` cfg, in a target directory of its own so the two
//! builds do not keep invalidating each other's cache:
//!
//! ```sh
//! RUSTFLAGS="--cfg gaio_force_poll" cargo test -p gaio --target-dir target/force-poll
//! ```
//!
//! It is a cfg, not a cargo feature, so that no crate in a dependency graph
//! can switch the backend for everyone: only whoever builds decides.
//! `cargo xtask test` runs the `gaio` suite a second time this way. The
//! native poller stays exported by name (`EpollPoller`, `KqueuePoller`).
//!
//! # Features
//!
//! * `tracing` (off by default): the engine's diagnostics (a hand-over the
//!   poller refused to re-register, running out of descriptors while
//!   accepting, a panic on the engine thread, shutting down) as
//!   [`tracing`](https://docs.rs/tracing) events. Off, they compile to
//!   nothing.
#![cfg(unix)]
#![deny(missing_debug_implementations)]

pub use gaio_core::{
    listen, listen_unix, AcceptOptions, Backend, BufPool, Buffer, Bytes, BytesMut, Completion, Conn, ConnMap,
    Datagram, Error, Event, Interest, InvalidSetting, IoBuf, IoBufAppend, IoBufMut, Listener, Mode, Op,
    PeerAddr, Poller, PoolBuf, Rejected, Request, SocketRef, Spread, Submit, SubmitResult, Timer, UnixAddr,
    DEFAULT_MAX_EVENTS, DEFAULT_SWAP_LIMIT, DEFAULT_SWAP_SIZE, MAX_CORES, MAX_EVENTS_PER_WAIT,
    MAX_SWAP_LIMIT, MAX_SWAP_SIZE, MIN_SWAP_LIMIT,
};

pub use gaio_poll::PollPoller;

cfg_if::cfg_if! {
    if #[cfg(gaio_force_poll)] {
        /// The poller used by this build: poll(2), forced by the
        /// `gaio_force_poll` cfg.
        pub type DefaultPoller = gaio_poll::PollPoller;
    } else if #[cfg(target_os = "linux")] {
        /// The poller used on this target: io_uring where it can be used,
        /// else epoll (see [`LinuxPoller`]).
        pub type DefaultPoller = LinuxPoller;
    } else if #[cfg(target_os = "android")] {
        /// The poller used on this target: epoll.
        pub type DefaultPoller = gaio_epoll::EpollPoller;
    } else if #[cfg(gaio_kqueue)] {
        /// The poller used on this target: kqueue.
        pub type DefaultPoller = gaio_kqueue::KqueuePoller;
    } else {
        /// The poller used on this target: poll(2), the portable fallback.
        pub type DefaultPoller = gaio_poll::PollPoller;
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use gaio_epoll::EpollPoller;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(gaio_kqueue)]
pub use gaio_kqueue::KqueuePoller;
#[cfg(target_os = "linux")]
pub use gaio_uring::UringPoller;
#[cfg(target_os = "linux")]
pub use linux::{LinuxEvents, LinuxPoller, BACKEND_VAR};

/// The watcher for this target's poller. `C` is the context type every
/// request carries, `B` the buffer type (`Vec<u8>` unless chosen).
pub type Watcher<C = (), B = Vec<u8>> = gaio_core::Watcher<DefaultPoller, C, B>;

/// A handle that submits to a [`Watcher`] from other threads.
pub type Submitter<C = (), B = Vec<u8>> = gaio_core::Submitter<DefaultPoller, C, B>;

/// Configures a [`Watcher`]: `Builder::new().mode(Mode::Background).build()`.
pub type Builder = gaio_core::Builder<DefaultPoller>;

/// Watchers, one per core, each on a thread of its own pinned to its
/// core, running your per-thread code; `R` is what that code returns.
///
/// ```no_run
/// use gaio::{Core, CoresBuilder, Op, Spread, Submit};
///
/// fn main() -> gaio::Result<()> {
///     let cores = CoresBuilder::new()
///         .listen("127.0.0.1:7000", Spread::LeastLoaded)
///         .start(|core: Core| -> gaio::Result<()> {
///             let mut w = core.watcher;
///             if let Some(listener) = core.listener {
///                 w.accept_multishot(listener, ())?;
///             }
///             let mut batch = Vec::new();
///             while w.next_batch(&mut batch)? {
///                 for c in batch.drain(..) {
///                     match (c.op, &c.error) {
///                         (_, Some(_)) => w.free(c.conn)?,
///                         (Op::Read, None) => w.write(c.conn, (), c.data().to_vec())?,
///                         (_, None) => w.read_swap(c.conn, ())?,
///                     }
///                 }
///             }
///             Ok(())
///         })?;
///     println!("echo on {} cores at {}", cores.len(), cores.local_addr().unwrap());
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     for served in cores.stop()? {
///         served?;
///     }
///     Ok(())
/// }
/// ```
pub type Cores<C = (), B = Vec<u8>, R = Result<()>> = gaio_core::Cores<DefaultPoller, C, B, R>;

/// What each thread of [`Cores`] gets: its [`Watcher`], its index, its
/// listener, and a [`Submitter`] of every core.
pub type Core<C = (), B = Vec<u8>> = gaio_core::Core<DefaultPoller, C, B>;

/// Configures and starts [`Cores`]:
/// `CoresBuilder::new().threads(4).listen(addr, Spread::LeastLoaded).start(run)`.
pub type CoresBuilder = gaio_core::CoresBuilder<DefaultPoller>;

/// `std::result::Result` with [`Error`] as its default error type: what
/// the watcher's own calls (`watch`, `free`, `wait_io`, ...) return.
/// Submissions return [`SubmitResult`] instead,
/// which hands a refused request back.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The README's examples, compiled as documentation tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
