//! Lifecycle of connections and watchers: contexts, refused submissions,
//! hand-over of unsuitable descriptors, `free`, stale handles, `close`,
//! drop with requests in flight, CPU affinity and builder settings.
//!
//! Descriptor and thread counting are process-wide: every test holds the
//! test lock (exclusively, through its `FdCheck`), see `util`.

mod util;
use util::peer::{read_to_eof, timeouts, unix_timeouts};

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Completion, Conn, Error, IoBuf, IoBufMut, Mode, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(150);
/// Large enough that a loopback socket cannot take it at once, so the write
/// stays pending and the writes behind it queue.
const BIG: usize = 8 << 20;

// ----- helpers ---------------------------------------------------------------

/// Asserts that nothing arrives on `s` within `quiet`.
fn assert_nothing_to_read(s: &mut TcpStream, quiet: Duration) {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => panic!("peer unexpectedly read {n} bytes: {:?}", &buf[..n]),
        Err(e) => assert!(
            matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
            "unexpected peer error: {e}"
        ),
    }
    s.set_read_timeout(Some(LIMIT)).unwrap();
}

/// Runs `f` on its own thread and waits at most `limit` for it: a call that
/// blocks forever fails the test instead of hanging it.
fn off_thread<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().expect("helper thread");
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("call still blocked after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic: Box<dyn Any + Send> = handle.join().expect_err("thread ended without result");
            std::panic::resume_unwind(panic)
        }
    }
}

/// Number of threads of this process, where the OS shows it (Linux);
/// `None` elsewhere, which makes the thread assertions compare `None`s.
fn thread_count() -> Option<usize> {
    if cfg!(target_os = "linux") {
        Some(
            std::fs::read_dir("/proc/self/task")
                .expect("read /proc/self/task")
                .count(),
        )
    } else {
        None
    }
}

/// Makes a new loopback connection through `listener` whose client or
/// server socket has descriptor number `fd` (freed earlier, possibly
/// asynchronously by a background watcher). Returns (peer, socket with
/// that number). Other descriptors made on the way are closed on return.
fn connection_on_fd(listener: &TcpListener, fd: u32) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let mut spare = Vec::new();
    for _ in 0..100 {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        timeouts(&client);
        timeouts(&server);
        if client.as_raw_fd() as u32 == fd {
            return (server, client);
        }
        if server.as_raw_fd() as u32 == fd {
            return (client, server);
        }
        // Keep them open so the next sockets take other numbers.
        spare.push((client, server));
        thread::sleep(Duration::from_millis(10));
    }
    panic!("descriptor number {fd} was never reused (is it still open?)");
}

fn is_conn_closed<C, B>(c: &Completion<C, B>) -> bool {
    matches!(c.error, Some(Error::ConnClosed))
}

fn is_watcher_closed<C, B>(c: &Completion<C, B>) -> bool {
    matches!(c.error, Some(Error::WatcherClosed))
}

// ----- 1. contexts -------------------------------------------------------------

type Ctx = (u64, String);

fn ctx(i: u64) -> Ctx {
    (
        i.wrapping_mul(0x1_0000_0001) ^ 0xDEAD_BEEF_0000,
        format!("request #{i}: ü∂ç"),
    )
}

#[test]
fn context_is_passed_back_unchanged() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<Ctx> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        // read
        w.read(conn, ctx(1), vec![0; 5]).unwrap();
        client.write_all(b"hello").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, ctx(1), "{mode:?}");
        assert_eq!((c.op, c.conn), (Op::Read, conn));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.data(), b"hello");

        // read_swap
        w.read_swap(conn, ctx(2)).unwrap();
        client.write_all(b"swapped").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, ctx(2), "{mode:?}");
        assert_eq!((c.op, c.conn), (Op::Read, conn));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert!(matches!(&c.buffer, Buffer::Swap(b) if &b[..] == b"swapped"));

        // read_full, filled in two pieces
        w.read_full(conn, ctx(3), vec![0; 6]).unwrap();
        client.write_all(b"abc").unwrap();
        util::expect_quiet(&mut w, QUIET);
        client.write_all(b"def").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, ctx(3), "{mode:?}");
        assert_eq!((c.op, c.conn), (Op::ReadFull, conn));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.data(), b"abcdef");

        // write
        w.write(conn, ctx(4), b"reply!".to_vec()).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, ctx(4), "{mode:?}");
        assert_eq!((c.op, c.conn, c.bytes), (Op::Write, conn, 6));
        assert!(c.error.is_none(), "{:?}", c.error);
        let mut got = [0u8; 6];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"reply!");

        // Several at once, so contexts also survive queueing.
        for i in 10..14 {
            w.read(conn, ctx(i), vec![0; 1]).unwrap();
        }
        client.write_all(b"wxyz").unwrap();
        let got = util::wait_for(&mut w, 4, LIMIT);
        let contexts: Vec<Ctx> = got.iter().map(|c| c.context.clone()).collect();
        assert_eq!(contexts, (10..14).map(ctx).collect::<Vec<_>>(), "{mode:?}");
        let bytes: Vec<u8> = got.iter().flat_map(|c| c.data().to_vec()).collect();
        assert_eq!(bytes, b"wxyz");
        drop(w);
    }
    fds.check();
}

