//! The write-queue cap (`Builder::max_queued_write_bytes`): a peer that
//! never reads cannot make the watcher hold more than the cap per
//! connection. A write that would take the queue past it is refused with
//! `WriteQueueFull` and its buffer handed back (at submission for the
//! inline owner, as a completion through a `Submitter` or in background
//! mode); the accepted ones still complete in order once the peer reads;
//! `queued_write_bytes` reports the queue.

mod util;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use gaio::{Buffer, Completion, Conn, Error, Mode, Op, Rejected, Submit, Submitter, Watcher};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The cap of these tests.
const CAP: usize = 64 * KIB;
/// Size of each write.
const PIECE: usize = 16 * KIB;
/// Longest wait for the completions a step expects.
const LIMIT: Duration = Duration::from_secs(8);

type W = Watcher<u64, Vec<u8>>;

fn capped(mode: Mode, cap: usize) -> W {
    gaio::Builder::new()
        .max_queued_write_bytes(cap)
        .mode(mode)
        .build()
        .expect("a watcher with a write-queue cap")
}

/// Where the requests of a test go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The watcher itself (the owning thread).
    Owner,
    /// A `Submitter` (in inline mode: through the shared queue).
    Submitter,
}

/// A refusal arrives at submission only for the inline owner.
fn refused_at_submission(w: &W, via: Via) -> bool {
    w.mode() == Mode::Inline && via == Via::Owner
}

fn write_via(
    w: &mut W,
    sub: &mut Submitter<u64, Vec<u8>>,
    via: Via,
    conn: Conn,
    ctx: u64,
    buf: Vec<u8>,
) -> Result<(), Rejected<u64, Vec<u8>>> {
    match via {
        Via::Owner => w.write(conn, ctx, buf),
        Via::Submitter => sub.write(conn, ctx, buf),
    }
}

/// Shrinks the kernel buffers between the watched socket and its peer
/// (no autotuning) and returns their sizes as the kernel reports them
/// (`SO_SNDBUF` + `SO_RCVBUF`): roughly what the kernel takes from writes
/// the peer does not read. Roughly: on a loaded machine loopback TCP was
/// seen to hold some 8% more, so bounds built on it allow twice as much.
fn small_kernel_buffers(server: &TcpStream, peer: &TcpStream) -> usize {
    use rustix::net::sockopt;
    sockopt::set_socket_send_buffer_size(server, 64 * KIB).unwrap();
    sockopt::set_socket_recv_buffer_size(peer, 64 * KIB).unwrap();
    sockopt::socket_send_buffer_size(server).unwrap() + sockopt::socket_recv_buffer_size(peer).unwrap()
}

/// Collects completions until `done` says the collection is complete,
/// failing after `limit`.
fn collect_until(
    w: &mut W,
    limit: Duration,
    mut done: impl FnMut(&[Completion<u64, Vec<u8>>]) -> bool,
) -> Vec<Completion<u64, Vec<u8>>> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while !done(&out) {
        let now = Instant::now();
        assert!(
            now < end,
            "timed out after {limit:?} with {} completions: {:?}",
            out.len(),
            out.iter()
                .map(|c| (c.op, c.context, &c.error))
                .collect::<Vec<_>>()
        );
        w.wait_io_timeout(&mut out, end - now).expect("wait_io");
    }
    out
}

/// Content of write `i`.
fn piece(i: u64) -> Vec<u8> {
    util::pattern(0xCA90_0000 + i, PIECE)
}

/// Context of the marker read: a read whose deadline has passed completes
/// as soon as the engine takes it in, so once it is back, every request
/// submitted before it through the same path has been taken in too.
const MARKER: u64 = u64::MAX;

fn submit_marker(w: &mut W, sub: &mut Submitter<u64, Vec<u8>>, via: Via, conn: Conn) {
    let past = Instant::now();
    match via {
        Via::Owner => w.read_timeout(conn, MARKER, vec![0; 1], past),
        Via::Submitter => sub.read_timeout(conn, MARKER, vec![0; 1], past),
    }
    .expect("marker read");
}

