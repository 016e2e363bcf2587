//! Echo through the watcher over loopback: tiny buffers, 100 MiB streams,
//! `read_full`, and thousands of parallel connections with own buffers,
//! swap memory, or both.
//!
//! Every byte is compared against a position-dependent pattern, on the
//! server side as it arrives and on the client side as it comes back.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gaio::{Buffer, Bytes, Conn, Error, Mode, Op, Submit, Watcher};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// How long a client socket blocks before the test fails instead of hanging.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next batch of completions.
const BATCH_LIMIT: Duration = Duration::from_secs(20);
/// Descriptors kept free besides the two per connection (stdio, test
/// harness, watcher's poller and wake-up, listeners, thread handles).
const FD_MARGIN: u64 = 64;

/// Client sockets never block forever.
fn client_timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(SOCKET_TIMEOUT)).unwrap();
}

/// Makes room for `conns` loopback connections (both ends live in this
/// process: two descriptors each) and returns how many the test may open.
///
/// The soft limit is raised first; if the hard limit is below what is
/// needed, a privileged process raises it too. Otherwise the count is
/// scaled down, printed, and required to stay within 10% of the request so
/// the test never passes on a token number of connections.
fn room_for(conns: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let need = 2 * conns as u64 + FD_MARGIN;
    let mut soft = util::raise_nofile(need);
    if soft < need {
        // Needs CAP_SYS_RESOURCE; harmless to try without it.
        if setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(need),
                maximum: Some(need),
            },
        )
        .is_ok()
        {
            soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        }
    }
    if soft >= need {
        return conns;
    }
    let fit = (soft.saturating_sub(FD_MARGIN) / 2) as usize;
    eprintln!("RLIMIT_NOFILE is {soft}: scaled down from {conns} to {fit} connections");
    assert!(
        fit * 10 >= conns * 9,
        "RLIMIT_NOFILE {soft} allows only {fit} of {conns} connections"
    );
    fit
}

/// Seed of connection `i`'s pattern, distinct per test so stale bytes from
/// another test could not match.
fn seed(test: u64, i: usize) -> u64 {
    (test << 32) | i as u64
}

// ----- 1. one-byte buffer --------------------------------------------------

/// The server echoes through a one-byte buffer, so 64 KiB take 65,536 read
/// and 65,536 write completions, each checked.
#[test]
fn echo_one_byte_buffer() {
    const LEN: usize = 64 * KIB;
    let fds = util::FdCheck::new();
    let pat = Arc::new(util::pattern(seed(1, 0), LEN));
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        client_timeouts(&client);
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        let mut out = client.try_clone().unwrap();
        let wpat = Arc::clone(&pat);
        let writer = thread::spawn(move || {
            for chunk in wpat.chunks(1000) {
                out.write_all(chunk).unwrap();
            }
            out.shutdown(Shutdown::Write).unwrap();
        });
        let mut inp = client;
        let rpat = Arc::clone(&pat);
        let reader = thread::spawn(move || {
            let mut got = vec![0; LEN];
            inp.read_exact(&mut got).unwrap();
            assert!(got == *rpat, "{mode:?}: echoed bytes differ from the pattern");
            // The server frees the connection after end of stream: nothing
            // follows the echo.
            let mut more = [0u8; 16];
            assert_eq!(inp.read(&mut more).unwrap(), 0, "{mode:?}: bytes after the echo");
        });

        w.read(conn, 0, vec![0; 1]).unwrap();
        let start = Instant::now();
        let mut read = 0usize;
        let mut written = 0usize;
        let mut seq = 0u64;
        let mut eof = false;
        while !eof {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{mode:?}: echo too slow"
            );
            for mut c in util::wait_for(&mut w, 1, BATCH_LIMIT) {
                assert_eq!(c.conn, conn);
                // Contexts count the requests: even ones read, odd ones write.
                assert_eq!(c.context, seq, "{mode:?}: completion out of order");
                seq += 1;
                match c.op {
                    Op::Read => {
                        if read == LEN {
                            assert!(matches!(c.error, Some(Error::Eof)), "{mode:?}: {:?}", c.error);
                            assert_eq!(c.bytes, 0);
                            w.free(conn).unwrap();
                            eof = true;
                            continue;
                        }
                        assert_eq!(c.result().unwrap(), 1, "{mode:?}");
                        assert_eq!(c.data(), &pat[read..read + 1], "{mode:?}: byte {read}");
                        read += 1;
                        let buf = c.buffer.into_user().unwrap();
                        w.write(conn, seq, buf).unwrap();
                    }
                    Op::Write => {
                        assert_eq!(c.result().unwrap(), 1, "{mode:?}");
                        assert_eq!(c.data(), &pat[written..written + 1], "{mode:?}");
                        written += 1;
                        let buf = c.buffer.into_user().unwrap();
                        assert_eq!(buf.len(), 1);
                        w.read(conn, seq, buf).unwrap();
                    }
                    Op::ReadFull => panic!("no read_full was submitted"),
                    other => panic!("unexpected {other:?} completion"),
                }
            }
        }
        assert_eq!((read, written), (LEN, LEN), "{mode:?}");
        writer.join().unwrap();
        reader.join().unwrap();
        util::expect_quiet(&mut w, Duration::from_millis(50));
        drop(w);
    }
    fds.check();
}

