//! Engine unit tests on the fake completion poller (`fake_ring`): the
//! rules a ring needs of the engine (a request stored before its I/O
//! starts, a request in flight leaving only after its cancel, the result
//! of I/O that ended during the cancel delivered) and the ring's own
//! kinds of trouble (an empty buffer ring, results landing late), with
//! scripted races instead of timing.

use std::time::{Duration, Instant};

use super::tests::{collect, quiet};
use crate::fake::{self, dummy_fd, FakeHandle, Scripted};
use crate::fake_ring::{last_ring, FakeRing, RingHandle};
use crate::{Buffer, Builder, Conn, Error, Mode, Submit, Watcher};

type W<B = Vec<u8>> = Watcher<FakeRing, u32, B>;

fn setup(mode: Mode) -> (W, FakeHandle, RingHandle) {
    setup_with(mode)
}

fn setup_with<B: crate::IoBuf>(mode: Mode) -> (W<B>, FakeHandle, RingHandle) {
    let w: W<B> = Builder::new().mode(mode).build().expect("build");
    (w, fake::last(), last_ring())
}

/// A buffer that holds its bytes inline: moving it moves them, as moving
/// a request into the engine's table would.
#[derive(Debug, PartialEq, Eq)]
struct Inline([u8; 16]);

impl crate::IoBuf for Inline {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl crate::IoBufMut for Inline {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// The kernel keeps the address a read was given: the engine stores the
/// request (and so a buffer held inline) before the read starts, and the
/// bytes land in the buffer the completion hands back.
#[test]
fn a_buffer_held_inline_is_stored_before_its_read_starts() {
    let (mut w, f, _r) = setup_with::<Inline>(Mode::Inline);
    let c = w.watch(dummy_fd()).expect("watch");
    w.read(c, 1, Inline([0; 16])).unwrap();
    f.send(c.fd(), b"inline");
    let out = collect(&mut w, 1, LIMIT);
    assert_eq!(out.len(), 1);
    assert!(out[0].error.is_none(), "{:?}", out[0].error);
    assert_eq!(out[0].data(), b"inline");
}

/// A buffer that counts the times it is asked for its bytes to fill:
/// user code, which the engine must not run while the kernel may write
/// into the memory it returned (a buffer may move its bytes when asked).
#[derive(Debug)]
struct Counted {
    bytes: Vec<u8>,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::IoBuf for Counted {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl crate::IoBufMut for Counted {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &mut self.bytes
    }
}

/// Readiness events for a connection whose read is in the kernel make
/// the engine try its requests again (a ring's own polls and hang-ups
/// post them); the read in flight is left alone: its buffer's
/// `as_bytes_mut` is not called until the read has landed.
#[test]
fn a_read_in_flight_is_not_asked_for_its_buffer_until_it_lands() {
    use std::sync::atomic::Ordering::Relaxed;
    let (mut w, f, r) = setup_with::<Counted>(Mode::Inline);
    let c = w.watch(dummy_fd()).expect("watch");
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    r.with(|s| s.paused = true);
    let buf = Counted {
        bytes: vec![0; 8],
        asked: std::sync::Arc::clone(&asked),
    };
    w.read(c, 1, buf).unwrap();
    quiet(&mut w);
    assert_eq!(r.requests(), 1, "the read is in flight");
    let at_start = asked.load(Relaxed);
    assert!(at_start >= 1, "the read was started with the buffer's bytes");
    // The bytes are there and the socket says so, three times, while the
    // paused kernel holds the read.
    f.send(c.fd(), b"landed");
    for _ in 0..3 {
        f.event(c.fd(), true, true, false);
        quiet(&mut w);
    }
    assert_eq!(
        asked.load(Relaxed),
        at_start,
        "the buffer was asked for its bytes while the kernel held them"
    );
    r.with(|s| s.paused = false);
    let out = collect(&mut w, 1, LIMIT);
    assert_eq!(out.len(), 1);
    assert!(out[0].error.is_none(), "{:?}", out[0].error);
    assert_eq!((out[0].context, out[0].bytes), (1, 6));
    assert_eq!(out[0].data(), b"landed");
    assert!(matches!(&out[0].buffer, crate::Buffer::User(b) if b.bytes.len() == 8));
}

fn watch(w: &mut W) -> Conn {
    w.watch(dummy_fd()).expect("watch")
}

/// Interpreted (Miri), everything takes far longer.
const LIMIT: Duration = Duration::from_secs(if cfg!(miri) { 120 } else { 2 });

#[test]
fn a_read_starts_in_the_kernel_and_completes_when_it_lands() {
    let (mut w, f, r) = setup(Mode::Inline);
    let c = watch(&mut w);
    w.read(c, 1, vec![0; 8]).unwrap();
    assert_eq!(r.requests(), 1, "the read is in flight at once");
    quiet(&mut w);
    // Data arrives; no readiness event is scripted: the ring reports the
    // read's end by itself.
    f.send(c.fd(), b"ring");
    let done = collect(&mut w, 1, LIMIT);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].context, done[0].data()), (1, &b"ring"[..]));
    assert!(done[0].error.is_none());
    assert_eq!(r.requests(), 0);
}

