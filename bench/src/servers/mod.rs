//! The echo servers under test, one module per library.
//!
//! The seven compared side by side ([`Impl::ALL`]) take a bound listener;
//! gaio-cores ([`Impl::GaioCores`], the scaling scenario's server) binds
//! its own, since `gaio::CoresBuilder` does. Each calls
//! [`note_accepted`](crate::control::note_accepted) for every connection it
//! accepts, and serves until the process is killed. Every server sets
//! `TCP_NODELAY` on accepted sockets, so none of them gains or loses from
//! Nagle's algorithm.
//!
//! Each implementation but gaio-cores also has a UDP echo ([`run_udp`],
//! `bench-server --udp`): one socket, every datagram sent back to its
//! sender, by the same library in the same style as its TCP echo.

mod cores_srv;
mod gaio_srv;
mod mio_srv;
mod std_srv;
mod tokio_srv;
#[cfg(target_os = "linux")]
mod uring_floor;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

pub use cores_srv::CoresOptions;

/// The size of the read buffer every echo server uses: gaio's swap slab,
/// mio's one shared buffer, and the per-connection buffer of the tokio and
/// std servers.
pub const ECHO_BUF: usize = 64 * 1024;

/// Receives the gaio UDP echo keeps pending on its socket: a burst of
/// datagrams is taken without waiting for each echo.
pub const UDP_PENDING_RECEIVES: usize = 8;

/// An echo server implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Impl {
    /// gaio on epoll, `Mode::Inline`: the thread that calls `wait_io`
    /// runs the I/O.
    GaioInline,
    /// gaio on io_uring, `Mode::Inline` (Linux, where the kernel lets this
    /// process use a ring).
    GaioUring,
    /// gaio on epoll, `Mode::Background`: a thread of its own runs the
    /// I/O.
    GaioBackground,
    /// A hand-written single-thread edge-triggered mio loop.
    Mio,
    /// tokio, current-thread runtime, a task per connection.
    TokioCt,
    /// tokio, multi-thread runtime (one worker per CPU), a task per connection.
    TokioMt,
    /// std blocking I/O, a thread per connection.
    StdThreads,
    /// gaio, `CoresBuilder`: a watcher per thread, each thread pinned to
    /// a CPU, one listening address spread over them ([`CoresOptions`]).
    /// Not in [`Impl::ALL`]: the scaling scenario runs it at every thread
    /// count; `--servers gaio-cores` adds it to the other scenarios (a
    /// thread per CPU there).
    GaioCores,
    /// The floor on io_uring, the ring's counterpart of [`Impl::Mio`]: a
    /// hand-written loop with a multishot receive per connection kept
    /// armed (Linux). It reads ahead of any request, without
    /// back-pressure, which gaio cannot; it measures how far gaio-uring is
    /// from the least a ring server does. Not in [`Impl::ALL`]:
    /// `--servers uring-floor` adds it.
    UringFloor,
}

impl Impl {
    /// Every implementation, in report order.
    pub const ALL: [Impl; 7] = [
        Impl::GaioInline,
        Impl::GaioUring,
        Impl::GaioBackground,
        Impl::Mio,
        Impl::TokioCt,
        Impl::TokioMt,
        Impl::StdThreads,
    ];

