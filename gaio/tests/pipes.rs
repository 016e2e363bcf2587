//! Pipes handed over after their other end closed. A pipe's read end whose
//! writer is gone still holds data and then end of stream; some pollers
//! refuse to watch such an end for writing (FreeBSD's kqueue fails
//! `EVFILT_WRITE` with EPIPE), and `watch` must not fail because of it.
//! A write end whose reader is gone is watched too, and a write on it fails
//! with EPIPE.

mod util;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use gaio::{Error, Mode, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);

fn read_end_of_a_pipe_whose_writer_closed(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let (rx, tx) = rustix::pipe::pipe().expect("pipe");
    let mut tx = std::fs::File::from(tx);
    tx.write_all(b"left behind").unwrap();
    drop(tx);
    let conn = w.watch(rx).expect("watch a read end whose writer closed");
    w.read(conn, 1, vec![0; 64]).expect("read");
    let done = util::wait_for(&mut w, 1, LIMIT);
    assert!(done[0].error.is_none(), "{:?}", done[0].error);
    assert_eq!(done[0].data(), b"left behind");
    w.read(conn, 2, vec![0; 64]).expect("read");
    let done = util::wait_for(&mut w, 1, LIMIT);
    assert!(matches!(done[0].error, Some(Error::Eof)), "{:?}", done[0].error);
    drop(w);
    fds.check();
}

#[test]
fn a_pipe_whose_writer_closed_is_watched_and_read_to_the_end_inline() {
    read_end_of_a_pipe_whose_writer_closed(Mode::Inline);
}

#[test]
fn a_pipe_whose_writer_closed_is_watched_and_read_to_the_end_background() {
    read_end_of_a_pipe_whose_writer_closed(Mode::Background);
}

fn write_end_of_a_pipe_whose_reader_closed(mode: Mode) {
    let fds = util::FdCheck::new();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let (rx, tx): (OwnedFd, OwnedFd) = rustix::pipe::pipe().expect("pipe");
    drop(rx);
    let conn = w.watch(tx).expect("watch a write end whose reader closed");
    w.write(conn, 1, b"nobody reads".to_vec()).expect("write");
    let done = util::wait_for(&mut w, 1, LIMIT);
    match &done[0].error {
        Some(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::PIPE.raw_os_error())),
        other => panic!("expected EPIPE, got {other:?}"),
    }
    assert_eq!(done[0].bytes, 0);
    drop(w);
    fds.check();
}

#[test]
fn a_pipe_whose_reader_closed_is_watched_and_fails_writes_inline() {
    write_end_of_a_pipe_whose_reader_closed(Mode::Inline);
}

#[test]
fn a_pipe_whose_reader_closed_is_watched_and_fails_writes_background() {
    write_end_of_a_pipe_whose_reader_closed(Mode::Background);
}
