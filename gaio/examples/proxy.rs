//! TCP proxy: every client connection is relayed to an upstream server,
//! both ways, with back-pressure on each side.
//!
//! `cargo run --release -p gaio --example proxy -- --listen 127.0.0.1:7881
//! --upstream 127.0.0.1:7878` prints the bound address on its first line,
//! then relays until killed; with `--until-stdin-closes` it stops cleanly
//! when its standard input closes.
//!
//! The watcher accepts clients and dials the upstream itself (`accept`,
//! `connect`): no thread blocks. Each direction has at most one read in
//! flight, into the watcher's swap memory, and the next read waits until
//! its bytes have been written to the other side. So a fast sender facing
//! a slow receiver is slowed down by TCP flow control, and the proxy's
//! memory stays bounded (one swap slice per direction and connection)
//! however much data passes. End of stream on one side becomes a `shutdown`
//! of the other side's write half, once everything before it is written;
//! when both directions have ended, the pair is freed.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use gaio::{Buffer, Bytes, Conn, Error, Listener, Submit, Watcher};

/// Accepts kept pending on the listener.
const PENDING_ACCEPTS: usize = 16;

/// One side of a relayed pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The connection the proxy accepted.
    Client,
    /// The connection the proxy dialled.
    Upstream,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a request is for: the pair it belongs to (a slot number) and its
/// part in the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    /// An accept on the listener.
    Accept,
    /// The dial of pair `.0`'s upstream.
    Connect(usize),
    /// A read from side `.1` of pair `.0`.
    Read(usize, Side),
    /// A write to side `.1` of pair `.0`.
    Write(usize, Side),
    /// The shutdown of side `.1`'s write half, in pair `.0`.
    Shutdown(usize, Side),
}

/// A client and its upstream.
#[derive(Debug)]
struct Pair {
    conns: [Option<Conn>; 2],
    /// Directions whose source reached end of stream and whose
    /// destination's write half has been shut down (index: the source).
    ended: [bool; 2],
}

impl Pair {
    fn conn(&self, side: Side) -> Option<Conn> {
        self.conns[side.index()]
    }
}

/// The relay's state: the pairs, in slots reused once freed.
#[derive(Debug, Default)]
pub struct Relay {
    pairs: Vec<Option<Pair>>,
    free_slots: Vec<usize>,
}

impl Relay {
    fn insert(&mut self, pair: Pair) -> usize {
        match self.free_slots.pop() {
            Some(slot) => {
                self.pairs[slot] = Some(pair);
                slot
            }
            None => {
                self.pairs.push(Some(pair));
                self.pairs.len() - 1
            }
        }
    }

    /// The pair in `slot`, if the completion `from` belongs to it (its
    /// connections, or a connect in flight): completions of requests on a
    /// pair already torn down are ignored.
    fn pair(&mut self, slot: usize, from: Conn, side: Option<Side>) -> Option<&mut Pair> {
        let pair = self.pairs.get_mut(slot)?.as_mut()?;
        match side {
            Some(side) if pair.conn(side) != Some(from) => None,
            _ => Some(pair),
        }
    }

    /// Frees both connections of the pair in `slot` (their pending
    /// requests complete with `ConnClosed`, ignored) and frees the slot.
    fn tear_down(&mut self, w: &mut impl Submit, slot: usize) {
        if let Some(pair) = self.pairs.get_mut(slot).and_then(Option::take) {
            for conn in pair.conns.into_iter().flatten() {
                let _ = w.free(conn);
            }
            self.free_slots.push(slot);
        }
    }
}

/// Relays every connection accepted on `listener` to `upstream` until the
/// watcher is closed.
pub fn serve(w: &mut Watcher<Ctx, Bytes>, listener: TcpListener, upstream: SocketAddr) -> Result<(), Error> {
    let listener = w.watch_listener(listener)?;
    for _ in 0..PENDING_ACCEPTS {
        w.accept(listener, Ctx::Accept)?;
    }
    let mut relay = Relay::default();
    let mut batch = Vec::new();
    while w.wait_io(&mut batch).is_ok() {
        for c in batch.drain(..) {
            if matches!(c.error, Some(Error::WatcherClosed)) {
                continue; // closing: nothing to resubmit
            }
            step(w, &mut relay, listener, upstream, c)?;
        }
    }
    Ok(())
}

