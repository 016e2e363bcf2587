//! Datagram sockets (UDP, Unix datagram) through the watcher: one datagram
//! per receive and per send, the sender's address with each receive, the
//! destination with each send, truncation reported, empty datagrams as
//! datagrams (not end of stream), and the stream-only operations refused.

mod util;
use util::TempDir;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use gaio::{Buffer, Bytes, Completion, Error, Mode, Op, PeerAddr, Submit, Watcher};

/// Longest wait for the completions a step expects.
const LIMIT: Duration = Duration::from_secs(5);
/// How long a test's own socket waits for a datagram before the test fails.
const PEER_WAIT: Duration = Duration::from_secs(3);

fn next<C, B: gaio::IoBuf>(w: &mut Watcher<C, B>) -> Completion<C, B> {
    let mut done = util::wait_for(w, 1, LIMIT);
    assert_eq!(done.len(), 1, "one completion expected");
    done.pop().unwrap()
}

fn udp_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind loopback UDP");
    s.set_read_timeout(Some(PEER_WAIT)).unwrap();
    s.set_write_timeout(Some(PEER_WAIT)).unwrap();
    s
}

fn inet(c_peer: &Option<PeerAddr>) -> SocketAddr {
    c_peer
        .as_ref()
        .and_then(PeerAddr::as_inet)
        .unwrap_or_else(|| panic!("expected an IP sender, got {c_peer:?}"))
}

// ----- 1. UDP echo of 10,000 datagrams ---------------------------------------

const CLIENTS: usize = 2;
const PER_CLIENT: usize = 5_000;
/// Datagrams each client keeps outstanding: small enough that the server
/// socket's receive buffer never overflows on loopback (no loss).
const WINDOW: usize = 32;
/// Receives the echo server keeps pending.
const PENDING_RECVS: usize = 16;
/// The largest UDP payload in one Ethernet-sized IPv4 packet.
const MAX_SIZE: usize = 1472;

/// Datagram `i` of client `client`: its size (0..=1472, varying, 0 at
/// least once per client) and its bytes.
fn datagram(client: usize, i: usize) -> Vec<u8> {
    let size = (i * 7919 + client * 31) % (MAX_SIZE + 1);
    let size = if i == 17 { 0 } else { size };
    util::pattern(((client as u64 + 1) << 32) | i as u64, size)
}

/// One client: sends its datagrams with at most `WINDOW` outstanding and
/// checks every reply against an outstanding datagram (any order among
/// those: loopback keeps the order, but this does not rely on it).
fn echo_client(client: usize, sock: UdpSocket) -> Result<usize, String> {
    let mut outstanding: VecDeque<Vec<u8>> = VecDeque::new();
    let mut sent = 0;
    let mut checked = 0;
    let mut empty_seen = 0;
    let mut buf = vec![0u8; MAX_SIZE + 64];
    let end = Instant::now() + Duration::from_secs(20);
    while checked < PER_CLIENT {
        if Instant::now() > end {
            return Err(format!(
                "client {client}: gave up after 20 s with {checked} replies"
            ));
        }
        while sent < PER_CLIENT && outstanding.len() < WINDOW {
            let d = datagram(client, sent);
            let n = sock
                .send(&d)
                .map_err(|e| format!("client {client}: send {sent}: {e}"))?;
            if n != d.len() {
                return Err(format!("client {client}: sent {n} of {} bytes", d.len()));
            }
            outstanding.push_back(d);
            sent += 1;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(format!(
                    "client {client}: {} datagrams never came back ({checked} checked, {sent} sent)",
                    outstanding.len()
                ))
            }
            Err(e) => return Err(format!("client {client}: recv: {e}")),
        };
        let reply = &buf[..n];
        let Some(k) = outstanding.iter().position(|d| d.as_slice() == reply) else {
            return Err(format!(
                "client {client}: a reply of {n} bytes matches no outstanding datagram"
            ));
        };
        if n == 0 {
            empty_seen += 1;
        }
        outstanding.remove(k);
        checked += 1;
    }
    if empty_seen == 0 {
        return Err(format!("client {client}: no empty datagram came back"));
    }
    Ok(checked)
}

