//! The system calls of a socket's life besides reading and writing:
//! listening, accepting, connecting, shutting down, and datagrams with
//! their addresses. All through rustix, all non-blocking.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use rustix::io::Errno;
#[cfg(not(target_vendor = "apple"))]
use rustix::net::SocketFlags;
use rustix::net::{
    sockopt, AddressFamily, RecvAncillaryBuffer, RecvFlags, ReturnFlags, Shutdown, SocketType,
};

use crate::error::errno;
use crate::sys::{classify, FdInfo, FdKind, IoOutcome, NO_SIGPIPE};
use crate::{Error, PeerAddr};

/// The backlog asked of `listen`: the kernel caps it at the system's
/// maximum (`net.core.somaxconn` on Linux, `kern.ipc.somaxconn` on the
/// BSDs and macOS), so this asks for the deepest queue the system allows.
const DEEPEST_BACKLOG: i32 = i32::MAX;

/// Binds a TCP listener to `addr` with the system's deepest accept queue
/// (and `SO_REUSEADDR`, as std sets it), ready for
/// [`Submit::watch_listener`](crate::Submit::watch_listener).
///
/// std's `TcpListener::bind` asks for a backlog of 128: when thousands of
/// clients connect at once, the kernel drops the SYNs that do not fit and
/// the clients retry them a second or more later. The deepest queue (4096
/// by default on Linux since 5.4) takes the burst.
///
/// Tries each address `addr` resolves to, in order, and returns the first
/// that binds, or the last error.
///
/// # Errors
///
/// The resolver's error if `addr` does not resolve,
/// [`InvalidInput`](io::ErrorKind::InvalidInput) if it resolves to no
/// address, or else the error of the last address tried: no socket could
/// be made (out of descriptors), or `bind` or `listen` failed
/// ([`AddrInUse`](io::ErrorKind::AddrInUse),
/// [`PermissionDenied`](io::ErrorKind::PermissionDenied) for a privileged
/// port, [`AddrNotAvailable`](io::ErrorKind::AddrNotAvailable) for an
/// address not on this host).
///
/// # Examples
///
/// ```
/// let listener = gaio_core::listen("127.0.0.1:0").unwrap();
/// assert!(listener.local_addr().unwrap().port() != 0);
/// ```
#[doc(alias = "bind", alias = "SOMAXCONN")]
pub fn listen(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for addr in addr.to_socket_addrs()? {
        match listen_on(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    listen_shared(addr, false)
}

/// Binds a TCP listener to `addr` as [`listen`] does, and with
/// `reuse_port`, with the option that lets several listeners share the
/// address and has the kernel spread connections over them:
/// `SO_REUSEPORT` on Linux, `SO_REUSEPORT_LB` on FreeBSD. Elsewhere
/// `SO_REUSEPORT` only lets the sockets share the address (the last one
/// bound takes every connection), so it is refused as
/// [`Unsupported`](io::ErrorKind::Unsupported).
pub(crate) fn listen_shared(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = new_socket(family, SocketType::STREAM, false)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if reuse_port {
        balance_connections(&fd)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, DEEPEST_BACKLOG)?;
    Ok(TcpListener::from(fd))
}

/// Lets listeners share one address, the kernel spreading connections.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn balance_connections(fd: &OwnedFd) -> io::Result<()> {
    sockopt::set_socket_reuseport(fd, true).map_err(Into::into)
}

/// Lets listeners share one address, the kernel spreading connections.
#[cfg(target_os = "freebsd")]
fn balance_connections(fd: &OwnedFd) -> io::Result<()> {
    sockopt::set_socket_reuseport_lb(fd, true).map_err(Into::into)
}

/// No load-balancing listeners here.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn balance_connections(_fd: &OwnedFd) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "listeners sharing a port with the kernel spreading connections (SO_REUSEPORT) are Linux's and FreeBSD's",
    ))
}