#[test]
fn queued_writes_go_out_in_order_one_request_at_a_time() {
    let (mut w, f, r) = setup(Mode::Inline);
    let c = watch(&mut w);
    f.conn(c.fd(), |k| k.write_room = 5);
    for (i, msg) in [&b"abc"[..], b"defg", b"hi"].into_iter().enumerate() {
        w.write(c, i as u32, msg.to_vec()).unwrap();
    }
    assert_eq!(r.requests(), 1, "one write in flight per connection");
    let first = collect(&mut w, 1, LIMIT);
    assert_eq!(
        first.len(),
        1,
        "the room took the first write and part of the second"
    );
    assert_eq!((first[0].context, first[0].bytes), (0, 3));
    f.conn(c.fd(), |k| k.write_room = 100);
    let rest = collect(&mut w, 2, LIMIT);
    let order: Vec<u32> = rest.iter().map(|c| c.context).collect();
    assert_eq!(order, [1, 2]);
    assert_eq!(f.conn(c.fd(), |k| k.written.clone()), b"abcdefghi");
}

/// Shutdowns queued behind one: the first takes a turn of the ring, the
/// rest complete with it (the write side is shut: nothing to ask the
/// kernel), not one turn each.
#[test]
#[cfg_attr(
    miri,
    ignore = "a real socket pair: Miri cannot tell its kind, so the shutdown is refused as not a stream"
)]
fn shutdowns_queued_behind_one_complete_in_its_turn() {
    let (mut w, f, r) = setup(Mode::Inline);
    let (a, _peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let c = w.watch(a).expect("watch stream");
    for ctx in 1..=3 {
        w.shutdown(c, ctx).unwrap();
    }
    assert_eq!(r.requests(), 1, "the first shutdown is in flight");
    let mut done = Vec::new();
    w.wait_io_timeout(&mut done, LIMIT).unwrap();
    let got: Vec<(crate::Op, u32)> = done.iter().map(|d| (d.op, d.context)).collect();
    let shutdowns = [1, 2, 3].map(|ctx| (crate::Op::Shutdown, ctx));
    assert_eq!(got, shutdowns, "not all in the first shutdown's turn");
    assert!(done.iter().all(|d| d.error.is_none()));
    assert_eq!(f.conn(c.fd(), |k| k.shutdowns), 1);
    assert_eq!(r.requests(), 0);
}

/// The deadline fires while the read's bytes are landing: the cancel finds
/// the read ended, and its bytes are delivered, not lost and not reported
/// as a deadline.
#[test]
fn a_read_that_lands_as_its_deadline_fires_delivers_its_bytes() {
    for mode in [Mode::Inline, Mode::Background] {
        let (mut w, f, r) = setup(mode);
        let c = watch(&mut w);
        r.with(|s| {
            s.paused = true;
            s.land_on_cancel = true;
        });
        // The bytes are there, but the paused kernel has not run the read
        // when its deadline fires.
        f.send(c.fd(), b"just in time");
        // Far enough ahead that the read is stored before it passes, even
        // interpreted.
        let ahead = Duration::from_millis(if cfg!(miri) { 3_000 } else { 30 });
        w.read_timeout(c, 1, vec![0; 16], Instant::now() + ahead).unwrap();
        let done = collect(&mut w, 1, LIMIT);
        assert_eq!(done.len(), 1, "{mode:?}");
        assert!(done[0].error.is_none(), "{mode:?}: {:?}", done[0].error);
        assert_eq!(done[0].data(), b"just in time", "{mode:?}");
        assert_eq!(r.with(|s| (s.kept, s.cancelled)), (1, 0), "{mode:?}");
        // The next read finds nothing lost or repeated.
        r.with(|s| s.paused = false);
        f.send(c.fd(), b"next");
        w.read(c, 2, vec![0; 16]).unwrap();
        let next = collect(&mut w, 1, LIMIT);
        assert_eq!(next[0].data(), b"next", "{mode:?}");
    }
}

/// A detach behind a read in the kernel does not wait for the peer: the
/// read is cancelled, and if its bytes landed meanwhile it completes with
/// them, before the detach (nothing lost); the reads behind it, which took
/// nothing, complete after the detach with `ConnClosed`. With nothing
/// landed, the read too completes after the detach, having taken nothing.
#[test]
fn a_detach_cancels_the_read_in_the_kernel_and_delivers_what_landed() {
    for (landed, mode) in [
        (true, Mode::Inline),
        (true, Mode::Background),
        (false, Mode::Inline),
    ] {
        let (mut w, f, r) = setup(mode);
        let c = watch(&mut w);
        r.with(|s| {
            s.paused = true;
            s.land_on_cancel = landed;
        });
        if landed {
            f.send(c.fd(), b"landing");
        }
        w.read(c, 1, vec![0; 16]).unwrap();
        w.read(c, 2, vec![0; 16]).unwrap();
        w.detach(c, 3).unwrap();
        let mut done = collect(&mut w, 3, LIMIT);
        let order: Vec<(crate::Op, u32)> = done.iter().map(|d| (d.op, d.context)).collect();
        let want = if landed {
            [(crate::Op::Read, 1), (crate::Op::Detach, 3), (crate::Op::Read, 2)]
        } else {
            [(crate::Op::Detach, 3), (crate::Op::Read, 1), (crate::Op::Read, 2)]
        };
        assert_eq!(order, want, "landed {landed} {mode:?}");
        for d in &done {
            match (d.op, d.context) {
                (crate::Op::Read, 1) if landed => {
                    assert!(d.error.is_none(), "{mode:?}: {:?}", d.error);
                    assert_eq!(d.data(), b"landing", "{mode:?}");
                }
                (crate::Op::Read, _) => {
                    assert!(
                        matches!(d.error, Some(Error::ConnClosed)),
                        "{mode:?}: {:?}",
                        d.error
                    );
                    assert_eq!(d.bytes, 0);
                }
                _ => assert!(d.error.is_none(), "{mode:?}: {:?}", d.error),
            }
        }
        let detach = done.iter_mut().find(|d| d.op == crate::Op::Detach).unwrap();
        assert!(detach.detached.take().is_some(), "{mode:?}: the descriptor");
        assert_eq!(r.requests(), 0, "{mode:?}: nothing stays in flight");
        assert_eq!(r.with(|s| s.cancelled + s.kept), 1, "{mode:?}: one cancel");
    }
}

/// The deadline fires with nothing landed: the read is cancelled and
/// reports the deadline; data arriving later goes to the next read.
#[test]
fn a_read_cancelled_at_its_deadline_leaves_later_bytes_for_the_next_read() {
    let (mut w, f, r) = setup(Mode::Inline);
    let c = watch(&mut w);
    let deadline = Instant::now() + Duration::from_millis(20);
    w.read_timeout(c, 1, vec![0; 16], deadline).unwrap();
    let done = collect(&mut w, 1, LIMIT);
    assert!(
        matches!(done[0].error, Some(Error::Deadline)),
        "{:?}",
        done[0].error
    );
    assert_eq!(done[0].bytes, 0);
    assert_eq!(r.with(|s| s.cancelled), 1);
    assert_eq!(r.requests(), 0, "nothing stays in flight");
    f.send(c.fd(), b"later");
    w.read(c, 2, vec![0; 16]).unwrap();
    assert_eq!(collect(&mut w, 1, LIMIT)[0].data(), b"later");
}

/// `free` while a write is in flight and the kernel sent part of it: the
/// write reports what was sent, with `ConnClosed`; the writes queued
/// behind it report nothing sent.
#[test]
fn free_with_a_write_in_flight_reports_the_bytes_it_sent() {
    let (mut w, f, r) = setup(Mode::Inline);
    let c = watch(&mut w);
    let fd = c.fd();
    f.conn(fd, |k| k.write_room = 4);
    r.with(|s| {
        s.paused = true;
        s.land_on_cancel = true;
    });
    w.write(c, 1, b"abcdefgh".to_vec()).unwrap();
    w.write(c, 2, b"ij".to_vec()).unwrap();
    w.free(c).unwrap();
    let done = collect(&mut w, 2, LIMIT);
    let got: Vec<(u32, usize, bool)> = done
        .iter()
        .map(|d| (d.context, d.bytes, matches!(d.error, Some(Error::ConnClosed))))
        .collect();
    assert_eq!(got, [(1, 4, true), (2, 0, true)]);
    assert!(matches!(&done[0].buffer, Buffer::User(b) if b == b"abcdefgh"));
    assert_eq!(f.deregistered(fd, |k| k.written.clone()), Some(b"abcd".to_vec()));
    assert_eq!(r.requests(), 0);
}

/// `close` with reads and writes in flight: every request comes back with
/// `WatcherClosed` and its buffer, and no request is left in the ring (the
/// fake asserts none is in flight at deregistration).
#[test]
fn close_ends_every_request_in_flight_before_the_buffers_go_back() {
    for mode in [Mode::Inline, Mode::Background] {
        let (mut w, f, r) = setup(mode);
        let conns: Vec<Conn> = (0..4).map(|_| watch(&mut w)).collect();
        for (i, &c) in conns.iter().enumerate() {
            f.conn(c.fd(), |k| k.write_room = 0);
            w.read(c, i as u32, vec![0; 32]).unwrap();
            w.write(c, 100 + i as u32, vec![7; 64]).unwrap();
        }
        quiet(&mut w);
        assert_eq!(r.requests(), 8, "{mode:?}");
        w.close();
        let mut out = Vec::new();
        let end = Instant::now() + LIMIT;
        while out.len() < 8 && Instant::now() < end {
            if w.wait_io_timeout(&mut out, Duration::from_millis(5)).is_err() {
                break;
            }
        }
        assert_eq!(out.len(), 8, "{mode:?}");
        assert!(
            out.iter().all(|c| matches!(c.error, Some(Error::WatcherClosed))),
            "{mode:?}"
        );
        assert_eq!(r.requests(), 0, "{mode:?}");
        assert_eq!(r.with(|s| s.cancelled), 8, "{mode:?}");
    }
}

/// Buffer-less reads that find the kernel's buffer ring empty wait and
/// retry: back-pressure, never an error, and the bytes arrive whole.
#[test]
fn an_empty_buffer_ring_is_back_pressure_not_an_error() {
    let (mut w, f, _r) = setup(Mode::Inline);
    let c = watch(&mut w);
    f.conn(c.fd(), |k| {
        k.read_script.extend([Scripted::Starved, Scripted::Starved]);
        k.inbound.extend(b"after the drought");
    });
    w.read_swap(c, 9).unwrap();
    let done = collect(&mut w, 1, LIMIT);
    assert_eq!(done.len(), 1);
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(done[0].data(), b"after the drought");
    assert!(
        f.conn(c.fd(), |k| k.reads) >= 3,
        "two empty-ring answers, then the read"
    );
}

/// A buffer-less read whose bytes landed while the swap memory had less
/// room gives the rest to the next read: nothing lost, order kept.
#[test]
fn swap_reads_deliver_a_large_landing_in_order() {
    let w: W = Builder::new().swap_size(4096).build().expect("build");
    let (mut w, f) = (w, fake::last());
    // The engine's least room, so results land in less than they brought.
    last_ring().with(|r| r.swap_read_room = 0);
    let c = watch(&mut w);
    let all: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    f.send(c.fd(), &all);
    let mut got = Vec::new();
    let end = Instant::now() + LIMIT;
    while got.len() < all.len() && Instant::now() < end {
        w.read_swap(c, 0).unwrap();
        let done = collect(&mut w, 1, LIMIT);
        assert!(done[0].error.is_none(), "{:?}", done[0].error);
        got.extend_from_slice(done[0].data());
    }
    assert!(
        got == all,
        "{} of {} bytes, or out of order",
        got.len(),
        all.len()
    );
}

/// Queued writes sharing one deadline, on a ring: when it passes, the
/// head's write (in flight) ends, and the writes behind it, whose deadline
/// has passed too, start no I/O on the way. The socket has room by then
/// and a cancel finds its request ended (as a kernel that ran a send at
/// its submission would): a write started there would move its bytes.
#[test]
fn writes_past_their_deadline_start_no_io_as_the_one_before_them_ends() {
    let (mut w, f, r) = setup(Mode::Inline);
    let c = watch(&mut w);
    f.conn(c.fd(), |k| k.write_room = 0);
    // Far enough for every write to be submitted first, even interpreted.
    let ahead = Duration::from_millis(if cfg!(miri) { 3000 } else { 30 });
    let deadline = Instant::now() + ahead;
    for i in 0..3u32 {
        w.write_timeout(c, i, vec![b'a' + i as u8; 4], deadline).unwrap();
    }
    std::thread::sleep(ahead + Duration::from_millis(10));
    r.with(|s| {
        s.paused = true;
        s.land_on_cancel = true;
    });
    f.conn(c.fd(), |k| k.write_room = 100);
    let done = collect(&mut w, 3, LIMIT);
    let seen: Vec<_> = done.iter().map(|d| (d.context, d.bytes)).collect();
    // The head's write was in flight before its deadline: what the kernel
    // sent counts. The others had not started.
    assert_eq!(seen, [(0, 4), (1, 0), (2, 0)]);
    assert!(
        done[1..].iter().all(|d| matches!(d.error, Some(Error::Deadline))),
        "{:?}",
        done.iter().map(|d| &d.error).collect::<Vec<_>>()
    );
    assert_eq!(
        f.conn(c.fd(), |k| k.written.clone()),
        b"aaaa",
        "no write past its deadline moved a byte"
    );
}
