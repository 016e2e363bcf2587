//! Deadlines: reads and writes that time out, never early and not much
//! late; many deadlines at once; a new earliest deadline shortening a wait
//! already under way; completed requests that must not time out later;
//! deadlines already past at submission; queued requests timing out in order.

mod util;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Conn, Error, Mode, Op, Submit, Watcher};

const MIB: usize = 1024 * 1024;
/// A completion may be reported this much before its deadline (clock
/// granularity), never more.
const EARLY: Duration = Duration::from_millis(1);
/// How late a deadline completion may be on a loaded two-core machine.
const LATE: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Client sockets never block forever.
fn client_timeouts(s: &TcpStream, t: Duration) {
    s.set_read_timeout(Some(t)).unwrap();
    s.set_write_timeout(Some(t)).unwrap();
}

/// Asserts `at` lies in `[deadline - EARLY, deadline + LATE)`.
fn assert_on_time(what: &str, at: Instant, deadline: Instant) {
    assert!(
        at + EARLY >= deadline,
        "{what}: completed {:?} before its deadline",
        deadline - at
    );
    assert!(
        at < deadline + LATE,
        "{what}: completed {:?} after its deadline",
        at - deadline
    );
}

/// Asserts the client receives nothing (more) within `quiet`.
fn assert_nothing_to_read(s: &mut TcpStream, quiet: Duration, what: &str) {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => panic!("{what}: peer received {n} unexpected bytes: {:?}", &b[..n]),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{what}: {e}"
        ),
    }
}

// ----- 6. read on an idle connection ----------------------------------------

/// A read with a deadline on a connection that gets no data completes with
/// `Deadline`, no bytes and its buffer back untouched, at the deadline; a
/// swap read likewise. The connection stays usable afterwards.
#[test]
fn read_timeout_on_idle_connection() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        client_timeouts(&client, Duration::from_secs(10));
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        let marker = util::pattern(6, 64);

        let deadline = Instant::now() + ms(300);
        w.read_timeout(conn, 60, marker.clone(), deadline).unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(5));
        let at = Instant::now();
        assert_eq!(got.len(), 1, "{mode:?}");
        let c = &got[0];
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: {:?}",
            c.error
        );
        assert_eq!(
            (c.op, c.conn, c.context, c.bytes),
            (Op::Read, conn, 60, 0),
            "{mode:?}"
        );
        assert!(c.data().is_empty());
        assert!(
            matches!(&c.buffer, Buffer::User(b) if *b == marker),
            "{mode:?}: buffer not handed back untouched"
        );
        assert_on_time(&format!("{mode:?} read"), at, deadline);

        let deadline = Instant::now() + ms(200);
        w.read_swap_timeout(conn, 61, deadline).unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(5));
        let at = Instant::now();
        assert_eq!(got.len(), 1, "{mode:?}");
        let c = &got[0];
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: {:?}",
            c.error
        );
        assert_eq!(
            (c.op, c.conn, c.context, c.bytes),
            (Op::Read, conn, 61, 0),
            "{mode:?}"
        );
        assert!(matches!(&c.buffer, Buffer::Swap(b) if b.is_empty()), "{mode:?}");
        assert_on_time(&format!("{mode:?} swap read"), at, deadline);

        // Timing out did not disturb the connection.
        client.write_all(b"after the deadline").unwrap();
        w.read(conn, 62, vec![0; 64]).unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(5));
        assert_eq!(got.len(), 1);
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        assert_eq!(got[0].context, 62);
        assert_eq!(got[0].data(), b"after the deadline");
        util::expect_quiet(&mut w, ms(50));
        drop(w);
        assert_eq!(
            client.read(&mut [0; 8]).unwrap(),
            0,
            "{mode:?}: watcher closed the socket"
        );
    }
    fds.check();
}

// ----- 7. write to a peer that never reads ------------------------------------