/// Moves the relay on by one completion.
fn step(
    w: &mut Watcher<Ctx, Bytes>,
    relay: &mut Relay,
    listener: Listener,
    upstream: SocketAddr,
    c: gaio::Completion<Ctx, Bytes>,
) -> Result<(), Error> {
    match c.context {
        Ctx::Accept => {
            if c.error.is_none() {
                let client = c.conn;
                let slot = relay.insert(Pair {
                    conns: [Some(client), None],
                    ended: [false; 2],
                });
                // Refused at once when the process is out of descriptors:
                // this client goes, the others are served on.
                if let Err(refused) = w.connect(upstream, Ctx::Connect(slot)) {
                    eprintln!("proxy: cannot dial {upstream}: {}", refused.error);
                    relay.tear_down(w, slot);
                }
            }
            w.accept(listener, Ctx::Accept)?;
        }
        Ctx::Connect(slot) => {
            let Some(pair) = relay.pair(slot, c.conn, None) else {
                return Ok(());
            };
            if c.error.is_some() {
                // The upstream is unreachable: drop the client.
                relay.tear_down(w, slot);
                return Ok(());
            }
            pair.conns[Side::Upstream.index()] = Some(c.conn);
            for side in [Side::Client, Side::Upstream] {
                let conn = pair.conn(side).expect("both sides are connected");
                w.read_swap(conn, Ctx::Read(slot, side))?;
            }
        }
        Ctx::Read(slot, from) => {
            let Some(pair) = relay.pair(slot, c.conn, Some(from)) else {
                return Ok(());
            };
            let to = pair.conn(from.other()).expect("both sides are connected");
            match (c.error, c.buffer) {
                // Relay what was read; the next read waits for this write.
                (None, Buffer::Swap(data)) => w.write(to, Ctx::Write(slot, from.other()), data)?,
                // The source ended: end the destination's writes too, once
                // everything before is written.
                (Some(Error::Eof), _) => w.shutdown(to, Ctx::Shutdown(slot, from.other()))?,
                _ => relay.tear_down(w, slot),
            }
        }
        Ctx::Write(slot, to) => {
            let Some(pair) = relay.pair(slot, c.conn, Some(to)) else {
                return Ok(());
            };
            let from = pair.conn(to.other()).expect("both sides are connected");
            match c.error {
                None => w.read_swap(from, Ctx::Read(slot, to.other()))?,
                Some(_) => relay.tear_down(w, slot),
            }
        }
        Ctx::Shutdown(slot, to) => {
            let Some(pair) = relay.pair(slot, c.conn, Some(to)) else {
                return Ok(());
            };
            pair.ended[to.other().index()] = true;
            if c.error.is_some() || pair.ended == [true; 2] {
                relay.tear_down(w, slot);
            }
        }
    }
    Ok(())
}

const USAGE: &str = "usage: proxy --upstream HOST:PORT [--listen HOST:PORT] [--until-stdin-closes]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut upstream, mut until_stdin_closes) = ("127.0.0.1:0".to_string(), None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs HOST:PORT")?,
            "--upstream" => upstream = Some(args.next().ok_or("--upstream needs HOST:PORT")?),
            "--until-stdin-closes" => until_stdin_closes = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}").into()),
        }
    }
    let upstream = upstream
        .ok_or(USAGE)?
        .to_socket_addrs()?
        .next()
        .ok_or("--upstream resolves to no address")?;
    let listener = gaio::listen(&listen)?;
    let mut w: Watcher<Ctx, Bytes> = Watcher::new()?;
    println!("{}", listener.local_addr()?);
    if until_stdin_closes {
        let mut closer = w.submitter();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            closer.close();
        });
    }
    serve(&mut w, listener, upstream)?;
    Ok(())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    //! The proxy under a fast sender and a slow receiver: every byte
    //! arrives, and the proxy's memory stays bounded.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::thread;
    use std::time::{Duration, Instant};

    use gaio::{Bytes, Submit, Watcher};

    const TOTAL: usize = 64 << 20;
    const LIMIT: Duration = Duration::from_secs(60);

    /// This process's resident memory, in bytes.
    fn rss() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        let kib: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/self/status");
        kib * 1024
    }

    fn pattern(at: usize) -> u8 {
        (at.wrapping_mul(2_654_435_761) >> 13) as u8
    }

    #[test]
    fn a_fast_client_and_a_slow_upstream_keep_the_proxy_small() {
        let upstream = gaio::listen("127.0.0.1:0").unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let listener = gaio::listen("127.0.0.1:0").unwrap();
        let proxy_addr = listener.local_addr().unwrap();
        let mut w: Watcher<super::Ctx, Bytes> = Watcher::new().unwrap();
        let mut closer = w.submitter();
        let proxy = thread::spawn(move || super::serve(&mut w, listener, upstream_addr));

        // The client sends 64 MiB as fast as loopback takes it, then its
        // end of stream, and reads the upstream's reply to the end.
        let chunk: Vec<u8> = (0..1 << 20).map(pattern).collect();
        let client = thread::spawn(move || {
            let mut s = TcpStream::connect(proxy_addr).unwrap();
            s.set_write_timeout(Some(LIMIT)).unwrap();
            s.set_read_timeout(Some(LIMIT)).unwrap();
            for _ in 0..TOTAL >> 20 {
                s.write_all(&chunk).unwrap();
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).unwrap();
            reply
        });

        // The upstream reads slowly (64 KiB, then a pause), checking every
        // byte, while this thread samples the process's memory.
        let (mut up, _) = upstream.accept().unwrap();
        up.set_read_timeout(Some(LIMIT)).unwrap();
        let base = rss();
        let mut peak = base;
        let (mut got, mut buf) = (0usize, vec![0u8; 64 << 10]);
        let end = Instant::now() + LIMIT;
        loop {
            assert!(
                Instant::now() < end,
                "only {got} of {TOTAL} bytes relayed in {LIMIT:?}"
            );
            let n = up.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, pattern((got + i) % (1 << 20)), "byte {} differs", got + i);
            }
            got += n;
            peak = peak.max(rss());
            thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(got, TOTAL, "end of stream before every byte arrived");
        // The other direction works, and its end of stream is relayed too.
        up.write_all(b"all received").unwrap();
        drop(up);
        assert_eq!(client.join().unwrap(), b"all received");
        closer.close();
        proxy.join().unwrap().unwrap();
        // 64 MiB went through a proxy allowed to hold one swap slab per
        // direction and pair: the growth stays a few slabs, far below the
        // data that passed.
        let grew = peak.saturating_sub(base);
        assert!(grew < 8 << 20, "memory grew by {} KiB while relaying", grew >> 10);
    }
}