// ----- 2. empty buffers ----------------------------------------------------------

#[test]
fn empty_read_buffers_are_refused_at_submission() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<Ctx> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        type SubmitFn = fn(&mut Watcher<Ctx>, Conn, Ctx, Vec<u8>) -> Result<(), gaio::Rejected<Ctx, Vec<u8>>>;
        // (read_append without spare capacity: tests/read_append.rs.)
        let cases: [(&str, SubmitFn); 2] = [
            ("read", |w, c, x, b| w.read(c, x, b)),
            ("read_full", |w, c, x, b| w.read_full(c, x, b)),
        ];
        for (i, (name, submit)) in cases.into_iter().enumerate() {
            // Empty, but with an allocation, so we can tell it is our buffer
            // that comes back.
            let buf: Vec<u8> = Vec::with_capacity(32);
            let ptr = buf.as_ptr();
            let rej = submit(&mut w, conn, ctx(i as u64), buf).expect_err(name);
            assert!(
                matches!(rej.error, Error::EmptyBuffer),
                "{mode:?} {name}: {:?}",
                rej.error
            );
            assert_eq!(rej.context, ctx(i as u64), "{mode:?} {name}");
            let back = rej.buffer.expect("buffer handed back");
            assert_eq!(back.as_ptr(), ptr, "{mode:?} {name}: not the submitted buffer");
            assert!(back.is_empty() && back.capacity() >= 32);
        }
        // Nothing was queued: nothing completes later.
        util::expect_quiet(&mut w, QUIET);
        // And the connection is unharmed.
        w.read(conn, ctx(9), vec![0; 8]).unwrap();
        client.write_all(b"ok").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, ctx(9));
        assert_eq!(c.data(), b"ok");
        util::expect_quiet(&mut w, QUIET);
    }
    fds.check();
}

/// An empty write is a write: it completes, with 0 bytes, after the writes
/// before it (even while they wait for the peer to read), and before the
/// writes after it.
#[test]
fn an_empty_write_completes_in_order_with_zero_bytes() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<Ctx> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        // 8 MiB: more than the socket buffers hold, so it waits for the
        // client to read.
        let big = util::pattern(1, 8 << 20);
        w.write(conn, ctx(1), big.clone()).unwrap();
        w.write(conn, ctx(2), Vec::with_capacity(16)).unwrap();
        w.write(conn, ctx(3), b"end".to_vec()).unwrap();
        w.write(conn, ctx(4), Vec::new()).unwrap();
        util::expect_quiet(&mut w, QUIET);
        let reader = thread::spawn(move || {
            let mut got = vec![0; (8 << 20) + 3];
            client.read_exact(&mut got).unwrap();
            got
        });
        let done = util::wait_for(&mut w, 4, LIMIT);
        let order: Vec<(Ctx, Option<String>, usize)> = done
            .iter()
            .map(|c| {
                (
                    c.context.clone(),
                    c.error.as_ref().map(|e| e.to_string()),
                    c.bytes,
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                (ctx(1), None, 8 << 20),
                (ctx(2), None, 0),
                (ctx(3), None, 3),
                (ctx(4), None, 0)
            ],
            "{mode:?}"
        );
        let back = done[1].buffer.as_bytes();
        assert!(back.is_empty(), "{mode:?}");
        let got = reader.join().unwrap();
        assert!(got[..8 << 20] == big[..], "{mode:?}");
        assert_eq!(&got[8 << 20..], b"end");
    }
    fds.check();
}

// ----- 3. what can be handed over ------------------------------------------

#[test]
fn regular_file_is_not_pollable_and_is_closed() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher = util::watcher(mode);
        let path = std::env::temp_dir().join(format!("gaio-lifecycle-{}-{mode:?}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let open = util::open_fds();
        match w.watch(file) {
            Err(Error::NotPollable(e)) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(rustix::io::Errno::PERM.raw_os_error()),
                    "{e}"
                )
            }
            other => panic!("{mode:?}: expected NotPollable, got {other:?}"),
        }
        assert_eq!(util::open_fds(), open - 1, "{mode:?}: the file was not closed");
        drop(w);
    }
    fds.check();
}

