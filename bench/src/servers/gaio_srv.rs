//! The gaio echo server: the README's echo loop, in either mode.
//!
//! An accept thread hands each socket to the watcher through a
//! `Submitter` and submits a swap read (no buffer held while idle); the
//! thread calling `wait_io` writes each swap slice straight back without a
//! copy and reads again once the write is done.

use std::net::TcpListener;

use gaio::{Buffer, Bytes, Mode, Submit, Watcher};

use crate::control::note_accepted;

/// Serves until the process ends.
pub fn run(listener: TcpListener, mode: Mode) -> Result<(), Box<dyn std::error::Error>> {
    let mut w: Watcher<(), Bytes> = gaio::Builder::new()
        .mode(mode)
        .swap_size(super::ECHO_BUF)
        .build()?;
    let mut submitter = w.submitter();
    std::thread::Builder::new().name("accept".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let watched = submitter
                        .watch(s)
                        .and_then(|conn| Ok(submitter.read_swap(conn, ())?));
                    match watched {
                        Ok(()) => note_accepted(),
                        Err(e) => eprintln!("bench-server: cannot watch a connection: {e}"),
                    }
                }
                Err(e) => super::accept_failed(&e),
            }
        }
    })?;

    let mut batch = Vec::with_capacity(1024);
    loop {
        w.wait_io(&mut batch)?;
        for c in batch.drain(..) {
            match (c.error, c.buffer) {
                (Some(_), _) => w.free(c.conn)?,
                (None, Buffer::Swap(data)) => w.write(c.conn, (), data)?,
                (None, Buffer::User(_)) => w.read_swap(c.conn, ())?,
            }
        }
    }
}
