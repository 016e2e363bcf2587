//! The loopback listener every server uses. (The descriptor limit they
//! raise first is `gaio_testkit::nofile`.)

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use rustix::net::{AddressFamily, SocketType};

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
