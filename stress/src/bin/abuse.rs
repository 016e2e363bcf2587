//! `cargo xtask abuse --secs N`: a hostile client mix against the
//! `echo_server` example, run as a child process on 127.0.0.1.
//!
//! For `--secs` seconds (default 20), `--workers` threads (default 4) pick
//! behaviours at random:
//!
//! * **reset**: send part of a message, maybe read a little, then close
//!   with `SO_LINGER` 0 (the server sees a reset mid-message);
//! * **half-close**: send a message, shut down the write side, read the
//!   echo to end of stream and compare it with what was sent;
//! * **never-read**: send without ever reading until the send blocks (the
//!   server's echo fills our receive buffer, so its write stalls, so it
//!   stops reading), then drop the connection with unread data (a reset);
//! * **garbage**: random bursts of random bytes with pauses, reading the
//!   echo as it comes and checking it, then a half-close (whole echo
//!   compared) or an abrupt close.
//!
//! Meanwhile a flooding thread repeatedly opens connections until this
//! process reaches its descriptor limit (raised or lowered to about
//! `--max-conns` above what is open, default 3,000), checks that a sample
//! of them still gets echoes, holds them a second and closes them (most by
//! reset), and a checker thread keeps one well-behaved connection echoing
//! pattern-checked messages the whole time.
//!
//! Afterwards the server must still be running and echo correctly to a
//! fresh client (1 B .. 1 MiB, content checked), its descriptor count
//! (`/proc/PID/fd`) must return to its value before the abuse within 5 s,
//! and its resident memory must stay within 64 MiB of its value before the
//! abuse. Any wrong echo byte, checker failure or failed final check makes
//! the exit status non-zero. The child is killed when the tool exits, also
//! on a panic (a guard's `Drop`) and if the tool itself is killed (the
//! child's parent-death signal).

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gaio_stress::args::Args;
use gaio_stress::{human_bytes, poll_until, procfs};
use gaio_testkit::nofile::set_soft_limit;
use gaio_testkit::pattern::{stream_offset, Periodic, PERIOD};
use gaio_testkit::rng::SplitMix64;

/// Allowed growth of the server's resident memory over the abuse.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// Longest wait for any echo a well-behaved client expects.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout: a dropped SYN is retransmitted after a second.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = match Args::parse(
        "abuse",
        &[
            ("secs", "how long to abuse the server (default 20)"),
            ("workers", "threads running hostile behaviours (default 4)"),
            ("max-conns", "descriptor budget of the flood: the client limit is set to what is open plus this (default 3000)"),
            ("seed", "PRNG seed (default: from the clock)"),
            ("server", "echo server binary (default: build examples/echo_server)"),
        ],
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(failures) if failures.is_empty() => {
            eprintln!("abuse: PASS");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            for f in failures {
                eprintln!("abuse: FAIL: {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("abuse: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- the child --------------------------------------------------------------

/// The server process; killed and reaped when dropped.
struct ServerChild {
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl ServerChild {
    fn spawn(path: &PathBuf) -> Result<ServerChild, String> {
        let mut cmd = Command::new(path);
        cmd.args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Linux only: the server dies with this process even if it is
        // killed with SIGKILL (elsewhere the guard's Drop is all there is).
        // SAFETY: the closure runs in the child between fork and exec. It
        // makes one system call (prctl, async-signal-safe), allocates
        // nothing and touches no lock, as `pre_exec` requires.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                    .map_err(io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the address line on a thread, so a server that never
        // prints cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let r = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((r, reader));
        });
        let guard = |child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        let (line, reader) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((Ok(line), reader)) => (line, reader),
            Ok((Err(e), _)) => {
                guard(&mut child);
                return Err(format!("reading the server's address: {e}"));
            }
            Err(_) => {
                guard(&mut child);
                return Err("the server printed no address within 20 s".into());
            }
        };
        let addr = match line.trim().parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => a,
            _ => {
                guard(&mut child);
                return Err(format!("unexpected first line from the server: {line:?}"));
            }
        };
        Ok(ServerChild {
            child,
            _stdout: reader,
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open descriptors of the server; `usize::MAX` if they cannot be
    /// counted (this process at its own descriptor limit, say).
    fn fds(&self) -> usize {
        self.try_fds().unwrap_or(usize::MAX)
    }

    fn try_fds(&self) -> Option<usize> {
        procfs::fd_count(Some(self.pid())).ok()
    }

    fn rss_kib(&self) -> u64 {
        self.try_rss_kib().unwrap_or(0)
    }

    fn try_rss_kib(&self) -> Option<u64> {
        gaio_testkit::memory::rss_kib(Some(self.pid())).ok()
    }

    /// `None` while running; the exit status once it has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("unknown ({e})")),
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the echo server example (release) next to this binary and
/// returns its path.
fn build_server() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("abuse: building the echo_server example (release)");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "gaio",
            "--example",
            "echo_server",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building echo_server failed ({status})"));
    }
    // This binary is target/release/abuse; examples live beside it.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe
        .parent()
        .ok_or("no directory for this binary")?
        .join("examples")
        .join("echo_server");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} not found after building", path.display()))
    }
}

