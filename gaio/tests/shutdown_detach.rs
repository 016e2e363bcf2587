//! `shutdown` and `detach`: the end of a connection's life as operations.
//!
//! * `shutdown` waits for every write submitted before it (10 MiB queued
//!   to a peer that does not read yet arrive whole, in order, then end of
//!   stream), completes after all of them, leaves reads working, and makes
//!   later writes fail with EPIPE without reaching the peer.
//! * `detach` waits for every request submitted before it (a pending read
//!   and queued writes), refuses the ones after it with `ConnClosed` (their
//!   buffers handed back), and hands back the socket open, deregistered and
//!   non-blocking, usable by plain `std` code and never touched by the
//!   watcher again, even by a peer that already hung up.
//!
//! Every test counts descriptors: the detached socket is the caller's to
//! close, and once it is dropped nothing is left open.

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use gaio::{Buffer, Completion, Conn, Error, Mode, Op, Submit, Watcher};

const KIB: usize = 1024;
/// Longest wait for the completions a step expects.
const LIMIT: Duration = Duration::from_secs(8);
/// How long a request that must not complete yet is watched for.
const QUIET: Duration = Duration::from_millis(200);

/// Collects completions until `done` says the collection is complete,
/// failing after `limit`.
fn collect_until<C, B: gaio::IoBuf>(
    w: &mut Watcher<C, B>,
    limit: Duration,
    mut done: impl FnMut(&[Completion<C, B>]) -> bool,
) -> Vec<Completion<C, B>> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while !done(&out) {
        let now = Instant::now();
        assert!(
            now < end,
            "timed out after {limit:?} with {} completions: {:?}",
            out.len(),
            out.iter().map(|c| (c.op, &c.error)).collect::<Vec<_>>()
        );
        w.wait_io_timeout(&mut out, end - now).expect("wait_io");
    }
    out
}

/// Everything that completes within `quiet` (none required).
fn gather_for<C, B: gaio::IoBuf>(w: &mut Watcher<C, B>, quiet: Duration) -> Vec<Completion<C, B>> {
    let end = Instant::now() + quiet;
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        if now >= end {
            return out;
        }
        w.wait_io_timeout(&mut out, end - now).expect("wait_io");
    }
}

/// Shrinks the kernel buffers between `sender` and `receiver`, so a few
/// hundred KiB not read by the receiver leave writes queued in the watcher.
fn small_buffers(sender: &TcpStream, receiver: &TcpStream) {
    rustix::net::sockopt::set_socket_send_buffer_size(sender, 64 * KIB).unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(receiver, 64 * KIB).unwrap();
}

/// The index of the first byte where `got` and `want` differ (or the
/// shorter length), for messages about multi-MiB streams.
fn first_difference(got: &[u8], want: &[u8]) -> usize {
    got.iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()))
}

fn assert_same_stream(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: got {} bytes, expected {}; first difference at byte {}",
        got.len(),
        want.len(),
        first_difference(got, want)
    );
}

/// Asserts that the peer sees neither data nor end of stream for a moment.
/// A wait interrupted by a signal is made again (a ring shared with the
/// background thread, asked for with `GAIO_BACKEND=uring`, interrupts
/// this thread's blocking calls: see `gaio::Backend`).
fn assert_peer_sees_nothing(peer: &mut TcpStream) {
    peer.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut b = [0u8; 16];
    let mut interrupted = 0;
    let read = loop {
        match peer.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && interrupted < 10 => interrupted += 1,
            other => break other,
        }
    };
    match read {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        Ok(0) => panic!("the peer saw end of stream: the detached socket was closed"),
        Ok(n) => panic!("the peer received {n} unexpected bytes: {:?}", &b[..n]),
        Err(e) => panic!("peer read failed: {e}"),
    }
    util::peer::timeouts(peer);
}

/// Takes the socket out of a detach completion, checking the completion.
fn detached_socket<C, B>(c: &mut Completion<C, B>, conn: Conn) -> OwnedFd {
    assert_eq!(c.op, Op::Detach);
    assert_eq!(c.conn, conn);
    assert!(c.error.is_none(), "detach failed: {:?}", c.error);
    assert!(matches!(c.buffer, Buffer::None), "a detach carries no buffer");
    assert_eq!(c.bytes, 0);
    assert!(c.peer.is_none());
    c.detached.take().expect("a detach completion carries the socket")
}

