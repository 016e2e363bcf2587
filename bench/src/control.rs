//! The server side of the driver's control channel.
//!
//! Each server implementation calls [`note_accepted`] once per accepted
//! connection. A thread started by [`spawn_stdin_thread`] answers each line
//! `stats` on stdin with `allocs=N accepted=M live=B` on stdout, and ends the
//! process when stdin closes, so a server never outlives its driver. The
//! answer path allocates nothing once warmed up (the line buffer is reused).

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::alloc_count;

static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Records one accepted connection.
pub fn note_accepted() {
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
}

/// Connections accepted so far.
pub fn accepted() -> u64 {
    ACCEPTED.load(Ordering::Relaxed)
}

/// Starts the thread that answers `stats` and exits the process on EOF.
pub fn spawn_stdin_thread() -> io::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(serve_stdin)
        .map(|_| ())
}

fn serve_stdin() {
    let stdin = io::stdin();
    let mut line = String::with_capacity(64);
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) if line.trim() == "stats" => {
                let mut out = io::stdout().lock();
                let written = writeln!(
                    out,
                    "allocs={} accepted={} live={}",
                    alloc_count::calls(),
                    accepted(),
                    alloc_count::live_bytes()
                )
                .and_then(|()| out.flush());
                if written.is_err() {
                    std::process::exit(0);
                }
            }
            Ok(_) => {}
        }
    }
}

/// Parses an answer line `allocs=N accepted=M live=B` into `(N, M)`
/// (`live`, the heap bytes in use while counting, is for people reading it).
pub fn parse_stats(line: &str) -> Option<(u64, u64)> {
    let mut allocs = None;
    let mut accepted = None;
    for field in line.split_whitespace() {
        match field.split_once('=') {
            Some(("allocs", v)) => allocs = v.parse().ok(),
            Some(("accepted", v)) => accepted = v.parse().ok(),
            _ => {}
        }
    }
    Some((allocs?, accepted?))
}
