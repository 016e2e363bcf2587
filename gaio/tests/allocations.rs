//! Steady state allocates nothing on the thread that runs the I/O: a
//! server that accepts, echoes and frees connections over and over, and a
//! client that connects, echoes and closes over and over, both in inline
//! mode, make no heap allocation per connection once warmed up.
//!
//! A counting global allocator counts allocations per thread (a
//! thread-local counter), so the peers' allocations on other threads do not
//! count.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Bytes, Error, Op, Submit, Watcher};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// While set (the counted part of a test), the first allocations on
    /// this thread record where they were made, for the failure message.
    static TRACING: Cell<bool> = const { Cell::new(false) };
    /// Set while one is recorded: what the recording allocates is neither
    /// counted nor recorded.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static TRACES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Counts an allocation on this thread; while tracing, records where the
/// first few were made.
fn note_allocation() {
    if RECORDING.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    if !TRACING.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _ = RECORDING.try_with(|r| r.set(true));
    let _ = TRACES.try_with(|t| {
        let mut t = t.borrow_mut();
        if t.len() < 3 {
            t.push(std::backtrace::Backtrace::force_capture().to_string());
        }
    });
    let _ = RECORDING.try_with(|r| r.set(false));
}

// SAFETY: every method forwards to the system allocator unchanged. The
// counter and flags are `const`-initialised `Cell`s with no destructor, so
// touching them from inside the allocator neither allocates nor recurses;
// recording a backtrace allocates, and those nested calls see `RECORDING`
// set and only forward.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above, i.e. from
        // `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract for `realloc` is passed on
        // unchanged, and `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Starts the counted part: returns the count so far, and records where
/// the next allocations on this thread are made.
fn start_counting() -> u64 {
    TRACING.with(|t| t.set(true));
    allocations()
}

/// Ends the counted part begun at `since`: the allocations made since, and
/// where the first of them were made (for the failure message).
fn counted_since(since: u64) -> (u64, String) {
    TRACING.with(|t| t.set(false));
    let counted = allocations() - since;
    let traces = TRACES.with(|t| std::mem::take(&mut *t.borrow_mut()));
    (counted, traces.join("\n----\n"))
}

const LIMIT: Duration = Duration::from_secs(20);
/// Connections served before counting: enough for the swap memory to turn
/// over once (a 64-byte echo per connection, a 64 KiB slab). On io_uring a
/// write is stored before the kernel sends it, so the slice it carries is
/// still held at the first turnover and a second slab is made then; from
/// the next turnover on the two take turns.
const WARM_UP: usize = 1500;
const COUNTED: usize = 1_000;

/// Accepts, echoes one message, frees: `WARM_UP + COUNTED` connections.
/// Returns the allocations made on this thread while serving the last
/// `COUNTED` connections.
fn serve(w: &mut Watcher<u8, Bytes>, listener: gaio::Listener, total: usize) -> (u64, String) {
    const ACCEPT: u8 = 0;
    const ECHO: u8 = 1;
    for _ in 0..4 {
        w.accept(listener, ACCEPT).unwrap();
    }
    let (mut batch, mut freed, mut at_warm) = (Vec::with_capacity(64), 0, None);
    let end = Instant::now() + LIMIT;
    while freed < total {
        assert!(Instant::now() < end, "served only {freed} of {total} connections");
        w.wait_io_timeout(&mut batch, Duration::from_secs(1)).unwrap();
        for c in batch.drain(..) {
            match (c.op, c.error, c.buffer) {
                (Op::Accept, None, _) => {
                    w.read_swap(c.conn, ECHO).unwrap();
                    w.accept(listener, ACCEPT).unwrap();
                }
                (Op::Read, None, Buffer::Swap(data)) => w.write(c.conn, ECHO, data).unwrap(),
                (Op::Write, None, _) => w.read_swap(c.conn, ECHO).unwrap(),
                (Op::Read, Some(Error::Eof), _) => {
                    w.free(c.conn).unwrap();
                    freed += 1;
                    if freed == total - COUNTED {
                        at_warm = Some(start_counting());
                    }
                }
                (op, error, _) => panic!("unexpected {op:?} completion: {error:?}"),
            }
        }
    }
    counted_since(at_warm.expect("warmed up"))
}

/// Connects, echoes one 64-byte message, closes, `total` times, one at a
/// time, from a std client.
fn clients(addr: std::net::SocketAddr, total: usize) {
    for i in 0..total {
        let mut s = TcpStream::connect(addr).unwrap();
        util::peer::timeouts(&s);
        let msg = util::pattern(i as u64, 64);
        s.write_all(&msg).unwrap();
        let mut back = vec![0; 64];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg, "connection {i}");
    }
}