/// A detached socket as a std stream: checked non-blocking (the flag and a
/// read with nothing to read), then made blocking with timeouts.
fn into_std_stream(fd: OwnedFd, nothing_to_read: bool) -> TcpStream {
    let flags = rustix::fs::fcntl_getfl(&fd).expect("F_GETFL on the detached socket");
    assert!(
        flags.contains(rustix::fs::OFlags::NONBLOCK),
        "the detached socket is not in non-blocking mode: {flags:?}"
    );
    let mut s = TcpStream::from(fd);
    if nothing_to_read {
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("a read with nothing to read on the detached socket: {other:?}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    util::peer::timeouts(&s);
    s
}

// ----- 1. shutdown after 10 MiB of queued writes ----------------------------

const WRITES: usize = 160;
const CHUNK: usize = 64 * KIB;
const SHUTDOWN: u64 = 10_000;
const REPLY: &[u8] = b"reply after end of stream: the read side still works";

/// 160 writes of 64 KiB (each its own pattern) are queued while the peer
/// does not read, then a shutdown. The peer reads everything, in order,
/// then end of stream; the shutdown completes after every write; and a
/// read on the connection afterwards gets the peer's reply.
fn shutdown_after_queued_writes(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let conn = w.watch(server).expect("watch");

    let mut expected = Vec::with_capacity(WRITES * CHUNK);
    for i in 0..WRITES {
        let buf = util::pattern(i as u64 + 1, CHUNK);
        expected.extend_from_slice(&buf);
        w.write(conn, i as u64, buf).expect("write");
    }
    w.shutdown(conn, SHUTDOWN).expect("shutdown");

    // Only now does the peer start reading.
    let reader = std::thread::spawn(move || {
        let got = util::peer::read_to_eof(&mut peer);
        peer.write_all(REPLY).unwrap();
        (peer, got)
    });

    let done = collect_until(&mut w, LIMIT, |out| out.len() > WRITES);
    assert_eq!(done.len(), WRITES + 1);
    for (k, c) in done.iter().enumerate() {
        if k < WRITES {
            assert_eq!(
                c.op,
                Op::Write,
                "completion {k}: all writes come before the shutdown"
            );
            assert_eq!(c.context, k as u64, "write completions in submission order");
            assert!(c.error.is_none(), "write {k}: {:?}", c.error);
            assert_eq!(c.bytes, CHUNK);
            match &c.buffer {
                Buffer::User(b) => assert!(
                    *b == util::pattern(k as u64 + 1, CHUNK),
                    "write {k}: buffer changed"
                ),
                other => panic!("write {k}: buffer {other:?}"),
            }
        } else {
            assert_eq!(c.op, Op::Shutdown, "the shutdown completes after every write");
            assert_eq!(c.context, SHUTDOWN);
            assert_eq!(c.conn, conn);
            assert!(c.error.is_none(), "shutdown: {:?}", c.error);
            assert!(matches!(c.buffer, Buffer::None));
            assert_eq!(c.bytes, 0);
        }
    }

    let (peer, got) = reader.join().expect("peer thread");
    assert_same_stream(&got, &expected, "bytes before end of stream");

    // The read side still works after the shutdown.
    let mut reply = Vec::new();
    for round in 0..REPLY.len() {
        assert!(reply.len() < REPLY.len());
        w.read(conn, 20_000 + round as u64, vec![0; 256]).expect("read");
        let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
        assert_eq!(c.op, Op::Read);
        assert!(c.error.is_none(), "read after shutdown: {:?}", c.error);
        reply.extend_from_slice(c.data());
        if reply.len() >= REPLY.len() {
            break;
        }
    }
    assert_eq!(reply, REPLY);

    // And sees the peer's end of stream.
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    w.read(conn, 30_000, vec![0; 16]).expect("read");
    let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert!(matches!(c.error, Some(Error::Eof)), "{:?}", c.error);
    drop(peer);
    drop(w);
    fds.check();
}

#[test]
fn shutdown_after_10_mib_of_queued_writes_delivers_all_then_eof_inline() {
    shutdown_after_queued_writes(Mode::Inline);
}

#[test]
fn shutdown_after_10_mib_of_queued_writes_delivers_all_then_eof_background() {
    shutdown_after_queued_writes(Mode::Background);
}

// ----- 2. writes after the shutdown -------------------------------------------

fn is_epipe(c: &Completion<u64, Vec<u8>>) -> bool {
    matches!(&c.error, Some(Error::Io(e))
        if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()))
}

/// A write queued behind a shutdown, and one submitted after it completed,
/// both fail with EPIPE, hand their buffers back, and reach nobody.
fn write_after_shutdown_fails(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let conn = w.watch(server).expect("watch");

    w.write(conn, 1, b"before the shutdown".to_vec()).expect("write");
    w.shutdown(conn, 2).expect("shutdown");
    // Submitted after the shutdown, before it completed.
    w.write(conn, 3, b"queued behind the shutdown".to_vec())
        .expect("write");
    let done = collect_until(&mut w, LIMIT, |out| out.len() >= 3);
    assert_eq!(done.len(), 3);
    assert_eq!((done[0].op, done[0].context), (Op::Write, 1));
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!((done[1].op, done[1].context), (Op::Shutdown, 2));
    assert!(done[1].error.is_none(), "{:?}", done[1].error);
    assert_eq!((done[2].op, done[2].context), (Op::Write, 3));
    assert!(
        is_epipe(&done[2]),
        "write behind the shutdown: {:?}",
        done[2].error
    );
    assert_eq!(done[2].bytes, 0);
    assert_eq!(
        done[2].buffer,
        Buffer::User(b"queued behind the shutdown".to_vec())
    );

    // Submitted after the shutdown completed.
    w.write(conn, 4, b"after the shutdown".to_vec()).expect("write");
    let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert_eq!((c.op, c.context), (Op::Write, 4));
    assert!(is_epipe(&c), "write after the shutdown: {:?}", c.error);
    assert_eq!(c.bytes, 0);
    assert_eq!(c.buffer, Buffer::User(b"after the shutdown".to_vec()));

    assert_eq!(util::peer::read_to_eof(&mut peer), b"before the shutdown");
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn a_write_after_shutdown_fails_with_epipe_and_reaches_nobody_inline() {
    write_after_shutdown_fails(Mode::Inline);
}

#[test]
fn a_write_after_shutdown_fails_with_epipe_and_reaches_nobody_background() {
    write_after_shutdown_fails(Mode::Background);
}

/// Connections shut down at once, each with a read pending (a busy
/// watcher: on io_uring the shutdowns go on the ring with the reads):
/// every peer reads its bytes then end of stream, each connection's
/// completions come in order, a write behind its shutdown fails with
/// EPIPE, and the pending reads still end with the peers' replies.
fn many_shutdowns_at_once(mode: Mode) {
    const CONNS: usize = 32;
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let mut peers = Vec::new();
    let mut conns = Vec::new();
    for i in 0..CONNS {
        let (peer, server) = util::tcp_pair();
        util::peer::timeouts(&peer);
        let conn = w.watch(server).expect("watch");
        w.read(conn, (i * 10) as u64, vec![0; 64]).expect("read");
        peers.push(peer);
        conns.push(conn);
    }
    let message = |i: usize| util::pattern(0x5D_0000 + i as u64, 1000 + i);
    for (i, &conn) in conns.iter().enumerate() {
        w.write(conn, (i * 10 + 1) as u64, message(i)).expect("write");
        w.shutdown(conn, (i * 10 + 2) as u64).expect("shutdown");
        w.write(conn, (i * 10 + 3) as u64, b"behind".to_vec())
            .expect("write");
    }
    let done = collect_until(&mut w, LIMIT, |out| out.len() >= 3 * CONNS);
    for (i, &conn) in conns.iter().enumerate() {
        let mine: Vec<_> = done.iter().filter(|c| c.conn == conn).collect();
        let steps: Vec<_> = mine.iter().map(|c| (c.op, c.context)).collect();
        let base = (i * 10) as u64;
        assert_eq!(
            steps,
            [
                (Op::Write, base + 1),
                (Op::Shutdown, base + 2),
                (Op::Write, base + 3)
            ],
            "{mode:?}: connection {i}"
        );
        assert!(
            mine[0].error.is_none() && mine[1].error.is_none(),
            "{mode:?}: connection {i}"
        );
        assert_eq!(mine[0].bytes, message(i).len());
        assert!(is_epipe(mine[2]), "{mode:?}: connection {i}: {:?}", mine[2].error);
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        assert_same_stream(&util::peer::read_to_eof(peer), &message(i), "a peer's bytes");
        peer.write_all(format!("reply {i}").as_bytes()).unwrap();
    }
    let replies = collect_until(&mut w, LIMIT, |out| out.len() >= CONNS);
    for c in &replies {
        let i = conns.iter().position(|&k| k == c.conn).expect("one of ours");
        assert_eq!((c.op, c.context), (Op::Read, (i * 10) as u64));
        assert_eq!(
            c.data(),
            format!("reply {i}").as_bytes(),
            "{mode:?}: connection {i}"
        );
    }
    drop(w);
    drop(peers);
    fds.check();
}

#[test]
fn many_shutdowns_at_once_deliver_every_byte_then_eof_inline() {
    many_shutdowns_at_once(Mode::Inline);
}

#[test]
fn many_shutdowns_at_once_deliver_every_byte_then_eof_background() {
    many_shutdowns_at_once(Mode::Background);
}

/// Turns `w` until `open_fds()` is back to `want`, for at most `limit`:
/// how long that took, or `None`.
fn turn_until_fds(w: &mut Watcher<u64, Vec<u8>>, want: usize, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < limit {
        if util::open_fds() == want {
            return Some(start.elapsed());
        }
        w.wait_io_timeout(&mut out, Duration::from_millis(10))
            .expect("wait_io");
        assert!(out.is_empty(), "no request is left to complete");
    }
    None
}

/// "Send the response, then close" with a client still sending (one that
/// pipelines on after an error response): a write larger than the socket
/// buffers hold, a `shutdown`, and a `free` as soon as the shutdown
/// completes. The client reads the whole response, then end of stream,
/// never a reset: the freed socket lingers, read and dropped, until the
/// client closes, and is closed then (well before the 2 s it may linger
/// at most). Closed at once with the client's bytes unread, the kernel
/// reset the connection and discarded what was left of the response in
/// its send buffer.
fn freed_right_after_shutdown(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let before = util::open_fds();
    let (client, server) = util::tcp_pair();
    util::peer::timeouts(&client);
    let conn = w.watch(server).expect("watch");
    let response = util::pattern(0x11_0000, 8 << 20);
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let chunk = [b'x'; 16 * KIB];
        let mut sent = 0usize;
        // Until the client shuts its socket down, or 2 MiB: more than the
        // server's receive buffer holds before it reads (so bytes are
        // unread when it is freed), and few enough that what is still
        // unread when the client closes drains well within the bound
        // below (a lingering socket is read 256 KiB at a time every
        // 50 ms; with no cap, a receive buffer the draining had grown
        // held more than a second's worth).
        while sent < 2 << 20 && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    });
    let mut reader = client.try_clone().unwrap();
    let receiving = std::thread::spawn(move || {
        let mut got = Vec::new();
        let read = reader.read_to_end(&mut got);
        // Done reading: close both ways, which ends the writer too.
        let _ = reader.shutdown(std::net::Shutdown::Both);
        (read, got)
    });
    w.write(conn, 1, response.clone()).expect("write");
    w.shutdown(conn, 2).expect("shutdown");
    let done = collect_until(&mut w, LIMIT, |out| out.iter().any(|c| c.op == Op::Shutdown));
    let steps: Vec<_> = done
        .iter()
        .map(|c| (c.op, c.context, c.error.is_none()))
        .collect();
    assert_eq!(steps, [(Op::Write, 1, true), (Op::Shutdown, 2, true)], "{mode:?}");
    w.free(conn).expect("free");
    // The server goes on serving (turning) while the client reads.
    let start = Instant::now();
    while !receiving.is_finished() {
        assert!(start.elapsed() < LIMIT, "{mode:?}: the client is still reading");
        let mut out = Vec::new();
        w.wait_io_timeout(&mut out, Duration::from_millis(10))
            .expect("wait_io");
    }
    let (read, got) = receiving.join().unwrap();
    sending.join().unwrap();
    if let Err(e) = read {
        panic!(
            "{mode:?}: the client's read failed after {} bytes: {e}",
            got.len()
        );
    }
    assert_same_stream(&got, &response, "the response");
    drop(client);
    let closed = turn_until_fds(&mut w, before, Duration::from_secs(1));
    assert!(
        closed.is_some(),
        "{mode:?}: the lingering socket outlived its client's close"
    );
    drop(w);
    fds.check();
}