/// Binds a Unix stream listener to `path` with the system's deepest accept
/// queue (see [`listen`]).
///
/// # Errors
///
/// No socket could be made (out of descriptors), `path` is too long for a
/// socket address (`ENAMETOOLONG`) or holds a NUL byte, or `bind` or
/// `listen` failed: [`AddrInUse`](io::ErrorKind::AddrInUse) when `path`
/// exists (a socket file left by an earlier run: remove it first), or the
/// error of the directory (missing, not writable).
///
/// # Examples
///
/// ```
/// let path = std::env::temp_dir().join(format!("gaio-doc-{}.sock", std::process::id()));
/// let listener = gaio_core::listen_unix(&path).unwrap();
/// assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.as_path()));
/// std::fs::remove_file(&path).unwrap();
/// ```
#[doc(alias = "bind", alias = "SOMAXCONN")]
pub fn listen_unix(path: impl AsRef<Path>) -> io::Result<UnixListener> {
    let fd = new_socket(AddressFamily::UNIX, SocketType::STREAM, false)?;
    rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(path.as_ref())?)?;
    rustix::net::listen(&fd, DEEPEST_BACKLOG)?;
    Ok(UnixListener::from(fd))
}

/// Checks that `fd` is a listening stream socket and puts it in
/// non-blocking mode.
pub(crate) fn prepare_listener(fd: BorrowedFd<'_>, learn_protocol: bool) -> Result<FdInfo, Error> {
    let info = crate::sys::prepare(fd, learn_protocol)?;
    if info.kind != FdKind::StreamSocket {
        return Err(if info.kind == FdKind::DatagramSocket {
            Error::NotListening
        } else {
            Error::UnsupportedSocket
        });
    }
    // Apple systems declare SO_ACCEPTCONN but do not answer it: there, a
    // socket that is not listening fails its first accept (EINVAL).
    #[cfg(not(target_vendor = "apple"))]
    if !sockopt::socket_acceptconn(fd).map_err(errno)? {
        return Err(Error::NotListening);
    }
    let family = rustix::net::getsockname(fd).map_err(errno)?.address_family();
    Ok(FdInfo {
        tcp: family == AddressFamily::INET || family == AddressFamily::INET6,
        ..info
    })
}

/// A close-on-exec socket, non-blocking if asked: one `socket` call where
/// the system takes the flags with the type, three on Apple systems.
fn new_socket(family: AddressFamily, kind: SocketType, nonblocking: bool) -> io::Result<OwnedFd> {
    #[cfg(not(target_vendor = "apple"))]
    {
        let mut flags = SocketFlags::CLOEXEC;
        if nonblocking {
            flags |= SocketFlags::NONBLOCK;
        }
        Ok(rustix::net::socket_with(family, kind, flags, None)?)
    }
    #[cfg(target_vendor = "apple")]
    {
        let fd = rustix::net::socket(family, kind, None)?;
        apple_flags(fd.as_fd(), nonblocking)?;
        Ok(fd)
    }
}

/// What `SOCK_CLOEXEC` and `SOCK_NONBLOCK` do elsewhere.
#[cfg(target_vendor = "apple")]
fn apple_flags(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    if nonblocking {
        crate::sys::set_nonblocking(fd)?;
    }
    Ok(())
}