// ----- 2. 100 MiB echo -------------------------------------------------------

/// 100 MiB go through the server's own 64 KiB buffers and come back byte for
/// byte; the client writes and reads concurrently from two threads.
#[test]
fn echo_100_mib_byte_for_byte() {
    const LEN: usize = 100 * MIB;
    const BUF: usize = 64 * KIB;
    let fds = util::FdCheck::new();
    let pat = Arc::new(util::pattern(seed(2, 0), LEN));
    for mode in util::MODES {
        let started = Instant::now();
        let (client, server) = util::tcp_pair();
        client_timeouts(&client);
        let mut w: Watcher<u64> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        let mut out = client.try_clone().unwrap();
        let wpat = Arc::clone(&pat);
        let writer = thread::spawn(move || {
            for chunk in wpat.chunks(MIB) {
                out.write_all(chunk).unwrap();
            }
            out.shutdown(Shutdown::Write).unwrap();
        });
        let mut inp = client;
        let rpat = Arc::clone(&pat);
        let reader = thread::spawn(move || {
            let mut buf = vec![0; 256 * KIB];
            let mut off = 0;
            while off < LEN {
                let want = buf.len().min(LEN - off);
                let n = inp.read(&mut buf[..want]).unwrap();
                assert!(n > 0, "{mode:?}: end of stream after {off} of {LEN} bytes");
                assert!(
                    buf[..n] == rpat[off..off + n],
                    "{mode:?}: echo differs in {off}..{}",
                    off + n
                );
                off += n;
            }
            assert_eq!(inp.read(&mut buf).unwrap(), 0, "{mode:?}: bytes after the echo");
            off
        });

        w.read(conn, 0, vec![0; BUF]).unwrap();
        let mut read = 0usize;
        let mut written = 0usize;
        let mut eof = false;
        while !eof {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{mode:?}: echo too slow"
            );
            for mut c in util::wait_for(&mut w, 1, BATCH_LIMIT) {
                assert_eq!(c.conn, conn);
                match c.op {
                    Op::Read => {
                        assert_eq!(c.context, 0);
                        if matches!(c.error, Some(Error::Eof)) {
                            assert_eq!(read, LEN, "{mode:?}: early end of stream");
                            assert_eq!(c.bytes, 0);
                            w.free(conn).unwrap();
                            eof = true;
                            continue;
                        }
                        let n = c.result().unwrap();
                        assert!((1..=BUF).contains(&n), "{mode:?}: read {n}");
                        assert!(
                            c.data() == &pat[read..read + n],
                            "{mode:?}: read differs at {read}"
                        );
                        read += n;
                        let mut buf = c.buffer.into_user().unwrap();
                        buf.truncate(n);
                        w.write(conn, 1, buf).unwrap();
                    }
                    Op::Write => {
                        assert_eq!(c.context, 1);
                        let n = c.result().unwrap();
                        assert_eq!(n, c.buffer.as_bytes().len(), "{mode:?}: partial write");
                        assert!(c.data() == &pat[written..written + n], "{mode:?}: write differs");
                        written += n;
                        let mut buf = c.buffer.into_user().unwrap();
                        buf.resize(BUF, 0);
                        w.read(conn, 0, buf).unwrap();
                    }
                    Op::ReadFull => panic!("no read_full was submitted"),
                    other => panic!("unexpected {other:?} completion"),
                }
            }
        }
        assert_eq!((read, written), (LEN, LEN), "{mode:?}");
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), LEN);
        drop(w);
        eprintln!("{mode:?}: 100 MiB echoed in {:?}", started.elapsed());
    }
    fds.check();
}