#[test]
fn a_connection_freed_right_after_its_shutdown_delivers_its_response_inline() {
    freed_right_after_shutdown(Mode::Inline);
}

#[test]
fn a_connection_freed_right_after_its_shutdown_delivers_its_response_background() {
    freed_right_after_shutdown(Mode::Background);
}

/// A client that neither reads to the end nor closes: the socket freed
/// after its shutdown lingers 2 s at most, then is closed.
#[test]
fn a_lingering_socket_whose_client_never_closes_is_closed_after_two_seconds() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let before = util::open_fds();
        let (mut client, server) = util::tcp_pair();
        util::peer::timeouts(&client);
        let conn = w.watch(server).expect("watch");
        client.write_all(b"unread").unwrap();
        w.shutdown(conn, 1).expect("shutdown");
        let done = collect_until(&mut w, LIMIT, |out| !out.is_empty());
        assert_eq!(
            (done[0].op, done[0].error.is_none()),
            (Op::Shutdown, true),
            "{mode:?}"
        );
        w.free(conn).expect("free");
        let freed = Instant::now();
        assert_eq!(
            util::peer::read_to_eof(&mut client),
            b"",
            "{mode:?}: end of stream, no reset"
        );
        // The client's socket is still open.
        let closed = turn_until_fds(&mut w, before + 1, Duration::from_secs(4)).map(|_| freed.elapsed());
        let Some(after) = closed else {
            panic!("{mode:?}: the lingering socket was never closed");
        };
        assert!(
            after >= Duration::from_millis(1_900) && after < Duration::from_millis(3_500),
            "{mode:?}: closed {after:?} after the free"
        );
        drop((w, client));
    }
    fds.check();
}