/// A 64 MiB write to a peer that does not read stalls once the socket
/// buffers are full; at its deadline it completes with `Deadline` and the
/// bytes written so far. Exactly those bytes, the pattern's prefix, reach
/// the peer and nothing else.
#[test]
fn write_timeout_to_peer_that_never_reads() {
    const LEN: usize = 64 * MIB;
    let fds = util::FdCheck::new();
    let pat = util::pattern(7, LEN);
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        client_timeouts(&client, Duration::from_secs(10));
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        // Copied before the deadline is set: on a loaded machine, copying
        // 64 MiB can take longer than the deadline gives.
        let buf = pat.clone();
        let deadline = Instant::now() + ms(300);
        w.write_timeout(conn, 70, buf, deadline).unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(5));
        let at = Instant::now();
        assert_eq!(got.len(), 1, "{mode:?}");
        let c = &got[0];
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: {:?}",
            c.error
        );
        assert_eq!((c.op, c.conn, c.context), (Op::Write, conn, 70), "{mode:?}");
        assert_on_time(&format!("{mode:?} write"), at, deadline);
        let written = c.bytes;
        assert!(
            written > 0 && written < LEN,
            "{mode:?}: wrote {written} of {LEN} bytes"
        );
        assert!(
            matches!(&c.buffer, Buffer::User(b) if *b == pat),
            "{mode:?}: buffer changed"
        );
        assert!(c.data() == &pat[..written]);
        util::expect_quiet(&mut w, ms(50));

        // Closing the server end: the peer drains exactly the bytes written,
        // then end of stream.
        w.free(conn).unwrap();
        let mut received = Vec::with_capacity(written);
        client.read_to_end(&mut received).unwrap();
        assert_eq!(
            received.len(),
            written,
            "{mode:?}: peer got a different byte count"
        );
        assert!(
            received == pat[..written],
            "{mode:?}: peer got other bytes than written"
        );
        util::expect_quiet(&mut w, ms(20));
        eprintln!("{mode:?}: {written} of {LEN} bytes written before the deadline");
    }
    fds.check();
}

// ----- 8. many idle connections ----------------------------------------------

/// `n` idle connections, each with one read whose deadline lies between 200
/// and 500 ms ahead: exactly `n` `Deadline` completions, one per connection,
/// each on time, and nothing after.
fn many_idle_deadlines(n: usize) {
    let fds = util::FdCheck::new();
    let need = 2 * n as u64 + 64;
    let limit = util::raise_nofile(need);
    assert!(
        limit >= need,
        "RLIMIT_NOFILE {limit} is too low for {n} connections"
    );
    for mode in util::MODES {
        let started = Instant::now();
        let pairs = util::tcp_pairs(n);
        let (clients, servers): (Vec<TcpStream>, Vec<TcpStream>) = pairs.into_iter().unzip();
        let mut w: Watcher<u64> = util::watcher(mode);
        let conns: Vec<Conn> = servers.into_iter().map(|s| w.watch(s).unwrap()).collect();
        let base = Instant::now();
        let deadlines: Vec<Instant> = (0..n).map(|i| base + ms(200 + (i as u64 * 7) % 300)).collect();
        for (i, &conn) in conns.iter().enumerate() {
            w.read_timeout(conn, i as u64, vec![i as u8; 8], deadlines[i])
                .unwrap();
        }

        let mut seen = HashSet::new();
        let end = Instant::now() + Duration::from_secs(15);
        while seen.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{mode:?}: {} of {n} deadlines", seen.len());
            let batch = util::wait_for(&mut w, 1, left);
            let at = Instant::now();
            for c in batch {
                let i = c.context as usize;
                assert!(i < n, "{mode:?}: unknown context {i}");
                assert!(seen.insert(i), "{mode:?}: conn {i} completed twice");
                assert_eq!(
                    (c.op, c.conn, c.bytes),
                    (Op::Read, conns[i], 0),
                    "{mode:?}: conn {i}"
                );
                assert!(
                    matches!(c.error, Some(Error::Deadline)),
                    "{mode:?}: conn {i}: {:?}",
                    c.error
                );
                assert!(
                    matches!(&c.buffer, Buffer::User(b) if *b == [i as u8; 8]),
                    "{mode:?}: conn {i}: buffer"
                );
                assert!(at + EARLY >= deadlines[i], "{mode:?}: conn {i} timed out early");
                assert!(
                    at < deadlines[i] + Duration::from_secs(2),
                    "{mode:?}: conn {i} timed out late"
                );
            }
        }
        assert_eq!(seen.len(), n);
        util::expect_quiet(&mut w, ms(300));
        drop(w);
        drop(clients);
        eprintln!("{mode:?}: {n} deadlines in {:?}", started.elapsed());
    }
    fds.check();
}

#[test]
fn idle_read_deadlines_1k_connections() {
    let _lock = util::exclusive();
    many_idle_deadlines(1000);
}

#[test]
fn idle_read_deadlines_2k_connections() {
    let _lock = util::exclusive();
    many_idle_deadlines(2000);
}

#[test]
fn idle_read_deadlines_4k_connections() {
    let _lock = util::exclusive();
    many_idle_deadlines(4000);
}

#[test]
fn idle_read_deadlines_8k_connections() {
    let _lock = util::exclusive();
    many_idle_deadlines(8000);
}

// ----- 9. an earlier deadline shortens a wait under way -----------------------

