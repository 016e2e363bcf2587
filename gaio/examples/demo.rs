//! The demo: an echo server and a few hundred clients on loopback, both
//! sides driven by gaio watchers, every byte checked.
//!
//! `cargo run --release -p gaio --example demo -- [--conns 500] [--rounds 200] [--size 1024]`
//!
//! The server thread echoes with swap-memory reads (no buffer per idle
//! connection). The clients, on the main thread, write a message and
//! `read_full` its echo, for `--rounds` round trips per connection, and
//! compare each echo with what was sent.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use gaio::{Buffer, Bytes, Conn, Submit, Watcher};

struct Args {
    conns: usize,
    rounds: usize,
    size: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    raise_fd_limit(args.conns)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut clients = Vec::with_capacity(args.conns);
    let mut servers = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        clients.push(TcpStream::connect(listener.local_addr()?)?);
        servers.push(listener.accept()?.0);
    }
    println!(
        "gaio demo: {} connections x {} round trips of {} bytes on {}",
        args.conns,
        args.rounds,
        args.size,
        listener.local_addr()?
    );
    let server = std::thread::spawn(move || echo_server(servers));

    // Client side: context = connection index; one write and one read_full
    // in flight per connection.
    let mut w: Watcher<usize> = Watcher::new()?;
    let mut conns: Vec<Conn> = Vec::with_capacity(args.conns);
    let mut done = vec![0usize; args.conns];
    let mut started = vec![Instant::now(); args.conns];
    let mut latencies = Vec::with_capacity(args.conns * args.rounds);
    let start = Instant::now();
    for (i, stream) in clients.into_iter().enumerate() {
        let conn = w.watch(stream)?;
        conns.push(conn);
        w.write(conn, i, message(i, 0, args.size))?;
        w.read_full(conn, i, vec![0; args.size])?;
    }
    let (mut finished, mut batch, mut last_report) = (0, Vec::new(), Instant::now());
    while finished < args.conns {
        w.wait_io(&mut batch)?;
        for c in batch.drain(..) {
            let i = c.context;
            if let Some(e) = c.error {
                return Err(format!("connection {i}: {:?} failed: {e}", c.op).into());
            }
            if !c.op.is_read() {
                continue;
            }
            if c.data() != message(i, done[i], args.size) {
                return Err(format!("connection {i}: echo of round {} differs", done[i]).into());
            }
            latencies.push(started[i].elapsed());
            done[i] += 1;
            if done[i] == args.rounds {
                finished += 1;
                w.free(conns[i])?;
                continue;
            }
            started[i] = Instant::now();
            w.write(conns[i], i, message(i, done[i], args.size))?;
            w.read_full(conns[i], i, c.buffer.into_user().unwrap_or_default())?;
        }
        if last_report.elapsed() > Duration::from_millis(500) {
            let total: usize = done.iter().sum();
            eprintln!("  ... {total} round trips so far");
            last_report = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    let served = server.join().map_err(|_| "server thread panicked")??;

    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let trips = args.conns * args.rounds;
    let bytes = trips * args.size;
    println!("all {trips} echoes verified byte for byte; server echoed {served} bytes");
    println!(
        "moved {:.1} MiB each way in {:.3} s: {:.1} MiB/s each way, {:.0} round trips/s",
        bytes as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        bytes as f64 / 1048576.0 / elapsed.as_secs_f64(),
        trips as f64 / elapsed.as_secs_f64()
    );
    println!(
        "round-trip latency: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// Echoes on every connection until each peer has closed; returns the
/// number of bytes echoed.
fn echo_server(streams: Vec<TcpStream>) -> Result<usize, gaio::Error> {
    let mut w: Watcher<(), Bytes> = Watcher::new()?;
    let mut open = streams.len();
    for s in streams {
        let conn = w.watch(s)?;
        w.read_swap(conn, ())?;
    }
    let (mut batch, mut echoed) = (Vec::new(), 0);
    while open > 0 {
        w.wait_io(&mut batch)?;
        for c in batch.drain(..) {
            match (c.error, c.buffer) {
                (Some(_), _) => {
                    open -= 1;
                    w.free(c.conn)?;
                }
                (None, Buffer::Swap(data)) => {
                    echoed += data.len();
                    w.write(c.conn, (), data)?;
                }
                (None, _) => w.read_swap(c.conn, ())?,
            }
        }
    }
    Ok(echoed)
}

/// The message connection `conn` sends in round `round`.
fn message(conn: usize, round: usize, size: usize) -> Vec<u8> {
    let seed = (conn as u64) << 32 | round as u64;
    (0..size as u64)
        .map(|k| (seed.wrapping_mul(31).wrapping_add(k * 7) >> 3) as u8)
        .collect()
}

/// Raises the soft descriptor limit to what `conns` connections need (two
/// sockets each and a few more), or says how many fit.
fn raise_fd_limit(conns: usize) -> Result<(), String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const SPARE: u64 = 64;
    let want = 2 * conns as u64 + SPARE;
    let cur = getrlimit(Resource::Nofile);
    let soft = want.min(cur.maximum.unwrap_or(u64::MAX));
    if cur.current.is_some_and(|c| c < soft) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                maximum: cur.maximum,
            },
        );
    }
    match getrlimit(Resource::Nofile).current {
        Some(now) if now < want => Err(format!(
            "--conns {conns} needs {want} descriptors and this process may open {now} \
             (`ulimit -Hn` is the most it can raise itself to); \
             use --conns {} or fewer, or raise the hard limit",
            now.saturating_sub(SPARE) / 2
        )),
        _ => Ok(()),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        conns: 500,
        rounds: 200,
        size: 1024,
    };
    const USAGE: &str = "usage: demo [--conns N] [--rounds N] [--size BYTES]";
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value; {USAGE}"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--conns" => a.conns = n,
            "--rounds" => a.rounds = n,
            "--size" => a.size = n,
            _ => return Err(format!("unknown flag {flag}; {USAGE}")),
        }
    }
    if a.conns == 0 || a.rounds == 0 || a.size == 0 {
        return Err("--conns, --rounds and --size must be at least 1".into());
    }
    Ok(a)
}
