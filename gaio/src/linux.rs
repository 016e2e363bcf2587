//! Linux's poller: io_uring where the kernel lets this process use it,
//! epoll otherwise, chosen when the watcher is built.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use gaio_core::{Backend, Datagram, Event, FdKind, Interest, IoOutcome, Mode, PeerAddr, Poller};
use gaio_epoll::EpollPoller;
use gaio_uring::UringPoller;

/// The environment variable that overrides [`Backend::Auto`]'s choice:
/// `auto`, `uring` or `epoll` (any case). Unset or empty, it leaves the
/// choice to `Auto`; any other value makes building a watcher fail with
/// `InvalidInput`, naming the variable.
pub const BACKEND_VAR: &str = "GAIO_BACKEND";

/// The poller `gaio` uses on Linux: an io_uring ring ([`UringPoller`])
/// where one can be used, else epoll ([`EpollPoller`]).
///
/// [`Backend::Auto`] (the default) takes the ring if
/// [`gaio_uring::probe`] finds every opcode and feature the engine needs,
/// and falls back to epoll otherwise: io_uring missing (`ENOSYS`), blocked
/// by seccomp (`EPERM`, as in Docker's default profile), switched off by
/// `kernel.io_uring_disabled`, a kernel older than the engine needs, or a
/// memlock limit too low for the ring. The reason is a `tracing` event
/// (feature `tracing`). The variable [`BACKEND_VAR`] overrides the
/// automatic choice. Asking for [`Backend::Uring`] by name fails instead,
/// with the reason.
///
/// ```
/// use gaio::{Backend, Builder};
///
/// # fn main() -> gaio::Result<()> {
/// let w: gaio::Watcher = Builder::new().backend(Backend::Epoll).build()?;
/// assert_eq!(w.backend(), Backend::Epoll);
/// let auto: gaio::Watcher = gaio::Watcher::new()?;
/// assert!(matches!(auto.backend(), Backend::Uring | Backend::Epoll));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
// One per watcher, inside its shared state: boxing the ring would add a
// pointer chase to every call for no memory saved.
#[allow(clippy::large_enum_variant)]
pub enum LinuxPoller {
    /// On an io_uring ring.
    Uring(UringPoller),
    /// On epoll.
    Epoll(EpollPoller),
}

/// The event buffer: epoll's, made at its first use (the ring needs none).
#[derive(Debug)]
pub struct LinuxEvents {
    capacity: usize,
    epoll: Option<<EpollPoller as Poller>::Events>,
}

/// The backends a watcher may ask for on Linux.
const ON_LINUX: &str = "auto, uring or epoll";

/// What [`Backend::Auto`] stands for here: the environment's choice, if it
/// makes one.
fn automatic() -> io::Result<Backend> {
    backend_named(std::env::var_os(BACKEND_VAR).as_deref())
}

/// The backend [`BACKEND_VAR`]'s value names, `Auto` if it is unset or
/// empty (as `GAIO_BACKEND= program` leaves it).
fn backend_named(value: Option<&std::ffi::OsStr>) -> io::Result<Backend> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{BACKEND_VAR}: {why}"));
    match value.map(|v| v.to_str()) {
        None => Ok(Backend::Auto),
        Some(None) => Err(invalid(format!("{value:?} is not UTF-8"))),
        Some(Some(v)) if v.trim().is_empty() => Ok(Backend::Auto),
        Some(Some(v)) => match v.parse::<Backend>() {
            Ok(b @ (Backend::Auto | Backend::Uring | Backend::Epoll)) => Ok(b),
            _ => Err(invalid(format!(
                "{v:?} is not a backend on Linux: expected {ON_LINUX}"
            ))),
        },
    }
}

macro_rules! each {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            LinuxPoller::Uring($p) => $e,
            LinuxPoller::Epoll($p) => $e,
        }
    };
}

impl Poller for LinuxPoller {
    type Events = LinuxEvents;

    fn new() -> io::Result<Self> {
        Self::open(Backend::Auto, Mode::Inline)
    }