fn udp_echo(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Bytes> = util::watcher(mode);
    let server = udp_socket();
    let server_addr = server.local_addr().unwrap();
    let conn = w.watch(server).expect("watch a UDP socket");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let sock = udp_socket();
            sock.connect(server_addr).unwrap();
            let addr = sock.local_addr().unwrap();
            (addr, std::thread::spawn(move || echo_client(client, sock)))
        })
        .collect();
    let client_addrs: Vec<SocketAddr> = clients.iter().map(|(a, _)| *a).collect();

    for k in 0..PENDING_RECVS {
        w.recv_from_swap(conn, k as u64).expect("recv_from_swap");
    }
    let total = CLIENTS * PER_CLIENT;
    let (mut received, mut sent, mut empty) = (0, 0, 0);
    let mut batch = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while sent < total {
        let now = Instant::now();
        assert!(
            now < end,
            "echo server: {received} received, {sent} echoed of {total}"
        );
        w.wait_io_timeout(&mut batch, end - now).expect("wait_io");
        for c in batch.drain(..) {
            match c.op {
                Op::RecvFrom => {
                    assert!(c.error.is_none(), "recv_from: {:?}", c.error);
                    let from = inet(&c.peer);
                    assert!(client_addrs.contains(&from), "datagram from a stranger: {from}");
                    let data = c
                        .buffer
                        .into_swap()
                        .expect("a swap receive hands back a swap slice");
                    assert_eq!(data.len(), c.bytes);
                    empty += usize::from(data.is_empty());
                    received += 1;
                    w.send_to(conn, c.context, data, from).expect("send_to");
                    if received + PENDING_RECVS <= total {
                        w.recv_from_swap(conn, c.context).expect("recv_from_swap");
                    }
                }
                Op::SendTo => {
                    assert!(c.error.is_none(), "send_to: {:?}", c.error);
                    let data = c.buffer.into_user().expect("send_to hands its buffer back");
                    assert_eq!(c.bytes, data.len(), "a datagram is sent whole");
                    assert!(client_addrs.contains(&inet(&c.peer)));
                    sent += 1;
                }
                other => panic!("unexpected completion {other:?}: {:?}", c.error),
            }
        }
    }
    assert_eq!(received, total);
    assert!(empty >= CLIENTS, "empty datagrams echoed: {empty}");
    for (_, client) in clients {
        assert_eq!(client.join().expect("client thread"), Ok(PER_CLIENT));
    }
    util::expect_quiet(&mut w, Duration::from_millis(20));
    drop(w);
    fds.check();
}

#[test]
fn udp_echo_of_10000_datagrams_with_content_checked_inline() {
    udp_echo(Mode::Inline);
}

#[test]
fn udp_echo_of_10000_datagrams_with_content_checked_background() {
    udp_echo(Mode::Background);
}

// ----- 2. truncation ------------------------------------------------------------

/// A 2,000-byte datagram into a 100-byte buffer: `Truncated`, 100 bytes,
/// the datagram's first 100. The next datagram is whole.
fn truncation_into_own_buffer(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let server = udp_socket();
    let server_addr = server.local_addr().unwrap();
    let conn = w.watch(server).expect("watch");
    let client = udp_socket();
    let big = util::pattern(2000, 2000);
    client.send_to(&big, server_addr).unwrap();
    client.send_to(b"whole", server_addr).unwrap();

    w.recv_from(conn, 1, vec![0; 100]).expect("recv_from");
    let c = next(&mut w);
    assert_eq!(c.op, Op::RecvFrom);
    assert!(matches!(c.error, Some(Error::Truncated)), "{:?}", c.error);
    assert_eq!(c.bytes, 100);
    assert_eq!(c.data(), &big[..100]);
    assert_eq!(c.peer, Some(PeerAddr::from(client.local_addr().unwrap())));

    w.recv_from(conn, 2, vec![0; 100]).expect("recv_from");
    let c = next(&mut w);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"whole");
    drop(w);
    drop(client);
    fds.check();
}

#[test]
fn a_datagram_longer_than_the_buffer_is_reported_truncated_inline() {
    truncation_into_own_buffer(Mode::Inline);
}

#[test]
fn a_datagram_longer_than_the_buffer_is_reported_truncated_background() {
    truncation_into_own_buffer(Mode::Background);
}

/// With a 512-byte swap size: 1,000 and 513 bytes are truncated to their
/// first 512; 512 bytes exactly are not.
fn truncation_into_swap(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = gaio::Builder::new()
        .swap_size(512)
        .mode(mode)
        .build()
        .expect("watcher");
    let server = udp_socket();
    let server_addr = server.local_addr().unwrap();
    let conn = w.watch(server).expect("watch");
    let client = udp_socket();
    let sizes = [1000, 512, 513, 511];
    for &n in &sizes {
        client.send_to(&util::pattern(n as u64, n), server_addr).unwrap();
    }
    for (k, &n) in sizes.iter().enumerate() {
        w.recv_from_swap(conn, k as u64).expect("recv_from_swap");
        let c = next(&mut w);
        assert_eq!((c.op, c.context), (Op::RecvFrom, k as u64));
        let want = util::pattern(n as u64, n);
        if n > 512 {
            assert!(
                matches!(c.error, Some(Error::Truncated)),
                "{n} bytes: {:?}",
                c.error
            );
            assert_eq!(c.bytes, 512);
            assert_eq!(c.data(), &want[..512]);
        } else {
            assert!(c.error.is_none(), "{n} bytes: {:?}", c.error);
            assert_eq!(c.bytes, n);
            assert_eq!(c.data(), &want[..]);
        }
        assert!(matches!(&c.buffer, Buffer::Swap(b) if b.len() == c.bytes));
        assert_eq!(c.peer, Some(PeerAddr::from(client.local_addr().unwrap())));
    }
    drop(w);
    drop(client);
    fds.check();
}