// ----- 3. read_full of 100 MiB ---------------------------------------------

/// `read_full` requests whose buffers add up to 100 MiB, queued on one
/// connection: each fills completely, in order, with the right bytes. Then
/// a `read_full` larger than what is left reports end of stream with the
/// bytes read before it, and the next read reports end of stream at once.
fn read_full_100_mib(mode: Mode, pieces: usize, pat: &Arc<Vec<u8>>) {
    const TAIL: &[u8] = b"ten bytes!";
    let len = pat.len();
    let piece = len / pieces;
    assert_eq!(piece * pieces, len);
    let started = Instant::now();
    let (mut client, server) = util::tcp_pair();
    client_timeouts(&client);
    let mut w: Watcher<u64> = util::watcher(mode);
    let conn = w.watch(server).unwrap();
    for i in 0..pieces {
        w.read_full(conn, i as u64, vec![0; piece]).unwrap();
    }
    let wpat = Arc::clone(pat);
    let writer = thread::spawn(move || {
        for chunk in wpat.chunks(MIB) {
            client.write_all(chunk).unwrap();
        }
        client.write_all(TAIL).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        client
    });

    let end = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < pieces {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{mode:?}: read_full too slow: {} of {pieces}",
            got.len()
        );
        got.extend(util::wait_for(&mut w, 1, left.min(BATCH_LIMIT)));
    }
    assert_eq!(got.len(), pieces, "{mode:?}: unexpected completions");
    for (i, mut c) in got.into_iter().enumerate() {
        assert_eq!(
            (c.op, c.conn, c.context),
            (Op::ReadFull, conn, i as u64),
            "{mode:?}"
        );
        assert_eq!(c.result().unwrap(), piece, "{mode:?}: piece {i}");
        assert_eq!(c.buffer.as_bytes().len(), piece);
        assert!(
            c.data() == &pat[i * piece..(i + 1) * piece],
            "{mode:?}: piece {i} of {pieces} differs from the pattern"
        );
    }

    w.read_full(conn, 100, vec![0; 100]).unwrap();
    w.read_full(conn, 101, vec![0; 1]).unwrap();
    let got = util::wait_for(&mut w, 2, BATCH_LIMIT);
    assert_eq!(got.len(), 2, "{mode:?}");
    assert_eq!((got[0].op, got[0].context), (Op::ReadFull, 100));
    assert!(
        matches!(got[0].error, Some(Error::Eof)),
        "{mode:?}: {:?}",
        got[0].error
    );
    assert_eq!(got[0].bytes, TAIL.len(), "{mode:?}: bytes before end of stream");
    assert_eq!(got[0].data(), TAIL);
    assert_eq!(got[1].context, 101);
    assert!(
        matches!(got[1].error, Some(Error::Eof)),
        "{mode:?}: {:?}",
        got[1].error
    );
    assert_eq!(got[1].bytes, 0);

    let client = writer.join().unwrap();
    drop(w);
    drop(client);
    eprintln!(
        "{mode:?}: read_full of 100 MiB in {pieces} piece(s) in {:?}",
        started.elapsed()
    );
}

