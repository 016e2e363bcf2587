//! Accepting connections as requests: `gaio::listen` / `listen_unix`,
//! `watch_listener`, `accept` and `accept_timeout`, in both modes.
//!
//! A burst of 1,000 connections with 16 accepts kept pending, FIFO order of
//! pending accepts, deadlines on an idle listener, running out of
//! descriptors (EMFILE) without failing or spinning, TCP_NODELAY on accepted
//! sockets, Unix listeners, misuse, and freeing or closing with accepts
//! pending.
//!
//! Accepting on a connection that is not a listener cannot be written: a
//! [`gaio::Listener`] only comes from `watch_listener` (its field is private
//! to the library), and `accept` takes a `Listener`, not a `Conn`. So there
//! is no test for it here: the compiler refuses it.
//!
//! Every test holds the test lock (see `util`): most count descriptors.

mod util;
use util::peer::{timeouts, unix_timeouts};
use util::{ok, one, TempDir};

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gaio::{AcceptOptions, Buffer, Completion, Conn, Error, Mode, Op, PeerAddr, Submit, Watcher};
use rustix::io::Errno;

const LIMIT: Duration = Duration::from_secs(5);

// ----- helpers ---------------------------------------------------------------

/// The peer address of an accept completion as an IP address.
fn inet_peer<C, B>(c: &Completion<C, B>) -> SocketAddr {
    match &c.peer {
        Some(PeerAddr::Inet(a)) => *a,
        other => panic!("expected an IP peer address, got {other:?}"),
    }
}

/// Asserts `c` is a successful accept on `listener` and returns the new
/// connection.
fn accepted<C: std::fmt::Debug, B>(c: &Completion<C, B>, listener: gaio::Listener) -> Conn {
    assert_eq!(c.op, Op::Accept, "context {:?}", c.context);
    assert!(c.error.is_none(), "accept failed: {:?}", c.error);
    assert!(matches!(c.buffer, Buffer::None), "an accept carries no buffer");
    assert!(c.detached.is_none());
    // A successful accept names the new connection, not the listener.
    let conn = c.conn;
    assert_ne!(conn, listener.conn());
    conn
}

/// One message from `peer` through the watcher's `conn` and back: the
/// watcher reads it whole (`read_full`), checks it, writes it back, and the
/// peer checks what it reads.
fn echo_through<S: Read + Write>(w: &mut Watcher<u64, Vec<u8>>, conn: Conn, peer: &mut S, seed: u64) {
    let msg = util::pattern(seed, 300);
    peer.write_all(&msg).expect("peer write");
    ok(w.read_full(conn, 100, vec![0; msg.len()]));
    let c = one(w, LIMIT);
    assert_eq!((c.op, c.context), (Op::ReadFull, 100));
    assert!(c.error.is_none(), "read_full failed: {:?}", c.error);
    assert_eq!(
        c.data(),
        &msg[..],
        "the watcher read other bytes than the peer sent"
    );
    let buf = c.buffer.into_user().expect("own buffer back");
    ok(w.write(conn, 101, buf));
    let c = one(w, LIMIT);
    assert_eq!((c.op, c.context, c.bytes), (Op::Write, 101, msg.len()));
    assert!(c.error.is_none(), "write failed: {:?}", c.error);
    let mut back = vec![0; msg.len()];
    peer.read_exact(&mut back).expect("peer read of the echo");
    assert_eq!(back, msg, "the peer got other bytes back");
}

/// Asserts a plain connect to `addr` is refused (nothing listens there).
fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, LIMIT) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(Errno::CONNREFUSED.raw_os_error()),
            "connect to {addr}: expected ECONNREFUSED, got {e}"
        ),
        Ok(_) => panic!("connect to {addr} succeeded: the listener is still open"),
    }
}

// ----- 1. a burst of 1,000 connections ------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Accept,
    Read(usize),
    Write(usize),
}

