//! An inline watcher on io_uring used from a thread other than the one
//! that ran its first I/O (found by review). Waiting there is refused
//! (`backend.rs`); a request that has to end a read in the ring there (a
//! `free`, a `detach` behind a read, a close collected there) cannot
//! cancel it, so the ring gives up: the read's buffer is handed back and
//! no thread may enter the ring again, since the next entry would run the
//! read into that buffer. Each test sends bytes after the buffer came
//! back and checks that they never land in it (they stay in the socket),
//! and that the watcher says `WrongThread` from then on. Before the fix
//! the bytes landed in the buffer handed back, or the process aborted on
//! a freed one.
#![cfg(all(target_os = "linux", not(gaio_force_poll)))]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gaio::{Backend, Buffer, Completion, Error, Op, Submit, Watcher};

type W = Watcher<u32, Vec<u8>>;

/// An inline watcher on the ring, or `None` where there is none (the
/// seccomp pass of `cargo xtask test`: then checked to be the probe's
/// answer).
fn ring() -> Option<W> {
    match gaio::Builder::new().backend(Backend::Uring).build() {
        Ok(w) => Some(w),
        Err(e) => {
            assert!(
                gaio_uring::probe().is_err(),
                "the ring was refused although the probe found one: {e}"
            );
            None
        }
    }
}

/// A watched connection with a read of 64 zeroed bytes waiting in the
/// ring, which the calling thread has entered (so it is bound to it).
fn read_in_the_ring(w: &mut W) -> (TcpStream, gaio::Conn) {
    let (client, server) = util::tcp_pair();
    let conn = w.watch(server).unwrap();
    w.read(conn, 1, vec![0; 64]).unwrap();
    let mut batch = Vec::new();
    w.wait_io_timeout(&mut batch, Duration::from_millis(30)).unwrap();
    assert!(batch.is_empty(), "{} completions with nothing sent", batch.len());
    (client, conn)
}

/// Collects completions (bounded) until `n` came, ignoring the refusals.
fn collect(w: &mut W, n: usize) -> Vec<Completion<u32, Vec<u8>>> {
    let mut all = Vec::new();
    for _ in 0..50 {
        let mut batch = Vec::new();
        let _ = w.wait_io_timeout(&mut batch, Duration::from_millis(20));
        all.extend(batch);
        if all.len() >= n {
            break;
        }
    }
    all
}

/// Sends "late" and turns `w`: the buffer handed back stays untouched and
/// the watcher refuses to wait, on this thread too.
fn late_bytes_stay_out_of(w: &mut W, client: &mut TcpStream, buf: &[u8]) {
    client.write_all(b"late").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mut batch = Vec::new();
    let got = w.wait_io_timeout(&mut batch, Duration::from_millis(30));
    assert!(matches!(got, Err(Error::WrongThread)), "{got:?}");
    assert!(batch.is_empty());
    assert_eq!(
        &buf[..4],
        [0; 4],
        "the kernel wrote into a buffer a completion handed back"
    );
}

fn user_buffer(c: Completion<u32, Vec<u8>>) -> Vec<u8> {
    match c.buffer {
        Buffer::User(b) => b,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_detach_from_the_wrong_thread_gives_the_ring_up_and_the_socket_keeps_its_bytes() {
    let fds = util::FdCheck::new();
    let Some(mut w) = ring() else { return };
    let (mut client, conn) = read_in_the_ring(&mut w);
    let mut w = std::thread::spawn(move || {
        w.detach(conn, 3).unwrap();
        w
    })
    .join()
    .unwrap();
    let mut done = collect(&mut w, 2);
    assert_eq!(
        done.iter().map(|c| (c.op, c.context)).collect::<Vec<_>>(),
        [(Op::Detach, 3), (Op::Read, 1)]
    );
    assert!(
        matches!(done[1].error, Some(Error::ConnClosed)),
        "{:?}",
        done[1].error
    );
    let mut sock = TcpStream::from(done[0].detached.take().expect("the socket"));
    let buf = user_buffer(done.pop().unwrap());
    late_bytes_stay_out_of(&mut w, &mut client, &buf);
    // The bytes are the socket's, for its new owner.
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.set_nonblocking(false).unwrap();
    let mut got = [0u8; 4];
    sock.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"late");
    drop((w, sock, client));
    fds.check();
}

#[test]
fn a_free_from_the_wrong_thread_gives_the_ring_up() {
    let fds = util::FdCheck::new();
    let Some(mut w) = ring() else { return };
    let (mut client, conn) = read_in_the_ring(&mut w);
    let mut w = std::thread::spawn(move || {
        w.free(conn).unwrap();
        w
    })
    .join()
    .unwrap();
    let mut done = collect(&mut w, 1);
    assert_eq!((done[0].op, done[0].context), (Op::Read, 1));
    assert!(
        matches!(done[0].error, Some(Error::ConnClosed)),
        "{:?}",
        done[0].error
    );
    let buf = user_buffer(done.pop().unwrap());
    let _ = client.write_all(b"late"); // the socket may be closed by now
    late_bytes_stay_out_of(&mut w, &mut client, &buf);
    drop((w, client));
    fds.check();
}

/// Closed through a submitter and collected on another thread, then
/// dropped on its own: the drop does not enter the ring either (it did,
/// running the read into the buffer already handed out).
#[test]
fn a_watcher_closed_and_collected_elsewhere_is_dropped_without_entering_its_ring() {
    let fds = util::FdCheck::new();
    let Some(mut w) = ring() else { return };
    let (mut client, _conn) = read_in_the_ring(&mut w);
    let mut closer = w.submitter();
    closer.close();
    let (w, buf) = std::thread::spawn(move || {
        let mut all = Vec::new();
        for _ in 0..50 {
            let mut batch = Vec::new();
            match w.wait_io_timeout(&mut batch, Duration::from_millis(20)) {
                Ok(_) => all.extend(batch),
                Err(e) => {
                    assert!(matches!(e, Error::WatcherClosed), "{e:?}");
                    break;
                }
            }
        }
        let read = all
            .into_iter()
            .find(|c| c.op == Op::Read)
            .expect("the read came back");
        assert!(
            matches!(read.error, Some(Error::WatcherClosed)),
            "{:?}",
            read.error
        );
        (w, user_buffer(read))
    })
    .join()
    .unwrap();
    let _ = client.write_all(b"late");
    std::thread::sleep(Duration::from_millis(30));
    drop(w);
    drop(closer); // the ring's last owner
    assert_eq!(
        &buf[..4],
        [0; 4],
        "the kernel wrote into a buffer a completion handed back"
    );
    drop(client);
    fds.check();
}
