//! Socket addresses: where a connection goes ([`Submit::connect`]), whom an
//! accepted connection or a datagram came from, where a datagram goes.
//!
//! [`Submit::connect`]: crate::Submit::connect

use std::ffi::OsStr;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrAny, SocketAddrUnix};

/// The address of a socket: an IP address and port, or a Unix socket
/// address.
///
/// IP addresses are held inline. A named Unix address holds its path in a
/// small box, so receiving from a named Unix datagram peer allocates once
/// per datagram; unnamed Unix peers (what accepted Unix stream connections
/// almost always have) allocate nothing.
///
/// ```
/// use gaio_core::PeerAddr;
/// let a: PeerAddr = "127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap().into();
/// assert_eq!(a.as_inet().unwrap().port(), 80);
/// let u = PeerAddr::unix_path("/run/app.sock");
/// assert_eq!(u.as_unix().unwrap().as_path().unwrap().to_str(), Some("/run/app.sock"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix socket address.
    Unix(UnixAddr),
}

/// A Unix socket address: a path, an abstract name (Linux), or unnamed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnixAddr(UnixName);

#[derive(Clone, PartialEq, Eq, Hash)]
enum UnixName {
    Unnamed,
    Path(Box<Path>),
    Abstract(Box<[u8]>),
}

impl UnixAddr {
    /// The address of a socket bound to no name.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::UnixAddr;
    ///
    /// assert!(UnixAddr::unnamed().is_unnamed());
    /// ```
    pub fn unnamed() -> Self {
        UnixAddr(UnixName::Unnamed)
    }

    /// The address of a socket bound to `path`. Nothing is checked here:
    /// a path too long for a socket address fails when it is used.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use gaio_core::UnixAddr;
    ///
    /// let addr = UnixAddr::from_path("/run/app.sock");
    /// assert_eq!(addr.as_path(), Some(Path::new("/run/app.sock")));
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Self {
        UnixAddr(UnixName::Path(path.as_ref().into()))
    }

    /// An address in Linux's abstract namespace (`name` without the
    /// leading NUL byte). Other systems have no abstract namespace: a
    /// connect or send to such an address fails there.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::UnixAddr;
    ///
    /// let addr = UnixAddr::from_abstract_name(b"app");
    /// assert_eq!(addr.as_abstract_name(), Some(&b"app"[..]));
    /// assert!(addr.as_path().is_none());
    /// ```
    pub fn from_abstract_name(name: &[u8]) -> Self {
        UnixAddr(UnixName::Abstract(name.into()))
    }

    /// The path, for an address bound to one.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::UnixAddr;
    ///
    /// assert!(UnixAddr::from_path("/tmp/s").as_path().is_some());
    /// assert!(UnixAddr::unnamed().as_path().is_none());
    /// ```
    pub fn as_path(&self) -> Option<&Path> {
        match &self.0 {
            UnixName::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The abstract name, for an address in Linux's abstract namespace.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::UnixAddr;
    ///
    /// assert_eq!(UnixAddr::from_abstract_name(b"app").as_abstract_name(), Some(&b"app"[..]));
    /// assert!(UnixAddr::from_path("/tmp/s").as_abstract_name().is_none());
    /// ```
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        match &self.0 {
            UnixName::Abstract(n) => Some(n),
            _ => None,
        }
    }

    /// True for an address bound to no name: what an accepted Unix stream
    /// connection's peer almost always has.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::UnixAddr;
    ///
    /// assert!(UnixAddr::unnamed().is_unnamed());
    /// assert!(!UnixAddr::from_path("/tmp/s").is_unnamed());
    /// ```
    pub fn is_unnamed(&self) -> bool {
        matches!(self.0, UnixName::Unnamed)
    }

    /// The rustix form, for system calls (connect, send-to). An unnamed
    /// address names no socket to reach.
    pub(crate) fn to_rustix(&self) -> std::io::Result<SocketAddrUnix> {
        Ok(match &self.0 {
            UnixName::Unnamed => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "an unnamed Unix address names no socket",
                ))
            }
            UnixName::Path(p) => SocketAddrUnix::new(&**p)?,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            UnixName::Abstract(n) => SocketAddrUnix::new_abstract_name(n)?,
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            UnixName::Abstract(_) => return Err(std::io::ErrorKind::Unsupported.into()),
        })
    }

    /// The Unix address a system call returned, read from its bytes.
    /// (rustix's conversion to `SocketAddrUnix` panics, indexing past
    /// `sun_path`, on the address of a socket bound to a path that fills
    /// `sun_path`: 108 bytes on Linux, reported with the NUL the kernel
    /// adds after it, one byte longer than `sockaddr_un`.)
    fn from_any(addr: &SocketAddrAny) -> Self {
        let len = addr.addr_len() as usize;
        // SAFETY: a `SocketAddrAny` holds an address of `addr_len()`
        // initialised bytes at `as_ptr()`, within its storage (the
        // invariant `SocketAddrAny::new` and `read` ask of their callers).
        let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), len) };
        let name = bytes.get(SUN_PATH_OFFSET..).unwrap_or(&[]);
        match name.split_first() {
            None => UnixAddr::unnamed(),
            // An unnamed peer's address may come back as an empty abstract
            // name (a lone NUL): it names nothing.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Some((0, abstract_name)) if !abstract_name.is_empty() => {
                UnixAddr::from_abstract_name(abstract_name)
            }
            Some((0, _)) => UnixAddr::unnamed(),
            Some(_) => {
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                UnixAddr::from_path(OsStr::from_bytes(&name[..end]))
            }
        }
    }
}

