//! Background mode's promise, and what it costs:
//!
//! * The I/O goes on while the owning thread is busy and away from
//!   `wait_io`: a 16 MiB write drains to a reading peer and a 16 MiB
//!   `read_full` fills from a writing peer, both far beyond what the
//!   kernel's socket buffers hold, before the owner waits again (inline
//!   mode, which runs the I/O only inside `wait_io`, cannot pass this).
//! * The engine changes hands between the owning thread (while it waits)
//!   and the background thread (while it is busy) without losing or
//!   reordering a byte or a notification: an echo loop with random busy
//!   pauses, checked byte for byte, with notifications from another
//!   thread checked for order.
//! * Closing while the background thread has the engine (from the owning
//!   thread, or from another while the owner is busy) closes every socket
//!   before the owner calls in again, and the pending requests come back
//!   with `WatcherClosed`.
//!
//! What an idle watcher costs, in both modes, is `idle_cost.rs`'s.
//!
//! Every test holds the test lock through an `FdCheck`: nothing may be left
//! open.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Bytes, Error, Mode, Op, Submit, Watcher};

type Rng = gaio_testkit::rng::XorShift64Star;

/// Longest any step may take.
const LIMIT: Duration = Duration::from_secs(20);

/// Reads exactly `len` bytes from `peer` and says so through `done`.
fn read_exactly(mut peer: TcpStream, len: usize, done: Arc<AtomicBool>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = vec![0; len];
        peer.read_exact(&mut got).expect("peer read");
        done.store(true, Ordering::SeqCst);
        got
    })
}