// ----- shared counters --------------------------------------------------------

#[derive(Default)]
struct Stats {
    conns: AtomicU64,
    resets: AtomicU64,
    half_closes: AtomicU64,
    never_reads: AtomicU64,
    never_read_blocked: AtomicU64,
    never_read_bytes: AtomicU64,
    garbage: AtomicU64,
    verified_bytes: AtomicU64,
    flood_rounds: AtomicU64,
    flood_max: AtomicUsize,
    flood_hit_limit: AtomicU64,
    checker_rounds: AtomicU64,
    /// Our own resource errors (descriptor limit, connect timeouts while
    /// the flood holds every descriptor): tolerated, reported.
    client_errors: AtomicU64,
    /// Wrong or missing echoes: the server misbehaved.
    violations: AtomicU64,
    messages: Mutex<Vec<String>>,
}

impl Stats {
    fn violation(&self, what: String) {
        self.violations.fetch_add(1, Ordering::Relaxed);
        let mut m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() < 20 {
            eprintln!("abuse: VIOLATION: {what}");
            m.push(what);
        }
    }

    fn client_error(&self, what: &str, e: &io::Error) {
        let n = self.client_errors.fetch_add(1, Ordering::Relaxed);
        if n < 5 {
            eprintln!("abuse: (client-side, tolerated) {what}: {e}");
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn connect(addr: SocketAddr, stats: &Stats) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    Stats::add(&stats.conns, 1);
    Ok(s)
}

fn is_fd_limit(e: &io::Error) -> bool {
    // EMFILE, ENFILE.
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

fn reset_on_close(s: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO));
}

// ----- behaviours -------------------------------------------------------------

/// What a worker needs: where, counters, randomness, a block of random
/// bytes to send from.
struct Worker<'a> {
    addr: SocketAddr,
    stats: &'a Stats,
    rng: SplitMix64,
    noise: Vec<u8>,
    deadline: Instant,
}

