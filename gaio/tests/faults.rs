//! Faults and ordering: broken pipes without SIGPIPE, half-close, resets,
//! end of stream inside `read_full`, FIFO order of queued requests, and a
//! thousand threads submitting at once.
//!
//! Descriptor counting and the SIGPIPE disposition are process-wide: every
//! test holds the test lock exclusively (through its `FdCheck`), see
//! `util`.

mod util;
use util::peer::{is_pipe_or_reset, os_error, reset_on_close, timeouts};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Error, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(150);

// ----- 12. closed peer, no SIGPIPE ------------------------------------------------

#[test]
fn write_to_closed_peer_fails_without_sigpipe() {
    let fds = util::FdCheck::new();
    // A SIGPIPE would now kill this process instead of being ignored.
    util::sigpipe_default();
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        drop(client);

        let mut failed = None;
        for i in 0..200 {
            let chunk = util::pattern(u64::from(i), 1024);
            w.write(conn, i, chunk.clone()).unwrap();
            let mut c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
            assert_eq!((c.context, c.op), (i, Op::Write));
            assert!(matches!(&c.buffer, Buffer::User(b) if *b == chunk));
            if c.error.is_some() {
                failed = Some(c);
                break;
            }
            // Until the reset arrives, writes are taken whole.
            assert_eq!(c.result().unwrap(), 1024);
            thread::sleep(Duration::from_millis(5));
        }
        let c = failed.unwrap_or_else(|| panic!("{mode:?}: 200 writes to a closed peer all succeeded"));
        let e = os_error(&c);
        assert!(is_pipe_or_reset(e), "{mode:?}: unexpected error {e:?}");

        // Later writes fail at once too.
        w.write(conn, 1000, b"again".to_vec()).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, 1000);
        let e = os_error(&c);
        assert!(is_pipe_or_reset(e), "{mode:?}: unexpected error {e:?}");
        drop(w);
    }
    fds.check();
}

#[test]
fn unix_stream_write_to_closed_peer_is_broken_pipe_without_sigpipe() {
    let fds = util::FdCheck::new();
    util::sigpipe_default();
    for mode in util::MODES {
        let (mine, peer) = UnixStream::pair().unwrap();
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(mine).unwrap();
        drop(peer);
        for i in 0..3 {
            w.write(conn, i, b"into the void".to_vec()).unwrap();
            let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
            assert_eq!((c.context, c.bytes), (i, 0));
            let e = os_error(&c);
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{mode:?}: {e:?}");
            assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::PIPE.raw_os_error()));
        }
        drop(w);
    }
    fds.check();
}

// ----- 13. half-close ------------------------------------------------------------------

#[test]
fn peer_half_close_gives_eof_to_every_read_while_writes_work() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        w.read(conn, 0, vec![0; 32]).unwrap();
        util::expect_quiet(&mut w, QUIET);

        client.shutdown(Shutdown::Write).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.context, c.bytes), (0, 0));
        assert!(matches!(c.error, Some(Error::Eof)), "{mode:?}: {:?}", c.error);

        // Every later read, of every kind, gets Eof too, in order.
        w.read(conn, 1, vec![0; 32]).unwrap();
        w.read_swap(conn, 2).unwrap();
        w.read_full(conn, 3, vec![0; 32]).unwrap();
        let got = util::wait_for(&mut w, 3, LIMIT);
        let contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        assert_eq!(contexts, [1, 2, 3], "{mode:?}");
        for c in &got {
            assert!(
                matches!(c.error, Some(Error::Eof)),
                "{mode:?} ctx {}: {:?}",
                c.context,
                c.error
            );
            assert_eq!(c.bytes, 0);
        }

        // The other direction still works.
        let msg = util::pattern(13, 5000);
        w.write(conn, 4, msg.clone()).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.context, c.bytes), (4, msg.len()));
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        let mut got = vec![0u8; msg.len()];
        client.read_exact(&mut got).unwrap();
        assert!(got == msg, "{mode:?}: bytes differ");
        util::expect_quiet(&mut w, QUIET);
        drop(w);
    }
    fds.check();
}

#[test]
fn data_then_half_close_gives_the_data_then_eof() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        w.read(conn, 0, vec![0; 32]).unwrap();
        w.read(conn, 1, vec![0; 32]).unwrap();
        w.read(conn, 2, vec![0; 32]).unwrap();
        client.write_all(b"last words").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let got = util::wait_for(&mut w, 3, LIMIT);
        assert_eq!(got[0].context, 0);
        assert!(got[0].error.is_none(), "{mode:?}: {:?}", got[0].error);
        assert_eq!(got[0].data(), b"last words");
        for (i, c) in got[1..].iter().enumerate() {
            assert_eq!(c.context, i as u32 + 1);
            assert!(matches!(c.error, Some(Error::Eof)), "{mode:?}: {:?}", c.error);
        }
        drop(w);
    }
    fds.check();
}

// ----- 14. reset while a write is blocked ---------------------------------------

