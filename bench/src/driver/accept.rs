//! The accept-rate load: new connections as fast as the server takes
//! them, each doing one 64-byte echo and closing.
//!
//! [`Churn::start`] runs worker threads, each a non-blocking loop on mio
//! keeping a fixed number of connections in flight. A connection connects,
//! sets `TCP_NODELAY`, sends 64 bytes of the pattern (the stretch after the
//! previous connection's, so a misdirected echo shows), reads the 64 bytes
//! back, checks them, and closes (a reset: see below); its slot then opens
//! the next connection at once. The client closes first, so the server sees
//! its connection end and frees its side.
//!
//! Why this shape: on a two-core machine the load generator and the server
//! share the CPUs, so the generator must cost as little per connection as
//! it can, and must not make the server pay for it. Measured here (quick
//! runs against the mio and gaio-inline servers, a noisy shared machine,
//! with a normal close): eight blocking threads (connect, write,
//! blocking read, close) reached about 22k connections/s, but cost the
//! client 45 µs of CPU per connection and the server 31-33 µs, because the
//! server's echo has to wake a sleeping client thread every time; two
//! non-blocking workers with 16 connections in flight each reached 15-20k/s
//! at 35 µs client CPU and 25-28 µs server CPU (the server's writes mostly
//! find the client awake); one worker cannot keep the server busy (10-13k/s).
//! So: two workers, one per core, 16 connections in flight each.
//!
//! Ports and TIME_WAIT: the client resets rather than closes
//! (`SO_LINGER` 0), so no connection leaves a TIME_WAIT socket behind. The
//! server reads `ECONNRESET` where it would read end of stream, and frees
//! the connection the same way; it sends no FIN of its own and takes no
//! `LAST_ACK`. A normal close was tried first and the ports did not
//! suffice: `connect` reuses a port still in TIME_WAIT for the same server
//! only after `tcp_tw_reuse_delay` (1 s), and it walks the even half of
//! the ephemeral range first (14,116 of the 28,232 ports of 32768-60999),
//! with its cursor advancing by a random 1-8 ports per connect. Above
//! roughly 14k connections/s every connect scanned thousands of ports
//! (`__inet_hash_connect` and `__inet_check_established` took a third of
//! the client's samples under perf), the client's CPU per connection went
//! from 35 to 100 µs and the rate halved, but only while the network
//! namespace's TIME_WAIT table (capped at `tcp_max_tw_buckets` and shared
//! with every other process here) was not full. So the figures depended on
//! what else had run in the last minute. With resets they do not. It costs
//! every server less, though: measured against mio, gaio-inline and
//! gaio-background, each server's CPU per connection was about 9 µs lower
//! than with a normal close (about 18 µs against 27 µs for mio).
//!
//! Every failure is counted by kind ([`Failure`]); none is retried or
//! ignored. A connection that gets no complete echo within
//! [`CONN_TIMEOUT`] counts as timed out.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::error::BenchError;
use crate::pattern;

/// Bytes each connection sends and reads back.
pub const ACCEPT_MSG: usize = 64;

/// Longest a connection may take from connect to its whole echo.
pub const CONN_TIMEOUT: Duration = Duration::from_secs(5);

/// Error messages kept (the first ones of a run), for the progress line.
const KEPT_ERRORS: usize = 4;

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connect was refused (`ECONNREFUSED`).
    Refused,
    /// The connection was reset or aborted (`ECONNRESET`, `ECONNABORTED`,
    /// `EPIPE`).
    Reset,
    /// The server closed the connection before echoing all 64 bytes.
    Closed,
    /// No complete echo within [`CONN_TIMEOUT`].
    Timeout,
    /// The echo differed from what was sent.
    Mismatch,
    /// Any other error (`EADDRNOTAVAIL` when out of ephemeral ports, ...).
    Other,
}

impl Failure {
    /// Every kind, in report order.
    pub const ALL: [Failure; 6] = [
        Failure::Refused,
        Failure::Reset,
        Failure::Closed,
        Failure::Timeout,
        Failure::Mismatch,
        Failure::Other,
    ];

    /// The kind of an I/O error.
    pub fn of(e: &io::Error) -> Failure {
        match e.kind() {
            ErrorKind::ConnectionRefused => Failure::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            ErrorKind::TimedOut => Failure::Timeout,
            ErrorKind::UnexpectedEof => Failure::Closed,
            _ => Failure::Other,
        }
    }

