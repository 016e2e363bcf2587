//! Dialling as a request: `connect` and `connect_timeout` over IPv4, IPv6
//! and Unix paths, in both modes: success with data both ways, refusal,
//! a deadline against a listener whose queue is full, missing and stale
//! Unix paths, 200 connects at once, and connects from another thread.
//!
//! Every test holds the test lock (see `util`): most count descriptors.

mod util;
use util::peer::{timeouts, unix_timeouts};
use util::{ok, one, TempDir};

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Completion, Conn, Error, Mode, Op, PeerAddr, Submit, Watcher};
use rustix::io::Errno;

const LIMIT: Duration = Duration::from_secs(5);

// ----- helpers ---------------------------------------------------------------

/// True if `c` failed with the OS error `errno`.
fn failed_with<C, B>(c: &Completion<C, B>, errno: Errno) -> bool {
    matches!(c.error, Some(Error::Io(ref e)) if e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Asserts `c` is a successful connect to `addr` and returns its
/// connection.
fn connected<C: std::fmt::Debug, B>(c: &Completion<C, B>, addr: &PeerAddr) -> Conn {
    assert_eq!(c.op, Op::Connect, "context {:?}", c.context);
    assert!(c.error.is_none(), "connect to {addr} failed: {:?}", c.error);
    assert_eq!(c.peer.as_ref(), Some(addr));
    assert!(matches!(c.buffer, Buffer::None), "a connect carries no buffer");
    assert!(c.detached.is_none());
    c.conn
}

/// Accepts one connection on a std listener, waiting at most [`LIMIT`]
/// (the listener is put in non-blocking mode; the connection is blocking,
/// with timeouts).
fn accept_tcp(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + LIMIT;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                timeouts(&s);
                return s;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "no connection arrived within {LIMIT:?}");
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// [`accept_tcp`] for a Unix listener.
fn accept_unix(listener: &UnixListener) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + LIMIT;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                unix_timeouts(&s);
                return s;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "no connection arrived within {LIMIT:?}");
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Data both ways between the watcher's `conn` and `peer`: the watcher
/// writes a message the peer reads, then the peer writes one the watcher
/// reads whole.
fn both_ways<S: Read + Write>(w: &mut Watcher<u64, Vec<u8>>, conn: Conn, peer: &mut S, seed: u64) {
    let out = util::pattern(seed, 1000);
    ok(w.write(conn, 100, out.clone()));
    let c = one(w, LIMIT);
    assert_eq!(
        (c.op, c.context, c.conn, c.bytes),
        (Op::Write, 100, conn, out.len())
    );
    assert!(c.error.is_none(), "write failed: {:?}", c.error);
    let mut got = vec![0; out.len()];
    peer.read_exact(&mut got).expect("peer read");
    assert_eq!(got, out, "the peer read other bytes than the watcher wrote");

    let back = util::pattern(seed + 1, 700);
    peer.write_all(&back).expect("peer write");
    ok(w.read_full(conn, 101, vec![0; back.len()]));
    let c = one(w, LIMIT);
    assert_eq!((c.op, c.context, c.conn), (Op::ReadFull, 101, conn));
    assert!(c.error.is_none(), "read_full failed: {:?}", c.error);
    assert_eq!(
        c.data(),
        &back[..],
        "the watcher read other bytes than the peer wrote"
    );
}

// ----- 1. IPv4 and IPv6 ----------------------------------------------------------

#[test]
fn connect_over_ipv4_and_ipv6() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        for (k, bind) in ["127.0.0.1:0", "[::1]:0"].into_iter().enumerate() {
            let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
            let listener = gaio::listen(bind).unwrap_or_else(|e| panic!("listen on {bind}: {e}"));
            let addr = listener.local_addr().unwrap();
            assert_eq!(addr.is_ipv6(), k == 1);
            let want = PeerAddr::from(addr);
            ok(w.connect(addr, 1));
            let c = one(&mut w, LIMIT);
            assert_eq!(c.context, 1);
            let conn = connected(&c, &want);
            let mut server = accept_tcp(&listener);
            both_ways(&mut w, conn, &mut server, 10 + k as u64);

            // The dialled socket is the one the server accepted, with
            // TCP_NODELAY on.
            ok(w.detach(conn, 2));
            let c = one(&mut w, LIMIT);
            assert_eq!((c.op, c.context, c.conn), (Op::Detach, 2, conn));
            assert!(c.error.is_none(), "detach: {:?}", c.error);
            let fd = c.detached.expect("detach hands the socket back");
            assert!(
                rustix::net::sockopt::tcp_nodelay(&fd).unwrap(),
                "{mode:?} {bind}: a dialled TCP socket has TCP_NODELAY on"
            );
            let stream = TcpStream::from(fd);
            assert_eq!(stream.peer_addr().unwrap(), addr);
            assert_eq!(stream.local_addr().unwrap(), server.peer_addr().unwrap());
        }
    }
    fds.check();
}