const BURST: usize = 1000;
const BURST_PENDING: usize = 16;
const BURST_MSG: usize = 64;

/// Client `i`'s message: its index, then a pattern seeded by it.
fn burst_message(i: usize) -> Vec<u8> {
    let mut m = (i as u32).to_le_bytes().to_vec();
    m.extend(util::pattern(0xACCE_0000 + i as u64, BURST_MSG - 4));
    m
}

fn accept_burst(mode: Mode) {
    let limit = Duration::from_secs(20);
    let start = Instant::now();
    let end = start + limit;
    let mut w: Watcher<Ctx, Vec<u8>> = util::watcher(mode);
    let tcp = gaio::listen("127.0.0.1:0").expect("listen");
    let addr = tcp.local_addr().unwrap();
    let listener = w.watch_listener(tcp).expect("watch_listener");
    for _ in 0..BURST_PENDING {
        ok(w.accept(listener, Ctx::Accept));
    }
    let mut submitted = BURST_PENDING;

    // The clients: all connect at once, then each sends its message, then
    // each reads its echo and compares.
    let (addr_tx, addr_rx) = mpsc::channel();
    let clients = thread::spawn(move || {
        let mut streams = Vec::with_capacity(BURST);
        for i in 0..BURST {
            let s = TcpStream::connect_timeout(&addr, LIMIT)
                .unwrap_or_else(|e| panic!("client {i}: connect: {e}"));
            timeouts(&s);
            streams.push(s);
        }
        addr_tx
            .send(
                streams
                    .iter()
                    .map(|s| s.local_addr().unwrap())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        for (i, s) in streams.iter_mut().enumerate() {
            s.write_all(&burst_message(i))
                .unwrap_or_else(|e| panic!("client {i}: write: {e}"));
        }
        for (i, s) in streams.iter_mut().enumerate() {
            let mut back = vec![0; BURST_MSG];
            s.read_exact(&mut back)
                .unwrap_or_else(|e| panic!("client {i}: read of the echo: {e}"));
            assert_eq!(back, burst_message(i), "client {i} got other bytes back");
        }
        streams.len()
    });

    // accepted[k] = (connection, peer) of the k-th accept; client[k] = the
    // client index its message named.
    let mut accepted_conns: Vec<(Conn, SocketAddr)> = Vec::with_capacity(BURST);
    let mut client_of: Vec<Option<usize>> = Vec::with_capacity(BURST);
    let mut echoed = 0;
    let mut out = Vec::new();
    while echoed < BURST {
        let now = Instant::now();
        assert!(
            now < end,
            "{mode:?}: after {limit:?}: {} accepted, {echoed} echoed of {BURST}",
            accepted_conns.len()
        );
        w.wait_io_timeout(&mut out, end - now).expect("wait_io");
        for c in out.drain(..) {
            match c.context {
                Ctx::Accept => {
                    let conn = accepted(&c, listener);
                    let k = accepted_conns.len();
                    accepted_conns.push((conn, inet_peer(&c)));
                    client_of.push(None);
                    ok(w.read_full(conn, Ctx::Read(k), vec![0; BURST_MSG]));
                    if submitted < BURST {
                        ok(w.accept(listener, Ctx::Accept));
                        submitted += 1;
                    }
                }
                Ctx::Read(k) => {
                    assert_eq!(c.op, Op::ReadFull);
                    assert!(c.error.is_none(), "read on accept #{k}: {:?}", c.error);
                    assert_eq!(c.conn, accepted_conns[k].0);
                    let data = c.data();
                    assert_eq!(data.len(), BURST_MSG);
                    let i = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
                    assert!(i < BURST, "accept #{k}: message names client {i}");
                    assert_eq!(data, &burst_message(i)[..], "accept #{k}: corrupt message");
                    client_of[k] = Some(i);
                    let buf = c.buffer.into_user().unwrap();
                    ok(w.write(c.conn, Ctx::Write(k), buf));
                }
                Ctx::Write(k) => {
                    assert_eq!(c.op, Op::Write);
                    assert!(c.error.is_none(), "echo on accept #{k}: {:?}", c.error);
                    assert_eq!(c.bytes, BURST_MSG);
                    echoed += 1;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(accepted_conns.len(), BURST, "{mode:?}: accepts completed");
    assert_eq!(submitted, BURST);
    let distinct: HashSet<Conn> = accepted_conns.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        distinct.len(),
        BURST,
        "{mode:?}: accepted connections must be distinct"
    );
    let addrs: Vec<SocketAddr> = addr_rx.recv_timeout(LIMIT).expect("client addresses");
    let mut seen = HashSet::new();
    for (k, (_, peer)) in accepted_conns.iter().enumerate() {
        let i = client_of[k].expect("every accepted connection carried a message");
        assert!(seen.insert(i), "{mode:?}: client {i} was accepted twice");
        assert_eq!(
            *peer, addrs[i],
            "{mode:?}: accept #{k}: peer is not client {i}'s address"
        );
    }
    let n = clients.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(n, BURST);
    // No accept is left pending: nothing more completes.
    util::expect_quiet(&mut w, Duration::from_millis(20));
    eprintln!("{mode:?}: {BURST} accepted and echoed in {elapsed:?}");
}

#[test]
fn accept_burst_of_1000_connections_with_16_pending() {
    let fds = util::FdCheck::new();
    util::raise_nofile(4 * BURST as u64 + 256);
    for mode in util::MODES {
        accept_burst(mode);
    }
    fds.check();
}

// ----- 2. FIFO -------------------------------------------------------------------

#[test]
fn pending_accepts_complete_in_submission_order() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        const N: u64 = 6;
        for i in 0..N {
            ok(w.accept(listener, i));
        }
        util::expect_quiet(&mut w, Duration::from_millis(30));
        let mut clients = Vec::new();
        for i in 0..N {
            let client = TcpStream::connect(addr).expect("connect");
            let c = one(&mut w, LIMIT);
            assert_eq!(
                c.context, i,
                "{mode:?}: accepts must complete in submission order"
            );
            accepted(&c, listener);
            assert_eq!(inet_peer(&c), client.local_addr().unwrap());
            clients.push(client);
        }
        util::expect_quiet(&mut w, Duration::from_millis(30));
    }
    fds.check();
}

// ----- 3. deadline ---------------------------------------------------------------

#[test]
fn accept_timeout_on_idle_listener_then_accepts() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        let wait = Duration::from_millis(200);
        let deadline = Instant::now() + wait;
        ok(w.accept_timeout(listener, 1, deadline));
        let c = one(&mut w, LIMIT);
        let at = Instant::now();
        assert_eq!((c.op, c.context, c.conn), (Op::Accept, 1, listener.conn()));
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: expected Deadline, got {:?}",
            c.error
        );
        assert!(c.peer.is_none());
        assert!(at >= deadline, "{mode:?}: completed {:?} early", deadline - at);
        assert!(
            at - deadline < Duration::from_secs(1),
            "{mode:?}: completed {:?} after its deadline",
            at - deadline
        );

        // The listener still works.
        ok(w.accept(listener, 2));
        let mut client = TcpStream::connect(addr).expect("connect");
        timeouts(&client);
        let c = one(&mut w, LIMIT);
        assert_eq!(c.context, 2);
        let conn = accepted(&c, listener);
        assert_eq!(inet_peer(&c), client.local_addr().unwrap());
        echo_through(&mut w, conn, &mut client, 3);
    }
    fds.check();
}

