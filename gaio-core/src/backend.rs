//! [`Backend`]: which kernel interface a watcher's I/O goes through, as
//! asked of a [`Builder`](crate::Builder) and as reported by a
//! [`Watcher`](crate::Watcher).

use std::fmt;
use std::io;

/// A kernel interface for the watcher's I/O.
///
/// Ask for one with [`Builder::backend`](crate::Builder::backend); a
/// watcher says which one it runs on with
/// [`Watcher::backend`](crate::Watcher::backend). On Linux, `gaio`'s
/// default poller runs on io_uring where the kernel lets it and on epoll
/// otherwise; every other target has one backend.
///
/// ```
/// use gaio_core::Backend;
///
/// assert_eq!("uring".parse::<Backend>().unwrap(), Backend::Uring);
/// assert_eq!(Backend::Epoll.to_string(), "epoll");
/// assert!("iocp".parse::<Backend>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Let the poller choose (a request only; a watcher reports what was
    /// chosen). On Linux: io_uring if it can be used here, else epoll, and
    /// epoll in background mode (see [`Uring`](Backend::Uring)); the
    /// environment variable `GAIO_BACKEND` (`auto`, `uring`, `epoll`)
    /// overrides this choice, for tests and for operators.
    #[default]
    Auto,
    /// Linux io_uring: a completion ring, the kernel does the I/O. Asked
    /// for in background mode, the ring is shared by the owning thread and
    /// the I/O thread, and the kernel's notices of finished work may
    /// interrupt the owning thread's own blocking system calls (EINTR,
    /// [`ErrorKind::Interrupted`](std::io::ErrorKind::Interrupted)): retry
    /// them, as `read_exact` and `write_all` do.
    Uring,
    /// Linux epoll, edge-triggered.
    Epoll,
    /// kqueue (FreeBSD, macOS, NetBSD, OpenBSD, DragonFly).
    Kqueue,
    /// poll(2), the portable fallback.
    Poll,
    /// A poller outside this crate's list (a test double, say).
    Other,
}

impl Backend {
    /// The name `Display` uses: `auto`, `uring`, `epoll`, `kqueue`,
    /// `poll`, `other`. `FromStr` takes each but `other`, which names no
    /// backend one could ask for.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
            Backend::Kqueue => "kqueue",
            Backend::Poll => "poll",
            Backend::Other => "other",
        }
    }

    /// The error a poller gives when asked for a backend it does not run
    /// on: `Unsupported`, naming both.
    pub fn unsupported(asked: Backend, this: Backend) -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("backend {asked} asked for, but this poller runs on {this}"),
        )
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name `FromStr` does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend(pub String);

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown backend {:?}: expected auto, uring, epoll, kqueue or poll",
            self.0
        )
    }
}

impl std::error::Error for UnknownBackend {}

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        [
            Backend::Auto,
            Backend::Uring,
            Backend::Epoll,
            Backend::Kqueue,
            Backend::Poll,
        ]
        .into_iter()
        .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| UnknownBackend(s.to_owned()))
    }
}
