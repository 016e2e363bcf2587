//! The gaio echo server: the README's echo loop, in either mode, on the
//! backend asked for.
//!
//! The listener is handed to the watcher, which accepts (with
//! `TCP_NODELAY`, its default) as long as accepts are pending; each new
//! connection gets a swap read (no buffer held while idle); each swap slice
//! read is written straight back without a copy, and the connection reads
//! again once the write is done.
//!
//! The UDP echo ([`run_udp`]) keeps [`UDP_PENDING_RECEIVES`] swap receives
//! pending on its one socket; each datagram is sent back to its sender
//! from the swap slice it arrived in, without a copy, and another receive
//! is submitted at once.

use std::net::{TcpListener, UdpSocket};

use gaio::{Backend, Buffer, Bytes, Completion, Mode, Op, Submit, Watcher};

use super::UDP_PENDING_RECEIVES;
use crate::control::note_accepted;

/// Accepts kept pending on the listener: a burst of connections is taken
/// in one go, several per readiness edge.
const PENDING_ACCEPTS: usize = 16;

/// The watcher both echo loops run on: `mode`, `backend`, swap slices of
/// [`ECHO_BUF`](super::ECHO_BUF) bytes.
fn watcher(mode: Mode, backend: Backend) -> gaio::Result<Watcher<(), Bytes>> {
    gaio::Builder::new()
        .mode(mode)
        .backend(backend)
        .swap_size(super::ECHO_BUF)
        .build()
}

/// Serves until the process ends.
pub fn run(listener: TcpListener, mode: Mode, backend: Backend) -> Result<(), Box<dyn std::error::Error>> {
    let mut w = watcher(mode, backend)?;
    let listener = w.watch_listener(listener)?;
    for _ in 0..PENDING_ACCEPTS {
        w.accept(listener, ())?;
    }
    let mut batch = Vec::with_capacity(1024);
    loop {
        w.wait_io(&mut batch)?;
        for c in batch.drain(..) {
            if c.op == Op::Accept {
                match c.error {
                    None => {
                        note_accepted();
                        w.read_swap(c.conn, ())?;
                    }
                    Some(error) => eprintln!("bench-server: accept failed: {error}"),
                }
                w.accept(listener, ())?;
                continue;
            }
            echo(&mut w, c)?;
        }
    }
}

/// The echo step for a completion other than an accept: a swap read's
/// slice is written straight back, a finished write reads again, and an
/// error (end of stream, reset) frees the connection. Shared with the
/// gaio-cores server, so both run the same loop.
#[inline]
pub(super) fn echo(w: &mut Watcher<(), Bytes>, c: Completion<(), Bytes>) -> gaio::Result<()> {
    match (c.error, c.buffer) {
        (Some(_), _) => w.free(c.conn)?,
        (None, Buffer::Swap(data)) => w.write(c.conn, (), data)?,
        (None, _) => w.read_swap(c.conn, ())?,
    }
    Ok(())
}

/// Echoes every datagram that reaches `socket` back to its sender, until
/// the process ends.
pub fn run_udp(socket: UdpSocket, mode: Mode, backend: Backend) -> Result<(), Box<dyn std::error::Error>> {
    let mut w = watcher(mode, backend)?;
    let conn = w.watch(socket)?;
    for _ in 0..UDP_PENDING_RECEIVES {
        w.recv_from_swap(conn, ())?;
    }
    let mut batch = Vec::with_capacity(1024);
    loop {
        w.wait_io(&mut batch)?;
        for c in batch.drain(..) {
            echo_datagram(&mut w, c)?;
        }
    }
}

/// The UDP echo step: a received datagram goes back to its sender from
/// its swap slice and the socket receives again; a receive that failed
/// (a truncated datagram, or the ICMP port unreachable of an earlier
/// reply) is logged and submitted again; a finished send needs nothing.
fn echo_datagram(w: &mut Watcher<(), Bytes>, c: Completion<(), Bytes>) -> gaio::Result<()> {
    match (c.op, c.error, c.buffer, c.peer) {
        (Op::RecvFrom, None, Buffer::Swap(data), Some(from)) => {
            w.send_to(c.conn, (), data, from)?;
            w.recv_from_swap(c.conn, ())?;
        }
        (Op::RecvFrom, error, ..) => {
            eprintln!("bench-server: receive failed: {error:?}");
            w.recv_from_swap(c.conn, ())?;
        }
        (_, Some(error), ..) => eprintln!("bench-server: send failed: {error}"),
        _ => {}
    }
    Ok(())
}
