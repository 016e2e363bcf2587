//! `bench-server --impl NAME [--idle] [--count-allocs]`: one echo server
//! under test.
//!
//! Binds `127.0.0.1:0`, prints the bound address as the first line of
//! stdout, and serves until killed or until stdin closes. A line `stats`
//! on stdin is answered with `allocs=N accepted=M live=B`. `NAME` is one of
//! gaio-inline, gaio-background, mio, tokio-ct, tokio-mt, std-threads.
//! `--idle` serves connections that only keep a buffer-less read pending;
//! `--count-allocs` turns on the counting global allocator.

use std::process::ExitCode;

use gaio_bench::alloc_count::{self, CountingAlloc};
use gaio_bench::servers::{self, Impl};
use gaio_bench::{control, limits};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str =
    "usage: bench-server --impl gaio-inline|gaio-background|mio|tokio-ct|tokio-mt|std-threads \
                     [--idle] [--count-allocs]";

fn main() -> ExitCode {
    let mut imp = None;
    let (mut idle, mut count) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--impl" => match args.next().as_deref().and_then(Impl::parse) {
                Some(i) => imp = Some(i),
                None => return usage(),
            },
            "--idle" => idle = true,
            "--count-allocs" => count = true,
            _ => return usage(),
        }
    }
    let Some(imp) = imp else {
        return usage();
    };
    match serve(imp, idle, count) {
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

fn serve(imp: Impl, idle: bool, count: bool) -> Result<(), Box<dyn std::error::Error>> {
    gaio_testkit::nofile::raise_soft_limit_to_hard();
    let listener = limits::loopback_listener()?;
    println!("{}", listener.local_addr()?);
    control::spawn_stdin_thread()?;
    if count {
        alloc_count::enable();
    }
    servers::run(imp, idle, listener)
}
