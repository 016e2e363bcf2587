//! Helpers shared by the `soak` and `abuse` binaries: `/proc` descriptor
//! counts, command-line parsing, byte counts for people, polling with a
//! time limit.
//!
//! What they share with gaio's tests and the benchmark (the descriptor
//! limit, memory readings, the verifiable byte pattern and the seeded
//! generator, so that every run with the same seed behaves the same) is in
//! `gaio-testkit`.

pub mod args;
pub mod procfs;

use std::time::Duration;

/// Formats a byte count with a binary unit (`12.3 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Polls `f` until it returns true or `limit` passes; returns its last
/// answer. The first retries come after a millisecond, later ones at most
/// every 50 ms.
pub fn poll_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
