//! Echo server: every byte a client sends comes back, on as many cores as
//! asked.
//!
//! `cargo run --release -p gaio --example echo_server -- --addr 127.0.0.1:7878 --threads 2`
//! prints the bound address on its first line, then echoes until Ctrl-C or
//! SIGTERM (or, with `--until-stdin-closes`, until its standard input
//! closes: for scripts). Then it shuts down gracefully: it stops accepting,
//! lets every echo already read go out, half-closes each connection, waits
//! up to five seconds for the clients to close their side, and exits.
//!
//! `--threads N` (default 1; 0: one per CPU) runs N watchers, each on a
//! thread of its own pinned to its CPU ([`gaio::CoresBuilder`]), and spreads
//! the connections over them as `--spread` says: `least-loaded` (default:
//! each connection to the watcher holding the fewest), `round-robin`, or
//! `reuse-port` (a listener per watcher, the kernel picking by hash).
//!
//! `--backend auto|uring|epoll` (Linux; default `auto`: io_uring where the
//! kernel lets this process use it, else epoll) chooses how the watchers
//! do their I/O; the second line printed says which one they run on.
//!
//! The listener has the system's deepest accept queue, and the watchers
//! accept themselves: accepted connections get `TCP_NODELAY`, a burst of
//! connections is taken without a wake-up per connection, and no thread
//! blocks in `accept`. Reads use the watcher's swap memory, so an idle
//! client holds no buffer, and the bytes read are written back as they
//! are, without a copy.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use gaio::{
    Backend, Buffer, Builder, Bytes, Core, Cores, CoresBuilder, Error, Listener, Op, Spread, Submit, Watcher,
};
use nix::sys::signal::{SigSet, Signal};

/// How long a shutdown waits for clients to take their last echoes and
/// close.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves until the watcher closes, accepting on `listener` if this
/// watcher has one (with several watchers, the first one's accepts are
/// spread over all of them). A graceful close (see `main`) ends the
/// accepts, half-closes each connection once the echoes already queued are
/// out, and closes the watcher once every client has closed, or after its
/// timeout.
pub fn serve(w: &mut Watcher<(), Bytes>, listener: Option<Listener>) -> Result<(), Error> {
    if let Some(listener) = listener {
        w.accept_multishot(listener, ())?; // every connection, a burst per wake-up
    }
    let mut batch = Vec::new();
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            match (c.op, c.error, c.buffer) {
                (Op::Accept, None, _) => w.read_swap(c.conn, ())?, // no buffer held while idle
                (Op::Accept, Some(e), _) => eprintln!("echo_server: no longer accepting: {e}"),
                (Op::Read, None, Buffer::Swap(data)) => w.write(c.conn, (), data)?,
                (Op::Write, None, _) => w.read_swap(c.conn, ())?, // echoed: read again
                // End of stream, reset, ...: done with this client.
                _ => w.free(c.conn)?,
            }
        }
    }
    Ok(())
}

/// Starts `threads` watchers on `backend` serving `addr`, its connections
/// spread as `spread` says.
pub fn start(
    addr: &str,
    threads: usize,
    spread: Spread,
    backend: Backend,
) -> Result<Cores<(), Bytes>, Error> {
    CoresBuilder::new()
        .threads(threads)
        .watcher(Builder::new().backend(backend))
        // One thread alone is left to the scheduler; several get a CPU each.
        .pin(threads != 1)
        .listen(addr, spread)
        .start(|core: Core<(), Bytes>| {
            let mut w = core.watcher;
            serve(&mut w, core.listener)
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // Ctrl-C and SIGTERM go to a thread of their own (blocked here, before
    // any thread starts, so every thread inherits the mask).
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    signals.thread_block()?;

    // Asked before the watchers start: once they accept, a server at its
    // descriptor limit has none left for the watcher this question builds.
    let backend = backend_of(args.backend)?;
    let cores = start(&args.addr, args.threads, args.spread, args.backend)?;
    println!("{}", cores.local_addr().expect("listening"));
    println!("backend: {backend}");

    // Either stop request ends the wait below.
    let (stop, stop_requested) = mpsc::channel();
    let on_signal = stop.clone();
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            let _ = on_signal.send(());
        }
    });
    if args.until_stdin_closes {
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = stop.send(());
        });
    }
    let _ = stop_requested.recv();
    for served in cores.stop_gracefully(DRAIN_TIME)? {
        served?;
    }
    Ok(())
}

/// What watchers built for `backend` run on (the choice `auto` makes is
/// the same for every watcher of a process).
fn backend_of(backend: Backend) -> Result<Backend, Error> {
    let w: Watcher<(), Bytes> = Builder::new().backend(backend).build()?;
    Ok(w.backend())
}

/// The command line.
struct Args {
    addr: String,
    until_stdin_closes: bool,
    threads: usize,
    spread: Spread,
    backend: Backend,
}

