//! `bench-server --impl NAME [--idle | --udp] [--count-allocs] [--threads N]
//! [--spread S] [--no-pin]`: one echo server under test.
//!
//! Binds `127.0.0.1:0`, prints the bound address as the first line of
//! stdout, and serves until killed or until stdin closes. `--udp` binds a
//! UDP socket instead of a TCP listener and echoes every datagram back to
//! its sender (every implementation but gaio-cores and uring-floor). A line `stats`
//! on stdin is answered with `allocs=N accepted=M live=B`. `NAME` is one of
//! gaio-inline, gaio-uring, gaio-background, mio, tokio-ct, tokio-mt, std-threads,
//! gaio-cores, uring-floor (Linux). `--idle` serves connections that only keep a buffer-less
//! read pending; `--count-allocs` turns on the counting global allocator.
//! gaio-cores only: `--threads N` watchers and threads (default: one per
//! CPU this process may use), `--spread reuseport|round-robin|least-loaded`
//! (default least-loaded), `--no-pin` leaves the threads unpinned.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use gaio_bench::alloc_count::{self, CountingAlloc};
use gaio_bench::control;
use gaio_bench::servers::{self, CoresOptions, Impl};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str = "usage: bench-server \
                     --impl gaio-inline|gaio-uring|gaio-background|mio|tokio-ct|tokio-mt|std-threads|gaio-cores|uring-floor \
                     [--idle | --udp] [--count-allocs] \
                     [--threads N] [--spread reuseport|round-robin|least-loaded] [--no-pin] [--no-batch]";

fn main() -> ExitCode {
    let mut imp = None;
    let (mut idle, mut count, mut udp) = (false, false, false);
    let mut cores = CoresOptions::default();
    let mut cores_args = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--impl" => match args.next().as_deref().and_then(Impl::parse) {
                Some(i) => imp = Some(i),
                None => return usage(),
            },
            "--idle" => idle = true,
            "--udp" => udp = true,
            "--count-allocs" => count = true,
            "--threads" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => (cores.threads, cores_args) = (Some(n), true),
                None => return usage(),
            },
            "--spread" => match args.next().as_deref().and_then(servers::parse_spread) {
                Some(s) => (cores.spread, cores_args) = (s, true),
                None => return usage(),
            },
            "--no-pin" => (cores.pin, cores_args) = (false, true),
            "--no-batch" => (cores.batch, cores_args) = (false, true),
            _ => return usage(),
        }
    }
    let Some(imp) = imp else {
        return usage();
    };
    if cores_args && imp != Impl::GaioCores {
        eprintln!("bench-server: --threads, --spread, --no-pin and --no-batch are for gaio-cores");
        return usage();
    }
    if udp && (idle || !imp.has_udp()) {
        eprintln!("bench-server: --udp is for the echo servers other than gaio-cores and uring-floor, without --idle");
        return usage();
    }
    let serving = if udp {
        Serving::Udp
    } else {
        Serving::Tcp { idle, cores }
    };
    match serve(imp, serving, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-server ({imp}): {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// What the server serves.
enum Serving {
    /// TCP echo (buffer-less idle connections with `idle`).
    Tcp { idle: bool, cores: CoresOptions },
    /// UDP echo.
    Udp,
}

fn serve(imp: Impl, serving: Serving, count: bool) -> Result<(), Box<dyn std::error::Error>> {
    gaio_testkit::nofile::raise_soft_limit_to_hard();
    let announce = |addr: SocketAddr| -> io::Result<()> {
        println!("{addr}");
        control::spawn_stdin_thread()?;
        if count {
            alloc_count::enable();
        }
        Ok(())
    };
    match serving {
        Serving::Tcp { idle, cores } => servers::run(imp, idle, cores, announce),
        Serving::Udp => servers::run_udp(imp, announce),
    }
}
