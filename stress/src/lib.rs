//! Helpers shared by the `soak` and `abuse` binaries: a small seeded PRNG,
//! a verifiable byte pattern, `/proc` readings (descriptor count, memory),
//! the descriptor limit and command-line parsing.
//!
//! Everything here is deliberately dependency-free (beyond `rustix` for the
//! resource limit) so the stress tools build quickly and behave the same on
//! every run with the same seed.

pub mod args;
pub mod pattern;
pub mod procfs;
pub mod rng;

pub use pattern::Pattern;
pub use rng::Rng;

use std::time::Duration;

/// Raises the soft limit on open descriptors of this process to
/// `min(hard limit, want)` and returns the new soft limit.
///
/// Never lowers the limit below what is already open; a limit that cannot
/// be changed is left as it is.
pub fn set_nofile_limit(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(u64::MAX);
    let soft = want.min(hard);
    if setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    )
    .is_ok()
    {
        soft
    } else {
        cur.current.unwrap_or(u64::MAX)
    }
}

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