// ----- 2. refused ------------------------------------------------------------------

#[test]
fn connect_to_closed_port_is_refused() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().unwrap()
        };
        let inner = util::FdCheck::new();
        ok(w.connect(addr, 1));
        let c = one(&mut w, LIMIT);
        assert_eq!((c.op, c.context), (Op::Connect, 1));
        assert!(
            failed_with(&c, Errno::CONNREFUSED),
            "{mode:?}: expected Io(ECONNREFUSED), got {:?}",
            c.error
        );
        assert_eq!(c.peer, Some(PeerAddr::from(addr)));
        // The socket is closed already.
        inner.check();
        // The connection is dead: a read on it completes with ConnClosed.
        let buf = util::pattern(2, 16);
        ok(w.read(c.conn, 2, buf.clone()));
        let r = one(&mut w, LIMIT);
        assert_eq!((r.op, r.context, r.conn), (Op::Read, 2, c.conn));
        assert!(
            matches!(r.error, Some(Error::ConnClosed)),
            "{mode:?}: read on a failed connect: {:?}",
            r.error
        );
        assert_eq!(r.buffer, Buffer::User(buf));
    }
    fds.check();
}

// ----- 3. deadline against a full accept queue --------------------------------------

/// A listener on 127.0.0.1 with a backlog of 0 that nobody accepts on.
fn black_hole_listener() -> (std::os::fd::OwnedFd, SocketAddr) {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    rustix::net::bind(&fd, &any).expect("bind");
    rustix::net::listen(&fd, 0).expect("listen");
    let addr = SocketAddr::try_from(rustix::net::getsockname(&fd).expect("getsockname")).unwrap();
    (fd, addr)
}

#[test]
fn connect_timeout_to_full_accept_queue_ends_at_deadline() {
    let fds = util::FdCheck::new();
    let (listener, addr) = black_hole_listener();
    // Fill the accept queue until a connect goes unanswered: its SYN was
    // dropped, as every later one will be.
    let mut fillers = Vec::new();
    let probe = Duration::from_millis(300);
    loop {
        assert!(
            fillers.len() < 8,
            "the accept queue never filled: {} connects went through",
            fillers.len()
        );
        match TcpStream::connect_timeout(&addr, probe) {
            Ok(s) => fillers.push(s),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::TimedOut, "probe connect: {e}");
                break;
            }
        }
    }
    assert!(!fillers.is_empty(), "backlog 0 still queues one connection");

    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let inner = util::FdCheck::new();
        let wait = Duration::from_millis(200);
        let deadline = Instant::now() + wait;
        ok(w.connect_timeout(addr, 1, deadline));
        let c = one(&mut w, LIMIT);
        let at = Instant::now();
        assert_eq!((c.op, c.context), (Op::Connect, 1));
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: expected Deadline, got {:?}",
            c.error
        );
        assert_eq!(c.peer, Some(PeerAddr::from(addr)));
        assert!(at >= deadline, "{mode:?}: completed {:?} early", deadline - at);
        assert!(
            at - deadline < Duration::from_secs(1),
            "{mode:?}: completed {:?} late",
            at - deadline
        );
        // The socket went with its request.
        inner.check();
        ok(w.read(c.conn, 2, vec![0; 8]));
        let r = one(&mut w, LIMIT);
        assert!(matches!(r.error, Some(Error::ConnClosed)), "got {:?}", r.error);
    }
    drop(fillers);
    drop(listener);
    fds.check();
}

