//! The tokio echo server: a task per connection, on a current-thread or a
//! multi-thread runtime.
//!
//! The echo task reads into a 64 KiB `Vec` through `read_buf` (its spare
//! capacity, never zeroed) and `write_all`s it back. The idle task holds
//! no buffer: it awaits `readable()` and peeks with `try_read` into one
//! byte on the stack only to notice end of stream.
//!
//! The UDP echo ([`run_udp`]) is one task looping `recv_from` and
//! `send_to` on one socket, with a 64 KiB buffer.

use std::io::{self, ErrorKind};
use std::net::{TcpListener as StdListener, UdpSocket as StdUdpSocket};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;

use crate::control::note_accepted;

/// Serves until the process ends.
pub fn run(listener: StdListener, multi_thread: bool, idle: bool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    runtime(multi_thread)?.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    if idle {
                        tokio::spawn(idle_conn(stream));
                    } else {
                        tokio::spawn(echo_conn(stream));
                    }
                    note_accepted();
                }
                Err(e) => super::accept_failed(&e),
            }
        }
    })
}

/// A multi-thread runtime (a worker per CPU) or a current-thread one,
/// with I/O enabled.
fn runtime(multi_thread: bool) -> io::Result<Runtime> {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread().enable_io().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_io().build()
    }
}

/// Echoes every datagram that reaches `socket` back to its sender, until
/// the process ends (or a receive fails for a reason other than the
/// transient ones, [`super::transient`]).
pub fn run_udp(socket: StdUdpSocket, multi_thread: bool) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    runtime(multi_thread)?.block_on(async move {
        let socket = UdpSocket::from_std(socket)?;
        // A task, as every TCP connection is: on the multi-thread runtime
        // a worker runs it, not the thread blocked here.
        tokio::spawn(echo_datagrams(socket))
            .await
            .map_err(io::Error::other)?
    })
}

async fn echo_datagrams(socket: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; super::ECHO_BUF];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from).await {
                    eprintln!("bench-server: send_to: {e}");
                }
            }
            Err(e) if super::transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

async fn echo_conn(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(super::ECHO_BUF);
    loop {
        buf.clear();
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if stream.write_all(&buf).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn idle_conn(stream: TcpStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let mut byte = [0u8; 1];
        match stream.try_read(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
