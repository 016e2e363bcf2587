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
/// Each method is one system call. On a watched descriptor that is not a
/// socket (a pipe), each fails with `ENOTSOCK`.
///
/// # Examples
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
    /// peer that never bound a name).
    ///
    /// # Errors
    ///
    /// The system's error: `ENOTCONN` on a socket that is not connected (a
    /// listener, an unconnected datagram socket). An address of another
    /// family than IPv4, IPv6 or Unix fails with
    /// [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     println!("client {}", socket.peer_addr()?);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "getpeername")]
    pub fn peer_addr(&self) -> io::Result<PeerAddr> {
        match rustix::net::getpeername(self.fd)? {
            Some(addr) => named(addr),
            None => Ok(PeerAddr::Unix(UnixAddr::unnamed())),
        }
    }

    /// The address this end is bound to: for a listener bound to port 0,
    /// the port the system chose.
    ///
    /// # Errors
    ///
    /// The system's error; an address of another family than IPv4, IPv6
    /// or Unix fails with
    /// [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     println!("accepted on {}", socket.local_addr()?);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "getsockname")]
    pub fn local_addr(&self) -> io::Result<PeerAddr> {
        named(rustix::net::getsockname(self.fd)?)
    }

    /// Turns Nagle's algorithm off (`true`) or on: `TCP_NODELAY`.
    ///
    /// # Errors
    ///
    /// The system's error, on a socket that is not TCP among others.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     socket.set_nodelay(false)?; // bulk transfer: let small writes coalesce
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "setsockopt", alias = "TCP_NODELAY")]
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        Ok(sockopt::set_tcp_nodelay(self.fd, on)?)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// The system's error, on a socket that is not TCP among others.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     println!("TCP_NODELAY: {}", socket.nodelay()?);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "getsockopt", alias = "TCP_NODELAY")]
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(sockopt::tcp_nodelay(self.fd)?)
    }

    /// Turns `SO_KEEPALIVE` on or off: the system probes an idle
    /// connection and resets it if the peer is gone.
    ///
    /// # Errors
    ///
    /// The system's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     socket.set_keepalive(true)?; // a long-lived, mostly idle client
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "setsockopt", alias = "SO_KEEPALIVE")]
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        Ok(sockopt::set_socket_keepalive(self.fd, on)?)
    }

    /// Whether `SO_KEEPALIVE` is set.
    ///
    /// # Errors
    ///
    /// The system's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     println!("keep-alive: {}", socket.keepalive()?);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "getsockopt", alias = "SO_KEEPALIVE")]
    pub fn keepalive(&self) -> io::Result<bool> {
        Ok(sockopt::socket_keepalive(self.fd)?)
    }

    /// Asks for a send buffer of `bytes` (`SO_SNDBUF`; Linux doubles the
    /// request and caps it at `net.core.wmem_max`).
    ///
    /// # Errors
    ///
    /// The system's error (some systems refuse a size beyond their limit
    /// instead of capping it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     socket.set_send_buffer_size(4 << 20)?; // a fast, distant peer
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "setsockopt", alias = "SO_SNDBUF")]
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        Ok(sockopt::set_socket_send_buffer_size(self.fd, bytes)?)
    }

    /// The send buffer's size as the system reports it.
    ///
    /// # Errors
    ///
    /// The system's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     println!("send buffer: {} bytes", socket.send_buffer_size()?);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "getsockopt", alias = "SO_SNDBUF")]
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(sockopt::socket_send_buffer_size(self.fd)?)
    }

    /// Asks for a receive buffer of `bytes` (`SO_RCVBUF`; Linux doubles
    /// the request and caps it at `net.core.rmem_max`).
    ///
    /// # Errors
    ///
    /// The system's error (some systems refuse a size beyond their limit
    /// instead of capping it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     socket.set_recv_buffer_size(4 << 20)?;
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "setsockopt", alias = "SO_RCVBUF")]
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        Ok(sockopt::set_socket_recv_buffer_size(self.fd, bytes)?)
    }

    /// The receive buffer's size as the system reports it.
    ///
    /// # Errors
    ///
    /// The system's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Conn, Poller, Watcher};
    /// # fn f<P: Poller>(w: &Watcher<P, (), Vec<u8>>, conn: Conn) -> std::io::Result<()> {
    /// if let Some(socket) = w.socket(conn) {
    ///     println!("receive buffer: {} bytes", socket.recv_buffer_size()?);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "getsockopt", alias = "SO_RCVBUF")]
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