// ----- 4. Unix paths ---------------------------------------------------------------

#[test]
fn connect_to_unix_path() {
    let fds = util::FdCheck::new();
    let dir = TempDir::new("connect");
    for (k, mode) in util::MODES.into_iter().enumerate() {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let path = dir.path().join(format!("listener-{k}.sock"));
        let listener = gaio::listen_unix(&path).expect("listen_unix");
        let want = PeerAddr::unix_path(&path);
        ok(w.connect(want.clone(), 1));
        let c = one(&mut w, LIMIT);
        assert_eq!(c.context, 1);
        let conn = connected(&c, &want);
        assert_eq!(
            c.peer.as_ref().unwrap().as_unix().unwrap().as_path(),
            Some(path.as_path())
        );
        let mut server = accept_unix(&listener);
        both_ways(&mut w, conn, &mut server, 20 + k as u64);
    }
    drop(dir);
    fds.check();
}

#[test]
fn connect_to_unix_path_nobody_listens_on() {
    let fds = util::FdCheck::new();
    let dir = TempDir::new("connect-missing");
    // A socket file left behind by a listener that is gone.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists());
    let missing = dir.path().join("missing.sock");
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        for (path, errno) in [(&missing, Errno::NOENT), (&stale, Errno::CONNREFUSED)] {
            let inner = util::FdCheck::new();
            let to = PeerAddr::unix_path(path);
            ok(w.connect(to.clone(), 1));
            let c = one(&mut w, LIMIT);
            assert_eq!((c.op, c.context), (Op::Connect, 1));
            assert!(
                failed_with(&c, errno),
                "{mode:?}: connect to {}: expected {errno:?}, got {:?}",
                path.display(),
                c.error
            );
            assert_eq!(c.peer.as_ref(), Some(&to));
            inner.check();
        }
    }
    drop(dir);
    fds.check();
}

// ----- 5. many connects at once -----------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Accept,
    Connect(usize),
    ClientWrite(usize),
    ClientRead(usize),
    ServerRead(usize),
    ServerWrite(usize),
}

const MANY: usize = 200;
const MANY_MSG: usize = 100;

