//! Unit tests of the engine's state machines for the server operations
//! (accept, connect, shutdown, detach, datagrams, the write-queue cap)
//! against the deterministic fake poller.
//!
//! The engine learns a descriptor's kind from the kernel at hand-over, so
//! each test hands over a real socket of the kind it needs (a listening
//! TCP socket on 127.0.0.1, a UDP socket on 127.0.0.1, one end of a Unix
//! stream socket pair, a socket dialled to a loopback listener); every
//! accept, byte, datagram and connect outcome still comes from the fake's
//! script (see `crate::fake`). Each test asserts the exact completions and
//! the calls the engine made to the fake.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::fake::{self, dummy_fd, FakeHandle, FakePoller, Scripted};
use crate::{
    AcceptOptions, Buffer, Builder, Completion, Conn, Error, Listener, Mode, Op, PeerAddr, Rejected, Submit,
    Watcher,
};

type W = Watcher<FakePoller, u32, Vec<u8>>;
type Done = Completion<u32, Vec<u8>>;

fn setup() -> (W, FakeHandle) {
    setup_with(Builder::new())
}

fn setup_with(builder: Builder<FakePoller>) -> (W, FakeHandle) {
    let w: W = builder.build().expect("build");
    (w, fake::last())
}

/// Waits up to `limit` for `n` completions.
fn collect(w: &mut W, n: usize, limit: Duration) -> Vec<Done> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < end {
        w.wait_io_timeout(&mut out, Duration::from_millis(5))
            .expect("wait_io");
    }
    assert_eq!(out.len(), n, "completions: {:?}", summary(&out));
    out
}

/// Waits 20 ms and asserts nothing completed.
fn quiet(w: &mut W) {
    let mut out = Vec::new();
    w.wait_io_timeout(&mut out, Duration::from_millis(20))
        .expect("wait_io");
    assert!(out.is_empty(), "unexpected completions: {:?}", summary(&out));
}

/// (op, context, error) of each completion, for messages.
fn summary(done: &[Done]) -> Vec<(Op, u32, String)> {
    done.iter()
        .map(|d| (d.op, d.context, format!("{:?}", d.error)))
        .collect()
}

fn raw(e: Errno) -> i32 {
    e.raw_os_error()
}

/// The raw OS error of an `Error::Io`, if that is what `error` is.
fn io_errno(error: &Option<Error>) -> Option<i32> {
    match error {
        Some(Error::Io(e)) => e.raw_os_error(),
        _ => None,
    }
}

fn inet(port: u16) -> PeerAddr {
    SocketAddr::from(([127, 0, 0, 1], port)).into()
}

/// A listening TCP socket on 127.0.0.1 (nobody connects to it: the fake
/// scripts what accepts return), handed over with `nodelay`.
fn listener(w: &mut W, nodelay: bool) -> Listener {
    let l = crate::listen("127.0.0.1:0").expect("listen");
    w.watch_listener_with(l, AcceptOptions::new().nodelay(nodelay))
        .expect("watch_listener")
}

/// A UDP socket bound to 127.0.0.1, handed over.
fn udp(w: &mut W) -> Conn {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    w.watch(s).expect("watch udp")
}

/// One end of a Unix stream socket pair, handed over, and the other end
/// (non-blocking), which only sees what the kernel does for real: a
/// shutdown, or bytes written to a detached socket.
fn stream_pair(w: &mut W) -> (Conn, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    b.set_nonblocking(true).expect("nonblocking");
    (w.watch(a).expect("watch stream"), b)
}

fn accepts(f: &FakeHandle, l: Listener) -> usize {
    f.conn(l.conn().fd(), |k| k.accepts)
}

fn assert_accepted(d: &Done, l: Listener, context: u32, fd: u32, peer: &Option<PeerAddr>) {
    assert_eq!((d.op, d.context), (Op::Accept, context));
    assert!(d.error.is_none(), "accept {context}: {:?}", d.error);
    assert_eq!((d.bytes, &d.buffer), (0, &Buffer::None));
    // A successful accept names the new connection.
    let accepted = d.conn;
    assert_ne!(accepted, l.conn(), "accept {context} named the listener");
    assert_eq!(accepted.fd(), fd, "accept {context} took another connection");
    assert_eq!(&d.peer, peer);
    assert!(d.detached.is_none());
}

// ----- accept ------------------------------------------------------------

#[test]
fn a_burst_of_connections_completes_every_pending_accept_from_one_event_in_order() {
    const N: u32 = 8;
    let (mut w, f) = setup();
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    for i in 0..N {
        w.accept(l, i).expect("accept");
    }
    assert_eq!(
        accepts(&f, l),
        1,
        "the first accept is tried at once, the rest wait behind it"
    );
    quiet(&mut w);
    let peers: Vec<Option<PeerAddr>> = (0..N)
        .map(|i| match i {
            3 => Some(PeerAddr::unix_path("/run/client.sock")),
            5 => None,
            _ => Some(inet(40_000 + i as u16)),
        })
        .collect();
    let fds: Vec<u32> = peers.iter().map(|p| f.push_incoming(lfd, p.clone())).collect();
    // Connections queued without an event: nobody looks.
    quiet(&mut w);
    assert_eq!(accepts(&f, l), 1);
    f.event(lfd, true, false, false);
    let mut out = Vec::new();
    w.wait_io_timeout(&mut out, Duration::from_secs(1))
        .expect("wait_io");
    assert_eq!(out.len(), N as usize, "one event, one batch: {:?}", summary(&out));
    for (i, d) in out.iter().enumerate() {
        assert_accepted(d, l, i as u32, fds[i], &peers[i]);
    }
    // One accept per pending request: no extra call to find the queue empty.
    assert_eq!(accepts(&f, l), 1 + N as usize);
    // Each accepted connection is watched under its own handle and works.
    let conns: Vec<Conn> = out.iter().map(|d| d.conn).collect();
    for (i, c) in conns.iter().enumerate() {
        assert!(conns[..i].iter().all(|o| o != c), "handle handed out twice");
        assert_eq!(f.conn(c.fd(), |k| k.token), c.token());
    }
    f.send(conns[2].fd(), b"hello");
    w.read(conns[2], 100, vec![0; 8]).expect("read");
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].conn, done[0].data()), (conns[2], &b"hello"[..]));
}