/// Checks one refusal: the error names the queue and the cap, the queue
/// was too full for one more piece, and the buffer is intact.
fn check_refusal(ctx: u64, error: &Error, buffer: Option<&Vec<u8>>) -> usize {
    let Error::WriteQueueFull { queued, limit } = *error else {
        panic!("write {ctx}: expected WriteQueueFull, got {error:?}");
    };
    assert_eq!(limit, CAP, "write {ctx}: the limit reported");
    assert!(queued <= CAP, "write {ctx}: {queued} bytes queued, over the cap");
    assert!(
        queued + PIECE > CAP,
        "write {ctx}: refused with only {queued} bytes queued"
    );
    assert!(
        buffer == Some(&piece(ctx)),
        "write {ctx}: the refused buffer is not handed back intact"
    );
    queued
}

// ----- 1. the cap holds, then everything drains ---------------------------------

/// Writes of 16 KiB to a peer that does not read until one is refused;
/// the number accepted is bounded by what the kernel holds plus the cap;
/// once the peer reads, every accepted write completes in order with its
/// bytes delivered, the queue is empty, and writes are accepted again.
fn cap_refuses_then_drains(mode: Mode, via: Via) {
    let fds = util::FdCheck::new();
    let mut w = capped(mode, CAP);
    let mut sub = w.submitter();
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let kernel = small_kernel_buffers(&server, &peer);
    let conn = w.watch(server).expect("watch");
    // The kernel takes about `kernel` bytes (at most twice that, with a
    // wide margin); the watcher queues at most CAP more; one write may be
    // partly in each. Without the cap every one of `attempts` would be
    // accepted.
    let max_accepted = (2 * kernel + CAP) / PIECE + 1;
    let attempts = max_accepted as u64 + 8;

    // The accepted writes, in submission order, with their bytes.
    let mut accepted: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut refused = 0usize;
    let mut completions = Vec::new();
    if refused_at_submission(&w, via) {
        for i in 0..attempts {
            match w.write(conn, i, piece(i)) {
                Ok(()) => {
                    accepted.push((i, piece(i)));
                    let q = w.queued_write_bytes(conn).expect("inline: the queue is known");
                    assert!(q <= CAP, "after write {i}: {q} bytes queued, over the cap");
                }
                Err(r) => {
                    assert_eq!(r.context, i);
                    let queued = check_refusal(i, &r.error, r.buffer.as_ref());
                    assert_eq!(
                        Some(queued),
                        w.queued_write_bytes(conn),
                        "the queue the refusal reports"
                    );
                    refused += 1;
                    break;
                }
            }
        }
        // Exactly what still fits is accepted; one byte more is not.
        let q = w.queued_write_bytes(conn).unwrap();
        let room = CAP - q;
        if room > 0 {
            let r = w
                .write(conn, 1_000_000, vec![0xEE; room + 1])
                .expect_err("one byte too many");
            assert!(
                matches!(r.error, Error::WriteQueueFull { queued, limit: CAP } if queued == q),
                "{:?}",
                r.error
            );
            assert_eq!(r.buffer, Some(vec![0xEE; room + 1]));
            w.write(conn, 1_000_001, vec![0xEE; room])
                .expect("exactly the room left is accepted");
            assert_eq!(w.queued_write_bytes(conn), Some(CAP));
            accepted.push((1_000_001, vec![0xEE; room]));
        }
    } else {
        for i in 0..attempts {
            write_via(&mut w, &mut sub, via, conn, i, piece(i)).expect("refusals come as completions");
        }
        submit_marker(&mut w, &mut sub, via, conn);
        completions = collect_until(&mut w, LIMIT, |out| out.iter().any(|c| c.context == MARKER));
        let marker = completions.iter().position(|c| c.context == MARKER).unwrap();
        let marker = completions.remove(marker);
        assert!(
            matches!(marker.error, Some(Error::Deadline)),
            "{:?}",
            marker.error
        );
        let mut refused_ids = Vec::new();
        completions.retain(|c| match &c.error {
            Some(Error::WriteQueueFull { .. }) => {
                assert_eq!(c.op, Op::Write);
                assert_eq!(c.bytes, 0);
                let buffer = match &c.buffer {
                    Buffer::User(b) => Some(b),
                    _ => None,
                };
                check_refusal(c.context, c.error.as_ref().unwrap(), buffer);
                refused_ids.push(c.context);
                false
            }
            _ => true,
        });
        refused = refused_ids.len();
        accepted = (0..attempts)
            .filter(|i| !refused_ids.contains(i))
            .map(|i| (i, piece(i)))
            .collect();
        // The first refusal comes once the queue is full: every write
        // before it was accepted.
        if let Some(&first) = refused_ids.first() {
            assert!((0..first).all(|i| accepted.iter().any(|&(a, _)| a == i)));
        }
    }
    assert!(
        refused > 0,
        "{mode:?}/{via:?}: no write refused after {attempts} of {PIECE} bytes"
    );
    let pieces = accepted.iter().filter(|(i, _)| *i < attempts).count();
    assert!(
        pieces <= max_accepted,
        "{mode:?}/{via:?}: {pieces} writes of {PIECE} bytes accepted; the kernel holds at most {kernel} \
         bytes and the cap is {CAP}, so at most {max_accepted} fit"
    );

    // The peer reads everything accepted.
    let expected: Vec<u8> = accepted.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let total = expected.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; total];
        peer.read_exact(&mut got).unwrap();
        (peer, got)
    });
    let writes_done = |out: &[Completion<u64, Vec<u8>>]| out.iter().filter(|c| c.op == Op::Write).count();
    let already = writes_done(&completions);
    completions.extend(collect_until(&mut w, LIMIT, |out| {
        already + writes_done(out) >= accepted.len()
    }));
    let (mut peer, got) = reader.join().expect("peer thread");
    assert!(
        got == expected,
        "{mode:?}/{via:?}: the bytes delivered differ from the accepted writes"
    );
    let order: Vec<u64> = completions
        .iter()
        .filter(|c| c.op == Op::Write)
        .map(|c| c.context)
        .collect();
    let want_order: Vec<u64> = accepted.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, want_order, "accepted writes complete in submission order");
    for (c, (_, bytes)) in completions.iter().zip(&accepted) {
        assert!(c.error.is_none(), "write {}: {:?}", c.context, c.error);
        assert_eq!(c.bytes, bytes.len());
        assert!(
            c.buffer == Buffer::User(bytes.clone()),
            "write {}: buffer handed back intact",
            c.context
        );
    }
    assert_eq!(
        w.queued_write_bytes(conn),
        Some(0),
        "{mode:?}: the queue is empty once drained"
    );

    // Accepted again: four pieces fill the cap exactly.
    for i in 0..4u64 {
        write_via(&mut w, &mut sub, via, conn, 2_000_000 + i, piece(100 + i)).expect("accepted again");
    }
    let done = collect_until(&mut w, LIMIT, |out| out.len() >= 4);
    assert_eq!(done.len(), 4);
    for (k, c) in done.iter().enumerate() {
        assert_eq!(c.context, 2_000_000 + k as u64);
        assert!(c.error.is_none(), "write after the drain: {:?}", c.error);
    }
    let mut got = vec![0u8; 4 * PIECE];
    peer.read_exact(&mut got).unwrap();
    let want: Vec<u8> = (0..4).flat_map(|i| piece(100 + i)).collect();
    assert!(got == want, "bytes written after the drain");
    drop(sub);
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn the_cap_refuses_writes_and_bounds_the_queue_inline() {
    cap_refuses_then_drains(Mode::Inline, Via::Owner);
}