#[test]
fn read_full_100_mib_one_buffer() {
    let fds = util::FdCheck::new();
    let pat = Arc::new(util::pattern(seed(3, 0), 100 * MIB));
    for mode in util::MODES {
        read_full_100_mib(mode, 1, &pat);
    }
    fds.check();
}

#[test]
fn read_full_100_mib_four_queued_buffers() {
    let fds = util::FdCheck::new();
    let pat = Arc::new(util::pattern(seed(3, 1), 100 * MIB));
    for mode in util::MODES {
        read_full_100_mib(mode, 4, &pat);
    }
    fds.check();
}

// ----- 4 and 5. many parallel connections ----------------------------------

/// How the server reads a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Own `Vec` buffers on every connection.
    Own,
    /// Swap memory on even connections, own buffers on odd ones.
    Mixed,
}

impl Reads {
    fn swap(self, i: usize) -> bool {
        self == Reads::Mixed && i % 2 == 0
    }
}

/// Client threads: each takes a slice of the connections, writes every
/// message and shuts down its sending side, then reads every echo back,
/// compares it, and checks that end of stream follows it (the server frees
/// a connection once it has seen end of stream and echoed everything).
fn spawn_clients(clients: Vec<TcpStream>, size: usize, test: u64, threads: usize) -> Vec<JoinHandle<()>> {
    let per = clients.len().div_ceil(threads);
    let mut all: Vec<(usize, TcpStream)> = clients.into_iter().enumerate().collect();
    let mut handles = Vec::new();
    while !all.is_empty() {
        let rest = all.split_off(per.min(all.len()));
        let mine = std::mem::replace(&mut all, rest);
        handles.push(thread::spawn(move || {
            for (i, s) in &mine {
                client_timeouts(s);
                (&*s).write_all(&util::pattern(seed(test, *i), size)).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }
            let mut got = vec![0; size];
            for (i, s) in &mine {
                (&*s)
                    .read_exact(&mut got)
                    .unwrap_or_else(|e| panic!("conn {i}: {e}"));
                assert!(
                    got == util::pattern(seed(test, *i), size),
                    "conn {i}: echo differs"
                );
                let extra = (&*s).read(&mut got).unwrap_or_else(|e| panic!("conn {i}: {e}"));
                assert_eq!(extra, 0, "conn {i}: bytes after the echo");
            }
        }));
    }
    handles
}