#[test]
fn connections_beyond_the_pending_accepts_wait_for_the_next_accept_which_takes_one_at_once() {
    let (mut w, f) = setup();
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    w.accept(l, 0).unwrap();
    w.accept(l, 1).unwrap();
    let fds: Vec<u32> = (0..4)
        .map(|i| f.push_incoming(lfd, Some(inet(50_000 + i))))
        .collect();
    f.event(lfd, true, false, false);
    let done = collect(&mut w, 2, Duration::from_secs(1));
    assert_accepted(&done[0], l, 0, fds[0], &Some(inet(50_000)));
    assert_accepted(&done[1], l, 1, fds[1], &Some(inet(50_001)));
    assert_eq!(accepts(&f, l), 3);
    assert_eq!(
        f.conn(lfd, |k| k.incoming.len()),
        2,
        "two connections left queued"
    );
    // The listener is still known readable: the next accept takes the next
    // connection at submission, without a new event.
    for (i, fd) in fds.iter().enumerate().skip(2) {
        w.accept(l, i as u32).unwrap();
        assert_eq!(accepts(&f, l), 2 + i, "accept {i} tried at submission");
        assert!(f.with(|s| s.pending.is_empty()));
        let done = collect(&mut w, 1, Duration::from_secs(1));
        assert_accepted(&done[0], l, i as u32, *fd, &Some(inet(50_000 + i as u16)));
    }
    // The queue is empty now: the next accept finds EAGAIN and waits.
    w.accept(l, 4).unwrap();
    assert_eq!(accepts(&f, l), 6);
    quiet(&mut w);
    let fd = f.push_incoming(lfd, None);
    f.event(lfd, true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_accepted(&done[0], l, 4, fd, &None);
    assert_eq!(accepts(&f, l), 7);
}

#[test]
fn eagain_leaves_accepts_pending_until_the_next_event() {
    let (mut w, f) = setup();
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    w.accept(l, 0).unwrap();
    w.accept(l, 1).unwrap();
    assert_eq!(accepts(&f, l), 1);
    quiet(&mut w);
    // A spurious event: one accept call, EAGAIN again, nothing completes.
    f.event(lfd, true, false, false);
    quiet(&mut w);
    assert_eq!(accepts(&f, l), 2);
    // A connection arrives without an event: the engine does not look.
    let fd = f.push_incoming(lfd, None);
    quiet(&mut w);
    quiet(&mut w);
    assert_eq!(accepts(&f, l), 2);
    f.event(lfd, true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_accepted(&done[0], l, 0, fd, &None);
    // The second accept found the queue empty again and waits.
    assert_eq!(accepts(&f, l), 4);
    quiet(&mut w);
}

#[test]
fn an_aborted_connection_is_skipped_and_the_next_one_accepted() {
    let (mut w, f) = setup();
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    f.conn(lfd, |k| {
        k.accept_script.extend([
            raw(Errno::CONNABORTED),
            raw(Errno::PROTO),
            raw(Errno::CONNABORTED),
        ])
    });
    let fd = f.push_incoming(lfd, Some(inet(1234)));
    // Tried at submission: three failures skipped, then the connection.
    w.accept(l, 7).unwrap();
    assert_eq!(accepts(&f, l), 4);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_accepted(&done[0], l, 7, fd, &Some(inet(1234)));
}

#[test]
fn an_accept_error_that_is_not_transient_fails_only_the_head_accept() {
    let (mut w, f) = setup();
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    w.accept(l, 0).unwrap();
    w.accept(l, 1).unwrap();
    f.conn(lfd, |k| k.accept_script.push_back(raw(Errno::INVAL)));
    let fd = f.push_incoming(lfd, None);
    f.event(lfd, true, false, false);
    let done = collect(&mut w, 2, Duration::from_secs(1));
    assert_eq!((done[0].op, done[0].context), (Op::Accept, 0));
    assert_eq!(
        io_errno(&done[0].error),
        Some(raw(Errno::INVAL)),
        "{:?}",
        done[0].error
    );
    // A failed accept names the listener.
    assert!(done[0].conn == l.conn() && done[0].peer.is_none());
    assert_accepted(&done[1], l, 1, fd, &None);
}

/// Out of descriptors (or socket memory), a pending accept neither fails
/// nor spins: the listener is retried every 20 ms, without an event, and
/// the accept completes once an accept succeeds.
#[test]
fn out_of_descriptors_an_accept_waits_without_spinning_and_retries_every_20ms() {
    for errno in [Errno::MFILE, Errno::NFILE, Errno::NOBUFS] {
        let (mut w, f) = setup();
        let l = listener(&mut w, false);
        let lfd = l.conn().fd();
        f.conn(lfd, |k| k.accept_fail = Some(raw(errno)));
        let fd = f.push_incoming(lfd, Some(inet(4242)));
        w.accept(l, 1).unwrap();
        assert_eq!(accepts(&f, l), 1, "{errno:?}: tried at submission");
        let (waits_before, accepts_before) = (f.with(|s| s.waits), accepts(&f, l));
        let start = Instant::now();
        let window = Duration::from_millis(100);
        let mut out = Vec::new();
        while start.elapsed() < window {
            w.wait_io_timeout(&mut out, window.saturating_sub(start.elapsed()))
                .expect("wait_io");
        }
        let ms = start.elapsed().as_millis() as usize;
        assert!(out.is_empty(), "{errno:?}: {:?}", summary(&out));
        let retries = accepts(&f, l) - accepts_before;
        let waits = f.with(|s| s.waits) - waits_before;
        // A retry every 20 ms: about 5 in 100 ms, never more than one per
        // 20 ms, and at least two even on a loaded machine.
        assert!(
            (2..=ms / 20 + 1).contains(&retries),
            "{errno:?}: {retries} accept calls in {ms} ms"
        );
        // The fake's wait sleeps up to 1 ms: an engine sleeping until its
        // retry makes about one wait per millisecond; a spinning one (zero
        // timeouts) thousands.
        assert!(waits <= ms + 30, "{errno:?}: {waits} waits in {ms} ms");
        // Descriptors come back: the next retry takes the connection,
        // with no event.
        f.conn(lfd, |k| k.accept_fail = None);
        let before = accepts(&f, l);
        let done = collect(&mut w, 1, Duration::from_secs(1));
        assert_accepted(&done[0], l, 1, fd, &Some(inet(4242)));
        assert_eq!(accepts(&f, l), before + 1, "{errno:?}");
        assert!(f.with(|s| s.pending.is_empty()));
    }
}

/// A deadline that passes while the listener is out of descriptors
/// reports the shortage (EMFILE, ENFILE), not `Deadline`.
#[test]
fn a_deadline_passing_while_out_of_descriptors_reports_emfile_or_enfile() {
    for errno in [Errno::MFILE, Errno::NFILE] {
        let (mut w, f) = setup();
        let l = listener(&mut w, false);
        let lfd = l.conn().fd();
        f.conn(lfd, |k| k.accept_fail = Some(raw(errno)));
        f.push_incoming(lfd, None);
        let start = Instant::now();
        w.accept_timeout(l, 3, start + Duration::from_millis(60)).unwrap();
        let done = collect(&mut w, 1, Duration::from_secs(2));
        assert!(start.elapsed() >= Duration::from_millis(60));
        assert_eq!((done[0].op, done[0].context), (Op::Accept, 3));
        assert_eq!(
            io_errno(&done[0].error),
            Some(raw(errno)),
            "{errno:?}: {:?}",
            done[0].error
        );
        assert_eq!(done[0].conn, l.conn());
        assert!(accepts(&f, l) >= 2, "retried meanwhile");
    }
    // Without a shortage, a deadline is a deadline.
    let (mut w, _f) = setup();
    let l = listener(&mut w, false);
    w.accept_timeout(l, 4, Instant::now() + Duration::from_millis(30))
        .unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert!(
        matches!(done[0].error, Some(Error::Deadline)),
        "{:?}",
        done[0].error
    );
}

/// The shortage is over once an accept gets past it: here the retry after
/// EMFILE finds the queue empty (the client gave up). A deadline passing
/// after that is an ordinary deadline, not EMFILE: the process is no
/// longer known to be out of descriptors.
#[test]
fn after_a_shortage_ends_with_an_empty_queue_a_deadline_reports_deadline() {
    let (mut w, f) = setup();
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    f.conn(lfd, |k| k.accept_fail = Some(raw(Errno::MFILE)));
    w.accept_timeout(l, 5, Instant::now() + Duration::from_millis(300))
        .unwrap();
    assert_eq!(accepts(&f, l), 1);
    f.conn(lfd, |k| k.accept_fail = None);
    // Wait for the retry (EAGAIN: nothing queued).
    let end = Instant::now() + Duration::from_secs(1);
    let mut out = Vec::new();
    while accepts(&f, l) < 2 && Instant::now() < end {
        w.wait_io_timeout(&mut out, Duration::from_millis(5)).unwrap();
    }
    assert_eq!(accepts(&f, l), 2, "no retry after EMFILE");
    assert!(out.is_empty(), "{:?}", summary(&out));
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert_eq!((done[0].op, done[0].context), (Op::Accept, 5));
    assert!(
        matches!(done[0].error, Some(Error::Deadline)),
        "expected Deadline once accepts no longer fail for want of descriptors, got {:?}",
        done[0].error
    );
}

/// Accepted TCP sockets get `TCP_NODELAY` when the listener asks for it
/// (the default); a connection that cannot be configured (here a pipe,
/// which has no such option) is dropped and the next one accepted.
#[test]
fn accepted_sockets_get_nodelay_as_the_listener_asks_and_unusable_ones_are_skipped() {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    if crate::net::NODELAY_INHERITED {
        // Accepted sockets inherit the listener's TCP_NODELAY: it is set
        // on the listener, once, and no accept makes a call for it (the
        // integration tests check real accepted sockets have it).
        for nodelay in [true, false] {
            let (mut w, _f) = setup();
            let l = listener(&mut w, nodelay);
            w.detach(l.conn(), 9).unwrap();
            let mut done = collect(&mut w, 1, Duration::from_secs(1));
            let sock: OwnedFd = done[0].detached.take().expect("detached listener");
            assert_eq!(sockopt::tcp_nodelay(&sock).expect("TCP_NODELAY"), nodelay);
        }
        return;
    }
    let tcp_socket = || rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    for nodelay in [true, false] {
        let (mut w, f) = setup();
        let l = listener(&mut w, nodelay);
        let lfd = l.conn().fd();
        if nodelay {
            f.push_incoming_fd(lfd, dummy_fd(), None);
        }
        let fd = f.push_incoming_fd(lfd, tcp_socket(), Some(inet(999)));
        w.accept(l, 1).unwrap();
        let done = collect(&mut w, 1, Duration::from_secs(1));
        assert_accepted(&done[0], l, 1, fd, &Some(inet(999)));
        assert_eq!(accepts(&f, l), if nodelay { 2 } else { 1 });
        // Take the socket back to look at it.
        let accepted = done[0].conn;
        w.detach(accepted, 2).unwrap();
        let mut done = collect(&mut w, 1, Duration::from_secs(1));
        let sock: OwnedFd = done[0].detached.take().expect("detached socket");
        assert_eq!(
            sockopt::tcp_nodelay(&sock).expect("TCP_NODELAY"),
            nodelay,
            "listener asked nodelay = {nodelay}"
        );
    }
}

#[test]
fn accepts_complete_in_order_in_background_mode() {
    let (mut w, f) = setup_with(Builder::new().mode(Mode::Background));
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    for i in 0..3 {
        w.accept(l, i).unwrap();
    }
    let fds: Vec<u32> = (0..3).map(|_| f.push_incoming(lfd, None)).collect();
    f.event(lfd, true, false, false);
    let done = collect(&mut w, 3, Duration::from_secs(2));
    for (i, d) in done.iter().enumerate() {
        assert_accepted(d, l, i as u32, fds[i], &None);
    }
}

// ----- connect -----------------------------------------------------------

/// A loopback listener to dial (never accepted from: the fake's scripted
/// `connect_result` decides how each connect ends).
fn target() -> (TcpListener, PeerAddr) {
    let t = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = t.local_addr().expect("local_addr").into();
    (t, addr)
}

#[test]
fn a_connect_completes_with_its_connection_once_writable_and_connected() {
    let (_t, addr) = target();
    let (mut w, f) = setup();
    w.connect(addr.clone(), 5).unwrap();
    let fd = f.last_registered();
    // A TCP connect is in progress until writability says otherwise.
    quiet(&mut w);
    assert_eq!(f.conn(fd, |k| k.connect_checks), 0);
    f.event(fd, false, true, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    let d = &done[0];
    assert_eq!((d.op, d.context, d.bytes), (Op::Connect, 5, 0));
    assert!(d.error.is_none(), "{:?}", d.error);
    assert_eq!(
        (d.conn.fd(), &d.peer, &d.buffer),
        (fd, &Some(addr), &Buffer::None)
    );
    assert!(d.detached.is_none());
    assert_eq!(f.conn(fd, |k| (k.connect_checks, k.token)), (1, d.conn.token()));
    // The connection is watched and writable.
    let conn = d.conn;
    w.write(conn, 6, b"hi".to_vec()).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(done[0].error.is_none());
    assert_eq!(f.conn(fd, |k| k.written.clone()), b"hi".to_vec());
}

#[test]
fn a_refused_connect_completes_with_the_os_error_and_frees_its_connection() {
    let (_t, addr) = target();
    let (mut w, f) = setup();
    w.connect(addr.clone(), 8).unwrap();
    let fd = f.last_registered();
    f.conn(fd, |k| k.connect_error = Some(raw(Errno::CONNREFUSED)));
    // A refused connect shows as an error/hang-up event.
    f.event(fd, false, true, true);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    let d = &done[0];
    assert_eq!((d.op, d.context, d.conn.fd()), (Op::Connect, 8, fd));
    assert_eq!(io_errno(&d.error), Some(raw(Errno::CONNREFUSED)), "{:?}", d.error);
    assert_eq!(d.peer, Some(addr));
    assert_eq!(
        f.deregistered(fd, |k| k.connect_checks),
        Some(1),
        "the socket was let go"
    );
    assert!(f.with(|s| !s.conns.contains_key(&(fd as i32))));
    // The handle names nothing now.
    let conn = d.conn;
    w.read(conn, 9, vec![0; 4]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::ConnClosed)),
        "{:?}",
        done[0].error
    );
    assert_eq!((done[0].context, &done[0].buffer), (9, &Buffer::User(vec![0; 4])));
}

#[test]
fn a_connect_past_its_deadline_fails_with_deadline_and_frees_its_connection() {
    let (_t, addr) = target();
    let (mut w, f) = setup();
    let start = Instant::now();
    w.connect_timeout(addr.clone(), 11, start + Duration::from_millis(40))
        .unwrap();
    let (fd, token) = f.with(|s| *s.registered.last().unwrap());
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert!(start.elapsed() >= Duration::from_millis(40));
    let d = &done[0];
    assert_eq!((d.op, d.context, d.conn.fd() as i32), (Op::Connect, 11, fd));
    assert!(matches!(d.error, Some(Error::Deadline)), "{:?}", d.error);
    assert_eq!(d.peer, Some(addr));
    assert_eq!(
        f.deregistered(fd as u32, |k| k.connect_checks),
        Some(0),
        "freed without asking how the connect ended"
    );
    // A late writability event for it reaches nothing.
    f.event_token(token, false, true, false);
    quiet(&mut w);
    let conn = d.conn;
    w.write(conn, 12, b"late".to_vec()).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::ConnClosed)),
        "{:?}",
        done[0].error
    );
    assert_eq!(done[0].buffer, Buffer::User(b"late".to_vec()));
}