#[test]
fn the_cap_refuses_writes_and_bounds_the_queue_through_a_submitter() {
    cap_refuses_then_drains(Mode::Inline, Via::Submitter);
}

#[test]
fn the_cap_refuses_writes_and_bounds_the_queue_background() {
    cap_refuses_then_drains(Mode::Background, Via::Owner);
}

// ----- 2. a single write larger than the cap ------------------------------------

/// The refusal of `buf`, wherever it comes.
fn refusal_of(
    w: &mut W,
    sub: &mut Submitter<u64, Vec<u8>>,
    via: Via,
    conn: Conn,
    ctx: u64,
    buf: Vec<u8>,
) -> (Error, Option<Vec<u8>>) {
    let r = write_via(w, sub, via, conn, ctx, buf);
    if refused_at_submission(w, via) {
        let r = r.expect_err("refused at submission");
        assert_eq!(r.context, ctx);
        (r.error, r.buffer)
    } else {
        r.expect("refusals come as completions");
        let mut c = collect_until(w, LIMIT, |out| !out.is_empty());
        assert_eq!(c.len(), 1);
        let c = c.pop().unwrap();
        assert_eq!((c.op, c.context, c.bytes), (Op::Write, ctx, 0));
        (c.error.expect("an error"), c.buffer.into_user())
    }
}