/// Watches every server end and echoes with a `Vec` watcher until each
/// connection has seen end of stream; every read is checked against its
/// connection's pattern on the way.
fn serve_vec(mode: Mode, servers: Vec<TcpStream>, size: usize, test: u64, reads: Reads) {
    let n = servers.len();
    let pats: Vec<Vec<u8>> = (0..n).map(|i| util::pattern(seed(test, i), size)).collect();
    let mut w: Watcher<u64> = util::watcher(mode);
    let conns: Vec<Conn> = servers.into_iter().map(|s| w.watch(s).unwrap()).collect();
    for (i, &conn) in conns.iter().enumerate() {
        if reads.swap(i) {
            w.read_swap(conn, i as u64).unwrap();
        } else {
            w.read(conn, i as u64, vec![0; size]).unwrap();
        }
    }
    let mut off = vec![0usize; n];
    let mut closed = 0;
    let end = Instant::now() + Duration::from_secs(60);
    while closed < n {
        assert!(
            Instant::now() < end,
            "{mode:?}: only {closed} of {n} connections done"
        );
        for mut c in util::wait_for(&mut w, 1, BATCH_LIMIT) {
            let i = c.context as usize;
            assert_eq!(
                c.conn, conns[i],
                "{mode:?}: conn {i} completion on another connection"
            );
            match c.op {
                Op::Read => {
                    if matches!(c.error, Some(Error::Eof)) {
                        assert_eq!(off[i], size, "{mode:?}: conn {i} closed early");
                        w.free(c.conn).unwrap();
                        closed += 1;
                        continue;
                    }
                    let got = c.result().unwrap_or_else(|e| panic!("{mode:?}: conn {i}: {e}"));
                    assert!(off[i] + got <= size, "{mode:?}: conn {i}: more than one message");
                    assert!(
                        c.data() == &pats[i][off[i]..off[i] + got],
                        "{mode:?}: conn {i}: bytes {}.. differ",
                        off[i]
                    );
                    off[i] += got;
                    let buf = match c.buffer {
                        Buffer::Swap(b) => {
                            assert!(reads.swap(i), "{mode:?}: conn {i}: swap buffer for own read");
                            assert_eq!(b.len(), got);
                            b.to_vec()
                        }
                        Buffer::User(mut b) => {
                            assert!(!reads.swap(i), "{mode:?}: conn {i}: own buffer for swap read");
                            assert_eq!(b.len(), size);
                            b.truncate(got);
                            b
                        }
                        Buffer::None => unreachable!("a read always hands a buffer back"),
                    };
                    w.write(c.conn, i as u64, buf).unwrap();
                }
                Op::Write => {
                    let done = c.result().unwrap_or_else(|e| panic!("{mode:?}: conn {i}: {e}"));
                    assert_eq!(
                        done,
                        c.buffer.as_bytes().len(),
                        "{mode:?}: conn {i}: partial write"
                    );
                    assert!(c.data() == &pats[i][off[i] - done..off[i]]);
                    if reads.swap(i) {
                        w.read_swap(c.conn, i as u64).unwrap();
                    } else {
                        let mut buf = c.buffer.into_user().unwrap();
                        buf.resize(size, 0);
                        w.read(c.conn, i as u64, buf).unwrap();
                    }
                }
                Op::ReadFull => panic!("no read_full was submitted"),
                other => panic!("unexpected {other:?} completion"),
            }
        }
    }
    assert!(off.iter().all(|&o| o == size));
    util::expect_quiet(&mut w, Duration::from_millis(20));
}

/// The same with a `Bytes` watcher reading only into swap memory: the swap
/// slice a read returns is written straight back, without a copy.
fn serve_swap_bytes(mode: Mode, servers: Vec<TcpStream>, size: usize, test: u64, limit: usize) {
    let n = servers.len();
    let pats: Vec<Vec<u8>> = (0..n).map(|i| util::pattern(seed(test, i), size)).collect();
    let mut w: Watcher<u64, Bytes> = gaio::Builder::new()
        .mode(mode)
        .swap_limit(limit)
        .build()
        .expect("create watcher");
    let conns: Vec<Conn> = servers.into_iter().map(|s| w.watch(s).unwrap()).collect();
    for (i, &conn) in conns.iter().enumerate() {
        w.read_swap(conn, i as u64).unwrap();
    }
    let mut off = vec![0usize; n];
    let mut closed = 0;
    let end = Instant::now() + Duration::from_secs(60);
    while closed < n {
        assert!(
            Instant::now() < end,
            "{mode:?}: only {closed} of {n} connections done"
        );
        for mut c in util::wait_for(&mut w, 1, BATCH_LIMIT) {
            let i = c.context as usize;
            assert_eq!(
                c.conn, conns[i],
                "{mode:?}: conn {i} completion on another connection"
            );
            match c.op {
                Op::Read => {
                    if matches!(c.error, Some(Error::Eof)) {
                        assert_eq!(off[i], size, "{mode:?}: conn {i} closed early");
                        w.free(c.conn).unwrap();
                        closed += 1;
                        continue;
                    }
                    let got = c.result().unwrap_or_else(|e| panic!("{mode:?}: conn {i}: {e}"));
                    assert!(off[i] + got <= size, "{mode:?}: conn {i}: more than one message");
                    let Buffer::Swap(b) = c.buffer else {
                        panic!("{mode:?}: conn {i}: swap read returned an own buffer");
                    };
                    assert_eq!(b.len(), got, "{mode:?}: conn {i}: swap slice length");
                    assert!(
                        b == pats[i][off[i]..off[i] + got],
                        "{mode:?}: conn {i}: bytes differ"
                    );
                    off[i] += got;
                    w.write(c.conn, i as u64, b).unwrap();
                }
                Op::Write => {
                    let done = c.result().unwrap_or_else(|e| panic!("{mode:?}: conn {i}: {e}"));
                    assert_eq!(
                        done,
                        c.buffer.as_bytes().len(),
                        "{mode:?}: conn {i}: partial write"
                    );
                    assert!(c.data() == &pats[i][off[i] - done..off[i]]);
                    w.read_swap(c.conn, i as u64).unwrap();
                }
                Op::ReadFull => panic!("no read_full was submitted"),
                other => panic!("unexpected {other:?} completion"),
            }
        }
    }
    assert!(off.iter().all(|&o| o == size));
    util::expect_quiet(&mut w, Duration::from_millis(20));
}

