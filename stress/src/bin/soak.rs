//! `cargo xtask soak --secs N`: a long echo run through gaio on both ends,
//! every byte checked, descriptors and memory watched.
//!
//! * The server is a gaio echo server in this process: a background-mode
//!   watcher on its own thread, fed by an accepting thread. It reads with
//!   swap memory (echoed back without a copy), with its own buffers and with
//!   generous deadlines, chosen at random per read.
//! * The client is an inline-mode watcher on the main thread driving
//!   `--conns` connections (default 2,000). Each connection sends messages
//!   of random size (log-uniform, 1 B ..= `--max-size`, default 256 KiB)
//!   and reads the echo back with a random mix of `read` (own buffer),
//!   `read_swap`, `read_full` and their `_timeout` forms (60 s deadlines,
//!   which never pass in a healthy run). Every byte read is compared with
//!   the pattern the connection sent (see `gaio_testkit::pattern::Periodic`).
//! * About one message in 200 ends with the connection being freed and
//!   replaced by a new one, so descriptor numbers are reused throughout.
//!
//! A progress line goes to stderr every second. At the end the tool checks
//! that no byte mismatched, no request failed, the number of open
//! descriptors never exceeded what the connections explain and returns to
//! its starting value after teardown, and resident memory at the end of
//! the run is within a bound of its value at the start of the steady state
//! (after warm-up): growth of at most max(64 MiB, 50 %). It exits non-zero
//! on any failure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gaio::{Buffer, Bytes, Completion, Conn, Error, IoBuf, IoBufMut, Mode, Op, Submit, Watcher};
use gaio_stress::args::Args;
use gaio_stress::{human_bytes, poll_until, procfs};
use gaio_testkit::nofile::set_soft_limit;
use gaio_testkit::pattern::{stream_offset, Periodic, PERIOD};
use gaio_testkit::rng::SplitMix64;

/// Deadline given to `_timeout` reads: far beyond any healthy round trip.
const GENEROUS: Duration = Duration::from_secs(60);
/// How long in-flight messages may take to finish once the run ends.
const GRACE: Duration = Duration::from_secs(30);
/// Buffers up to this capacity are kept for the next message; larger ones
/// are dropped, so memory follows the bytes in flight, not the largest
/// message each connection ever saw.
const KEEP_CAPACITY: usize = 4096;
/// One message in `CHURN` replaces its connection with a new one.
const CHURN: u64 = 200;

