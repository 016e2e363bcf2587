//! `read_append`: a read that fills a buffer's spare capacity and extends
//! its length, for messages that arrive in pieces. The bytes before the
//! read are kept; the completion's `bytes` and `data()` are the appended
//! part; the watcher never grows the buffer; requests on one connection
//! complete in order; deadlines and end of stream hand the buffer back
//! with what it had; a buffer with no room is refused. With `Vec<u8>` and
//! `BytesMut`, in both modes.

mod util;

use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, BytesMut, Completion, Error, IoBuf, Mode, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(8);

fn user<B: IoBuf>(c: Completion<u32, B>) -> B {
    match c.buffer {
        Buffer::User(b) => b,
        _ => panic!("{:?} completion without its buffer", c.op),
    }
}

#[test]
fn bytes_land_after_what_the_buffer_held() {
    let _lock = util::shared();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (mut peer, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"GET");
        let held = buf.as_ptr();
        w.read_append(conn, 1, buf).unwrap();
        peer.write_all(b" /plain").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.op, c.context), (Op::ReadAppend, 1), "{mode:?}");
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        assert_eq!(c.data(), b" /plain", "{mode:?}: data() is the appended part");
        assert_eq!(c.bytes, 7);
        let buf = user(c);
        assert_eq!(buf, b"GET /plain", "{mode:?}");
        assert_eq!(buf.as_ptr(), held, "{mode:?}: the watcher must not reallocate");
        assert_eq!(
            buf.capacity(),
            64,
            "{mode:?}: the watcher must not grow the buffer"
        );

        // The same buffer again: the rest arrives after it.
        w.read_append(conn, 2, buf).unwrap();
        peer.write_all(b"text HTTP/1.1\r\n").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.data(), b"text HTTP/1.1\r\n", "{mode:?}");
        assert_eq!(user(c), b"GET /plaintext HTTP/1.1\r\n", "{mode:?}");
    }
}

#[test]
fn a_read_takes_no_more_than_the_spare_capacity_and_requests_complete_in_order() {
    let _lock = util::shared();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (mut peer, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        // Three reads with 4, 3 and 64 bytes of room, queued before any data.
        let mut first = Vec::with_capacity(6);
        first.extend_from_slice(b"<<");
        w.read_append(conn, 1, first).unwrap();
        w.read_append(conn, 2, Vec::with_capacity(3)).unwrap();
        w.read_append(conn, 3, Vec::with_capacity(64)).unwrap();
        peer.write_all(b"abcdefghij").unwrap();
        let got = util::wait_for(&mut w, 3, LIMIT);
        let contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        assert_eq!(contexts, [1, 2, 3], "{mode:?}: completions out of order");
        let bufs: Vec<Vec<u8>> = got.into_iter().map(user).collect();
        assert_eq!(bufs[0], b"<<abcd", "{mode:?}");
        assert_eq!(bufs[1], b"efg", "{mode:?}");
        assert_eq!(bufs[2], b"hij", "{mode:?}");
        assert_eq!(bufs[0].capacity(), 6, "{mode:?}: grown by the watcher");
    }
}

#[test]
fn bytes_mut_collects_a_large_message_arriving_in_pieces() {
    const LEN: usize = 1 << 20;
    let _lock = util::shared();
    for mode in util::MODES {
        let mut w: Watcher<u32, BytesMut> = util::watcher(mode);
        let (mut peer, server) = util::tcp_pair();
        util::peer::timeouts(&peer);
        let conn = w.watch(server).unwrap();
        let message = util::pattern(7, LEN);
        let sent = message.clone();
        let sender = thread::spawn(move || {
            for piece in sent.chunks(10_007) {
                peer.write_all(piece).unwrap();
            }
            peer
        });
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let (mut reads, end) = (0, Instant::now() + LIMIT);
        while buf.len() < LEN {
            // What a server does between pieces: make room, read on.
            buf.reserve(16 * 1024);
            let before = buf.len();
            w.read_append(conn, reads, buf).unwrap();
            let mut got = Vec::new();
            while got.is_empty() {
                assert!(
                    Instant::now() < end,
                    "{mode:?}: {before} of {LEN} bytes after {reads} reads"
                );
                w.wait_io_timeout(&mut got, Duration::from_millis(200)).unwrap();
            }
            let c = got.pop().unwrap();
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            assert!(c.bytes > 0);
            assert_eq!(
                c.data(),
                &message[before..before + c.bytes],
                "{mode:?}: data() at {before}"
            );
            let n = c.bytes;
            buf = user(c);
            assert_eq!(
                buf.len(),
                before + n,
                "{mode:?}: length not extended by the bytes read"
            );
            reads += 1;
        }
        assert_eq!(&buf[..], &message[..], "{mode:?}: the message differs");
        assert!(reads > 1, "{mode:?}: the message came in one read");
        drop(sender.join().unwrap());
    }
}

