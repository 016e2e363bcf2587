//! HTTP/1.1 server: keep-alive, pipelining, `GET /plaintext` as the
//! TechEmpower benchmark asks, `POST /echo`, `400` and a close on garbage.
//! The protocol is `gaio-protocols`' [`http::respond`], which its tokio twin
//! (`twins/examples/tokio_http_server.rs`) shares: what is here is all the
//! I/O.
//!
//! `cargo run --release -p gaio --example http_server -- --addr 127.0.0.1:8080`
//! prints the bound address on its first line. Ctrl-C or SIGTERM stops it
//! ([`close_gracefully`](gaio::Submit::close_gracefully)): it stops
//! accepting, lets each client take the responses already written,
//! half-closes every connection, and exits once the clients have closed,
//! within five seconds; a second signal stops it at once.
//!
//! Each client's requests collect in one buffer that reads append to
//! ([`read_append`](gaio::Submit::read_append)); its responses are written
//! from buffers a [`BufPool`] reuses. A client is read again only once its
//! responses are out, so one that sends without reading is held back by
//! TCP instead of filling the server's memory.

use std::time::Duration;

use gaio::{BufPool, Error, Listener, Op, Submit, Watcher};
use gaio_protocols::{http, with_room, Next};
use nix::sys::signal::{SigSet, Signal};

/// How long a shutdown lets the clients take their last responses.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves on `listener` until the watcher closes (a graceful close, from
/// the signal thread, ends the accepts and half-closes each client once its
/// responses are out). A write's context is the client's input not yet
/// answered, `None` for its last response (nothing after it is read).
pub fn serve(w: &mut Watcher<Option<Vec<u8>>, Vec<u8>>, listener: Listener) -> Result<(), Error> {
    w.accept_multishot(listener, None)?;
    let mut responses = BufPool::new(4096);
    let mut batch = Vec::new();
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            match (c.op, c.error) {
                (Op::Accept, None) => w.read_append(c.conn, None, with_room(Vec::new()))?,
                (Op::ReadAppend, None) => {
                    let mut input = c.buffer.into_user().unwrap_or_default();
                    let mut out = responses.take();
                    let (used, next) = http::respond(&input, &mut out);
                    input.drain(..used);
                    let open = next == Next::Read;
                    w.write(c.conn, open.then_some(input), out)?; // empty while a request is still arriving
                    if !open {
                        w.shutdown(c.conn, None)?;
                    }
                }
                (Op::Write, None) => {
                    responses.put(c.buffer.into_user());
                    if let Some(input) = c.context {
                        w.read_append(c.conn, None, with_room(input))?;
                    }
                }
                (Op::Accept, Some(e)) => eprintln!("http_server: no longer accepting: {e}"),
                _ => w.free(c.conn)?, // closed after its last response, end of stream, an error
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = gaio_protocols::addr_arg(std::env::args().skip(1), "http_server")?;
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

    /// Runs `check` against `serve` on a thread, then stops the server and
    /// checks that it returns.
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

    gaio_protocols::http_checks!(against_server);
}