    fn open(backend: Backend, mode: Mode) -> io::Result<Self> {
        let backend = match backend {
            Backend::Auto => automatic()?,
            named => named,
        };
        // Refused, with the probe's reason, where no ring can be used.
        let ring = || UringPoller::open(Backend::Uring, mode);
        match backend {
            Backend::Uring => ring().map(LinuxPoller::Uring),
            Backend::Epoll => EpollPoller::new().map(LinuxPoller::Epoll),
            // Background mode stays on epoll unless the ring is asked for:
            // its two threads would share the ring, and a shared ring
            // flags each of them for the kernel's task work, so that their
            // own blocking calls with timeouts may fail with EINTR.
            Backend::Auto if mode == Mode::Background => EpollPoller::new().map(LinuxPoller::Epoll),
            Backend::Auto => match ring() {
                Ok(ring) => Ok(LinuxPoller::Uring(ring)),
                Err(_why) => {
                    #[cfg(feature = "tracing")]
                    tracing::info!(why = %_why, "gaio runs on epoll");
                    EpollPoller::new().map(LinuxPoller::Epoll)
                }
            },
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("backend {other} is not available on Linux: ask for {ON_LINUX}"),
            )),
        }
    }

    fn backend(&self) -> Backend {
        each!(self, p => p.backend())
    }

    fn level_triggered(&self) -> bool {
        each!(self, p => p.level_triggered())
    }

    fn reports_urgent(&self) -> bool {
        each!(self, p => p.reports_urgent())
    }

    fn completes_io(&self) -> bool {
        each!(self, p => p.completes_io())
    }

    fn limit_swap(&self, bytes: usize) -> io::Result<()> {
        each!(self, p => p.limit_swap(bytes))
    }

    fn swap_read_room(&self) -> usize {
        each!(self, p => p.swap_read_room())
    }

    fn cancel(&self, fd: BorrowedFd<'_>, interest: Interest, keep: bool) -> bool {
        each!(self, p => p.cancel(fd, interest, keep))
    }

    fn hold(&self, held: bool) {
        each!(self, p => p.hold(held));
    }

    fn events(capacity: usize) -> Self::Events {
        LinuxEvents {
            capacity,
            epoll: None,
        }
    }

    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        // SAFETY: the caller's promise (`fd` open until deregistered) is
        // passed on as it is.
        each!(self, p => unsafe { p.register(fd, token) })
    }

    unsafe fn register_for(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        // SAFETY: the caller promises what `register` asks.
        each!(self, p => unsafe { p.register_for(fd, token, interest) })
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        each!(self, p => p.deregister(fd))
    }

    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        // SAFETY: as for `register`.
        each!(self, p => unsafe { p.reregister(fd, token) })
    }

    fn wait(&self, raw: &mut LinuxEvents, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            LinuxPoller::Uring(p) => p.wait(&mut (), out, timeout),
            LinuxPoller::Epoll(p) => {
                let capacity = raw.capacity;
                let events = raw.epoll.get_or_insert_with(|| EpollPoller::events(capacity));
                p.wait(events, out, timeout)
            }
        }
    }

    fn wake(&self) -> io::Result<()> {
        each!(self, p => p.wake())
    }

    fn rearm(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        each!(self, p => p.rearm(fd, token, interest))
    }

    fn read(&self, fd: BorrowedFd<'_>, kind: FdKind, buf: &mut [u8]) -> IoOutcome {
        each!(self, p => p.read(fd, kind, buf))
    }

    fn read_in_flight(&self, fd: BorrowedFd<'_>) -> bool {
        each!(self, p => p.read_in_flight(fd))
    }

    fn usable_here(&self) -> bool {
        each!(self, p => p.usable_here())
    }

    fn read_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        kind: FdKind,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8]) {
        each!(self, p => p.read_uninit(fd, kind, buf))
    }

    fn read_lent(&self, fd: BorrowedFd<'_>) -> Option<(IoOutcome, gaio_core::Bytes)> {
        each!(self, p => p.read_lent(fd))
    }

    fn write(&self, fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
        each!(self, p => p.write(fd, kind, bufs))
    }

    fn recv_from(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> (IoOutcome, Datagram) {
        each!(self, p => p.recv_from(fd, buf))
    }

    fn recv_from_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8], Datagram) {
        each!(self, p => p.recv_from_uninit(fd, buf))
    }

    fn send_to(&self, fd: BorrowedFd<'_>, buf: &[u8], addr: &PeerAddr) -> IoOutcome {
        each!(self, p => p.send_to(fd, buf, addr))
    }

    fn accept(&self, fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<PeerAddr>)> {
        each!(self, p => p.accept(fd))
    }

    fn shutdown_write(&self, fd: BorrowedFd<'_>) -> IoOutcome {
        each!(self, p => p.shutdown_write(fd))
    }

    fn connect(&self, fd: BorrowedFd<'_>, addr: &PeerAddr) -> io::Result<bool> {
        each!(self, p => p.connect(fd, addr))
    }

    fn connect_result(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        each!(self, p => p.connect_result(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_backend_variable_unset_or_empty_leaves_the_choice_to_auto() {
        assert_eq!(backend_named(None).unwrap(), Backend::Auto);
        assert_eq!(backend_named(Some(OsStr::new(""))).unwrap(), Backend::Auto);
        assert_eq!(backend_named(Some(OsStr::new("  "))).unwrap(), Backend::Auto);
        assert_eq!(backend_named(Some(OsStr::new("Epoll"))).unwrap(), Backend::Epoll);
        assert_eq!(backend_named(Some(OsStr::new("uring"))).unwrap(), Backend::Uring);
        let e = backend_named(Some(OsStr::new("iouring"))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().starts_with("GAIO_BACKEND: "), "{e}");
        assert!(e.to_string().contains("iouring"), "{e}");
        // Backends of other systems are names, but not ones this one has.
        for other in ["poll", "kqueue", "other"] {
            let e = backend_named(Some(OsStr::new(other))).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                e.to_string(),
                format!("GAIO_BACKEND: {other:?} is not a backend on Linux: expected auto, uring or epoll")
            );
        }
    }

    /// `LinuxPoller` forwards every method of `Poller`: one left to its
    /// default would run the default on the ring too (a system call where
    /// the ring holds the request, say), and nothing else would tell.
    #[test]
    fn every_poller_method_is_forwarded() {
        let trait_src = include_str!("../../gaio-core/src/poller.rs");
        let body = &trait_src[trait_src.find("pub trait Poller").expect("the trait")..];
        let ours = include_str!("linux.rs");
        let mut methods = 0;
        for line in body.lines() {
            let line = line.trim_start();
            let Some(rest) = line
                .strip_prefix("fn ")
                .or_else(|| line.strip_prefix("unsafe fn "))
            else {
                continue;
            };
            let name = &rest[..rest.find(['(', '<']).expect("a method's name ends")];
            methods += 1;
            assert!(
                ours.contains(&format!("fn {name}(")) || ours.contains(&format!("fn {name}<")),
                "LinuxPoller does not forward Poller::{name}"
            );
        }
        assert!(
            methods >= 25,
            "only {methods} methods found: the trait's layout changed?"
        );
    }
}
