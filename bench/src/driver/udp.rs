//! The UDP echo scenario: 64-byte datagrams, one in flight per client
//! socket, against each server's UDP echo (`bench-server --udp`).
//!
//! The load is one thread (mio, epoll) driving K client sockets, each
//! bound to a loopback port of its own and connected to the server's
//! address, so only the server's replies reach it. A client sends a
//! datagram ([`payload`]: its index, a sequence number, and pattern bytes
//! derived from both), waits for the echo, checks every byte
//! ([`check_echo`]), and sends the next. Every datagram sent has a
//! sequence number of its own, resends included: a datagram whose echo
//! has not come back within [`LOSS_TIMEOUT`] is counted lost and the next
//! one sent, and if its echo turns up afterwards it is recognised by its
//! older number, counted late and otherwise ignored. Any other echo (a
//! wrong byte, a wrong length, a number never sent) is a mismatch, which
//! aborts the run as in every other scenario.
//!
//! The measured window is the ping-pong scenario's ([`ServerWindow`]):
//! server CPU from schedstat, system calls and socket receives counted by
//! perf, per round trip.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::error::BenchError;
use super::load::Outcome;
use super::scenarios::{teardown, Metrics, ServerWindow, PING_MSG, PING_WARMUP};
use super::server_proc::{ServerProc, Variant};
use crate::pattern;
use crate::servers::Impl;

/// Size of every datagram: the ping-pong message size.
pub const UDP_MSG: usize = PING_MSG;

/// How long a client waits for an echo before it counts the datagram
/// lost and sends the next.
pub const LOSS_TIMEOUT: Duration = Duration::from_millis(200);

/// Bytes of a datagram before its pattern bytes: the client's index
/// (4 bytes) and the sequence number (8 bytes), little-endian.
const HEADER: usize = 12;

/// The datagram client `client` sends as its number `seq`: the header,
/// then the pattern from an offset both choose, so no two datagrams of a
/// run are alike.
pub fn payload(client: u32, seq: u64) -> [u8; UDP_MSG] {
    let mut d = [0u8; UDP_MSG];
    d[..4].copy_from_slice(&client.to_le_bytes());
    d[4..HEADER].copy_from_slice(&seq.to_le_bytes());
    let offset = pattern::message_offset(client as usize, seq, UDP_MSG - HEADER);
    d[HEADER..].copy_from_slice(pattern::window(offset, UDP_MSG - HEADER));
    d
}

/// What a datagram received by a client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Echo {
    /// The echo of the datagram in flight.
    Awaited,
    /// The echo of an earlier datagram, already counted lost.
    Late,
    /// Anything else: why it is wrong.
    Wrong(String),
}

/// Classifies `got`, received by client `client` while its datagram
/// number `in_flight` is awaited (every lower number was sent before).
pub fn check_echo(got: &[u8], client: u32, in_flight: u64) -> Echo {
    if got.len() != UDP_MSG {
        return Echo::Wrong(format!(
            "{} bytes echoed for a {UDP_MSG}-byte datagram",
            got.len()
        ));
    }
    let from = u32::from_le_bytes(got[..4].try_into().unwrap_or_default());
    let seq = u64::from_le_bytes(got[4..HEADER].try_into().unwrap_or_default());
    if from != client {
        return Echo::Wrong(format!("came with client {from}'s header"));
    }
    if seq > in_flight {
        return Echo::Wrong(format!("came with number {seq}, never sent"));
    }
    if let Some(at) = got.iter().zip(payload(client, seq)).position(|(a, b)| *a != b) {
        return Echo::Wrong(format!("byte {at} of datagram {seq} differs"));
    }
    if seq < in_flight {
        Echo::Late
    } else {
        Echo::Awaited
    }
}

/// What one [`UdpClients::run`] measured.
#[derive(Debug, Clone)]
pub struct UdpOutcome {
    /// The round trips: from just before the first send to the last echo
    /// received, each latency from a datagram's send to its echo.
    pub rounds: Outcome,
    /// Datagrams counted lost: no echo within [`LOSS_TIMEOUT`].
    pub lost: u64,
    /// Echoes that came back after their datagram was counted lost.
    pub late: u64,
}

/// One client socket and the datagram it has in flight.
struct Client {
    socket: UdpSocket,
    /// Number of the datagram in flight (or last sent).
    seq: u64,
    sent_at: Instant,
    waiting: bool,
}

impl Client {
    /// Sends the datagram after the one in flight.
    fn send_next(&mut self, i: usize, now: Instant) -> Result<(), BenchError> {
        self.seq += 1;
        self.sent_at = now;
        self.waiting = true;
        // A send that would block fails the run rather than pass for a
        // loss: with one datagram in flight the socket always has room.
        match self.socket.send(&payload(i as u32, self.seq)) {
            Ok(n) if n == UDP_MSG => Ok(()),
            Ok(n) => Err(BenchError::other(format!(
                "client {i}: sent {n} of {UDP_MSG} bytes"
            ))),
            Err(e) => Err(BenchError::other(format!("client {i}: send: {e}"))),
        }
    }

