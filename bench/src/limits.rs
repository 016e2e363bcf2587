//! Process limits and the loopback listener every server uses.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use rustix::net::{AddressFamily, SocketType};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new
/// soft limit.
pub fn raise_nofile() -> u64 {
    let cur = getrlimit(Resource::Nofile);
    if cur.current != cur.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: cur.maximum,
                maximum: cur.maximum,
            },
        );
    }
    nofile_limit()
}

/// The soft `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub fn nofile_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A listener on `127.0.0.1` with a port chosen by the kernel and the
/// deepest accept backlog the kernel allows (`somaxconn`), so bursts of
/// thousands of connects are not dropped.
pub fn loopback_listener() -> io::Result<TcpListener> {
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    rustix::net::listen(&fd, 65535)?;
    Ok(TcpListener::from(fd))
}