/// `--addr HOST:PORT` (default `127.0.0.1:0`), `--threads N`, `--spread
/// least-loaded|round-robin|reuse-port`, `--backend auto|uring|epoll` and
/// `--until-stdin-closes`.
fn parse_args() -> Result<Args, String> {
    const USAGE: &str = "usage: echo_server [--addr HOST:PORT] [--threads N] \
                         [--spread least-loaded|round-robin|reuse-port] [--backend auto|uring|epoll] \
                         [--until-stdin-closes]";
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        addr: "127.0.0.1:0".to_string(),
        until_stdin_closes: false,
        threads: 1,
        spread: Spread::LeastLoaded,
        backend: Backend::Auto,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => parsed.addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--until-stdin-closes" => parsed.until_stdin_closes = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--threads" => {
                let n = args.next().ok_or("--threads needs a number")?;
                parsed.threads = match n.parse::<usize>() {
                    Ok(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    Ok(n) => n,
                    Err(_) => return Err(format!("--threads {n:?}: not a number; {USAGE}")),
                };
            }
            "--spread" => {
                parsed.spread = match args.next().as_deref() {
                    Some("least-loaded") => Spread::LeastLoaded,
                    Some("round-robin") => Spread::RoundRobin,
                    Some("reuse-port") => Spread::ReusePort,
                    other => return Err(format!("--spread {other:?}; {USAGE}")),
                }
            }
            "--backend" => {
                let name = args.next().ok_or("--backend needs auto, uring or epoll")?;
                parsed.backend = name.parse().map_err(|e| format!("--backend: {e}; {USAGE}"))?;
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpStream};
    use std::thread;
    use std::time::Instant;

    const LIMIT: Duration = Duration::from_secs(10);

    fn client(addr: std::net::SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.set_write_timeout(Some(LIMIT)).unwrap();
        s
    }

    fn echo(s: &mut TcpStream, msg: &[u8]) {
        s.write_all(msg).unwrap();
        let mut back = vec![0; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }

    /// Starts `serve` on a thread; returns its address, a way to stop it
    /// (free the listener) and the thread.
    fn start(
        drain: Duration,
    ) -> (
        std::net::SocketAddr,
        impl FnOnce(),
        thread::JoinHandle<Result<(), Error>>,
    ) {
        let listener = gaio::listen("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut w: Watcher<(), Bytes> = Watcher::new().unwrap();
        let listener = w.watch_listener(listener).unwrap();
        let mut stopper = w.submitter();
        let server = thread::spawn(move || serve(&mut w, Some(listener)));
        (addr, move || stopper.close_gracefully(drain), server)
    }

    #[test]
    fn a_shutdown_delivers_every_echo_then_closes_and_refuses_new_clients() {
        let (addr, stop, server) = start(LIMIT);
        let mut quiet = client(addr);
        echo(&mut quiet, b"hello");
        // A client with 4 MiB in flight that reads nothing until the
        // shutdown has begun: its echo must still arrive whole.
        let mut busy = client(addr);
        let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut writer = busy.try_clone().unwrap();
        let sent = big.clone();
        let sending = thread::spawn(move || writer.write_all(&sent).unwrap());
        thread::sleep(Duration::from_millis(100));
        stop();
        let mut back = Vec::new();
        let reader = thread::spawn(move || {
            busy.read_to_end(&mut back).unwrap(); // ends at the half-close
            (busy, back)
        });
        sending.join().unwrap();
        let (busy, back) = reader.join().unwrap();
        // Everything read before the shutdown reached it was echoed; what
        // came after was dropped: the echo is a prefix of what was sent.
        assert!(!back.is_empty(), "no echo before the half-close");
        assert_eq!(back[..], big[..back.len()], "echo differs from what was sent");
        // The quiet client sees the half-close too.
        let mut rest = Vec::new();
        quiet.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        // New clients are refused: the listener is closed.
        let refused = TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        // The server returns as soon as both clients have closed.
        let t = Instant::now();
        drop(quiet);
        busy.shutdown(Shutdown::Both).unwrap();
        drop(busy);
        server.join().unwrap().unwrap();
        assert!(t.elapsed() < LIMIT / 2, "serve waited for its deadline");
    }

    #[test]
    fn a_client_that_never_closes_holds_the_shutdown_only_until_the_deadline() {
        let drain = Duration::from_millis(300);
        let (addr, stop, server) = start(drain);
        let mut stubborn = client(addr);
        echo(&mut stubborn, b"still here");
        let t = Instant::now();
        stop();
        let mut rest = Vec::new();
        stubborn.read_to_end(&mut rest).unwrap(); // the half-close
        server.join().unwrap().unwrap();
        let took = t.elapsed();
        assert!(took >= drain, "returned after {took:?}, before the deadline");
        assert!(took < LIMIT, "returned after {took:?}");
        drop(stubborn);
    }

    #[test]
    fn several_cores_echo_every_client_and_stop_gracefully() {
        let mut spreads = vec![Spread::LeastLoaded, Spread::RoundRobin];
        // The kernel balances SO_REUSEPORT listeners on Linux and FreeBSD.
        if cfg!(any(
            target_os = "linux",
            target_os = "android",
            target_os = "freebsd"
        )) {
            spreads.push(Spread::ReusePort);
        }
        for spread in spreads {
            let cores = super::start("127.0.0.1:0", 3, spread, Backend::Auto).unwrap();
            let addr = cores.local_addr().unwrap();
            let mut clients: Vec<TcpStream> = (0..30).map(|_| client(addr)).collect();
            for (i, c) in clients.iter_mut().enumerate() {
                echo(c, format!("client {i} via {spread:?}").as_bytes());
            }
            let stopping = thread::spawn(move || cores.stop_gracefully(LIMIT));
            // Every client sees the half-close, then closes: the stop ends.
            for mut c in clients {
                let mut rest = Vec::new();
                c.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty(), "{spread:?}: unexpected bytes {rest:?}");
            }
            let served = stopping.join().unwrap().unwrap();
            assert_eq!(served.len(), 3);
            assert!(served.iter().all(Result::is_ok), "{spread:?}: {served:?}");
        }
    }
}