impl Worker<'_> {
    fn run(&mut self) {
        while Instant::now() < self.deadline {
            let started = Instant::now();
            let r = match self.rng.below(4) {
                0 => self.reset_mid_message(),
                1 => self.half_close(),
                2 => self.never_read(),
                _ => self.garbage(),
            };
            if let Err(e) = r {
                self.stats.client_error("worker", &e);
                std::thread::sleep(Duration::from_millis(if is_fd_limit(&e) { 50 } else { 10 }));
            }
            // At most ~100 connections a second per worker: loopback ports
            // left in TIME_WAIT stay bounded.
            let min = Duration::from_millis(10);
            if let Some(rest) = min.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    fn message(&mut self, max: usize) -> Vec<u8> {
        let len = self.rng.log_uniform(1, max);
        let start = self.rng.range(0, self.noise.len() - len);
        self.noise[start..start + len].to_vec()
    }

    fn reset_mid_message(&mut self) -> io::Result<()> {
        let mut s = connect(self.addr, self.stats)?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let msg = self.message(256 * 1024);
        let cut = self.rng.range(1, msg.len());
        // A write timing out is fine: the point is to reset mid-stream.
        let _ = s.write_all(&msg[..cut]);
        if self.rng.chance(1, 2) {
            let mut buf = vec![0; 4096];
            let _ = s.read(&mut buf);
        }
        reset_on_close(&s);
        drop(s);
        Stats::add(&self.stats.resets, 1);
        Ok(())
    }

    fn half_close(&mut self) -> io::Result<()> {
        let mut s = connect(self.addr, self.stats)?;
        s.set_write_timeout(Some(ECHO_TIMEOUT))?;
        s.set_read_timeout(Some(ECHO_TIMEOUT))?;
        let msg = self.message(64 * 1024);
        if let Err(e) = s.write_all(&msg).and_then(|()| s.shutdown(Shutdown::Write)) {
            self.stats
                .violation(format!("half-close: sending {} bytes failed: {e}", msg.len()));
            return Ok(());
        }
        let mut got = Vec::with_capacity(msg.len());
        match s.read_to_end(&mut got) {
            Ok(_) if got == msg => {
                Stats::add(&self.stats.verified_bytes, got.len() as u64);
                Stats::add(&self.stats.half_closes, 1);
            }
            Ok(_) => self.stats.violation(format!(
                "half-close: echo of {} bytes came back as {} bytes{}",
                msg.len(),
                got.len(),
                first_difference(&msg, &got)
            )),
            Err(e) => self.stats.violation(format!(
                "half-close: no end of stream after {} of {} echoed bytes: {e}",
                got.len(),
                msg.len()
            )),
        }
        Ok(())
    }

    fn never_read(&mut self) -> io::Result<()> {
        let mut s = connect(self.addr, self.stats)?;
        s.set_nonblocking(true)?;
        // Small buffers on our side: the echo stalls sooner, so the send
        // blocks after megabytes rather than tens of them.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&s, 4096);
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&s, 4096);
        let started = Instant::now();
        let (mut sent, mut stalls) = (0u64, 0);
        // Until the send blocks for good (three tries 20 ms apart), with
        // bounds on bytes and time.
        while stalls < 3 && sent < 64 << 20 && started.elapsed() < Duration::from_secs(3) {
            let at = self.rng.range(0, self.noise.len() - 65536);
            match s.write(&self.noise[at..at + 65536]) {
                Ok(n) => {
                    sent += n as u64;
                    stalls = 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stalls += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    self.stats
                        .violation(format!("never-read: send failed after {sent} bytes: {e}"));
                    return Ok(());
                }
            }
        }
        if stalls >= 3 {
            Stats::add(&self.stats.never_read_blocked, 1);
        }
        Stats::add(&self.stats.never_read_bytes, sent);
        Stats::add(&self.stats.never_reads, 1);
        // Closing with unread data sends a reset.
        drop(s);
        Ok(())
    }

    fn garbage(&mut self) -> io::Result<()> {
        let mut s = connect(self.addr, self.stats)?;
        s.set_nonblocking(true)?;
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let mut buf = vec![0; 65536];
        for _ in 0..self.rng.range(1, 8) {
            let burst = match self.rng.below(4) {
                0 => vec![0; self.rng.log_uniform(1, 32 * 1024)],
                1 => vec![0xff; self.rng.log_uniform(1, 32 * 1024)],
                _ => self.message(32 * 1024),
            };
            let mut off = 0;
            while off < burst.len() {
                match s.write(&burst[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if started.elapsed() > ECHO_TIMEOUT {
                            self.stats.violation("garbage: the server stopped reading".into());
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => {
                        self.stats.violation(format!("garbage: send failed: {e}"));
                        return Ok(());
                    }
                }
                self.drain(&mut s, &mut buf, &mut got)?;
            }
            sent.extend_from_slice(&burst);
            std::thread::sleep(Duration::from_millis(self.rng.below(10)));
            self.drain(&mut s, &mut buf, &mut got)?;
            if !sent.starts_with(&got) {
                self.stats.violation(format!(
                    "garbage: echo differs from what was sent{}",
                    first_difference(&sent, &got)
                ));
                return Ok(());
            }
        }
        match self.rng.below(3) {
            0 => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(ECHO_TIMEOUT))?;
                s.shutdown(Shutdown::Write)?;
                match s.read_to_end(&mut got) {
                    Ok(_) if got == sent => {}
                    Ok(_) => self.stats.violation(format!(
                        "garbage: {} bytes sent, {} echoed before end of stream{}",
                        sent.len(),
                        got.len(),
                        first_difference(&sent, &got)
                    )),
                    Err(e) => self.stats.violation(format!(
                        "garbage: no end of stream after {} of {} echoed bytes: {e}",
                        got.len(),
                        sent.len()
                    )),
                }
            }
            1 => reset_on_close(&s),
            _ => {}
        }
        Stats::add(&self.stats.verified_bytes, got.len() as u64);
        Stats::add(&self.stats.garbage, 1);
        Ok(())
    }

    /// Reads whatever has arrived on a non-blocking socket.
    fn drain(&self, s: &mut TcpStream, buf: &mut [u8], got: &mut Vec<u8>) -> io::Result<()> {
        loop {
            match s.read(buf) {
                Ok(0) => {
                    self.stats
                        .violation("garbage: end of stream before we closed".into());
                    return Ok(());
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    self.stats.violation(format!("garbage: read failed: {e}"));
                    return Ok(());
                }
            }
        }
    }
}

