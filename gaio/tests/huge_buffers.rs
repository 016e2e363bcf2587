//! Buffers longer than one request on the ring may be (2 GiB less a page,
//! Linux's `MAX_RW_COUNT`; its length field has 32 bits): a read into one
//! behaves as on every backend, getting the bytes that came.

mod util;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use gaio::{Buffer, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(10);

/// Past `i32::MAX` bytes, and past `u32::MAX`: allocated zeroed
/// (untouched pages cost no memory), of which the kernel writes only the
/// few bytes sent.
const HUGE: [usize; 2] = [3 << 30, (4 << 30) + 4096];

fn read_into_a_buffer_past_2_gib(mode: gaio::Mode) {
    let _lock = util::exclusive();
    for len in HUGE {
        read_into(mode, len);
    }
}

fn read_into(mode: gaio::Mode, len: usize) {
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let (mut peer, ours) = UnixStream::pair().unwrap();
    util::peer::unix_timeouts(&peer);
    let conn = w.watch(ours).expect("watch");
    w.read(conn, 1, vec![0u8; len]).expect("read");
    peer.write_all(b"hello").unwrap();
    let done = util::wait_for(&mut w, 1, LIMIT);
    let c = &done[0];
    assert!(
        c.error.is_none(),
        "{:?} on {:?}, {len} bytes",
        c.error,
        w.backend()
    );
    assert_eq!(c.bytes, 5);
    let Buffer::User(buf) = &c.buffer else {
        panic!("the buffer did not come back")
    };
    assert_eq!((buf.len(), &buf[..5]), (len, &b"hello"[..]));
    drop(done);
    drop((w, peer));
}

#[test]
fn a_read_into_a_buffer_past_2_gib_gets_the_bytes_inline() {
    read_into_a_buffer_past_2_gib(gaio::Mode::Inline);
}

#[test]
fn a_read_into_a_buffer_past_2_gib_gets_the_bytes_background() {
    read_into_a_buffer_past_2_gib(gaio::Mode::Background);
}

/// A write of more than 2 GiB to a peer that reads nothing, on a watcher
/// with other reads pending (on io_uring, a busy ring: the write goes on
/// the ring rather than to a system call first): the socket takes what
/// fits, and the deadline ends the write with those bytes counted.
fn write_past_2_gib(mode: gaio::Mode) {
    let _lock = util::exclusive();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let others: Vec<(UnixStream, gaio::Conn)> = (0..4)
        .map(|_| {
            let (peer, ours) = UnixStream::pair().unwrap();
            let conn = w.watch(ours).expect("watch");
            w.read_swap(conn, 0).expect("read");
            (peer, conn)
        })
        .collect();
    let (peer, ours) = UnixStream::pair().unwrap();
    let conn = w.watch(ours).expect("watch");
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    w.write_timeout(conn, 1, vec![0u8; HUGE[0]], deadline)
        .expect("write");
    let done = util::wait_for(&mut w, 1, LIMIT);
    let c = &done[0];
    assert!(
        matches!(c.error, Some(gaio::Error::Deadline)) && c.bytes > 0,
        "{:?} after {} bytes on {:?}",
        c.error,
        c.bytes,
        w.backend()
    );
    drop(done);
    for (_, conn) in &others {
        w.free(*conn).expect("free");
    }
    let freed = util::wait_for(&mut w, others.len(), LIMIT);
    assert!(freed.iter().all(|c| c.context == 0));
    drop((w, peer, others));
}

#[test]
fn a_write_past_2_gib_sends_what_fits_inline() {
    write_past_2_gib(gaio::Mode::Inline);
}

#[test]
fn a_write_past_2_gib_sends_what_fits_background() {
    write_past_2_gib(gaio::Mode::Background);
}