#[test]
fn recv_from_swap_truncates_beyond_the_swap_size_inline() {
    truncation_into_swap(Mode::Inline);
}

#[test]
fn recv_from_swap_truncates_beyond_the_swap_size_background() {
    truncation_into_swap(Mode::Background);
}

// ----- 3. send_to ----------------------------------------------------------------

fn send_to_a_std_socket(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let server = udp_socket();
    let server_addr = server.local_addr().unwrap();
    let conn = w.watch(server).expect("watch");
    let peer = udp_socket();
    let peer_addr = peer.local_addr().unwrap();

    let mut buf = vec![0u8; 2048];
    for (k, n) in [1usize, 700, 1472].into_iter().enumerate() {
        let data = util::pattern(0x5E7D + k as u64, n);
        w.send_to(conn, k as u64, data.clone(), peer_addr)
            .expect("send_to");
        let c = next(&mut w);
        assert_eq!((c.op, c.context), (Op::SendTo, k as u64));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.bytes, n);
        assert_eq!(c.peer, Some(PeerAddr::from(peer_addr)));
        assert_eq!(c.buffer, Buffer::User(data.clone()));
        let (got, from) = peer.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..got], &data[..], "datagram {k}");
        assert_eq!(from, server_addr);
    }
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn send_to_delivers_exactly_the_bytes_and_reports_the_destination_inline() {
    send_to_a_std_socket(Mode::Inline);
}

#[test]
fn send_to_delivers_exactly_the_bytes_and_reports_the_destination_background() {
    send_to_a_std_socket(Mode::Background);
}

// ----- 4. connected UDP ----------------------------------------------------------

/// `send` and `read` (own buffer and swap) on a connected UDP socket: one
/// datagram each, the peer's address reported with every read.
fn connected_udp(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let ours = udp_socket();
    let peer = udp_socket();
    ours.connect(peer.local_addr().unwrap()).unwrap();
    peer.connect(ours.local_addr().unwrap()).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let conn = w.watch(ours).expect("watch");

    for (k, n) in [3usize, 1200].into_iter().enumerate() {
        let data = util::pattern(0xC0 + k as u64, n);
        w.send(conn, k as u64, data.clone()).expect("send");
        let c = next(&mut w);
        assert_eq!((c.op, c.context), (Op::Write, k as u64));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.bytes, n);
        let mut buf = vec![0u8; 2048];
        let got = peer.recv(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..got], &data[..]);
    }

    // Two datagrams, two reads: never merged like stream bytes.
    peer.send(b"first").unwrap();
    peer.send(b"second datagram").unwrap();
    w.read(conn, 10, vec![0; 64]).expect("read");
    let c = next(&mut w);
    assert_eq!(c.op, Op::Read);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"first");
    assert_eq!(c.peer, Some(PeerAddr::from(peer_addr)));
    w.read_swap(conn, 11).expect("read_swap");
    let c = next(&mut w);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"second datagram");
    assert_eq!(c.peer, Some(PeerAddr::from(peer_addr)));
    assert_eq!(c.buffer, Buffer::Swap(Bytes::from_static(b"second datagram")));

    // A datagram longer than a read's buffer: truncated, as with recv_from.
    peer.send(b"0123456789").unwrap();
    w.read(conn, 13, vec![0; 4]).expect("read");
    let c = next(&mut w);
    assert!(matches!(c.error, Some(Error::Truncated)), "{:?}", c.error);
    assert_eq!(c.data(), b"0123");

    // A read waiting before the datagram is sent.
    w.read(conn, 12, vec![0; 64]).expect("read");
    util::expect_quiet(&mut w, Duration::from_millis(30));
    peer.send(b"later").unwrap();
    let c = next(&mut w);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"later");
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn connected_udp_send_and_read_one_datagram_each_inline() {
    connected_udp(Mode::Inline);
}

#[test]
fn connected_udp_send_and_read_one_datagram_each_background() {
    connected_udp(Mode::Background);
}

// ----- 5. Unix datagram sockets -------------------------------------------------