fn main() -> ExitCode {
    let args = match Args::parse(
        "soak",
        &[
            ("secs", "how long to run (default 30)"),
            ("conns", "connections (default 2000)"),
            ("max-size", "largest message in bytes (default 262144)"),
            ("seed", "PRNG seed (default: from the clock)"),
        ],
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(report) => {
            report.print(&config);
            if report.failures.is_empty() {
                eprintln!("soak: PASS");
                ExitCode::SUCCESS
            } else {
                for f in &report.failures {
                    eprintln!("soak: FAIL: {f}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Config {
    secs: u64,
    conns: usize,
    max_size: usize,
    seed: u64,
}

impl Config {
    fn from_args(args: &Args) -> Result<Config, String> {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let c = Config {
            secs: args.get("secs", 30)?,
            conns: args.get("conns", 2000)?,
            max_size: args.get("max-size", 256 * 1024)?,
            seed: args.get("seed", clock)?,
        };
        if c.secs == 0 || c.conns == 0 || c.max_size == 0 {
            return Err("--secs, --conns and --max-size must be at least 1".into());
        }
        Ok(c)
    }
}

// ----- the server ------------------------------------------------------------

/// A server buffer: a swap slice echoed back as it is, or an own vector.
enum SrvBuf {
    Swap(Bytes),
    Own(Vec<u8>),
}

impl IoBuf for SrvBuf {
    fn as_bytes(&self) -> &[u8] {
        match self {
            SrvBuf::Swap(b) => b,
            SrvBuf::Own(v) => v,
        }
    }
}

impl IoBufMut for SrvBuf {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // Reads are only ever submitted with `Own`; a `Swap` would be
        // copied into one first, so this is total.
        if let SrvBuf::Swap(b) = self {
            *self = SrvBuf::Own(b.to_vec());
        }
        match self {
            SrvBuf::Own(v) => v,
            SrvBuf::Swap(_) => &mut [],
        }
    }
}

/// What the server counted, shared with the main thread.
#[derive(Default)]
struct SrvStats {
    live: AtomicU64,
    accepted: AtomicU64,
    eofs: AtomicU64,
    errors: AtomicU64,
    echoed: AtomicU64,
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<SrvStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(seed: u64) -> Result<Server, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SrvStats::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop2, stats2) = (Arc::clone(&stop), Arc::clone(&stats));
        let looper = std::thread::Builder::new()
            .name("soak-server".into())
            .spawn(move || {
                let w: Result<Watcher<u8, SrvBuf>, _> = gaio::Builder::new().mode(Mode::Background).build();
                match w {
                    Ok(w) => {
                        let _ = tx.send(Ok(w.submitter()));
                        serve(w, &stop2, &stats2, seed);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let mut submitter = rx
            .recv()
            .map_err(|_| "server thread died".to_string())?
            .map_err(|e| format!("server watcher: {e}"))?;
        let (stop3, stats3) = (Arc::clone(&stop), Arc::clone(&stats));
        let acceptor = std::thread::Builder::new()
            .name("soak-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop3.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    match submitter.watch(stream) {
                        Ok(conn) => {
                            stats3.accepted.fetch_add(1, Ordering::Relaxed);
                            stats3.live.fetch_add(1, Ordering::Relaxed);
                            if submitter.read_swap(conn, 0).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            eprintln!("soak: server: watch failed: {e}");
                            stats3.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Server {
            addr,
            stop,
            stats,
            threads: vec![looper, acceptor],
        })
    }

    /// Stops both threads; the watcher closes every connection it still has.
    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accepting thread; the connection itself is discarded.
        let _ = TcpStream::connect(self.addr);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The server loop: echo what is read, then read again with a random kind.
fn serve(mut w: Watcher<u8, SrvBuf>, stop: &AtomicBool, stats: &SrvStats, seed: u64) {
    let mut rng = SplitMix64::new(seed ^ 0x5e4e);
    let mut batch = Vec::new();
    let mut reported = 0;
    while !stop.load(Ordering::Acquire) {
        if let Err(e) = w.wait_io_timeout(&mut batch, Duration::from_millis(100)) {
            eprintln!("soak: server: wait_io failed: {e}");
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for c in batch.drain(..) {
            let conn = c.conn;
            let ok = match (c.error, c.buffer) {
                (Some(Error::Eof), _) => {
                    stats.eofs.fetch_add(1, Ordering::Relaxed);
                    stats.live.fetch_sub(1, Ordering::Relaxed);
                    w.free(conn).is_ok()
                }
                (Some(e), _) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    if reported < 10 {
                        reported += 1;
                        eprintln!("soak: server: {:?} on {conn:?} failed: {e}", c.op);
                    }
                    stats.live.fetch_sub(1, Ordering::Relaxed);
                    w.free(conn).is_ok()
                }
                (None, buffer) if c.op.is_read() => {
                    stats.echoed.fetch_add(c.bytes as u64, Ordering::Relaxed);
                    let out = match buffer {
                        Buffer::Swap(b) => SrvBuf::Swap(b),
                        Buffer::User(SrvBuf::Own(mut v)) => {
                            v.truncate(c.bytes);
                            SrvBuf::Own(v)
                        }
                        Buffer::User(other) => other,
                        // Reads always carry a buffer or swap memory.
                        Buffer::None => unreachable!("a read completed without a buffer"),
                    };
                    w.write(conn, 0, out).is_ok()
                }
                (None, buffer) => {
                    let own = match buffer {
                        Buffer::User(SrvBuf::Own(v)) if v.capacity() <= KEEP_CAPACITY => v,
                        _ => Vec::new(),
                    };
                    server_read(&mut w, &mut rng, conn, own)
                }
            };
            if ok {
                continue;
            }
            // Only a closed watcher refuses requests.
            return;
        }
    }
}

fn server_read(w: &mut Watcher<u8, SrvBuf>, rng: &mut SplitMix64, conn: Conn, mut own: Vec<u8>) -> bool {
    let kind = rng.below(3);
    if kind == 0 {
        return w.read_swap(conn, 0).is_ok();
    }
    own.resize(rng.log_uniform(1, 64 * 1024), 0);
    let buf = SrvBuf::Own(own);
    if kind == 1 {
        w.read(conn, 1, buf).is_ok()
    } else {
        w.read_timeout(conn, 2, buf, Instant::now() + GENEROUS).is_ok()
    }
}

// ----- the client ------------------------------------------------------------

/// One client connection and the message it has in flight.
struct Client {
    conn: Conn,
    /// Identity of the byte stream this connection sends (pattern key).
    stream: u64,
    /// Stream offset sent so far and read back (verified) so far.
    sent: u64,
    recv: u64,
    writing: bool,
    reading: bool,
    /// Buffers kept between messages (small ones only).
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
}

impl Client {
    fn busy(&self) -> bool {
        self.writing || self.reading || self.recv < self.sent
    }
}

#[derive(Default)]
struct Counters {
    msgs: u64,
    bytes_out: u64,
    bytes_in: u64,
    errors: u64,
    mismatches: u64,
    churned: u64,
    reads_by_kind: [u64; 6],
}

struct Report {
    elapsed: Duration,
    counters: Counters,
    server_accepted: u64,
    server_eofs: u64,
    server_errors: u64,
    server_echoed: u64,
    fd_base: usize,
    fd_infra: usize,
    fd_max: usize,
    fd_end: usize,
    rss_steady: u64,
    rss_min: u64,
    rss_max: u64,
    rss_end: u64,
    rss_bound: u64,
    failures: Vec<String>,
}

impl Report {
    fn print(&self, config: &Config) {
        let c = &self.counters;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        eprintln!("soak: ---- summary (seed {}) ----", config.seed);
        eprintln!(
            "soak: {} s, {} connections ({} replaced), {} messages ({:.0}/s)",
            self.elapsed.as_secs(),
            config.conns,
            c.churned,
            c.msgs,
            c.msgs as f64 / secs
        );
        eprintln!(
            "soak: bytes sent {} / received and verified {} ({}/s each way); server echoed {}",
            human_bytes(c.bytes_out),
            human_bytes(c.bytes_in),
            human_bytes((c.bytes_in as f64 / secs) as u64),
            human_bytes(self.server_echoed)
        );
        eprintln!(
            "soak: reads by kind: read {}, read_swap {}, read_full {}, read_timeout {}, read_full_timeout {}, read_swap_timeout {}",
            c.reads_by_kind[0], c.reads_by_kind[1], c.reads_by_kind[2], c.reads_by_kind[3], c.reads_by_kind[4], c.reads_by_kind[5]
        );
        eprintln!(
            "soak: client errors {}, mismatches {}; server accepted {}, EOFs {}, errors {}",
            c.errors, c.mismatches, self.server_accepted, self.server_eofs, self.server_errors
        );
        eprintln!(
            "soak: descriptors: {} at start, {} with listener and watchers, at most {} during the run (bound {}), {} after teardown",
            self.fd_base,
            self.fd_infra,
            self.fd_max,
            self.fd_infra + 2 * config.conns + FD_SLACK,
            self.fd_end
        );
        eprintln!(
            "soak: VmRSS: {} at steady start, {} .. {} during the run, {} at the end (bound {})",
            human_bytes(self.rss_steady * 1024),
            human_bytes(self.rss_min * 1024),
            human_bytes(self.rss_max * 1024),
            human_bytes(self.rss_end * 1024),
            human_bytes(self.rss_bound * 1024)
        );
    }
}

/// Descriptors allowed beyond two per connection while connections are
/// being replaced (the server frees its side only after seeing EOF).
const FD_SLACK: usize = 16;

type Ctx = u32;

struct ClientSide {
    w: Watcher<Ctx, Vec<u8>>,
    clients: Vec<Option<Client>>,
    pattern: Periodic,
    rng: SplitMix64,
    max_size: usize,
    next_stream: u64,
    counters: Counters,
    addr: SocketAddr,
    reported: u32,
}

impl ClientSide {
    fn connect(&mut self, slot: usize) -> Result<(), String> {
        let stream = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
        let conn = self.w.watch(stream).map_err(|e| format!("watch: {e}"))?;
        self.next_stream += 1;
        self.clients[slot] = Some(Client {
            conn,
            stream: self.next_stream,
            sent: 0,
            recv: 0,
            writing: false,
            reading: false,
            wbuf: Vec::new(),
            rbuf: Vec::new(),
        });
        Ok(())
    }

    fn start_message(&mut self, slot: usize) -> Result<(), String> {
        let size = self.rng.log_uniform(1, self.max_size);
        let Some(cl) = self.clients[slot].as_mut() else {
            return Ok(());
        };
        let mut buf = std::mem::take(&mut cl.wbuf);
        buf.resize(size, 0);
        self.pattern.fill(stream_offset(cl.stream, cl.sent), &mut buf);
        cl.sent += size as u64;
        cl.writing = true;
        let conn = cl.conn;
        self.w
            .write(conn, slot as Ctx, buf)
            .map_err(|e| format!("write refused: {e}"))?;
        self.counters.bytes_out += size as u64;
        self.submit_read(slot)
    }

    /// Submits the next read of `slot`'s echo, of a random kind.
    fn submit_read(&mut self, slot: usize) -> Result<(), String> {
        let kind = self.rng.below(6) as usize;
        let cl = self.clients[slot].as_mut().expect("live slot");
        let remaining = (cl.sent - cl.recv) as usize;
        cl.reading = true;
        let (conn, ctx) = (cl.conn, slot as Ctx);
        let mut buf = std::mem::take(&mut cl.rbuf);
        let deadline = Instant::now() + GENEROUS;
        self.counters.reads_by_kind[kind] += 1;
        let r = match kind {
            0 | 3 => {
                // Own buffer, possibly larger than what is left: a read
                // returns what has arrived.
                buf.resize(self.rng.range(1, (2 * remaining).min(self.max_size).max(1)), 0);
                if kind == 0 {
                    self.w.read(conn, ctx, buf)
                } else {
                    self.w.read_timeout(conn, ctx, buf, deadline)
                }
            }
            1 => self.w.read_swap(conn, ctx),
            5 => self.w.read_swap_timeout(conn, ctx, deadline),
            _ => {
                // Never more than what is left, or it would wait forever.
                buf.resize(self.rng.range(1, remaining), 0);
                if kind == 2 {
                    self.w.read_full(conn, ctx, buf)
                } else {
                    self.w.read_full_timeout(conn, ctx, buf, deadline)
                }
            }
        };
        r.map_err(|e| format!("read refused: {e}"))
    }

    fn fail_conn(&mut self, slot: usize, what: String) {
        self.counters.errors += 1;
        if self.reported < 10 {
            self.reported += 1;
            eprintln!("soak: client: {what}");
        }
        if let Some(cl) = self.clients[slot].take() {
            let _ = self.w.free(cl.conn);
        }
    }

    /// Handles one completion; returns true if the slot's message finished.
    fn on_completion(&mut self, c: Completion<Ctx, Vec<u8>>) -> bool {
        let slot = c.context as usize;
        let Some(cl) = self.clients[slot].as_mut() else {
            // Its connection was freed after an error; the rest of its
            // requests complete with ConnClosed.
            return false;
        };
        if cl.conn != c.conn {
            let what = format!("completion for {:?} reached slot of {:?}", c.conn, cl.conn);
            self.fail_conn(slot, what);
            return false;
        }
        if let Some(e) = &c.error {
            let what = format!("{:?} on {:?} failed after {} bytes: {e}", c.op, c.conn, c.bytes);
            self.fail_conn(slot, what);
            return false;
        }
        match c.op {
            Op::Write => {
                cl.writing = false;
                let len = c.buffer.as_bytes().len();
                if let Buffer::User(b) = c.buffer {
                    if b.capacity() <= KEEP_CAPACITY {
                        cl.wbuf = b;
                    }
                }
                if c.bytes != len {
                    let what = format!("write reported {} of {len} bytes without error", c.bytes);
                    self.fail_conn(slot, what);
                    return false;
                }
            }
            Op::Read | Op::ReadFull => {
                cl.reading = false;
                let data = c.data();
                let n = data.len() as u64;
                if let Err(at) = self.pattern.check(stream_offset(cl.stream, cl.recv), data) {
                    self.counters.mismatches += 1;
                    let what = format!(
                        "MISMATCH on {:?} stream {} at offset {} ({:?}, {} bytes)",
                        c.conn,
                        cl.stream,
                        cl.recv + at as u64,
                        c.op,
                        n
                    );
                    self.fail_conn(slot, what);
                    return false;
                }
                let full_len = c.buffer.as_bytes().len();
                if n == 0 || cl.recv + n > cl.sent || (c.op == Op::ReadFull && data.len() != full_len) {
                    let what = format!(
                        "{:?} returned {n} bytes with {} outstanding (buffer {full_len})",
                        c.op,
                        cl.sent - cl.recv
                    );
                    self.fail_conn(slot, what);
                    return false;
                }
                cl.recv += n;
                self.counters.bytes_in += n;
                if let Buffer::User(b) = c.buffer {
                    if b.capacity() <= KEEP_CAPACITY {
                        cl.rbuf = b;
                    }
                }
                if cl.recv < cl.sent {
                    if let Err(e) = self.submit_read(slot) {
                        self.fail_conn(slot, e);
                    }
                    return false;
                }
            }
            other => {
                let what = format!("a client got a completion for {other:?}, which it never submits");
                self.fail_conn(slot, what);
                return false;
            }
        }
        let cl = self.clients[slot].as_ref().expect("live slot");
        !cl.busy()
    }
}

fn run(config: &Config) -> Result<Report, String> {
    // Two descriptors per connection (client and server side) plus margin.
    let want = (2 * config.conns + 256) as u64;
    let limit = set_soft_limit(want.max(1024));
    if limit < want {
        return Err(format!("descriptor limit {limit} is below the {want} needed"));
    }
    let fd_count = || procfs::fd_count(None).unwrap_or(usize::MAX);
    let rss = || gaio_testkit::memory::rss_kib(None).unwrap_or(0);
    let fd_base = fd_count();
    let mut failures = Vec::new();

    let server = Server::start(config.seed)?;
    let w: Watcher<Ctx, Vec<u8>> = Watcher::new().map_err(|e| format!("client watcher: {e}"))?;
    let fd_infra = fd_count();
    let mut side = ClientSide {
        w,
        clients: (0..config.conns).map(|_| None).collect(),
        pattern: Periodic::seeded(config.seed, PERIOD),
        rng: SplitMix64::new(config.seed),
        max_size: config.max_size,
        next_stream: 0,
        counters: Counters::default(),
        addr: server.addr,
        reported: 0,
    };
    eprintln!(
        "soak: {} connections to {}, messages 1 B ..= {}, {} s, seed {}",
        config.conns,
        server.addr,
        human_bytes(config.max_size as u64),
        config.secs,
        config.seed
    );
    let t_connect = Instant::now();
    for slot in 0..config.conns {
        // Keep the listen backlog short: a full backlog drops SYNs, and a
        // dropped SYN costs a one-second retransmission.
        let accepted = || server.stats.accepted.load(Ordering::Relaxed) as usize;
        poll_until(Duration::from_secs(5), || slot < accepted() + 64);
        side.connect(slot)?;
    }
    eprintln!("soak: connected in {:.1} s", t_connect.elapsed().as_secs_f64());
    for slot in 0..config.conns {
        side.start_message(slot)?;
    }

    let start = Instant::now();
    let end = start + Duration::from_secs(config.secs);
    // Steady state starts after a warm-up: a fifth of the run, 1 to 5 s.
    let warmup = Duration::from_secs((config.secs / 5).clamp(1, 5));
    let mut rss_steady = None;
    let (mut rss_min, mut rss_max) = (u64::MAX, 0);
    let mut fd_max = 0;
    let mut next_tick = start + Duration::from_secs(1);
    let mut batch = Vec::new();
    let mut stopping = false;
    loop {
        let now = Instant::now();
        if !stopping && now >= end {
            stopping = true;
        }
        if let Err(e) = side.w.wait_io_timeout(&mut batch, Duration::from_millis(50)) {
            return Err(format!("client wait_io: {e}"));
        }
        for c in batch.drain(..) {
            let slot = c.context as usize;
            if !side.on_completion(c) {
                continue;
            }
            side.counters.msgs += 1;
            if side.rng.below(CHURN) == 0 {
                // Replace the connection: the old one is idle, so nothing
                // of it is pending.
                let old = side.clients[slot].take().expect("live slot");
                let _ = side.w.free(old.conn);
                side.counters.churned += 1;
                if let Err(e) = side.connect(slot) {
                    side.fail_conn(slot, e);
                    continue;
                }
            }
            if !stopping {
                if let Err(e) = side.start_message(slot) {
                    side.fail_conn(slot, e);
                }
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let (fds, mem) = (fd_count(), rss());
            fd_max = fd_max.max(fds);
            if now - start >= warmup {
                rss_steady.get_or_insert(mem);
                rss_min = rss_min.min(mem);
                rss_max = rss_max.max(mem);
            }
            let c = &side.counters;
            eprintln!(
                "soak: {:>4.0} s  msgs {:>9}  bytes {:>10}  errors {}  | fds {}  rss {}",
                (now - start).as_secs_f64(),
                c.msgs,
                human_bytes(c.bytes_in + c.bytes_out),
                c.errors + c.mismatches + server.stats.errors.load(Ordering::Relaxed),
                fds,
                human_bytes(mem * 1024)
            );
        }
        if stopping {
            let busy = side.clients.iter().flatten().filter(|c| c.busy()).count();
            if busy == 0 {
                break;
            }
            if now > end + GRACE {
                failures.push(format!(
                    "{busy} messages still unfinished {GRACE:?} after the end"
                ));
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    let rss_end = rss();
    let rss_steady = rss_steady.unwrap_or(rss_end);
    rss_min = rss_min.min(rss_end);
    rss_max = rss_max.max(rss_end);
    let rss_bound = rss_steady + (64 * 1024).max(rss_steady / 2);
    if rss_end > rss_bound {
        failures.push(format!(
            "VmRSS grew from {} to {} (bound {})",
            human_bytes(rss_steady * 1024),
            human_bytes(rss_end * 1024),
            human_bytes(rss_bound * 1024)
        ));
    }
    fd_max = fd_max.max(fd_count());
    let fd_bound = fd_infra + 2 * config.conns + FD_SLACK;
    if fd_max > fd_bound {
        failures.push(format!("{fd_max} descriptors open at a time, bound {fd_bound}"));
    }
    // Idle now: every open descriptor is explained by a live connection.
    let live = side.clients.iter().flatten().count();
    let settled = poll_until(Duration::from_secs(5), || {
        server.stats.live.load(Ordering::Relaxed) as usize == live && fd_count() == fd_infra + 2 * live
    });
    if !settled {
        failures.push(format!(
            "after the run: {} descriptors for {live} client and {} server connections, expected {}",
            fd_count(),
            server.stats.live.load(Ordering::Relaxed),
            fd_infra + 2 * live
        ));
    }

    // Teardown: the client frees its connections, the server sees EOF and
    // frees its side, then both watchers go.
    for cl in side.clients.iter_mut().filter_map(Option::take) {
        let _ = side.w.free(cl.conn);
    }
    let drained = poll_until(Duration::from_secs(10), || {
        server.stats.live.load(Ordering::Relaxed) == 0
    });
    if !drained {
        failures.push(format!(
            "server still holds {} connections 10 s after the client closed all",
            server.stats.live.load(Ordering::Relaxed)
        ));
    }
    let ClientSide { w, counters, .. } = side;
    drop(w);
    let stats = Arc::clone(&server.stats);
    server.stop();
    let fd_end_ok = poll_until(Duration::from_secs(5), || fd_count() == fd_base);
    let fd_end = fd_count();
    if !fd_end_ok {
        failures.push(format!(
            "{fd_end} descriptors open after teardown, {fd_base} before the run"
        ));
    }
    if counters.errors > 0 || counters.mismatches > 0 {
        failures.push(format!(
            "{} failed requests, {} mismatched reads",
            counters.errors, counters.mismatches
        ));
    }
    let server_errors = stats.errors.load(Ordering::Relaxed);
    if server_errors > 0 {
        failures.push(format!("{server_errors} failed requests on the server"));
    }
    if counters.msgs == 0 {
        failures.push("no message completed".into());
    }
    Ok(Report {
        elapsed,
        counters,
        server_accepted: stats.accepted.load(Ordering::Relaxed),
        server_eofs: stats.eofs.load(Ordering::Relaxed),
        server_errors,
        server_echoed: stats.echoed.load(Ordering::Relaxed),
        fd_base,
        fd_infra,
        fd_max,
        fd_end,
        rss_steady,
        rss_min,
        rss_max,
        rss_end,
        rss_bound,
        failures,
    })
}