/// Nothing queued, the peer reading: a write one byte over the cap (or far
/// over it) is refused all the same; one of exactly the cap goes through.
fn oversized_write(mode: Mode, via: Via) {
    let fds = util::FdCheck::new();
    let mut w = capped(mode, CAP);
    let mut sub = w.submitter();
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let conn = w.watch(server).expect("watch");

    for (k, len) in [CAP + 1, 4 * MIB].into_iter().enumerate() {
        let buf = util::pattern(len as u64, len);
        let (e, back) = refusal_of(&mut w, &mut sub, via, conn, k as u64, buf.clone());
        assert!(
            matches!(
                e,
                Error::WriteQueueFull {
                    queued: 0,
                    limit: CAP
                }
            ),
            "{len} bytes with nothing queued: {e:?}"
        );
        assert!(back == Some(buf), "the refused buffer comes back intact");
    }
    if mode == Mode::Inline {
        assert_eq!(w.queued_write_bytes(conn), Some(0));
    }

    let exact = util::pattern(7, CAP);
    write_via(&mut w, &mut sub, via, conn, 10, exact.clone()).expect("a write of exactly the cap");
    let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert_eq!(c.context, 10);
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!(c.bytes, CAP);
    let mut got = vec![0u8; CAP];
    peer.read_exact(&mut got).unwrap();
    assert!(got == exact);
    drop(sub);
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn a_single_write_larger_than_the_cap_is_always_refused_inline() {
    oversized_write(Mode::Inline, Via::Owner);
}

#[test]
fn a_single_write_larger_than_the_cap_is_always_refused_through_a_submitter() {
    oversized_write(Mode::Inline, Via::Submitter);
}

#[test]
fn a_single_write_larger_than_the_cap_is_always_refused_background() {
    oversized_write(Mode::Background, Via::Owner);
}

/// The cap covers datagrams sent with `send_to` too: one longer than the
/// cap is refused with its buffer, one of exactly the cap is sent.
fn oversized_datagram(mode: Mode) {
    const DGRAM_CAP: usize = 1000;
    let fds = util::FdCheck::new();
    let mut w = capped(mode, DGRAM_CAP);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let conn = w.watch(udp).expect("watch");

    let big = util::pattern(1001, DGRAM_CAP + 1);
    let r = w.send_to(conn, 1, big.clone(), peer_addr);
    let (e, back) = if mode == Mode::Inline {
        let r = r.expect_err("refused at submission");
        (r.error, r.buffer)
    } else {
        r.expect("refused as a completion");
        let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
        assert_eq!((c.op, c.context), (Op::SendTo, 1));
        (c.error.unwrap(), c.buffer.into_user())
    };
    assert!(
        matches!(
            e,
            Error::WriteQueueFull {
                queued: 0,
                limit: DGRAM_CAP
            }
        ),
        "{e:?}"
    );
    assert!(back == Some(big));

    let exact = util::pattern(1000, DGRAM_CAP);
    w.send_to(conn, 2, exact.clone(), peer_addr)
        .expect("a datagram of exactly the cap");
    let c = collect_until(&mut w, LIMIT, |out| !out.is_empty()).pop().unwrap();
    assert!(c.error.is_none(), "{:?}", c.error);
    let mut buf = vec![0u8; 2048];
    let n = peer.recv(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], &exact[..]);
    drop(w);
    drop(peer);
    fds.check();
}

#[test]
fn a_datagram_larger_than_the_cap_is_refused_inline() {
    oversized_datagram(Mode::Inline);
}

#[test]
fn a_datagram_larger_than_the_cap_is_refused_background() {
    oversized_datagram(Mode::Background);
}

// ----- 3. queued_write_bytes without a cap -----------------------------------------