fn unix_path_of(c_peer: &Option<PeerAddr>) -> &Path {
    c_peer
        .as_ref()
        .and_then(PeerAddr::as_unix)
        .and_then(|u| u.as_path())
        .unwrap_or_else(|| panic!("expected a Unix path sender, got {c_peer:?}"))
}

/// Unix datagram sockets bound to paths: `recv_from` names the sender's
/// path, `send_to` a path reaches it (and a reply to the address received
/// reaches the sender).
fn unix_datagrams(mode: Mode) {
    let fds = util::FdCheck::new();
    let dir = TempDir::new("unix");
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let (server_path, client_path) = (dir.path().join("server.sock"), dir.path().join("client.sock"));
    let server = UnixDatagram::bind(&server_path).expect("bind the server");
    let client = UnixDatagram::bind(&client_path).expect("bind the client");
    client.set_read_timeout(Some(PEER_WAIT)).unwrap();
    let conn = w.watch(server).expect("watch a Unix datagram socket");

    client.send_to(b"hello over a path", &server_path).unwrap();
    w.recv_from(conn, 1, vec![0; 64]).expect("recv_from");
    let c = next(&mut w);
    assert_eq!(c.op, Op::RecvFrom);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"hello over a path");
    assert_eq!(unix_path_of(&c.peer), client_path.as_path());

    // Reply to the address received.
    let reply_to = c.peer.clone().unwrap();
    w.send_to(conn, 2, b"reply to the sender".to_vec(), reply_to.clone())
        .expect("send_to");
    let c = next(&mut w);
    assert_eq!(c.op, Op::SendTo);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.bytes, 19);
    assert_eq!(c.peer, Some(reply_to));
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).expect("the reply arrives");
    assert_eq!(&buf[..n], b"reply to the sender");
    assert_eq!(from.as_pathname(), Some(server_path.as_path()));

    // A path built by the caller.
    w.send_to(conn, 3, b"to a path".to_vec(), PeerAddr::unix_path(&client_path))
        .expect("send_to");
    let c = next(&mut w);
    assert!(c.error.is_none(), "{:?}", c.error);
    let n = client.recv(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], b"to a path");

    // Swap receive from the same sender.
    client.send_to(b"into swap", &server_path).unwrap();
    w.recv_from_swap(conn, 4).expect("recv_from_swap");
    let c = next(&mut w);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"into swap");
    assert_eq!(unix_path_of(&c.peer), client_path.as_path());

    drop(w);
    drop(client);
    drop(dir);
    fds.check();
}

#[test]
fn unix_datagrams_report_the_sender_path_and_send_to_a_path_inline() {
    unix_datagrams(Mode::Inline);
}

#[test]
fn unix_datagrams_report_the_sender_path_and_send_to_a_path_background() {
    unix_datagrams(Mode::Background);
}

/// A datagram from a Unix socket bound to no name: its sender is a Unix
/// address, unnamed (as the peer of an accepted Unix stream connection
/// is), not "no sender".
fn unix_datagram_from_an_unbound_sender(mode: Mode) {
    let fds = util::FdCheck::new();
    let dir = TempDir::new("unbound");
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let server_path = dir.path().join("server.sock");
    let server = UnixDatagram::bind(&server_path).expect("bind the server");
    let conn = w.watch(server).expect("watch a Unix datagram socket");
    let unbound = UnixDatagram::unbound().unwrap();
    unbound.send_to(b"anonymous", &server_path).unwrap();
    unbound.send_to(b"into swap", &server_path).unwrap();
    w.recv_from(conn, 1, vec![0; 64]).expect("recv_from");
    w.recv_from_swap(conn, 2).expect("recv_from_swap");
    let done = util::wait_for(&mut w, 2, LIMIT);
    assert_eq!(done.len(), 2);
    for (c, want) in done.iter().zip([&b"anonymous"[..], b"into swap"]) {
        assert_eq!(c.op, Op::RecvFrom);
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.data(), want);
        let unix = c.peer.as_ref().and_then(PeerAddr::as_unix);
        assert!(
            unix.is_some_and(|u| u.is_unnamed() && u.as_path().is_none()),
            "{mode:?}: the sender of a datagram from an unbound Unix socket: expected an unnamed \
             Unix address, got {:?}",
            c.peer
        );
    }
    drop(w);
    drop(unbound);
    drop(dir);
    fds.check();
}

#[test]
fn a_datagram_from_an_unbound_unix_socket_has_an_unnamed_sender_inline() {
    unix_datagram_from_an_unbound_sender(Mode::Inline);
}

#[test]
fn a_datagram_from_an_unbound_unix_socket_has_an_unnamed_sender_background() {
    unix_datagram_from_an_unbound_sender(Mode::Background);
}

