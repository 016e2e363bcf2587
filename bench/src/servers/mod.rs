//! The six echo servers under test, one module per library.
//!
//! Each takes a bound listener, calls [`note_accepted`](crate::control::note_accepted)
//! for every connection it accepts, and serves until the process is killed.
//! Every server sets `TCP_NODELAY` on accepted sockets, so none of them
//! gains or loses from Nagle's algorithm.

mod gaio_srv;
mod mio_srv;
mod std_srv;
mod tokio_srv;

use std::fmt;
use std::net::TcpListener;

/// The size of the read buffer every echo server uses: gaio's swap slab,
/// mio's one shared buffer, and the per-connection buffer of the tokio and
/// std servers.
pub const ECHO_BUF: usize = 64 * 1024;

/// An echo server implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Impl {
    /// gaio, `Mode::Inline`: the thread that calls `wait_io` runs the I/O.
    GaioInline,
    /// gaio, `Mode::Background`: a thread of its own runs the I/O.
    GaioBackground,
    /// A hand-written single-thread edge-triggered mio loop.
    Mio,
    /// tokio, current-thread runtime, a task per connection.
    TokioCt,
    /// tokio, multi-thread runtime (one worker per CPU), a task per connection.
    TokioMt,
    /// std blocking I/O, a thread per connection.
    StdThreads,
}

impl Impl {
    /// Every implementation, in report order.
    pub const ALL: [Impl; 6] = [
        Impl::GaioInline,
        Impl::GaioBackground,
        Impl::Mio,
        Impl::TokioCt,
        Impl::TokioMt,
        Impl::StdThreads,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Impl::GaioInline => "gaio-inline",
            Impl::GaioBackground => "gaio-background",
            Impl::Mio => "mio",
            Impl::TokioCt => "tokio-ct",
            Impl::TokioMt => "tokio-mt",
            Impl::StdThreads => "std-threads",
        }
    }

    /// The implementation called `name`.
    pub fn parse(name: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == name)
    }

    /// What an idle connection holds in the `--idle` variant.
    pub fn idle_description(self) -> &'static str {
        match self {
            Impl::GaioInline | Impl::GaioBackground => "a pending read_swap (no buffer)",
            Impl::Mio => "a registration, no buffer",
            Impl::TokioCt | Impl::TokioMt => "a task awaiting readable(), no buffer",
            Impl::StdThreads => "a thread (16 KiB stack) blocked in read() into a 1-byte stack buffer",
        }
    }
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serves on `listener` with `imp` until the process ends. With `idle`,
/// every connection only keeps one read pending without a buffer (gaio and
/// mio: their echo servers already hold no buffer while a connection is
/// idle, so they run unchanged).
pub fn run(imp: Impl, idle: bool, listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    match imp {
        Impl::GaioInline => gaio_srv::run(listener, gaio::Mode::Inline),
        Impl::GaioBackground => gaio_srv::run(listener, gaio::Mode::Background),
        Impl::Mio => Ok(mio_srv::run(listener)?),
        Impl::TokioCt => Ok(tokio_srv::run(listener, false, idle)?),
        Impl::TokioMt => Ok(tokio_srv::run(listener, true, idle)?),
        Impl::StdThreads => Ok(std_srv::run(listener, idle)?),
    }
}

/// Logs an accept error and pauses a little, so a persistent error (such
/// as running out of descriptors) does not spin.
fn accept_failed(e: &std::io::Error) {
    eprintln!("bench-server: accept: {e}");
    std::thread::sleep(std::time::Duration::from_millis(10));
}
