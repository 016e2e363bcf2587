//! The test's own end of a connection: blocking std sockets that never
//! block for ever, and what the tests expect of errors on them.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use gaio::{Completion, Error};

/// Longest a blocking peer call or a whole peer loop may take.
pub const PEER_LIMIT: Duration = Duration::from_secs(5);

/// Sets read and write timeouts on a blocking peer socket.
pub fn timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(PEER_LIMIT)).unwrap();
    s.set_write_timeout(Some(PEER_LIMIT)).unwrap();
}

/// [`timeouts`] for a Unix stream socket.
pub fn unix_timeouts(s: &UnixStream) {
    s.set_read_timeout(Some(PEER_LIMIT)).unwrap();
    s.set_write_timeout(Some(PEER_LIMIT)).unwrap();
}

/// Reads from `s` until end of stream (bounded by the socket's read
/// timeout per call and [`PEER_LIMIT`] overall) and returns everything read.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let end = Instant::now() + PEER_LIMIT;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        assert!(
            Instant::now() < end,
            "peer saw no end of stream within {PEER_LIMIT:?}"
        );
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("peer read failed before end of stream: {e}"),
        }
    }
}

/// Makes the next close of `s` send a reset instead of a FIN.
pub fn reset_on_close(s: &TcpStream) {
    rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO)).unwrap();
}

/// The OS error of a completion, or a panic naming what came instead.
pub fn os_error<C, B>(c: &Completion<C, B>) -> &io::Error {
    match &c.error {
        Some(Error::Io(e)) => e,
        other => panic!("expected an OS error, got {other:?}"),
    }
}

/// True for the errors a write to a vanished peer may report: EPIPE
/// (broken pipe) or ECONNRESET, each with its matching `ErrorKind`.
pub fn is_pipe_or_reset(e: &io::Error) -> bool {
    let errno = e.raw_os_error();
    match e.kind() {
        io::ErrorKind::BrokenPipe => errno == Some(rustix::io::Errno::PIPE.raw_os_error()),
        io::ErrorKind::ConnectionReset => errno == Some(rustix::io::Errno::CONNRESET.raw_os_error()),
        _ => false,
    }
}