/// A device without a poll method (`/dev/null` reads end at once, `/dev/zero`
/// never does) is refused by every Linux backend, as epoll refuses it: the
/// ring could read it, but a watcher's contract does not depend on the
/// backend. A descriptor that can be polled but is no file (an eventfd) is
/// taken. (poll(2), the portable fallback, cannot tell such a device apart.)
/// A run that asks for epoll (`GAIO_BACKEND=epoll`: the valgrind pass,
/// since memcheck cannot follow a ring, and a ring made under it hangs)
/// checks epoll only.
#[cfg(all(target_os = "linux", not(gaio_force_poll)))]
#[test]
fn a_device_epoll_refuses_is_refused_on_every_backend() {
    let fds = util::FdCheck::new();
    let epoll_only = std::env::var("GAIO_BACKEND").is_ok_and(|b| b.eq_ignore_ascii_case("epoll"));
    let backends: &[gaio::Backend] = if epoll_only {
        &[gaio::Backend::Epoll]
    } else {
        &[gaio::Backend::Uring, gaio::Backend::Epoll]
    };
    for &backend in backends {
        for mode in util::MODES {
            let built = gaio::Builder::new().mode(mode).backend(backend).build();
            let Ok(mut w): Result<Watcher, _> = built else {
                assert_eq!(backend, gaio::Backend::Uring, "epoll is always there");
                continue; // no ring on this kernel: the fallback test covers it
            };
            for path in ["/dev/null", "/dev/zero"] {
                let dev = std::fs::File::open(path).unwrap();
                let open = util::open_fds();
                match w.watch(dev) {
                    Err(Error::NotPollable(e)) => assert_eq!(
                        e.raw_os_error(),
                        Some(rustix::io::Errno::PERM.raw_os_error()),
                        "{backend} {mode:?} {path}: {e}"
                    ),
                    other => panic!("{backend} {mode:?} {path}: expected NotPollable, got {other:?}"),
                }
                assert_eq!(
                    util::open_fds(),
                    open - 1,
                    "{backend} {mode:?}: {path} was not closed"
                );
            }
            let event = rustix::event::eventfd(0, rustix::event::EventfdFlags::NONBLOCK).unwrap();
            let conn = w
                .watch(event)
                .unwrap_or_else(|e| panic!("{backend} {mode:?}: eventfd refused: {e}"));
            w.free(conn).unwrap();
            drop(w);
        }
    }
    fds.check();
}

#[test]
fn seqpacket_socket_is_unsupported_and_is_closed() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher = util::watcher(mode);
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::empty(),
            None,
        )
        .unwrap();
        drop(b);
        let open = util::open_fds();
        match w.watch(a) {
            Err(Error::UnsupportedSocket) => {}
            other => panic!("{mode:?}: expected UnsupportedSocket, got {other:?}"),
        }
        assert_eq!(util::open_fds(), open - 1, "{mode:?}: the socket was not closed");
        drop(w);
    }
    fds.check();
}

#[test]
fn unix_stream_pair_works_end_to_end() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mine, mut peer) = UnixStream::pair().unwrap();
        unix_timeouts(&peer);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(mine).unwrap();
        w.read(conn, 1, vec![0; 64]).unwrap();
        let msg = util::pattern(3, 40);
        peer.write_all(&msg).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, 1);
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        assert_eq!(c.data(), &msg[..]);
        // Echo it back.
        let echo = c.data().to_vec();
        w.write(conn, 2, echo).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.context, c.bytes), (2, 40));
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        let mut got = vec![0u8; 40];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
        // End of stream too.
        w.read_swap(conn, 3).unwrap();
        drop(peer);
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, 3);
        assert!(matches!(c.error, Some(Error::Eof)), "{mode:?}: {:?}", c.error);
        drop(w);
    }
    fds.check();
}

// ----- 4. free -------------------------------------------------------------------