/// Closing the watcher closes every descriptor at once, lingering or
/// not: a connection shut down and then freed by the close (not by the
/// loop) does not linger, and neither does one freed by the loop before.
#[test]
fn a_closed_watcher_leaves_no_socket_lingering() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let before = util::open_fds();
        let mut clients = Vec::new();
        let mut conns = Vec::new();
        for i in 0..2 {
            let (mut client, server) = util::tcp_pair();
            util::peer::timeouts(&client);
            // Bytes the watcher never reads: a socket closed with them
            // unread would be reset, so a freed one lingers.
            client.write_all(b"unread").unwrap();
            let conn = w.watch(server).expect("watch");
            w.shutdown(conn, i).expect("shutdown");
            clients.push(client);
            conns.push(conn);
        }
        let done = collect_until(&mut w, LIMIT, |out| out.len() >= 2);
        assert!(
            done.iter().all(|c| c.op == Op::Shutdown && c.error.is_none()),
            "{mode:?}"
        );
        w.free(conns[0]).expect("free");
        // Two clients, two server sockets: the freed one lingers, open.
        assert_eq!(util::open_fds(), before + 4, "{mode:?}: the freed socket lingers");
        w.close();
        assert_eq!(
            util::open_fds(),
            before + 2,
            "{mode:?}: a socket outlived the close (the clients' two are left)"
        );
        drop((w, clients));
    }
    fds.check();
}