#[test]
fn deadline_and_end_of_stream_hand_back_the_buffer_as_it_was() {
    let _lock = util::shared();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (peer, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        let mut buf = Vec::with_capacity(32);
        buf.extend_from_slice(b"partial");
        let deadline = Instant::now() + Duration::from_millis(50);
        w.read_append_timeout(conn, 1, buf, deadline).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(
            matches!(c.error, Some(Error::Deadline)),
            "{mode:?}: {:?}",
            c.error
        );
        assert!(Instant::now() >= deadline, "{mode:?}: deadline reported early");
        assert_eq!((c.op, c.bytes), (Op::ReadAppend, 0));
        assert!(c.data().is_empty());
        let buf = user(c);
        assert_eq!(buf, b"partial", "{mode:?}: kept bytes lost on a deadline");

        w.read_append(conn, 2, buf).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(matches!(c.error, Some(Error::Eof)), "{mode:?}: {:?}", c.error);
        assert_eq!(user(c), b"partial", "{mode:?}: kept bytes lost at end of stream");
        w.free(conn).unwrap();
    }
}

#[test]
fn a_buffer_without_room_is_refused_and_handed_back() {
    let _lock = util::shared();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (_peer, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        let mut full = Vec::with_capacity(4);
        full.extend_from_slice(b"full");
        let cap = full.capacity();
        let rej = w
            .read_append(conn, 9, full)
            .expect_err("a full buffer must be refused");
        assert!(matches!(rej.error, Error::EmptyBuffer), "{mode:?}: {}", rej.error);
        assert_eq!(rej.context, 9);
        let back = rej.buffer.expect("the refused buffer");
        assert_eq!((back.as_slice(), back.capacity()), (&b"full"[..], cap));
        let rej = w
            .read_append(conn, 10, Vec::new())
            .expect_err("an empty Vec has no room");
        assert!(matches!(rej.error, Error::EmptyBuffer), "{mode:?}: {}", rej.error);
        // The connection is unharmed: a read with room still works.
        w.read_append(conn, 11, Vec::with_capacity(8)).unwrap();
        w.free(conn).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(
            matches!(c.error, Some(Error::ConnClosed)),
            "{mode:?}: {:?}",
            c.error
        );
    }
}

#[test]
fn read_append_through_a_submitter_from_another_thread() {
    let _lock = util::shared();
    for mode in util::MODES {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (mut peer, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        let mut sub = w.submitter();
        thread::spawn(move || {
            let mut buf = Vec::with_capacity(16);
            buf.push(b'>');
            sub.read_append(conn, 5, buf).unwrap();
        })
        .join()
        .unwrap();
        peer.write_all(b"hi").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(
            (c.op, c.context, c.data()),
            (Op::ReadAppend, 5, &b"hi"[..]),
            "{mode:?}"
        );
        assert_eq!(user(c), b">hi");
    }
}

#[test]
fn a_freed_connection_refuses_read_append_and_hands_back_the_buffer() {
    let _lock = util::shared();
    for mode in [Mode::Inline, Mode::Background] {
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let (_peer, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        w.free(conn).unwrap();
        match w.read_append(conn, 1, Vec::with_capacity(8)) {
            // The owner learns at once (inline) ...
            Err(rej) => assert!(matches!(rej.error, Error::ConnClosed), "{mode:?}: {}", rej.error),
            // ... or from a completion.
            Ok(()) => {
                let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
                assert!(
                    matches!(c.error, Some(Error::ConnClosed)),
                    "{mode:?}: {:?}",
                    c.error
                );
                assert_eq!(user(c).capacity(), 8);
            }
        }
    }
}
