//! The many-connection load generator: one thread, mio (epoll), thousands
//! of connections.
//!
//! Each connection runs rounds: send one message of the pattern, read its
//! echo in full, check every byte, record the round trip time, repeat until
//! the stop rule says no. One message is in flight per connection.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::error::BenchError;
use crate::pattern;

/// When a connection stops starting new rounds.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many rounds per connection.
    Rounds(u64),
    /// Once a round finishes at or after this instant.
    Until(Instant),
}

/// What one [`Clients::run`] measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From just before the first write to the last echo received.
    pub elapsed: Duration,
    /// Round trips completed.
    pub completed: u64,
    /// Each round trip's duration in nanoseconds, when recording was asked.
    pub latencies_ns: Vec<u64>,
}

struct Client {
    stream: TcpStream,
    round: u64,
    rounds_this_run: u64,
    sent: usize,
    recvd: usize,
    started: Instant,
    active: bool,
}

/// A set of connected client connections registered with one poller.
pub struct Clients {
    poll: Poll,
    events: Events,
    conns: Vec<Client>,
    buf: Vec<u8>,
}

impl Clients {
    /// Opens `n` connections to `addr`, failing past `deadline`.
    ///
    /// Connections are opened non-blocking in batches of [`CONNECT_BATCH`],
    /// and each batch is waited for (writable, no socket error) before the
    /// next. `accepted` reports how many connections the server has
    /// accepted so far: connecting pauses while [`MAX_UNACCEPTED`] wait in
    /// its accept queue, because a full queue drops the SYN and the kernel
    /// retries only a second later. (Connecting from two threads was
    /// measured to be slower here: the threads contend in the kernel.)
    pub fn connect(
        addr: SocketAddr,
        n: usize,
        deadline: Instant,
        mut accepted: impl FnMut() -> Result<u64, BenchError>,
    ) -> Result<Clients, BenchError> {
        if !addr.ip().is_loopback() {
            return Err(BenchError::other(format!(
                "refusing to load {addr}: not loopback"
            )));
        }
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(4096);
        let mut conns = Vec::with_capacity(n);
        let mut known_accepted = 0;
        while conns.len() < n {
            let (start, end) = (conns.len(), (conns.len() + CONNECT_BATCH).min(n));
            while end as u64 > known_accepted + MAX_UNACCEPTED {
                if Instant::now() > deadline {
                    return Err(BenchError::other(format!(
                        "server accepted only {known_accepted} of {start} in time"
                    )));
                }
                known_accepted = accepted()?;
                if end as u64 > known_accepted + MAX_UNACCEPTED {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            for i in start..end {
                let mut stream =
                    TcpStream::connect(addr).map_err(|e| BenchError::other(format!("connect #{i}: {e}")))?;
                stream.set_nodelay(true)?;
                // Closing sends a reset: tearing down thousands of
                // connections after a measurement costs less.
                rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO))
                    .map_err(std::io::Error::from)?;
                poll.registry()
                    .register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
                conns.push(Client {
                    stream,
                    round: 0,
                    rounds_this_run: 0,
                    sent: 0,
                    recvd: 0,
                    started: Instant::now(),
                    active: false,
                });
            }
            wait_connected(&mut poll, &mut events, &conns[start..end], start, deadline)?;
        }
        Ok(Clients {
            poll,
            events,
            conns,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Runs rounds of `size`-byte messages on every connection until `stop`,
    /// failing if not done by `limit`. With `record`, every round trip time
    /// is kept.
    pub fn run(
        &mut self,
        size: usize,
        stop: Stop,
        record: bool,
        limit: Instant,
    ) -> Result<Outcome, BenchError> {
        let Clients {
            poll,
            events,
            conns,
            buf,
        } = self;
        let mut latencies = if record {
            Vec::with_capacity(1 << 20)
        } else {
            Vec::new()
        };
        let mut completed = 0u64;
        let start = Instant::now();
        let mut last = start;
        for (i, c) in conns.iter_mut().enumerate() {
            c.rounds_this_run = 0;
            c.active = true;
            c.begin(i, size, start)?;
        }
        let mut active = conns.len();
        while active > 0 {
            let now = Instant::now();
            if now >= limit {
                return Err(BenchError::other(format!(
                    "timed out: {active} of {} connections unfinished",
                    conns.len()
                )));
            }
            match poll.poll(events, Some((limit - now).min(Duration::from_millis(100)))) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                let i = ev.token().0;
                let c = &mut conns[i];
                if !c.active {
                    continue;
                }
                c.flush(i, size)?;
                loop {
                    let n = match c.stream.read(buf) {
                        Ok(0) => {
                            return Err(BenchError::other(format!("connection {i} closed by the server")))
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(BenchError::other(format!("connection {i}: {e}"))),
                    };
                    c.take(i, size, &buf[..n])?;
                    if c.recvd < size {
                        continue;
                    }
                    let t = Instant::now();
                    last = t;
                    completed += 1;
                    if record {
                        latencies.push((t - c.started).as_nanos() as u64);
                    }
                    c.round += 1;
                    c.rounds_this_run += 1;
                    let more = match stop {
                        Stop::Rounds(r) => c.rounds_this_run < r,
                        Stop::Until(deadline) => t < deadline,
                    };
                    if more {
                        c.begin(i, size, t)?;
                    } else {
                        c.active = false;
                        active -= 1;
                        break;
                    }
                }
            }
        }
        Ok(Outcome {
            elapsed: last - start,
            completed,
            latencies_ns: latencies,
        })
    }
}

impl Client {
    /// Starts a round: sends as much of the message as the socket takes.
    fn begin(&mut self, i: usize, size: usize, now: Instant) -> Result<(), BenchError> {
        self.sent = 0;
        self.recvd = 0;
        self.started = now;
        self.flush(i, size)
    }

    /// Sends what is left of this round's message, until it would block.
    fn flush(&mut self, i: usize, size: usize) -> Result<(), BenchError> {
        let msg = pattern::window(pattern::message_offset(i, self.round, size), size);
        while self.sent < size {
            match self.stream.write(&msg[self.sent..]) {
                Ok(0) => return Err(BenchError::other(format!("connection {i}: write returned 0"))),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(BenchError::other(format!("connection {i}: write: {e}"))),
            }
        }
        Ok(())
    }

    /// Checks echoed bytes against the message.
    fn take(&mut self, i: usize, size: usize, got: &[u8]) -> Result<(), BenchError> {
        if self.recvd + got.len() > size {
            return Err(BenchError::Mismatch(format!(
                "connection {i} round {}: {} bytes echoed for a {size}-byte message",
                self.round,
                self.recvd + got.len()
            )));
        }
        let offset = pattern::message_offset(i, self.round, size) + self.recvd as u64;
        if let Err(at) = pattern::check(got, offset) {
            return Err(BenchError::Mismatch(format!(
                "connection {i} round {}: byte {} of the message differs",
                self.round,
                self.recvd + at
            )));
        }
        self.recvd += got.len();
        Ok(())
    }
}

/// Most connections left waiting in the server's accept queue (the kernel
/// caps the queue at `net.core.somaxconn`, 4096 by default).
pub const MAX_UNACCEPTED: u64 = 2048;

/// Connections opened per batch by [`Clients::connect`].
pub const CONNECT_BATCH: usize = 256;

/// Waits until every connection of `batch` (tokens from `first`) is
/// established.
fn wait_connected(
    poll: &mut Poll,
    events: &mut Events,
    batch: &[Client],
    first: usize,
    deadline: Instant,
) -> Result<(), BenchError> {
    let mut done = vec![false; batch.len()];
    let mut pending = batch.len();
    while pending > 0 {
        let now = Instant::now();
        if now > deadline {
            return Err(BenchError::other(format!(
                "{pending} connects still pending in time"
            )));
        }
        match poll.poll(events, Some((deadline - now).min(Duration::from_millis(100)))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let Some(k) = ev.token().0.checked_sub(first).filter(|&k| k < batch.len()) else {
                continue;
            };
            if done[k] {
                continue;
            }
            let c = &batch[k];
            if let Some(e) = c.stream.take_error()? {
                return Err(BenchError::other(format!("connect #{}: {e}", first + k)));
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    done[k] = true;
                    pending -= 1;
                }
                Err(e) if e.kind() == ErrorKind::NotConnected => {}
                Err(e) => return Err(BenchError::other(format!("connect #{}: {e}", first + k))),
            }
        }
    }
    Ok(())
}
