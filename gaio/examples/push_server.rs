//! Push server: sends a numbered line to every connected client ten times a
//! second, and notices disconnects through a pending read.
//!
//! `cargo run --release -p gaio --example push_server -- --addr 127.0.0.1:7879`
//! prints the bound address on its first line; try `nc 127.0.0.1 7879`.
//! With `--until-stdin-closes` it stops cleanly when its standard input
//! closes.
//!
//! The watcher accepts the clients itself. A client that stops reading
//! cannot make the server queue ticks for ever: each connection may hold at
//! most 64 KiB of unwritten ticks (`max_queued_write_bytes`); past that a
//! tick is refused at submission and that client misses it.

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use gaio::{Error, Op, Submit, Watcher};

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// An accept on the listener.
    Accept,
    /// The read pending on each client, which only watches for a
    /// disconnect.
    Watch,
    /// A tick pushed to a client.
    Push,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut until_stdin_closes) = ("127.0.0.1:0".to_string(), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--until-stdin-closes" => until_stdin_closes = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let listener = gaio::listen(&addr)?;
    println!("{}", listener.local_addr()?);

    let mut w: Watcher<Ctx> = gaio::Builder::new().max_queued_write_bytes(64 * 1024).build()?;
    if until_stdin_closes {
        let mut closer = w.submitter();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            closer.close();
        });
    }
    let listener = w.watch_listener(listener)?;
    w.accept(listener, Ctx::Accept)?;

    let mut clients = HashSet::new();
    let (mut batch, mut tick, mut next) = (Vec::new(), 0u64, Instant::now());
    loop {
        // Ends the loop once the watcher is closed (every socket is closed).
        if w.wait_io_timeout(&mut batch, next.saturating_duration_since(Instant::now()))
            .is_err()
        {
            return Ok(());
        }
        for c in batch.drain(..) {
            if matches!(c.error, Some(Error::WatcherClosed)) {
                continue; // closing: nothing to resubmit
            }
            match (c.context, c.op) {
                (Ctx::Accept, _) => {
                    if c.error.is_none() {
                        w.read_swap(c.conn, Ctx::Watch)?;
                        clients.insert(c.conn);
                    }
                    w.accept(listener, Ctx::Accept)?;
                }
                (_, Op::Read) | (_, Op::Write) if c.error.is_some() => {
                    clients.remove(&c.conn);
                    w.free(c.conn)?; // freeing twice is harmless
                }
                (Ctx::Watch, _) => w.read_swap(c.conn, Ctx::Watch)?, // data is ignored
                (Ctx::Push, _) => {}
            }
        }
        if Instant::now() >= next {
            tick += 1;
            for &conn in &clients {
                match w.write(conn, Ctx::Push, format!("tick {tick}\n").into_bytes()) {
                    Ok(()) => {}
                    // A client that does not read misses this tick.
                    Err(refused) if matches!(refused.error, Error::WriteQueueFull { .. }) => {}
                    Err(refused) => return Err(refused.error.into()),
                }
            }
            next += Duration::from_millis(100);
        }
    }
}