fn many_connects(mode: Mode) {
    let start = Instant::now();
    let end = start + Duration::from_secs(15);
    let mut w: Watcher<Ctx, Vec<u8>> = util::watcher(mode);
    let tcp = gaio::listen("127.0.0.1:0").expect("listen");
    let addr = tcp.local_addr().unwrap();
    let to = PeerAddr::from(addr);
    let listener = w.watch_listener(tcp).expect("watch_listener");
    let mut accepts = 0;
    while accepts < 16 {
        ok(w.accept(listener, Ctx::Accept));
        accepts += 1;
    }
    for i in 0..MANY {
        ok(w.connect(addr, Ctx::Connect(i)));
    }
    let msg = |i: usize| util::pattern(0xC0_0000 + i as u64, MANY_MSG);
    let mut clients: Vec<Option<Conn>> = vec![None; MANY];
    let mut servers: Vec<Conn> = Vec::new();
    let (mut written, mut verified, mut echoed) = (0, 0, 0);
    let mut out = Vec::new();
    while verified < MANY || echoed < MANY || written < MANY {
        let now = Instant::now();
        assert!(
            now < end,
            "{mode:?}: {} connected, {} accepted, {written} written, {echoed} echoed, {verified} verified of {MANY}",
            clients.iter().flatten().count(),
            servers.len()
        );
        w.wait_io_timeout(&mut out, end - now).expect("wait_io");
        for c in out.drain(..) {
            match c.context {
                Ctx::Connect(i) => {
                    let conn = connected(&c, &to);
                    assert!(clients[i].replace(conn).is_none());
                    ok(w.write(conn, Ctx::ClientWrite(i), msg(i)));
                    ok(w.read_full(conn, Ctx::ClientRead(i), vec![0; MANY_MSG]));
                }
                Ctx::Accept => {
                    assert_eq!(c.op, Op::Accept);
                    assert!(c.error.is_none(), "accept: {:?}", c.error);
                    // A successful accept names the new connection.
                    let conn = c.conn;
                    assert_ne!(conn, listener.conn());
                    let k = servers.len();
                    servers.push(conn);
                    ok(w.read_full(conn, Ctx::ServerRead(k), vec![0; MANY_MSG]));
                    if accepts < MANY {
                        ok(w.accept(listener, Ctx::Accept));
                        accepts += 1;
                    }
                }
                Ctx::ClientWrite(i) => {
                    assert_eq!(c.op, Op::Write);
                    assert!(c.error.is_none(), "client {i} write: {:?}", c.error);
                    assert_eq!(c.bytes, MANY_MSG);
                    written += 1;
                }
                Ctx::ServerRead(k) => {
                    assert_eq!(c.op, Op::ReadFull);
                    assert!(c.error.is_none(), "server #{k} read: {:?}", c.error);
                    assert_eq!(c.bytes, MANY_MSG);
                    let buf = c.buffer.into_user().unwrap();
                    ok(w.write(c.conn, Ctx::ServerWrite(k), buf));
                }
                Ctx::ServerWrite(k) => {
                    assert_eq!(c.op, Op::Write);
                    assert!(c.error.is_none(), "server #{k} echo: {:?}", c.error);
                    echoed += 1;
                }
                Ctx::ClientRead(i) => {
                    assert_eq!((c.op, Some(c.conn)), (Op::ReadFull, clients[i]));
                    assert!(c.error.is_none(), "client {i} read: {:?}", c.error);
                    assert_eq!(c.data(), &msg(i)[..], "{mode:?}: client {i} got other bytes back");
                    verified += 1;
                }
            }
        }
    }
    assert_eq!(servers.len(), MANY);
    assert_eq!(clients.iter().flatten().count(), MANY);
    util::expect_quiet(&mut w, Duration::from_millis(20));
    eprintln!(
        "{mode:?}: {MANY} connects, accepts and echoes in {:?}",
        start.elapsed()
    );
}

#[test]
fn many_connects_at_once() {
    let fds = util::FdCheck::new();
    util::raise_nofile(4 * MANY as u64 + 256);
    for mode in util::MODES {
        many_connects(mode);
    }
    fds.check();
}

// ----- 6. from another thread ---------------------------------------------------------

#[test]
fn connect_from_submitter_while_owner_waits() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let listener = gaio::listen("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().unwrap();
        let mut s = w.submitter();
        let dialler = thread::spawn(move || {
            // Let the owner get into wait_io first.
            thread::sleep(Duration::from_millis(50));
            s.connect(addr, 7).map_err(|r| format!("{:?}", r.error))
        });
        let t0 = Instant::now();
        let c = one(&mut w, LIMIT);
        assert!(
            t0.elapsed() >= Duration::from_millis(40),
            "completion before the connect was made"
        );
        dialler.join().unwrap().expect("connect from the submitter");
        assert_eq!(c.context, 7);
        let conn = connected(&c, &PeerAddr::from(addr));
        let mut server = accept_tcp(&listener);
        both_ways(&mut w, conn, &mut server, 40);
    }
    fds.check();
}