    /// The name of its counter in the results.
    pub fn key(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Closed => "closed_early",
            Failure::Timeout => "timed_out",
            Failure::Mismatch => "mismatched",
            Failure::Other => "other_errors",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Connections completed and failed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Connections whose echo came back whole and right.
    pub completed: u64,
    /// Failed connections, by [`Failure`] kind (indexed as [`Failure::ALL`]).
    pub failed: [u64; 6],
}

impl Tally {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut failed = [0; 6];
        for (f, (a, b)) in failed.iter_mut().zip(self.failed.iter().zip(&earlier.failed)) {
            *f = a.saturating_sub(*b);
        }
        Tally {
            completed: self.completed.saturating_sub(earlier.completed),
            failed,
        }
    }

    /// Failed connections of one kind.
    pub fn failures(&self, kind: Failure) -> u64 {
        self.failed[kind.index()]
    }

    /// Failed connections of every kind.
    pub fn total_failed(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// `refused 2, reset 1`: the non-zero failure counts, or `none`.
    pub fn failure_summary(&self) -> String {
        let parts: Vec<String> = Failure::ALL
            .iter()
            .filter(|&&k| self.failures(k) > 0)
            .map(|&k| format!("{} {}", k.key(), self.failures(k)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Counters the workers share with the measuring thread.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    completed: AtomicU64,
    failed: [AtomicU64; 6],
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn tally(&self) -> Tally {
        let mut failed = [0; 6];
        for (f, a) in failed.iter_mut().zip(&self.failed) {
            *f = a.load(Ordering::Relaxed);
        }
        Tally {
            completed: self.completed.load(Ordering::Relaxed),
            failed,
        }
    }

    fn fail(&self, kind: Failure, what: impl FnOnce() -> String) {
        self.failed[kind.index()].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < KEPT_ERRORS {
                errors.push(what());
            }
        }
    }
}

/// Running accept-rate load; stopped (and its workers joined) by
/// [`Churn::stop`] or on drop.
#[derive(Debug)]
pub struct Churn {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<io::Result<()>>>,
}

impl Churn {
    /// Starts `workers` threads, each keeping `in_flight` connections to
    /// `addr` going.
    pub fn start(addr: SocketAddr, workers: usize, in_flight: usize) -> Result<Churn, BenchError> {
        if !addr.ip().is_loopback() {
            return Err(BenchError::other(format!(
                "refusing to load {addr}: not loopback"
            )));
        }
        let shared = Arc::new(Shared::default());
        let mut churn = Churn {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(workers),
        };
        for id in 0..workers {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("churn-{id}"))
                .spawn(move || Worker::new(addr, id, in_flight, shared)?.run())?;
            churn.workers.push(handle);
        }
        Ok(churn)
    }

    /// Connections completed and failed so far.
    pub fn tally(&self) -> Tally {
        self.shared.tally()
    }

    /// Stops and joins the workers; returns what they did in all and the
    /// first error messages seen.
    pub fn stop(mut self) -> Result<(Tally, Vec<String>), BenchError> {
        self.join()?;
        let errors = self.shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
        Ok((self.shared.tally(), errors))
    }

    fn join(&mut self) -> Result<(), BenchError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for w in self.workers.drain(..) {
            let r = match w.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(BenchError::other(format!("load worker: {e}"))),
                Err(_) => Err(BenchError::other("load worker panicked")),
            };
            result = result.and(r);
        }
        result
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// One connection in flight.
struct Conn {
    stream: TcpStream,
    /// Where its message starts in the pattern.
    offset: u64,
    sent: usize,
    recvd: usize,
    echo: [u8; ACCEPT_MSG],
    opened: Instant,
}

/// Where a connection is after some progress.
enum Step {
    /// Waiting for the socket.
    Pending,
    /// The whole echo came back right.
    Done,
    /// It failed.
    Failed(Failure, String),
}

struct Worker {
    addr: SocketAddr,
    poll: Poll,
    events: Events,
    slots: Vec<Option<Conn>>,
    /// The tokens of one poll's events (kept to reuse its memory).
    ready: Vec<usize>,
    /// Sequence number of the next connection (distinct per worker).
    next: u64,
    shared: Arc<Shared>,
}

impl Worker {
    fn new(addr: SocketAddr, id: usize, in_flight: usize, shared: Arc<Shared>) -> io::Result<Worker> {
        Ok(Worker {
            addr,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            slots: (0..in_flight).map(|_| None).collect(),
            ready: Vec::with_capacity(1024),
            next: (id as u64) << 40,
            shared,
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut last_sweep = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let empty = self.fill();
            // An empty slot is a connection that failed (out of ports,
            // say), or rarely finished, at once: refill soon, without
            // spinning.
            let wait = if empty { 1 } else { 50 };
            match self
                .poll
                .poll(&mut self.events, Some(Duration::from_millis(wait)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut ready = std::mem::take(&mut self.ready);
            ready.extend(self.events.iter().map(|e| e.token().0));
            for &i in &ready {
                self.advance(i);
            }
            ready.clear();
            self.ready = ready;
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                last_sweep = Instant::now();
                self.sweep_timeouts(last_sweep);
            }
        }
        Ok(())
    }

    /// Opens a connection in every empty slot; true if one stays empty.
    fn fill(&mut self) -> bool {
        let mut empty = false;
        for i in 0..self.slots.len() {
            if self.slots[i].is_none() {
                self.open(i);
                empty |= self.slots[i].is_none();
            }
        }
        empty
    }

    /// Opens a connection in slot `i` and sends its message if it can.
    /// A connection that finishes at once leaves the slot empty for
    /// [`fill`](Worker::fill): reopening here would recurse without bound
    /// while every connect fails at once (a server gone, say).
    fn open(&mut self, i: usize) {
        let seq = self.next;
        self.next += 1;
        let offset = message_offset(seq);
        let opened = connect(self.addr).and_then(|mut stream| {
            self.poll
                .registry()
                .register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.slots[i] = Some(Conn {
                    stream,
                    offset,
                    sent: 0,
                    recvd: 0,
                    echo: [0; ACCEPT_MSG],
                    opened: Instant::now(),
                });
                // On loopback the handshake is usually over when connect
                // returns: send at once rather than wait for an event.
                self.step(i);
            }
            Err(e) => self.shared.fail(Failure::of(&e), || format!("connect: {e}")),
        }
    }

    /// Moves connection `i` on; once it is finished, opens the next one in
    /// its slot.
    fn advance(&mut self, i: usize) {
        if self.step(i) {
            self.open(i);
        }
    }

    /// Moves connection `i` on; true if it finished (counted, closed and
    /// its slot emptied).
    fn step(&mut self, i: usize) -> bool {
        let Some(conn) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return false;
        };
        match conn.step() {
            Step::Pending => return false,
            Step::Done => {
                self.shared.completed.fetch_add(1, Ordering::Relaxed);
            }
            Step::Failed(kind, what) => self.shared.fail(kind, || what),
        }
        // Dropping the stream closes it (and takes it out of the poller).
        self.slots[i] = None;
        true
    }

    fn sweep_timeouts(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let late = self.slots[i]
                .as_ref()
                .is_some_and(|c| now.duration_since(c.opened) > CONN_TIMEOUT);
            if late {
                let c = self.slots[i].take();
                let (sent, recvd) = c.map_or((0, 0), |c| (c.sent, c.recvd));
                self.shared.fail(Failure::Timeout, || {
                    format!("no echo within {CONN_TIMEOUT:?} ({sent} bytes sent, {recvd} received)")
                });
            }
        }
    }
}

/// Where the message of connection `seq` starts in the pattern: next to
/// the previous connection's, not overlapping it.
fn message_offset(seq: u64) -> u64 {
    pattern::message_offset(0, seq, ACCEPT_MSG)
}

/// A non-blocking connect to `addr` with `TCP_NODELAY`, whose close
/// resets the connection (`SO_LINGER` 0: no TIME_WAIT).
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO))?;
    Ok(stream)
}