/// Read B's deadline `+100ms` arrives while the engine already sleeps
/// towards read A's `+5s`: B must time out on time, A must stay pending.
/// `from_thread`: B is submitted through a `Submitter` while `wait_io`
/// blocks; otherwise from the owning thread before `wait_io`.
fn earlier_deadline_rearms(mode: Mode, from_thread: bool) {
    let what = format!("{mode:?} from_thread={from_thread}");
    let (ca, sa) = util::tcp_pair();
    let (cb, sb) = util::tcp_pair();
    let mut w: Watcher<u64> = util::watcher(mode);
    let a = w.watch(sa).unwrap();
    let b = w.watch(sb).unwrap();
    w.read_timeout(a, 1, vec![0; 8], Instant::now() + Duration::from_secs(5))
        .unwrap();

    let (got, deadline_b) = if from_thread {
        let mut sub = w.submitter();
        let t = thread::spawn(move || {
            // Let `wait_io` block on A's deadline first.
            thread::sleep(ms(200));
            let deadline = Instant::now() + ms(100);
            sub.read_timeout(b, 2, vec![0; 8], deadline).unwrap();
            deadline
        });
        let got = util::wait_for(&mut w, 1, Duration::from_secs(3));
        (got, t.join().unwrap())
    } else {
        // In background mode the engine thread is asleep on A's deadline
        // by now; inline, the deadline is known before `wait_io` sleeps.
        thread::sleep(ms(50));
        let deadline = Instant::now() + ms(100);
        w.read_timeout(b, 2, vec![0; 8], deadline).unwrap();
        (util::wait_for(&mut w, 1, Duration::from_secs(3)), deadline)
    };
    let at = Instant::now();
    assert_eq!(got.len(), 1, "{what}");
    assert_eq!((got[0].conn, got[0].context), (b, 2), "{what}: not B");
    assert!(
        matches!(got[0].error, Some(Error::Deadline)),
        "{what}: {:?}",
        got[0].error
    );
    assert_on_time(&what, at, deadline_b);

    // A is still pending: freeing its connection completes it now.
    util::expect_quiet(&mut w, ms(100));
    w.free(a).unwrap();
    let got = util::wait_for(&mut w, 1, Duration::from_secs(2));
    assert_eq!(got.len(), 1, "{what}");
    assert_eq!((got[0].conn, got[0].context), (a, 1), "{what}");
    assert!(
        matches!(got[0].error, Some(Error::ConnClosed)),
        "{what}: {:?}",
        got[0].error
    );
    drop(w);
    drop((ca, cb));
}

#[test]
fn earlier_deadline_submitted_before_wait_rearms() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        earlier_deadline_rearms(mode, false);
    }
    fds.check();
}

#[test]
fn earlier_deadline_submitted_during_wait_rearms() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        earlier_deadline_rearms(mode, true);
    }
    fds.check();
}

// ----- 10. completed requests do not time out later ---------------------------

/// Requests with a deadline that complete before it (data already there,
/// data arriving later, a small write) report success once, and nothing
/// comes after their deadline has passed.
#[test]
fn completed_request_never_times_out_later() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        client_timeouts(&client, Duration::from_secs(10));
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        // Data already waiting.
        client.write_all(b"ready").unwrap();
        thread::sleep(ms(20));
        let deadline = Instant::now() + ms(200);
        w.read_timeout(conn, 1, vec![0; 64], deadline).unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(2));
        assert!(
            Instant::now() < deadline,
            "{mode:?}: read took until its deadline"
        );
        assert_eq!(got.len(), 1);
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        assert_eq!((got[0].op, got[0].context), (Op::Read, 1));
        assert_eq!(got[0].data(), b"ready");

        // Data arriving after submission, before the deadline.
        let deadline = Instant::now() + ms(200);
        w.read_timeout(conn, 2, vec![0; 64], deadline).unwrap();
        let mut late = client.try_clone().unwrap();
        let t = thread::spawn(move || {
            thread::sleep(ms(50));
            late.write_all(b"later").unwrap();
        });
        let got = util::wait_for(&mut w, 1, Duration::from_secs(2));
        assert!(
            Instant::now() < deadline,
            "{mode:?}: read took until its deadline"
        );
        t.join().unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        assert_eq!((got[0].op, got[0].context), (Op::Read, 2));
        assert_eq!(got[0].data(), b"later");

        // A small write.
        let deadline = Instant::now() + ms(200);
        w.write_timeout(conn, 3, util::pattern(10, 1024), deadline)
            .unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(2));
        assert!(
            Instant::now() < deadline,
            "{mode:?}: write took until its deadline"
        );
        assert_eq!(got.len(), 1);
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        assert_eq!((got[0].op, got[0].context, got[0].bytes), (Op::Write, 3, 1024));
        let mut echo = vec![0; 1024];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(echo, util::pattern(10, 1024));

        // Well past all three deadlines: nothing more.
        util::expect_quiet(&mut w, ms(500));
        drop(w);
    }
    fds.check();
}