#[test]
fn the_io_goes_on_while_the_owner_is_busy() {
    let fds = util::FdCheck::new();
    const LEN: usize = 16 << 20;
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(Mode::Background);
    let (client, server) = util::tcp_pair();
    util::peer::timeouts(&client);
    let conn = w.watch(server).expect("watch");
    let outgoing = util::pattern(1, LEN);
    let incoming = util::pattern(2, LEN);
    util::ok(w.write(conn, 1, outgoing.clone()));
    util::ok(w.read_full(conn, 2, vec![0; LEN]));

    // The peer reads everything and writes everything, on two threads.
    let (read_done, write_done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let reader = read_exactly(client.try_clone().unwrap(), LEN, Arc::clone(&read_done));
    let writer = {
        let (mut peer, data, done) = (
            client.try_clone().unwrap(),
            incoming.clone(),
            Arc::clone(&write_done),
        );
        thread::spawn(move || {
            peer.write_all(&data).expect("peer write");
            done.store(true, Ordering::SeqCst);
        })
    };

    // The owner is busy elsewhere: it does not call into the watcher until
    // both transfers are through (or the limit passes).
    let end = Instant::now() + LIMIT;
    while !(read_done.load(Ordering::SeqCst) && write_done.load(Ordering::SeqCst)) {
        assert!(
            Instant::now() < end,
            "the transfers stalled while the owner was busy: peer read all: {}, peer wrote all: {}",
            read_done.load(Ordering::SeqCst),
            write_done.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(reader.join().expect("reader"), outgoing, "what the peer read");
    writer.join().expect("writer");

    // Both completions are ready, with every byte.
    let mut done = util::wait_for(&mut w, 2, LIMIT);
    done.sort_by_key(|c| c.context);
    assert_eq!((done[0].op, done[0].context, done[0].bytes), (Op::Write, 1, LEN));
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(
        (done[1].op, done[1].context, done[1].bytes),
        (Op::ReadFull, 2, LEN)
    );
    assert!(done[1].error.is_none(), "{:?}", done[1].error);
    match &done[1].buffer {
        Buffer::User(got) => assert!(
            got == &incoming,
            "the read's bytes differ from what the peer wrote"
        ),
        other => panic!("read_full came back with {other:?}"),
    }
    drop((w, client));
    fds.check();
}

/// The echo loop of [`the_engine_changes_hands_without_losing_order`]: what
/// the owning thread does with one batch.
fn echo_batch(
    w: &mut Watcher<u64, Bytes>,
    batch: &mut Vec<gaio::Completion<u64, Bytes>>,
    notes: &mut Vec<u64>,
    echoed: &mut usize,
) {
    for c in batch.drain(..) {
        match (c.op, c.error, c.buffer) {
            (Op::Notify, None, _) => notes.push(c.context),
            (Op::Read, None, Buffer::Swap(data)) => {
                *echoed += data.len();
                util::ok(w.write(c.conn, 0, data));
                util::ok(w.read_swap(c.conn, 0));
            }
            (Op::Write, None, _) => {}
            (op, error, _) => panic!("{op:?} failed: {error:?}"),
        }
    }
}

#[test]
fn the_engine_changes_hands_without_losing_order() {
    let fds = util::FdCheck::new();
    const LEN: usize = 4 << 20;
    const NOTES: u64 = 2_000;
    let mut w: Watcher<u64, Bytes> = util::watcher(Mode::Background);
    let (client, server) = util::tcp_pair();
    util::peer::timeouts(&client);
    let conn = w.watch(server).expect("watch");
    util::ok(w.read_swap(conn, 0));
    let data = util::pattern(7, LEN);

    // The peer writes the pattern in random chunks and reads the echo back.
    let writer = {
        let (mut peer, data) = (client.try_clone().unwrap(), data.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(11);
            let mut at = 0;
            while at < data.len() {
                let n = (1 + rng.below(64 * 1024) as usize).min(data.len() - at);
                peer.write_all(&data[at..at + n]).expect("peer write");
                at += n;
            }
        })
    };
    let reader = read_exactly(client.try_clone().unwrap(), LEN, Arc::new(AtomicBool::new(false)));
    // Another thread sends numbered notifications meanwhile.
    let notifier = {
        let mut sub = w.submitter();
        thread::spawn(move || {
            for n in 0..NOTES {
                sub.notify(n).expect("notify");
                if n % 16 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };

    // The owner answers each batch, and now and then works on it for up
    // to 3 ms: long enough for the background thread to take the engine,
    // so the owner's requests go through the queue until it waits again.
    let (mut notes, mut echoed) = (Vec::new(), 0);
    let mut batch = Vec::new();
    let mut rng = Rng::new(5);
    let end = Instant::now() + LIMIT;
    while echoed < LEN || (notes.len() as u64) < NOTES {
        assert!(
            Instant::now() < end,
            "stalled: echoed {echoed} of {LEN} bytes, {} of {NOTES} notifications",
            notes.len()
        );
        w.wait_io_timeout(&mut batch, Duration::from_secs(1))
            .expect("wait_io");
        echo_batch(&mut w, &mut batch, &mut notes, &mut echoed);
        if rng.below(4) == 0 {
            thread::sleep(Duration::from_micros(rng.below(3_000)));
        }
    }
    writer.join().expect("writer");
    notifier.join().expect("notifier");
    let back = reader.join().expect("reader");
    assert_eq!(echoed, LEN);
    assert!(back == data, "the echo differs from what the peer sent");
    assert_eq!(
        notes,
        (0..NOTES).collect::<Vec<_>>(),
        "notifications lost, doubled or reordered"
    );
    drop((w, client));
    fds.check();
}

/// A background watcher with one connection: a read pending (context 1)
/// and a 16 MiB write (context 2) the peer does not read, left to the
/// background thread while the owner stays away from `wait_io`.
fn busy_owner_with_pending_io() -> (Watcher<u32, Vec<u8>>, TcpStream, Vec<u8>, gaio::Conn) {
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(Mode::Background);
    let (client, server) = util::tcp_pair();
    util::peer::timeouts(&client);
    let conn = w.watch(server).expect("watch");
    let data = util::pattern(3, 16 << 20);
    util::ok(w.read(conn, 1, vec![0; 64]));
    util::ok(w.write(conn, 2, data.clone()));
    util::expect_quiet(&mut w, Duration::from_millis(10));
    thread::sleep(Duration::from_millis(50));
    (w, client, data, conn)
}

/// Checks what a closed watcher hands out: the read and the write, each
/// once, with `WatcherClosed`; then `next_batch` says it is over.
fn expect_closed_with_both(w: &mut Watcher<u32, Vec<u8>>) {
    let mut all = Vec::new();
    let mut batch = Vec::new();
    let end = Instant::now() + LIMIT;
    while w.next_batch(&mut batch).expect("next_batch") {
        assert!(Instant::now() < end, "the closed watcher never said it was over");
        all.append(&mut batch);
    }
    all.append(&mut batch);
    all.sort_by_key(|c| c.context);
    let got: Vec<_> = all.iter().map(|c| (c.op, c.context)).collect();
    assert_eq!(got, [(Op::Read, 1), (Op::Write, 2)]);
    for c in &all {
        assert!(matches!(c.error, Some(Error::WatcherClosed)), "{:?}", c.error);
    }
}

#[test]
fn close_while_the_background_thread_has_the_engine() {
    let fds = util::FdCheck::new();
    let (mut w, mut client, data, conn) = busy_owner_with_pending_io();
    // The write queue, counted on the engine the background thread holds
    // (it hands it over for the count): what the kernel did not take.
    let queued = w.queued_write_bytes(conn).expect("the connection is known");
    assert!(
        queued > 0 && queued < data.len(),
        "{queued} of {} bytes queued",
        data.len()
    );
    w.close();
    // `close` returned: the socket is closed. The peer reads what the
    // write got out, then the end of the stream.
    let got = util::peer::read_to_eof(&mut client);
    assert!(!got.is_empty() && got.len() < data.len(), "{} bytes", got.len());
    assert!(got == data[..got.len()], "the peer read other bytes than written");
    expect_closed_with_both(&mut w);
    drop((w, client));
    fds.check();
}

#[test]
fn a_close_from_elsewhere_while_the_owner_is_busy() {
    let fds = util::FdCheck::new();
    let (mut w, mut client, data, _) = busy_owner_with_pending_io();
    let mut sub = w.submitter();
    thread::spawn(move || sub.close()).join().expect("closing thread");
    // Without a call from the owner, the background thread shuts the
    // watcher down: the peer sees the end of the stream.
    let got = util::peer::read_to_eof(&mut client);
    assert!(got == data[..got.len()], "the peer read other bytes than written");
    expect_closed_with_both(&mut w);
    drop((w, client));
    fds.check();
}