// ----- 4. out of descriptors -------------------------------------------------------

/// Lowers the soft RLIMIT_NOFILE, and puts the original limit back when
/// dropped (a failing test included).
#[cfg(target_os = "linux")]
struct NofileLimit {
    original: rustix::process::Rlimit,
}

#[cfg(target_os = "linux")]
impl NofileLimit {
    /// Records the limit now. The caller holds the test lock exclusively.
    fn new() -> Self {
        NofileLimit {
            original: rustix::process::getrlimit(rustix::process::Resource::Nofile),
        }
    }

    /// Sets the soft limit to the lowest free descriptor number: every
    /// number below it is in use, so no new descriptor can be made
    /// (checked: a new socket fails with EMFILE).
    fn exhaust(&self) {
        use std::os::fd::AsRawFd;
        let probe = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 0).expect("dup");
        let lowest_free = probe.as_raw_fd() as u64;
        drop(probe);
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(lowest_free),
                maximum: self.original.maximum,
            },
        )
        .expect("lower RLIMIT_NOFILE");
        let r = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::STREAM,
            None,
        );
        assert_eq!(r.err(), Some(Errno::MFILE), "descriptors should be exhausted now");
    }

    fn restore(&self) {
        rustix::process::setrlimit(rustix::process::Resource::Nofile, self.original)
            .expect("restore RLIMIT_NOFILE");
    }
}