fn first_difference(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!(" (first wrong byte at {i})"),
        None => String::new(),
    }
}

/// Opens connections until the descriptor limit (or `max`), checks a
/// sample still echoes, holds them a second and closes them, repeatedly.
fn flood(addr: SocketAddr, pid: u32, stats: &Stats, max: usize, deadline: Instant, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let server_fds = || procfs::fd_count(Some(pid)).unwrap_or(0);
    while Instant::now() + Duration::from_secs(3) < deadline {
        let mut conns = Vec::new();
        let mut errors = 0;
        let fds_before = server_fds();
        // The limit normally stops the flood first; `max` is a safety cap.
        while conns.len() < max && Instant::now() < deadline {
            if conns.len() % 32 == 0 {
                // Stay within the server's listen backlog (128 for a std
                // listener): a full backlog drops SYNs, and each dropped SYN
                // costs a one-second retransmission.
                let ahead = conns.len().saturating_sub(64);
                poll_until(Duration::from_secs(2), || server_fds() >= fds_before + ahead);
            }
            match connect(addr, stats) {
                Ok(s) => conns.push(s),
                Err(e) if is_fd_limit(&e) => {
                    Stats::add(&stats.flood_hit_limit, 1);
                    // Leave a few descriptors for the other threads and
                    // for reading /proc.
                    conns.truncate(conns.len().saturating_sub(16));
                    break;
                }
                Err(e) => {
                    stats.client_error("flood connect", &e);
                    errors += 1;
                    if errors > 20 {
                        break;
                    }
                }
            }
        }
        stats.flood_max.fetch_max(conns.len(), Ordering::Relaxed);
        Stats::add(&stats.flood_rounds, 1);
        let held = Instant::now();
        // While flooded, a sample of the connections still gets echoes.
        for s in conns.iter_mut().step_by(97) {
            let msg: Vec<u8> = (0..rng.range(1, 200)).map(|_| rng.below(256) as u8).collect();
            let mut got = vec![0; msg.len()];
            let r = s
                .set_read_timeout(Some(ECHO_TIMEOUT))
                .and_then(|()| s.write_all(&msg))
                .and_then(|()| s.read_exact(&mut got));
            match r {
                Ok(()) if got == msg => Stats::add(&stats.verified_bytes, msg.len() as u64),
                Ok(()) => stats.violation("flood: a sampled connection echoed wrong bytes".into()),
                Err(e) => stats.violation(format!("flood: a sampled connection got no echo: {e}")),
            }
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(held.elapsed()) {
            std::thread::sleep(rest);
        }
        // Three in four by reset, the rest by an orderly close.
        for (i, s) in conns.into_iter().enumerate() {
            if i % 4 != 0 {
                reset_on_close(&s);
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// One well-behaved connection echoing pattern-checked messages throughout.
fn checker(addr: SocketAddr, stats: &Stats, deadline: Instant, seed: u64) {
    let pattern = Periodic::seeded(seed, PERIOD);
    let mut rng = SplitMix64::new(seed ^ 0xc4ec);
    let mut conn: Option<TcpStream> = None;
    let mut off = 0u64;
    while Instant::now() < deadline {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match connect(addr, stats) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(ECHO_TIMEOUT));
                    let _ = s.set_write_timeout(Some(ECHO_TIMEOUT));
                    off = 0;
                    conn.insert(s)
                }
                Err(e) => {
                    stats.client_error("checker connect", &e);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let len = rng.log_uniform(1, 64 * 1024);
        let msg = pattern.bytes(stream_offset(1, off), len);
        let mut got = vec![0; len];
        match s.write_all(&msg).and_then(|()| s.read_exact(&mut got)) {
            Ok(()) => match pattern.check(stream_offset(1, off), &got) {
                Ok(()) => {
                    off += len as u64;
                    Stats::add(&stats.verified_bytes, len as u64);
                    Stats::add(&stats.checker_rounds, 1);
                }
                Err(at) => {
                    stats.violation(format!(
                        "checker: wrong echo byte at stream offset {}",
                        off + at as u64
                    ));
                    conn = None;
                }
            },
            Err(e) => {
                stats.violation(format!("checker: echo of {len} bytes failed: {e}"));
                conn = None;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh client's echo, content-checked, from 1 byte to 1 MiB; large
/// messages are written from a second thread while the echo is read.
fn echo_check(addr: SocketAddr, seed: u64) -> Result<u64, String> {
    let pattern = Periodic::seeded(seed, PERIOD);
    let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(ECHO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(ECHO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut off = 0u64;
    for len in [1usize, 7, 1000, 65536, 300_000, 1 << 20] {
        let msg = pattern.bytes(stream_offset(2, off), len);
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let writer = std::thread::spawn(move || w.write_all(&msg));
        let mut got = vec![0; len];
        let read = (&s).read_exact(&mut got);
        let wrote = writer.join().map_err(|_| "writer panicked".to_string())?;
        wrote.map_err(|e| format!("sending {len} bytes: {e}"))?;
        read.map_err(|e| format!("reading the echo of {len} bytes: {e}"))?;
        pattern
            .check(stream_offset(2, off), &got)
            .map_err(|at| format!("echo of {len} bytes wrong at byte {at}"))?;
        off += len as u64;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    (&s).read_to_end(&mut rest)
        .map_err(|e| format!("no end of stream after half-close: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} unexpected bytes before end of stream", rest.len()));
    }
    Ok(off)
}

fn run(args: &Args) -> Result<Vec<String>, String> {
    let secs: u64 = args.get("secs", 20)?;
    let workers: usize = args.get("workers", 4)?;
    let max_conns: usize = args.get("max-conns", 3000)?;
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let seed: u64 = args.get("seed", clock)?;
    let path = match args.get_str("server") {
        Some(p) => PathBuf::from(p),
        None => build_server()?,
    };
    let mut server = ServerChild::spawn(&path)?;
    let addr = server.addr;
    let pid = server.pid();
    eprintln!(
        "abuse: server pid {pid} on {addr}; {secs} s, {workers} workers, flood up to {max_conns} connections, seed {seed}"
    );
    let mut failures = Vec::new();

    // Baseline: the server's descriptors at rest. It prints its address
    // before creating its watcher, so a first echo proves the watcher is
    // there; then the count must hold still, and come back after a second
    // well-behaved client.
    echo_check(addr, seed).map_err(|e| format!("the server does not echo before the abuse: {e}"))?;
    let mut fds_base = server.fds();
    poll_until(Duration::from_secs(5), || {
        std::thread::sleep(Duration::from_millis(200));
        let now = server.fds();
        std::mem::replace(&mut fds_base, now) == now
    });
    echo_check(addr, seed).map_err(|e| format!("the server does not echo before the abuse: {e}"))?;
    if !poll_until(Duration::from_secs(5), || server.fds() == fds_base) {
        failures.push(format!(
            "one clean connection left the server at {} descriptors, {fds_base} before",
            server.fds()
        ));
    }
    let rss_base = server.rss_kib();

    // Our own limit: the flood stops where it is reached.
    let open = procfs::fd_count(None).unwrap_or(0) as u64;
    let limit = set_soft_limit(open + max_conns as u64 + 8);
    eprintln!("abuse: client descriptor limit {limit} ({open} open)");

    let stats = Stats::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let (mut fds_peak, mut rss_peak_seen) = (0, 0);
    std::thread::scope(|scope| {
        for i in 0..workers {
            let stats = &stats;
            scope.spawn(move || {
                let mut rng = SplitMix64::new(seed.wrapping_add(i as u64 + 1));
                let mut noise = vec![0; 512 * 1024];
                rng.fill(&mut noise);
                Worker {
                    addr,
                    stats,
                    rng,
                    noise,
                    deadline,
                }
                .run();
            });
        }
        scope.spawn(|| flood(addr, pid, &stats, max_conns + 64, deadline, seed ^ 0xf100d));
        scope.spawn(|| checker(addr, &stats, deadline, seed));
        // Progress once a second until the workers are done.
        let mut tick = start;
        while Instant::now() < deadline + Duration::from_millis(500) {
            tick += Duration::from_secs(1);
            if let Some(rest) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
            // Either reading can fail while the flood holds every
            // descriptor of this process.
            let (fds, rss) = (server.try_fds(), server.try_rss_kib());
            fds_peak = fds_peak.max(fds.unwrap_or(0));
            rss_peak_seen = rss_peak_seen.max(rss.unwrap_or(0));
            let fds = fds.map_or("?".to_string(), |n| n.to_string());
            let rss = rss.map_or("?".to_string(), |n| human_bytes(n * 1024));
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            eprintln!(
                "abuse: {:>3} s  conns {:>6} (reset {}, half-close {}, never-read {}, garbage {}, floods {}) checker {}  verified {}  violations {}  client-errors {}  | server fds {fds} rss {}",
                start.elapsed().as_secs(),
                n(&stats.conns),
                n(&stats.resets),
                n(&stats.half_closes),
                n(&stats.never_reads),
                n(&stats.garbage),
                n(&stats.flood_rounds),
                n(&stats.checker_rounds),
                human_bytes(n(&stats.verified_bytes)),
                n(&stats.violations),
                n(&stats.client_errors),
                rss,
            );
        }
    });
    let abuse_time = start.elapsed();

    // Afterwards: alive, echoing, descriptors back, memory bounded.
    if let Some(status) = server.exited() {
        failures.push(format!("the server exited during the abuse: {status}"));
        return Ok(failures);
    }
    let t = Instant::now();
    let fds_back = poll_until(Duration::from_secs(5), || server.fds() == fds_base);
    let fds_settle = t.elapsed();
    let fds_end = server.fds();
    if !fds_back {
        failures.push(format!(
            "server descriptors: {fds_end} five seconds after the abuse, {fds_base} before"
        ));
    }
    match echo_check(addr, seed ^ 1) {
        Ok(n) => eprintln!("abuse: a fresh client's echo of {} checked", human_bytes(n)),
        Err(e) => failures.push(format!("the server does not echo after the abuse: {e}")),
    }
    if !poll_until(Duration::from_secs(5), || server.fds() == fds_base) {
        failures.push(format!(
            "server descriptors: {} after the final echo check, {fds_base} before",
            server.fds()
        ));
    }
    let rss_end = server.rss_kib();
    let rss_peak = gaio_testkit::memory::peak_rss_kib(Some(pid)).unwrap_or(rss_peak_seen);
    if rss_end > rss_base + RSS_BOUND_KIB {
        failures.push(format!(
            "server VmRSS {} after the abuse, {} before (bound: +{})",
            human_bytes(rss_end * 1024),
            human_bytes(rss_base * 1024),
            human_bytes(RSS_BOUND_KIB * 1024)
        ));
    }
    let violations = stats.violations.load(Ordering::Relaxed);
    if violations > 0 {
        failures.push(format!("{violations} wrong or missing echoes during the abuse"));
    }
    if stats.checker_rounds.load(Ordering::Relaxed) == 0 {
        failures.push("the checker completed no round trip".into());
    }
    if server.exited().is_some() {
        failures.push("the server exited after the abuse".into());
    }

    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!("abuse: ---- summary (seed {seed}) ----");
    eprintln!(
        "abuse: {:.1} s, {} connections: {} resets mid-message, {} half-closes (echo checked), {} never-read ({} until the send blocked, {} pushed), {} garbage bursts",
        abuse_time.as_secs_f64(),
        n(&stats.conns),
        n(&stats.resets),
        n(&stats.half_closes),
        n(&stats.never_reads),
        n(&stats.never_read_blocked),
        human_bytes(n(&stats.never_read_bytes)),
        n(&stats.garbage)
    );
    eprintln!(
        "abuse: flood: {} rounds, at most {} connections at once, descriptor limit reached {} times",
        n(&stats.flood_rounds),
        stats.flood_max.load(Ordering::Relaxed),
        n(&stats.flood_hit_limit)
    );
    eprintln!(
        "abuse: checker {} round trips; {} echoed bytes verified; violations {}; client-side errors {} (tolerated)",
        n(&stats.checker_rounds),
        human_bytes(n(&stats.verified_bytes)),
        violations,
        n(&stats.client_errors)
    );
    eprintln!(
        "abuse: server descriptors: {fds_base} before, peak {fds_peak}, {fds_end} after ({} settle)",
        if fds_back {
            format!("{:.2} s to", fds_settle.as_secs_f64())
        } else {
            "did not".to_string()
        }
    );
    eprintln!(
        "abuse: server VmRSS: {} before, peak {} (VmHWM), {} after (bound: before + {})",
        human_bytes(rss_base * 1024),
        human_bytes(rss_peak * 1024),
        human_bytes(rss_end * 1024),
        human_bytes(RSS_BOUND_KIB * 1024)
    );
    drop(server);
    Ok(failures)
}