// ----- 3. a detached socket in std's hands --------------------------------------

/// The connection is used through the watcher, then detached: the socket
/// comes back non-blocking and works as a plain `TcpStream` both ways;
/// the watcher never touches it again (a stale request is refused, `free`
/// and dropping the watcher leave it open).
fn detach_hands_a_working_socket_to_std(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let conn = w.watch(server).expect("watch");

    // In use through the watcher first.
    w.write(conn, 1, b"through the watcher".to_vec()).expect("write");
    let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert!(c.error.is_none(), "{:?}", c.error);
    let mut b = [0u8; 19];
    peer.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"through the watcher");

    w.detach(conn, 2).expect("detach");
    let mut c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert_eq!(c.context, 2);
    let fd = detached_socket(&mut c, conn);
    let mut s = into_std_stream(fd, true);

    s.write_all(b"from std to the peer").unwrap();
    let mut b = [0u8; 20];
    peer.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"from std to the peer");
    peer.write_all(b"from the peer to std").unwrap();
    let mut b = [0u8; 20];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"from the peer to std");

    // The watcher no longer knows the connection.
    assert_eq!(w.queued_write_bytes(conn), None);
    w.read(conn, 3, vec![5; 32])
        .expect("a request on a detached connection completes");
    let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert!(matches!(c.error, Some(Error::ConnClosed)), "{:?}", c.error);
    assert_eq!(c.buffer, Buffer::User(vec![5; 32]));
    w.free(conn).expect("free of a detached connection does nothing");
    util::expect_quiet(&mut w, Duration::from_millis(50));
    assert_peer_sees_nothing(&mut peer);
    w.close();
    drop(w);
    assert_peer_sees_nothing(&mut peer);

    // Still a working connection after the watcher is gone.
    s.write_all(b"still here").unwrap();
    let mut b = [0u8; 10];
    peer.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"still here");
    peer.write_all(b"and back").unwrap();
    let mut b = [0u8; 8];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"and back");

    // Only dropping the std stream closes it.
    drop(s);
    let mut b = [0u8; 8];
    assert_eq!(
        peer.read(&mut b).unwrap(),
        0,
        "end of stream once the std stream is dropped"
    );
    drop(peer);
    fds.check();
}

#[test]
fn detach_hands_a_working_nonblocking_socket_to_std_inline() {
    detach_hands_a_working_socket_to_std(Mode::Inline);
}

#[test]
fn detach_hands_a_working_nonblocking_socket_to_std_background() {
    detach_hands_a_working_socket_to_std(Mode::Background);
}

// ----- 4. detach waits for the requests before it ----------------------------