/// No cap: 1 MiB to a peer that does not read is all accepted, and
/// `queued_write_bytes` reports what the kernel did not take (more than
/// zero, at most 1 MiB, at least 1 MiB less twice what the kernel holds),
/// growing with each write; 0 once the peer read it all.
#[test]
fn queued_write_bytes_reports_the_queue_without_a_cap_inline() {
    let fds = util::FdCheck::new();
    let mut w: W = util::watcher(Mode::Inline);
    let (peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let kernel = small_kernel_buffers(&server, &peer);
    let conn = w.watch(server).expect("watch");
    assert_eq!(w.queued_write_bytes(conn), Some(0));

    const N: u64 = (MIB / PIECE) as u64;
    let mut expected = Vec::with_capacity(MIB);
    let mut last = 0;
    for i in 0..N {
        w.write(conn, i, piece(i))
            .expect("no cap: every write is accepted");
        expected.extend_from_slice(&piece(i));
        let q = w.queued_write_bytes(conn).unwrap();
        assert!(
            q <= expected.len(),
            "{q} bytes queued after {} submitted",
            expected.len()
        );
        assert!(
            q >= last,
            "the queue shrank from {last} to {q} with nothing driving it"
        );
        last = q;
    }
    let q = w.queued_write_bytes(conn).unwrap();
    assert!(q > 0 && q <= MIB, "{q} bytes queued");
    assert!(
        q + 2 * kernel >= MIB,
        "{q} bytes queued, but the kernel holds about {kernel} of the 1 MiB written"
    );

    drain_then_free(&mut w, conn, peer, &expected);
    drop(w);
    fds.check();
}

/// The end of the `queued_write_bytes` tests: the peer reads all of
/// `expected` (the writes with contexts 0, 1, ..., one piece each), every
/// write completes in order without error, the queue is then empty, and
/// once `conn` is freed it has none.
fn drain_then_free(w: &mut W, conn: gaio::Conn, mut peer: TcpStream, expected: &[u8]) {
    let len = expected.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; len];
        peer.read_exact(&mut got).unwrap();
        (peer, got)
    });
    let writes = len / PIECE;
    let done = collect_until(w, LIMIT, |out| out.len() >= writes);
    assert_eq!(done.len(), writes);
    for (k, c) in done.iter().enumerate() {
        assert_eq!(c.context, k as u64);
        assert!(c.error.is_none(), "{:?}", c.error);
    }
    let (peer, got) = reader.join().expect("peer thread");
    assert!(got == expected, "the bytes delivered");
    assert_eq!(w.queued_write_bytes(conn), Some(0), "drained");
    w.free(conn).unwrap();
    assert_eq!(
        w.queued_write_bytes(conn),
        None,
        "a freed connection has no queue"
    );
    drop(peer);
}

/// In background mode the queue is counted too, whichever thread holds
/// the engine: what the kernel has not taken, then 0 once drained, and
/// `None` for a freed connection.
#[test]
fn queued_write_bytes_in_background_mode() {
    let fds = util::FdCheck::new();
    let mut w: W = util::watcher(Mode::Background);
    let (peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let kernel = small_kernel_buffers(&server, &peer);
    let conn = w.watch(server).expect("watch");
    assert_eq!(w.queued_write_bytes(conn), Some(0));
    const N: u64 = (MIB / PIECE) as u64;
    for i in 0..N {
        w.write(conn, i, piece(i)).expect("write");
    }
    // The kernel takes about `kernel` bytes (at most twice that): the rest
    // waits in the queue.
    let queued = w.queued_write_bytes(conn).expect("known");
    assert!(
        queued >= MIB.saturating_sub(2 * kernel) && queued <= MIB,
        "{queued} queued"
    );
    // The owner stays away: the background thread takes the engine (and
    // may hand the kernel more as its buffers grow), and the count asks it
    // back.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let later = w.queued_write_bytes(conn).expect("known");
    assert!(
        later <= queued && later >= MIB.saturating_sub(4 * kernel),
        "{later} queued, {queued} before"
    );
    let want: Vec<u8> = (0..N).flat_map(piece).collect();
    drain_then_free(&mut w, conn, peer, &want);
    drop(w);
    fds.check();
}

// ----- 4. the builder's range --------------------------------------------------------

#[test]
fn the_builder_refuses_a_cap_of_zero_or_beyond_4_gib() {
    let _lock = util::shared();
    let mut bad = vec![0usize];
    if usize::BITS > 32 {
        bad.push(u32::MAX as usize + 1);
    }
    for value in bad {
        let r: Result<W, Error> = gaio::Builder::new().max_queued_write_bytes(value).build();
        match r {
            Err(Error::InvalidSetting(s)) => {
                assert_eq!(s.name, "max_queued_write_bytes");
                assert_eq!(s.value, value);
                assert_eq!((s.min, s.max), (1, u32::MAX as usize));
            }
            Err(e) => panic!("max_queued_write_bytes({value}): {e:?}"),
            Ok(_) => panic!("max_queued_write_bytes({value}) was accepted"),
        }
    }
    for value in [1usize, u32::MAX as usize] {
        for mode in util::MODES {
            let w: Result<W, Error> = gaio::Builder::new()
                .max_queued_write_bytes(value)
                .mode(mode)
                .build();
            assert!(
                w.is_ok(),
                "max_queued_write_bytes({value}) in {mode:?}: {:?}",
                w.err()
            );
        }
    }
}
