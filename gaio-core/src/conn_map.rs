//! `ConnMap`: per-connection state without hashing.

use std::fmt;

use crate::Conn;

/// A map from connections to per-connection state `T`, indexed by the
/// handle's descriptor number: no hashing, one array lookup, and a handle
/// that is stale (its connection was freed, and the number perhaps reused
/// by another) finds nothing.
///
/// A server keeps its per-connection state here (a parser, a buffer of
/// pending input, a session) and looks it up from each completion's
/// `conn`. Memory grows with the highest descriptor number held: one
/// `Option<(Conn, T)>` per number, `T` and the 12-byte handle with their
/// padding (16 bytes for `T = ()`, 40 for a `Vec<u8>`).
///
/// ```
/// use gaio_core::ConnMap;
/// # fn handle(conn: gaio_core::Conn) {
/// let mut sessions: ConnMap<Vec<u8>> = ConnMap::new();
/// sessions.insert(conn, Vec::with_capacity(4096));
/// sessions.get_mut(conn).unwrap().extend_from_slice(b"GET / ");
/// assert_eq!(sessions.get(conn).map(Vec::len), Some(6));
/// let pending = sessions.remove(conn).unwrap(); // the connection is done
/// assert!(sessions.get(conn).is_none());
/// # let _ = pending; }
/// ```
pub struct ConnMap<T> {
    slots: Vec<Option<(Conn, T)>>,
    len: usize,
}

