//! The single-connection throughput load: a writer thread sends the
//! pattern continuously in writes of the message size while this thread
//! reads the echo back and checks every byte.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::error::BenchError;
use crate::pattern;

/// Streams `volume` bytes in writes of `size` bytes through the echo
/// server at `addr`; returns the time from the first write to the last
/// byte of echo read, and the connection, still open (so that the server's
/// connection thread, if it has one, is still alive when its CPU time is
/// read). Fails past `limit`.
pub fn throughput(
    addr: SocketAddr,
    size: usize,
    volume: u64,
    limit: Duration,
) -> Result<(Duration, TcpStream), BenchError> {
    if !addr.ip().is_loopback() {
        return Err(BenchError::other(format!(
            "refusing to load {addr}: not loopback"
        )));
    }
    let mut reader = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    reader.set_nodelay(true)?;
    reader.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = reader.try_clone()?;
    writer.set_write_timeout(Some(Duration::from_secs(5)))?;
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut off = 0u64;
        while off < volume {
            let n = size.min((volume - off) as usize);
            writer.write_all(pattern::window(off, n))?;
            off += n as u64;
        }
        Ok(())
    });
    let received = receive(&mut reader, volume, start + limit);
    let elapsed = start.elapsed();
    if received.is_err() {
        // Unblocks the writer if it is stuck on a full socket.
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .map_err(|_| BenchError::other("writer thread panicked"))?;
    received?;
    sent.map_err(|e| BenchError::other(format!("write: {e}")))?;
    Ok((elapsed, reader))
}

fn receive(reader: &mut TcpStream, volume: u64, deadline: Instant) -> Result<(), BenchError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < volume {
        if Instant::now() > deadline {
            return Err(BenchError::other(format!(
                "timed out after {got} of {volume} bytes"
            )));
        }
        let want = buf.len().min((volume - got) as usize);
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(BenchError::other(format!(
                    "server closed after {got} of {volume} bytes"
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::other(format!("read after {got} bytes: {e}"))),
        };
        if let Err(at) = pattern::check(&buf[..n], got) {
            return Err(BenchError::Mismatch(format!(
                "stream byte {} differs",
                got + at as u64
            )));
        }
        got += n as u64;
    }
    Ok(())
}
