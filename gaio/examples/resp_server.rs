//! Redis-protocol server: RESP2 and inline commands (`PING`, `ECHO`,
//! `SET`, `GET`, `DEL`, `INCR`, `EXISTS`, `QUIT`), pipelined; `-ERR` and a
//! close on a protocol error. The protocol is `gaio-protocols'`
//! [`resp::respond`], which its tokio twin
//! (`twins/examples/tokio_resp_server.rs`) shares: what is here is all the
//! I/O. Try it with `redis-cli -p PORT` or `redis-benchmark -p PORT`.
//!
//! `cargo run --release -p gaio --example resp_server -- --addr 127.0.0.1:6379`
//! prints the bound address on its first line. Ctrl-C or SIGTERM stops it:
//! it stops accepting, lets each client take the replies already written,
//! half-closes every connection, and exits once the clients have closed,
//! within five seconds; a second signal stops it at once.
//!
//! One thread owns the store: no lock. Each client's commands collect in
//! one buffer that reads append to
//! ([`read_append`](gaio::Submit::read_append)); its replies are written
//! from buffers a [`BufPool`] reuses. A client is read again only once its
//! replies are out, so one that sends without reading is held back by TCP
//! instead of filling the server's memory.

use std::time::Duration;

use gaio::{BufPool, Error, Listener, Op, Submit, Watcher};
use gaio_protocols::{resp, with_room, Next};
use nix::sys::signal::{SigSet, Signal};

/// How long a shutdown lets the clients take their last replies.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A client's input not yet answered, and how far `respond` has checked
/// the command still arriving in it. A write carries both as its context
/// (`None` for a client's last replies, after `QUIT` or an error: nothing
/// after them runs); a read carries the progress (its buffer is the input).
type Client = Option<(Vec<u8>, resp::Progress)>;

/// Serves on `listener` until the watcher closes (a graceful close, from
/// the signal thread, ends the accepts and half-closes each client once its
/// replies are out).
pub fn serve(w: &mut Watcher<Client, Vec<u8>>, listener: Listener) -> Result<(), Error> {
    w.accept_multishot(listener, Client::default())?;
    let (mut store, mut replies) = (resp::Store::new(), BufPool::new(4096));
    let mut batch = Vec::new();
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            match (c.op, c.error) {
                (Op::Accept, None) => w.read_append(c.conn, Client::default(), with_room(Vec::new()))?,
                // The last replies are out; the shutdown behind them ends it.
                (Op::Write, None) if c.context.is_none() => replies.put(c.buffer.into_user()),
                (Op::ReadAppend | Op::Write, None) => {
                    // Commands just read, or those left after the last
                    // replies (`respond` makes a bounded amount at a time).
                    let (mut input, mut progress) = if c.op == Op::Write {
                        replies.put(c.buffer.into_user());
                        c.context.unwrap_or_default()
                    } else {
                        let progress = c.context.unwrap_or_default().1;
                        (c.buffer.into_user().unwrap_or_default(), progress)
                    };
                    let mut out = replies.take();
                    let (used, next) = resp::respond(&input, &mut out, &mut store, &mut progress);
                    if (used, next) == (0, Next::Read) {
                        // No whole command: read more.
                        replies.put(out);
                        w.read_append(c.conn, Some((Vec::new(), progress)), with_room(input))?;
                        continue;
                    }
                    input.drain(..used);
                    let open = next == Next::Read;
                    w.write(c.conn, open.then_some((input, progress)), out)?;
                    if !open {
                        w.shutdown(c.conn, None)?;
                    }
                }
                (Op::Accept, Some(e)) => eprintln!("resp_server: no longer accepting: {e}"),
                _ => w.free(c.conn)?, // closed after QUIT or an error reply, end of stream, an error
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = gaio_protocols::addr_arg(std::env::args().skip(1), "resp_server")?;
    // Ctrl-C and SIGTERM go to a thread of their own (blocked here, before
    // any thread starts, so every thread inherits the mask).
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    signals.thread_block()?;
    let listener = gaio::listen(&addr)?; // the deepest accept queue; clients get TCP_NODELAY
    let addr = listener.local_addr()?;
    let mut w = Watcher::new()?;
    let listener = w.watch_listener(listener)?;
    println!("{addr}"); // once serving: a script may connect as soon as it reads this
    let mut stopper = w.submitter();
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            stopper.close_gracefully(DRAIN_TIME);
        }
        if signals.wait().is_ok() {
            std::process::exit(1); // a second signal: stop now
        }
    });
    serve(&mut w, listener)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` against `serve` on a thread, then closes the watcher
    /// gracefully and checks that `serve` returns.
    fn against_server(check: fn(std::net::SocketAddr)) {
        let listener = gaio::listen("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut w = Watcher::new().unwrap();
        let listener = w.watch_listener(listener).unwrap();
        let mut stopper = w.submitter();
        let server = std::thread::spawn(move || serve(&mut w, listener));
        check(addr);
        stopper.close_gracefully(DRAIN_TIME);
        server.join().unwrap().unwrap();
    }

    gaio_protocols::resp_checks!(against_server);
}