/// How the server of a parallel test reads.
#[derive(Debug, Clone, Copy)]
enum Server {
    Vec(Reads),
    /// Reads into swap memory only, under this swap limit.
    SwapBytes(usize),
}

/// `n` connections, each sending one `size`-byte message and reading its
/// echo, served by one watcher in `mode`.
fn parallel_echo(n: usize, size: usize, mode: Mode, server: Server, test: u64) {
    let started = Instant::now();
    let pairs = util::tcp_pairs(n);
    let (clients, servers): (Vec<TcpStream>, Vec<TcpStream>) = pairs.into_iter().unzip();
    let clients = spawn_clients(clients, size, test, 4);
    match server {
        Server::Vec(reads) => serve_vec(mode, servers, size, test, reads),
        Server::SwapBytes(limit) => serve_swap_bytes(mode, servers, size, test, limit),
    }
    for c in clients {
        c.join().unwrap();
    }
    eprintln!(
        "{mode:?} {server:?}: {n} connections x {size} B echoed in {:?}",
        started.elapsed()
    );
}

fn parallel_echo_all(n: usize, sizes: &[usize], server: Server, modes: &[Mode], test: u64) {
    let fds = util::FdCheck::new();
    let n = room_for(n);
    for &mode in modes {
        for (k, &size) in sizes.iter().enumerate() {
            parallel_echo(n, size, mode, server, (test << 4) | k as u64);
        }
    }
    fds.check();
}

#[test]
fn parallel_echo_1k_connections() {
    let _lock = util::exclusive();
    parallel_echo_all(1000, &[KIB, 16], Server::Vec(Reads::Own), &util::MODES, 4);
}

#[test]
fn parallel_echo_4k_connections() {
    let _lock = util::exclusive();
    parallel_echo_all(4000, &[KIB, 16], Server::Vec(Reads::Own), &util::MODES, 5);
}

#[test]
fn parallel_echo_10k_connections_1_kib() {
    let _lock = util::exclusive();
    parallel_echo_all(10_000, &[KIB], Server::Vec(Reads::Own), &util::MODES, 6);
}

#[test]
fn parallel_echo_10k_connections_16_bytes() {
    let _lock = util::exclusive();
    parallel_echo_all(10_000, &[16], Server::Vec(Reads::Own), &util::MODES, 7);
}

#[test]
fn swap_echo_10k_connections_inline() {
    let _lock = util::exclusive();
    parallel_echo_all(
        10_000,
        &[KIB],
        Server::SwapBytes(gaio::DEFAULT_SWAP_LIMIT),
        &[Mode::Inline],
        8,
    );
}