#[test]
fn a_connect_from_another_thread_goes_through_the_queue_and_completes() {
    let (_t, addr) = target();
    let (mut w, f) = setup_with(Builder::new().mode(Mode::Background));
    w.connect(addr.clone(), 21).unwrap();
    // Dialled and registered on this thread, run by the engine's.
    let fd = f.last_registered();
    f.event(fd, false, true, false);
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert_eq!(
        (done[0].op, done[0].context, done[0].conn.fd()),
        (Op::Connect, 21, fd)
    );
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(done[0].peer, Some(addr));
    assert_eq!(f.conn(fd, |k| k.connect_checks), 1);
}

// ----- shutdown ----------------------------------------------------------

/// What the other end of a socket pair sees: `Some(0)` end of stream,
/// `None` nothing yet.
fn peer_read(peer: &mut UnixStream) -> Option<usize> {
    let mut buf = [0u8; 16];
    match peer.read(&mut buf) {
        Ok(n) => Some(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("peer read: {e}"),
    }
}

#[test]
fn a_shutdown_waits_for_the_writes_before_it_then_shuts_the_write_side() {
    let (mut w, f) = setup();
    let (c, mut peer) = stream_pair(&mut w);
    let fd = c.fd();
    f.conn(fd, |k| k.write_room = 0);
    w.write(c, 0, b"abc".to_vec()).unwrap();
    w.write(c, 1, b"de".to_vec()).unwrap();
    w.shutdown(c, 2).unwrap();
    quiet(&mut w);
    assert_eq!(peer_read(&mut peer), None, "shut down before the writes");
    // Some room: part of the first write goes, nothing completes.
    f.conn(fd, |k| k.write_room = 2);
    f.event(fd, false, true, false);
    quiet(&mut w);
    assert_eq!(
        f.conn(fd, |k| (k.written.clone(), k.writes.clone())),
        (b"ab".to_vec(), vec![1, 2])
    );
    assert_eq!(peer_read(&mut peer), None);
    f.conn(fd, |k| k.write_room = usize::MAX);
    f.event(fd, false, true, false);
    let done = collect(&mut w, 3, Duration::from_secs(1));
    let got: Vec<(Op, u32, usize)> = done.iter().map(|d| (d.op, d.context, d.bytes)).collect();
    assert_eq!(
        got,
        vec![(Op::Write, 0, 3), (Op::Write, 1, 2), (Op::Shutdown, 2, 0)]
    );
    assert!(done.iter().all(|d| d.error.is_none()), "{:?}", summary(&done));
    assert_eq!(done[2].buffer, Buffer::None);
    assert_eq!(
        f.conn(fd, |k| (k.written.clone(), k.writes.clone())),
        (b"abcde".to_vec(), vec![1, 2, 2])
    );
    // The kernel really shut the write side: the peer reads end of stream.
    assert_eq!(peer_read(&mut peer), Some(0));
    // Reads keep working.
    f.send(fd, b"still");
    w.read(c, 3, vec![0; 8]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].context, done[0].data()), (3, &b"still"[..]));
}