// ----- 11. deadline already past -----------------------------------------------

/// Requests whose deadline has passed at submission complete at once with
/// `Deadline` and do no I/O: the data waiting stays for the next read, and
/// the write's bytes never reach the peer.
#[test]
fn past_deadline_completes_at_once_without_io() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        client_timeouts(&client, Duration::from_secs(10));
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        client.write_all(b"hello").unwrap();
        thread::sleep(ms(20));

        let submitted = Instant::now();
        let past = submitted.checked_sub(ms(1)).unwrap();
        w.read_timeout(conn, 1, vec![7; 16], past).unwrap();
        w.read_swap_timeout(conn, 2, Instant::now()).unwrap();
        w.read_full_timeout(conn, 3, vec![8; 5], past).unwrap();
        w.write_timeout(conn, 4, b"never".to_vec(), past).unwrap();
        let mut got = util::wait_for(&mut w, 4, Duration::from_secs(2));
        assert!(submitted.elapsed() < ms(500), "{mode:?}: not at once");
        assert_eq!(got.len(), 4, "{mode:?}");
        got.sort_by_key(|c| c.context);
        for c in &got {
            assert!(
                matches!(c.error, Some(Error::Deadline)),
                "{mode:?}: {} {:?}",
                c.context,
                c.error
            );
            assert_eq!((c.conn, c.bytes), (conn, 0), "{mode:?}: {}", c.context);
        }
        assert_eq!(
            got.iter().map(|c| c.op).collect::<Vec<_>>(),
            [Op::Read, Op::Read, Op::ReadFull, Op::Write]
        );
        assert!(matches!(&got[0].buffer, Buffer::User(b) if *b == [7; 16]));
        assert!(matches!(&got[1].buffer, Buffer::Swap(b) if b.is_empty()));
        assert!(matches!(&got[2].buffer, Buffer::User(b) if *b == [8; 5]));
        assert!(matches!(&got[3].buffer, Buffer::User(b) if b == b"never"));

        // The data is still there; only the later write reaches the peer.
        w.read(conn, 5, vec![0; 16]).unwrap();
        w.write(conn, 6, b"later".to_vec()).unwrap();
        let mut got = util::wait_for(&mut w, 2, Duration::from_secs(2));
        got.sort_by_key(|c| c.context);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|c| c.error.is_none()), "{mode:?}");
        assert_eq!(got[0].data(), b"hello", "{mode:?}: waiting data was consumed");
        assert_eq!((got[1].op, got[1].bytes), (Op::Write, 5));
        let mut echo = [0; 5];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"later", "{mode:?}: the timed-out write sent bytes");
        assert_nothing_to_read(&mut client, ms(100), &format!("{mode:?}"));
        util::expect_quiet(&mut w, ms(20));
        drop(w);
    }
    fds.check();
}

// ----- 12. queued requests time out in order -----------------------------------

/// Three reads queued on one idle connection with deadlines 100, 200 and
/// 300 ms ahead complete with `Deadline` in that order, each on time; the
/// connection then reads normally.
#[test]
fn queued_reads_time_out_in_order() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        let base = Instant::now();
        let deadlines = [base + ms(100), base + ms(200), base + ms(300)];
        for (i, &d) in deadlines.iter().enumerate() {
            w.read_timeout(conn, i as u64, vec![i as u8; 4], d).unwrap();
        }
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        while got.len() < 3 {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{mode:?}: {} of 3", got.len());
            let batch = util::wait_for(&mut w, 1, left);
            let at = Instant::now();
            got.extend(batch.into_iter().map(|c| (c, at)));
        }
        assert_eq!(got.len(), 3, "{mode:?}");
        for (k, (c, at)) in got.iter().enumerate() {
            assert_eq!(c.context, k as u64, "{mode:?}: out of order");
            assert!(
                matches!(c.error, Some(Error::Deadline)),
                "{mode:?}: {k}: {:?}",
                c.error
            );
            assert_eq!((c.op, c.conn, c.bytes), (Op::Read, conn, 0));
            assert!(matches!(&c.buffer, Buffer::User(b) if *b == [k as u8; 4]));
            assert_on_time(&format!("{mode:?} read {k}"), *at, deadlines[k]);
        }
        assert!(
            got[0].1 < got[1].1 && got[1].1 < got[2].1,
            "{mode:?}: not one by one"
        );

        client.write_all(b"fine").unwrap();
        w.read(conn, 9, vec![0; 16]).unwrap();
        let got = util::wait_for(&mut w, 1, Duration::from_secs(2));
        assert_eq!(got.len(), 1);
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        assert_eq!((got[0].context, got[0].data()), (9, &b"fine"[..]));
        drop(w);
    }
    fds.check();
}
