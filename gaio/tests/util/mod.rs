//! Helpers shared by the integration tests: loopback socket pairs, bounded
//! waiting for completions, descriptor accounting and the fd limit.
//!
//! Tests are run one per process (nextest) or one at a time
//! (`--test-threads=1`, see `cargo xtask test`), so counting the entries of
//! `/proc/self/fd` before and after a test is exact.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use gaio::{Completion, Mode, Watcher};

pub mod peer;

/// Both modes, for tests that must hold in each.
pub const MODES: [Mode; 2] = [Mode::Inline, Mode::Background];

/// A watcher in `mode` with default settings.
pub fn watcher<C: Send + 'static, B: gaio::IoBuf>(mode: Mode) -> Watcher<C, B> {
    gaio::Builder::new().mode(mode).build().expect("create watcher")
}

/// A connected loopback TCP pair: (client, server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// `n` connected loopback TCP pairs through one listener.
pub fn tcp_pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    (0..n)
        .map(|_| {
            let client = TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            (client, server)
        })
        .collect()
}

/// Waits until `n` completions have arrived, panicking after `limit`.
pub fn wait_for<C, B: gaio::IoBuf>(
    w: &mut Watcher<C, B>,
    n: usize,
    limit: Duration,
) -> Vec<Completion<C, B>> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        let now = Instant::now();
        assert!(
            now < end,
            "timed out after {limit:?}: got {} of {n} completions",
            out.len()
        );
        w.wait_io_timeout(&mut out, end - now).expect("wait_io");
    }
    out
}

/// Asserts that no completion arrives within `quiet`.
pub fn expect_quiet<C, B: gaio::IoBuf>(w: &mut Watcher<C, B>, quiet: Duration) {
    let mut out = Vec::new();
    let n = w.wait_io_timeout(&mut out, quiet).expect("wait_io");
    assert_eq!(
        n, 0,
        "expected no completion, got {} (first: {:?} {:?})",
        n, out[0].op, out[0].error
    );
}

/// Number of open descriptors of this process (`/proc/self/fd` on Linux,
/// `/dev/fd` elsewhere; the directory handle itself counts in both).
pub fn open_fds() -> usize {
    let dir = if cfg!(any(target_os = "linux", target_os = "android")) {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .count()
}

/// Records the open descriptor count; `check` asserts it is back there.
pub struct FdCheck {
    before: usize,
}

impl FdCheck {
    pub fn new() -> Self {
        FdCheck { before: open_fds() }
    }

    /// Asserts the descriptor count is back where it started. Threads
    /// (background watchers) may take a moment to finish, so this retries
    /// for up to a second.
    pub fn check(self) {
        let end = Instant::now() + Duration::from_secs(1);
        loop {
            let now = open_fds();
            if now == self.before {
                return;
            }
            if Instant::now() > end {
                panic!("descriptor leak: {} open before, {} after", self.before, now);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Raises the soft RLIMIT_NOFILE towards `want` (bounded by the hard
/// limit) and returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(u64::MAX);
    let soft = want.min(hard);
    if cur.current.is_some_and(|c| c >= soft) {
        return cur.current.unwrap();
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
    soft
}

/// Deterministic test bytes: a position-dependent pattern seeded per
/// connection, so misrouted or reordered bytes are caught.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Restores SIGPIPE to its default action (terminate the process), so a
/// write that raised it would kill the test instead of passing silently.
pub fn sigpipe_default() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_DFL runs no handler code, so none of
    // `signal`'s handler-safety requirements apply; the previous
    // disposition (Rust's SIG_IGN) is not needed again.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.expect("set SIGPIPE to default");
}