#[test]
fn reset_completes_a_blocked_write_promptly_with_an_error() {
    let fds = util::FdCheck::new();
    const HUGE: usize = 64 << 20;
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        w.write(conn, 1, vec![0x5A; HUGE]).unwrap();
        // The peer never reads: the write stays blocked.
        util::expect_quiet(&mut w, Duration::from_millis(300));

        reset_on_close(&client);
        drop(client);
        let start = Instant::now();
        let c = util::wait_for(&mut w, 1, Duration::from_secs(2)).pop().unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!((c.context, c.op), (1, Op::Write));
        let e = os_error(&c);
        assert!(is_pipe_or_reset(e), "{mode:?}: unexpected error {e:?}");
        assert!(c.bytes > 0 && c.bytes < HUGE, "{mode:?}: bytes {}", c.bytes);
        assert!(matches!(&c.buffer, Buffer::User(b) if b.len() == HUGE));
        drop(c);
        drop(w);
    }
    fds.check();
}

// ----- 15. reset with reads pending -------------------------------------------------

#[test]
fn reset_completes_pending_reads_promptly() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        w.read(conn, 1, vec![0; 32]).unwrap();
        w.read_swap(conn, 2).unwrap();
        w.read_full(conn, 3, vec![0; 32]).unwrap();
        util::expect_quiet(&mut w, QUIET);

        reset_on_close(&client);
        drop(client);
        let start = Instant::now();
        let got = util::wait_for(&mut w, 3, Duration::from_secs(2));
        assert!(start.elapsed() < Duration::from_secs(2));
        let contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        assert_eq!(contexts, [1, 2, 3], "{mode:?}");
        // Linux reports a reset with no data pending as ECONNRESET to the
        // first read; the connection is then at end of stream.
        let e = os_error(&got[0]);
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{mode:?}: {e:?}");
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::CONNRESET.raw_os_error())
        );
        for c in &got[1..] {
            let ok = match &c.error {
                Some(Error::Eof) => true,
                Some(Error::Io(e)) => e.kind() == io::ErrorKind::ConnectionReset,
                _ => false,
            };
            assert!(ok, "{mode:?} ctx {}: {:?}", c.context, c.error);
            assert_eq!(c.bytes, 0);
        }
        // Writes fail too.
        w.write(conn, 4, b"anyone?".to_vec()).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(is_pipe_or_reset(os_error(&c)), "{mode:?}: {:?}", c.error);
        drop(w);
    }
    fds.check();
}

// ----- 16. EOF inside read_full ----------------------------------------------------

#[test]
fn eof_inside_read_full_reports_the_partial_size() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        w.read_full(conn, 16, vec![0xEE; 1000]).unwrap();
        util::expect_quiet(&mut w, QUIET);
        let sent = util::pattern(16, 300);
        client.write_all(&sent).unwrap();
        // Not complete yet: 700 bytes are missing.
        util::expect_quiet(&mut w, QUIET);
        drop(client);
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.context, c.op), (16, Op::ReadFull));
        assert!(matches!(c.error, Some(Error::Eof)), "{mode:?}: {:?}", c.error);
        assert_eq!(c.bytes, 300, "{mode:?}");
        assert!(c.data() == sent, "{mode:?}: data differs");
        let buf = c.buffer.into_user().unwrap();
        assert_eq!(buf.len(), 1000);
        assert!(
            buf[300..].iter().all(|&b| b == 0xEE),
            "bytes past the data were touched"
        );
        drop(w);
    }
    fds.check();
}

// ----- 17. FIFO order ------------------------------------------------------------------

#[test]
fn queued_reads_complete_in_fifo_order() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        for i in 0..8 {
            w.read(conn, i, vec![0; 10]).unwrap();
        }
        util::expect_quiet(&mut w, QUIET);
        let msg = util::pattern(17, 80);
        client.write_all(&msg).unwrap();
        let got = util::wait_for(&mut w, 8, LIMIT);
        let contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        assert_eq!(contexts, (0..8).collect::<Vec<_>>(), "{mode:?}");
        for c in &got {
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            // 80 bytes sent at once over loopback arrive at once: each read
            // finds at least its 10 bytes.
            assert_eq!(c.bytes, 10, "{mode:?} ctx {}", c.context);
        }
        let joined: Vec<u8> = got.iter().flat_map(|c| c.data().to_vec()).collect();
        assert!(joined == msg, "{mode:?}: bytes differ");
        util::expect_quiet(&mut w, QUIET);
        drop(w);
    }
    fds.check();
}

