//! Engine unit tests against the deterministic fake poller: scripted
//! readiness and scripted I/O, no sockets, no timing assumptions beyond
//! "a retry timer fires within a generous bound".

use std::time::{Duration, Instant};

use crate::fake::{self, dummy_fd, FakeHandle, FakePoller, Scripted};
use crate::{Buffer, Builder, Completion, Conn, Error, Op, Submit, Watcher};

pub(super) type W<B = Vec<u8>> = Watcher<FakePoller, u32, B>;

pub(super) fn setup<B: crate::IoBuf>() -> (W<B>, FakeHandle) {
    let w: W<B> = Builder::new().build().expect("build");
    (w, fake::last())
}

/// Waits up to `limit` for `n` completions.
pub(super) fn collect<P: crate::Poller, B: crate::IoBuf>(
    w: &mut Watcher<P, u32, B>,
    n: usize,
    limit: Duration,
) -> Vec<Completion<u32, B>> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < end {
        w.wait_io_timeout(&mut out, Duration::from_millis(5))
            .expect("wait_io");
    }
    out
}

/// Checks that no completion comes for a moment.
pub(super) fn quiet<P: crate::Poller, B: crate::IoBuf>(w: &mut Watcher<P, u32, B>) {
    let mut out = Vec::new();
    w.wait_io_timeout(&mut out, Duration::from_millis(20))
        .expect("wait_io");
    assert!(
        out.is_empty(),
        "unexpected completion: {:?} {:?}",
        out[0].op,
        out[0].error
    );
}

fn watch<B: crate::IoBuf>(w: &mut W<B>) -> Conn {
    w.watch(dummy_fd()).expect("watch")
}

#[test]
fn a_read_that_would_block_waits_for_an_edge_and_never_polls_the_fd() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    w.read(c, 7, vec![0; 16]).unwrap();
    assert_eq!(f.conn(c.fd(), |k| k.reads), 1, "tried at submission");
    quiet(&mut w);
    // Data arrives without an event: an edge-triggered engine must not
    // look (it would be a wasted system call on every turn).
    f.send(c.fd(), b"hello");
    quiet(&mut w);
    assert_eq!(f.conn(c.fd(), |k| k.reads), 1);
    f.event(c.fd(), true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].context, done[0].op, done[0].data()),
        (7, Op::Read, &b"hello"[..])
    );
    assert!(done[0].error.is_none());
}

#[test]
fn a_spurious_edge_costs_one_attempt_and_no_completion() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    w.read(c, 0, vec![0; 4]).unwrap();
    f.event(c.fd(), true, true, false);
    quiet(&mut w);
    quiet(&mut w);
    assert_eq!(f.conn(c.fd(), |k| k.reads), 2, "one at submission, one per edge");
}

#[test]
fn queued_writes_are_gathered_into_one_call_and_complete_in_order() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    f.conn(c.fd(), |k| k.write_room = 0);
    // The first write finds no room: the rest queue behind it.
    for (i, m) in [&b"hello world"[..], b"foo", b"bar"].iter().enumerate() {
        w.write(c, i as u32, m.to_vec()).unwrap();
    }
    quiet(&mut w);
    f.conn(c.fd(), |k| k.write_room = 5);
    f.event(c.fd(), false, true, false);
    quiet(&mut w);
    assert_eq!(
        f.conn(c.fd(), |k| (k.written.clone(), k.writes.last().copied())),
        (b"hello".to_vec(), Some(3))
    );
    f.conn(c.fd(), |k| k.write_room = usize::MAX);
    f.event(c.fd(), false, true, false);
    let done = collect(&mut w, 3, Duration::from_secs(1));
    assert_eq!(done.iter().map(|d| d.context).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(done.iter().map(|d| d.bytes).collect::<Vec<_>>(), vec![11, 3, 3]);
    assert!(done.iter().all(|d| d.error.is_none() && d.op == Op::Write));
    assert_eq!(
        f.conn(c.fd(), |k| k.written.clone()),
        b"hello worldfoobar".to_vec()
    );
}