#[test]
fn requests_after_free_complete_with_conn_closed() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        w.free(conn).unwrap();

        let marker = util::pattern(4, 16);
        w.read(conn, 1, marker.clone()).unwrap();
        w.read_full(conn, 2, marker.clone()).unwrap();
        w.write(conn, 3, marker.clone()).unwrap();
        w.read_swap(conn, 4).unwrap();
        let got = util::wait_for(&mut w, 4, LIMIT);
        for c in &got {
            assert!(is_conn_closed(c), "{mode:?} ctx {}: {:?}", c.context, c.error);
            assert_eq!((c.conn, c.bytes), (conn, 0));
            match c.context {
                1..=3 => assert!(matches!(&c.buffer, Buffer::User(b) if *b == marker)),
                _ => assert!(matches!(&c.buffer, Buffer::Swap(b) if b.is_empty())),
            }
        }
        let mut contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        contexts.sort_unstable();
        assert_eq!(contexts, [1, 2, 3, 4]);
        util::expect_quiet(&mut w, QUIET);
        // The socket was closed: the peer sees end of stream.
        assert_eq!(read_to_eof(&mut client), b"", "{mode:?}");
        drop(w);
    }
    fds.check();
}

#[test]
fn free_completes_queued_reads_and_writes_in_order() {
    let fds = util::FdCheck::new();
    let big = util::pattern(40, BIG);
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        // Reads 0..5 (nothing to read: they stay pending).
        w.read(conn, 0, vec![0; 10]).unwrap();
        w.read_swap(conn, 1).unwrap();
        w.read_full(conn, 2, vec![0; 10]).unwrap();
        w.read(conn, 3, vec![0; 10]).unwrap();
        w.read_swap(conn, 4).unwrap();
        // Writes 100..105: the first cannot be taken at once, the rest queue.
        w.write(conn, 100, big.clone()).unwrap();
        let small: Vec<Vec<u8>> = (101..105).map(|i| util::pattern(i, 100)).collect();
        for (i, b) in (101..).zip(&small) {
            w.write(conn, i, b.clone()).unwrap();
        }
        util::expect_quiet(&mut w, QUIET);

        w.free(conn).unwrap();
        let got = util::wait_for(&mut w, 10, LIMIT);
        util::expect_quiet(&mut w, QUIET);
        for c in &got {
            assert!(is_conn_closed(c), "{mode:?} ctx {}: {:?}", c.context, c.error);
            assert_eq!(c.conn, conn);
        }
        let reads: Vec<u32> = got.iter().filter(|c| c.op.is_read()).map(|c| c.context).collect();
        let writes: Vec<u32> = got
            .iter()
            .filter(|c| !c.op.is_read())
            .map(|c| c.context)
            .collect();
        assert_eq!(reads, [0, 1, 2, 3, 4], "{mode:?}: reads out of order");
        assert_eq!(writes, [100, 101, 102, 103, 104], "{mode:?}: writes out of order");

        let first = got.iter().find(|c| c.context == 100).unwrap();
        assert!(
            first.bytes > 0 && first.bytes < BIG,
            "{mode:?}: big write moved {}",
            first.bytes
        );
        assert!(matches!(&first.buffer, Buffer::User(b) if *b == big));
        for c in got.iter().filter(|c| c.context > 100) {
            assert_eq!(c.bytes, 0);
            assert!(matches!(&c.buffer, Buffer::User(b) if *b == small[c.context as usize - 101]));
        }
        // The peer gets exactly the part of the big write that was taken,
        // then end of stream.
        let written = first.bytes;
        let received = read_to_eof(&mut client);
        assert_eq!(received.len(), written, "{mode:?}");
        assert!(received == big[..written], "{mode:?}: received bytes differ");
        drop(w);
    }
    fds.check();
}

// ----- 5. free twice, stale free ---------------------------------------------

#[test]
fn double_and_stale_free_are_harmless() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut client_a, server_a) = util::tcp_pair();
        let (mut client_b, server_b) = util::tcp_pair();
        timeouts(&client_a);
        timeouts(&client_b);
        let mut w: Watcher<u32> = util::watcher(mode);
        let a = w.watch(server_a).unwrap();
        let b = w.watch(server_b).unwrap();
        w.read(b, 1, vec![0; 16]).unwrap();

        w.free(a).unwrap();
        w.free(a).unwrap();
        // A new connection takes a's descriptor number; freeing through the
        // stale handle must not touch it.
        let (mut client_c, server_c) = connection_on_fd(&listener, a.fd());
        let c = w.watch(server_c).unwrap();
        assert_eq!(c.fd(), a.fd());
        assert_ne!(c, a);
        w.free(a).unwrap();
        w.free(a).unwrap();
        // No completion comes from any of that (a had nothing pending).
        util::expect_quiet(&mut w, QUIET);
        assert_eq!(read_to_eof(&mut client_a), b"");

        // b and c both still work, both directions.
        w.read(c, 2, vec![0; 16]).unwrap();
        client_b.write_all(b"to b").unwrap();
        client_c.write_all(b"to c").unwrap();
        let mut got = util::wait_for(&mut w, 2, LIMIT);
        got.sort_by_key(|x| x.context);
        assert!(
            got.iter().all(|x| x.error.is_none()),
            "{mode:?}: {:?}",
            got[0].error
        );
        assert_eq!((got[0].conn, got[0].data()), (b, &b"to b"[..]));
        assert_eq!((got[1].conn, got[1].data()), (c, &b"to c"[..]));
        w.write(b, 3, b"from b".to_vec()).unwrap();
        w.write(c, 4, b"from c".to_vec()).unwrap();
        let got = util::wait_for(&mut w, 2, LIMIT);
        assert!(got.iter().all(|x| x.error.is_none() && x.bytes == 6));
        let mut buf = [0u8; 6];
        client_b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"from b");
        client_c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"from c");
        drop(w);
    }
    fds.check();
}

