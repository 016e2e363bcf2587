//! The system calls behind [`Poller`](crate::Poller)'s default write,
//! datagram, connect and shutdown methods, for a poller that overrides
//! them and still needs them at times: io_uring's poller does these on
//! its ring, and uses the system calls for what need not wait (datagrams
//! already queued, a send or a shutdown when the ring is quiet, a Unix
//! connect) or what the ring cannot hold (a datagram larger than its
//! largest buffer).
//!
//! Each is one non-blocking call, retried on `EINTR`, exactly as the
//! trait's default method makes it.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;

use crate::{Datagram, FdKind, IoOutcome, PeerAddr};

/// One non-blocking gathered write: what
/// [`Poller::write`](crate::Poller::write) does by default. `send` (one
/// slice) or `sendmsg` (several) with `MSG_NOSIGNAL` on a socket,
/// `writev` on anything else. The kernel short of buffers (`ENOBUFS`,
/// `ENOMEM`) is [`IoOutcome::Starved`]: try again soon, even without a
/// new readiness event.
///
/// # Examples
///
/// ```
/// use std::io::{IoSlice, Read};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use gaio_core::{syscalls, FdKind, IoOutcome};
///
/// let (ours, mut peer) = UnixStream::pair().unwrap();
/// ours.set_nonblocking(true).unwrap();
/// let parts = [IoSlice::new(b"hello, "), IoSlice::new(b"world")];
/// let outcome = syscalls::write(ours.as_fd(), FdKind::StreamSocket, &parts);
/// assert!(matches!(outcome, IoOutcome::Done(12)));
/// let mut got = [0; 12];
/// peer.read_exact(&mut got).unwrap();
/// assert_eq!(&got, b"hello, world");
/// ```
pub fn write(fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
    crate::sys::write(fd, kind, bufs)
}

/// Receives one datagram into `buf`: what
/// [`Poller::recv_from`](crate::Poller::recv_from) does by default. A
/// datagram longer than `buf` keeps its first bytes and is reported
/// truncated.
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// use std::os::fd::AsFd;
/// use gaio_core::{syscalls, IoOutcome};
///
/// let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
/// rx.set_nonblocking(true).unwrap();
/// let mut buf = [0; 16];
/// assert!(matches!(syscalls::recv_from(rx.as_fd(), &mut buf).0, IoOutcome::WouldBlock));
/// tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
/// let (outcome, datagram) = syscalls::recv_from(rx.as_fd(), &mut buf);
/// assert!(matches!(outcome, IoOutcome::Done(5)));
/// assert_eq!(&buf[..5], b"hello");
/// assert!(!datagram.truncated);
/// ```
pub fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> (IoOutcome, Datagram) {
    crate::net::recv_from(fd, buf)
}

/// Receives one datagram into uninitialised memory: what
/// [`Poller::recv_from_uninit`](crate::Poller::recv_from_uninit) does by
/// default. `buf` has one byte more than the caller keeps: a datagram that
/// reaches it is reported truncated, and that byte is left out of the
/// outcome and of the returned slice.
///
/// # Examples
///
/// ```
/// use std::mem::MaybeUninit;
/// use std::net::UdpSocket;
/// use std::os::fd::AsFd;
/// use gaio_core::{syscalls, IoOutcome};
///
/// let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
/// tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
/// let mut room = [MaybeUninit::uninit(); 4]; // keeps 3 bytes
/// let (outcome, kept, datagram) = syscalls::recv_from_uninit(rx.as_fd(), &mut room);
/// assert!(matches!(outcome, IoOutcome::Done(3)));
/// assert_eq!(kept, b"hel");
/// assert!(datagram.truncated);
/// assert_eq!(datagram.from.and_then(|a| a.as_inet()), Some(tx.local_addr().unwrap()));
/// ```
pub fn recv_from_uninit<'a>(
    fd: BorrowedFd<'_>,
    buf: &'a mut [MaybeUninit<u8>],
) -> (IoOutcome, &'a mut [u8], Datagram) {
    crate::net::recv_from_uninit(fd, buf)
}