#[cfg(target_os = "linux")]
impl Drop for NofileLimit {
    fn drop(&mut self) {
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.original) {
            eprintln!("could not restore RLIMIT_NOFILE: {e}");
        }
    }
}

/// The process's CPU time (all threads, user + system), from
/// `/proc/self/stat` opened beforehand (no descriptor is needed to read it
/// again), in clock ticks of 10 ms (USER_HZ is 100 on Linux).
#[cfg(target_os = "linux")]
fn cpu_time(stat: &std::fs::File) -> Duration {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).expect("read /proc/self/stat");
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    let after_comm = text.rsplit_once(')').expect("stat format").1;
    // Fields from the third (state): utime is the 14th, stime the 15th.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// A blocking TCP socket made now (while descriptors are still available)
/// and connected later.
#[cfg(target_os = "linux")]
fn unconnected_tcp() -> std::os::fd::OwnedFd {
    rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .expect("socket")
}

#[cfg(target_os = "linux")]
#[test]
fn accept_out_of_descriptors_waits_without_spinning() {
    let fds = util::FdCheck::new();
    let limit = NofileLimit::new();
    let stat = std::fs::File::open("/proc/self/stat").expect("open /proc/self/stat");
    // The CPU clock works: spinning shows in it (50 ms of CPU within 3 s,
    // however busy the machine is with other tests).
    let (cpu0, t0) = (cpu_time(&stat), Instant::now());
    while cpu_time(&stat).saturating_sub(cpu0) < Duration::from_millis(50) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "/proc/self/stat counted less than 50 ms of CPU in 3 s of spinning"
        );
        for _ in 0..1000 {
            std::hint::black_box(util::pattern(1, 64));
        }
    }
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        ok(w.accept(listener, 7));
        let client = unconnected_tcp();

        limit.exhaust();
        // The handshake completes in the kernel: the connection waits in
        // the listener's queue, and the watcher's accept4 fails with EMFILE.
        rustix::net::connect(&client, &addr).expect("client connect");
        let mut client = TcpStream::from(client);
        let cpu_before = cpu_time(&stat);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let n = w
            .wait_io_timeout(&mut out, Duration::from_millis(300))
            .expect("wait_io");
        let wall = t0.elapsed();
        let cpu = cpu_time(&stat).saturating_sub(cpu_before);
        assert_eq!(
            n,
            0,
            "{mode:?}: out of descriptors, the pending accept must wait, not complete (got {:?})",
            out.first().map(|c| &c.error)
        );
        assert!(
            cpu * 10 < wall * 3,
            "{mode:?}: the engine spun while out of descriptors: {cpu:?} of CPU in {wall:?}"
        );

        limit.restore();
        // Retried every 20 ms: the accept completes soon after.
        let c = one(&mut w, Duration::from_millis(500));
        assert_eq!(c.context, 7);
        let conn = accepted(&c, listener);
        assert_eq!(inet_peer(&c), client.local_addr().unwrap());
        timeouts(&client);
        echo_through(&mut w, conn, &mut client, 11);
        eprintln!("{mode:?}: out of descriptors for {wall:?}: {cpu:?} of CPU");
    }
    drop(stat);
    drop(limit);
    fds.check();
}