/// A Unix socket path of the longest length the system takes: 108 bytes on
/// Linux, filling `sun_path` with no NUL after it (std's `bind` refuses
/// it; rustix's, which `listen_unix` uses, takes it).
fn longest_unix_path(dir: &TempDir) -> std::path::PathBuf {
    let taken = dir.path().as_os_str().len() + 1;
    assert!(
        taken < 100,
        "temporary directory too deep: {}",
        dir.path().display()
    );
    let path = dir.path().join("p".repeat(108 - taken));
    assert_eq!(path.as_os_str().len(), 108);
    path
}

/// A datagram from a sender bound to a path of the longest length: the
/// kernel reports its address one byte longer than `sockaddr_un` (the NUL
/// it adds after a full `sun_path`), which must come back as that path,
/// not as a panic on the thread running the I/O.
fn unix_datagram_from_a_longest_path(mode: Mode) {
    use std::os::fd::OwnedFd;
    let fds = util::FdCheck::new();
    let dir = TempDir::new("long");
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let server_path = dir.path().join("server.sock");
    let server = UnixDatagram::bind(&server_path).expect("bind the server");
    let conn = w.watch(server).expect("watch a Unix datagram socket");
    let sender_path = longest_unix_path(&dir);
    let sender: OwnedFd = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .expect("a Unix datagram socket");
    rustix::net::bind(
        &sender,
        &rustix::net::SocketAddrUnix::new(sender_path.as_path()).unwrap(),
    )
    .expect("bind the sender to the longest path");
    let sender = UnixDatagram::from(sender);
    sender.send_to(b"from far away", &server_path).unwrap();
    sender.send_to(b"into swap", &server_path).unwrap();
    w.recv_from(conn, 1, vec![0; 64]).expect("recv_from");
    w.recv_from_swap(conn, 2).expect("recv_from_swap");
    let done = util::wait_for(&mut w, 2, LIMIT);
    assert_eq!(done.len(), 2);
    for (c, want) in done.iter().zip([&b"from far away"[..], b"into swap"]) {
        assert_eq!(c.op, Op::RecvFrom);
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        assert_eq!(c.data(), want);
        assert_eq!(unix_path_of(&c.peer), sender_path.as_path(), "{mode:?}");
    }
    drop(w);
    drop(sender);
    drop(dir);
    fds.check();
}

#[test]
fn a_datagram_from_a_sender_bound_to_the_longest_path_names_it_inline() {
    unix_datagram_from_a_longest_path(Mode::Inline);
}

#[test]
fn a_datagram_from_a_sender_bound_to_the_longest_path_names_it_background() {
    unix_datagram_from_a_longest_path(Mode::Background);
}

// ----- 6. misuse and empty datagrams -------------------------------------------

/// What a refused request looks like: at submission from the inline owner,
/// as a completion otherwise. Returns the error and the buffer handed back.
fn refusal(
    w: &mut Watcher<u64, Vec<u8>>,
    submitted: Result<(), gaio::Rejected<u64, Vec<u8>>>,
    via_submitter: bool,
    op: Op,
    ctx: u64,
) -> (Error, Option<Vec<u8>>) {
    if w.mode() == Mode::Inline && !via_submitter {
        let r = submitted.expect_err("refused at submission");
        assert_eq!(r.context, ctx);
        (r.error, r.buffer)
    } else {
        submitted.expect("accepted for the engine to refuse");
        let c = next(w);
        assert_eq!((c.op, c.context), (op, ctx));
        assert_eq!(c.bytes, 0);
        (c.error.unwrap(), c.buffer.into_user())
    }
}