// ----- 6. stale handles and descriptor reuse -----------------------------------

#[test]
fn stale_handle_never_reaches_a_connection_reusing_the_fd() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut client_a, server_a) = util::tcp_pair();
        timeouts(&client_a);
        let mut w: Watcher<u32> = util::watcher(mode);
        let a = w.watch(server_a).unwrap();
        w.free(a).unwrap();
        assert_eq!(read_to_eof(&mut client_a), b"");

        let (mut peer, sock) = connection_on_fd(&listener, a.fd());
        let n = w.watch(sock).unwrap();
        assert_eq!(n.fd(), a.fd(), "{mode:?}");
        assert_ne!(n, a, "{mode:?}: a new connection must get a new handle");

        // Data is waiting on the new connection before the stale requests.
        peer.write_all(b"fresh-data").unwrap();
        w.read(a, 1, vec![0; 64]).unwrap();
        w.read_swap(a, 2).unwrap();
        w.read_full(a, 3, vec![0; 4]).unwrap();
        w.write(a, 4, b"STALE".to_vec()).unwrap();
        let got = util::wait_for(&mut w, 4, LIMIT);
        for c in &got {
            assert!(is_conn_closed(c), "{mode:?} ctx {}: {:?}", c.context, c.error);
            assert_eq!((c.conn, c.bytes), (a, 0), "{mode:?}");
        }
        util::expect_quiet(&mut w, QUIET);

        // The stale reads consumed nothing: the new connection gets it all.
        w.read(n, 5, vec![0; 64]).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.context, c.conn), (5, n));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.data(), b"fresh-data");

        // The stale write sent nothing to the new peer.
        assert_nothing_to_read(&mut peer, QUIET);
        w.write(n, 6, b"ok".to_vec()).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(c.error.is_none() && c.bytes == 2, "{:?}", c.error);
        let mut buf = [0u8; 2];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ok");
        assert_nothing_to_read(&mut peer, QUIET);

        // Freeing through the stale handle leaves the new connection alone.
        w.free(a).unwrap();
        w.read(n, 7, vec![0; 8]).unwrap();
        peer.write_all(b"alive").unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!((c.context, c.conn), (7, n));
        assert!(c.error.is_none(), "{:?}", c.error);
        assert_eq!(c.data(), b"alive");
        drop(w);
    }
    fds.check();
}

// ----- 7. close --------------------------------------------------------------------