const QUEUED_WRITES: usize = 32;
const DETACH: u64 = 900;
const AFTER: u64 = 1000;

/// A pending read (nothing sent yet) and 2 MiB of writes the peer does not
/// read yet, then a detach, then more requests. The later requests come
/// back at once with `ConnClosed` and their buffers; the detach completes
/// once every write was written, without waiting for the read, which
/// completes right after it with `ConnClosed`, having taken nothing: the
/// bytes it waited for are the socket's, handed back right after the
/// writes.
fn detach_waits_for_earlier_writes_not_for_a_waiting_read(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    small_buffers(&server, &peer);
    let conn = w.watch(server).expect("watch");

    w.read(conn, 1, vec![0; 64]).expect("read");
    let mut expected = Vec::new();
    for i in 0..QUEUED_WRITES {
        let buf = util::pattern(0x0D00 + i as u64, CHUNK);
        expected.extend_from_slice(&buf);
        w.write(conn, 100 + i as u64, buf).expect("write");
    }
    w.detach(conn, DETACH).expect("detach");
    // After the detach: each completes with ConnClosed and hands back
    // what it carried.
    w.read(conn, AFTER, vec![7; 32]).expect("read after detach");
    w.write(conn, AFTER + 1, b"never sent".to_vec())
        .expect("write after detach");
    w.read_swap(conn, AFTER + 2).expect("read_swap after detach");
    w.shutdown(conn, AFTER + 3).expect("shutdown after detach");
    w.detach(conn, AFTER + 4).expect("second detach");

    let mut all = gather_for(&mut w, QUIET);
    let after: Vec<_> = all.iter().filter(|c| c.context >= AFTER).collect();
    assert_eq!(
        after.len(),
        5,
        "requests after the detach complete at once: {after:?}"
    );
    for c in &after {
        assert!(
            matches!(c.error, Some(Error::ConnClosed)),
            "{:?}: {:?}",
            c.op,
            c.error
        );
        assert_eq!(c.bytes, 0);
        assert!(c.detached.is_none());
        match c.context - AFTER {
            0 => assert_eq!((c.op, &c.buffer), (Op::Read, &Buffer::User(vec![7; 32]))),
            1 => assert_eq!(
                (c.op, &c.buffer),
                (Op::Write, &Buffer::User(b"never sent".to_vec()))
            ),
            2 => assert!(c.op == Op::Read && matches!(&c.buffer, Buffer::Swap(b) if b.is_empty())),
            3 => assert_eq!((c.op, &c.buffer), (Op::Shutdown, &Buffer::None)),
            _ => assert_eq!((c.op, &c.buffer), (Op::Detach, &Buffer::None)),
        }
    }
    assert!(
        !all.iter().any(|c| c.context == DETACH || c.context == 1),
        "the detach or the read completed before any data was sent"
    );

    let written_so_far = all
        .iter()
        .filter(|c| c.op == Op::Write && c.context < AFTER)
        .count();
    assert!(
        written_so_far < QUEUED_WRITES,
        "all {QUEUED_WRITES} writes completed without the peer reading: the test proves nothing"
    );

    // The peer reads everything: every write completes, in order, then
    // the detach, then the read that was waiting.
    let total = expected.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; total];
        peer.read_exact(&mut got).unwrap();
        (peer, got)
    });
    let is_write = |c: &Completion<u64, Vec<u8>>| c.op == Op::Write && c.context < AFTER;
    let before = all.iter().filter(|c| is_write(c)).count();
    all.extend(collect_until(&mut w, LIMIT, |out| {
        out.iter().any(|c| c.context == 1)
            && before + out.iter().filter(|c| is_write(c)).count() >= QUEUED_WRITES
    }));
    let (mut peer, got) = reader.join().expect("peer thread");
    assert_same_stream(&got, &expected, "bytes written before the detach");
    let writes: Vec<u64> = all.iter().filter(|c| is_write(c)).map(|c| c.context).collect();
    assert_eq!(writes, (100..100 + QUEUED_WRITES as u64).collect::<Vec<_>>());
    for c in all.iter().filter(|c| is_write(c)) {
        assert!(c.error.is_none(), "write {}: {:?}", c.context, c.error);
        assert_eq!(c.bytes, CHUNK);
    }
    all.extend(gather_for(&mut w, QUIET));
    let read = all
        .iter()
        .position(|c| c.context == 1)
        .expect("the read completed");
    let pos = all
        .iter()
        .position(|c| c.context == DETACH)
        .expect("the detach completed");
    let last_write = all.iter().rposition(is_write).unwrap();
    assert!(
        last_write < pos,
        "the detach completes after every write before it"
    );
    assert_eq!(read, pos + 1, "the waiting read completes right after the detach");
    assert_eq!(pos, all.len() - 2, "nothing completes after them");
    let c = &all[read];
    assert!(matches!(c.error, Some(Error::ConnClosed)), "{:?}", c.error);
    assert_eq!(
        (c.op, c.bytes, &c.buffer),
        (Op::Read, 0, &Buffer::User(vec![0; 64]))
    );
    let mut detach = all.remove(pos);
    let mut s = into_std_stream(detached_socket(&mut detach, conn), true);
    util::expect_quiet(&mut w, Duration::from_millis(50));

    // Nothing lost or left over on the socket: what the read waited for
    // is read from the socket handed back.
    peer.write_all(b"ping").unwrap();
    peer.write_all(b"after the detach").unwrap();
    let mut b = [0u8; 20];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"pingafter the detach");
    s.write_all(b"from std").unwrap();
    drop(s);
    assert_eq!(util::peer::read_to_eof(&mut peer), b"from std");
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn detach_waits_for_queued_writes_not_for_a_waiting_read_inline() {
    detach_waits_for_earlier_writes_not_for_a_waiting_read(Mode::Inline);
}

