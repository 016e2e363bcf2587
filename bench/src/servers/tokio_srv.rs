//! The tokio echo server: a task per connection, on a current-thread or a
//! multi-thread runtime.
//!
//! The echo task reads into a 64 KiB `Vec` through `read_buf` (its spare
//! capacity, never zeroed) and `write_all`s it back. The idle task holds
//! no buffer: it awaits `readable()` and peeks with `try_read` into one
//! byte on the stack only to notice end of stream.

use std::io::{self, ErrorKind};
use std::net::TcpListener as StdListener;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::control::note_accepted;

/// Serves until the process ends.
pub fn run(listener: StdListener, multi_thread: bool, idle: bool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread().enable_io().build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?
    };
    rt.block_on(async move {
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