/// Sends `buf` as one datagram to `addr`, never raising `SIGPIPE`: what
/// [`Poller::send_to`](crate::Poller::send_to) does by default.
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// use std::os::fd::AsFd;
/// use gaio_core::{syscalls, IoOutcome, PeerAddr};
///
/// let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let to = PeerAddr::from(rx.local_addr().unwrap());
/// assert!(matches!(syscalls::send_to(tx.as_fd(), b"hi", &to), IoOutcome::Done(2)));
/// let mut got = [0; 8];
/// assert_eq!(rx.recv(&mut got).unwrap(), 2);
/// assert_eq!(&got[..2], b"hi");
/// ```
pub fn send_to(fd: BorrowedFd<'_>, buf: &[u8], addr: &PeerAddr) -> IoOutcome {
    crate::net::send_to(fd, buf, addr)
}

/// `addr` as the system's socket address, for a poller that hands
/// addresses to the kernel itself (a `sendmsg` on a ring).
///
/// # Errors
///
/// `InvalidInput` for an unnamed Unix address (it names no socket), or a
/// path too long for a Unix address; `Unsupported` for an abstract Unix
/// name where the system has none.
///
/// # Examples
///
/// ```
/// use gaio_core::{syscalls, PeerAddr, UnixAddr};
///
/// let ip = PeerAddr::from("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(syscalls::socket_addr(&ip).unwrap().addr_len() as usize, 16);
/// let nobody = PeerAddr::Unix(UnixAddr::unnamed());
/// let e = syscalls::socket_addr(&nobody).unwrap_err();
/// assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
/// ```
pub fn socket_addr(addr: &PeerAddr) -> io::Result<rustix::net::SocketAddrAny> {
    use rustix::net::addr::SocketAddrArg as _;
    match addr {
        PeerAddr::Inet(a) => Ok(a.as_any()),
        PeerAddr::Unix(u) => Ok(u.to_rustix()?.as_any()),
    }
}

/// Starts connecting stream socket `fd` to `addr`: what
/// [`Poller::connect`](crate::Poller::connect) does by default. `Ok(true)`:
/// connected at once; `Ok(false)`: in progress (writability tells when it
/// ended, [`connect_result`] how); an error of kind `WouldBlock` (a Unix
/// listener's full queue) is to be tried again.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixListener;
/// use gaio_core::{syscalls, PeerAddr};
///
/// let dir = std::env::temp_dir().join(format!("gaio-doc-connect-{}", std::process::id()));
/// let _ = std::fs::remove_file(&dir);
/// let listener = UnixListener::bind(&dir).unwrap();
/// let socket = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::STREAM, None).unwrap();
/// // A Unix connect never waits: connected at once.
/// assert!(syscalls::connect(socket.as_fd(), &PeerAddr::unix_path(&dir)).unwrap());
/// assert!(syscalls::connect_result(socket.as_fd()).is_ok());
/// drop(listener);
/// std::fs::remove_file(&dir).unwrap();
/// ```
pub fn connect(fd: BorrowedFd<'_>, addr: &PeerAddr) -> io::Result<bool> {
    crate::net::connect(fd, addr).into_answer()
}

/// How a connect in progress on `fd` ended, once the socket is writable
/// (`SO_ERROR`): what [`Poller::connect_result`](crate::Poller::connect_result)
/// does by default. See [`connect`] for an example.
///
/// # Errors
///
/// How the connect failed (`ConnectionRefused`, ...), or what the query
/// itself met.
pub fn connect_result(fd: BorrowedFd<'_>) -> io::Result<()> {
    crate::net::connect_result(fd)
}

/// Shuts down the writing half of stream socket `fd`: what
/// [`Poller::shutdown_write`](crate::Poller::shutdown_write) does by
/// default (`Done(0)`, or the error).
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use gaio_core::{syscalls, IoOutcome};
///
/// let (ours, mut peer) = UnixStream::pair().unwrap();
/// assert!(matches!(syscalls::shutdown_write(ours.as_fd()), IoOutcome::Done(0)));
/// let mut rest = Vec::new();
/// assert_eq!(peer.read_to_end(&mut rest).unwrap(), 0, "end of stream");
/// ```
pub fn shutdown_write(fd: BorrowedFd<'_>) -> IoOutcome {
    match crate::net::shutdown_write(fd) {
        Ok(()) => IoOutcome::Done(0),
        Err(e) => IoOutcome::Failed(e),
    }
}