/// Where `sun_path` starts in a `sockaddr_un`: after a 16-bit family on
/// Linux and the other systems with a 16-bit `sa_family_t`, after the
/// 8-bit length and 8-bit family of the BSDs and Apple systems.
const SUN_PATH_OFFSET: usize = 2;

impl fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            UnixName::Unnamed => f.write_str("(unnamed)"),
            UnixName::Path(p) => write!(f, "{p:?}"),
            UnixName::Abstract(n) => write!(f, "@{:?}", String::from_utf8_lossy(n)),
        }
    }
}

impl PeerAddr {
    /// The Unix address bound to `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::PeerAddr;
    ///
    /// let app = PeerAddr::unix_path("/run/app.sock");
    /// assert_eq!(app.to_string(), r#"unix:"/run/app.sock""#);
    /// ```
    pub fn unix_path(path: impl AsRef<Path>) -> Self {
        PeerAddr::Unix(UnixAddr::from_path(path))
    }

    /// The IP address and port, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use gaio_core::PeerAddr;
    ///
    /// let peer = PeerAddr::from("10.0.0.7:51234".parse::<SocketAddr>().unwrap());
    /// assert_eq!(peer.as_inet().map(|a| a.port()), Some(51234));
    /// assert!(PeerAddr::unix_path("/tmp/s").as_inet().is_none());
    /// ```
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Inet(a) => Some(*a),
            PeerAddr::Unix(_) => None,
        }
    }

    /// The Unix address, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::PeerAddr;
    ///
    /// let app = PeerAddr::unix_path("/run/app.sock");
    /// assert!(app.as_unix().is_some_and(|u| !u.is_unnamed()));
    /// ```
    pub fn as_unix(&self) -> Option<&UnixAddr> {
        match self {
            PeerAddr::Unix(a) => Some(a),
            PeerAddr::Inet(_) => None,
        }
    }

    /// The address family a socket for this address needs.
    pub(crate) fn family(&self) -> AddressFamily {
        match self {
            PeerAddr::Inet(SocketAddr::V4(_)) => AddressFamily::INET,
            PeerAddr::Inet(SocketAddr::V6(_)) => AddressFamily::INET6,
            PeerAddr::Unix(_) => AddressFamily::UNIX,
        }
    }

    /// The address a system call returned, if it is of a kind this type
    /// holds (IP or Unix).
    pub(crate) fn from_rustix(addr: &SocketAddrAny) -> Option<Self> {
        let family = addr.address_family();
        if family == AddressFamily::UNIX {
            Some(PeerAddr::Unix(UnixAddr::from_any(addr)))
        } else {
            SocketAddr::try_from(addr.clone()).ok().map(PeerAddr::Inet)
        }
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Inet(a) => write!(f, "{a}"),
            PeerAddr::Unix(u) => write!(f, "unix:{u:?}"),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Inet(a)
    }
}

impl From<SocketAddrV4> for PeerAddr {
    fn from(a: SocketAddrV4) -> Self {
        PeerAddr::Inet(a.into())
    }
}

impl From<SocketAddrV6> for PeerAddr {
    fn from(a: SocketAddrV6) -> Self {
        PeerAddr::Inet(a.into())
    }
}

impl From<UnixAddr> for PeerAddr {
    fn from(a: UnixAddr) -> Self {
        PeerAddr::Unix(a)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn sun_path_starts_where_the_system_says() {
        assert_eq!(
            super::SUN_PATH_OFFSET,
            std::mem::offset_of!(libc::sockaddr_un, sun_path)
        );
    }
}