#[test]
fn enobufs_is_retried_without_an_edge() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    f.conn(c.fd(), |k| k.write_script.push_back(Scripted::Starved));
    w.write(c, 1, b"abc".to_vec()).unwrap();
    // No event is ever reported: only the engine's retry can finish it.
    let done = collect(&mut w, 1, Duration::from_secs(2));
    assert_eq!(done.len(), 1, "starved write was never retried");
    assert!(done[0].error.is_none());
    assert_eq!(f.conn(c.fd(), |k| k.written.clone()), b"abc".to_vec());
}

#[test]
fn io_errors_complete_the_request_with_the_os_error_and_its_progress() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    f.conn(c.fd(), |k| {
        k.write_room = 2;
        k.write_script.extend([Scripted::Fail(104)]); // ECONNRESET on the first call
    });
    w.write(c, 3, b"data".to_vec()).unwrap();
    f.conn(c.fd(), |k| k.read_script.push_back(Scripted::Fail(104)));
    w.read(c, 4, vec![0; 8]).unwrap();
    let mut done = collect(&mut w, 2, Duration::from_secs(1));
    done.sort_by_key(|d| d.context);
    for d in &done {
        let e = d.error.as_ref().expect("error expected");
        assert_eq!(e.os_error().and_then(|e| e.raw_os_error()), Some(104), "{e:?}");
        assert_eq!(d.bytes, 0);
    }
    assert_eq!(done[0].buffer, Buffer::User(b"data".to_vec()));
}

#[test]
fn an_event_with_a_stale_token_never_reaches_the_connection_that_reused_the_fd() {
    let (mut w, f) = setup::<Vec<u8>>();
    let old = watch(&mut w);
    let old_token = f.conn(old.fd(), |k| k.token);
    w.free(old).unwrap();
    let new = watch(&mut w);
    assert_eq!(new.fd(), old.fd(), "the OS reuses the lowest free number");
    assert_ne!(new, old);
    w.read(new, 9, vec![0; 8]).unwrap(); // would block: nothing inbound
    f.send(new.fd(), b"mine");
    f.event_token(old_token, true, true, true);
    quiet(&mut w);
    // A stale handle is refused too.
    w.read(old, 10, vec![0; 8]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(
        matches!(done[0].error, Some(Error::ConnClosed)),
        "{:?}",
        done[0].error
    );
    assert_eq!(done[0].context, 10);
    f.event(new.fd(), true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!((done[0].context, done[0].data()), (9, &b"mine"[..]));
}

#[test]
fn hang_up_ends_pending_and_later_reads_with_eof_without_more_system_calls() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    w.read(c, 1, vec![0; 8]).unwrap();
    w.read(c, 2, vec![0; 8]).unwrap();
    f.conn(c.fd(), |k| {
        k.inbound.extend(b"last");
        k.eof = true;
    });
    f.event(c.fd(), true, false, true);
    let done = collect(&mut w, 2, Duration::from_secs(1));
    assert_eq!((done[0].context, done[0].data()), (1, &b"last"[..]));
    assert!(done[0].error.is_none());
    assert_eq!(done[1].context, 2);
    assert!(matches!(done[1].error, Some(Error::Eof)));
    let reads = f.conn(c.fd(), |k| k.reads);
    w.read(c, 3, vec![0; 8]).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(matches!(done[0].error, Some(Error::Eof)));
    assert_eq!(f.conn(c.fd(), |k| k.reads), reads, "EOF is remembered");
    // Writes still work after the peer's half-close.
    w.write(c, 4, b"bye".to_vec()).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(done[0].error.is_none());
    assert_eq!(f.conn(c.fd(), |k| k.written.clone()), b"bye".to_vec());
}

#[test]
fn read_full_collects_chunks_across_edges() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    w.read_full(c, 5, vec![0; 10]).unwrap();
    let mut done = Vec::new();
    for chunk in [&b"0123"[..], b"45"] {
        f.send(c.fd(), chunk);
        f.event(c.fd(), true, false, false);
        w.wait_io_timeout(&mut done, Duration::from_millis(5)).unwrap();
        assert!(done.is_empty(), "read_full completed before it was full");
    }
    f.send(c.fd(), b"6789xy");
    f.event(c.fd(), true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].context, done[0].op, done[0].bytes),
        (5, Op::ReadFull, 10)
    );
    assert_eq!(done[0].data(), b"0123456789");
    // Bytes past the buffer stay for the next read.
    assert_eq!(
        f.conn(c.fd(), |k| k.inbound.iter().copied().collect::<Vec<_>>()),
        b"xy".to_vec()
    );
}