#[cfg(target_os = "linux")]
#[test]
fn accept_timeout_out_of_descriptors_reports_emfile() {
    let fds = util::FdCheck::new();
    let limit = NofileLimit::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        let client = unconnected_tcp();

        limit.exhaust();
        let deadline = Instant::now() + Duration::from_millis(200);
        ok(w.accept_timeout(listener, 5, deadline));
        rustix::net::connect(&client, &addr).expect("client connect");
        let c = one(&mut w, LIMIT);
        let at = Instant::now();
        assert_eq!((c.op, c.context, c.conn), (Op::Accept, 5, listener.conn()));
        assert!(
            matches!(c.error, Some(Error::Io(ref e)) if e.raw_os_error() == Some(Errno::MFILE.raw_os_error())),
            "{mode:?}: expected Io(EMFILE), got {:?}",
            c.error
        );
        assert!(c.peer.is_none());
        assert!(at >= deadline, "{mode:?}: completed {:?} early", deadline - at);
        limit.restore();

        // The connection is still queued: the next accept takes it.
        let mut client = TcpStream::from(client);
        timeouts(&client);
        ok(w.accept(listener, 6));
        let c = one(&mut w, LIMIT);
        assert_eq!(c.context, 6);
        let conn = accepted(&c, listener);
        assert_eq!(inet_peer(&c), client.local_addr().unwrap());
        echo_through(&mut w, conn, &mut client, 12);
    }
    drop(limit);
    fds.check();
}

// ----- 5. TCP_NODELAY ------------------------------------------------------------

#[test]
fn accepted_tcp_nodelay_on_by_default_off_when_asked() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        for options in [None, Some(AcceptOptions::new().nodelay(false))] {
            let want = options.is_none();
            let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
            let tcp = gaio::listen("127.0.0.1:0").expect("listen");
            let addr = tcp.local_addr().unwrap();
            let listener = match options {
                None => w.watch_listener(tcp),
                Some(o) => w.watch_listener_with(tcp, o),
            }
            .expect("watch_listener");
            ok(w.accept(listener, 1));
            let client = TcpStream::connect(addr).expect("connect");
            let c = one(&mut w, LIMIT);
            let conn = accepted(&c, listener);
            ok(w.detach(conn, 2));
            let c = one(&mut w, LIMIT);
            assert_eq!((c.op, c.context, c.conn), (Op::Detach, 2, conn));
            assert!(c.error.is_none(), "detach: {:?}", c.error);
            let fd = c.detached.expect("detach hands the socket back");
            assert_eq!(
                rustix::net::sockopt::tcp_nodelay(&fd).expect("getsockopt"),
                want,
                "{mode:?}, {options:?}: TCP_NODELAY of the accepted socket"
            );
            // It is the accepted socket: its peer is the client.
            let stream = TcpStream::from(fd);
            assert_eq!(stream.peer_addr().unwrap(), client.local_addr().unwrap());
        }
    }
    fds.check();
}

// ----- 6. Unix listener ------------------------------------------------------------

