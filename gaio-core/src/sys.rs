//! The few system calls the engine makes on a connection, through rustix.
//!
//! Stream sockets are read with `recv` and written with `send` (one
//! buffer) or `sendmsg` (several), always with `MSG_NOSIGNAL`, so a peer
//! that has gone away yields `EPIPE` instead of raising SIGPIPE. The
//! socket calls skip the file layer that `read`/`write` go through, and
//! `send` skips copying a message header and an iovec array in: the
//! cheapest calls the kernel has for one buffer. Apple systems have no
//! `MSG_NOSIGNAL`; there `SO_NOSIGPIPE` is set on each stream socket at
//! hand-over instead. Other pollable descriptors (pipes, ttys) are read and
//! written with `read`/`writev`; for those the kernel has no per-call flag,
//! so a write to a pipe without a reader raises SIGPIPE unless the process
//! ignores it (Rust binaries do by default).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::io::Errno;
use rustix::net::{sockopt, RecvFlags, SendAncillaryBuffer, SendFlags, SocketType};

use crate::Error;

/// What kind of descriptor a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A `SOCK_STREAM` socket: read with `recv`, written with `send` or
    /// `sendmsg`, with `MSG_NOSIGNAL`.
    StreamSocket,
    /// A `SOCK_DGRAM` socket (UDP, Unix datagram): one datagram per read
    /// (see [`Poller::recv_from`](crate::Poller::recv_from)) and per write
    /// (`send`, never gathered).
    DatagramSocket,
    /// Anything else the poller accepts (pipe, tty, ...).
    Other,
}

/// What the engine learns about a descriptor at hand-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FdInfo {
    pub(crate) kind: FdKind,
    /// A TCP socket with no upper-layer protocol (such as kernel TLS) on
    /// its receive path. Only for these does the engine take a short read
    /// as proof that the receive queue is empty (see `engine::attempt`):
    /// Linux's `tcp_recvmsg` returns fewer bytes than asked only when the
    /// queue ran dry or at the urgent mark, which epoll announces with
    /// `EPOLLPRI`. Other stream sockets stop short with data left: AF_UNIX
    /// after a message that carried descriptors, at a change of
    /// credentials, at out-of-band data; SCTP after each message. One case
    /// cannot be seen from the socket: a TCP socket that a BPF program
    /// puts in a sockmap gets a replaced receive path; deployments that do
    /// that to a server's sockets (some service meshes) should know that
    /// this saving assumes the plain one.
    pub(crate) plain_tcp: bool,
    /// An IPv4 or IPv6 stream socket: `TCP_NODELAY` applies. Learnt for
    /// listeners and dialled sockets, where it is read.
    pub(crate) tcp: bool,
}

/// Puts `fd` in non-blocking mode and tells what kind it is. Refuses
/// sockets that are neither stream nor datagram sockets. With
/// `learn_protocol`, also finds
/// out whether a stream socket is plain TCP (two more system calls, made
/// only where the answer matters: see [`FdInfo::plain_tcp`]).
pub(crate) fn prepare(fd: BorrowedFd<'_>, learn_protocol: bool) -> Result<FdInfo, Error> {
    let kind = match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {
            #[cfg(target_vendor = "apple")]
            sockopt::set_socket_nosigpipe(fd, true).map_err(crate::error::errno)?;
            FdKind::StreamSocket
        }
        Ok(SocketType::DGRAM) => FdKind::DatagramSocket,
        Ok(_) => return Err(Error::UnsupportedSocket),
        Err(Errno::NOTSOCK) => FdKind::Other,
        Err(e) => return Err(Error::Io(e.into())),
    };
    let plain_tcp = learn_protocol && kind == FdKind::StreamSocket && is_plain_tcp(fd);
    set_nonblocking(fd).map_err(crate::error::errno)?;
    Ok(FdInfo {
        kind,
        plain_tcp,
        tcp: false,
    })
}

/// True if stream socket `fd` is TCP with no upper-layer protocol. Any
/// doubt (an error from either query) answers false, which only costs the
/// engine one more `recv` per drained read.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_plain_tcp(fd: BorrowedFd<'_>) -> bool {
    use rustix::net::ipproto;
    if !matches!(sockopt::socket_protocol(fd), Ok(Some(p)) if p == ipproto::TCP) {
        return false;
    }
    let mut name = [0u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: `fd` is a valid open descriptor for the duration of the
    // call (borrowed), `name` is a writable buffer of `len` bytes, and
    // `len` points to its size, as getsockopt(2) requires; the kernel
    // writes at most `len` bytes and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::IPPROTO_TCP,
            libc::TCP_ULP,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        // Kernels before 4.13 have no upper-layer protocols at all.
        return io::Error::last_os_error().raw_os_error() == Some(libc::ENOPROTOOPT);
    }
    // No upper-layer protocol: an empty name.
    len == 0 || name[0] == 0
}