#[test]
fn a_shutdown_with_no_write_queued_completes_at_once() {
    let (mut w, f) = setup();
    let (c, mut peer) = stream_pair(&mut w);
    w.shutdown(c, 1).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].op, done[0].context), (Op::Shutdown, 1));
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(peer_read(&mut peer), Some(0));
    assert!(f.conn(c.fd(), |k| k.writes.is_empty()));
}

/// A shutdown after one that completed: the write side is shut, so it
/// succeeds without asking the kernel (which would answer `ENOTCONN` once
/// both sides closed, scripted here).
#[test]
fn a_shutdown_after_one_that_completed_succeeds_without_asking_again() {
    let (mut w, f) = setup();
    let (c, mut peer) = stream_pair(&mut w);
    let fd = c.fd();
    w.shutdown(c, 1).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(peer_read(&mut peer), Some(0));
    f.conn(fd, |k| {
        k.shutdown_script
            .push_back(Scripted::Fail(Errno::NOTCONN.raw_os_error()))
    });
    w.shutdown(c, 2).unwrap();
    w.shutdown(c, 3).unwrap();
    let done = collect(&mut w, 2, Duration::from_secs(1));
    let got: Vec<(Op, u32, usize)> = done.iter().map(|d| (d.op, d.context, d.bytes)).collect();
    assert_eq!(got, vec![(Op::Shutdown, 2, 0), (Op::Shutdown, 3, 0)]);
    assert!(done.iter().all(|d| d.error.is_none()), "{:?}", summary(&done));
    assert_eq!(f.conn(fd, |k| k.shutdowns), 1, "the kernel was asked again");
}