fn not_supported(mode: Mode, via_submitter: bool) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let mut sub = w.submitter();
    let udp = udp_socket();
    let udp_addr = udp.local_addr().unwrap();
    let dgram = w.watch(udp).expect("watch UDP");
    let (tcp_peer, server) = util::tcp_pair();
    let stream = w.watch(server).expect("watch TCP");

    let r = if via_submitter {
        sub.read_full(dgram, 1, vec![1; 8])
    } else {
        w.read_full(dgram, 1, vec![1; 8])
    };
    let (e, buf) = refusal(&mut w, r, via_submitter, Op::ReadFull, 1);
    assert!(
        matches!(e, Error::NotSupported { op: Op::ReadFull }),
        "read_full on UDP: {e:?}"
    );
    assert_eq!(buf, Some(vec![1; 8]));

    let r = if via_submitter {
        sub.shutdown(dgram, 2)
    } else {
        w.shutdown(dgram, 2)
    };
    let (e, buf) = refusal(&mut w, r, via_submitter, Op::Shutdown, 2);
    assert!(
        matches!(e, Error::NotSupported { op: Op::Shutdown }),
        "shutdown on UDP: {e:?}"
    );
    assert_eq!(buf, None);

    let r = if via_submitter {
        sub.send_to(stream, 3, b"datagram".to_vec(), udp_addr)
    } else {
        w.send_to(stream, 3, b"datagram".to_vec(), udp_addr)
    };
    let (e, buf) = refusal(&mut w, r, via_submitter, Op::SendTo, 3);
    assert!(
        matches!(e, Error::NotSupported { op: Op::SendTo }),
        "send_to on TCP: {e:?}"
    );
    assert_eq!(buf, Some(b"datagram".to_vec()));

    let r = if via_submitter {
        sub.recv_from(stream, 4, vec![4; 8])
    } else {
        w.recv_from(stream, 4, vec![4; 8])
    };
    let (e, buf) = refusal(&mut w, r, via_submitter, Op::RecvFrom, 4);
    assert!(
        matches!(e, Error::NotSupported { op: Op::RecvFrom }),
        "recv_from on TCP: {e:?}"
    );
    assert_eq!(buf, Some(vec![4; 8]));

    // Both connections still work.
    w.send_to(dgram, 5, b"still fine".to_vec(), udp_addr)
        .expect("send_to");
    w.recv_from(dgram, 6, vec![0; 32]).expect("recv_from");
    let done = util::wait_for(&mut w, 2, LIMIT);
    assert_eq!(done.len(), 2);
    for c in &done {
        assert!(c.error.is_none(), "{:?}: {:?}", c.op, c.error);
    }
    let recv = done.iter().find(|c| c.op == Op::RecvFrom).unwrap();
    assert_eq!(recv.data(), b"still fine");
    assert_eq!(recv.peer, Some(PeerAddr::from(udp_addr)));
    drop(sub);
    drop(w);
    drop(tcp_peer);
    fds.check();
}

#[test]
fn stream_only_and_datagram_only_operations_are_refused_inline() {
    not_supported(Mode::Inline, false);
}

#[test]
fn stream_only_and_datagram_only_operations_are_refused_through_a_submitter() {
    not_supported(Mode::Inline, true);
}

#[test]
fn stream_only_and_datagram_only_operations_are_refused_background() {
    not_supported(Mode::Background, false);
}

/// An empty datagram sent with `send_to` arrives empty; one received is a
/// completion of 0 bytes without error (not end of stream), and the socket
/// goes on receiving.
fn empty_datagrams(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
    let server = udp_socket();
    let server_addr = server.local_addr().unwrap();
    let conn = w.watch(server).expect("watch");
    let peer = udp_socket();
    let peer_addr = peer.local_addr().unwrap();

    w.send_to(conn, 1, Vec::new(), peer_addr)
        .expect("an empty datagram is a datagram");
    let c = next(&mut w);
    assert_eq!(c.op, Op::SendTo);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.bytes, 0);
    assert_eq!(c.peer, Some(PeerAddr::from(peer_addr)));
    let mut buf = [9u8; 16];
    let (n, from) = peer.recv_from(&mut buf).expect("the empty datagram arrives");
    assert_eq!((n, from), (0, server_addr));

    peer.send_to(b"", server_addr).unwrap();
    peer.send_to(b"", server_addr).unwrap();
    peer.send_to(b"after the empty ones", server_addr).unwrap();
    w.recv_from(conn, 2, vec![0; 64]).expect("recv_from");
    w.recv_from_swap(conn, 3).expect("recv_from_swap");
    w.recv_from(conn, 4, vec![0; 64]).expect("recv_from");
    let done = util::wait_for(&mut w, 3, LIMIT);
    assert_eq!(done.len(), 3);
    for c in &done[..2] {
        assert_eq!(c.op, Op::RecvFrom);
        assert!(
            c.error.is_none(),
            "an empty datagram is not end of stream: {:?}",
            c.error
        );
        assert_eq!(c.bytes, 0);
        assert_eq!(c.peer, Some(PeerAddr::from(peer_addr)));
    }
    assert_eq!(done[0].context, 2);
    assert_eq!(done[1].buffer, Buffer::Swap(Bytes::new()));
    assert_eq!(done[2].context, 4);
    assert!(done[2].error.is_none(), "{:?}", done[2].error);
    assert_eq!(done[2].data(), b"after the empty ones");
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn empty_datagrams_are_sent_and_received_as_empty_not_eof_inline() {
    empty_datagrams(Mode::Inline);
}

#[test]
fn empty_datagrams_are_sent_and_received_as_empty_not_eof_background() {
    empty_datagrams(Mode::Background);
}