/// Only Linux's receive path has been argued through (see
/// [`FdInfo::plain_tcp`]); elsewhere no socket counts as plain TCP.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_plain_tcp(_fd: BorrowedFd<'_>) -> bool {
    false
}

/// `ioctl(FIONBIO)`: one system call.
#[cfg(not(miri))]
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true)
}

/// Miri has no `ioctl`; `fcntl` does the same in two calls.
#[cfg(miri)]
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    fcntl_setfl(fd, fcntl_getfl(fd)? | OFlags::NONBLOCK)
}

/// Outcome of one non-blocking I/O attempt.
#[derive(Debug)]
pub enum IoOutcome {
    /// Moved this many bytes (0 on a read: end of stream).
    Done(usize),
    /// Would block: wait for the next readiness edge.
    WouldBlock,
    /// The kernel is short of buffers (ENOBUFS/ENOMEM): retry soon, even
    /// without a new edge, since none may come.
    Starved,
    /// A real error.
    Failed(io::Error),
}

pub(crate) fn classify(r: Result<usize, Errno>) -> Option<IoOutcome> {
    match r {
        Ok(n) => Some(IoOutcome::Done(n)),
        Err(Errno::INTR) => None,
        // EAGAIN and EWOULDBLOCK are the same value on every platform we
        // support.
        Err(Errno::AGAIN) => Some(IoOutcome::WouldBlock),
        // ENOBUFS: the kernel is short of memory for this socket. Under
        // edge triggering (EPOLLET, EV_CLEAR) no edge announces that memory
        // came back, so the engine retries after a short timeout instead.
        Err(Errno::NOBUFS) | Err(Errno::NOMEM) => Some(IoOutcome::Starved),
        Err(e) => Some(IoOutcome::Failed(e.into())),
    }
}

/// Reads into `buf`, retrying on EINTR.
pub(crate) fn read(fd: BorrowedFd<'_>, kind: FdKind, buf: &mut [u8]) -> IoOutcome {
    loop {
        let r = match kind {
            FdKind::StreamSocket | FdKind::DatagramSocket => {
                rustix::net::recv(fd, &mut *buf, RecvFlags::empty()).map(|(n, _)| n)
            }
            FdKind::Other => rustix::io::read(fd, &mut *buf),
        };
        if let Some(out) = classify(r) {
            return out;
        }
    }
}

/// Reads into uninitialised memory, retrying on EINTR. Returns the outcome
/// and the filled (now initialised) prefix of `buf`.
pub(crate) fn read_uninit<'a>(
    fd: BorrowedFd<'_>,
    kind: FdKind,
    buf: &'a mut [MaybeUninit<u8>],
) -> (IoOutcome, &'a mut [u8]) {
    let n = loop {
        let r = match kind {
            FdKind::StreamSocket | FdKind::DatagramSocket => {
                rustix::net::recv(fd, &mut *buf, RecvFlags::empty()).map(|((init, _), _)| init.len())
            }
            FdKind::Other => rustix::io::read(fd, &mut *buf).map(|(init, _)| init.len()),
        };
        match r {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => return (classify(Err(e)).expect("EINTR is handled above"), &mut []),
        }
    };
    let filled = &mut buf[..n];
    // SAFETY: the read returned `n`: the kernel initialised the first `n`
    // bytes of `buf`, and `MaybeUninit<u8>` has the layout of `u8`.
    let filled = unsafe { &mut *(filled as *mut [MaybeUninit<u8>] as *mut [u8]) };
    (IoOutcome::Done(n), filled)
}

/// `send` flags that keep a write to a vanished peer from raising SIGPIPE.
#[cfg(not(target_vendor = "apple"))]
pub(crate) const NO_SIGPIPE: SendFlags = SendFlags::NOSIGNAL;
/// Apple has no `MSG_NOSIGNAL`: `SO_NOSIGPIPE`, set in [`prepare`], does it.
#[cfg(target_vendor = "apple")]
pub(crate) const NO_SIGPIPE: SendFlags = SendFlags::empty();

/// Writes the gathered slices, retrying on EINTR; never raises SIGPIPE on a
/// stream socket.
pub(crate) fn write(fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
    loop {
        let r = match (kind, bufs) {
            (FdKind::StreamSocket | FdKind::DatagramSocket, [one]) => rustix::net::send(fd, one, NO_SIGPIPE),
            // The engine never gathers datagrams: one request, one datagram.
            (FdKind::DatagramSocket, _) => {
                rustix::net::sendmsg(fd.as_fd(), bufs, &mut SendAncillaryBuffer::default(), NO_SIGPIPE)
            }
            (FdKind::StreamSocket, _) => {
                rustix::net::sendmsg(fd.as_fd(), bufs, &mut SendAncillaryBuffer::default(), NO_SIGPIPE)
            }
            (FdKind::Other, _) => rustix::io::writev(fd, bufs),
        };
        if let Some(out) = classify(r) {
            return out;
        }
    }
}