impl Conn {
    fn step(&mut self) -> Step {
        let msg = pattern::window(self.offset, ACCEPT_MSG);
        while self.sent < ACCEPT_MSG {
            match self.stream.write(&msg[self.sent..]) {
                Ok(0) => return Step::Failed(Failure::Other, "write returned 0".into()),
                Ok(n) => self.sent += n,
                // Still connecting (or a full socket): wait for writable.
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::NotConnected => {
                    return Step::Pending
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(Failure::of(&e), format!("write: {e}")),
            }
        }
        // One byte more than the message fits, so an over-long echo shows.
        let mut buf = [0u8; ACCEPT_MSG + 1];
        loop {
            let want = ACCEPT_MSG + 1 - self.recvd;
            match self.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    return Step::Failed(
                        Failure::Closed,
                        format!("server closed after {} of {ACCEPT_MSG} bytes", self.recvd),
                    )
                }
                Ok(n) if self.recvd + n > ACCEPT_MSG => {
                    return Step::Failed(
                        Failure::Mismatch,
                        format!("{} bytes echoed for {ACCEPT_MSG}", self.recvd + n),
                    )
                }
                Ok(n) => {
                    self.echo[self.recvd..self.recvd + n].copy_from_slice(&buf[..n]);
                    self.recvd += n;
                    if self.recvd == ACCEPT_MSG {
                        return match pattern::check(&self.echo, self.offset) {
                            Ok(()) => Step::Done,
                            Err(at) => Step::Failed(Failure::Mismatch, format!("echo byte {at} differs")),
                        };
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Step::Failed(Failure::of(&e), format!("read: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted_by_kind() {
        let kind = |k: ErrorKind| Failure::of(&io::Error::from(k));
        assert_eq!(kind(ErrorKind::ConnectionRefused), Failure::Refused);
        assert_eq!(kind(ErrorKind::ConnectionReset), Failure::Reset);
        assert_eq!(kind(ErrorKind::BrokenPipe), Failure::Reset);
        assert_eq!(kind(ErrorKind::TimedOut), Failure::Timeout);
        assert_eq!(kind(ErrorKind::AddrNotAvailable), Failure::Other);
        assert_eq!(Failure::of(&io::Error::from_raw_os_error(104)), Failure::Reset);
        for (i, k) in Failure::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn tallies_subtract_and_summarize() {
        let mut a = Tally {
            completed: 10,
            ..Tally::default()
        };
        a.failed[Failure::Reset.index()] = 1;
        let mut b = a;
        b.completed = 25;
        b.failed[Failure::Reset.index()] = 3;
        b.failed[Failure::Refused.index()] = 2;
        let d = b.since(&a);
        assert_eq!(d.completed, 15);
        assert_eq!(d.failures(Failure::Reset), 2);
        assert_eq!(d.failures(Failure::Refused), 2);
        assert_eq!(d.total_failed(), 4);
        assert_eq!(d.failure_summary(), "refused 2, reset 2");
        assert_eq!(Tally::default().failure_summary(), "none");
        // A counter never runs backwards, but a difference never wraps.
        assert_eq!(a.since(&b).completed, 0);
    }

    /// A loopback server answering each connection with `answer` of
    /// the 64 bytes it read, then waiting for end of stream.
    fn toy_server(answer: fn(&mut [u8])) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                let mut msg = [0u8; ACCEPT_MSG];
                if s.read_exact(&mut msg).is_ok() {
                    answer(&mut msg);
                    let _ = s.write_all(&msg);
                    let _ = s.read(&mut msg);
                }
            }
        });
        addr
    }

    fn churn_for(addr: SocketAddr, ms: u64) -> Tally {
        let churn = Churn::start(addr, 1, 2).unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        churn.stop().unwrap().0
    }

    #[test]
    fn echoes_are_checked_and_counted() {
        let good = churn_for(toy_server(|_| {}), 200);
        assert!(good.completed > 0, "{good:?}");
        assert_eq!(good.total_failed(), 0, "{good:?}");
        let bad = churn_for(toy_server(|m| m[63] ^= 1), 100);
        assert_eq!(bad.completed, 0, "{bad:?}");
        assert!(bad.failures(Failure::Mismatch) > 0, "{bad:?}");
        assert_eq!(bad.total_failed(), bad.failures(Failure::Mismatch));
    }

    #[test]
    fn refused_connects_are_counted_not_retried_in_place() {
        // A port nobody listens on (just freed).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let t = churn_for(addr, 100);
        assert_eq!(t.completed, 0);
        assert!(t.failures(Failure::Refused) > 0, "{t:?}");
        assert_eq!(t.total_failed(), t.failures(Failure::Refused), "{t:?}");
    }

    #[test]
    fn messages_of_a_run_are_distinct() {
        let offset = message_offset;
        let seqs = [0, 1, 2, 1 << 40, (1 << 40) + 1, 2 << 40];
        for (i, &a) in seqs.iter().enumerate() {
            for &b in &seqs[i + 1..] {
                assert_ne!(
                    pattern::window(offset(a), ACCEPT_MSG),
                    pattern::window(offset(b), ACCEPT_MSG),
                    "{a} vs {b}"
                );
            }
        }
    }
}