#[test]
fn read_full_cut_short_by_eof_reports_the_partial_size() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    w.read_full(c, 6, vec![0; 10]).unwrap();
    f.conn(c.fd(), |k| {
        k.inbound.extend(b"abc");
        k.eof = true;
    });
    f.event(c.fd(), true, false, true);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert!(matches!(done[0].error, Some(Error::Eof)), "{:?}", done[0].error);
    assert_eq!((done[0].bytes, done[0].data()), (3, &b"abc"[..]));
}

#[test]
fn swap_reads_hand_out_exact_slices_and_reuse_the_slab() {
    let mut w: W<crate::Bytes> = Builder::new().swap_size(64).build().unwrap();
    let f = fake::last();
    let c = w.watch(dummy_fd()).unwrap();
    let mut got = Vec::new();
    for round in 0..50u8 {
        let msg: Vec<u8> = (0..40).map(|i| i ^ round).collect();
        f.send(c.fd(), &msg);
        w.read_swap(c, u32::from(round)).unwrap();
        let done = collect(&mut w, 1, Duration::from_secs(1));
        let Buffer::Swap(b) = &done[0].buffer else {
            panic!("not a swap buffer")
        };
        // At most the swap size per read; the rest comes with the next one.
        assert!(b.len() <= 64);
        got.extend_from_slice(b);
        let left = f.conn(c.fd(), |k| k.inbound.len());
        if left > 0 {
            w.read_swap(c, 999).unwrap();
            let more = collect(&mut w, 1, Duration::from_secs(1));
            got.extend_from_slice(more[0].buffer.as_bytes());
        }
        assert_eq!(&got[..], &msg[..], "round {round}");
        got.clear();
    }
}

#[test]
fn submissions_from_another_thread_wake_only_a_sleeping_engine() {
    let (w, f) = setup::<Vec<u8>>();
    let mut s = w.submitter();
    let c = s.watch(dummy_fd()).unwrap();
    for i in 0..100 {
        s.write(c, i, vec![1]).unwrap();
    }
    // Nobody is waiting, so nobody needed waking.
    assert_eq!(f.with(|st| st.wakes), 0);
    drop(w);
    // Closing wakes once, so a waiter would notice.
    assert_eq!(f.with(|st| st.wakes), 1);
}

/// Per-connection memory is the point of a proactor for idle connections:
/// keep a connection's slot and a pending buffer-less read small.
#[test]
fn an_idle_connection_with_a_swap_read_pending_stays_small() {
    use std::mem::size_of;
    let conn = size_of::<super::conn_state::ConnState>();
    let node = size_of::<super::slab::SlotFor<(), crate::Bytes>>();
    eprintln!(
        "connection slot {conn} B (and 4 B of index per descriptor number), pending request slot {node} B"
    );
    // 32: the descriptor, its generation, two lists, the bytes its queued
    // writes hold (for the write-queue cap) and 32 state bits.
    assert!(conn <= 32, "connection slot grew to {conn} bytes");
    assert!(node <= 64, "request slot grew to {node} bytes");
}

