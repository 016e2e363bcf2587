//! `Cores`: a watcher per thread (inline mode, pinned), one listening
//! address spread over them, stopping them all; and the watchers talking
//! through `Submitter`s (`notify`, a connection detached on one and watched
//! on another).
//!
//! * 10,000 echo connections with unique payloads, for each `Spread`; how
//!   evenly `ReusePort`, `RoundRobin` and `LeastLoaded` hold connections
//!   through bursts of short-lived ones, and `LeastLoaded` following
//!   closes that `RoundRobin` ignores.
//! * `stop()` with reads pending and transfers under way: every thread's
//!   `?` loop ends with `Ok`, the clients see end of stream or a reset;
//!   `stop_gracefully` delivers a queued response before the half-close;
//!   a panic on one core comes back as `Error::Panicked` naming it, the
//!   other cores stopped and joined; `join()` once every core closed
//!   itself on a `notify` from `submitters()`, each thread pinned to its
//!   CPU and under the batch scheduling policy (or neither, with
//!   `pin(false)` and `batch_scheduling(false)`).
//! * Refusals of `start`: `threads(0)`, an address in use.
//! * A broadcast: one core reads a publisher's stream and `notify`s every
//!   core through `Core::peers`; each writes it to its subscribers.
//! * A connection moved between watchers mid-stream (detach, watch on the
//!   other's submitter, notify): no byte lost or duplicated, reading and
//!   writing.
//!
//! Every test holds the test lock through an `FdCheck`: threads,
//! listeners and thousands of sockets come and go, and none may be left.

mod util;
use util::peer::timeouts;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{AcceptOptions, Conn, Core, CoresBuilder, Error, Op, Spread, Submit};

type Rng = gaio_testkit::rng::XorShift64Star;

/// Longest any step waits.
const LIMIT: Duration = Duration::from_secs(20);
/// Every strategy this platform has: `ReusePort` balances only on Linux
/// and FreeBSD (elsewhere `start` refuses it, see
/// `reuse_port_is_refused_where_the_kernel_does_not_balance`).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SPREADS: &[Spread] = &[Spread::ReusePort, Spread::RoundRobin, Spread::LeastLoaded];
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const SPREADS: &[Spread] = &[Spread::RoundRobin, Spread::LeastLoaded];
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ----- helpers ---------------------------------------------------------------

/// Waits until `done()` holds, polling; panics after `limit` with `what()`.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let end = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < end, "after {limit:?}: {}", what());
        thread::sleep(Duration::from_micros(500));
    }
}

/// Counters, one per core.
fn counters(n: usize) -> Arc<[AtomicUsize]> {
    (0..n).map(|_| AtomicUsize::new(0)).collect()
}

fn read_all(c: &[AtomicUsize]) -> Vec<usize> {
    c.iter().map(|a| a.load(Ordering::SeqCst)).collect()
}

/// Asserts no thread of a `Cores` is left in the process (Linux lists
/// them). Needs the test lock held exclusively (an `FdCheck`).
fn assert_no_core_threads() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let left: Vec<String> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim_end().to_string())
        .filter(|c| c.starts_with("gaio-core-"))
        .collect();
    assert!(
        left.is_empty(),
        "threads of stopped cores still running: {left:?}"
    );
}

/// A loopback client whose receive buffer is set to `rcvbuf` before it
/// connects (so the window stays small and a big response queues in the
/// server).
fn small_window_client(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_recv_buffer_size(&fd, rcvbuf).expect("SO_RCVBUF");
    rustix::net::connect(&fd, &addr).expect("connect");
    let s = TcpStream::from(fd);
    timeouts(&s);
    s
}

/// True for how a peer ends when the server closes the connection under
/// it: end of stream, a reset, a broken pipe.
fn closed_under_us(r: &io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
        ),
    }
}

/// What the echo cores' requests are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Echo {
    Accept,
    Read,
    Write,
}

/// The echo each core of several tests runs, with `?` everywhere: accept
/// (if this core has the listener), echo what is read, free a connection
/// on its first error. Counts the connections each core accepted in
/// `accepted` and returns its own count.
fn echo_core(core: Core<Echo>, accepted: &[AtomicUsize]) -> gaio::Result<usize> {
    let index = core.index;
    let mut w = core.watcher;
    if let Some(listener) = core.listener {
        w.accept_multishot(listener, Echo::Accept)?;
    }
    let mut n = 0;
    let mut batch = Vec::new();
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            match (c.op, &c.error) {
                (Op::Accept, None) => {
                    n += 1;
                    accepted[index].fetch_add(1, Ordering::SeqCst);
                    w.read_swap(c.conn, Echo::Read)?;
                }
                // The multishot accept ends (or a hand-off from the
                // listening core is dropped) when the watcher closes.
                (Op::Accept, Some(Error::WatcherClosed)) => {}
                (Op::Accept, Some(_)) => return Err(c.error.unwrap()),
                (Op::Read, None) => w.write(c.conn, Echo::Write, c.data().to_vec())?,
                (Op::Write, None) => w.read_swap(c.conn, Echo::Read)?,
                (_, Some(_)) => w.free(c.conn)?,
                (op, None) => panic!("core {index}: unexpected {op:?}"),
            }
        }
    }
    Ok(n)
}

/// Echo cores, each returning how many connections it accepted.
type EchoCores = gaio::Cores<Echo, Vec<u8>, gaio::Result<usize>>;

/// Starts `threads` echo cores on a free loopback port.
fn echo_cores(threads: usize, spread: Spread) -> (EchoCores, Arc<[AtomicUsize]>) {
    let accepted = counters(threads);
    let acc = Arc::clone(&accepted);
    let cores = CoresBuilder::new()
        .threads(threads)
        .listen("127.0.0.1:0", spread)
        .start(move |core: Core<Echo>| echo_core(core, &acc))
        .unwrap_or_else(|e| panic!("start {spread:?}: {e}"));
    (cores, accepted)
}

/// `stop()`, asserting it and every core's function returned `Ok`; the
/// counts the cores returned.
fn stop_ok<R: std::fmt::Debug>(cores: gaio::Cores<Echo, Vec<u8>, gaio::Result<R>>, what: &str) -> Vec<R> {
    let results = cores.stop().unwrap_or_else(|e| panic!("{what}: stop: {e:?}"));
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("{what}: core {i} returned {e:?}")))
        .collect()
}

// ----- 1. 10,000 connections over every spread -------------------------------

/// Client connection `k`'s payload: its number, then a pattern of a length
/// that varies with it.
fn payload(k: usize) -> Vec<u8> {
    let mut p = (k as u64).to_le_bytes().to_vec();
    p.extend(util::pattern(0xC0DE_0000 + k as u64, 24 + k % 233));
    p
}