#[test]
fn accept_on_unix_listener() {
    let fds = util::FdCheck::new();
    let dir = TempDir::new("accept");
    for (k, mode) in util::MODES.into_iter().enumerate() {
        let path = dir.path().join(format!("listener-{k}.sock"));
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let listener = w
            .watch_listener(gaio::listen_unix(&path).expect("listen_unix"))
            .expect("watch_listener");
        ok(w.accept(listener, 1));
        let mut client = UnixStream::connect(&path).expect("connect");
        unix_timeouts(&client);
        let c = one(&mut w, LIMIT);
        assert_eq!(c.context, 1);
        let conn = accepted(&c, listener);
        match &c.peer {
            Some(PeerAddr::Unix(_)) => {}
            other => panic!("{mode:?}: expected a Unix peer, got {other:?}"),
        }
        assert!(c.peer.as_ref().unwrap().as_inet().is_none());
        echo_through(&mut w, conn, &mut client, 20 + k as u64);
        // The client bound no name: its address is unnamed (neither a path
        // nor an abstract name).
        let peer = c.peer.as_ref().unwrap().as_unix().unwrap();
        assert_eq!(peer.as_path(), None, "{mode:?}: got {peer:?}");
        assert_eq!(peer.as_abstract_name(), None, "{mode:?}: got {peer:?}");
        assert!(peer.is_unnamed(), "{mode:?}: the client is unnamed, got {peer:?}");
    }
    drop(dir);
    fds.check();
}

// ----- 7. misuse -------------------------------------------------------------------

#[test]
fn watch_listener_refuses_sockets_not_listening() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);

        let (client, server) = util::tcp_pair();
        let before = util::open_fds();
        match w.watch_listener(server) {
            Err(Error::NotListening) => {}
            other => panic!("{mode:?}: connected stream: expected NotListening, got {other:?}"),
        }
        assert_eq!(
            util::open_fds(),
            before - 1,
            "{mode:?}: the refused socket must be closed"
        );
        drop(client);

        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let before = util::open_fds();
        match w.watch_listener(udp) {
            Err(Error::NotListening) => {}
            other => panic!("{mode:?}: datagram socket: expected NotListening, got {other:?}"),
        }
        assert_eq!(
            util::open_fds(),
            before - 1,
            "{mode:?}: the refused socket must be closed"
        );
    }
    fds.check();
}

#[test]
fn read_and_write_on_a_listener_are_not_supported() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        let buf = util::pattern(30, 48);

        // From the owner: refused at submission inline, a completion in
        // background mode; the buffer comes back either way.
        match (mode, w.read(listener.conn(), 9, buf.clone())) {
            (Mode::Inline, Err(r)) => {
                assert!(
                    matches!(r.error, Error::NotSupported { op: Op::Read }),
                    "got {:?}",
                    r.error
                );
                assert_eq!(r.context, 9);
                assert_eq!(r.buffer.as_ref(), Some(&buf), "the buffer comes back");
            }
            (Mode::Background, Ok(())) => {
                let c = one(&mut w, LIMIT);
                assert_eq!((c.op, c.context, c.conn), (Op::Read, 9, listener.conn()));
                assert!(
                    matches!(c.error, Some(Error::NotSupported { op: Op::Read })),
                    "got {:?}",
                    c.error
                );
                assert_eq!(c.buffer, Buffer::User(buf.clone()), "the buffer comes back");
            }
            (mode, r) => panic!("{mode:?}: read on a listener: {:?}", r.map_err(|r| r.error)),
        }
        match (mode, w.read_swap(listener.conn(), 10)) {
            (Mode::Inline, Err(r)) => assert!(matches!(r.error, Error::NotSupported { op: Op::Read })),
            (Mode::Background, Ok(())) => {
                let c = one(&mut w, LIMIT);
                assert_eq!((c.op, c.context), (Op::Read, 10));
                assert!(matches!(c.error, Some(Error::NotSupported { op: Op::Read })));
            }
            (mode, r) => panic!("{mode:?}: read_swap on a listener: {:?}", r.map_err(|r| r.error)),
        }

        // Through a Submitter: a completion in both modes.
        let mut s = w.submitter();
        ok(s.write(listener.conn(), 11, buf.clone()));
        let c = one(&mut w, LIMIT);
        assert_eq!((c.op, c.context, c.conn), (Op::Write, 11, listener.conn()));
        assert!(
            matches!(c.error, Some(Error::NotSupported { op: Op::Write })),
            "got {:?}",
            c.error
        );
        assert_eq!(c.buffer, Buffer::User(buf.clone()));
        ok(s.read(listener.conn(), 12, buf.clone()));
        let c = one(&mut w, LIMIT);
        assert_eq!((c.op, c.context), (Op::Read, 12));
        assert!(matches!(c.error, Some(Error::NotSupported { op: Op::Read })));
        assert_eq!(c.buffer, Buffer::User(buf.clone()));

        // The refusals left the listener as it was.
        ok(w.accept(listener, 13));
        let mut client = TcpStream::connect(addr).expect("connect");
        timeouts(&client);
        let c = one(&mut w, LIMIT);
        let conn = accepted(&c, listener);
        echo_through(&mut w, conn, &mut client, 31);
    }
    fds.check();
}