// ----- detach ------------------------------------------------------------

#[test]
fn a_detach_waits_for_queued_writes_not_for_a_waiting_read_then_hands_the_socket_back() {
    let (mut w, f) = setup();
    let (c, mut peer) = stream_pair(&mut w);
    let fd = c.fd();
    w.read(c, 0, vec![0; 8]).unwrap(); // nothing inbound: pending
    f.conn(fd, |k| k.write_room = 0);
    w.write(c, 1, b"out".to_vec()).unwrap(); // no room: pending
    w.detach(c, 2).unwrap();
    // Requests after the detach never run.
    w.read(c, 3, vec![0; 4]).unwrap();
    w.write(c, 4, b"after".to_vec()).unwrap();
    let done = collect(&mut w, 2, Duration::from_secs(1));
    assert_eq!(summary(&done).iter().map(|s| s.1).collect::<Vec<_>>(), vec![3, 4]);
    assert!(done.iter().all(|d| matches!(d.error, Some(Error::ConnClosed))));
    assert_eq!(
        (&done[0].buffer, &done[1].buffer),
        (&Buffer::User(vec![0; 4]), &Buffer::User(b"after".to_vec()))
    );
    quiet(&mut w);
    assert!(
        f.deregistered(fd, |_| ()).is_none(),
        "deregistered with a write pending"
    );
    // The write goes, then the detach, then the read that was waiting,
    // with `ConnClosed` and nothing taken.
    f.conn(fd, |k| k.write_room = usize::MAX);
    f.event(fd, false, true, false);
    let mut done = collect(&mut w, 3, Duration::from_secs(1));
    assert_eq!((done[0].op, done[0].context, done[0].bytes), (Op::Write, 1, 3));
    assert_eq!((done[2].op, done[2].context, done[2].bytes), (Op::Read, 0, 0));
    assert!(
        matches!(done[2].error, Some(Error::ConnClosed)),
        "{:?}",
        done[2].error
    );
    assert_eq!(done[2].buffer, Buffer::User(vec![0; 8]));
    let d = &mut done[1];
    assert_eq!((d.op, d.context, d.conn, d.bytes), (Op::Detach, 2, c, 0));
    assert!(d.error.is_none(), "{:?}", d.error);
    assert_eq!(d.buffer, Buffer::None);
    let sock = d.detached.take().expect("the socket");
    assert_eq!(sock.as_raw_fd() as u32, fd, "the same descriptor");
    // Deregistered, still non-blocking, and the very socket: bytes written
    // to it reach the peer.
    assert_eq!(f.deregistered(fd, |k| k.written.clone()), Some(b"out".to_vec()));
    assert!(!f.with(|s| s.conns.contains_key(&(fd as i32))));
    let flags = rustix::fs::fcntl_getfl(&sock).expect("fcntl");
    assert!(flags.contains(rustix::fs::OFlags::NONBLOCK));
    assert_eq!(rustix::io::write(&sock, b"real").expect("write"), 4);
    let mut buf = [0u8; 8];
    assert_eq!(peer.read(&mut buf).expect("peer read"), 4);
    assert_eq!(&buf[..4], b"real");
    // The watcher never touches it again.
    w.read(c, 5, vec![0; 4]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::ConnClosed)),
        "{:?}",
        done[0].error
    );
    w.free(c).unwrap();
    quiet(&mut w);
    assert_eq!(rustix::io::write(&sock, b"!").expect("still open"), 1);
}

#[test]
fn a_detach_of_an_idle_connection_does_not_wait_for_its_reads_deadline() {
    let (mut w, f) = setup();
    let (c, _peer) = stream_pair(&mut w);
    let fd = c.fd();
    w.read_timeout(c, 0, vec![0; 8], Instant::now() + Duration::from_secs(30))
        .unwrap();
    w.read_swap(c, 2).unwrap();
    w.detach(c, 1).unwrap();
    let mut done = collect(&mut w, 3, Duration::from_secs(2));
    assert_eq!(
        done.iter().map(|d| (d.op, d.context)).collect::<Vec<_>>(),
        [(Op::Detach, 1), (Op::Read, 0), (Op::Read, 2)]
    );
    for d in &done[1..] {
        assert!(matches!(d.error, Some(Error::ConnClosed)), "{:?}", d.error);
        assert_eq!(d.bytes, 0);
    }
    assert!(matches!(&done[2].buffer, Buffer::Swap(b) if b.is_empty()));
    let sock = done[0].detached.take().expect("the socket");
    assert_eq!(sock.as_raw_fd() as u32, fd);
    assert!(f.deregistered(fd, |_| ()).is_some());
    // The read's deadline, long after, fires nothing.
    quiet(&mut w);
}