#[test]
fn queued_writes_complete_in_fifo_order() {
    let fds = util::FdCheck::new();
    const N: u32 = 100;
    const LEN: usize = 64 * 1024;
    let chunks: Arc<Vec<Vec<u8>>> =
        Arc::new((0..N).map(|i| util::pattern(1000 + u64::from(i), LEN)).collect());
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        // The peer starts reading only once every write is submitted, so
        // most of them wait in the queue.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let reader = thread::spawn(move || {
            go_rx.recv_timeout(LIMIT).expect("go signal");
            let mut all = vec![0u8; N as usize * LEN];
            client.read_exact(&mut all).expect("peer read");
            all
        });
        for i in 0..N {
            w.write(conn, i, chunks[i as usize].clone()).unwrap();
        }
        go_tx.send(()).unwrap();
        let got = util::wait_for(&mut w, N as usize, Duration::from_secs(10));
        let contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        assert_eq!(
            contexts,
            (0..N).collect::<Vec<_>>(),
            "{mode:?}: completions out of order"
        );
        for c in &got {
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            assert_eq!(c.bytes, LEN);
            assert!(matches!(&c.buffer, Buffer::User(b) if *b == chunks[c.context as usize]));
        }
        let received = reader.join().expect("reader thread");
        for (i, piece) in received.chunks(LEN).enumerate() {
            assert!(
                piece == chunks[i],
                "{mode:?}: chunk {i} differs (reordered or corrupted)"
            );
        }
        util::expect_quiet(&mut w, QUIET);
        drop(w);
    }
    fds.check();
}

// ----- 18. a thousand submitting threads -----------------------------------------

#[test]
fn a_thousand_threads_submit_concurrently() {
    const THREADS: usize = 1000;
    const CONNS: usize = 16;
    const PER_THREAD: usize = 2;
    const MSG: usize = 64;
    let fds = util::FdCheck::new();
    util::raise_nofile(4096);

    /// Message `seq` of thread `t`: a header naming both, then its pattern.
    fn message(t: usize, seq: usize) -> Vec<u8> {
        let mut m = Vec::with_capacity(MSG);
        m.extend_from_slice(&(t as u32).to_le_bytes());
        m.push(seq as u8);
        m.extend_from_slice(&util::pattern((t * PER_THREAD + seq) as u64, MSG - 5));
        m
    }

    for mode in util::MODES {
        let mut w: Watcher<usize> = util::watcher(mode);
        let mut clients = Vec::new();
        let mut conns = Vec::new();
        for (client, server) in util::tcp_pairs(CONNS) {
            timeouts(&client);
            clients.push(client);
            conns.push(w.watch(server).unwrap());
        }
        let start = Arc::new(Barrier::new(THREADS));
        let mut handles = Vec::with_capacity(THREADS);
        for t in 0..THREADS {
            let mut sub = w.submitter();
            let conn = conns[t % CONNS];
            let start = Arc::clone(&start);
            let h = thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    start.wait();
                    for seq in 0..PER_THREAD {
                        sub.write(conn, t * PER_THREAD + seq, message(t, seq))
                            .expect("submit from thread");
                    }
                })
                .expect("spawn submitter thread");
            handles.push(h);
        }
        let got = util::wait_for(&mut w, THREADS * PER_THREAD, Duration::from_secs(10));
        for h in handles {
            h.join().expect("submitter thread");
        }
        util::expect_quiet(&mut w, QUIET);

        // Every request completed exactly once, whole, on its connection.
        let mut seen = BTreeSet::new();
        for c in &got {
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            assert!(
                seen.insert(c.context),
                "{mode:?}: context {} completed twice",
                c.context
            );
            let (t, seq) = (c.context / PER_THREAD, c.context % PER_THREAD);
            assert_eq!(c.conn, conns[t % CONNS]);
            assert_eq!(c.bytes, MSG);
            assert!(matches!(&c.buffer, Buffer::User(b) if *b == message(t, seq)));
        }
        assert_eq!(
            seen,
            (0..THREADS * PER_THREAD).collect::<BTreeSet<_>>(),
            "{mode:?}"
        );

        // Each peer got exactly its threads' messages, whole, each thread's
        // in its submission order.
        for (k, client) in clients.iter_mut().enumerate() {
            let threads: Vec<usize> = (k..THREADS).step_by(CONNS).collect();
            let mut stream = vec![0u8; threads.len() * PER_THREAD * MSG];
            client.read_exact(&mut stream).unwrap();
            let mut next_seq: BTreeMap<usize, usize> = BTreeMap::new();
            for m in stream.chunks(MSG) {
                let t = u32::from_le_bytes(m[..4].try_into().unwrap()) as usize;
                let seq = usize::from(m[4]);
                assert_eq!(t % CONNS, k, "{mode:?}: message of thread {t} on connection {k}");
                assert!(m == message(t, seq), "{mode:?}: message {t}/{seq} corrupted");
                let expected = next_seq.entry(t).or_insert(0);
                assert_eq!(seq, *expected, "{mode:?}: thread {t}'s writes out of order");
                *expected += 1;
            }
            assert!(next_seq.values().all(|&n| n == PER_THREAD));
            assert_eq!(next_seq.keys().copied().collect::<Vec<_>>(), threads);
        }
        // Nothing more arrives on any connection.
        thread::sleep(QUIET);
        for (k, client) in clients.iter_mut().enumerate() {
            client.set_nonblocking(true).unwrap();
            let mut extra = [0u8; 1];
            match client.read(&mut extra) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("{mode:?}: connection {k} has more: {other:?}"),
            }
        }
        drop(w);
    }
    fds.check();
}