#[test]
fn detach_waits_for_queued_writes_not_for_a_waiting_read_background() {
    detach_waits_for_earlier_writes_not_for_a_waiting_read(Mode::Background);
}

// ----- 5. detach after the peer hung up ------------------------------------------

/// The peer sent a last message and closed before the detach (the watcher
/// has seen the hang-up): the socket still comes back, holding the message
/// and then end of stream.
fn detach_after_peer_hung_up(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (mut peer, server) = util::tcp_pair();
    let conn = w.watch(server).expect("watch");
    peer.write_all(b"last words").unwrap();
    drop(peer);
    // Let the watcher take the hang-up event in (nothing completes).
    std::thread::sleep(Duration::from_millis(20));
    util::expect_quiet(&mut w, Duration::from_millis(50));

    w.detach(conn, 1).expect("detach");
    let mut c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    let mut s = into_std_stream(detached_socket(&mut c, conn), false);
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("read the detached socket to end of stream");
    assert_eq!(got, b"last words");
    drop(s);
    drop(w);
    fds.check();
}

#[test]
fn detach_after_the_peer_hung_up_still_hands_the_socket_back_inline() {
    detach_after_peer_hung_up(Mode::Inline);
}

#[test]
fn detach_after_the_peer_hung_up_still_hands_the_socket_back_background() {
    detach_after_peer_hung_up(Mode::Background);
}

/// The watcher read the connection to end of stream, then detaches it: the
/// socket comes back and reading it gives end of stream at once.
fn detach_after_eof_was_read(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (mut peer, server) = util::tcp_pair();
    let conn = w.watch(server).expect("watch");
    peer.write_all(b"bye").unwrap();
    drop(peer);
    let mut got = Vec::new();
    for round in 0..8 {
        w.read(conn, round, vec![0; 16]).expect("read");
        let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
        match c.error {
            None => got.extend_from_slice(c.data()),
            Some(Error::Eof) => break,
            other => panic!("read: {other:?}"),
        }
        assert!(round < 7, "no end of stream after 8 reads");
    }
    assert_eq!(got, b"bye");

    w.detach(conn, 100).expect("detach");
    let mut c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    let mut s = into_std_stream(detached_socket(&mut c, conn), false);
    let mut b = [0u8; 8];
    assert_eq!(
        s.read(&mut b).expect("read the detached socket"),
        0,
        "end of stream"
    );
    drop(s);
    drop(w);
    fds.check();
}

#[test]
fn detach_after_end_of_stream_was_read_hands_back_a_socket_at_eof_inline() {
    detach_after_eof_was_read(Mode::Inline);
}

#[test]
fn detach_after_end_of_stream_was_read_hands_back_a_socket_at_eof_background() {
    detach_after_eof_was_read(Mode::Background);
}

// ----- 5. detach after a swap read that was offered less than arrived -------