/// Work vectors keep the capacity that steady traffic needs (no allocation
/// per turn with a thousand busy connections) and give back what a burst
/// left behind.
#[test]
fn work_vectors_keep_steady_capacity_and_shed_bursts() {
    use super::memory::{trim, BURST_CAPACITY, KEEP_CAPACITY};
    let emptied = |cap: usize| Vec::<u64>::with_capacity(cap);
    // Steady: 1500 entries a turn in a vector of 2048 stays put.
    let mut v = emptied(2 * KEEP_CAPACITY);
    trim(&mut v, 1500);
    assert_eq!(v.capacity(), 2 * KEEP_CAPACITY);
    // A quiet turn after a medium burst gives the surplus back.
    trim(&mut v, 100);
    assert_eq!(v.capacity(), KEEP_CAPACITY);
    // A burst past BURST_CAPACITY is given back at once, even when full.
    let mut v = emptied(2 * BURST_CAPACITY);
    trim(&mut v, 2 * BURST_CAPACITY);
    assert_eq!(v.capacity(), KEEP_CAPACITY);
    // Never shrinks a vector that still holds entries, or below the floor.
    let mut v = emptied(4 * KEEP_CAPACITY);
    v.push(1);
    trim(&mut v, 1);
    assert_eq!(v.capacity(), 4 * KEEP_CAPACITY);
    let mut v = emptied(KEEP_CAPACITY / 2);
    trim(&mut v, 0);
    assert_eq!(v.capacity(), KEEP_CAPACITY / 2);
}

/// A burst of hand-overs from another thread grows the command vectors;
/// once the engine has been idle for a moment it gives that memory back,
/// and every request of the burst still completes.
#[test]
fn an_idle_engine_gives_back_what_a_burst_of_commands_grew() {
    use super::memory::IDLE_KEEP_CAPACITY;
    use super::IDLE_TRIM;
    let (mut w, f) = setup::<Vec<u8>>();
    let mut s = w.submitter();
    let conns: Vec<Conn> = std::thread::spawn(move || {
        (0..3000)
            .map(|i| {
                let c = s.watch(dummy_fd()).expect("watch");
                s.write(c, i, vec![i as u8; 3]).expect("write");
                c
            })
            .collect()
    })
    .join()
    .expect("submitting thread");
    let done = collect(&mut w, conns.len(), Duration::from_secs(10));
    assert_eq!(done.len(), conns.len());
    for (c, conn) in done.iter().zip(&conns) {
        assert_eq!((c.conn, c.bytes, c.error.is_none()), (*conn, 3, true));
        assert_eq!(f.conn(conn.fd(), |k| k.written.clone()), vec![c.context as u8; 3]);
    }
    let (engine, queue) = w.inline_engine().expect("inline").command_capacity();
    assert!(
        engine.max(queue) > IDLE_KEEP_CAPACITY,
        "the burst should have grown a command vector ({engine}, {queue})"
    );
    // Idle for longer than IDLE_TRIM: the memory goes back.
    let mut out = Vec::new();
    w.wait_io_timeout(&mut out, IDLE_TRIM * 3).expect("wait_io");
    assert!(out.is_empty());
    let (engine, queue) = w.inline_engine().expect("inline").command_capacity();
    assert!(
        engine <= IDLE_KEEP_CAPACITY && queue <= IDLE_KEEP_CAPACITY,
        "still holding ({engine}, {queue}) entries after idling"
    );
}

