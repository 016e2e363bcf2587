//! `close_gracefully`: listeners and datagram sockets close at once, each
//! stream connection is half-closed once its queued writes are out, and the
//! watcher closes once every connection is freed or when the timeout
//! passes; `next_batch` ends the loop. A connection freed meanwhile
//! lingers until its client closes, so a client still sending gets every
//! response, not a reset. Both modes, called on the watcher and through a
//! `Submitter` from another thread.

mod util;
use util::peer::timeouts;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Completion, Error, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(20);

/// Runs a completion loop like a server's until `next_batch` says the
/// watcher closed: frees a connection on any error, does nothing else.
/// Returns every completion seen.
fn run_to_close(w: &mut Watcher<u32, Vec<u8>>) -> Vec<Completion<u32, Vec<u8>>> {
    let (mut seen, mut batch) = (Vec::new(), Vec::new());
    let end = Instant::now() + LIMIT;
    while w.next_batch(&mut batch).unwrap() {
        assert!(Instant::now() < end, "the watcher did not close");
        for c in batch.drain(..) {
            if c.error.is_some() && c.op != Op::Accept {
                w.free(c.conn).unwrap();
            }
            seen.push(c);
        }
    }
    // Over for good.
    assert!(!w.next_batch(&mut batch).unwrap());
    assert!(w.is_closed());
    seen
}

fn error_of(seen: &[Completion<u32, Vec<u8>>], ctx: u32) -> String {
    let c = seen
        .iter()
        .find(|c| c.context == ctx)
        .unwrap_or_else(|| panic!("no completion {ctx}"));
    format!("{:?}", c.error)
}

#[test]
fn responses_go_out_then_half_close_then_the_watcher_closes_when_clients_leave() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        for from_another_thread in [false, true] {
            let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
            let tcp = gaio::listen("127.0.0.1:0").unwrap();
            let addr = tcp.local_addr().unwrap();
            let listener = w.watch_listener(tcp).unwrap();
            w.accept_multishot(listener, 1).unwrap();
            let mut idle = TcpStream::connect(addr).unwrap();
            let mut busy = TcpStream::connect(addr).unwrap();
            let accepted = util::wait_for(&mut w, 2, LIMIT);
            let conns: Vec<_> = accepted.iter().map(|c| c.conn).collect();
            let (idle_conn, busy_conn) = if accepted[0].peer == Some(idle.local_addr().unwrap().into()) {
                (conns[0], conns[1])
            } else {
                (conns[1], conns[0])
            };
            w.read(idle_conn, 10, vec![0; 64]).unwrap();
            w.read(busy_conn, 20, vec![0; 64]).unwrap();
            // More than the socket buffers hold: still queued at the close.
            let big = util::pattern(7, 8 << 20);
            w.write(busy_conn, 21, big.clone()).unwrap();
            w.write(busy_conn, 22, Vec::new()).unwrap();
            util::expect_quiet(&mut w, Duration::from_millis(30));

            let t = Instant::now();
            if from_another_thread {
                let mut s = w.submitter();
                thread::spawn(move || s.close_gracefully(LIMIT)).join().unwrap();
            } else {
                w.close_gracefully(LIMIT);
            }
            // The clients: the idle one sees end of stream at once and
            // closes; the busy one reads every byte, then end of stream.
            for s in [&idle, &busy] {
                timeouts(s);
            }
            let clients = thread::spawn(move || {
                let mut rest = Vec::new();
                idle.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty());
                drop(idle);
                let mut got = Vec::new();
                busy.read_to_end(&mut got).unwrap();
                drop(busy);
                got
            });
            let seen = run_to_close(&mut w);
            let took = t.elapsed();
            let got = clients.join().unwrap();
            assert!(
                got == big,
                "{mode:?}: the queued write did not arrive whole ({} bytes)",
                got.len()
            );
            assert!(
                took < LIMIT / 2,
                "{mode:?}: closed after {took:?}, not when the clients left"
            );
            // The multishot accept ended when the listener closed; the
            // writes completed; the reads ended with the clients' close.
            assert_eq!(error_of(&seen, 1), "Some(ConnClosed)", "{mode:?}");
            assert_eq!(error_of(&seen, 21), "None", "{mode:?}");
            assert_eq!(error_of(&seen, 22), "None", "{mode:?}");
            assert_eq!(error_of(&seen, 10), "Some(Eof)", "{mode:?}");
            assert_eq!(error_of(&seen, 20), "Some(Eof)", "{mode:?}");
            // New clients are refused.
            let refused = TcpStream::connect(addr).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{mode:?}");
        }
    }
    fds.check();
}