#[test]
fn an_idle_connection_or_listener_detaches_at_once() {
    let (mut w, f) = setup();
    let c = w.watch(dummy_fd()).unwrap();
    let l = listener(&mut w, false);
    w.detach(c, 1).unwrap();
    w.detach(l.conn(), 2).unwrap();
    let mut done = collect(&mut w, 2, Duration::from_secs(1));
    for (d, conn) in done.iter_mut().zip([c, l.conn()]) {
        assert_eq!((d.op, d.conn), (Op::Detach, conn));
        assert!(d.error.is_none(), "{:?}", d.error);
        let sock = d.detached.take().expect("the descriptor");
        assert_eq!(sock.as_raw_fd() as u32, conn.fd());
        assert!(f.deregistered(conn.fd(), |_| ()).is_some());
    }
    // The listener's handle is dead too.
    w.accept(l, 3).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::ConnClosed)),
        "{:?}",
        done[0].error
    );
}

// ----- datagrams ---------------------------------------------------------

#[test]
fn each_receive_takes_one_datagram_with_its_sender() {
    let (mut w, f) = setup();
    let c = udp(&mut w);
    let fd = c.fd();
    f.push_datagram(fd, b"first", Some(inet(7001)));
    f.push_datagram(fd, b"second", Some(inet(7002)));
    w.recv_from(c, 0, vec![0; 16]).unwrap();
    w.recv_from(c, 1, vec![0; 16]).unwrap();
    w.recv_from(c, 2, vec![0; 16]).unwrap(); // nothing left: waits
    let done = collect(&mut w, 2, Duration::from_secs(1));
    assert_eq!(
        (done[0].op, done[0].context, done[0].data(), &done[0].peer),
        (Op::RecvFrom, 0, &b"first"[..], &Some(inet(7001)))
    );
    assert_eq!(
        (done[1].op, done[1].context, done[1].data(), &done[1].peer),
        (Op::RecvFrom, 1, &b"second"[..], &Some(inet(7002)))
    );
    assert!(done.iter().all(|d| d.error.is_none()));
    quiet(&mut w);
    // An empty datagram is a datagram, not end of stream.
    f.push_datagram(fd, b"", Some(inet(7003)));
    f.event(fd, true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!(
        (done[0].context, done[0].bytes, &done[0].peer),
        (2, 0, &Some(inet(7003)))
    );
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(done[0].buffer, Buffer::User(vec![0; 16]));
    assert_eq!(f.conn(fd, |k| (k.reads, k.recv_room.clone())), (4, vec![16; 4]));
    // A plain read, and a swap read, take one datagram each too.
    f.push_datagram(fd, b"ab", Some(inet(7004)));
    f.push_datagram(fd, b"cd", Some(inet(7005)));
    w.read(c, 3, vec![0; 16]).unwrap();
    w.read_swap(c, 4).unwrap();
    let done = collect(&mut w, 2, Duration::from_secs(1));
    assert_eq!(
        (done[0].op, done[0].data(), &done[0].peer),
        (Op::Read, &b"ab"[..], &Some(inet(7004)))
    );
    assert_eq!(
        (done[1].op, &done[1].buffer, &done[1].peer),
        (
            Op::Read,
            &Buffer::Swap(crate::Bytes::from_static(b"cd")),
            &Some(inet(7005))
        )
    );
}

#[test]
fn a_datagram_longer_than_the_buffer_keeps_its_first_bytes_and_says_truncated() {
    let (mut w, f) = setup();
    let c = udp(&mut w);
    let fd = c.fd();
    f.push_datagram(fd, b"0123456789", Some(inet(1)));
    f.push_datagram(fd, b"wxyz", Some(inet(2)));
    f.push_datagram(fd, b"ab", Some(inet(3)));
    for i in 0..3 {
        w.recv_from(c, i, vec![0; 4]).unwrap();
    }
    let done = collect(&mut w, 3, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::Truncated)),
        "{:?}",
        done[0].error
    );
    assert_eq!(
        (done[0].bytes, done[0].data(), &done[0].peer),
        (4, &b"0123"[..], &Some(inet(1)))
    );
    // Exactly the buffer's size fits; the rest of the long one is gone.
    assert!(done[1].error.is_none(), "{:?}", done[1].error);
    assert_eq!((done[1].data(), &done[1].peer), (&b"wxyz"[..], &Some(inet(2))));
    assert!(done[2].error.is_none());
    assert_eq!(done[2].data(), b"ab");
}

#[test]
fn swap_receives_offer_one_byte_more_than_they_keep_and_report_truncation() {
    let (mut w, f) = setup_with(Builder::new().swap_size(8));
    let c = udp(&mut w);
    let fd = c.fd();
    f.push_datagram(fd, b"12345678", Some(inet(1)));
    f.push_datagram(fd, b"abcdefghi", Some(inet(2)));
    f.push_datagram(fd, b"xyz", None);
    for i in 0..3 {
        w.recv_from_swap(c, i).unwrap();
    }
    let done = collect(&mut w, 3, Duration::from_secs(1));
    let swap = |d: &Done| match &d.buffer {
        Buffer::Swap(b) => b.to_vec(),
        other => panic!("not a swap buffer: {other:?}"),
    };
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!((swap(&done[0]), done[0].bytes), (b"12345678".to_vec(), 8));
    assert!(
        matches!(done[1].error, Some(Error::Truncated)),
        "{:?}",
        done[1].error
    );
    assert_eq!((swap(&done[1]), done[1].bytes), (b"abcdefgh".to_vec(), 8));
    assert_eq!(done[1].peer, Some(inet(2)));
    assert!(done[2].error.is_none());
    // No sender address: a Unix sender bound to no name.
    let unnamed = Some(PeerAddr::Unix(crate::UnixAddr::unnamed()));
    assert_eq!((swap(&done[2]), &done[2].peer), (b"xyz".to_vec(), &unnamed));
    assert!(done.iter().all(|d| d.op == Op::RecvFrom));
    // Each receive offered the swap size plus the byte that tells.
    assert_eq!(f.conn(fd, |k| k.recv_room.clone()), vec![9, 9, 9]);
}