/// A burst of pending requests with deadlines on thousands of connections
/// grows the request slab, the connection table and the timer heap. Once
/// those requests are over and the engine has been idle for a moment, all
/// three give their memory back, while a connection still watched keeps
/// its slot and its pending request.
#[test]
fn an_idle_engine_gives_back_the_tables_a_burst_grew() {
    use super::IDLE_TRIM;
    let (mut w, f) = setup::<Vec<u8>>();
    let far = Instant::now() + Duration::from_secs(3600);
    let keep = watch(&mut w);
    w.read_timeout(keep, u32::MAX, vec![0; 4], far).unwrap();
    let burst: Vec<Conn> = (0..3000).map(|_| watch(&mut w)).collect();
    for (i, &c) in burst.iter().enumerate() {
        for j in 0..2 {
            w.read_timeout(c, (2 * i + j) as u32, vec![0; 4], far).unwrap();
        }
    }
    let (nodes, conns, timers) = w.inline_engine().expect("inline").table_capacities();
    assert!(
        nodes >= 6001 && conns >= 3001 && timers >= 6001,
        "the burst should have grown the tables: {nodes} request slots, {conns} connection slots, {timers} timer slots"
    );
    for &c in &burst {
        w.free(c).unwrap();
    }
    let done = collect(&mut w, 6000, Duration::from_secs(10));
    assert_eq!(done.len(), 6000);
    assert!(done.iter().all(|c| matches!(c.error, Some(Error::ConnClosed))));
    // Idle for longer than IDLE_TRIM: the memory goes back.
    let mut out = Vec::new();
    w.wait_io_timeout(&mut out, IDLE_TRIM * 3).expect("wait_io");
    assert!(out.is_empty());
    let (nodes, conns, timers) = w.inline_engine().expect("inline").table_capacities();
    // The connection table keeps one chunk of its index (descriptor
    // numbers to slots) and one of its slots: 1024 entries each.
    assert!(
        nodes <= 1024 && conns <= 2 * 1024 && timers <= 64,
        "still holding {nodes} request slots, {conns} connection slots, {timers} timer slots after idling"
    );
    // What stayed works: the kept connection's read completes.
    f.send(keep.fd(), b"ping");
    f.event(keep.fd(), true, false, false);
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].context, done[0].data()), (u32::MAX, &b"ping"[..]));
    // And the engine does not keep waking to trim what cannot shrink: with
    // nothing more to give back, it no longer counts as holding burst
    // memory (which caps its sleep at IDLE_TRIM).
    w.wait_io_timeout(&mut out, IDLE_TRIM * 3).expect("wait_io");
    assert!(!w.inline_engine().expect("inline").holds_burst_memory());
}

/// A connection whose requests keep completing at submission may skip the
/// poller for a few batches, never for long: another connection's event
/// is seen within MAX_UNPOLLED_BATCHES batches.
#[test]
fn completions_at_submission_never_hide_other_connections_for_long() {
    use super::MAX_UNPOLLED_BATCHES;
    let (mut w, f) = setup::<Vec<u8>>();
    let busy = watch(&mut w);
    let other = watch(&mut w);
    w.read(other, 1_000, vec![0; 8]).unwrap(); // nothing inbound: waits for an edge
    quiet(&mut w);
    f.send(other.fd(), b"hi");
    f.event(other.fd(), true, false, false);
    let mut out = Vec::new();
    let mut seen_at = None;
    for round in 0..64 {
        w.write(busy, round, vec![round as u8]).unwrap(); // completes at submission
        out.clear();
        w.wait_io(&mut out).unwrap();
        if let Some(c) = out.iter().find(|c| c.conn == other) {
            assert_eq!((c.context, c.data()), (1_000, &b"hi"[..]));
            seen_at = Some(round);
            break;
        }
    }
    let seen_at = seen_at.expect("the other connection's read never completed");
    assert!(
        seen_at <= MAX_UNPOLLED_BATCHES,
        "seen only after {seen_at} batches"
    );
}