    /// When its datagram in flight counts as lost.
    fn gives_up_at(&self) -> Instant {
        self.sent_at + LOSS_TIMEOUT
    }

    /// Takes every datagram queued on this client, number `i`
    /// (edge-triggered: until the socket is empty), into `buf`, and sends
    /// the next datagram after its echo.
    fn receive(
        &mut self,
        i: usize,
        buf: &mut [u8],
        end: Instant,
        record: bool,
        tally: &mut Tally,
    ) -> Result<(), BenchError> {
        loop {
            let n = match self.socket.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(BenchError::other(format!("client {i}: receive: {e}"))),
            };
            match check_echo(&buf[..n], i as u32, self.seq) {
                Echo::Late => tally.late += 1,
                Echo::Wrong(why) => return Err(BenchError::Mismatch(format!("client {i}: {why}"))),
                // Its own echo, but it was counted lost as the run ended.
                Echo::Awaited if !self.waiting => tally.late += 1,
                Echo::Awaited => {
                    let t = Instant::now();
                    tally.completed += 1;
                    tally.last = t;
                    if record {
                        tally.latencies_ns.push((t - self.sent_at).as_nanos() as u64);
                    }
                    if t < end {
                        self.send_next(i, t)?;
                    } else {
                        self.waiting = false;
                    }
                }
            }
        }
    }
}

/// Counts as lost every datagram in flight past [`LOSS_TIMEOUT`], and
/// sends the next one in its place unless the run is over.
fn give_up_on_overdue(clients: &mut [Client], end: Instant, tally: &mut Tally) -> Result<(), BenchError> {
    let now = Instant::now();
    for (i, c) in clients.iter_mut().enumerate() {
        if !c.waiting || now < c.gives_up_at() {
            continue;
        }
        tally.lost += 1;
        if now < end {
            c.send_next(i, now)?;
        } else {
            c.waiting = false;
        }
    }
    Ok(())
}

/// Tallies of a run in progress.
struct Tally {
    completed: u64,
    lost: u64,
    late: u64,
    last: Instant,
    latencies_ns: Vec<u64>,
}

/// K client sockets connected to one server, registered with one poller.
pub struct UdpClients {
    poll: Poll,
    events: Events,
    clients: Vec<Client>,
    buf: Vec<u8>,
}

impl UdpClients {
    /// Binds `n` loopback sockets, each connected to `server`.
    pub fn connect(server: SocketAddr, n: usize) -> Result<UdpClients, BenchError> {
        if !server.ip().is_loopback() {
            return Err(BenchError::other(format!(
                "refusing to load {server}: not loopback"
            )));
        }
        let poll = Poll::new()?;
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            socket.connect(server)?;
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)?;
            clients.push(Client {
                socket,
                seq: 0,
                sent_at: Instant::now(),
                waiting: false,
            });
        }
        Ok(UdpClients {
            poll,
            events: Events::with_capacity(256),
            clients,
            // Room for any datagram, so a longer echo shows as such.
            buf: vec![0; 64 * 1024],
        })
    }

    /// Runs round trips on every client until `end` (a client sends no
    /// new datagram once a round ends at or after it), failing if not
    /// done by `limit`. With `record`, every round trip time is kept.
    pub fn run(&mut self, end: Instant, record: bool, limit: Instant) -> Result<UdpOutcome, BenchError> {
        let start = Instant::now();
        let mut tally = Tally {
            completed: 0,
            lost: 0,
            late: 0,
            last: start,
            latencies_ns: if record {
                Vec::with_capacity(1 << 20)
            } else {
                Vec::new()
            },
        };
        let UdpClients {
            poll,
            events,
            clients,
            buf,
        } = self;
        for (i, c) in clients.iter_mut().enumerate() {
            c.send_next(i, start)?;
        }
        while clients.iter().any(|c| c.waiting) {
            let now = Instant::now();
            if now >= limit {
                return Err(BenchError::other("timed out with datagrams in flight"));
            }
            let next_loss = clients
                .iter()
                .filter(|c| c.waiting)
                .map(Client::gives_up_at)
                .min();
            let wake = next_loss.unwrap_or(limit).min(limit);
            let wait = wake
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            match poll.poll(events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if let Some(c) = clients.get_mut(i) {
                    c.receive(i, buf, end, record, &mut tally)?;
                }
            }
            give_up_on_overdue(clients, end, &mut tally)?;
        }
        Ok(UdpOutcome {
            rounds: Outcome {
                elapsed: tally.last - start,
                completed: tally.completed,
                latencies_ns: tally.latencies_ns,
            },
            lost: tally.lost,
            late: tally.late,
        })
    }
}

