//! `accept_multishot`: one request accepts every connection, each
//! completion carrying a clone of its context, until the listener is
//! freed, the watcher closes, or its deadline passes; in both modes.

mod util;
use util::peer::timeouts;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Error, Op, PeerAddr, Request, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(20);

/// A context that allocates: each completion must get its own copy.
type Ctx = String;

#[test]
fn one_multishot_accept_takes_a_burst_of_500_and_every_one_is_served() {
    const CLIENTS: usize = 500;
    let fds = util::FdCheck::new();
    util::raise_nofile(4 * CLIENTS as u64 + 256);
    for mode in util::MODES {
        let mut w: Watcher<Ctx, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).unwrap();
        w.accept_multishot(listener, "listener".to_string()).unwrap();
        util::expect_quiet(&mut w, Duration::from_millis(20));
        let clients = thread::spawn(move || {
            let mut streams: Vec<TcpStream> = (0..CLIENTS)
                .map(|_| {
                    let s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
                    timeouts(&s);
                    s
                })
                .collect();
            for (i, s) in streams.iter_mut().enumerate() {
                s.write_all(&(i as u32).to_le_bytes()).unwrap();
            }
            for (i, s) in streams.iter_mut().enumerate() {
                let mut back = [0; 4];
                s.read_exact(&mut back).unwrap();
                assert_eq!(u32::from_le_bytes(back), i as u32, "client {i}");
            }
            streams
                .iter()
                .map(|s| s.local_addr().unwrap())
                .collect::<Vec<_>>()
        });
        let (mut peers, mut echoed, mut batch) = (Vec::new(), 0, Vec::new());
        let end = Instant::now() + LIMIT;
        while echoed < CLIENTS {
            assert!(
                Instant::now() < end,
                "{mode:?}: {} accepted, {echoed} echoed",
                peers.len()
            );
            w.wait_io_timeout(&mut batch, Duration::from_millis(100)).unwrap();
            for c in batch.drain(..) {
                match c.op {
                    Op::Accept => {
                        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
                        assert_eq!(c.context, "listener");
                        assert_ne!(c.conn, listener.conn());
                        match c.peer {
                            Some(PeerAddr::Inet(a)) => peers.push(a),
                            other => panic!("{other:?}"),
                        }
                        w.read_full(c.conn, "read".to_string(), vec![0; 4]).unwrap();
                    }
                    Op::ReadFull => {
                        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
                        let buf = c.buffer.into_user().unwrap();
                        w.write(c.conn, "write".to_string(), buf).unwrap();
                    }
                    Op::Write => {
                        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
                        echoed += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let mut addrs: Vec<SocketAddr> = clients.join().unwrap();
        addrs.sort_unstable();
        peers.sort_unstable();
        assert_eq!(peers, addrs, "{mode:?}: each client accepted once");
        // Still pending: one more client is accepted too.
        let late = TcpStream::connect(addr).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(
            (c.op, c.error.is_none(), c.context.as_str()),
            (Op::Accept, true, "listener")
        );
        drop(late);
    }
    fds.check();
}

#[test]
fn freeing_the_listener_ends_it_with_one_completion_and_later_accepts_follow() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<Ctx, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).unwrap();
        w.accept_multishot(listener, "multi".to_string()).unwrap();
        w.accept(listener, "single".to_string()).unwrap();
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let done = util::wait_for(&mut w, 3, LIMIT);
        for c in &done {
            assert_eq!(
                (c.op, c.error.is_none(), c.context.as_str()),
                (Op::Accept, true, "multi"),
                "{mode:?}"
            );
        }
        util::expect_quiet(&mut w, Duration::from_millis(30));
        w.free(listener.conn()).unwrap();
        let ended = util::wait_for(&mut w, 2, LIMIT);
        let ends: Vec<(&str, bool)> = ended
            .iter()
            .map(|c| (c.context.as_str(), matches!(c.error, Some(Error::ConnClosed))))
            .collect();
        assert_eq!(ends, [("multi", true), ("single", true)], "{mode:?}");
        util::expect_quiet(&mut w, Duration::from_millis(30));
        drop(clients);
    }
    fds.check();
}

#[test]
fn a_deadline_ends_it_and_closing_the_watcher_ends_it() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<Ctx, Vec<u8>> = util::watcher(mode);
        let tcp = gaio::listen("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = w.watch_listener(tcp).unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        w.submit(Request::accept_multishot(listener, "until".to_string()).deadline(deadline))
            .unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(
            (c.error.is_none(), c.context.as_str()),
            (true, "until"),
            "{mode:?}"
        );
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: {:?}",
            c.error
        );
        assert!(Instant::now() >= deadline);
        drop(client);

        w.accept_multishot(listener, "until close".to_string()).unwrap();
        w.close();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, "until close");
        assert!(
            matches!(c.error, Some(Error::WatcherClosed)),
            "{mode:?}: {:?}",
            c.error
        );
    }
    fds.check();
}