    /// Implementations that exist besides [`Impl::ALL`] and are measured
    /// only when asked for.
    pub const EXTRA: [Impl; 2] = [Impl::GaioCores, Impl::UringFloor];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Impl::GaioInline => "gaio-inline",
            Impl::GaioUring => "gaio-uring",
            Impl::GaioBackground => "gaio-background",
            Impl::Mio => "mio",
            Impl::TokioCt => "tokio-ct",
            Impl::TokioMt => "tokio-mt",
            Impl::StdThreads => "std-threads",
            Impl::GaioCores => "gaio-cores",
            Impl::UringFloor => "uring-floor",
        }
    }

    /// The implementation called `name`.
    pub fn parse(name: &str) -> Option<Impl> {
        Impl::ALL
            .into_iter()
            .chain(Impl::EXTRA)
            .find(|i| i.name() == name)
    }

    /// Whether it has a UDP echo ([`run_udp`]): all but gaio-cores, whose
    /// `CoresBuilder` spreads TCP connections, not datagrams, and the ring
    /// floor, which is for streams.
    pub fn has_udp(self) -> bool {
        !matches!(self, Impl::GaioCores | Impl::UringFloor)
    }

    /// Whether the server can run under valgrind (the callgrind cost
    /// scenario): valgrind has no io_uring system calls, so a server on
    /// a ring cannot.
    pub fn runs_under_valgrind(self) -> bool {
        !matches!(self, Impl::GaioUring | Impl::UringFloor)
    }

    /// What an idle connection holds in the `--idle` variant.
    pub fn idle_description(self) -> &'static str {
        match self {
            Impl::GaioInline | Impl::GaioUring | Impl::GaioBackground | Impl::GaioCores => {
                "a pending read_swap (no buffer)"
            }
            Impl::Mio => "a registration, no buffer",
            Impl::TokioCt | Impl::TokioMt => "a task awaiting readable(), no buffer",
            Impl::StdThreads => "a thread (16 KiB stack) blocked in read() into a 1-byte stack buffer",
            Impl::UringFloor => "a multishot receive armed (no buffer)",
        }
    }
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serves with `imp` on a loopback port of the kernel's choice until the
/// process ends, calling `announce` with the address once it listens.
/// With `idle`, every connection only keeps one read pending without a
/// buffer (gaio and mio: their echo servers already hold no buffer while a
/// connection is idle, so they run unchanged). `cores` configures
/// [`Impl::GaioCores`] only.
pub fn run(
    imp: Impl,
    idle: bool,
    cores: CoresOptions,
    announce: impl FnOnce(SocketAddr) -> io::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    if imp == Impl::GaioCores {
        return cores_srv::run(cores, announce);
    }
    let listener = crate::limits::loopback_listener()?;
    announce(listener.local_addr()?)?;
    match imp {
        Impl::GaioInline => gaio_srv::run(listener, gaio::Mode::Inline, gaio::Backend::Epoll),
        Impl::GaioUring => gaio_srv::run(listener, gaio::Mode::Inline, gaio::Backend::Uring),
        Impl::GaioBackground => gaio_srv::run(listener, gaio::Mode::Background, gaio::Backend::Epoll),
        Impl::Mio => Ok(mio_srv::run(listener)?),
        Impl::TokioCt => Ok(tokio_srv::run(listener, false, idle)?),
        Impl::TokioMt => Ok(tokio_srv::run(listener, true, idle)?),
        Impl::StdThreads => Ok(std_srv::run(listener, idle)?),
        #[cfg(target_os = "linux")]
        Impl::UringFloor => Ok(uring_floor::run(listener)?),
        #[cfg(not(target_os = "linux"))]
        Impl::UringFloor => Err("uring-floor runs on Linux only".into()),
        Impl::GaioCores => unreachable!("served above"),
    }
}

/// Whether [`Impl::UringFloor`] can run in this process: the ring it
/// needs (single issuer, deferred task running, a provided-buffer ring)
/// can be made, and the error saying why not.
pub fn uring_floor_available() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return uring_floor::available();
    #[cfg(not(target_os = "linux"))]
    return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring is Linux only",
    ));
}

/// Serves UDP echo with `imp` on a loopback port of the kernel's choice
/// until the process ends, calling `announce` with the address once the
/// socket is bound.
pub fn run_udp(
    imp: Impl,
    announce: impl FnOnce(SocketAddr) -> io::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    if !imp.has_udp() {
        return Err(format!("{imp} has no UDP echo").into());
    }
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    announce(socket.local_addr()?)?;
    match imp {
        Impl::GaioInline => gaio_srv::run_udp(socket, gaio::Mode::Inline, gaio::Backend::Epoll),
        Impl::GaioUring => gaio_srv::run_udp(socket, gaio::Mode::Inline, gaio::Backend::Uring),
        Impl::GaioBackground => gaio_srv::run_udp(socket, gaio::Mode::Background, gaio::Backend::Epoll),
        Impl::Mio => Ok(mio_srv::run_udp(socket)?),
        Impl::TokioCt => Ok(tokio_srv::run_udp(socket, false)?),
        Impl::TokioMt => Ok(tokio_srv::run_udp(socket, true)?),
        Impl::StdThreads => Ok(std_srv::run_udp(socket)?),
        Impl::GaioCores | Impl::UringFloor => unreachable!("refused above"),
    }
}

/// Whether a UDP receive error leaves the echo going: an interrupted
/// call, or the ICMP port unreachable an earlier reply drew (a sender
/// that has closed its socket), which the kernel reports once.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused
    )
}

/// The name of a spread strategy on the command line and in reports.
pub fn spread_name(spread: gaio::Spread) -> &'static str {
    match spread {
        gaio::Spread::ReusePort => "reuseport",
        gaio::Spread::RoundRobin => "round-robin",
        gaio::Spread::LeastLoaded => "least-loaded",
        _ => "other",
    }
}

/// The spread strategy called `name` ([`spread_name`]).
pub fn parse_spread(name: &str) -> Option<gaio::Spread> {
    [
        gaio::Spread::ReusePort,
        gaio::Spread::RoundRobin,
        gaio::Spread::LeastLoaded,
    ]
    .into_iter()
    .find(|&s| spread_name(s) == name)
}

/// Logs an accept error and pauses a little, so a persistent error (such
/// as running out of descriptors) does not spin.
fn accept_failed(e: &std::io::Error) {
    eprintln!("bench-server: accept: {e}");
    std::thread::sleep(std::time::Duration::from_millis(10));
}