/// One measurement: a fresh UDP echo server of `imp`, `clients` client
/// sockets for `secs` seconds after a warm-up.
pub fn measure(exe: &Path, imp: Impl, clients: usize, secs: f64) -> Result<Metrics, BenchError> {
    if !imp.has_udp() {
        return Err(BenchError::other(format!("{imp} has no UDP echo")));
    }
    let server = ServerProc::start(exe, imp, Variant::Udp)?;
    let mut load = UdpClients::connect(server.addr, clients)?;
    let warm = Instant::now() + PING_WARMUP;
    load.run(warm, false, warm + Duration::from_secs(30))?;
    let window = ServerWindow::open(&server)?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let out = load.run(end, true, end + Duration::from_secs(30))?;
    if out.rounds.completed == 0 {
        return Err(BenchError::other(format!(
            "no datagram echoed in {secs} s ({} lost)",
            out.lost
        )));
    }
    let mut m = window.close(&server, out.rounds)?;
    teardown(server, load);
    m.push(("lost", out.lost as f64));
    m.push(("late", out.late as f64));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_client_and_number_and_differ() {
        let a = payload(3, 7);
        assert_eq!(a.len(), UDP_MSG);
        assert_eq!(&a[..4], &3u32.to_le_bytes());
        assert_eq!(&a[4..HEADER], &7u64.to_le_bytes());
        assert_eq!(payload(3, 7), a, "the same datagram twice");
        assert_ne!(
            payload(3, 8)[HEADER..],
            a[HEADER..],
            "next number, other pattern bytes"
        );
        assert_ne!(
            payload(4, 7)[HEADER..],
            a[HEADER..],
            "other client, other pattern bytes"
        );
    }

    #[test]
    fn echoes_are_awaited_late_or_wrong() {
        assert_eq!(check_echo(&payload(2, 5), 2, 5), Echo::Awaited);
        assert_eq!(check_echo(&payload(2, 4), 2, 5), Echo::Late);
        let wrong = |got: &[u8], seq| matches!(check_echo(got, 2, seq), Echo::Wrong(_));
        assert!(wrong(&payload(2, 6), 5), "a number never sent");
        assert!(wrong(&payload(1, 5), 5), "another client's datagram");
        assert!(wrong(&payload(2, 5)[..63], 5), "short");
        assert!(wrong(&[payload(2, 5).as_slice(), &[0]].concat(), 5), "long");
        let mut flipped = payload(2, 5);
        flipped[40] ^= 1;
        assert_eq!(
            check_echo(&flipped, 2, 5),
            Echo::Wrong("byte 40 of datagram 5 differs".into())
        );
        // A late echo is checked as thoroughly as the awaited one.
        let mut late = payload(2, 3);
        late[HEADER] ^= 0x80;
        assert!(wrong(&late, 5));
    }

    /// A loopback echo on a thread of its own that hands each datagram
    /// received to `reply` for what to send back, and ends once no
    /// datagram has come for 300 ms.
    fn echo_thread(
        mut reply: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let addr = socket.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                for d in reply(&buf[..n]) {
                    socket.send_to(&d, from).unwrap();
                }
            }
        });
        (addr, thread)
    }

    #[test]
    fn a_held_datagram_is_counted_lost_and_its_late_echo_ignored() {
        // Holds the first datagram, then echoes it just before the second.
        let mut held: Option<Option<Vec<u8>>> = None;
        let (addr, server) = echo_thread(move |d| match held.take() {
            None => {
                held = Some(Some(d.to_vec()));
                vec![]
            }
            Some(first) => {
                held = Some(None);
                first.into_iter().chain([d.to_vec()]).collect()
            }
        });
        let mut load = UdpClients::connect(addr, 1).unwrap();
        let start = Instant::now();
        let out = load
            .run(
                start + Duration::from_millis(300),
                true,
                start + Duration::from_secs(5),
            )
            .unwrap();
        drop(load);
        server.join().unwrap();
        assert_eq!((out.lost, out.late), (1, 1), "{out:?}");
        assert!(out.rounds.completed > 0);
        assert_eq!(out.rounds.latencies_ns.len() as u64, out.rounds.completed);
        assert!(out.rounds.elapsed >= LOSS_TIMEOUT);
    }

    #[test]
    fn a_changed_byte_is_a_mismatch() {
        let (addr, server) = echo_thread(|d| {
            let mut d = d.to_vec();
            d[UDP_MSG - 1] ^= 1;
            vec![d]
        });
        let mut load = UdpClients::connect(addr, 2).unwrap();
        let start = Instant::now();
        let err = load
            .run(
                start + Duration::from_millis(50),
                false,
                start + Duration::from_secs(5),
            )
            .unwrap_err();
        drop(load);
        server.join().unwrap();
        assert!(matches!(err, BenchError::Mismatch(_)), "{err}");
    }
}
