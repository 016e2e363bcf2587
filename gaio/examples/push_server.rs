//! Push server: sends a numbered line to every connected client ten times a
//! second, on every core, and notices disconnects through a pending read.
//!
//! `cargo run --release -p gaio --example push_server -- --addr 127.0.0.1:7879 --threads 2`
//! prints the bound address on its first line; try `nc 127.0.0.1 7879`.
//! With `--until-stdin-closes` it stops cleanly when its standard input
//! closes.
//!
//! The clients are spread over `--threads` watchers (default 1; 0: one per
//! CPU), each on a thread of its own. Core 0 keeps the clock: a timer
//! request (`sleep_until`) completes at each tick, and core 0 sends the
//! tick to every core, itself included, with `notify`; each core pushes it
//! to its own clients. No loop polls with a timeout, and a tick reaches
//! the other cores in the same batches as their I/O.
//!
//! A client that stops reading cannot make the server queue ticks for
//! ever: each connection may hold at most 64 KiB of unwritten ticks
//! (`max_queued_write_bytes`); past that a tick is refused at submission
//! and that client misses it.

use std::io::Read;
use std::time::{Duration, Instant};

use gaio::{Core, CoresBuilder, Error, Spread, Submit};

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The multishot accept on the listener.
    Accept,
    /// The read pending on each client, which only watches for a
    /// disconnect.
    Watch,
    /// A tick pushed to a client.
    Push,
    /// Core 0's clock: the timer of the next tick.
    Clock,
    /// Tick number n, sent to every core.
    Tick(u64),
}

/// How often the clients get a line.
const PERIOD: Duration = Duration::from_millis(100);

/// One core: accept (if it has the listener), keep its clients, push each
/// tick to them; core 0 also keeps the clock.
fn serve(core: Core<Ctx>) -> gaio::Result<()> {
    let mut w = core.watcher;
    if let Some(listener) = core.listener {
        w.accept_multishot(listener, Ctx::Accept)?;
    }
    let (mut next, mut tick) = (Instant::now() + PERIOD, 0);
    if core.index == 0 {
        w.sleep_until(next, Ctx::Clock)?;
    }
    let mut clients = gaio::ConnMap::new();
    let mut batch = Vec::new();
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            match (c.context, c.error) {
                (_, Some(Error::WatcherClosed)) => {} // closing: nothing to resubmit
                (Ctx::Accept, None) => {
                    clients.insert(c.conn, ());
                    w.read_swap(c.conn, Ctx::Watch)?;
                }
                (Ctx::Accept, Some(e)) => eprintln!("push_server: no longer accepting: {e}"),
                (Ctx::Clock, _) => {
                    tick += 1;
                    for mut peer in core.peers.iter() {
                        let _ = peer.notify(Ctx::Tick(tick)); // refused only once closing
                    }
                    next += PERIOD;
                    w.sleep_until(next, Ctx::Clock)?;
                }
                (Ctx::Tick(n), _) => {
                    for (conn, ()) in clients.iter() {
                        match w.write(conn, Ctx::Push, format!("tick {n}\n").into_bytes()) {
                            Ok(()) => {}
                            // A client that does not read misses this tick.
                            Err(refused) if matches!(refused.error, Error::WriteQueueFull { .. }) => {}
                            Err(refused) => return Err(refused.error),
                        }
                    }
                }
                (Ctx::Watch | Ctx::Push, Some(_)) => {
                    clients.remove(c.conn);
                    w.free(c.conn)?; // freeing twice is harmless
                }
                (Ctx::Watch, None) => w.read_swap(c.conn, Ctx::Watch)?, // data is ignored
                (Ctx::Push, None) => {}
            }
        }
    }
    Ok(())
}

const USAGE: &str = "usage: push_server [--addr HOST:PORT] [--threads N] [--until-stdin-closes]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut threads, mut until_stdin_closes) = ("127.0.0.1:0".to_string(), 1, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--threads" => {
                let n = args.next().ok_or("--threads needs a number")?;
                threads = n
                    .parse()
                    .map_err(|_| format!("--threads {n:?}: not a number; {USAGE}"))?;
            }
            "--until-stdin-closes" => until_stdin_closes = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}").into()),
        }
    }
    if threads == 0 {
        threads = std::thread::available_parallelism()?.get();
    }
    let cores = CoresBuilder::new()
        .threads(threads)
        .pin(threads > 1)
        .watcher(gaio::Builder::new().max_queued_write_bytes(64 * 1024))
        .listen(&addr, Spread::LeastLoaded)
        .start(serve)?;
    println!("{}", cores.local_addr().expect("listening"));
    if until_stdin_closes {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    } else {
        // Until killed.
        loop {
            std::thread::park();
        }
    }
    for served in cores.stop()? {
        served?;
    }
    Ok(())
}
