//! Submissions and hand-overs racing `close` from another thread: each one
//! is either accepted and later completed (or its socket closed), or
//! refused with everything it carried handed back. Nothing is accepted and
//! then lost.

mod util;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Completion, Error, Mode, Op, Submit, Watcher};

/// Rounds per mode: each round races one close against one submitting
/// thread; the window is a few instructions wide, so it takes many.
const ROUNDS: u64 = 300;
const LIMIT: Duration = Duration::from_secs(5);
/// Threads submitting at once: more runnable threads than this machine's
/// two cores, so one is often preempted inside a submission.
const SUBMITTERS: usize = 3;
/// Submissions per thread before it waits for the close (and then makes
/// one more, which must be refused).
const MAX_SUBMISSIONS: u64 = 2_000;

/// Spins for about `micros` microseconds, to vary where the close lands.
fn spin(micros: u64) {
    let end = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Collects completions, in the order they come, until `wait_io` says the
/// watcher is closed.
fn completions_until_closed(w: &mut Watcher<u64, Vec<u8>>, mode: Mode) -> Vec<Completion<u64, Vec<u8>>> {
    let end = Instant::now() + LIMIT;
    let (mut all, mut out) = (Vec::new(), Vec::new());
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{mode:?}: wait_io never reported the watcher closed"
        );
        match w.wait_io_timeout(&mut out, left) {
            Ok(_) => all.append(&mut out),
            Err(Error::WatcherClosed) => return all,
            Err(e) => panic!("{mode:?}: wait_io failed: {e}"),
        }
    }
}

/// [`completions_until_closed`]'s contexts, checking each arrives once.
fn drain_until_closed(w: &mut Watcher<u64, Vec<u8>>, mode: Mode) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    for c in completions_until_closed(w, mode) {
        assert!(seen.insert(c.context), "context {} completed twice", c.context);
    }
    seen
}

fn submissions_racing_close(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut lost_rounds = Vec::new();
    for round in 0..ROUNDS {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let (_client, server) = util::tcp_pair();
        let conn = w.watch(server).expect("watch");
        let start = Arc::new(Barrier::new(SUBMITTERS + 1));
        let submitters: Vec<_> = (0..SUBMITTERS as u64)
            .map(|t| {
                let mut sub = w.submitter();
                let go = Arc::clone(&start);
                thread::spawn(move || submit_until_refused(&mut sub, conn, &go, (round << 32) | (t << 28)))
            })
            .collect();
        start.wait();
        spin(round % 40);
        w.close();
        let completed = drain_until_closed(&mut w, mode);
        let mut accepted = BTreeSet::new();
        for s in submitters {
            accepted.extend(s.join().expect("submitter"));
        }
        let lost: Vec<u64> = accepted.difference(&completed).copied().collect();
        let extra: Vec<u64> = completed.difference(&accepted).copied().collect();
        assert!(
            extra.is_empty(),
            "round {round}: completions never accepted: {extra:?}"
        );
        if !lost.is_empty() {
            lost_rounds.push((round, lost.len()));
        }
    }
    assert!(
        lost_rounds.is_empty(),
        "{mode:?}: accepted requests never completed in {} of {ROUNDS} rounds (round, lost): {lost_rounds:?}",
        lost_rounds.len()
    );
    fds.check();
}

/// Submits reads and writes with contexts `base + i` until one is
/// refused; checks the refusal hands everything back; returns the
/// contexts accepted.
fn submit_until_refused(
    sub: &mut gaio::Submitter<u64, Vec<u8>>,
    conn: gaio::Conn,
    start: &Barrier,
    base: u64,
) -> Vec<u64> {
    let mut accepted = Vec::new();
    start.wait();
    let end = Instant::now() + LIMIT;
    for i in 0.. {
        assert!(Instant::now() < end, "submissions never refused after close");
        if i >= MAX_SUBMISSIONS {
            // Enough for the race (the close lands within microseconds of
            // the start); wait for it rather than pile up requests.
            std::thread::yield_now();
            if !sub.is_closed() {
                continue;
            }
        }
        let ctx = base + i;
        // Reads stay pending (the peer sends nothing); writes of one
        // byte complete. Both must come back exactly once.
        let result = if i % 2 == 0 {
            sub.read(conn, ctx, vec![0; 8])
        } else {
            sub.write(conn, ctx, vec![i as u8])
        };
        match result {
            Ok(()) => accepted.push(ctx),
            Err(refused) => {
                assert!(
                    matches!(refused.error, Error::WatcherClosed),
                    "refused with {:?}",
                    refused.error
                );
                assert_eq!(refused.context, ctx, "the refusal lost the context");
                let want = if i % 2 == 0 { vec![0; 8] } else { vec![i as u8] };
                assert_eq!(refused.buffer, Some(want), "the refusal lost the buffer");
                return accepted;
            }
        }
    }
    unreachable!()
}

