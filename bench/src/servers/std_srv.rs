//! The std echo server: blocking I/O, a thread per connection.
//!
//! The echo thread (64 KiB stack) reads into a 64 KiB heap buffer and
//! `write_all`s it back. The idle thread has a 16 KiB stack (the pthread
//! minimum) and blocks in `read` into a 1-byte buffer on its stack: the
//! smallest honest "read pending" a thread-per-connection server can have.
//!
//! The UDP echo ([`run_udp`]) is one thread blocking in `recv_from` and
//! `send_to` on one socket, with a 64 KiB heap buffer.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;

use crate::control::note_accepted;

const ECHO_STACK: usize = 64 * 1024;
const IDLE_STACK: usize = 16 * 1024;

/// Serves until the process ends.
pub fn run(listener: TcpListener, idle: bool) -> io::Result<()> {
    let mut spawn_failed = false;
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let stack = if idle { IDLE_STACK } else { ECHO_STACK };
                let spawned = thread::Builder::new().stack_size(stack).spawn(move || {
                    if idle {
                        idle_conn(s)
                    } else {
                        echo_conn(s)
                    }
                });
                match spawned {
                    Ok(_) => note_accepted(),
                    // The connection is closed (the closure owning it is
                    // dropped); said once, not once per connection.
                    Err(e) if !spawn_failed => {
                        spawn_failed = true;
                        eprintln!("bench-server: cannot spawn a connection thread: {e}");
                    }
                    Err(_) => {}
                }
            }
            Err(e) => super::accept_failed(&e),
        }
    }
    Ok(())
}

fn echo_conn(mut s: TcpStream) {
    let mut buf = vec![0u8; super::ECHO_BUF];
    loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn idle_conn(mut s: TcpStream) {
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Echoes every datagram that reaches `socket` back to its sender, on
/// this thread, until the process ends (or a receive fails for a reason
/// other than the transient ones, [`super::transient`]).
pub fn run_udp(socket: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; super::ECHO_BUF];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    eprintln!("bench-server: send_to: {e}");
                }
            }
            Err(e) if super::transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
