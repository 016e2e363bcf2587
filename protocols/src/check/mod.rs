//! Behaviour checks for a running server, the same for gaio's examples and
//! their tokio twins: each function connects to `addr` (loopback), drives
//! one situation, compares every byte that comes back, and panics with a
//! message saying what went wrong. Every read and write has a time limit.
//!
//! The situations: [`http`] and [`resp`] each check their protocol's
//! replies, a pipelined burst larger than the servers' read buffers (and
//! than gaio's swap memory) ended by a half-close, requests sent one byte
//! at a time, a client that stops reading (the server must stop reading
//! too: memory stays bounded and nothing is lost), a 1 MiB value, large
//! replies to pipelined commands (RESP), and garbage (an error reply,
//! then the server closes).

pub mod http;
pub mod resp;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

/// How long any one read or write may wait.
pub const IO_LIMIT: Duration = Duration::from_secs(20);

/// The most a client that reads nothing may send before the server must
/// have stopped reading: far more than the kernel's socket buffers and a
/// server's bounded read buffer hold, far less than what a server that
/// queues replies without limit would take.
pub const UNREAD_LIMIT: usize = 64 << 20;

/// A connected client with time limits and `TCP_NODELAY`.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_LIMIT)).unwrap();
    s.set_write_timeout(Some(IO_LIMIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `input` one byte per write (with a pause now and then, so the
/// server sees the pieces), then reads `replies` replies with `read_one`
/// and returns them.
pub(crate) fn byte_by_byte<T>(
    addr: SocketAddr,
    input: &[u8],
    replies: usize,
    mut read_one: impl FnMut(&mut BufReader<TcpStream>) -> T,
) -> Vec<T> {
    let mut s = connect(addr);
    for (i, b) in input.iter().enumerate() {
        s.write_all(std::slice::from_ref(b)).unwrap();
        if i % 8 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let mut r = BufReader::new(s);
    (0..replies).map(|_| read_one(&mut r)).collect()
}

/// Sends `request` `count` times in one stream (written by a thread while
/// this one reads), then half-closes; checks each reply with `check_one`
/// and that the server closes once it has answered everything.
pub(crate) fn pipelined_then_half_close(
    addr: SocketAddr,
    request: &[u8],
    count: usize,
    mut check_one: impl FnMut(&mut BufReader<TcpStream>, usize),
) {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let burst = request.repeat(count);
    let writer = thread::spawn(move || {
        for chunk in burst.chunks(64 * 1024) {
            w.write_all(chunk).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut r = BufReader::new(s);
    for i in 0..count {
        check_one(&mut r, i);
    }
    writer.join().unwrap();
    expect_close(&mut r, "after answering a pipelined burst and its half-close");
}

/// A client that sends `request` over and over and reads nothing: the
/// server must stop reading (its replies cannot go out) well before
/// [`UNREAD_LIMIT`]. Then the client reads, and every request sent must be
/// answered (`check_one` each), followed by the close after a half-close.
/// Returns how many bytes the server took while nobody read.
pub(crate) fn stalled_reader(
    addr: SocketAddr,
    request: &[u8],
    mut check_one: impl FnMut(&mut BufReader<TcpStream>, usize) + Send + 'static,
) -> usize {
    let mut s = connect(addr);
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let burst = request.repeat((256 * 1024) / request.len() + 1);
    let mut sent = 0;
    let stalled = loop {
        let at = sent % request.len();
        match s.write(&burst[at..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break true,
            Err(e) => panic!("write failed after {sent} bytes: {e}"),
        }
        if sent > UNREAD_LIMIT {
            break false;
        }
    };
    assert!(
        stalled,
        "the server took {sent} bytes from a client that read nothing: no back-pressure"
    );
    // Read every reply while finishing the last request.
    let count = sent.div_ceil(request.len());
    let reader = thread::spawn({
        let mut r = BufReader::new(s.try_clone().unwrap());
        move || {
            for i in 0..count {
                check_one(&mut r, i);
            }
            expect_close(&mut r, "after answering every request of a stalled client");
        }
    });
    s.set_write_timeout(Some(IO_LIMIT)).unwrap();
    s.write_all(&request[sent % request.len()..][..(count * request.len() - sent)])
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    reader.join().unwrap();
    sent
}

/// Checks that the server closes: end of stream, nothing more sent.
pub(crate) fn expect_close(r: &mut impl Read, when: &str) {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "{when}: {} unexpected bytes: {:?}",
            rest.len(),
            show(&rest)
        ),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{when}: no close: {e}"),
    }
}

/// Reads a line ending in CRLF (without it).
pub(crate) fn line(r: &mut impl BufRead) -> Vec<u8> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)
        .unwrap_or_else(|e| panic!("reading a reply: {e}"));
    assert!(
        line.ends_with(b"\r\n"),
        "a line not ending in CRLF: {:?}",
        show(&line)
    );
    line.truncate(line.len() - 2);
    line
}

/// Bytes for a message: text as is, the first 200 bytes of anything
/// else.
pub(crate) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

/// `len` bytes of a pattern that makes a shifted or repeated piece show.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Defines one `#[test]` per HTTP check of [`http`], each run through
/// `$run`: a function taking the check (`fn(SocketAddr)`) that starts the
/// server, runs it, and stops the server. Every server's tests are then
/// the same list, and a check added here reaches all of them.
#[macro_export]
macro_rules! http_checks {
    ($run:path) => {
        #[test]
        fn responses() {
            $run($crate::check::http::responses);
        }

        #[test]
        fn pipelined_burst_then_half_close() {
            $run($crate::check::http::pipelined_burst);
        }

        #[test]
        fn requests_byte_by_byte() {
            $run($crate::check::http::byte_by_byte_requests);
        }

        #[test]
        fn a_client_that_stops_reading_is_held_back() {
            $run(|addr| {
                let took = $crate::check::http::stalled_reader_is_held_back(addr);
                eprintln!(
                    "the server took {} KiB from a client that read nothing",
                    took / 1024
                );
            });
        }

        #[test]
        fn one_mib_body() {
            $run($crate::check::http::one_mib_body);
        }

        #[test]
        fn garbage_gets_400_and_close() {
            $run($crate::check::http::garbage_gets_400_and_close);
        }

        #[test]
        fn expect_100_continue() {
            $run($crate::check::http::expect_100_continue);
        }
    };
}

/// Defines one `#[test]` per RESP check of [`resp`], each run through
/// `$run` (see [`http_checks!`]).
#[macro_export]
macro_rules! resp_checks {
    ($run:path) => {
        #[test]
        fn replies() {
            $run($crate::check::resp::replies);
        }

        #[test]
        fn pipelined_burst_then_half_close() {
            $run($crate::check::resp::pipelined_burst);
        }

        #[test]
        fn commands_byte_by_byte() {
            $run($crate::check::resp::byte_by_byte_commands);
        }

        #[test]
        fn a_client_that_stops_reading_is_held_back() {
            $run(|addr| {
                let took = $crate::check::resp::stalled_reader_is_held_back(addr);
                eprintln!(
                    "the server took {} KiB from a client that read nothing",
                    took / 1024
                );
            });
        }

        #[test]
        fn one_mib_value() {
            $run($crate::check::resp::one_mib_value);
        }

        #[test]
        fn large_replies_pipelined() {
            $run($crate::check::resp::large_replies_pipelined);
        }

        #[test]
        fn garbage_gets_error_and_close() {
            $run($crate::check::resp::garbage_gets_error_and_close);
        }

        #[test]
        fn nothing_runs_after_quit_or_an_error() {
            $run($crate::check::resp::nothing_runs_after_quit_or_an_error);
        }
    };
}