/// The kind check goes by the socket: a TCP stream handed over as a plain
/// descriptor is a stream socket, so a datagram-only operation is refused
/// and `read_full` is not.
#[test]
fn a_tcp_stream_handed_over_as_a_descriptor_is_still_a_stream() {
    let _lock = util::shared();
    let mut w: Watcher<u64, Vec<u8>> = util::watcher(Mode::Inline);
    let (mut peer, server) = util::tcp_pair();
    let conn = w.watch(std::os::fd::OwnedFd::from(server)).expect("watch");
    let r = w
        .recv_from_swap(conn, 1)
        .expect_err("recv_from_swap on TCP is refused");
    assert!(
        matches!(r.error, Error::NotSupported { op: Op::RecvFrom }),
        "{:?}",
        r.error
    );
    std::io::Write::write_all(&mut peer, b"0123").unwrap();
    w.read_full(conn, 2, vec![0; 4]).expect("read_full on TCP");
    let c = next(&mut w);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.data(), b"0123");
}

/// `close` closes every socket before it returns, a datagram socket with a
/// receive pending included: its port is free at once. (On io_uring the
/// receive waits on a poll, which holds the socket open until it ends;
/// the cancel once waited for the ring's next turn, which a closed
/// watcher never has, so the port stayed taken.)
#[test]
fn close_frees_a_datagram_socket_with_a_receive_pending() {
    let _lock = util::shared();
    for mode in [Mode::Inline, Mode::Background] {
        let sock = udp_socket();
        let addr = sock.local_addr().unwrap();
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(sock).unwrap();
        w.recv_from(conn, 1, vec![0; 64]).unwrap();
        util::expect_quiet(&mut w, Duration::from_millis(20));
        w.close();
        let mut out = Vec::new();
        let _ = w.wait_io(&mut out);
        assert_eq!(out.len(), 1, "{mode:?}: the pending receive comes back");
        assert!(
            matches!(out[0].error, Some(Error::WatcherClosed)),
            "{mode:?}: {:?}",
            out[0].error
        );
        // The watcher is not dropped: only `close` freed the port.
        let again = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("{mode:?}: {addr} still taken: {e}"));
        drop((again, w));
    }
}

// ----- 7. a burst to many sockets against the smallest swap limit --------------

/// Server sockets, each with a receive pending when the burst comes.
const BURST_SOCKETS: usize = 300;
/// Client sockets: each talks to `BURST_SOCKETS / BURST_CLIENTS` servers,
/// few enough that their echoes fit its receive buffer (no loss).
const BURST_CLIENTS: usize = 10;

/// Datagram of round `round` to server `i`: 100 to 1,000 bytes.
fn burst_datagram(round: usize, i: usize) -> Vec<u8> {
    util::pattern(
        ((round as u64) << 32) | i as u64,
        100 + (i * 37 + round * 11) % 901,
    )
}

/// 300 sockets wait for a datagram each (swap receives, so on io_uring
/// each is a ring receive that takes a buffer only when its datagram
/// arrives), then the datagrams come at once: more than the smallest swap
/// limit's ring has buffers to start with (64, at most 96), so receives
/// find it empty and wait for buffers to come back. Every datagram
/// arrives with its sender, is echoed with `send_to` (on io_uring, sent on
/// the ring: hundreds of requests are in flight) and comes back whole.
/// Two rounds: the second finds buffers made by the first.
fn burst_to_many_sockets(mode: Mode) {
    util::raise_nofile(2_000);
    let fds = util::FdCheck::new();
    let mut w: Watcher<usize, Bytes> = gaio::Builder::new()
        .mode(mode)
        .swap_size(1024)
        .swap_limit(gaio::MIN_SWAP_LIMIT)
        .build()
        .expect("create watcher");
    let servers: Vec<UdpSocket> = (0..BURST_SOCKETS).map(|_| udp_socket()).collect();
    let server_addrs: Vec<SocketAddr> = servers.iter().map(|s| s.local_addr().unwrap()).collect();
    let conns: Vec<gaio::Conn> = servers.into_iter().map(|s| w.watch(s).unwrap()).collect();
    let clients: Vec<UdpSocket> = (0..BURST_CLIENTS).map(|_| udp_socket()).collect();
    let client_of = |i: usize| i % BURST_CLIENTS;
    for round in 0..2 {
        for (i, &conn) in conns.iter().enumerate() {
            w.recv_from_swap(conn, i).unwrap();
        }
        // Every receive is waiting before the first datagram is sent.
        util::expect_quiet(&mut w, Duration::from_millis(20));
        for (i, addr) in server_addrs.iter().enumerate() {
            let sent = clients[client_of(i)]
                .send_to(&burst_datagram(round, i), addr)
                .unwrap();
            assert_eq!(sent, burst_datagram(round, i).len());
        }
        let (mut received, mut echoed) = (0, 0);
        let end = Instant::now() + Duration::from_secs(20);
        while echoed < BURST_SOCKETS {
            assert!(
                Instant::now() < end,
                "{mode:?} round {round}: {received} received, {echoed} echoed"
            );
            for c in util::wait_for(&mut w, 1, LIMIT) {
                let i = c.context;
                if let Some(e) = &c.error {
                    panic!("{mode:?} round {round}: socket {i}: {:?} failed: {e}", c.op);
                }
                match (c.op, c.buffer) {
                    (Op::RecvFrom, Buffer::Swap(data)) => {
                        assert_eq!(&data[..], &burst_datagram(round, i)[..], "{mode:?} socket {i}");
                        let from = inet(&c.peer);
                        assert_eq!(from, clients[client_of(i)].local_addr().unwrap());
                        received += 1;
                        w.send_to(conns[i], i, data, PeerAddr::from(from)).unwrap();
                    }
                    (Op::SendTo, _) => {
                        assert_eq!(c.bytes, burst_datagram(round, i).len(), "{mode:?} socket {i}");
                        echoed += 1;
                    }
                    (op, _) => panic!("{mode:?}: unexpected {op:?}"),
                }
            }
        }
        for (k, client) in clients.iter().enumerate() {
            let mut expected: Vec<(SocketAddr, Vec<u8>)> = (k..BURST_SOCKETS)
                .step_by(BURST_CLIENTS)
                .map(|i| (server_addrs[i], burst_datagram(round, i)))
                .collect();
            let mut buf = [0u8; 2048];
            while !expected.is_empty() {
                let (n, from) = client
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("{mode:?} round {round}: client {k}: {e}"));
                let at = expected
                    .iter()
                    .position(|(addr, bytes)| *addr == from && bytes[..] == buf[..n])
                    .unwrap_or_else(|| panic!("{mode:?}: client {k}: an echo from {from} not expected"));
                expected.swap_remove(at);
            }
        }
    }
    drop((w, clients));
    fds.check();
}