#[test]
fn accepting_echoing_and_freeing_allocate_nothing_in_steady_state() {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u8, Bytes> = util::watcher(gaio::Mode::Inline);
    let listener = gaio::listen("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = w.watch_listener(listener).unwrap();
    let total = WARM_UP + COUNTED;
    let peers = thread::spawn(move || clients(addr, total));
    let (counted, traces) = serve(&mut w, listener, total);
    peers.join().unwrap();
    assert_eq!(
        counted, 0,
        "{counted} allocations while serving {COUNTED} connections; the first made at:\n{traces}"
    );
    drop(w);
    fds.check();
}

#[test]
fn connecting_echoing_and_freeing_allocate_nothing_in_steady_state() {
    const CONNECT: u8 = 0;
    const ECHO: u8 = 1;
    let fds = util::FdCheck::new();
    let listener = gaio::listen("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let total = WARM_UP + COUNTED;
    // A std echo server on another thread: one connection at a time.
    let server = thread::spawn(move || {
        for _ in 0..total {
            let (mut s, _) = listener.accept().unwrap();
            util::peer::timeouts(&s);
            let mut buf = [0u8; 64];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
        }
    });
    let mut w: Watcher<u8, Vec<u8>> = util::watcher(gaio::Mode::Inline);
    let (mut batch, mut at_warm) = (Vec::with_capacity(8), None);
    let mut msg = vec![0u8; 64];
    let end = Instant::now() + LIMIT;
    for i in 0..total {
        if i == WARM_UP {
            at_warm = Some(start_counting());
        }
        w.connect(addr, CONNECT).unwrap();
        let mut done = false;
        while !done {
            assert!(Instant::now() < end, "connection {i} did not finish");
            w.wait_io_timeout(&mut batch, Duration::from_secs(1)).unwrap();
            for c in batch.drain(..) {
                match (c.op, c.error) {
                    (Op::Connect, None) => {
                        let out = std::mem::take(&mut msg);
                        w.write(c.conn, ECHO, out).unwrap();
                    }
                    (Op::Write, None) => {
                        msg = c.buffer.into_user().expect("the write's buffer");
                        w.read_full(c.conn, ECHO, std::mem::take(&mut msg)).unwrap();
                    }
                    (Op::ReadFull, None) => {
                        msg = c.buffer.into_user().expect("the read's buffer");
                        w.free(c.conn).unwrap();
                        done = true;
                    }
                    (op, error) => panic!("connection {i}: unexpected {op:?} completion: {error:?}"),
                }
            }
        }
    }
    let (counted, traces) = counted_since(at_warm.expect("warmed up"));
    server.join().unwrap();
    assert_eq!(
        counted, 0,
        "{counted} allocations while making {COUNTED} connections; the first made at:\n{traces}"
    );
    drop(w);
    fds.check();
}

/// Collects 64-byte messages that arrive in two pieces with `read_append`
/// into one reused `Vec`, and echoes each whole message: no allocation per
/// message once warmed up.
#[test]
fn collecting_messages_with_read_append_allocates_nothing_in_steady_state() {
    const MSG: usize = 64;
    let fds = util::FdCheck::new();
    let mut w: Watcher<u8, Vec<u8>> = util::watcher(gaio::Mode::Inline);
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    // Both halves go out at once (no Nagle wait for the first's ACK).
    peer.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    let conn = w.watch(server).unwrap();
    let total = WARM_UP + COUNTED;
    let client = thread::spawn(move || {
        for i in 0..total {
            let msg = util::pattern(i as u64, MSG);
            // Two pieces, the second after the first has surely been read
            // on its own most of the time.
            peer.write_all(&msg[..MSG / 2]).unwrap();
            thread::yield_now();
            peer.write_all(&msg[MSG / 2..]).unwrap();
            let mut back = vec![0; MSG];
            peer.read_exact(&mut back).unwrap();
            assert_eq!(back, msg, "message {i}");
        }
    });
    let (mut batch, mut echoed, mut at_warm, mut reads) = (Vec::with_capacity(8), 0, None, 0u64);
    w.read_append(conn, 0, Vec::with_capacity(MSG)).unwrap();
    let end = Instant::now() + LIMIT;
    while echoed < total {
        assert!(Instant::now() < end, "echoed only {echoed} of {total} messages");
        w.wait_io_timeout(&mut batch, Duration::from_secs(1)).unwrap();
        for c in batch.drain(..) {
            assert!(c.error.is_none(), "{:?}: {:?}", c.op, c.error);
            let mut buf = c.buffer.into_user().expect("the request's buffer");
            match c.op {
                Op::ReadAppend if buf.len() < MSG => {
                    reads += 1;
                    w.read_append(conn, 0, buf).unwrap();
                }
                Op::ReadAppend => {
                    reads += 1;
                    w.write(conn, 0, buf).unwrap();
                }
                Op::Write => {
                    echoed += 1;
                    if echoed == WARM_UP {
                        at_warm = Some(start_counting());
                    }
                    buf.clear();
                    w.read_append(conn, 0, buf).unwrap();
                }
                op => panic!("unexpected {op:?} completion"),
            }
        }
    }
    let (counted, traces) = counted_since(at_warm.expect("warmed up"));
    client.join().unwrap();
    assert!(
        reads > total as u64,
        "every message came whole: pieces were not exercised"
    );
    assert_eq!(
        counted, 0,
        "{counted} allocations while collecting {COUNTED} messages; the first made at:\n{traces}"
    );
    w.free(conn).unwrap();
    drop(w);
    fds.check();
}
