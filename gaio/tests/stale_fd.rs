//! A descriptor closed behind the watcher's back and its number reused: the
//! watcher retires the stale connection (its requests complete with
//! `ConnClosed`) without closing the new descriptor that now has the
//! number, and the new connection works.

mod util;
use util::peer::timeouts;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use gaio::{Error, Mode, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);

fn reuse_of_a_number_closed_behind_the_watchers_back(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let (old_client, old_server) = util::tcp_pair();
    let (mut client, server) = util::tcp_pair();
    timeouts(&client);
    let number = old_server.as_raw_fd();
    let stale = w.watch(old_server).expect("watch");
    w.read(stale, 1, vec![0; 16]).expect("read");
    util::expect_quiet(&mut w, Duration::from_millis(50));

    // The user closes the descriptor it gave away (an I/O-safety violation
    // the watcher must survive) and the OS hands the number out again.
    // SAFETY: deliberately closes a descriptor the watcher owns, to test
    // what the watcher does when user code does so; nothing in this test
    // uses the number until it names the duplicate below.
    unsafe { rustix::io::close(number) };
    let reused = std::net::TcpStream::from(rustix::io::fcntl_dupfd_cloexec(&server, number).expect("dup"));
    drop(server);
    assert_eq!(
        reused.as_raw_fd(),
        number,
        "dup did not take the lowest free number"
    );

    let conn = w.watch(reused).expect("watch the reused number");
    let done = util::wait_for(&mut w, 1, LIMIT);
    assert_eq!(done[0].context, 1);
    assert_eq!(done[0].conn, stale);
    // Retired when the number was handed over again (ConnClosed), or,
    // with poll(2) and an engine thread polling meanwhile, failed on the
    // descriptor it found closed (poll reports POLLNVAL, the read EBADF)
    // before the number came back. Either way it ended, and not with data
    // of the new connection.
    let ebadf = rustix::io::Errno::BADF.raw_os_error();
    assert!(
        match &done[0].error {
            Some(Error::ConnClosed) => true,
            Some(Error::Io(e)) => e.raw_os_error() == Some(ebadf),
            _ => false,
        },
        "the stale read ended with {:?}",
        done[0].error
    );
    assert_eq!(done[0].bytes, 0, "the stale read took bytes");

    // The new connection works both ways: its descriptor was not closed.
    client.write_all(b"ping").unwrap();
    w.read(conn, 2, vec![0; 16]).expect("read");
    let done = util::wait_for(&mut w, 1, LIMIT);
    assert_eq!((done[0].context, done[0].op), (2, Op::Read));
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(done[0].data(), b"ping");
    w.write(conn, 3, b"pong".to_vec()).expect("write");
    let done = util::wait_for(&mut w, 1, LIMIT);
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    let mut got = [0u8; 4];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");

    // Freeing it closes it exactly once: the peer sees end of stream, and
    // no descriptor is left behind (nor closed twice: debug builds of std
    // abort on closing a descriptor that is already closed).
    w.free(conn).expect("free");
    util::expect_quiet(&mut w, Duration::from_millis(20));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("peer sees end of stream");
    assert!(rest.is_empty());
    drop((w, client, old_client));
    fds.check();
}

#[test]
fn a_reused_descriptor_number_is_not_closed_inline() {
    reuse_of_a_number_closed_behind_the_watchers_back(Mode::Inline);
}

#[test]
fn a_reused_descriptor_number_is_not_closed_background() {
    reuse_of_a_number_closed_behind_the_watchers_back(Mode::Background);
}