#[test]
fn close_returns_pending_requests_then_refuses_everything() {
    let fds = util::FdCheck::new();
    let big = util::pattern(70, BIG);
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32> = util::watcher(mode);
        let sub = w.submitter();
        let conn = w.watch(server).unwrap();
        let marker = util::pattern(71, 32);
        w.read(conn, 1, marker.clone()).unwrap();
        w.read_swap(conn, 2).unwrap();
        w.write(conn, 3, big.clone()).unwrap();
        w.write(conn, 4, marker.clone()).unwrap();
        util::expect_quiet(&mut w, QUIET);
        assert!(!w.is_closed() && !sub.is_closed());

        w.close();
        w.close();
        assert!(w.is_closed() && sub.is_closed());

        // Every pending request comes back once with WatcherClosed, then
        // wait_io reports the closed watcher. Run on a thread, bounded.
        let (mut w, got, last) = off_thread(LIMIT, move || {
            let mut got = Vec::new();
            for _ in 0..10 {
                if let Err(e) = w.wait_io(&mut got) {
                    return (w, got, e);
                }
            }
            panic!("wait_io kept returning Ok after close: {} completions", got.len());
        });
        assert!(matches!(last, Error::WatcherClosed), "{mode:?}: {last:?}");
        let mut contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
        contexts.sort_unstable();
        assert_eq!(contexts, [1, 2, 3, 4], "{mode:?}");
        for c in &got {
            assert!(is_watcher_closed(c), "{mode:?} ctx {}: {:?}", c.context, c.error);
            match c.context {
                1 | 4 => assert!(matches!(&c.buffer, Buffer::User(b) if *b == marker)),
                2 => assert!(matches!(&c.buffer, Buffer::Swap(b) if b.is_empty())),
                _ => assert!(matches!(&c.buffer, Buffer::User(b) if *b == big)),
            }
        }
        let written = got.iter().find(|c| c.context == 3).unwrap().bytes;
        assert!(written < BIG);
        // And it keeps saying so.
        let mut more = Vec::new();
        assert!(matches!(
            w.wait_io_timeout(&mut more, QUIET),
            Err(Error::WatcherClosed)
        ));
        assert!(more.is_empty());

        // Submissions are refused with everything handed back.
        let buf = util::pattern(72, 24);
        let ptr = buf.as_ptr();
        let rej = w.read(conn, 10, buf).expect_err("read after close");
        assert!(matches!(rej.error, Error::WatcherClosed), "{:?}", rej.error);
        assert_eq!(rej.context, 10);
        let back = rej.buffer.unwrap();
        assert_eq!((back.as_ptr(), back), (ptr, util::pattern(72, 24)));
        let rej = w.write(conn, 11, marker.clone()).expect_err("write after close");
        assert!(matches!(rej.error, Error::WatcherClosed));
        assert_eq!((rej.context, rej.buffer), (11, Some(marker.clone())));
        let rej = w
            .read_full(conn, 12, marker.clone())
            .expect_err("read_full after close");
        assert!(matches!(rej.error, Error::WatcherClosed));
        assert_eq!((rej.context, rej.buffer), (12, Some(marker.clone())));
        let rej = w.read_swap(conn, 13).expect_err("read_swap after close");
        assert!(matches!(rej.error, Error::WatcherClosed));
        assert_eq!((rej.context, rej.buffer), (13, None));
        // The same through a submitter.
        let mut sub2 = sub.clone();
        let rej = sub2
            .write(conn, 14, marker.clone())
            .expect_err("submitter write after close");
        assert!(matches!(rej.error, Error::WatcherClosed));
        assert_eq!((rej.context, rej.buffer), (14, Some(marker.clone())));
        // Freeing after close does nothing and does not fail: the loop
        // that handles the last completions can free with `?`.
        assert!(matches!(w.free(conn), Ok(())));
        assert!(matches!(sub2.free(conn), Ok(())));
        sub2.close();

        // Watch after close fails, and the descriptor is closed anyway.
        let (peer2, server2) = util::tcp_pair();
        let open = util::open_fds();
        assert!(matches!(w.watch(server2), Err(Error::WatcherClosed)));
        assert_eq!(
            util::open_fds(),
            open - 1,
            "{mode:?}: refused descriptor left open"
        );
        let (_peer3, server3) = util::tcp_pair();
        let open = util::open_fds();
        assert!(matches!(sub2.watch(server3), Err(Error::WatcherClosed)));
        assert_eq!(
            util::open_fds(),
            open - 1,
            "{mode:?}: refused descriptor left open"
        );
        drop(peer2);

        // The connection was closed: the peer gets what was written, then EOF.
        let received = read_to_eof(&mut client);
        assert_eq!(received.len(), written, "{mode:?}");
        assert!(received == big[..written]);
        drop((w, sub, sub2));
    }
    fds.check();
}

// ----- 8. close from another thread ------------------------------------------

#[test]
fn close_from_another_thread_wakes_a_blocked_wait() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        let mut w: Watcher<u32> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        let marker = util::pattern(8, 20);
        w.read(conn, 7, marker.clone()).unwrap();
        let mut sub = w.submitter();

        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let mut got = Vec::new();
            let mut results = Vec::new();
            for _ in 0..10 {
                // Blocks without limit: only close can end it.
                let r = w.wait_io(&mut got);
                let end = r.is_err();
                results.push(r);
                if end {
                    break;
                }
            }
            let _ = tx.send((got, results));
            drop(w);
        });
        // The waiter is blocked: nothing comes for a while.
        match rx.recv_timeout(Duration::from_millis(300)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            other => panic!("{mode:?}: wait_io returned without anything to report: {other:?}"),
        }
        let closed_at = Instant::now();
        sub.close();
        let (got, results) = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("{mode:?}: blocked wait_io not woken by close: {e}"));
        assert!(closed_at.elapsed() < Duration::from_secs(2));
        waiter.join().unwrap();
        assert!(
            matches!(results.last(), Some(Err(Error::WatcherClosed))),
            "{mode:?}: {results:?}"
        );
        assert!(results[..results.len() - 1].iter().all(Result::is_ok));
        assert_eq!(got.len(), 1, "{mode:?}");
        let c = &got[0];
        assert!(is_watcher_closed(c), "{mode:?}: {:?}", c.error);
        assert_eq!((c.context, c.conn, c.bytes), (7, conn, 0));
        assert!(matches!(&c.buffer, Buffer::User(b) if *b == marker));
        assert!(sub.is_closed());
        drop((sub, client));
    }
    fds.check();
}