impl<T> Default for ConnMap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ConnMap<T> {
    /// An empty map. It allocates nothing until the first
    /// [`insert`](ConnMap::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    ///
    /// let clients: ConnMap<String> = ConnMap::new();
    /// assert!(clients.is_empty());
    /// ```
    pub const fn new() -> Self {
        ConnMap {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// Sets `conn`'s state, returning what a previous `insert` for the very
    /// same handle left. A state left by a stale handle with the same
    /// descriptor number (a connection freed without `remove`) is dropped.
    ///
    /// # Panics
    ///
    /// If `conn` is the handle of no connection: the `conn` of a
    /// notification's or a sleep's completion
    /// ([`Op::Notify`](crate::Op::Notify), [`Op::Sleep`](crate::Op::Sleep)).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{ConnMap, PeerAddr};
    /// # fn f(conn: gaio_core::Conn, peer: PeerAddr) {
    /// let mut peers: ConnMap<PeerAddr> = ConnMap::new();
    /// // In an accept's completion: remember who the client is.
    /// assert!(peers.insert(conn, peer).is_none());
    /// # }
    /// ```
    pub fn insert(&mut self, conn: Conn, value: T) -> Option<T> {
        // Its descriptor number is u32::MAX: a table that far would not fit.
        assert!(
            conn != Conn::NONE,
            "ConnMap::insert: this handle names no connection (a notification's or a sleep's)"
        );
        let idx = conn.fd() as usize;
        if idx >= self.slots.len() {
            self.slots.resize_with(idx + 1, || None);
        }
        match self.slots[idx].replace((conn, value)) {
            Some((old, v)) if old == conn => Some(v),
            Some(_) => None,
            None => {
                self.len += 1;
                None
            }
        }
    }

    /// `conn`'s state, if it has one and the handle is not stale.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    /// # fn f(conn: gaio_core::Conn) {
    /// let mut names = ConnMap::new();
    /// names.insert(conn, "alice");
    /// assert_eq!(names.get(conn), Some(&"alice"));
    /// # }
    /// ```
    pub fn get(&self, conn: Conn) -> Option<&T> {
        match self.slots.get(conn.fd() as usize) {
            Some(Some((c, v))) if *c == conn => Some(v),
            _ => None,
        }
    }

    /// `conn`'s state, to change, if it has one and the handle is not
    /// stale.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    /// # fn f(conn: gaio_core::Conn, bytes: usize) {
    /// let mut received: ConnMap<usize> = ConnMap::new();
    /// received.insert(conn, 0);
    /// // In each read's completion:
    /// if let Some(total) = received.get_mut(conn) {
    ///     *total += bytes;
    /// }
    /// # }
    /// ```
    pub fn get_mut(&mut self, conn: Conn) -> Option<&mut T> {
        match self.slots.get_mut(conn.fd() as usize) {
            Some(Some((c, v))) if *c == conn => Some(v),
            _ => None,
        }
    }

    /// Takes `conn`'s state out, if it has one and the handle is not stale.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{ConnMap, Submit};
    /// # fn f<S: Submit>(w: &mut S, clients: &mut ConnMap<String>, conn: gaio_core::Conn) -> Result<(), gaio_core::Error> {
    /// // The client is gone: forget it, and close its socket.
    /// if let Some(name) = clients.remove(conn) {
    ///     println!("{name} left");
    /// }
    /// w.free(conn)?;
    /// # Ok(()) }
    /// ```
    pub fn remove(&mut self, conn: Conn) -> Option<T> {
        let slot = self.slots.get_mut(conn.fd() as usize)?;
        match slot {
            Some((c, _)) if *c == conn => {
                self.len -= 1;
                slot.take().map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// True if `conn` has state here.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    /// # fn f(conn: gaio_core::Conn) {
    /// let mut logged_in = ConnMap::new();
    /// assert!(!logged_in.contains(conn));
    /// logged_in.insert(conn, ());
    /// assert!(logged_in.contains(conn));
    /// # }
    /// ```
    pub fn contains(&self, conn: Conn) -> bool {
        self.get(conn).is_some()
    }

    /// How many connections have state here.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    /// # fn f(conn: gaio_core::Conn) {
    /// let mut clients = ConnMap::new();
    /// clients.insert(conn, "alice");
    /// assert_eq!(clients.len(), 1);
    /// clients.remove(conn);
    /// assert_eq!(clients.len(), 0);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no connection has state here.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    ///
    /// let clients: ConnMap<u32> = ConnMap::default();
    /// assert!(clients.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every connection and its state, in descriptor order.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    ///
    /// fn report(received: &ConnMap<usize>) {
    ///     for (conn, bytes) in received.iter() {
    ///         println!("fd {}: {bytes} bytes", conn.fd());
    ///     }
    /// }
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (Conn, &T)> {
        self.slots.iter().flatten().map(|(c, v)| (*c, v))
    }

    /// Every connection and its state, to change, in descriptor order.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::ConnMap;
    ///
    /// fn new_second(requests_this_second: &mut ConnMap<u32>) {
    ///     for (_, count) in requests_this_second.iter_mut() {
    ///         *count = 0;
    ///     }
    /// }
    /// ```
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Conn, &mut T)> {
        self.slots.iter_mut().flatten().map(|(c, v)| (*c, v))
    }

    /// The connections that have state here, in descriptor order (for a
    /// graceful shutdown, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{ConnMap, Submit};
    ///
    /// // Say goodbye: each client reads this line, then end of stream.
    /// fn goodbye<S: Submit<Context = (), Buf = &'static [u8]>>(
    ///     w: &mut S,
    ///     clients: &ConnMap<String>,
    /// ) -> Result<(), gaio_core::Error> {
    ///     for conn in clients.conns() {
    ///         w.write(conn, (), b"server going down\n")?;
    ///         w.shutdown(conn, ())?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn conns(&self) -> impl Iterator<Item = Conn> + '_ {
        self.iter().map(|(c, _)| c)
    }
}

impl<T: fmt::Debug> fmt::Debug for ConnMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::ConnMap;
    use crate::Conn;

    fn conn(fd: u32, gen: u32) -> Conn {
        Conn { fd, gen, owner: 1 }
    }

    /// A notification's handle is refused with a message, not with an
    /// allocation of four billion slots.
    #[test]
    #[should_panic(expected = "names no connection")]
    fn the_handle_of_no_connection_is_refused() {
        ConnMap::new().insert(Conn::NONE, ());
    }

    #[test]
    fn the_handle_of_no_connection_has_no_state() {
        let mut map = ConnMap::new();
        map.insert(conn(3, 1), "three");
        assert_eq!(map.get(Conn::NONE), None);
        assert_eq!(map.remove(Conn::NONE), None);
        assert!(!map.contains(Conn::NONE));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn a_stale_handle_finds_nothing_even_when_its_number_is_reused() {
        let mut map = ConnMap::new();
        let first = conn(7, 1);
        assert_eq!(map.insert(first, "first"), None);
        assert_eq!(map.get(first), Some(&"first"));
        // The connection is freed without `remove`; its number is reused.
        let second = conn(7, 2);
        assert_eq!(map.get(second), None, "a new handle saw the old state");
        assert_eq!(map.insert(second, "second"), None);
        assert_eq!(map.get(first), None, "a stale handle saw the new state");
        assert_eq!(map.remove(first), None);
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove(second), Some("second"));
        assert!(map.is_empty());
    }

    #[test]
    fn insert_get_remove_and_iterate() {
        let mut map = ConnMap::new();
        for fd in [3u32, 9, 5] {
            map.insert(conn(fd, fd * 10), fd);
        }
        assert_eq!(map.insert(conn(9, 90), 99), Some(9), "same handle: replaced");
        *map.get_mut(conn(5, 50)).unwrap() += 1;
        let all: Vec<(u32, u32)> = map.iter().map(|(c, v)| (c.fd(), *v)).collect();
        assert_eq!(all, vec![(3, 3), (5, 6), (9, 99)]);
        assert!(map.contains(conn(3, 30)) && !map.contains(conn(3, 31)));
        assert_eq!(map.conns().count(), 3);
        assert_eq!(map.len(), 3);
    }
}