#[test]
fn a_burst_to_300_sockets_under_the_smallest_swap_limit_loses_no_datagram_inline() {
    let _lock = util::exclusive();
    burst_to_many_sockets(Mode::Inline);
}

#[test]
fn a_burst_to_300_sockets_under_the_smallest_swap_limit_loses_no_datagram_background() {
    let _lock = util::exclusive();
    burst_to_many_sockets(Mode::Background);
}

// ----- 8. a datagram send that has to wait --------------------------------------

/// Datagram sockets are watched for writability only once a send has to
/// wait (registered without `EPOLLOUT` on epoll, without `EVFILT_WRITE` on
/// kqueue, which would wake the watcher after every datagram sent). Sends to a Unix datagram peer that
/// does not read fill its queue and wait; once the peer reads, every one
/// of them completes, and the peer gets them all, in order, whole.
fn sends_that_wait(mode: Mode) {
    const SENDS: usize = 2_000;
    let fds = util::FdCheck::new();
    let (ours, peer) = UnixDatagram::pair().unwrap();
    peer.set_read_timeout(Some(PEER_WAIT)).unwrap();
    let mut w: Watcher<usize, Vec<u8>> = util::watcher(mode);
    let conn = w.watch(ours).unwrap();
    let datagram = |i: usize| util::pattern(0xD6_0000 + i as u64, 1000);
    for i in 0..SENDS {
        w.write(conn, i, datagram(i)).unwrap();
    }
    // The peer's queue holds far fewer: the rest wait.
    let mut done = Vec::new();
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        let now = Instant::now();
        w.wait_io_timeout(&mut done, end - now).unwrap();
    }
    assert!(
        done.len() < SENDS,
        "{mode:?}: every send completed with nobody reading"
    );
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for i in 0..SENDS {
            let n = peer
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i}: {e}"));
            assert_eq!(&buf[..n], &datagram(i)[..], "datagram {i}");
        }
        peer
    });
    let end = Instant::now() + LIMIT;
    while done.len() < SENDS {
        let now = Instant::now();
        assert!(now < end, "{mode:?}: {} of {SENDS} sends completed", done.len());
        w.wait_io_timeout(&mut done, end - now).unwrap();
    }
    for (k, c) in done.iter().enumerate() {
        assert_eq!((c.op, c.context), (Op::Write, k), "{mode:?}: in order");
        assert!(c.error.is_none(), "{mode:?}: send {k}: {:?}", c.error);
        assert_eq!(c.bytes, 1000);
    }
    let peer = reader.join().expect("the peer read every datagram");
    drop((w, peer));
    fds.check();
}

#[test]
fn datagram_sends_that_wait_complete_once_the_peer_reads_inline() {
    sends_that_wait(Mode::Inline);
}

#[test]
fn datagram_sends_that_wait_complete_once_the_peer_reads_background() {
    sends_that_wait(Mode::Background);
}