/// `total` clients over `threads` client threads, in waves of `wave`
/// connections per thread open at once: each sends its payload, reads the
/// echo and compares, then all of the wave close.
fn echo_clients(addr: SocketAddr, total: usize, threads: usize, wave: usize) {
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            thread::spawn(move || {
                let mine: Vec<usize> = (t..total).step_by(threads).collect();
                for chunk in mine.chunks(wave) {
                    let mut open = Vec::with_capacity(chunk.len());
                    for &k in chunk {
                        let mut s = TcpStream::connect_timeout(&addr, LIMIT)
                            .unwrap_or_else(|e| panic!("client {k}: connect: {e}"));
                        timeouts(&s);
                        s.write_all(&payload(k))
                            .unwrap_or_else(|e| panic!("client {k}: write: {e}"));
                        open.push((k, s));
                    }
                    for (k, s) in &mut open {
                        let want = payload(*k);
                        let mut back = vec![0; want.len()];
                        s.read_exact(&mut back)
                            .unwrap_or_else(|e| panic!("client {k}: read of the echo: {e}"));
                        assert!(back == want, "client {k}: got other bytes back");
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
}

/// 10,000 connections over three cores, for each spread: every one echoes
/// its unique payload, every one is accepted exactly once (the cores'
/// counts add up), and the accepts spread: round-robin exactly (counts at
/// most one apart), the others at least a quarter of an even share each.
#[test]
fn three_cores_serve_10000_connections_with_each_spread() {
    const THREADS: usize = 3;
    const TOTAL: usize = 10_000;
    let fds = util::FdCheck::new();
    util::raise_nofile(8192);
    for &spread in SPREADS {
        let start = Instant::now();
        let (cores, accepted) = echo_cores(THREADS, spread);
        assert_eq!(cores.len(), THREADS);
        let addr = cores.local_addr().expect("listening");
        // 4 client threads x 400 open at once: at most 3,200 descriptors
        // for clients and servers together.
        echo_clients(addr, TOTAL, 4, 400);
        wait_until(
            LIMIT,
            || read_all(&accepted).iter().sum::<usize>() >= TOTAL,
            || format!("{spread:?}: accepted {:?}", read_all(&accepted)),
        );
        let counts = stop_ok(cores, &format!("{spread:?}"));
        assert_eq!(counts, read_all(&accepted), "{spread:?}");
        assert_eq!(counts.iter().sum::<usize>(), TOTAL, "{spread:?}: {counts:?}");
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        eprintln!(
            "{spread:?}: accepted per core {counts:?} in {:?}",
            start.elapsed()
        );
        match spread {
            Spread::RoundRobin => assert!(max - min <= 1, "{spread:?}: {counts:?}"),
            _ => assert!(min >= TOTAL / THREADS / 4, "{spread:?}: {counts:?}"),
        }
    }
    fds.check();
    assert_no_core_threads();
}

// ----- 2. stopping ---------------------------------------------------------------

/// A client that streams a pattern to the echo and checks what comes back
/// until the server goes away; `progress` is the bytes checked so far.
fn streamer(addr: SocketAddr, seed: u64, progress: Arc<AtomicUsize>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let s = TcpStream::connect_timeout(&addr, LIMIT).expect("streamer connect");
        timeouts(&s);
        let mut writer = s.try_clone().unwrap();
        let stream = util::pattern(seed, 4 * MIB);
        let to_write = stream.clone();
        let w = thread::spawn(move || loop {
            for chunk in to_write.chunks(64 * KIB) {
                if let Err(e) = writer.write_all(chunk) {
                    // The server closed under it.
                    assert!(
                        closed_under_us(&Err(e)),
                        "streamer {seed}: write failed otherwise"
                    );
                    return;
                }
            }
        });
        let mut reader = s;
        let (mut at, mut buf) = (0usize, vec![0; 64 * KIB]);
        loop {
            let r = reader.read(&mut buf);
            match r {
                Ok(n) if n > 0 => {
                    for (i, &b) in buf[..n].iter().enumerate() {
                        let want = stream[(at + i) % stream.len()];
                        assert_eq!(b, want, "streamer {seed}: byte {} of the echo differs", at + i);
                    }
                    at += n;
                    progress.store(at, Ordering::SeqCst);
                }
                _ => {
                    assert!(closed_under_us(&r), "streamer {seed}: read ended with {r:?}");
                    break;
                }
            }
        }
        w.join().expect("streamer writer");
    })
}

/// `stop()` while 300 clients have reads pending on three cores and four
/// clients stream megabytes through the echo: every core's `?` loop
/// returns `Ok`, the idle clients see end of stream or a reset, the
/// streams end the same way having echoed correctly up to then, and no
/// descriptor or thread is left. Once per spread.
#[test]
fn stop_with_requests_in_flight_ends_every_core_cleanly() {
    const IDLE: usize = 300;
    const STREAMS: usize = 4;
    let fds = util::FdCheck::new();
    util::raise_nofile(4096);
    for &spread in SPREADS {
        let (cores, accepted) = echo_cores(3, spread);
        let addr = cores.local_addr().unwrap();
        let mut idle = Vec::with_capacity(IDLE);
        for k in 0..IDLE {
            let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
            timeouts(&s);
            // One echo each: accepted, served, and its next read pending.
            s.write_all(&payload(k)).unwrap();
            let mut back = vec![0; payload(k).len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, payload(k));
            idle.push(s);
        }
        let progress: Vec<Arc<AtomicUsize>> = (0..STREAMS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let streams: Vec<_> = (0..STREAMS)
            .map(|i| streamer(addr, 0x5EED + i as u64, Arc::clone(&progress[i])))
            .collect();
        wait_until(
            LIMIT,
            || progress.iter().all(|p| p.load(Ordering::SeqCst) >= MIB),
            || {
                format!(
                    "{spread:?}: streams at {:?}",
                    progress
                        .iter()
                        .map(|p| p.load(Ordering::SeqCst))
                        .collect::<Vec<_>>()
                )
            },
        );
        let counts = stop_ok(cores, &format!("{spread:?}"));
        assert_eq!(
            counts.iter().sum::<usize>(),
            IDLE + STREAMS,
            "{spread:?}: {counts:?}"
        );
        assert_eq!(counts, read_all(&accepted));
        for (k, s) in idle.iter_mut().enumerate() {
            let mut b = [0u8; 16];
            let r = s.read(&mut b);
            assert!(
                closed_under_us(&r),
                "{spread:?}: idle client {k} read {r:?} after stop"
            );
        }
        for s in streams {
            s.join().expect("streamer");
        }
        drop(idle);
    }
    fds.check();
    assert_no_core_threads();
}

/// What the graceful-stop cores' requests are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G {
    Accept,
    Read,
    Response,
}

/// `stop_gracefully` while an 8 MiB response is queued (the client's
/// window is 32 KiB and the server's send buffer 64 KiB, and the client
/// reads only after the stop began): the client reads the whole response,
/// then end of stream, not a reset; an idle client sees end of stream at
/// once. Both close, so the cores close before the timeout, and every
/// core's loop returns `Ok`.
#[test]
fn stop_gracefully_delivers_a_queued_response_before_the_half_close() {
    const RESPONSE: usize = 8 * MIB;
    let fds = util::FdCheck::new();
    let accepted = counters(2);
    let responded = Arc::new(AtomicUsize::new(0));
    let (acc, resp) = (Arc::clone(&accepted), Arc::clone(&responded));
    let options = AcceptOptions::new().send_buffer_size(64 * KIB);
    let cores = CoresBuilder::new()
        .threads(2)
        .listen_with("127.0.0.1:0", Spread::RoundRobin, options)
        .start(move |core: Core<G>| -> gaio::Result<()> {
            let mut w = core.watcher;
            if let Some(listener) = core.listener {
                w.accept_multishot(listener, G::Accept)?;
            }
            let mut batch = Vec::new();
            while w.next_batch(&mut batch)? {
                for c in batch.drain(..) {
                    match (c.context, &c.error) {
                        (G::Accept, None) => {
                            acc[core.index].fetch_add(1, Ordering::SeqCst);
                            w.read_swap(c.conn, G::Read)?;
                        }
                        (G::Accept, Some(_)) => {}
                        (G::Read, None) => {
                            assert_eq!(c.data(), b"G", "the request");
                            w.write(c.conn, G::Response, util::pattern(0x6AAC, RESPONSE))?;
                            resp.fetch_add(1, Ordering::SeqCst);
                            w.read_swap(c.conn, G::Read)?;
                        }
                        (G::Response, None) => {}
                        (_, Some(_)) => w.free(c.conn)?,
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let addr = cores.local_addr().unwrap();
    let mut asking = small_window_client(addr, 32 * KIB);
    asking.write_all(b"G").unwrap();
    let mut idle = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    timeouts(&idle);
    wait_until(
        LIMIT,
        || responded.load(Ordering::SeqCst) == 1 && read_all(&accepted).iter().sum::<usize>() == 2,
        || {
            format!(
                "accepted {:?}, responded {}",
                read_all(&accepted),
                responded.load(Ordering::SeqCst)
            )
        },
    );
    let go = Arc::new(AtomicBool::new(false));
    let go2 = Arc::clone(&go);
    let reader = thread::spawn(move || {
        while !go2.load(Ordering::SeqCst) {
            thread::sleep(ms(1));
        }
        // The graceful close is under way before the response is read.
        thread::sleep(ms(100));
        let got = util::peer::read_to_eof(&mut asking);
        drop(asking);
        got
    });
    let idle_reader = thread::spawn(move || {
        let mut b = [0u8; 16];
        let r = idle.read(&mut b);
        assert!(
            matches!(r, Ok(0)),
            "the idle client read {r:?}, expected end of stream"
        );
    });
    go.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let results = cores
        .stop_gracefully(Duration::from_secs(10))
        .expect("stop_gracefully");
    let took = start.elapsed();
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("core {i}: {e:?}"));
    }
    let got = reader.join().expect("reader");
    idle_reader.join().expect("idle reader");
    assert!(
        got == util::pattern(0x6AAC, RESPONSE),
        "the response arrived as {} bytes, expected {RESPONSE}",
        got.len()
    );
    assert!(
        took < Duration::from_secs(5),
        "stop_gracefully took {took:?}: the cores waited for the timeout"
    );
    fds.check();
    assert_no_core_threads();
}

/// A core's thread ending (by returning or by a panic) counts itself out.
struct Ended<'a>(&'a AtomicUsize);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The panic core 1 is told to make.
const PANIC_TEXT: &str = "core one was told to explode";

/// Core 1 panics when a client says `boom`: that client's connection
/// closes (the panic drops core 1's watcher), the other cores keep serving
/// (new connections too: a hand-off to core 1 is refused and the listening
/// core keeps the connection), and `stop()` returns `Error::Panicked`
/// naming core 1 and the panic's text, having stopped and joined the
/// others: two functions returned, three threads ended, none is left, and
/// no descriptor.
#[test]
fn a_panic_on_one_core_comes_back_from_stop_and_the_others_stop() {
    let fds = util::FdCheck::new();
    let returned = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (ret, end) = (Arc::clone(&returned), Arc::clone(&ended));
    let cores = CoresBuilder::new()
        .threads(3)
        .listen("127.0.0.1:0", Spread::RoundRobin)
        .start(move |core: Core<Echo>| -> gaio::Result<()> {
            let _ended = Ended(&end);
            let index = core.index;
            let mut w = core.watcher;
            if let Some(listener) = core.listener {
                w.accept_multishot(listener, Echo::Accept)?;
            }
            let mut batch = Vec::new();
            while w.next_batch(&mut batch)? {
                for c in batch.drain(..) {
                    match (c.op, &c.error) {
                        (Op::Accept, None) => {
                            // Tell the client which core it is on.
                            w.write(c.conn, Echo::Write, vec![index as u8])?;
                            w.read_swap(c.conn, Echo::Read)?;
                        }
                        (Op::Accept, Some(_)) => {}
                        (Op::Read, None) if c.data() == b"boom" && index == 1 => panic!("{PANIC_TEXT}"),
                        (Op::Read, None) => w.write(c.conn, Echo::Write, c.data().to_vec())?,
                        (Op::Write, None) => {}
                        (_, Some(_)) => w.free(c.conn)?,
                        (op, None) => panic!("unexpected {op:?}"),
                    }
                }
            }
            ret.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    let addr = cores.local_addr().unwrap();
    let connect = || {
        let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
        timeouts(&s);
        let mut core = [0u8; 1];
        s.read_exact(&mut core).expect("the core's greeting");
        (s, core[0] as usize)
    };
    let echo = |s: &mut TcpStream, what: &str| {
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("{what}: echo: {e}"));
        assert_eq!(&back, b"ping", "{what}");
    };
    let mut clients: Vec<(TcpStream, usize)> = (0..3).map(|_| connect()).collect();
    let mut on: Vec<usize> = clients.iter().map(|c| c.1).collect();
    on.sort_unstable();
    assert_eq!(on, [0, 1, 2], "round-robin puts three clients on three cores");
    let k = clients.iter().position(|c| c.1 == 1).unwrap();
    let (mut doomed, _) = clients.remove(k);
    doomed.write_all(b"boom").unwrap();
    let mut b = [0u8; 8];
    let r = doomed.read(&mut b);
    assert!(closed_under_us(&r), "the client of the panicked core read {r:?}");
    wait_until(
        LIMIT,
        || ended.load(Ordering::SeqCst) == 1,
        || "core 1 did not end".into(),
    );
    for (s, core) in &mut clients {
        echo(s, &format!("client of core {core} after the panic"));
    }
    for i in 0..4 {
        let (mut s, core) = connect();
        assert_ne!(core, 1, "new client {i} was handed to the panicked core");
        echo(&mut s, &format!("new client {i} on core {core}"));
        clients.push((s, core));
    }
    assert_eq!(returned.load(Ordering::SeqCst), 0);
    match cores.stop() {
        Err(Error::Panicked { message }) => {
            assert!(message.contains("core 1"), "message: {message}");
            assert!(message.contains(PANIC_TEXT), "message: {message}");
        }
        Err(e) => panic!("stop: {e:?}, expected Error::Panicked"),
        Ok(r) => panic!("stop returned Ok({r:?}) after a panic"),
    }
    assert_eq!(returned.load(Ordering::SeqCst), 2, "cores 0 and 2 return");
    assert_eq!(ended.load(Ordering::SeqCst), 3, "every thread ended");
    for (s, core) in &mut clients {
        let r = s.read(&mut b);
        assert!(closed_under_us(&r), "client of core {core} read {r:?} after stop");
    }
    drop((clients, doomed));
    fds.check();
    assert_no_core_threads();
}

/// What a core of the `join` test reports about itself: its index, the CPU
/// it was given, the CPUs its thread may run on, how many peers it saw,
/// and its scheduling policy.
#[cfg(any(target_os = "linux", target_os = "android"))]
type Report = (usize, Option<usize>, Vec<usize>, usize, u32);

/// The calling thread's scheduling policy (`SCHED_OTHER` 0, `SCHED_BATCH`
/// 3, ...): field 41 of `/proc/thread-self/stat`, counted after the
/// command name's closing parenthesis (field 2, which may hold spaces).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sched_policy() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after_comm = &stat[stat.rfind(')').expect("a command name") + 1..];
    let field = after_comm.split_whitespace().nth(41 - 3).expect("field 41");
    field.parse().expect("a policy number")
}

/// Each core's function runs until told to quit: `Cores::submitters()`
/// `notify`s every core from outside, each closes its own watcher, its
/// `next_batch` loop ends and it returns; `join()` (no close from it)
/// returns every report in core order. Pinned (the default), core `i` runs
/// on exactly one CPU, `cpu`, and the cores cover the CPUs in turn; with
/// `pin(false)` `cpu` is `None` and the thread keeps the process's CPUs.
/// By default each thread moves from the normal scheduling policy to the
/// batch one (a caller under another policy passes it on unchanged); with
/// `batch_scheduling(false)` it keeps the caller's.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))] // thread affinity is Linux's
fn join_returns_once_every_core_has_closed_itself() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let caller = sched_policy();
    let batched = if caller == SCHED_OTHER {
        SCHED_BATCH
    } else {
        caller
    };
    const THREADS: usize = 3;
    let fds = util::FdCheck::new();
    let allowed = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    let process_cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    for (pin, batch) in [(true, None), (false, Some(false))] {
        let mut builder = CoresBuilder::new().threads(THREADS).pin(pin);
        if let Some(batch) = batch {
            builder = builder.batch_scheduling(batch);
        }
        let cores = builder
            .start(|core: Core<&'static str>| -> gaio::Result<Report> {
                assert!(core.listener.is_none(), "listening on nothing");
                let policy = sched_policy();
                let set = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
                let cpus = (0..rustix::thread::CpuSet::MAX_CPU)
                    .filter(|&c| set.is_set(c))
                    .collect();
                let mut w = core.watcher;
                let mut batch = Vec::new();
                while w.next_batch(&mut batch)? {
                    for c in batch.drain(..) {
                        assert_eq!((c.op, c.context), (Op::Notify, "quit"));
                        assert!(c.error.is_none());
                        w.close();
                    }
                }
                Ok((core.index, core.cpu, cpus, core.peers.len(), policy))
            })
            .unwrap();
        assert_eq!(cores.len(), THREADS);
        assert!(cores.local_addr().is_none());
        assert_eq!(cores.submitters().len(), THREADS);
        for mut s in cores.submitters().iter() {
            if let Err(r) = s.notify("quit") {
                panic!("notify refused: {:?}", r.error);
            }
        }
        let reports = cores.join().expect("join");
        for (i, r) in reports.into_iter().enumerate() {
            let (index, cpu, cpus, peers, policy) = r.unwrap_or_else(|e| panic!("core {i}: {e:?}"));
            assert_eq!((index, peers), (i, THREADS), "pin {pin}");
            let want_policy = if batch == Some(false) { caller } else { batched };
            assert_eq!(
                policy, want_policy,
                "core {i}: scheduling policy (batch {batch:?})"
            );
            if pin {
                let want = process_cpus[i % process_cpus.len()];
                assert_eq!(cpu, Some(want), "core {i}: pinned to another CPU");
                assert_eq!(cpus, [want], "core {i}: the thread may run elsewhere");
            } else {
                assert_eq!(cpu, None, "core {i}: pin(false) but a CPU");
                assert_eq!(cpus, process_cpus, "core {i}: unpinned thread's CPUs");
            }
        }
    }
    fds.check();
    assert_no_core_threads();
}

// ----- 3. refusals -----------------------------------------------------------------

/// Where `SO_REUSEPORT` only lets sockets share a port (the last bound
/// takes every connection), `ReusePort` is refused as `Unsupported`.
#[test]
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn reuse_port_is_refused_where_the_kernel_does_not_balance() {
    let fds = util::FdCheck::new();
    let refused = CoresBuilder::new()
        .threads(2)
        .listen("127.0.0.1:0", Spread::ReusePort)
        .start(|_core: Core| -> gaio::Result<()> { Ok(()) })
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Io(e) if e.kind() == io::ErrorKind::Unsupported),
        "{refused:?}"
    );
    fds.check();
    assert_no_core_threads();
}