/// A client still sending when the close begins, and a loop that answers
/// each read with a write and frees a connection on its first error (the
/// write refused with `BrokenPipe` after the half-close): the client reads
/// every byte written before the half-close, then end of stream, never a
/// reset; the watcher closes once the client has closed. Freed at once,
/// the socket was closed with the client's bytes unread, and the kernel
/// reset the connection and dropped what was left of the 8 MiB write.
#[test]
fn a_connection_freed_while_its_client_still_sends_delivers_every_response() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (client, server) = util::tcp_pair();
        timeouts(&client);
        let conn = w.watch(server).unwrap();
        // More than the socket buffers hold: still queued at the close.
        let big = util::pattern(9, 8 << 20);
        w.write(conn, 1, big.clone()).unwrap();
        w.read(conn, 2, vec![0; 4096]).unwrap();
        let mut writer = client.try_clone().unwrap();
        let sending = thread::spawn(move || {
            let chunk = [7u8; 16 * 1024];
            let mut sent = 0usize;
            // Until the client shuts its socket down (bounded all the same).
            while sent < 1 << 30 && writer.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
        });
        let mut reader = client.try_clone().unwrap();
        let receiving = thread::spawn(move || {
            let mut got = Vec::new();
            let read = reader.read_to_end(&mut got);
            // Done reading: close, which ends the writer too.
            let _ = reader.shutdown(Shutdown::Both);
            (read, got)
        });
        let t = Instant::now();
        w.close_gracefully(LIMIT);
        let mut batch = Vec::new();
        while w.next_batch(&mut batch).unwrap() {
            assert!(t.elapsed() < LIMIT, "{mode:?}: the watcher did not close");
            for c in batch.drain(..) {
                match (c.op, &c.error) {
                    (Op::Read, None) => {
                        w.write(c.conn, 3, b"!".to_vec()).unwrap();
                        w.read(c.conn, 2, vec![0; 4096]).unwrap();
                    }
                    (_, Some(_)) => w.free(c.conn).unwrap(),
                    _ => {}
                }
            }
        }
        let took = t.elapsed();
        let (read, got) = receiving.join().unwrap();
        sending.join().unwrap();
        drop(client);
        if let Err(e) = read {
            panic!(
                "{mode:?}: the client's read failed after {} bytes: {e}",
                got.len()
            );
        }
        assert!(
            got.len() >= big.len(),
            "{mode:?}: {} of the {} bytes written",
            got.len(),
            big.len()
        );
        assert!(
            got[..big.len()] == big[..],
            "{mode:?}: the big write arrived changed"
        );
        assert!(
            got[big.len()..].iter().all(|&b| b == b'!'),
            "{mode:?}: bytes after the big write that no write sent"
        );
        assert!(
            took < LIMIT / 2,
            "{mode:?}: closed after {took:?}, not when the client left"
        );
    }
    fds.check();
}

#[test]
fn a_client_that_never_closes_holds_it_only_until_the_timeout() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (client, server) = util::tcp_pair();
        timeouts(&client);
        let conn = w.watch(server).unwrap();
        w.read(conn, 5, vec![0; 16]).unwrap();
        let timeout = Duration::from_millis(300);
        let t = Instant::now();
        w.close_gracefully(timeout);
        let seen = run_to_close(&mut w);
        let took = t.elapsed();
        assert!(took >= timeout && took < LIMIT, "{mode:?}: closed after {took:?}");
        // The pending read ended with the watcher.
        assert_eq!(error_of(&seen, 5), "Some(WatcherClosed)", "{mode:?}");
        // The client saw the half-close, then the close.
        let mut rest = Vec::new();
        (&client).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    fds.check();
}