/// Builder settings out of range are refused with an error naming the
/// setting and its range, before anything is allocated: a huge value used
/// to panic on capacity overflow.
#[test]
fn builder_refuses_settings_out_of_range() {
    use crate::{MAX_EVENTS_PER_WAIT, MAX_SWAP_SIZE};
    let cases: [(&str, usize, Builder<FakePoller>); 6] = [
        ("swap_size", 0, Builder::new().swap_size(0)),
        ("swap_size", usize::MAX, Builder::new().swap_size(usize::MAX)),
        (
            "swap_size",
            MAX_SWAP_SIZE + 1,
            Builder::new().swap_size(MAX_SWAP_SIZE + 1),
        ),
        ("max_events", 0, Builder::new().max_events(0)),
        ("max_events", usize::MAX, Builder::new().max_events(usize::MAX)),
        (
            "max_events",
            MAX_EVENTS_PER_WAIT + 1,
            Builder::new().max_events(MAX_EVENTS_PER_WAIT + 1),
        ),
    ];
    for (setting, given, builder) in cases {
        match builder.build::<u32, Vec<u8>>() {
            Err(e @ Error::InvalidSetting(_)) => {
                let Error::InvalidSetting(s) = &e else {
                    unreachable!()
                };
                let max = s.max;
                assert_eq!((s.name, s.value, s.min), (setting, given, 1));
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
                assert_eq!(
                    e.to_string(),
                    format!("{setting} = {given} is out of range: it must be between 1 and {max}")
                );
            }
            other => panic!("{setting} = {given}: expected InvalidSetting, got {other:?}"),
        }
    }
    // The largest event count is accepted (and allocated).
    let w: W = Builder::new()
        .max_events(MAX_EVENTS_PER_WAIT)
        .build()
        .expect("build");
    drop(w);
}

/// A buffer whose readable region shrinks between two reads of one
/// `read_full` (a broken `IoBufMut`) ends that request with `EmptyBuffer`
/// and its progress; the engine does not panic slicing it.
#[test]
fn a_read_buffer_that_shrinks_midway_ends_the_request_instead_of_panicking() {
    struct Shrinking(Vec<u8>, usize);
    impl crate::IoBuf for Shrinking {
        fn as_bytes(&self) -> &[u8] {
            &self.0
        }
    }
    impl crate::IoBufMut for Shrinking {
        fn as_bytes_mut(&mut self) -> &mut [u8] {
            // The first call sees all 8 bytes; every later one only 2.
            self.1 += 1;
            let len = if self.1 == 1 { self.0.len() } else { 2 };
            &mut self.0[..len]
        }
    }
    let (mut w, f) = setup::<Shrinking>();
    let c = watch(&mut w);
    f.send(c.fd(), b"abcd");
    // The first read fills 4 of 8 bytes; the next finds the region gone.
    w.read_full(c, 5, Shrinking(vec![0; 8], 0)).unwrap();
    let done = collect(&mut w, 1, Duration::from_secs(1));
    assert_eq!(done.len(), 1);
    assert!(
        matches!(done[0].error, Some(Error::EmptyBuffer)),
        "{:?}",
        done[0].error
    );
    assert_eq!((done[0].context, done[0].bytes), (5, 4));
}

/// Queued writes sharing one deadline: when it passes, each ends with
/// `Deadline` and none of them starts I/O on the way, even if the socket
/// took bytes by then (the head's ending must not start the next write,
/// whose own deadline has passed too).
#[test]
fn writes_past_their_deadline_start_no_io_as_the_one_before_them_ends() {
    let (mut w, f) = setup::<Vec<u8>>();
    let c = watch(&mut w);
    f.conn(c.fd(), |k| k.write_room = 0);
    let deadline = Instant::now() + Duration::from_millis(30);
    for i in 0..3u32 {
        w.write_timeout(c, i, vec![b'a' + i as u8; 4], deadline).unwrap();
    }
    // Room comes, with no event: the engine does not know.
    f.conn(c.fd(), |k| k.write_room = 100);
    std::thread::sleep(Duration::from_millis(40));
    let done = collect(&mut w, 3, Duration::from_secs(2));
    let seen: Vec<_> = done
        .iter()
        .map(|d| (d.context, d.bytes, d.error.is_some()))
        .collect();
    assert_eq!(seen, [(0, 0, true), (1, 0, true), (2, 0, true)]);
    assert!(done.iter().all(|d| matches!(d.error, Some(Error::Deadline))));
    assert_eq!(
        f.conn(c.fd(), |k| k.written.clone()),
        b"",
        "no write past its deadline moved a byte"
    );
}
