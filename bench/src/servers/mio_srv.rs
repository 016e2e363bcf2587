//! The mio echo server: a tight single-thread edge-triggered loop.
//!
//! One shared 64 KiB buffer. On any event a connection first flushes its
//! pending output, then reads until `WouldBlock`, writing each chunk back
//! at once. Output is kept per connection only when a write would block;
//! while some is kept, reading stops (back-pressure) until a writable
//! event drains it.
//!
//! The UDP echo ([`run_udp`]) is the same kind of loop on one socket: on
//! each readable edge it receives until `WouldBlock`, sending each
//! datagram back at once; a reply the socket has no room for is dropped,
//! as UDP allows.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener as StdListener, UdpSocket as StdUdpSocket};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use crate::control::note_accepted;

const LISTENER: Token = Token(usize::MAX);
/// The token of the UDP echo's one socket.
const DATAGRAMS: Token = Token(0);

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// Serves until the process ends.
pub fn run(listener: StdListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; super::ECHO_BUF];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, &mut free);
                continue;
            }
            let i = ev.token().0;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !service(conn, &mut buf) {
                if let Some(mut c) = conns[i].take() {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
                free.push(i);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Vec<Option<Conn>>, free: &mut Vec<usize>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let i = free.pop().unwrap_or_else(|| {
                    conns.push(None);
                    conns.len() - 1
                });
                let interest = Interest::READABLE | Interest::WRITABLE;
                if poll.registry().register(&mut stream, Token(i), interest).is_err() {
                    free.push(i);
                    continue;
                }
                conns[i] = Some(Conn {
                    stream,
                    pending: Vec::new(),
                });
                note_accepted();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                super::accept_failed(&e);
                return;
            }
        }
    }
}

/// Flushes, then echoes until `WouldBlock`. False when the connection is
/// finished (end of stream or error).
fn service(c: &mut Conn, buf: &mut [u8]) -> bool {
    if !c.pending.is_empty() {
        match write_some(&mut c.stream, &c.pending) {
            Err(_) => return false,
            Ok(n) if n < c.pending.len() => {
                c.pending.drain(..n);
                return true;
            }
            Ok(_) => c.pending.clear(),
        }
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => match write_some(&mut c.stream, &buf[..n]) {
                Err(_) => return false,
                Ok(k) if k < n => {
                    c.pending.extend_from_slice(&buf[k..n]);
                    return true;
                }
                Ok(_) => {}
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < data.len() {
        match stream.write(&data[off..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

/// Echoes every datagram that reaches `socket` back to its sender, until
/// the process ends (or a receive fails for a reason other than the
/// transient ones, [`super::transient`]).
pub fn run_udp(socket: StdUdpSocket) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let mut socket = UdpSocket::from_std(socket);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, DATAGRAMS, Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; super::ECHO_BUF];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if !events.is_empty() {
            echo_datagrams(&socket, &mut buf)?;
        }
    }
}

/// Receives until the socket is empty, sending each datagram back to its
/// sender; one the socket has no room to send is dropped.
fn echo_datagrams(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match socket.recv_from(buf) {
            Ok((n, from)) => match socket.send_to(&buf[..n], from) {
                Err(e) if e.kind() != ErrorKind::WouldBlock => eprintln!("bench-server: send_to: {e}"),
                _ => {}
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if super::transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