#[test]
fn a_request_racing_close_is_completed_or_refused_inline() {
    submissions_racing_close(Mode::Inline);
}

#[test]
fn a_request_racing_close_is_completed_or_refused_background() {
    submissions_racing_close(Mode::Background);
}

/// Hands sockets over from another thread while the owner closes: after
/// `close` returns and the handing thread is done, the peer of every socket
/// (accepted or refused) sees end of stream.
fn watches_racing_close(mode: Mode) {
    const PER_ROUND: usize = 8;
    let fds = util::FdCheck::new();
    let mut open_after_close = 0;
    for round in 0..ROUNDS {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let (clients, mut servers): (Vec<TcpStream>, Vec<TcpStream>) =
            util::tcp_pairs(PER_ROUND).into_iter().unzip();
        let start = Arc::new(Barrier::new(3));
        let handing: Vec<_> = [servers.split_off(PER_ROUND / 2), servers]
            .into_iter()
            .map(|mine| {
                let mut sub = w.submitter();
                let go = Arc::clone(&start);
                thread::spawn(move || {
                    go.wait();
                    for s in mine {
                        match sub.watch(s) {
                            Ok(_) | Err(Error::WatcherClosed) => {}
                            Err(e) => panic!("watch failed: {e}"),
                        }
                    }
                })
            })
            .collect();
        start.wait();
        spin(round % 100);
        w.close();
        for h in handing {
            h.join().expect("handing thread");
        }
        for mut c in clients {
            c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut buf = [0u8; 8];
            match c.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => panic!("peer read {n} unexpected bytes"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    open_after_close += 1
                }
                Err(e) => panic!("peer read failed: {e}"),
            }
        }
        drop(w);
    }
    assert_eq!(
        open_after_close, 0,
        "{mode:?}: sockets left open after close (peer saw no end of stream)"
    );
    fds.check();
}

#[test]
fn a_watch_racing_close_never_leaves_the_socket_open_inline() {
    watches_racing_close(Mode::Inline);
}

#[test]
fn a_watch_racing_close_never_leaves_the_socket_open_background() {
    watches_racing_close(Mode::Background);
}

/// The owning thread's requests keep their order on a connection when a
/// close from another thread comes between them. Reads 1 and 2 are pending
/// on a connection (and a write 3 that completed) when a `Submitter`
/// closes the watcher; the owner, not yet told, submits read 4 and write
/// 5 on the same connection, which complete with `WatcherClosed` in a
/// later batch (`Watcher::submit`). They must come after 1, 2 and 3:
/// reads 1, 2, 4 and writes 3, 5 in submission order. The watcher handed
/// out 4 and 5 first, before the engine had even shut down and completed
/// 1 and 2 (found by review).
#[test]
fn requests_after_a_close_from_elsewhere_complete_after_those_before() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let (client, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        w.read(conn, 1, vec![0; 16]).unwrap();
        w.read(conn, 2, vec![0; 16]).unwrap();
        w.write(conn, 3, b"x".to_vec()).unwrap();
        let mut s = w.submitter();
        thread::spawn(move || s.close()).join().unwrap();
        w.read(conn, 4, vec![0; 16]).unwrap();
        w.write(conn, 5, b"y".to_vec()).unwrap();
        let order: Vec<u64> = completions_until_closed(&mut w, mode)
            .iter()
            .map(|c| c.context)
            .collect();
        let reads: Vec<u64> = order.iter().copied().filter(|c| [1, 2, 4].contains(c)).collect();
        let writes: Vec<u64> = order.iter().copied().filter(|c| [3, 5].contains(c)).collect();
        assert_eq!(reads, [1, 2, 4], "{mode:?}: reads out of order (all: {order:?})");
        assert_eq!(writes, [3, 5], "{mode:?}: writes out of order (all: {order:?})");
        drop(client);
    }
    fds.check();
}

