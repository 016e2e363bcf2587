//! Echo server: every byte a client sends comes back.
//!
//! `cargo run --release -p gaio --example echo_server -- --addr 127.0.0.1:7878`
//! prints the bound address on its first line, then echoes until killed;
//! with `--until-stdin-closes` it stops when its standard input closes
//! (for scripts): it closes the watcher, which closes every connection, and
//! exits cleanly.
//!
//! The listener has the system's deepest accept queue ([`gaio::listen`]),
//! and the watcher accepts itself: accepted connections get `TCP_NODELAY`,
//! a burst of connections is taken without a wake-up per connection, and
//! no thread blocks in `accept`. Reads use the watcher's swap memory, so an
//! idle client holds no buffer, and the bytes read are written back as they
//! are, without a copy.

use std::io::Read;

use gaio::{Buffer, Bytes, Error, Op, Submit, Watcher};

/// Accepts kept pending on the listener: a burst of connections is
/// accepted several per readiness edge.
const PENDING_ACCEPTS: usize = 16;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, until_stdin_closes) = parse_args()?;
    let listener = gaio::listen(&addr)?;
    println!("{}", listener.local_addr()?);

    let mut w: Watcher<(), Bytes> = Watcher::new()?;
    if until_stdin_closes {
        // Another thread waits for stdin to close, then closes the
        // watcher: `wait_io` below then says the loop is over.
        let mut closer = w.submitter();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            closer.close();
        });
    }
    let listener = w.watch_listener(listener)?;
    for _ in 0..PENDING_ACCEPTS {
        w.accept(listener, ())?;
    }

    let mut batch = Vec::new();
    // `wait_io` fails once the watcher is closed: every socket is closed
    // by then.
    while w.wait_io(&mut batch).is_ok() {
        for c in batch.drain(..) {
            if matches!(c.error, Some(Error::WatcherClosed)) {
                continue; // closing: nothing to resubmit
            }
            if c.op == Op::Accept {
                match c.error {
                    None => w.read_swap(c.conn, ())?, // the new connection: no buffer held while idle
                    Some(e) => eprintln!("echo_server: accept: {e}"),
                }
                w.accept(listener, ())?;
                continue;
            }
            match (c.error, c.buffer) {
                (Some(_), _) => w.free(c.conn)?, // end of stream, reset, ...
                (None, Buffer::Swap(data)) => w.write(c.conn, (), data)?, // echo what was read
                (None, _) => w.read_swap(c.conn, ())?, // write done: read again
            }
        }
    }
    Ok(())
}

/// `--addr HOST:PORT` (default `127.0.0.1:0`) and `--until-stdin-closes`.
fn parse_args() -> Result<(String, bool), String> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:0".to_string();
    let mut until_stdin_closes = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--until-stdin-closes" => until_stdin_closes = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: echo_server [--addr HOST:PORT] [--until-stdin-closes]"
                ))
            }
        }
    }
    Ok((addr, until_stdin_closes))
}
