//! The socket after the hand-over: `Watcher::socket` reads addresses and
//! changes options on the owning thread (inline mode), and
//! `AcceptOptions` applies keep-alive and buffer sizes to every accepted
//! connection (both modes; checked on the descriptor a `detach` hands
//! back).

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use gaio::{AcceptOptions, Mode, Op, PeerAddr, Submit, Watcher};
use rustix::net::sockopt;

const LIMIT: Duration = Duration::from_secs(8);

#[test]
fn socket_gives_addresses_and_options_of_a_watched_connection() {
    let _lock = util::shared();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(Mode::Inline);
    let (peer, server) = util::tcp_pair();
    let conn = w.watch(server).unwrap();
    let socket = w.socket(conn).expect("a watched connection, inline mode");
    assert_eq!(
        socket.peer_addr().unwrap(),
        PeerAddr::from(peer.local_addr().unwrap())
    );
    assert_eq!(
        socket.local_addr().unwrap(),
        PeerAddr::from(peer.peer_addr().unwrap())
    );

    socket.set_nodelay(true).unwrap();
    assert!(socket.nodelay().unwrap());
    socket.set_nodelay(false).unwrap();
    assert!(!socket.nodelay().unwrap());
    socket.set_keepalive(true).unwrap();
    assert!(socket.keepalive().unwrap());
    let before = socket.send_buffer_size().unwrap();
    socket.set_send_buffer_size(before / 4).unwrap();
    assert!(socket.send_buffer_size().unwrap() < before, "SO_SNDBUF unchanged");
    let before = socket.recv_buffer_size().unwrap();
    socket.set_recv_buffer_size(before / 4).unwrap();
    assert!(socket.recv_buffer_size().unwrap() < before, "SO_RCVBUF unchanged");

    // The connection still works after its options changed.
    w.write(conn, 1, b"still here".to_vec()).unwrap();
    let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
    assert!(c.error.is_none(), "{:?}", c.error);
    let mut peer = peer;
    util::peer::timeouts(&peer);
    let mut got = [0u8; 10];
    std::io::Read::read_exact(&mut peer, &mut got).unwrap();
    assert_eq!(&got, b"still here");
    peer.write_all(b"x").unwrap();
}

#[test]
fn socket_is_none_for_freed_foreign_and_background_connections() {
    let _lock = util::shared();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(Mode::Inline);
    let (_peer, server) = util::tcp_pair();
    let conn = w.watch(server).unwrap();
    assert!(w.socket(conn).is_some());
    w.free(conn).unwrap();
    assert!(w.socket(conn).is_none(), "a freed connection's socket");

    // A handle from another watcher, even with a descriptor number this
    // one holds, is not this watcher's.
    let mut other: Watcher<u32, Vec<u8>> = util::watcher(Mode::Inline);
    let (_p2, s2) = util::tcp_pair();
    let theirs = other.watch(s2).unwrap();
    assert!(w.socket(theirs).is_none(), "another watcher's connection");

    // Background mode: the socket belongs to the I/O thread.
    let mut bg: Watcher<u32, Vec<u8>> = util::watcher(Mode::Background);
    let (_p3, s3) = util::tcp_pair();
    let c3 = bg.watch(s3).unwrap();
    assert!(bg.socket(c3).is_none(), "background mode gives no socket");
}

#[test]
fn socket_of_a_listener_gives_its_bound_address() {
    let _lock = util::shared();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(Mode::Inline);
    let listener = gaio::listen("127.0.0.1:0").unwrap();
    let bound = listener.local_addr().unwrap();
    let listener = w.watch_listener(listener).unwrap();
    let addr = w.socket(listener.conn()).unwrap().local_addr().unwrap();
    assert_eq!(addr.as_inet(), Some(bound));
}

/// Accepts one connection from a client of `addr` with `options`, detaches
/// it and returns its descriptor and the client.
fn accept_and_detach(mode: Mode, options: AcceptOptions) -> (OwnedFd, TcpStream) {
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let listener = gaio::listen("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let listener = w.watch_listener_with(listener, options).unwrap();
    w.accept(listener, 1).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
    assert_eq!(c.op, Op::Accept);
    assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
    assert_eq!(
        c.peer.and_then(|p| p.as_inet()),
        Some(client.local_addr().unwrap())
    );
    w.detach(c.conn, 2).unwrap();
    let mut d = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
    assert_eq!(d.op, Op::Detach);
    (d.detached.take().expect("the detached socket"), client)
}

#[test]
fn accept_options_reach_every_accepted_connection() {
    let _lock = util::shared();
    for mode in util::MODES {
        // The system's defaults first, to compare with.
        let (plain, _c) = accept_and_detach(mode, AcceptOptions::new().nodelay(false));
        assert!(!sockopt::socket_keepalive(&plain).unwrap(), "{mode:?}");
        let default_snd = sockopt::socket_send_buffer_size(&plain).unwrap();
        let default_rcv = sockopt::socket_recv_buffer_size(&plain).unwrap();

        let options = AcceptOptions::new()
            .keepalive(true)
            .send_buffer_size(default_snd / 4)
            .recv_buffer_size(default_rcv / 4);
        let (tuned, _c) = accept_and_detach(mode, options);
        assert!(
            sockopt::tcp_nodelay(&tuned).unwrap(),
            "{mode:?}: TCP_NODELAY (the default)"
        );
        assert!(
            sockopt::socket_keepalive(&tuned).unwrap(),
            "{mode:?}: SO_KEEPALIVE"
        );
        let snd = sockopt::socket_send_buffer_size(&tuned).unwrap();
        let rcv = sockopt::socket_recv_buffer_size(&tuned).unwrap();
        assert!(
            snd < default_snd,
            "{mode:?}: SO_SNDBUF {snd}, default {default_snd}"
        );
        assert!(
            rcv < default_rcv,
            "{mode:?}: SO_RCVBUF {rcv}, default {default_rcv}"
        );
    }
}