/// A connect and a `send_to` submitted by the owner after a close from
/// another thread (the owner not yet told) complete with `WatcherClosed`
/// carrying the address each request carried, as every completion of a
/// connect or a `send_to` does, and the datagram's buffer; a refused
/// submission (once the owner has been told) hands the address back in
/// `Rejected::peer`. Both used to say `peer: None`.
#[test]
fn a_connect_and_a_send_to_refused_by_a_close_keep_their_address() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = w.watch(socket).unwrap();
        let dial: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let dest: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let mut s = w.submitter();
        thread::spawn(move || s.close()).join().unwrap();
        w.connect(dial, 1).unwrap();
        w.send_to(udp, 2, b"datagram".to_vec(), dest).unwrap();
        let late = completions_until_closed(&mut w, mode);
        // Each completes with `WatcherClosed`, carrying its address.
        let closed = |context: u64, op: Op| {
            let c = late.iter().find(|c| c.context == context);
            let c = c.unwrap_or_else(|| panic!("{mode:?}: {op:?} did not complete"));
            assert_eq!(c.op, op, "{mode:?}");
            assert!(
                matches!(c.error, Some(Error::WatcherClosed)),
                "{mode:?}: {:?}",
                c.error
            );
            c
        };
        assert_eq!(
            closed(1, Op::Connect).peer,
            Some(dial.into()),
            "{mode:?}: the connect's address"
        );
        let sent = closed(2, Op::SendTo);
        assert_eq!(sent.peer, Some(dest.into()), "{mode:?}: the send_to's address");
        assert_eq!(sent.bytes, 0, "{mode:?}");
        assert_eq!(sent.data(), b"", "{mode:?}: nothing sent");
        assert!(
            matches!(&sent.buffer, gaio::Buffer::User(b) if b == b"datagram"),
            "{mode:?}: the datagram's buffer comes back"
        );
        // Told now: a submission is refused, and hands everything back.
        let refused = w.send_to(udp, 3, b"again".to_vec(), dest).unwrap_err();
        assert!(
            matches!(refused.error, Error::WatcherClosed),
            "{mode:?}: {:?}",
            refused.error
        );
        assert_eq!(
            (refused.context, refused.buffer.as_deref()),
            (3, Some(&b"again"[..]))
        );
        assert_eq!(refused.peer, Some(dest.into()), "{mode:?}");
        let refused = w.connect(dial, 4).unwrap_err();
        assert_eq!(
            (refused.context, refused.peer),
            (4, Some(dial.into())),
            "{mode:?}"
        );
        assert!(refused.buffer.is_none());
    }
    fds.check();
}

/// A hand-over by the owner after a close from another thread (the owner
/// not yet told) succeeds with a handle that names no connection: the
/// socket is closed (its peer sees the end of the stream), requests on the
/// handle complete with `WatcherClosed` in the next batch, freeing it does
/// nothing, and the loop ends through `next_batch`. So a server stopped by
/// a signal while it starts (`watch_listener(...)?` before its loop) stops
/// cleanly; the proxy example exited with status 1 there (CI, session 15).
/// Once the owner has been told, a hand-over is refused.
#[test]
fn a_hand_over_after_a_close_from_elsewhere_ends_through_the_batch() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let mut s = w.submitter();
        thread::spawn(move || s.close()).join().unwrap();
        let listener = gaio::listen("127.0.0.1:0").unwrap();
        let listener = w
            .watch_listener(listener)
            .expect("not refused: the owner was not told");
        w.accept(listener, 1).unwrap();
        let (mut client, server) = util::tcp_pair();
        let conn = w.watch(server).expect("not refused: the owner was not told");
        w.read(conn, 2, vec![0; 8]).unwrap();
        w.free(conn).unwrap();
        client.set_read_timeout(Some(LIMIT)).unwrap();
        assert_eq!(
            client.read(&mut [0; 8]).unwrap(),
            0,
            "{mode:?}: the socket was closed"
        );
        let mut map = gaio::ConnMap::new();
        map.insert(conn, "state");
        assert_eq!(map.get(conn), Some(&"state"), "a handle like any other");
        let late = completions_until_closed(&mut w, mode);
        let ended: Vec<(u64, Op, bool)> = late
            .iter()
            .map(|c| (c.context, c.op, matches!(c.error, Some(Error::WatcherClosed))))
            .collect();
        assert_eq!(ended, [(1, Op::Accept, true), (2, Op::Read, true)], "{mode:?}");
        let (_client, server) = util::tcp_pair();
        assert!(
            matches!(w.watch(server), Err(Error::WatcherClosed)),
            "{mode:?}: told, the watcher refuses"
        );
    }
    fds.check();
}
