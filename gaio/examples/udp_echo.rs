//! UDP echo server: every datagram comes back to its sender, as it was.
//!
//! `cargo run --release -p gaio --example udp_echo -- --addr 127.0.0.1:7880`
//! prints the bound address on its first line, then echoes until killed;
//! with `--until-stdin-closes` it stops cleanly when its standard input
//! closes. Try `nc -u 127.0.0.1 7880`.
//!
//! Each datagram is received into the watcher's swap memory (one datagram
//! per completion, with its sender's address) and sent back from there,
//! without a copy. A datagram longer than the swap size (64 KiB here, more
//! than any UDP datagram) would be reported as truncated and not echoed.

use std::io::Read;
use std::net::UdpSocket;

use gaio::{Buffer, Bytes, Error, Op, Submit, Watcher};

/// Receives kept pending: a burst of datagrams is taken without waiting
/// for each echo.
const PENDING_RECEIVES: usize = 8;

const USAGE: &str = "usage: udp_echo [--addr HOST:PORT] [--until-stdin-closes]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut until_stdin_closes) = ("127.0.0.1:0".to_string(), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--until-stdin-closes" => until_stdin_closes = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}").into()),
        }
    }
    let socket = UdpSocket::bind(&addr)?;
    println!("{}", socket.local_addr()?);

    let mut w: Watcher<(), Bytes> = Watcher::new()?;
    if until_stdin_closes {
        let mut closer = w.submitter();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            closer.close();
        });
    }
    let conn = w.watch(socket)?;
    for _ in 0..PENDING_RECEIVES {
        w.recv_from_swap(conn, ())?;
    }

    let mut batch = Vec::new();
    while w.wait_io(&mut batch).is_ok() {
        for c in batch.drain(..) {
            match (c.op, c.error, c.buffer, c.peer) {
                (_, Some(Error::WatcherClosed), ..) => {} // closing
                (Op::RecvFrom, None, Buffer::Swap(data), Some(from)) => {
                    w.send_to(conn, (), data, from)?; // echo, then receive again
                    w.recv_from_swap(conn, ())?;
                }
                (Op::RecvFrom, error, ..) => {
                    // Truncated, or a transient error (ICMP port
                    // unreachable from an earlier reply): keep receiving.
                    eprintln!("udp_echo: receive: {error:?}");
                    w.recv_from_swap(conn, ())?;
                }
                (_, Some(e), ..) => eprintln!("udp_echo: send: {e}"),
                _ => {} // a send done
            }
        }
    }
    Ok(())
}