/// Ten thousand clients sending at once against a 4 MiB swap limit, then
/// against the smallest there is (256 KiB: on io_uring 96 small buffers
/// and one large, so reads wait for buffers most of the time): every byte
/// arrives, in order, with no error and no connection dropped. (On the
/// readiness backends the limit does not apply; the test runs there too.)
#[test]
fn swap_flood_10k_connections_under_a_swap_limit() {
    let _lock = util::exclusive();
    for (limit, test) in [(4 << 20, 10), (gaio::MIN_SWAP_LIMIT, 11)] {
        parallel_echo_all(10_000, &[KIB], Server::SwapBytes(limit), &[Mode::Inline], test);
    }
}

#[test]
fn a_swap_limit_out_of_range_is_refused() {
    for limit in [0, gaio::MIN_SWAP_LIMIT - 1, gaio::MAX_SWAP_LIMIT + 1] {
        let e = gaio::Builder::new()
            .swap_limit(limit)
            .build::<(), Vec<u8>>()
            .expect_err("refused");
        let Error::InvalidSetting(s) = e else {
            panic!("{limit}: {e:?}")
        };
        assert_eq!(
            (s.name, s.value, s.min, s.max),
            ("swap_limit", limit, gaio::MIN_SWAP_LIMIT, gaio::MAX_SWAP_LIMIT)
        );
    }
}

#[test]
fn swap_echo_10k_connections_background() {
    let _lock = util::exclusive();
    parallel_echo_all(
        10_000,
        &[KIB],
        Server::SwapBytes(gaio::DEFAULT_SWAP_LIMIT),
        &[Mode::Background],
        8,
    );
}

#[test]
fn mixed_swap_and_own_buffers_10k_connections_inline() {
    let _lock = util::exclusive();
    parallel_echo_all(10_000, &[KIB], Server::Vec(Reads::Mixed), &[Mode::Inline], 9);
}

#[test]
fn mixed_swap_and_own_buffers_10k_connections_background() {
    let _lock = util::exclusive();
    parallel_echo_all(10_000, &[KIB], Server::Vec(Reads::Mixed), &[Mode::Background], 9);
}

// ----- end of stream right behind the message --------------------------------

/// Peers that send a short message and shut down their sending side while
/// the server is handing their sockets to the watcher. The server reads
/// each message with room to spare (own 64-byte buffers on even
/// connections, swap memory on odd ones), so the read is short; the next
/// read on every connection must then report end of stream.
fn end_of_stream_right_behind_message(mode: Mode) {
    const MSG: usize = 16;
    let fds = util::FdCheck::new();
    let n = room_for(10_000);
    let pairs = util::tcp_pairs(n);
    let mut w: Watcher<u64> = util::watcher(mode);
    let mut clients = Vec::with_capacity(n);
    let mut conns = Vec::with_capacity(n);
    for (i, (mut client, server)) in pairs.into_iter().enumerate() {
        client_timeouts(&client);
        client.write_all(&util::pattern(seed(11, i), MSG)).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let conn = w.watch(server).unwrap();
        if i % 2 == 1 {
            w.read_swap(conn, i as u64).unwrap();
        } else {
            w.read(conn, i as u64, vec![0; 64]).unwrap();
        }
        clients.push(client);
        conns.push(conn);
    }
    let mut reads = 0;
    let mut eofs = 0;
    let end = Instant::now() + Duration::from_secs(15);
    while eofs < n && Instant::now() < end {
        let mut batch = Vec::new();
        w.wait_io_timeout(&mut batch, Duration::from_millis(500)).unwrap();
        for mut c in batch {
            let i = c.context as usize;
            assert_eq!(c.conn, conns[i], "{mode:?}: conn {i}");
            if matches!(c.error, Some(Error::Eof)) {
                assert_eq!(c.bytes, 0, "{mode:?}: conn {i}");
                eofs += 1;
                continue;
            }
            assert_eq!(c.result().unwrap(), MSG, "{mode:?}: conn {i}");
            assert!(
                c.data() == util::pattern(seed(11, i), MSG),
                "{mode:?}: conn {i}: bytes differ"
            );
            assert_eq!(
                matches!(c.buffer, Buffer::Swap(_)),
                i % 2 == 1,
                "{mode:?}: conn {i}: buffer kind"
            );
            reads += 1;
            if i % 2 == 1 {
                w.read_swap(c.conn, i as u64).unwrap();
            } else {
                w.read(c.conn, i as u64, c.buffer.into_user().unwrap()).unwrap();
            }
        }
    }
    assert_eq!(reads, n, "{mode:?}: messages read");
    assert_eq!(
        eofs,
        n,
        "{mode:?}: {} of {n} reads never saw end of stream",
        n - eofs
    );
    util::expect_quiet(&mut w, Duration::from_millis(20));
    drop(w);
    drop(clients);
    fds.check();
}

