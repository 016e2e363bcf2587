//! The connection handle.

use std::fmt;

/// A handle to a connection owned by a watcher.
///
/// It is returned by [`Submit::watch`](crate::Submit::watch) and names the
/// connection in every request and completion. A handle is tagged with a
/// generation: once the connection is freed, requests through an old copy of
/// the handle complete with [`Error::ConnClosed`](crate::Error::ConnClosed),
/// even if the operating system has since reused the file descriptor number
/// for a new connection. It also names the watcher it belongs to: given to
/// another watcher, it is refused with
/// [`Error::ForeignConn`](crate::Error::ForeignConn), never taken for one of
/// that watcher's connections.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn {
    pub(crate) fd: u32,
    pub(crate) gen: u32,
    /// The identity of the watcher that owns the connection.
    pub(crate) owner: u32,
}

impl Conn {
    /// A handle that names no connection (a connect request's, before it
    /// is submitted). No watcher hands it out: watcher identities start at
    /// 1.
    pub(crate) const NONE: Conn = Conn {
        fd: u32::MAX,
        gen: 0,
        owner: 0,
    };

    /// The file descriptor number the connection had when it was handed over.
    ///
    /// Useful for logging and for spreading connections over several
    /// watchers; it is not a way to reach the socket.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f(conn: gaio_core::Conn) {
    /// println!("fd {}: closed", conn.fd());
    /// # }
    /// ```
    pub fn fd(self) -> u32 {
        self.fd
    }

    /// Packs the handle into the 64-bit token registered with the poller.
    pub(crate) fn token(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.fd)
    }

    /// Unpacks a poller token made by [`Conn::token`] by the watcher
    /// `owner`.
    pub(crate) fn from_token(token: u64, owner: u32) -> Conn {
        Conn {
            fd: token as u32,
            gen: (token >> 32) as u32,
            owner,
        }
    }
}

/// Options every connection accepted on a listener gets, set once when the
/// listener is handed over with
/// [`watch_listener_with`](crate::Submit::watch_listener_with).
///
/// ```
/// use gaio_core::AcceptOptions;
/// let opts = AcceptOptions::new().nodelay(false);
/// assert!(!opts.nodelay);
/// assert!(AcceptOptions::default().nodelay);
/// ```
///
/// Socket-level options (`keepalive`, buffer sizes) are set on the
/// listener, once: accepted sockets inherit them, on every system. So is
/// `TCP_NODELAY` where accepted sockets inherit it (Linux); elsewhere it is
/// set on each accepted socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptOptions {
    /// `TCP_NODELAY` on each accepted TCP connection (default: on). Small
    /// responses then leave at once instead of waiting for the peer's
    /// acknowledgement of the previous one (Nagle's algorithm): an echo
    /// server moves about a third more data per CPU second with it.
    pub nodelay: bool,
    /// `SO_KEEPALIVE` on each accepted connection (default: off, the
    /// system's default).
    pub keepalive: bool,
    /// `SO_SNDBUF` for each accepted connection (default: the system's).
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF` for each accepted connection (default: the system's).
    /// Set on the listener before connections arrive, it also sizes the
    /// window the handshake offers.
    pub recv_buffer_size: Option<usize>,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            nodelay: true,
            keepalive: false,
            send_buffer_size: None,
            recv_buffer_size: None,
        }
    }
}

impl AcceptOptions {
    /// The defaults: `TCP_NODELAY` on, everything else as the system
    /// sets it.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::AcceptOptions;
    ///
    /// let options = AcceptOptions::new();
    /// assert!(options.nodelay && !options.keepalive);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `TCP_NODELAY` on accepted TCP connections, or not.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::AcceptOptions;
    ///
    /// // Bulk uploads: let the kernel coalesce small writes.
    /// let options = AcceptOptions::new().nodelay(false);
    /// assert!(!options.nodelay);
    /// ```
    #[doc(alias = "TCP_NODELAY")]
    #[must_use = "AcceptOptions is Copy: a setter returns the changed options and leaves the original as it was"]
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Sets `SO_KEEPALIVE` on accepted connections, or not.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::AcceptOptions;
    ///
    /// let options = AcceptOptions::new().keepalive(true);
    /// assert!(options.keepalive);
    /// ```
    #[doc(alias = "SO_KEEPALIVE")]
    #[must_use = "AcceptOptions is Copy: a setter returns the changed options and leaves the original as it was"]
    pub fn keepalive(mut self, on: bool) -> Self {
        self.keepalive = on;
        self
    }

    /// Sets the send buffer size (`SO_SNDBUF`) of accepted connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::AcceptOptions;
    ///
    /// let options = AcceptOptions::new().send_buffer_size(1 << 20);
    /// assert_eq!(options.send_buffer_size, Some(1 << 20));
    /// ```
    #[doc(alias = "SO_SNDBUF")]
    #[must_use = "AcceptOptions is Copy: a setter returns the changed options and leaves the original as it was"]
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.send_buffer_size = Some(bytes);
        self
    }

    /// Sets the receive buffer size (`SO_RCVBUF`) of accepted connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::AcceptOptions;
    ///
    /// let options = AcceptOptions::new().recv_buffer_size(1 << 20);
    /// assert_eq!(options.recv_buffer_size, Some(1 << 20));
    /// ```
    #[doc(alias = "SO_RCVBUF")]
    #[must_use = "AcceptOptions is Copy: a setter returns the changed options and leaves the original as it was"]
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer_size = Some(bytes);
        self
    }
}

/// A handle to a listening socket owned by a watcher, returned by
/// [`Submit::watch_listener`](crate::Submit::watch_listener); accept
/// connections on it with [`Submit::accept`](crate::Submit::accept).
///
/// A distinct type, so that reading from a listener or accepting on a
/// connection does not compile. [`conn`](Listener::conn) is the handle a
/// failed accept's completion carries, and the one
/// [`Submit::free`](crate::Submit::free) takes to close it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener(pub(crate) Conn);

impl Listener {
    /// The connection handle of the listening socket.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Listener, Submit};
    /// # fn f<S: Submit>(w: &mut S, listener: Listener) -> Result<(), gaio_core::Error> {
    /// // Stop accepting: pending accepts complete with `Error::ConnClosed`.
    /// w.free(listener.conn())?;
    /// # Ok(()) }
    /// ```
    pub fn conn(self) -> Conn {
        self.0
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Listener(fd {}, gen {}, watcher {})",
            self.0.fd, self.0.gen, self.0.owner
        )
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Conn(fd {}, gen {}, watcher {})",
            self.fd, self.gen, self.owner
        )
    }
}