// ----- 8. free with accepts pending -------------------------------------------------

#[test]
fn free_listener_with_accepts_pending() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        for i in 0..3 {
            ok(w.accept(listener, i));
        }
        ok(w.accept_timeout(listener, 3, Instant::now() + Duration::from_secs(30)));
        util::expect_quiet(&mut w, Duration::from_millis(20));
        w.free(listener.conn()).expect("free");
        let done = util::wait_for(&mut w, 4, LIMIT);
        assert_eq!(done.len(), 4);
        let mut contexts: Vec<u64> = done
            .iter()
            .map(|c| {
                assert_eq!((c.op, c.conn), (Op::Accept, listener.conn()));
                assert!(
                    matches!(c.error, Some(Error::ConnClosed)),
                    "{mode:?}: expected ConnClosed, got {:?}",
                    c.error
                );
                assert!(c.peer.is_none());
                c.context
            })
            .collect();
        contexts.sort_unstable();
        assert_eq!(contexts, [0, 1, 2, 3]);
        // The listening socket is closed: the port refuses connections.
        assert_refused(addr);
        // An accept through the stale handle completes with ConnClosed.
        ok(w.accept(listener, 4));
        let c = one(&mut w, LIMIT);
        assert_eq!((c.op, c.context), (Op::Accept, 4));
        assert!(matches!(c.error, Some(Error::ConnClosed)), "got {:?}", c.error);
        util::expect_quiet(&mut w, Duration::from_millis(20));
    }
    fds.check();
}

// ----- 9. close with accepts pending -------------------------------------------------

#[test]
fn close_with_accepts_pending() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).expect("watch_listener");
        for i in 0..3 {
            ok(w.accept(listener, i));
        }
        ok(w.accept_timeout(listener, 3, Instant::now() + Duration::from_secs(30)));
        util::expect_quiet(&mut w, Duration::from_millis(20));
        w.close();
        // Every socket is closed when close returns.
        assert_refused(addr);
        let end = Instant::now() + LIMIT;
        let mut done = Vec::new();
        let last = loop {
            assert!(
                Instant::now() < end,
                "{mode:?}: wait_io never reported the watcher closed"
            );
            match w.wait_io_timeout(&mut done, Duration::from_millis(100)) {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(last, Error::WatcherClosed), "{mode:?}: got {last:?}");
        let mut contexts: Vec<u64> = done
            .iter()
            .map(|c| {
                assert_eq!((c.op, c.conn), (Op::Accept, listener.conn()));
                assert!(
                    matches!(c.error, Some(Error::WatcherClosed)),
                    "{mode:?}: expected WatcherClosed, got {:?}",
                    c.error
                );
                assert!(c.peer.is_none());
                c.context
            })
            .collect();
        contexts.sort_unstable();
        assert_eq!(
            contexts,
            [0, 1, 2, 3],
            "{mode:?}: every pending accept comes back once"
        );
        // Submitting afterwards is refused.
        match w.accept(listener, 9) {
            Err(r) => assert!(matches!(r.error, Error::WatcherClosed), "got {:?}", r.error),
            Ok(()) => panic!("{mode:?}: accept after close was taken"),
        }
    }
    fds.check();
}
