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
    /// The file descriptor number the connection had when it was handed over.
    ///
    /// Useful for logging and for spreading connections over several
    /// watchers; it is not a way to reach the socket.
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

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Conn(fd {}, gen {}, watcher {})",
            self.fd, self.gen, self.owner
        )
    }
}