/// Two connections with swap reads pending in a watcher whose swap slab is
/// 1 KiB; 700 bytes reach each at once. On io_uring both land in one turn,
/// each in a provided buffer, and the engine copies them into its slab in
/// turn: the second read is offered only what the first left of the slab
/// (325 bytes), and the poller keeps the rest for that connection's next
/// read. Both connections are then detached with no read pending: every
/// byte the peers sent is either in a read's completion or still to be
/// read from the detached socket. (On the readiness backends the kernel
/// keeps what a read did not take, so this holds trivially.)
///
/// Failed on io_uring (`GAIO_BACKEND=uring`) before the engine honoured
/// `Poller::swap_read_room`: the second read was offered only what the
/// first left of the slab, the bytes that did not fit stayed in the poller
/// for that connection's next read, and the detach dropped them, so the
/// detached socket started 375 bytes late.
fn detach_after_a_short_swap_read_loses_no_bytes(mode: Mode) {
    const SENT: usize = 700;
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = gaio::Builder::new()
        .mode(mode)
        .swap_size(KIB)
        .build()
        .expect("create watcher");
    let mut peers = Vec::new();
    let mut conns = Vec::new();
    for (peer, server) in util::tcp_pairs(2) {
        util::peer::timeouts(&peer);
        conns.push(w.watch(server).expect("watch"));
        peers.push(peer);
    }
    for (i, &conn) in conns.iter().enumerate() {
        w.read_swap(conn, i as u64).expect("read_swap");
    }
    // Let the reads reach the kernel before the bytes do.
    util::expect_quiet(&mut w, Duration::from_millis(50));
    let sent: Vec<Vec<u8>> = (0..2).map(|i| util::pattern(i, SENT)).collect();
    for (peer, bytes) in peers.iter_mut().zip(&sent) {
        peer.write_all(bytes).unwrap();
    }
    let reads = collect_until(&mut w, LIMIT, |out| out.len() >= 2);
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); 2];
    for c in &reads {
        assert_eq!(c.op, Op::Read);
        assert!(c.error.is_none(), "read failed: {:?}", c.error);
        let Buffer::Swap(bytes) = &c.buffer else {
            panic!("a swap read's completion carries swap bytes")
        };
        got[c.context as usize].extend_from_slice(bytes);
    }
    drop(reads);
    for (i, &conn) in conns.iter().enumerate() {
        w.detach(conn, 10 + i as u64).expect("detach");
    }
    let mut detached = collect_until(&mut w, LIMIT, |out| out.len() >= 2);
    detached.sort_by_key(|c| c.context);
    for (i, mut c) in detached.into_iter().enumerate() {
        let fd = detached_socket(&mut c, conns[i]);
        let mut s = into_std_stream(fd, false);
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; SENT];
        while got[i].len() < SENT {
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(n) => got[i].extend_from_slice(&b[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                Err(e) => panic!("read from the detached socket: {e}"),
            }
        }
        assert_same_stream(&got[i], &sent[i], &format!("connection {i}: read, then detached"));
    }
    w.close();
    drop(w);
    drop(peers);
    fds.check();
}

#[test]
fn detach_after_a_short_swap_read_loses_no_bytes_inline() {
    detach_after_a_short_swap_read_loses_no_bytes(Mode::Inline);
}

#[test]
fn detach_after_a_short_swap_read_loses_no_bytes_background() {
    detach_after_a_short_swap_read_loses_no_bytes(Mode::Background);
}

/// A listener's detach does not wait for an accept still waiting for a
/// client (it would wait for ever on a quiet listener, and a multishot
/// accept never ends): the detach hands the listening socket back at once,
/// then the accepts complete with `ConnClosed`, having taken nothing. A
/// client that connects afterwards is in the backlog of the socket handed
/// back, accepted by plain `std`.
#[test]
fn detach_of_a_listener_does_not_wait_for_its_waiting_accepts() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).unwrap();
        w.accept(listener, 1).unwrap();
        w.accept_multishot(listener, 3).unwrap();
        w.detach(listener.conn(), 2).unwrap();
        let mut got = collect_until(&mut w, Duration::from_secs(2), |out| out.len() >= 3);
        assert_eq!(
            got.iter().map(|c| (c.op, c.context)).collect::<Vec<_>>(),
            [(Op::Detach, 2), (Op::Accept, 1), (Op::Accept, 3)],
            "{mode:?}"
        );
        for c in &got[1..] {
            assert!(
                matches!(c.error, Some(Error::ConnClosed)),
                "{mode:?}: {:?}",
                c.error
            );
            assert_eq!(c.conn, listener.conn(), "{mode:?}: an accept made a connection");
        }
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        let fd = detached_socket(&mut got[0], listener.conn());
        let std_listener = std::net::TcpListener::from(fd);
        std_listener.set_nonblocking(false).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (from_std, peer) = std_listener
            .accept()
            .expect("the detached listener still listens");
        assert_eq!(peer, client.local_addr().unwrap(), "{mode:?}");
        assert!(
            gather_for(&mut w, QUIET).is_empty(),
            "{mode:?}: the watcher still accepts"
        );
        drop((client, from_std, std_listener));
    }
    fds.check();
}
