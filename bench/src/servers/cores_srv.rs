//! The gaio thread-per-core echo server: `gaio::CoresBuilder` with N
//! threads, each pinned to its CPU and owning its watcher (inline mode),
//! all listening on one loopback address spread by a [`gaio::Spread`]
//! strategy.
//!
//! Each thread runs gaio-inline's echo loop: a multishot accept on its
//! listener if it has one (every thread with `ReusePort`, core 0
//! otherwise, whose accepts then complete on every core), a swap read per
//! new connection, each swap slice written straight back, and the
//! connection reads again once the write is done.

use std::io;
use std::net::SocketAddr;

use gaio::{Bytes, Core, CoresBuilder, Op, Spread, Submit};

use crate::control::note_accepted;

/// How the gaio-cores server is set up (`bench-server --threads N
/// --spread S [--no-pin] [--no-batch]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoresOptions {
    /// Threads (watchers); `None`: one per CPU this process may use.
    pub threads: Option<usize>,
    /// How connections spread over the watchers.
    pub spread: Spread,
    /// Whether each thread is pinned to its CPU.
    pub pin: bool,
    /// Whether each thread runs under the batch scheduling policy
    /// (`CoresBuilder::batch_scheduling`, on by default).
    pub batch: bool,
}

impl Default for CoresOptions {
    fn default() -> Self {
        CoresOptions {
            threads: None,
            spread: Spread::LeastLoaded,
            pin: true,
            batch: true,
        }
    }
}

/// Serves until the process ends (or a core fails, which ends it).
pub fn run(
    opts: CoresOptions,
    announce: impl FnOnce(SocketAddr) -> io::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    // On epoll, as the scaling figures so far were measured.
    let watcher = gaio::Builder::new()
        .swap_size(super::ECHO_BUF)
        .backend(gaio::Backend::Epoll);
    let mut builder = CoresBuilder::new()
        .watcher(watcher)
        .pin(opts.pin)
        .batch_scheduling(opts.batch)
        .listen("127.0.0.1:0", opts.spread);
    if let Some(n) = opts.threads {
        builder = builder.threads(n);
    }
    let cores = builder.start(|core: Core<(), Bytes>| {
        let index = core.index;
        let served = serve(core);
        if let Err(e) = &served {
            // The driver must not measure a server with a core missing.
            eprintln!("bench-server (gaio-cores): core {index}: {e}");
            std::process::exit(1);
        }
        served
    })?;
    announce(cores.local_addr().ok_or("gaio-cores listens on nothing")?)?;
    // The threads serve until the process is killed.
    for served in cores.join()? {
        served?;
    }
    Ok(())
}

/// One core's echo loop.
fn serve(core: Core<(), Bytes>) -> gaio::Result<()> {
    let mut w = core.watcher;
    let listener = core.listener;
    if let Some(l) = listener {
        w.accept_multishot(l, ())?;
    }
    let mut batch = Vec::with_capacity(1024);
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            if c.op == Op::Accept {
                match c.error {
                    None => {
                        note_accepted();
                        w.read_swap(c.conn, ())?;
                    }
                    Some(gaio::Error::WatcherClosed) => {}
                    // The multishot accept ended (an accept(2) error that
                    // is not retried): log it and accept again.
                    Some(error) => {
                        eprintln!("bench-server (gaio-cores): accept ended: {error}");
                        if let Some(l) = listener {
                            w.accept_multishot(l, ())?;
                        }
                    }
                }
                continue;
            }
            super::gaio_srv::echo(&mut w, c)?;
        }
    }
    Ok(())
}
