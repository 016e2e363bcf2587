//! `SocketRef`: a watched socket's options and addresses, borrowed from the
//! watcher for the length of one call.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::{sockopt, SocketAddrAny};

use crate::{PeerAddr, UnixAddr};

/// A borrowed view of a socket the watcher owns, from
/// [`Watcher::socket`](crate::Watcher::socket): its addresses and the
/// options servers change after the hand-over.
///
/// The borrow keeps the watcher from freeing the socket (every call that
/// could close it takes the watcher mutably), so the descriptor is the
/// connection's own for as long as the `SocketRef` lives. Reading or
/// writing through it behind the watcher's back breaks the order of its
/// requests; options and addresses do not.
///
/// ```no_run
/// use gaio_core::{Conn, Poller, Watcher};
///
/// fn tune<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
///     if let Some(socket) = w.socket(conn) {
///         socket.set_nodelay(true)?;
///         socket.set_keepalive(true)?;
///         println!("{} -> {}", socket.peer_addr()?, socket.local_addr()?);
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy)]
pub struct SocketRef<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> SocketRef<'a> {
    pub(crate) fn new(fd: BorrowedFd<'a>) -> Self {
        SocketRef { fd }
    }

    /// The address of the other end (an unnamed [`UnixAddr`] for a Unix
    /// peer that never bound a name). Fails with `ENOTCONN` on a socket
    /// that is not connected.
    pub fn peer_addr(&self) -> io::Result<PeerAddr> {
        match rustix::net::getpeername(self.fd)? {
            Some(addr) => named(addr),
            None => Ok(PeerAddr::Unix(UnixAddr::unnamed())),
        }
    }

    /// The address this end is bound to.
    pub fn local_addr(&self) -> io::Result<PeerAddr> {
        named(rustix::net::getsockname(self.fd)?)
    }

    /// Turns Nagle's algorithm off (`true`) or on: `TCP_NODELAY`. Fails
    /// with the system's error on a socket that is not TCP.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        Ok(sockopt::set_tcp_nodelay(self.fd, on)?)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(sockopt::tcp_nodelay(self.fd)?)
    }

    /// Turns `SO_KEEPALIVE` on or off: the system probes an idle
    /// connection and resets it if the peer is gone.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        Ok(sockopt::set_socket_keepalive(self.fd, on)?)
    }

    /// Whether `SO_KEEPALIVE` is set.
    pub fn keepalive(&self) -> io::Result<bool> {
        Ok(sockopt::socket_keepalive(self.fd)?)
    }

    /// Asks for a send buffer of `bytes` (`SO_SNDBUF`; Linux doubles the
    /// request and caps it at `net.core.wmem_max`).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        Ok(sockopt::set_socket_send_buffer_size(self.fd, bytes)?)
    }

    /// The send buffer's size as the system reports it.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(sockopt::socket_send_buffer_size(self.fd)?)
    }

    /// Asks for a receive buffer of `bytes` (`SO_RCVBUF`).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        Ok(sockopt::set_socket_recv_buffer_size(self.fd, bytes)?)
    }

    /// The receive buffer's size as the system reports it.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        Ok(sockopt::socket_recv_buffer_size(self.fd)?)
    }
}

fn named(addr: SocketAddrAny) -> io::Result<PeerAddr> {
    PeerAddr::from_rustix(&addr).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the socket's address family is neither IPv4, IPv6 nor Unix",
        )
    })
}

impl AsFd for SocketRef<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
    }
}

impl fmt::Debug for SocketRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketRef").field("fd", &self.fd).finish()
    }
}