// ----- 9. drop with requests in flight ------------------------------------------

/// A buffer that counts how often it is dropped.
struct Tracked {
    data: Vec<u8>,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl IoBuf for Tracked {
    fn as_bytes(&self) -> &[u8] {
        &self.data
    }
}

impl IoBufMut for Tracked {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

#[test]
fn drop_with_requests_in_flight_closes_everything() {
    let fds = util::FdCheck::new();
    let big = util::pattern(90, BIG);
    for mode in util::MODES {
        let threads_before = thread_count();
        let drops = Arc::new(AtomicUsize::new(0));
        let tracked = |data: Vec<u8>| Tracked {
            data,
            drops: Arc::clone(&drops),
        };
        let mut clients: Vec<TcpStream> = Vec::new();
        let mut w: Watcher<u32, Tracked> = util::watcher(mode);
        if mode == Mode::Background {
            assert_eq!(
                thread_count(),
                threads_before.map(|t| t + 1),
                "one background thread"
            );
        }
        let mut conns = Vec::new();
        for _ in 0..3 {
            let (client, server) = util::tcp_pair();
            timeouts(&client);
            clients.push(client);
            conns.push(w.watch(server).unwrap());
        }
        // Pending reads everywhere, a blocked write and a queued one on the
        // first connection, a swap read on the last.
        for (i, &conn) in conns.iter().enumerate() {
            w.read(conn, i as u32, tracked(vec![0; 100])).unwrap();
        }
        w.read_swap(conns[2], 10).unwrap();
        w.write(conns[0], 20, tracked(big.clone())).unwrap();
        w.write(conns[0], 21, tracked(vec![1; 100])).unwrap();
        util::expect_quiet(&mut w, QUIET);
        // A submitter that outlives the watcher.
        let mut sub = w.submitter();
        let submitted = 5;
        assert_eq!(drops.load(Ordering::SeqCst), 0);

        drop(w);
        assert_eq!(
            thread_count(),
            threads_before,
            "{mode:?}: a thread outlived the watcher"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            submitted,
            "{mode:?}: buffers not dropped"
        );
        // The submitter still exists but only gets refusals.
        assert!(sub.is_closed());
        let rej = sub
            .read(conns[1], 30, tracked(vec![0; 4]))
            .expect_err("submit after drop");
        assert!(matches!(rej.error, Error::WatcherClosed), "{:?}", rej.error);
        drop(rej);
        drop(sub);
        // Every peer sees end of stream; the first gets a prefix of the big write.
        let first = read_to_eof(&mut clients[0]);
        assert!(first.len() < BIG && first == big[..first.len()], "{mode:?}");
        for client in &mut clients[1..] {
            assert_eq!(read_to_eof(client), b"", "{mode:?}");
        }
    }
    fds.check();
}

// ----- 11. builder -------------------------------------------------------------------

#[test]
fn builder_refuses_sizes_out_of_range() {
    let fds = util::FdCheck::new();
    let threads = thread_count();
    for mode in util::MODES {
        let cases = [
            ("swap_size", 0, gaio::Builder::new().swap_size(0)),
            (
                "swap_size",
                usize::MAX,
                gaio::Builder::new().swap_size(usize::MAX),
            ),
            ("max_events", 0, gaio::Builder::new().max_events(0)),
            (
                "max_events",
                usize::MAX,
                gaio::Builder::new().max_events(usize::MAX),
            ),
        ];
        for (setting, given, builder) in cases {
            match builder.mode(mode).build::<(), Vec<u8>>() {
                Err(e @ Error::InvalidSetting(_)) => {
                    let Error::InvalidSetting(s) = &e else {
                        unreachable!()
                    };
                    let max = s.max;
                    assert_eq!((s.name, s.value, s.min), (setting, given, 1), "{mode:?}");
                    let limit = if setting == "swap_size" {
                        gaio::MAX_SWAP_SIZE
                    } else {
                        gaio::MAX_EVENTS_PER_WAIT
                    };
                    assert_eq!(max, limit);
                    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
                }
                other => panic!("{mode:?}: {setting} = {given}: expected InvalidSetting, got {other:?}"),
            }
        }
        // Nothing was started.
        assert_eq!(thread_count(), threads);
    }
    fds.check();
}

/// Sends `len` bytes at once, then collects them with one swap read after
/// another; each read must return between 1 and `swap` bytes.
fn swap_reads_deliver_everything(swap: Option<usize>, len: usize) {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        timeouts(&client);
        let builder = gaio::Builder::new().mode(mode);
        let builder = match swap {
            Some(s) => builder.swap_size(s),
            None => builder,
        };
        let mut w: Watcher<usize> = builder.build().unwrap();
        let swap = swap.unwrap_or(gaio::DEFAULT_SWAP_SIZE);
        let conn = w.watch(server).unwrap();
        let msg = util::pattern(11, len);
        // Written by a thread: the peer sends everything, then waits (a
        // request/response client). No further data makes a new edge.
        let writer = {
            let msg = msg.clone();
            let mut client = client.try_clone().unwrap();
            thread::spawn(move || client.write_all(&msg).unwrap())
        };
        let mut received = Vec::new();
        let mut pieces = 0;
        let end = Instant::now() + LIMIT;
        while received.len() < msg.len() {
            assert!(
                pieces < msg.len() && Instant::now() < end,
                "{mode:?}: stuck at {}",
                received.len()
            );
            w.read_swap(conn, pieces).unwrap();
            let mut out = Vec::new();
            w.wait_io_timeout(&mut out, LIMIT).unwrap();
            assert_eq!(
                out.len(),
                1,
                "{mode:?}: swap read #{pieces} not completed; {} of {} bytes were delivered",
                received.len(),
                msg.len()
            );
            let c = out.pop().unwrap();
            assert_eq!(c.context, pieces);
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            assert!(
                c.bytes > 0 && c.bytes <= swap,
                "{mode:?}: a swap read of {} bytes",
                c.bytes
            );
            match &c.buffer {
                Buffer::Swap(b) => {
                    assert_eq!(b.len(), c.bytes);
                    received.extend_from_slice(b);
                }
                Buffer::User(_) => panic!("swap read returned a user buffer"),
                Buffer::None => unreachable!("a swap read always hands a slice back"),
            }
            pieces += 1;
        }
        writer.join().unwrap();
        assert!(received == msg, "{mode:?}: bytes differ");
        assert!(pieces >= msg.len() / swap, "{mode:?}: only {pieces} pieces");
        drop((w, client));
    }
    fds.check();
}

#[test]
fn small_swap_size_delivers_a_large_message_in_pieces() {
    let _lock = util::exclusive();
    swap_reads_deliver_everything(Some(64), 20_000);
}

/// The same with default settings: a message larger than one swap slab,
/// sent at once (regression: a swap read that filled its region used to
/// clear the readable flag, stalling the next one).
#[test]
fn default_swap_delivers_a_message_larger_than_a_slab() {
    let _lock = util::exclusive();
    swap_reads_deliver_everything(None, 4 * gaio::DEFAULT_SWAP_SIZE);
}

#[test]
fn one_event_per_wait_still_serves_every_connection() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<usize> = gaio::Builder::new().mode(mode).max_events(1).build().unwrap();
        let pairs = util::tcp_pairs(8);
        let mut clients = Vec::new();
        for (i, (client, server)) in pairs.into_iter().enumerate() {
            timeouts(&client);
            let conn = w.watch(server).unwrap();
            w.read(conn, i, vec![0; 32]).unwrap();
            clients.push(client);
        }
        util::expect_quiet(&mut w, QUIET);
        for (i, client) in clients.iter_mut().enumerate() {
            client.write_all(&util::pattern(i as u64, 20)).unwrap();
        }
        let mut got = util::wait_for(&mut w, 8, LIMIT);
        got.sort_by_key(|c| c.context);
        for (i, c) in got.iter().enumerate() {
            assert_eq!(c.context, i);
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            assert_eq!(c.data(), &util::pattern(i as u64, 20)[..]);
        }
        drop(w);
    }
    fds.check();
}

/// Where thread affinity is not supported, the setter says so instead of
/// pretending (Linux has its own tests in `affinity.rs`).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[test]
fn set_affinity_reports_unsupported_off_linux() {
    let _lock = util::shared();
    for mode in util::MODES {
        let w: Watcher = util::watcher(mode);
        let e = w.set_affinity(0).expect_err("affinity is not supported here");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    }
}
