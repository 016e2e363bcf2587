//! A connection handle given to a watcher other than the one that handed
//! it out is refused with `ForeignConn`, even when its descriptor number and
//! generation name a live connection of that other watcher (each watcher
//! counts generations from the start, and descriptor numbers are reused).

mod util;
use util::peer::timeouts;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use gaio::{Error, Mode, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);

fn handles_do_not_cross_watchers(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut a: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let mut b: Watcher<u32, Vec<u8>> = util::watcher(mode);

    let (mut client, server) = util::tcp_pair();
    timeouts(&client);
    // A's first connection, freed: its number goes back to the OS.
    let (first_client, first_server) = util::tcp_pair();
    let number = first_server.as_raw_fd();
    let from_a = a.watch(first_server).expect("watch on a");
    a.free(from_a).expect("free on a");
    util::expect_quiet(&mut a, Duration::from_millis(20));
    drop(first_client);

    // B's first connection gets the same number (and B's first generation).
    let original = server;
    let server = std::net::TcpStream::from(rustix::io::fcntl_dupfd_cloexec(&original, number).expect("dup"));
    drop(original);
    assert_eq!(server.as_raw_fd(), number, "the number was not reused");
    let from_b = b.watch(server).expect("watch on b");
    assert_ne!(from_a, from_b, "handles of two watchers compare equal");

    // A's stale handle on B: refused, with everything handed back, and B's
    // connection untouched.
    client.write_all(b"for b").unwrap();
    let refused = b
        .read(from_a, 7, vec![0; 16])
        .expect_err("a foreign handle was accepted");
    assert!(matches!(refused.error, Error::ForeignConn), "{:?}", refused.error);
    assert_eq!((refused.context, refused.buffer), (7, Some(vec![0; 16])));
    let refused = b.write(from_a, 8, b"not for b".to_vec()).expect_err("accepted");
    assert!(matches!(refused.error, Error::ForeignConn), "{:?}", refused.error);
    assert!(matches!(b.free(from_a), Err(Error::ForeignConn)));
    // Through a Submitter too.
    let mut sub = b.submitter();
    let refused = sub.read(from_a, 9, vec![0; 16]).expect_err("accepted");
    assert!(matches!(refused.error, Error::ForeignConn), "{:?}", refused.error);
    assert!(matches!(sub.free(from_a), Err(Error::ForeignConn)));
    assert_eq!(
        Error::ForeignConn.to_string(),
        "the connection belongs to another watcher, or to none"
    );

    // B's own handle still reaches its connection: nothing was read from
    // it, written to it, or closed.
    b.read(from_b, 10, vec![0; 16]).expect("read on b");
    let done = util::wait_for(&mut b, 1, LIMIT);
    assert_eq!(done[0].context, 10);
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(done[0].data(), b"for b");
    b.write(from_b, 11, b"reply".to_vec()).expect("write on b");
    util::wait_for(&mut b, 1, LIMIT);
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"reply");

    // A live handle of A is just as foreign to B.
    let (_c, s) = util::tcp_pair();
    let live_a = a.watch(s).expect("watch on a");
    let refused = b.read(live_a, 12, vec![0; 4]).expect_err("accepted");
    assert!(matches!(refused.error, Error::ForeignConn), "{:?}", refused.error);
    drop((a, b, sub, client, _c));
    fds.check();
}

#[test]
fn a_handle_from_another_watcher_is_refused_inline() {
    handles_do_not_cross_watchers(Mode::Inline);
}

#[test]
fn a_handle_from_another_watcher_is_refused_background() {
    handles_do_not_cross_watchers(Mode::Background);
}