/// One `accept4` (non-blocking, close-on-exec; `accept` and two `fcntl`
/// on Apple systems), retried on EINTR; also returns the peer's address.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> Result<(OwnedFd, Option<PeerAddr>), Errno> {
    loop {
        #[cfg(not(target_vendor = "apple"))]
        let r = rustix::net::acceptfrom_with(fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC);
        #[cfg(target_vendor = "apple")]
        let r = rustix::net::acceptfrom(fd).and_then(|(sock, addr)| {
            apple_flags(sock.as_fd(), true).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            Ok((sock, addr))
        });
        match r {
            Ok((sock, addr)) => return Ok((sock, addr.as_ref().and_then(PeerAddr::from_rustix))),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// True where a socket accepted from a listener with `TCP_NODELAY` has it
/// too. Linux makes an accepted socket as a copy of its listener's TCP
/// state (`sk_clone_lock`), `nonagle` included; the accept tests check it
/// (an accepted connection, detached, has `TCP_NODELAY`). Elsewhere it is
/// set on each accepted socket.
pub(crate) const NODELAY_INHERITED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Sets on listener `fd` the options its accepted sockets inherit:
/// socket-level ones everywhere, `TCP_NODELAY` where
/// [`NODELAY_INHERITED`].
pub(crate) fn configure_listener(
    fd: BorrowedFd<'_>,
    tcp: bool,
    options: &crate::AcceptOptions,
) -> io::Result<()> {
    if options.nodelay && tcp && NODELAY_INHERITED {
        sockopt::set_tcp_nodelay(fd, true)?;
    }
    if options.keepalive {
        sockopt::set_socket_keepalive(fd, true)?;
    }
    if let Some(size) = options.send_buffer_size {
        sockopt::set_socket_send_buffer_size(fd, size)?;
    }
    if let Some(size) = options.recv_buffer_size {
        sockopt::set_socket_recv_buffer_size(fd, size)?;
    }
    Ok(())
}

/// What an accepted or dialled socket gets before it is watched:
/// `TCP_NODELAY` on TCP sockets when asked, and `SO_NOSIGPIPE` on Apple
/// systems (which have no `MSG_NOSIGNAL`). Accepted sockets already are
/// non-blocking (`accept4`).
pub(crate) fn configure_stream(fd: BorrowedFd<'_>, tcp: bool, nodelay: bool) -> io::Result<()> {
    if tcp && nodelay {
        sockopt::set_tcp_nodelay(fd, true)?;
    }
    #[cfg(target_vendor = "apple")]
    sockopt::set_socket_nosigpipe(fd, true)?;
    Ok(())
}

/// What starting a connect came to.
#[derive(Debug)]
pub(crate) enum Dialled {
    /// Connected at once (Unix sockets, sometimes loopback TCP).
    Connected,
    /// In progress: writability will tell (`SO_ERROR` says how it ended).
    InProgress,
    /// A Unix listener's queue is full (EAGAIN): try again shortly.
    Retry,
    /// Failed at once: refused (Unix), unreachable, ...
    Failed(io::Error),
    /// Not started: the socket is made, and the engine starts the connect
    /// through its poller (a completion poller connects on its ring).
    NotStarted,
}

impl Dialled {
    /// What [`Poller::connect`](crate::Poller::connect) answered:
    /// connected, in progress, or failed (`WouldBlock` and `Interrupted`:
    /// to be made again).
    pub(crate) fn from_poller(answer: io::Result<bool>) -> Dialled {
        match answer {
            Ok(true) => Dialled::Connected,
            Ok(false) => Dialled::InProgress,
            Err(e) if is_retry(&e) => Dialled::Retry,
            Err(e) => Dialled::Failed(e),
        }
    }

    /// The answer [`Poller::connect`](crate::Poller::connect) gives for
    /// this (see [`from_poller`](Self::from_poller)).
    pub(crate) fn into_answer(self) -> io::Result<bool> {
        match self {
            Dialled::Connected => Ok(true),
            Dialled::InProgress | Dialled::NotStarted => Ok(false),
            Dialled::Retry => Err(Errno::AGAIN.into()),
            Dialled::Failed(e) => Err(e),
        }
    }
}

/// Whether a connect that ended with `e` is to be made again (a Unix
/// listener's full queue; an interrupted attempt) rather than failed.
pub(crate) fn is_retry(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// Creates a non-blocking stream socket for `addr`, configures it, and
/// with `start` starts connecting. Fails only if no socket could be made
/// (EMFILE, ...).
pub(crate) fn dial(addr: &PeerAddr, nodelay: bool, start: bool) -> io::Result<(OwnedFd, Dialled)> {
    let fd = new_socket(addr.family(), SocketType::STREAM, true)?;
    configure_stream(fd.as_fd(), matches!(addr, PeerAddr::Inet(_)), nodelay)?;
    let state = if start {
        connect(fd.as_fd(), addr)
    } else {
        Dialled::NotStarted
    };
    Ok((fd, state))
}

/// One `connect`. EINTR is not retried: the connect goes on in the
/// background, as after EINPROGRESS.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &PeerAddr) -> Dialled {
    let r = match addr {
        PeerAddr::Inet(a) => rustix::net::connect(fd, a),
        PeerAddr::Unix(u) => match u.to_rustix() {
            Ok(u) => rustix::net::connect(fd, &u),
            Err(e) => return Dialled::Failed(e),
        },
    };
    match r {
        Ok(()) => Dialled::Connected,
        // EINTR: the connect goes on in the background; writability tells
        // when it ends, as for EINPROGRESS.
        Err(Errno::INPROGRESS) | Err(Errno::INTR) => Dialled::InProgress,
        Err(Errno::AGAIN) => Dialled::Retry,
        // A connect made again after EAGAIN may find itself done.
        Err(Errno::ISCONN) => Dialled::Connected,
        Err(Errno::ALREADY) => Dialled::InProgress,
        Err(e) => Dialled::Failed(e.into()),
    }
}

/// How a connect in progress ended: `SO_ERROR` after writability.
pub(crate) fn connect_result(fd: BorrowedFd<'_>) -> io::Result<()> {
    match sockopt::socket_error(fd)? {
        Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `shutdown(SHUT_WR)`.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(fd, Shutdown::Write)?)
}

/// What a datagram receive learnt besides the bytes.
#[derive(Debug, Default)]
pub struct Datagram {
    /// The datagram did not fit: the buffer holds its first bytes.
    pub truncated: bool,
    /// The sender, when the socket reports one.
    pub from: Option<PeerAddr>,
}

/// Receives one datagram into `buf`, retrying on EINTR. A 1-byte scratch
/// after `buf` tells truncation on every system: a datagram that fills
/// it did not fit.
pub(crate) fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> (IoOutcome, Datagram) {
    let wanted = buf.len();
    let mut scratch = [0u8; 1];
    loop {
        let mut iov = [IoSliceMut::new(&mut *buf), IoSliceMut::new(&mut scratch)];
        let r = rustix::net::recvmsg(
            fd,
            &mut iov,
            &mut RecvAncillaryBuffer::default(),
            RecvFlags::empty(),
        );
        match r {
            Ok(msg) => {
                let truncated = msg.bytes > wanted || msg.flags.contains(ReturnFlags::TRUNC);
                let from = msg.address.as_ref().and_then(PeerAddr::from_rustix);
                return (
                    IoOutcome::Done(msg.bytes.min(wanted)),
                    Datagram { truncated, from },
                );
            }
            Err(Errno::INTR) => continue,
            Err(e) => {
                return (
                    classify(Err(e)).expect("EINTR is handled above"),
                    Datagram::default(),
                )
            }
        }
    }
}

/// Receives one datagram into uninitialised memory, retrying on EINTR.
/// The caller passes one byte more than it wants: a filled last byte means
/// the datagram did not fit (`Datagram::truncated`), and that byte is not
/// counted in the outcome or the returned slice.
pub(crate) fn recv_from_uninit<'a>(
    fd: BorrowedFd<'_>,
    buf: &'a mut [MaybeUninit<u8>],
) -> (IoOutcome, &'a mut [u8], Datagram) {
    let wanted = buf.len().saturating_sub(1);
    let (got, addr) = loop {
        match rustix::net::recvfrom(fd, &mut *buf, RecvFlags::empty()) {
            Ok(((filled, _), _, addr)) => break (filled.len(), addr),
            Err(Errno::INTR) => continue,
            Err(e) => {
                let outcome = classify(Err(e)).expect("EINTR is handled above");
                return (outcome, &mut [], Datagram::default());
            }
        }
    };
    let n = got.min(wanted);
    let filled = &mut buf[..n];
    // SAFETY: the receive returned `got >= n` bytes: the kernel initialised
    // the first `n` bytes of `buf`, and `MaybeUninit<u8>` has the layout of
    // `u8`.
    let filled = unsafe { &mut *(filled as *mut [MaybeUninit<u8>] as *mut [u8]) };
    let from = addr.as_ref().and_then(PeerAddr::from_rustix);
    (
        IoOutcome::Done(n),
        filled,
        Datagram {
            truncated: got > wanted,
            from,
        },
    )
}

/// Sends `buf` as one datagram to `addr`, retrying on EINTR.
pub(crate) fn send_to(fd: BorrowedFd<'_>, buf: &[u8], addr: &PeerAddr) -> IoOutcome {
    loop {
        let r = match addr {
            PeerAddr::Inet(a) => rustix::net::sendto(fd, buf, NO_SIGPIPE, a),
            PeerAddr::Unix(u) => match u.to_rustix() {
                Ok(u) => rustix::net::sendto(fd, buf, NO_SIGPIPE, &u),
                Err(e) => return IoOutcome::Failed(e),
            },
        };
        if let Some(out) = classify(r) {
            return out;
        }
    }
}
