//! Reads that stop short with data still queued: the kernel ends a `recv`
//! early at a TCP urgent mark and after an AF_UNIX message that carried
//! descriptors. The watcher must not take such a read for "drained": on an
//! edge-triggered poller the rest would then sit unread until the peer
//! sends more, and a request/response peer would wait for ever.
//!
//! Each test makes the poller report readiness once, after all the data
//! arrived (so no later edge will come), then reads: the first read stops
//! short, and the second must still get the rest.

mod util;

use std::io::{IoSlice, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use gaio::{Buffer, Bytes, Conn, Mode, Submit, Watcher};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

const LIMIT: Duration = Duration::from_secs(5);
/// Long enough for loopback data to arrive and for a background engine to
/// take the readiness event.
const SETTLE: Duration = Duration::from_millis(50);

/// Lets the data arrive and the poller report it with no read pending,
/// then reads until `want` bytes came (or `LIMIT` passes) with one-request-
/// at-a-time swap reads, as a request/response server does.
fn read_after_the_edge(w: &mut Watcher<u32, Bytes>, conn: Conn, want: usize) -> Vec<u8> {
    std::thread::sleep(SETTLE);
    util::expect_quiet(w, SETTLE);
    let mut got = Vec::new();
    let mut reads = 0;
    while got.len() < want {
        reads += 1;
        w.read_swap_timeout(conn, reads, std::time::Instant::now() + LIMIT)
            .expect("read");
        let done = util::wait_for(w, 1, LIMIT + LIMIT);
        let c = &done[0];
        match (&c.error, &c.buffer) {
            (None, Buffer::Swap(b)) => got.extend_from_slice(b),
            (error, _) => panic!(
                "read {reads} ended with {error:?} after {} of {want} bytes ({:?} so far)",
                got.len(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    got
}

fn urgent_mark(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u32, Bytes> = util::watcher(mode);
    let (mut client, server): (TcpStream, TcpStream) = util::tcp_pair();
    let conn = w.watch(server).expect("watch");
    client.write_all(b"abc").unwrap();
    // One urgent byte: the server's reads stop at its mark, and without
    // SO_OOBINLINE the byte itself is taken out of the stream.
    rustix::net::send(&client, b"!", SendFlags::OOB).unwrap();
    client.write_all(b"def").unwrap();
    let got = read_after_the_edge(&mut w, conn, 6);
    assert_eq!(got, b"abcdef");
    drop((w, client));
    fds.check();
}

#[test]
fn data_behind_a_tcp_urgent_mark_is_read_inline() {
    urgent_mark(Mode::Inline);
}

#[test]
fn data_behind_a_tcp_urgent_mark_is_read_background() {
    urgent_mark(Mode::Background);
}

fn passed_descriptors(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u32, Bytes> = util::watcher(mode);
    let (client, server) = UnixStream::pair().unwrap();
    let conn = w.watch(server).expect("watch");
    // "abc" carries a descriptor; "def" follows as a plain message. The
    // receiver's `recv` (no room for control data) stops after "abc" and
    // the kernel closes the descriptor it could not deliver.
    let (passed, _other_end) = UnixStream::pair().unwrap();
    let passed_fds = [std::os::fd::AsFd::as_fd(&passed)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&passed_fds)));
    let n = rustix::net::sendmsg(&client, &[IoSlice::new(b"abc")], &mut control, SendFlags::empty()).unwrap();
    assert_eq!(n, 3);
    (&client).write_all(b"def").unwrap();
    let got = read_after_the_edge(&mut w, conn, 6);
    assert_eq!(got, b"abcdef");
    drop((w, client, passed, _other_end));
    fds.check();
}

#[test]
fn data_after_passed_descriptors_is_read_inline() {
    passed_descriptors(Mode::Inline);
}

#[test]
fn data_after_passed_descriptors_is_read_background() {
    passed_descriptors(Mode::Background);
}

/// Plain TCP, where a short read is still taken as drained (saving the
/// `recv` that would say EAGAIN; `cargo xtask bench`'s cost scenario counts
/// it): request after request, each read waits for its edge and gets the
/// request sent after it was submitted.
fn plain_tcp_request_response(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u32, Bytes> = util::watcher(mode);
    let (mut client, server) = util::tcp_pair();
    util::peer::timeouts(&client);
    let conn = w.watch(server).expect("watch");
    for round in 0..20u8 {
        let msg = [round; 5];
        client.write_all(&msg).unwrap();
        let got = read_after_the_edge(&mut w, conn, 5);
        assert_eq!(got, msg);
    }
    drop((w, client));
    fds.check();
}

#[test]
fn plain_tcp_request_response_inline() {
    plain_tcp_request_response(Mode::Inline);
}

#[test]
fn plain_tcp_request_response_background() {
    plain_tcp_request_response(Mode::Background);
}
