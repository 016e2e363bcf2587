//! Deadlines that cut I/O short, over and over, while data keeps moving:
//! the races a completion backend has between a request's end and its
//! cancellation. On io_uring a read the kernel finished while its deadline
//! fired must deliver its bytes, and a write cut by its deadline must
//! report exactly what the kernel sent; on the readiness backends the same
//! holds trivially. Either way, the bytes a peer sends arrive once, in
//! order, and the peer receives exactly the bytes reported written.

mod util;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Error, Mode, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(20);

/// A deterministic small-number generator for chunk sizes and deadlines.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// The one completion of the one request pending.
fn next_completion<C>(
    w: &mut Watcher<C>,
    batch: &mut Vec<gaio::Completion<C, Vec<u8>>>,
) -> gaio::Completion<C, Vec<u8>> {
    loop {
        w.wait_io_timeout(batch, LIMIT).unwrap();
        if let Some(c) = batch.pop() {
            assert!(batch.is_empty(), "one request at a time");
            return c;
        }
    }
}

/// The peer sends `total` bytes in small chunks with short pauses; the
/// server reads them with 1 KiB reads whose deadlines are 0–2 ms away, so
/// that many reads end by their deadline, some just as data arrives. The
/// bytes the reads delivered, in completion order, are the bytes sent.
fn reads_cut_by_deadlines(mode: Mode) {
    const TOTAL: usize = 2 << 20;
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let sent = util::pattern(7, TOTAL);
    let to_send = sent.clone();
    let sender = thread::spawn(move || {
        let mut steps = Steps(1);
        let mut at = 0;
        while at < to_send.len() {
            let n = (1 + steps.next(3000) as usize).min(to_send.len() - at);
            peer.write_all(&to_send[at..at + n]).unwrap();
            at += n;
            if steps.next(4) == 0 {
                thread::sleep(Duration::from_micros(steps.next(1500)));
            }
        }
        peer
    });

    let mut w: Watcher<u32> = util::watcher(mode);
    let conn = w.watch(server).unwrap();
    let mut steps = Steps(2);
    let mut got = Vec::with_capacity(TOTAL);
    let mut deadlines = 0;
    let end = Instant::now() + LIMIT;
    let mut batch = Vec::new();
    while got.len() < TOTAL {
        assert!(
            Instant::now() < end,
            "{mode:?}: read {} of {TOTAL} bytes",
            got.len()
        );
        let deadline = Instant::now() + Duration::from_micros(steps.next(2000));
        w.read_timeout(conn, 0, vec![0; 1024], deadline).unwrap();
        let c = next_completion(&mut w, &mut batch);
        assert_eq!(c.op, Op::Read);
        match c.error {
            None => {
                assert!(c.bytes > 0, "{mode:?}: a read of nothing");
                got.extend_from_slice(c.data());
            }
            Some(Error::Deadline) => {
                // A read that timed out took nothing: its bytes, if the
                // kernel had any, came back as a success instead.
                assert_eq!(c.bytes, 0, "{mode:?}: a timed-out read reports bytes");
                deadlines += 1;
            }
            other => panic!("{mode:?}: read ended with {other:?}"),
        }
    }
    let _peer = sender.join().unwrap();
    assert!(got == sent, "{mode:?}: the bytes read differ from the bytes sent");
    assert!(
        deadlines > 0,
        "{mode:?}: no read ever timed out: the race was not run"
    );
    eprintln!("{mode:?} on {}: {deadlines} reads timed out", w.backend());
    util::expect_quiet(&mut w, Duration::from_millis(20));
}

#[test]
fn reads_cut_by_deadlines_lose_and_repeat_no_byte() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        reads_cut_by_deadlines(mode);
    }
    fds.check();
}

/// The server writes 256 KiB chunks with deadlines 0–600 µs away to a
/// peer that reads slowly, so that many writes are cut by their deadline
/// part way. The peer receives, in order, exactly the bytes each write reported
/// written (a prefix of each chunk).
fn writes_cut_by_deadlines(mode: Mode) {
    const CHUNK: usize = 256 << 10;
    const WRITES: u64 = 100;
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let reader = thread::spawn(move || {
        let mut steps = Steps(3);
        let mut all = Vec::new();
        let mut buf = vec![0; 16 << 10];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) => panic!("peer read: {e}"),
            }
            if steps.next(2) == 0 {
                thread::sleep(Duration::from_micros(steps.next(400)));
            }
        }
    });

    let mut w: Watcher<u64> = util::watcher(mode);
    let conn = w.watch(server).unwrap();
    let mut steps = Steps(4);
    let mut expected = Vec::new();
    let mut cut = 0;
    let mut batch = Vec::new();
    for i in 0..WRITES {
        let chunk = util::pattern(100 + i, CHUNK);
        let deadline = Instant::now() + Duration::from_micros(steps.next(600));
        w.write_timeout(conn, i, chunk.clone(), deadline).unwrap();
        let c = next_completion(&mut w, &mut batch);
        assert_eq!((c.op, c.context), (Op::Write, i));
        match c.error {
            None => assert_eq!(c.bytes, CHUNK, "{mode:?}: write {i}"),
            Some(Error::Deadline) => {
                assert!(c.bytes < CHUNK, "{mode:?}: write {i} timed out whole");
                cut += 1;
            }
            ref other => panic!("{mode:?}: write {i} ended with {other:?}"),
        }
        expected.extend_from_slice(&chunk[..c.bytes]);
    }
    w.free(conn).unwrap();
    util::expect_quiet(&mut w, Duration::from_millis(20));
    let received = reader.join().unwrap();
    assert_eq!(received.len(), expected.len(), "{mode:?}: bytes received");
    assert!(
        received == expected,
        "{mode:?}: the peer got other bytes than reported"
    );
    assert!(cut > 0, "{mode:?}: no write was cut: the race was not run");
    eprintln!("{mode:?} on {}: {cut} of {WRITES} writes cut", w.backend());
}

#[test]
fn writes_cut_by_deadlines_report_exactly_what_was_sent() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        writes_cut_by_deadlines(mode);
    }
    fds.check();
}
