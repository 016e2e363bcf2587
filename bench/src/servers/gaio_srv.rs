//! The gaio echo server: the README's echo loop, in either mode, on the
//! backend asked for.
//!
//! The listener is handed to the watcher, which accepts (with
//! `TCP_NODELAY`, its default) as long as accepts are pending; each new
//! connection gets a swap read (no buffer held while idle); each swap slice
//! read is written straight back without a copy, and the connection reads
//! again once the write is done.

use std::net::TcpListener;

use gaio::{Backend, Buffer, Bytes, Completion, Mode, Op, Submit, Watcher};

use crate::control::note_accepted;

/// Accepts kept pending on the listener: a burst of connections is taken
/// in one go, several per readiness edge.
const PENDING_ACCEPTS: usize = 16;

/// Serves until the process ends.
pub fn run(listener: TcpListener, mode: Mode, backend: Backend) -> Result<(), Box<dyn std::error::Error>> {
    let mut w: Watcher<(), Bytes> = gaio::Builder::new()
        .mode(mode)
        .backend(backend)
        .swap_size(super::ECHO_BUF)
        .build()?;
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