#[test]
fn datagram_sockets_close_at_once_and_an_empty_watcher_closes_at_once() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let conn = w.watch(udp).unwrap();
        w.recv_from(conn, 3, vec![0; 64]).unwrap();
        let t = Instant::now();
        w.close_gracefully(LIMIT);
        let seen = run_to_close(&mut w);
        assert!(t.elapsed() < LIMIT / 2, "{mode:?}");
        assert_eq!(error_of(&seen, 3), "Some(ConnClosed)", "{mode:?}");
        // Later calls do nothing.
        w.close_gracefully(LIMIT);
        w.close();
        let mut batch = Vec::new();
        assert!(!w.next_batch(&mut batch).unwrap());
        assert!(matches!(w.wait_io(&mut batch), Err(Error::WatcherClosed)));
    }
    fds.check();
}

#[test]
fn freeing_the_last_connection_closes_the_watcher_at_once() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (client, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        w.read(conn, 8, vec![0; 16]).unwrap();
        // Idle long enough that the engine holds no burst memory (it would
        // wake to give it back, hiding a missed close).
        util::expect_quiet(&mut w, Duration::from_millis(300));
        w.close_gracefully(LIMIT);
        drop(client); // the peer closes on seeing the half-close
        let t = Instant::now();
        let seen = run_to_close(&mut w);
        let took = t.elapsed();
        assert_eq!(error_of(&seen, 8), "Some(Eof)", "{mode:?}");
        assert!(
            took < Duration::from_secs(2),
            "{mode:?}: closed {took:?} after the last free"
        );
    }
    fds.check();
}

/// What another thread submitted through a `Submitter` before the owner's
/// `close_gracefully` is part of what the close lets finish: a write
/// queued on a connection goes out before its half-close, and a listener
/// handed over is closed at once like every other listener. In inline mode
/// the owner's call looked only at the connections the engine had taken
/// in, not at the commands still queued: the connection was half-closed at
/// once (the peer read end of stream, the write then failed with a broken
/// pipe) and the listener, taken in afterwards, kept accepting until the
/// timeout (found by review).
#[test]
fn requests_a_submitter_queued_before_the_close_are_part_of_it() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (client, server) = util::tcp_pair();
        timeouts(&client);
        let conn = w.watch(server).unwrap();
        w.read(conn, 30, vec![0; 16]).unwrap();
        let tcp = gaio::listen("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let data = util::pattern(3, 1000);
        let mut s = w.submitter();
        let sent = data.clone();
        thread::spawn(move || {
            s.write(conn, 31, sent).unwrap();
            let listener = s.watch_listener(tcp).unwrap();
            s.accept_multishot(listener, 32).unwrap();
        })
        .join()
        .unwrap();
        let timeout = Duration::from_secs(5);
        let t = Instant::now();
        w.close_gracefully(timeout);
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            let read = (&client).read_to_end(&mut got);
            drop(client); // the peer closes on seeing the half-close
            (read.map_err(|e| e.kind()), got)
        });
        let seen = run_to_close(&mut w);
        let took = t.elapsed();
        let (read, got) = reader.join().unwrap();
        assert_eq!(read, Ok(data.len()), "{mode:?}");
        assert!(
            got == data,
            "{mode:?}: the peer read {} bytes, not the write queued before the close",
            got.len()
        );
        assert_eq!(error_of(&seen, 31), "None", "{mode:?}");
        assert_eq!(error_of(&seen, 32), "Some(ConnClosed)", "{mode:?}");
        assert_eq!(error_of(&seen, 30), "Some(Eof)", "{mode:?}");
        assert!(
            took < timeout / 2,
            "{mode:?}: closed after {took:?}, not when the last connection left"
        );
        let refused = TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{mode:?}");
    }
    fds.check();
}