/// `threads(0)` and `threads(MAX_CORES + 1)` are refused with an
/// `InvalidSetting` named "threads"; an address in use with an `Io` error
/// of kind `AddrInUse`, for each spread. Nothing is left running.
#[test]
fn start_refuses_zero_threads_and_an_address_in_use() {
    let fds = util::FdCheck::new();
    let run = |_core: Core| -> gaio::Result<()> { Ok(()) };
    for threads in [0, gaio::MAX_CORES + 1] {
        match CoresBuilder::new().threads(threads).start(run) {
            Err(Error::InvalidSetting(s)) => {
                assert_eq!(s.name, "threads");
                assert_eq!((s.value, s.min, s.max), (threads, 1, gaio::MAX_CORES));
            }
            Err(e) => panic!("threads({threads}): {e:?}"),
            Ok(_) => panic!("threads({threads}) started"),
        }
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    for &spread in SPREADS {
        match CoresBuilder::new().threads(2).listen(addr, spread).start(run) {
            Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{spread:?}: {e}"),
            Err(e) => panic!("{spread:?}: {e:?}"),
            Ok(_) => panic!("{spread:?}: listened on an address in use"),
        }
    }
    drop(taken);
    fds.check();
    assert_no_core_threads();
}

// ----- 4. notify between cores: a broadcast ------------------------------------

/// What the broadcast cores' requests and notifications are for.
#[derive(Debug, Clone)]
enum B {
    Accept,
    Read,
    Write,
    /// Bytes of the publisher's stream, sent to every core.
    Broadcast(Arc<[u8]>),
}

/// 12 subscribers spread over three cores (round-robin: four each), then a
/// publisher: whichever core reads the publisher's 256 KiB stream sends
/// each piece to every core (itself included) with `notify` through
/// `Core::peers`; each core writes it to its own subscribers. Every
/// subscriber receives the whole stream, in order; every core got
/// broadcasts and had subscribers.
#[test]
fn a_core_broadcasts_to_every_core_through_notify() {
    const SUBSCRIBERS: usize = 12;
    const STREAM: usize = 256 * KIB;
    let fds = util::FdCheck::new();
    let subscribed = counters(3);
    let notified = counters(3);
    let (subs, notes) = (Arc::clone(&subscribed), Arc::clone(&notified));
    let cores = CoresBuilder::new()
        .threads(3)
        .listen("127.0.0.1:0", Spread::RoundRobin)
        .start(move |core: Core<B>| -> gaio::Result<()> {
            let index = core.index;
            let mut w = core.watcher;
            if let Some(listener) = core.listener {
                w.accept_multishot(listener, B::Accept)?;
            }
            // Connections whose first byte said what they are.
            let mut subscribers: Vec<Conn> = Vec::new();
            let mut known: HashSet<Conn> = HashSet::new();
            let mut batch = Vec::new();
            while w.next_batch(&mut batch)? {
                for c in batch.drain(..) {
                    match (&c.context, &c.error) {
                        (B::Accept, None) => w.read_swap(c.conn, B::Read)?,
                        (B::Accept, Some(_)) | (B::Broadcast(_), Some(_)) => {}
                        (B::Read, None) => {
                            let mut data = c.data();
                            if known.insert(c.conn) {
                                let (kind, rest) = data.split_first().expect("a read has a byte");
                                data = rest;
                                if *kind == b'S' {
                                    subscribers.push(c.conn);
                                    subs[index].fetch_add(1, Ordering::SeqCst);
                                    assert!(data.is_empty(), "a subscriber sends one byte");
                                } else {
                                    assert_eq!(*kind, b'P', "neither subscriber nor publisher");
                                }
                            }
                            if !data.is_empty() {
                                let piece: Arc<[u8]> = Arc::from(data);
                                for mut peer in core.peers.iter() {
                                    if let Err(r) = peer.notify(B::Broadcast(Arc::clone(&piece))) {
                                        return Err(r.error);
                                    }
                                }
                            }
                            w.read_swap(c.conn, B::Read)?;
                        }
                        (B::Broadcast(piece), None) => {
                            assert_eq!(c.op, Op::Notify);
                            notes[index].fetch_add(1, Ordering::SeqCst);
                            for &s in &subscribers {
                                w.write(s, B::Write, piece.to_vec())?;
                            }
                        }
                        (B::Write, None) => {}
                        (_, Some(_)) => w.free(c.conn)?,
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let addr = cores.local_addr().unwrap();
    let mut subscribers: Vec<TcpStream> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
            timeouts(&s);
            s.write_all(b"S").unwrap();
            s
        })
        .collect();
    wait_until(
        LIMIT,
        || read_all(&subscribed).iter().sum::<usize>() == SUBSCRIBERS,
        || format!("subscribed {:?}", read_all(&subscribed)),
    );
    assert_eq!(
        read_all(&subscribed),
        [4, 4, 4],
        "round-robin: four subscribers a core"
    );
    let stream = util::pattern(0xB0AD, STREAM);
    let mut publisher = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    timeouts(&publisher);
    publisher.write_all(b"P").unwrap();
    for chunk in stream.chunks(8 * KIB) {
        publisher.write_all(chunk).unwrap();
    }
    for (i, s) in subscribers.iter_mut().enumerate() {
        let mut got = vec![0; STREAM];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
        assert!(got == stream, "subscriber {i} received another stream");
    }
    let notes = read_all(&notified);
    assert!(notes.iter().all(|&n| n > 0), "a core got no broadcast: {notes:?}");
    // Every core got the same pieces.
    assert!(notes.iter().all(|&n| n == notes[0]), "{notes:?}");
    let results = cores.stop().expect("stop");
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("core {i}: {e:?}"));
    }
    // Nothing more than the stream was sent.
    for (i, s) in subscribers.iter_mut().enumerate() {
        let mut b = [0u8; 16];
        let r = s.read(&mut b);
        assert!(closed_under_us(&r), "subscriber {i} read {r:?} after the stream");
    }
    drop((subscribers, publisher));
    fds.check();
}

// ----- 5. a connection moved between watchers mid-stream -------------------------

/// What the moving cores' requests and notifications are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    Accept,
    Read,
    Write,
    Detach,
    Shutdown,
    /// A connection handed to this core, its stream at `offset`.
    Moved {
        conn: Conn,
        offset: usize,
    },
}

/// Hands a detached socket to core `to`: watched through its submitter,
/// then named to it in a notification.
fn hand_over(
    core_peers: &[gaio::Submitter<M>],
    to: usize,
    fd: std::os::fd::OwnedFd,
    offset: usize,
) -> gaio::Result<()> {
    let mut peer = &core_peers[to];
    let conn = peer.watch(fd)?;
    peer.notify(M::Moved { conn, offset }).map_err(|r| r.error)
}

/// A client streams an 8 MiB pattern; the core holding the connection
/// reads 512 KiB of it (more or less: whole reads), appends what it read
/// to the shared record, detaches the connection and hands it to the other
/// core (watch on its submitter, then notify), which goes on reading: the
/// connection changes cores 14 to 15 times while the client keeps
/// writing. What the cores read, in order, is the pattern exactly.
#[test]
fn a_connection_moved_between_cores_mid_stream_loses_no_byte_reading() {
    const LEN: usize = 8 * MIB;
    const STEP: usize = 512 * KIB;
    let fds = util::FdCheck::new();
    let received: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::with_capacity(LEN)));
    let moves = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (rec, mv, dn) = (Arc::clone(&received), Arc::clone(&moves), Arc::clone(&done));
    let cores = CoresBuilder::new()
        .threads(2)
        .listen("127.0.0.1:0", Spread::RoundRobin)
        .start(move |core: Core<M>| -> gaio::Result<()> {
            let n = core.peers.len();
            let mut w = core.watcher;
            if let Some(listener) = core.listener {
                w.accept_multishot(listener, M::Accept)?;
            }
            // Bytes read since the connection came to this core.
            let mut here = 0;
            let mut batch = Vec::new();
            while w.next_batch(&mut batch)? {
                for mut c in batch.drain(..) {
                    match (c.context, &c.error) {
                        (M::Accept, None) => {
                            here = 0;
                            w.read_swap(c.conn, M::Read)?;
                        }
                        (M::Moved { conn, offset }, None) => {
                            assert_eq!(offset, rec.lock().unwrap().len(), "handed over at another offset");
                            here = 0;
                            w.read_swap(conn, M::Read)?;
                        }
                        (M::Read, None) => {
                            rec.lock().unwrap().extend_from_slice(c.data());
                            here += c.bytes;
                            if here >= STEP {
                                w.detach(c.conn, M::Detach)?;
                            } else {
                                w.read_swap(c.conn, M::Read)?;
                            }
                        }
                        (M::Detach, None) => {
                            let fd = c.detached.take().expect("a detach hands the socket back");
                            mv.fetch_add(1, Ordering::SeqCst);
                            let offset = rec.lock().unwrap().len();
                            hand_over(&core.peers, (core.index + 1) % n, fd, offset)?;
                        }
                        (M::Read, Some(Error::Eof)) => {
                            dn.store(true, Ordering::SeqCst);
                            w.free(c.conn)?;
                        }
                        (M::Accept, Some(_)) | (M::Moved { .. }, Some(_)) => {}
                        (_, Some(_)) => w.free(c.conn)?,
                        (ctx, None) => panic!("unexpected {ctx:?}"),
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let addr = cores.local_addr().unwrap();
    let stream = util::pattern(0x0B0E, LEN);
    let mut client = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    timeouts(&client);
    for chunk in stream.chunks(64 * KIB) {
        client.write_all(chunk).unwrap();
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    wait_until(
        LIMIT,
        || done.load(Ordering::SeqCst),
        || format!("{} of {LEN} bytes read", received.lock().unwrap().len()),
    );
    let results = cores.stop().expect("stop");
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("core {i}: {e:?}"));
    }
    let got = received.lock().unwrap();
    let moved = moves.load(Ordering::SeqCst);
    eprintln!("reading: the connection changed cores {moved} times");
    // Each core reads STEP or more, in swap reads of at most
    // DEFAULT_SWAP_SIZE: under STEP + DEFAULT_SWAP_SIZE, so at least this
    // many stays, each but the last ending in a move.
    let least = LEN.div_ceil(STEP + gaio::DEFAULT_SWAP_SIZE) - 1;
    assert!(moved >= least, "only {moved} moves, expected {least} or more");
    if *got != stream {
        let at = got
            .iter()
            .zip(&stream)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(LEN));
        panic!(
            "the cores read {} bytes, expected {LEN}; first difference at byte {at}",
            got.len()
        );
    }
    drop(client);
    fds.check();
}

/// The other direction: the core holding the connection queues 512 KiB of
/// the stream (8 writes of 64 KiB) to a client whose window is small, then
/// detaches (which completes after those writes) and hands the connection
/// to the other core at the next offset, and so on until 8 MiB are
/// written; the last core shuts the connection down. The client reads the
/// pattern exactly, then end of stream.
#[test]
fn a_connection_moved_between_cores_mid_stream_loses_no_byte_writing() {
    const LEN: usize = 8 * MIB;
    const STEP: usize = 512 * KIB;
    const CHUNK: usize = 64 * KIB;
    let fds = util::FdCheck::new();
    let stream: Arc<Vec<u8>> = Arc::new(util::pattern(0x417E, LEN));
    let moves = Arc::new(AtomicUsize::new(0));
    let (st, mv) = (Arc::clone(&stream), Arc::clone(&moves));
    let cores = CoresBuilder::new()
        .threads(2)
        .listen_with(
            "127.0.0.1:0",
            Spread::RoundRobin,
            AcceptOptions::new().send_buffer_size(64 * KIB),
        )
        .start(move |core: Core<M>| -> gaio::Result<()> {
            let n = core.peers.len();
            let mut w = core.watcher;
            if let Some(listener) = core.listener {
                w.accept_multishot(listener, M::Accept)?;
            }
            // Queues the stream from `offset` on, then the detach (or, at
            // the end, the shutdown); returns where the stream stands once
            // these writes are out.
            let write_from = |w: &mut gaio::Watcher<M>, conn: Conn, offset: usize| -> gaio::Result<usize> {
                let end = (offset + STEP).min(LEN);
                for at in (offset..end).step_by(CHUNK) {
                    w.write(conn, M::Write, st[at..(at + CHUNK).min(end)].to_vec())?;
                }
                if end == LEN {
                    w.shutdown(conn, M::Shutdown)?;
                } else {
                    w.detach(conn, M::Detach)?;
                }
                Ok(end)
            };
            let mut next = 0;
            let mut batch = Vec::new();
            while w.next_batch(&mut batch)? {
                for mut c in batch.drain(..) {
                    match (c.context, &c.error) {
                        (M::Accept, None) => next = write_from(&mut w, c.conn, 0)?,
                        (M::Moved { conn, offset }, None) => next = write_from(&mut w, conn, offset)?,
                        (M::Write, None) => {}
                        (M::Detach, None) => {
                            let fd = c.detached.take().expect("a detach hands the socket back");
                            mv.fetch_add(1, Ordering::SeqCst);
                            hand_over(&core.peers, (core.index + 1) % n, fd, next)?;
                        }
                        (M::Shutdown, None) => w.free(c.conn)?,
                        (M::Accept, Some(_)) | (M::Moved { .. }, Some(_)) => {}
                        (ctx, Some(e)) => panic!("{ctx:?} failed: {e:?}"),
                        (ctx, None) => panic!("unexpected {ctx:?}"),
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let addr = cores.local_addr().unwrap();
    let mut client = small_window_client(addr, 64 * KIB);
    let got = util::peer::read_to_eof(&mut client);
    let results = cores.stop().expect("stop");
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("core {i}: {e:?}"));
    }
    let moved = moves.load(Ordering::SeqCst);
    eprintln!("writing: the connection changed cores {moved} times");
    assert_eq!(moved, LEN / STEP - 1);
    if got != *stream {
        let at = got
            .iter()
            .zip(stream.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(LEN));
        panic!(
            "the client read {} bytes, expected {LEN}; first difference at byte {at}",
            got.len()
        );
    }
    drop(client);
    fds.check();
}

// ----- 6. how evenly the spreads hold connections ------------------------------

/// What the spread cores' requests are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    Accept,
    Hello,
    Read,
}

/// Cores that hold the connections they are given.
type HoldingCores = gaio::Cores<S, Vec<u8>, gaio::Result<()>>;

/// Starts `threads` cores spreading over `spread`, each greeting a new
/// connection with its index (one byte) and holding it until the client
/// closes. `open[i]`: connections core `i` holds now (+1 on accept, -1 on
/// free); `accepted[i]`: connections it ever accepted.
fn holding_cores(threads: usize, spread: Spread) -> (HoldingCores, Arc<[AtomicUsize]>, Arc<[AtomicUsize]>) {
    let open = counters(threads);
    let accepted = counters(threads);
    let (op, acc) = (Arc::clone(&open), Arc::clone(&accepted));
    let cores = CoresBuilder::new()
        .threads(threads)
        .listen("127.0.0.1:0", spread)
        .start(move |core: Core<S>| hold_connections(core, &op, &acc))
        .unwrap_or_else(|e| panic!("start {spread:?}: {e}"));
    (cores, open, accepted)
}

/// A core of `holding_cores`: accepts (where it listens), greets each
/// client with its index, and holds the connection until the client
/// closes. `open[i]` and `accepted[i]` count core `i`'s connections.
fn hold_connections(core: Core<S>, open: &[AtomicUsize], accepted: &[AtomicUsize]) -> gaio::Result<()> {
    let i = core.index;
    let mut w = core.watcher;
    if let Some(listener) = core.listener {
        w.accept_multishot(listener, S::Accept)?;
    }
    let mut batch = Vec::new();
    while w.next_batch(&mut batch)? {
        for c in batch.drain(..) {
            match (c.context, &c.error) {
                (S::Accept, None) => {
                    open[i].fetch_add(1, Ordering::SeqCst);
                    accepted[i].fetch_add(1, Ordering::SeqCst);
                    w.write(c.conn, S::Hello, vec![i as u8])?;
                    w.read_swap(c.conn, S::Read)?;
                }
                (S::Accept, Some(_)) => {}
                // Clients send nothing: a read ends with the close.
                (S::Read, None) => w.read_swap(c.conn, S::Read)?,
                (S::Read, Some(_)) => {
                    open[i].fetch_sub(1, Ordering::SeqCst);
                    w.free(c.conn)?;
                }
                (S::Hello, _) => {}
            }
        }
    }
    Ok(())
}

/// The core a connection's greeting names.
fn greeting(s: &mut TcpStream) -> usize {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("the core's greeting");
    b[0] as usize
}

/// Largest over smallest of `counts` (infinite if one is 0).
fn ratio(counts: &[usize]) -> f64 {
    let max = *counts.iter().max().unwrap() as f64;
    let min = *counts.iter().min().unwrap() as f64;
    max / min
}

const BURSTS: usize = 10;
const BURST: usize = 200;

/// 10 bursts of 200 connections against `threads` cores. Within a burst,
/// after every tenth connection (in its first 80%), a random run of
/// `threads` consecutive connections of the burst still open closes early
/// (each client reads its greeting first, so the close is a clean end of
/// stream the server sees). At the burst's peak, once the cores have
/// accepted every connection and freed every early-closed one, the
/// per-core counts of held connections are taken, checked against where
/// the clients' greetings say they are, and their max/min recorded; then
/// every connection closes. Returns each burst's ratio, and how many
/// connections each core accepted in all.
///
/// Closing runs of `threads` consecutive connections is neutral for
/// round-robin (any such run holds one connection of each core): it keeps
/// the comparison about how connections are handed out. Churn that hits
/// one core harder is `least_loaded_follows_closes_round_robin_does_not`.
fn spread_bursts(threads: usize, spread: Spread) -> (Vec<f64>, Vec<usize>) {
    let (cores, open, accepted) = holding_cores(threads, spread);
    let addr = cores.local_addr().unwrap();
    let mut rng = Rng::new(0x5B2E_AD00 + threads as u64);
    let mut ratios = Vec::with_capacity(BURSTS);
    for burst in 0..BURSTS {
        let mut conns: Vec<Option<TcpStream>> = Vec::with_capacity(BURST);
        let mut closed_early = 0;
        for i in 0..BURST {
            let s = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
            timeouts(&s);
            conns.push(Some(s));
            if i % 10 == 9 && i < BURST * 8 / 10 {
                // Runs of `threads` consecutive connections all still open.
                let starts: Vec<usize> = (0..=conns.len() - threads)
                    .filter(|&k| conns[k..k + threads].iter().all(Option::is_some))
                    .collect();
                if let Some(&k) = starts.get(rng.below(starts.len().max(1) as u64) as usize) {
                    let mut cores_of_run = HashSet::new();
                    for slot in &mut conns[k..k + threads] {
                        let mut s = slot.take().unwrap();
                        cores_of_run.insert(greeting(&mut s));
                        closed_early += 1;
                    }
                    if spread == Spread::RoundRobin {
                        assert_eq!(
                            cores_of_run.len(),
                            threads,
                            "round-robin: {threads} consecutive connections on {} cores",
                            cores_of_run.len()
                        );
                    }
                }
            }
        }
        let held = BURST - closed_early;
        let accepts = (burst + 1) * BURST;
        wait_until(
            LIMIT,
            || {
                read_all(&accepted).iter().sum::<usize>() == accepts
                    && read_all(&open).iter().sum::<usize>() == held
            },
            || {
                format!(
                    "{spread:?} x{threads} burst {burst}: accepted {:?} (want {accepts}), open {:?} (want {held})",
                    read_all(&accepted),
                    read_all(&open)
                )
            },
        );
        let counts = read_all(&open);
        // Where the clients are, by their greetings: the same counts.
        let mut seen = vec![0; threads];
        for s in conns.iter_mut().flatten() {
            seen[greeting(s)] += 1;
        }
        assert_eq!(
            seen, counts,
            "{spread:?} x{threads} burst {burst}: clients' view vs the cores'"
        );
        ratios.push(ratio(&counts));
        drop(conns);
        let accepted_so_far: usize = read_all(&accepted).iter().sum();
        wait_until(
            LIMIT,
            || read_all(&open).iter().sum::<usize>() == 0,
            || {
                format!(
                    "{spread:?} x{threads} burst {burst}: still open {:?}",
                    read_all(&open)
                )
            },
        );
        assert_eq!(accepted_so_far, accepts);
    }
    let totals = read_all(&accepted);
    for r in cores.stop().expect("stop") {
        r.expect("core");
    }
    (ratios, totals)
}

/// 2,000 short-lived connections in 10 bursts of 200 (with early closes
/// churning within each burst) against 2 and 3 cores, for each spread; the
/// most over the fewest connections a core holds at each burst's peak
/// (about 152 held at a peak: 76 a core on two, 51 on three).
///
/// * `RoundRobin` and `LeastLoaded` hand connections out by count: at most
///   1.2 at every peak.
/// * `ReusePort`: the kernel hashes each connection's addresses and ports
///   with a random secret, so each core's share is random (binomial, then
///   thinned by the random early closes). Simulating exactly this burst
///   with a uniform hash (10 bursts a run, 200,000+ bursts simulated): a
///   peak above 2.0 on two cores happens in about 5 runs in 100,000, a
///   peak above 2.8 on three cores in about 3 in 100,000 (three cores
///   spread much wider: above 2.0 in about 2 runs in 100). Those are the
///   bounds. Over the whole 2,000 connections the hash must be even: the
///   accepted totals within 1.3 of each other (above that in fewer than 1
///   in 20,000 simulated runs on three cores). A hash that favoured one
///   listener, or a listener never accepting, fails these.
#[test]
fn spread_of_short_lived_connections_in_bursts() {
    let fds = util::FdCheck::new();
    util::raise_nofile(4096);
    for threads in [2, 3] {
        for &spread in SPREADS {
            let (ratios, totals) = spread_bursts(threads, spread);
            let worst = ratios.iter().copied().fold(1.0, f64::max);
            eprintln!(
                "spread {spread:?} on {threads} cores: held max/min at burst peaks: worst {worst:.3} ({}); \
                 accepted in all {totals:?}",
                ratios
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let bound = match (spread, threads) {
                (Spread::ReusePort, 2) => 2.0,
                (Spread::ReusePort, _) => 2.8,
                _ => 1.2,
            };
            assert!(
                worst <= bound,
                "{spread:?} on {threads} cores: max/min {worst:.3} > {bound} at a burst peak: {ratios:?}"
            );
            assert!(
                ratio(&totals) <= 1.3,
                "{spread:?} on {threads} cores: accepted {totals:?} in all"
            );
        }
    }
    fds.check();
    assert_no_core_threads();
}

/// Churn that hits one core: 200 connections, one at a time, against two
/// cores; every other connection that lands on core 0 closes at once (and
/// the cores free it before the next connects). `LeastLoaded` counts the
/// closed ones out and sends the next connections to core 0: the cores
/// hold about as many (max/min <= 1.2). `RoundRobin` keeps alternating, so
/// core 0 ends with about half as many as core 1 (max/min >= 1.5): the
/// measurement tells the two apart.
#[test]
fn least_loaded_follows_closes_round_robin_does_not() {
    const CONNS: usize = 200;
    let fds = util::FdCheck::new();
    for spread in [Spread::LeastLoaded, Spread::RoundRobin] {
        let (cores, open, accepted) = holding_cores(2, spread);
        let addr = cores.local_addr().unwrap();
        let mut kept = Vec::new();
        let mut on_core0 = 0;
        for i in 0..CONNS {
            let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
            timeouts(&s);
            let core = greeting(&mut s);
            if core == 0 {
                on_core0 += 1;
                if on_core0 % 2 == 1 {
                    drop(s);
                    let want = kept.len();
                    wait_until(
                        LIMIT,
                        || read_all(&open).iter().sum::<usize>() == want,
                        || format!("{spread:?}: connection {i} not freed: open {:?}", read_all(&open)),
                    );
                    continue;
                }
            }
            kept.push(s);
        }
        let want = kept.len();
        wait_until(
            LIMIT,
            || read_all(&open).iter().sum::<usize>() == want,
            || format!("{spread:?}: open {:?}", read_all(&open)),
        );
        let counts = read_all(&open);
        let r = ratio(&counts);
        eprintln!(
            "skewed churn, {spread:?}: held {counts:?} (max/min {r:.3}), accepted {:?}",
            read_all(&accepted)
        );
        match spread {
            Spread::LeastLoaded => assert!(r <= 1.2, "{spread:?}: held {counts:?}"),
            _ => assert!(
                r >= 1.5,
                "{spread:?}: held {counts:?}: round-robin followed the closes?"
            ),
        }
        drop(kept);
        for r in cores.stop().expect("stop") {
            r.expect("core");
        }
    }
    fds.check();
}

// ----- 7. A stop racing a hand-off -------------------------------------------------

/// A `stop()` racing a hand-off between cores ends the per-thread loop of
/// the `Cores` docs cleanly. With `RoundRobin` or `LeastLoaded`, the
/// listening core hands an accepted connection to another core through
/// that core's command queue; if that core closes before taking it in,
/// the accept completes there with `Error::WatcherClosed` on the handle
/// that core gave the connection, and the loop's `w.free(c.conn)?` (as on
/// every error) succeeds. (It once completed on a handle naming no
/// watcher, which `free` refused with `ForeignConn`.)
///
/// Made deterministic here: core 1 is busy (a sleep) before its loop
/// starts, so the connection handed to it is still queued when `stop()`
/// closes it.
#[test]
fn a_stop_racing_a_hand_off_between_cores_ends_the_documented_loop_cleanly() {
    let fds = util::FdCheck::new();
    let cores = CoresBuilder::new()
        .threads(2)
        .listen("127.0.0.1:0", Spread::RoundRobin)
        .start(|core: Core| -> gaio::Result<()> {
            if core.index == 1 {
                // Busy elsewhere for a moment.
                thread::sleep(ms(500));
            }
            // The loop of the `gaio::Cores` docs, as written there.
            let mut w = core.watcher;
            if let Some(listener) = core.listener {
                w.accept_multishot(listener, ())?;
            }
            let mut batch = Vec::new();
            while w.next_batch(&mut batch)? {
                for c in batch.drain(..) {
                    match (c.op, &c.error) {
                        (_, Some(_)) => w.free(c.conn)?,
                        (Op::Read, None) => w.write(c.conn, (), c.data().to_vec())?,
                        (_, None) => w.read_swap(c.conn, ())?,
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let addr = cores.local_addr().unwrap();
    // Round-robin: the first connection stays on core 0, the second is
    // handed to core 1.
    let mut first = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    timeouts(&first);
    let second = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    first.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    first.read_exact(&mut b).unwrap();
    // Time for core 0 to accept the second one and hand it over.
    thread::sleep(ms(100));
    let results = cores.stop().expect("stop");
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("core {i}: {e:?}")))
        .collect();
    drop((first, second));
    fds.check();
    assert!(failed.is_empty(), "the documented loop failed: {failed:?}");
}

// ----- 8. A core that ended ------------------------------------------------------

/// `LeastLoaded` spreads over the cores still running. Core 2's function
/// returns at once (its watcher closes: `Core` docs), the other two hold
/// their connections; 12 clients then connect one by one. The closed
/// watcher held no connection, so it looked the least loaded to every
/// pick: each connection chosen for it was refused and kept by the
/// listening core 0, which ended with 11 of the 12 (core 1 with 1) instead
/// of 6 and 6 (found by review).
#[test]
fn least_loaded_spreads_over_the_cores_still_running() {
    spreads_over_the_cores_still_running(Spread::LeastLoaded);
}

/// `RoundRobin` takes turns among the cores still running: core 2's turns
/// went to it, were refused and kept by the listening core 0, which ended
/// with 8 of the 12 (core 1 with 4) instead of 6 and 6.
#[test]
fn round_robin_spreads_over_the_cores_still_running() {
    spreads_over_the_cores_still_running(Spread::RoundRobin);
}

fn spreads_over_the_cores_still_running(spread: Spread) {
    const CONNS: usize = 12;
    let fds = util::FdCheck::new();
    let open = counters(3);
    let accepted = counters(3);
    let ended = Arc::new(AtomicBool::new(false));
    let (op, acc, end) = (Arc::clone(&open), Arc::clone(&accepted), Arc::clone(&ended));
    let cores = CoresBuilder::new()
        .threads(3)
        .listen("127.0.0.1:0", spread)
        .start(move |core: Core<S>| -> gaio::Result<()> {
            if core.index == 2 {
                drop(core);
                end.store(true, Ordering::SeqCst);
                return Ok(());
            }
            hold_connections(core, &op, &acc)
        })
        .unwrap();
    wait_until(
        LIMIT,
        || ended.load(Ordering::SeqCst),
        || "core 2 did not end".into(),
    );
    let addr = cores.local_addr().unwrap();
    let mut on = [0usize; 3];
    let mut kept = Vec::new();
    for _ in 0..CONNS {
        let mut s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
        timeouts(&s);
        on[greeting(&mut s)] += 1;
        kept.push(s);
    }
    wait_until(
        LIMIT,
        || read_all(&open).iter().sum::<usize>() == CONNS,
        || format!("open {:?}", read_all(&open)),
    );
    assert_eq!(on[2], 0, "a connection went to the core that ended");
    assert_eq!(
        on,
        [CONNS / 2, CONNS / 2, 0],
        "{spread:?}: over the two cores running (greeted by core 0, 1, 2)"
    );
    drop(kept);
    for r in cores.stop().expect("stop") {
        r.expect("core");
    }
    fds.check();
}
