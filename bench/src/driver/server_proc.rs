//! A server under test, as a child process that is always killed.
//!
//! [`ServerProc`] starts `bench-server`, reads the address it bound from
//! its first stdout line, talks to its control channel (`stats`), and reads
//! its CPU time and RSS from `/proc`. Dropping it kills the child and waits
//! for it, on every path, errors and panics included.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::error::BenchError;
use super::scaling::Setup;
use crate::control;
use crate::procfs::CpuTime;
use crate::servers::{spread_name, Impl};

/// How long the server may take to answer on its control channel.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Which variant of the server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The echo server.
    Echo,
    /// The echo server with allocation counting on.
    CountAllocs,
    /// Connections only keep a buffer-less read pending (`--idle`).
    Idle,
    /// The UDP echo server (`--udp`).
    Udp,
}

/// A running `bench-server`; killed and reaped on drop.
#[derive(Debug)]
pub struct ServerProc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// The loopback address the server listens on.
    pub addr: SocketAddr,
    /// The implementation it runs.
    pub imp: Impl,
}

impl ServerProc {
    /// Starts `exe --impl imp` in `variant` and waits for its address.
    pub fn start(exe: &Path, imp: Impl, variant: Variant) -> Result<ServerProc, BenchError> {
        ServerProc::start_wrapped(&[], exe, imp, variant)
    }

    /// Starts the gaio-cores echo server with `threads` threads, set up as
    /// `setup` says (spread, pinning, scheduling policy), and waits for its
    /// address.
    pub fn start_cores(exe: &Path, threads: usize, setup: Setup) -> Result<ServerProc, BenchError> {
        let mut args = vec![
            "--threads".to_string(),
            threads.to_string(),
            "--spread".to_string(),
            spread_name(setup.spread).to_string(),
        ];
        if !setup.pin {
            args.push("--no-pin".into());
        }
        if !setup.batch {
            args.push("--no-batch".into());
        }
        ServerProc::spawn(&[], exe, Impl::GaioCores, Variant::Echo, &args)
    }

    /// Like [`start`](ServerProc::start), but runs `wrapper exe ...` (a
    /// wrapper that keeps the process id, such as valgrind).
    pub fn start_wrapped(
        wrapper: &[&str],
        exe: &Path,
        imp: Impl,
        variant: Variant,
    ) -> Result<ServerProc, BenchError> {
        ServerProc::spawn(wrapper, exe, imp, variant, &[])
    }

    /// Starts `wrapper exe --impl imp extra...` in `variant`.
    fn spawn(
        wrapper: &[&str],
        exe: &Path,
        imp: Impl,
        variant: Variant,
        extra: &[String],
    ) -> Result<ServerProc, BenchError> {
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--impl", imp.name()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match variant {
            Variant::Echo => {}
            Variant::CountAllocs => {
                cmd.arg("--count-allocs");
            }
            Variant::Idle => {
                cmd.arg("--idle");
            }
            Variant::Udp => {
                cmd.arg("--udp");
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| BenchError::other(format!("cannot start {}: {e}", exe.display())))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BenchError::other("server pipes missing"));
            }
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut server = ServerProc {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            imp,
        };
        let first = server.next_line()?;
        let addr: SocketAddr = first
            .trim()
            .parse()
            .map_err(|_| BenchError::other(format!("{imp}: first line is not an address: {first:?}")))?;
        if !addr.ip().is_loopback() {
            return Err(BenchError::other(format!(
                "{imp} bound {addr}, not a loopback address"
            )));
        }
        server.addr = addr;
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&mut self) -> Result<String, BenchError> {
        match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(BenchError::other(format!("{}: no answer", self.imp))),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                Err(BenchError::other(format!("{} exited ({status:?})", self.imp)))
            }
        }
    }

    /// Asks for `(allocation calls, accepted connections)`.
    pub fn stats(&mut self) -> Result<(u64, u64), BenchError> {
        self.stdin
            .write_all(b"stats\n")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| BenchError::other(format!("{}: control channel: {e}", self.imp)))?;
        let line = self.next_line()?;
        control::parse_stats(&line)
            .ok_or_else(|| BenchError::other(format!("{}: bad stats line {line:?}", self.imp)))
    }

    /// Waits until the server has accepted at least `n` connections.
    pub fn wait_accepted(&mut self, n: u64, deadline: Instant) -> Result<(), BenchError> {
        loop {
            let (_, accepted) = self.stats()?;
            if accepted >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::other(format!(
                    "{}: accepted only {accepted} of {n} connections",
                    self.imp
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The CPU time the server has used so far.
    pub fn cpu(&self) -> Result<CpuTime, BenchError> {
        Ok(CpuTime::read(self.pid())?)
    }

    /// The server's resident set size in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> Result<u64, BenchError> {
        Ok(gaio_testkit::memory::rss_bytes(Some(self.pid()))?)
    }
}

impl ServerProc {
    /// Sends the kill signal without waiting, so the kernel can tear the
    /// server down while the driver closes its own side; dropping still
    /// waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