#[test]
fn datagram_sends_are_never_gathered_and_send_to_records_the_destination() {
    let (mut w, f) = setup();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(other.local_addr().unwrap()).unwrap();
    let c = w.watch(s).unwrap();
    let fd = c.fd();
    f.conn(fd, |k| k.write_script.push_back(Scripted::WouldBlock));
    w.send(c, 0, b"a".to_vec()).unwrap();
    w.send_to(c, 1, b"bb".to_vec(), inet(9001)).unwrap();
    w.send(c, 2, b"ccc".to_vec()).unwrap();
    w.send_to(c, 3, Vec::new(), inet(9002)).unwrap(); // an empty datagram
    quiet(&mut w);
    f.event(fd, false, true, false);
    let done = collect(&mut w, 4, Duration::from_secs(1));
    let got: Vec<(Op, u32, usize, Option<PeerAddr>)> = done
        .iter()
        .map(|d| (d.op, d.context, d.bytes, d.peer.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Op::Write, 0, 1, None),
            (Op::SendTo, 1, 2, Some(inet(9001))),
            (Op::Write, 2, 3, None),
            (Op::SendTo, 3, 0, Some(inet(9002))),
        ]
    );
    assert!(done.iter().all(|d| d.error.is_none()), "{:?}", summary(&done));
    assert_eq!(done[1].buffer, Buffer::User(b"bb".to_vec()));
    let (writes, sent, written) = f.conn(fd, |k| (k.writes.clone(), k.sent.clone(), k.written.clone()));
    assert_eq!(writes, vec![1; 5], "one call per datagram, one slice each");
    assert_eq!(
        sent,
        vec![
            (b"a".to_vec(), None),
            (b"bb".to_vec(), Some(inet(9001))),
            (b"ccc".to_vec(), None),
            (Vec::new(), Some(inet(9002))),
        ]
    );
    assert!(written.is_empty());
    // Idle and writable: a send-to completes at submission.
    w.send_to(c, 4, b"now".to_vec(), inet(9003)).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!(
        (done[0].op, done[0].bytes, &done[0].peer),
        (Op::SendTo, 3, &Some(inet(9003)))
    );
}

// ----- operations a kind of socket lacks ---------------------------------

fn refused(r: Result<(), Rejected<u32, Vec<u8>>>) -> (Error, Option<Vec<u8>>) {
    let r = r.expect_err("refused at submission");
    (r.error, r.buffer)
}

#[test]
fn operations_a_kind_of_socket_lacks_are_refused_at_submission() {
    let (mut w, f) = setup();
    let d = udp(&mut w);
    let (s, _peer) = stream_pair(&mut w);
    let p = w.watch(dummy_fd()).unwrap();
    let l = listener(&mut w, false);
    // (what, the operation refused, whether the request carried a buffer)
    type Case = (&'static str, Op, bool, Result<(), Rejected<u32, Vec<u8>>>);
    let cases: Vec<Case> = vec![
        (
            "read_full on udp",
            Op::ReadFull,
            true,
            w.read_full(d, 0, vec![0; 4]),
        ),
        ("shutdown on udp", Op::Shutdown, false, w.shutdown(d, 0)),
        ("accept on udp", Op::Accept, false, w.accept(Listener(d), 0)),
        (
            "send_to on a stream",
            Op::SendTo,
            true,
            w.send_to(s, 0, vec![1], inet(1)),
        ),
        (
            "recv_from on a stream",
            Op::RecvFrom,
            true,
            w.recv_from(s, 0, vec![0; 4]),
        ),
        ("accept on a stream", Op::Accept, false, w.accept(Listener(s), 0)),
        ("shutdown on a pipe", Op::Shutdown, false, w.shutdown(p, 0)),
        (
            "send_to on a pipe",
            Op::SendTo,
            true,
            w.send_to(p, 0, vec![1], inet(1)),
        ),
        (
            "read on a listener",
            Op::Read,
            true,
            w.read(l.conn(), 0, vec![0; 4]),
        ),
        (
            "write on a listener",
            Op::Write,
            true,
            w.write(l.conn(), 0, vec![1]),
        ),
        (
            "recv_from_swap on a listener",
            Op::RecvFrom,
            false,
            w.recv_from_swap(l.conn(), 0),
        ),
    ];
    for (what, op, carries, r) in cases {
        let (error, buffer) = refused(r);
        assert!(
            matches!(error, Error::NotSupported { op: o } if o == op),
            "{what}: {error:?}"
        );
        assert_eq!(buffer.is_some(), carries, "{what}: buffer handed back");
    }
    // No I/O was tried.
    for conn in [d, s, p] {
        assert_eq!(f.conn(conn.fd(), |k| (k.reads, k.writes.len())), (0, 0));
    }
    assert_eq!(accepts(&f, l), 0);
    // Through a submitter the refusal is a completion with the buffer.
    let mut sub = w.submitter();
    sub.send_to(s, 9, b"x".to_vec(), inet(1)).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::NotSupported { op: Op::SendTo })),
        "{:?}",
        done[0].error
    );
    assert_eq!(
        (done[0].context, &done[0].buffer),
        (9, &Buffer::User(b"x".to_vec()))
    );
}

// ----- write-queue cap -----------------------------------------------------

fn queue_full(r: Result<(), Rejected<u32, Vec<u8>>>) -> (usize, usize, Option<Vec<u8>>) {
    match refused(r) {
        (Error::WriteQueueFull { queued, limit }, buffer) => (queued, limit, buffer),
        (other, _) => panic!("expected WriteQueueFull, got {other:?}"),
    }
}