#[test]
fn end_of_stream_right_behind_message_inline() {
    let _lock = util::exclusive();
    end_of_stream_right_behind_message(Mode::Inline);
}

#[test]
fn end_of_stream_right_behind_message_background() {
    let _lock = util::exclusive();
    end_of_stream_right_behind_message(Mode::Background);
}

// ----- swap slices held ------------------------------------------------------

/// A reader that keeps every swap slice it gets (a proxy whose writes
/// stall holds them so): reads must go on, the bytes whole and in order.
/// On io_uring a streaming connection reads into large kernel buffers lent
/// as they are; once every one is held, reads fall back to small buffers,
/// copied; on epoll the swap memory takes fresh slabs.
fn swap_reads_go_on_while_every_slice_is_held(mode: Mode) {
    const TOTAL: usize = 8 << 20;
    let fds = util::FdCheck::new();
    let (mut peer, server) = util::tcp_pair();
    client_timeouts(&peer);
    let sent = util::pattern(seed(31, 0), TOTAL);
    let to_send = sent.clone();
    let sender = thread::spawn(move || {
        peer.write_all(&to_send).unwrap();
        peer
    });
    let mut w: Watcher<u64, Bytes> = util::watcher(mode);
    let conn = w.watch(server).unwrap();
    let mut held: Vec<Bytes> = Vec::new();
    let mut got = 0;
    let end = Instant::now() + Duration::from_secs(20);
    let mut batch = Vec::new();
    while got < TOTAL {
        assert!(Instant::now() < end, "{mode:?}: {got} of {TOTAL} bytes read");
        w.read_swap(conn, 0).unwrap();
        batch.clear();
        while batch.is_empty() {
            assert!(
                Instant::now() < end,
                "{mode:?}: a read never completed after {got} bytes"
            );
            w.wait_io_timeout(&mut batch, Duration::from_millis(100)).unwrap();
        }
        for c in batch.drain(..) {
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            let Buffer::Swap(slice) = c.buffer else {
                panic!("{mode:?}: a swap read without a swap slice");
            };
            got += slice.len();
            held.push(slice);
        }
    }
    let peer = sender.join().unwrap();
    let all: Vec<u8> = held.iter().flat_map(|b| b.iter().copied()).collect();
    assert!(all == sent, "{mode:?}: the bytes read differ from the bytes sent");
    assert!(
        held.len() > 64,
        "{mode:?}: only {} reads: nothing was held long",
        held.len()
    );
    drop((held, w, peer));
    fds.check();
}

#[test]
fn swap_reads_go_on_while_every_slice_is_held_inline() {
    let _lock = util::exclusive();
    swap_reads_go_on_while_every_slice_is_held(Mode::Inline);
}

#[test]
fn swap_reads_go_on_while_every_slice_is_held_background() {
    let _lock = util::exclusive();
    swap_reads_go_on_while_every_slice_is_held(Mode::Background);
}