#[test]
fn the_write_cap_refuses_at_submission_and_accepts_again_as_writes_progress() {
    let (mut w, f) = setup_with(Builder::new().max_queued_write_bytes(10));
    let c = w.watch(dummy_fd()).unwrap();
    let fd = c.fd();
    assert_eq!(w.queued_write_bytes(c), Some(0));
    f.conn(fd, |k| k.write_room = 0);
    w.write(c, 0, b"AAAAAA".to_vec()).unwrap();
    assert_eq!(w.queued_write_bytes(c), Some(6));
    w.write(c, 1, b"BBBB".to_vec()).unwrap();
    assert_eq!(w.queued_write_bytes(c), Some(10));
    assert_eq!(
        queue_full(w.write(c, 2, b"C".to_vec())),
        (10, 10, Some(b"C".to_vec()))
    );
    // Some bytes leave: room for that many again.
    f.conn(fd, |k| k.write_room = 3);
    f.event(fd, false, true, false);
    quiet(&mut w);
    assert_eq!(
        f.conn(fd, |k| (k.written.clone(), k.writes.clone())),
        (b"AAA".to_vec(), vec![1, 2, 2])
    );
    assert_eq!(w.queued_write_bytes(c), Some(7));
    assert_eq!(
        queue_full(w.write(c, 3, b"CCCC".to_vec())),
        (7, 10, Some(b"CCCC".to_vec()))
    );
    w.write(c, 4, b"CCC".to_vec()).unwrap();
    assert_eq!(w.queued_write_bytes(c), Some(10));
    assert_eq!(queue_full(w.write(c, 5, b"D".to_vec())).0, 10);
    f.conn(fd, |k| k.write_room = usize::MAX);
    f.event(fd, false, true, false);
    let done = collect(&mut w, 3, Duration::from_secs(1));
    let got: Vec<(u32, usize)> = done.iter().map(|d| (d.context, d.bytes)).collect();
    assert_eq!(got, vec![(0, 6), (1, 4), (4, 3)]);
    assert!(done.iter().all(|d| d.error.is_none()));
    assert_eq!(f.conn(fd, |k| k.written.clone()), b"AAAAAABBBBCCC".to_vec());
    assert_eq!(w.queued_write_bytes(c), Some(0));
    // A write larger than the cap is refused even on an empty queue; one
    // of exactly the cap goes.
    assert_eq!(queue_full(w.write(c, 6, vec![7; 11])), (0, 10, Some(vec![7; 11])));
    w.write(c, 7, vec![7; 10]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].context, done[0].bytes), (7, 10));
}

#[test]
fn the_write_cap_counts_datagrams_and_answers_a_submitter_with_a_completion() {
    let (mut w, f) = setup_with(Builder::new().max_queued_write_bytes(8));
    let c = udp(&mut w);
    let fd = c.fd();
    f.conn(fd, |k| k.write_script.push_back(Scripted::WouldBlock));
    w.send_to(c, 0, vec![1; 5], inet(1)).unwrap();
    assert_eq!(w.queued_write_bytes(c), Some(5));
    assert_eq!(
        queue_full(w.send_to(c, 1, vec![2; 4], inet(1))),
        (5, 8, Some(vec![2; 4]))
    );
    let mut sub = w.submitter();
    sub.send_to(c, 2, vec![3; 4], inet(2)).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::WriteQueueFull { queued: 5, limit: 8 })),
        "{:?}",
        done[0].error
    );
    assert_eq!((done[0].context, &done[0].buffer), (2, &Buffer::User(vec![3; 4])));
    f.event(fd, false, true, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].op, done[0].context, done[0].bytes), (Op::SendTo, 0, 5));
    assert_eq!(w.queued_write_bytes(c), Some(0));
    sub.send_to(c, 3, vec![3; 4], inet(2)).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(f.conn(fd, |k| k.sent.len()), 2);
}

#[test]
fn the_write_cap_in_background_mode_completes_with_the_error() {
    let (mut w, f) = setup_with(Builder::new().max_queued_write_bytes(4).mode(Mode::Background));
    let c = w.watch(dummy_fd()).unwrap();
    // The watch reaches the engine thread through the queue; its fake
    // connection exists from the hand-over on.
    f.conn(c.fd(), |k| k.write_room = 0);
    w.write(c, 0, vec![1; 3]).unwrap();
    w.write(c, 1, vec![2; 2]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert!(
        matches!(done[0].error, Some(Error::WriteQueueFull { queued: 3, limit: 4 })),
        "{:?}",
        done[0].error
    );
    assert_eq!((done[0].context, &done[0].buffer), (1, &Buffer::User(vec![2; 2])));
    assert_eq!(
        w.queued_write_bytes(c),
        Some(3),
        "the queue, counted in background mode too"
    );
    f.conn(c.fd(), |k| k.write_room = usize::MAX);
    f.event(c.fd(), false, true, false);
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert_eq!((done[0].context, done[0].bytes), (0, 3));
}

/// Whether `peer`'s other end is still open: a Unix stream socket whose
/// other end has closed polls as hung up (its other end only shut down
/// for writing, it polls as readable, at end of stream).
fn other_end_open(peer: &UnixStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(peer, PollFlags::IN)];
    poll(
        &mut fds,
        Some(&Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    )
    .expect("poll");
    !fds[0].revents().contains(PollFlags::HUP)
}

/// A connection freed after its shutdown lingers, open, while its peer
/// still sends; the process running out of descriptors (an accept
/// answering EMFILE) closes it at once, so that new clients get its
/// descriptor rather than wait up to 2 s for it.
#[test]
fn out_of_descriptors_the_lingering_sockets_are_closed() {
    let (mut w, f) = setup();
    let (c, peer) = stream_pair(&mut w);
    w.shutdown(c, 1).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].op, done[0].error.is_none()), (Op::Shutdown, true));
    assert!(other_end_open(&peer), "nothing freed yet");
    w.free(c).unwrap();
    quiet(&mut w);
    assert!(other_end_open(&peer), "freed after its shutdown, it lingers");
    let l = listener(&mut w, false);
    let lfd = l.conn().fd();
    f.conn(lfd, |k| k.accept_fail = Some(raw(Errno::MFILE)));
    w.accept(l, 2).unwrap();
    assert!(
        !other_end_open(&peer),
        "out of descriptors, the lingering socket was closed"
    );
}
