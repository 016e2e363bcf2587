//! The ring floor server (`bench-server --impl uring-floor`) echoes every
//! byte, in order, for messages that fit one of its buffers and ones that
//! span many, on several connections at once.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_ring_floor_echoes_every_byte_in_order() {
    if let Err(e) = gaio_bench::servers::uring_floor_available() {
        // The floor's own ring (single issuer, deferred task running, a
        // provided-buffer ring) cannot be made here: nothing to check.
        eprintln!("not run: the floor's ring cannot be made here ({e})");
        return;
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_bench-server"))
        .args(["--impl", "uring-floor"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bench-server runs");
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut addr = String::new();
    out.read_line(&mut addr).unwrap();
    let mut clients: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(addr.trim()).expect("connect"))
        .collect();
    // 1 byte, a ping, a buffer exactly, one byte past it, many buffers.
    for (round, size) in [1usize, 64, 2048, 2049, 300_000].into_iter().enumerate() {
        for (i, client) in clients.iter_mut().enumerate() {
            client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let sent: Vec<u8> = (0..size).map(|k| (k * 7 + i * 13 + round) as u8).collect();
            let mut writer = client.try_clone().unwrap();
            let sending = sent.clone();
            let t = std::thread::spawn(move || writer.write_all(&sending).unwrap());
            let mut back = vec![0; size];
            client.read_exact(&mut back).unwrap();
            t.join().unwrap();
            assert!(back == sent, "client {i}: {size} bytes echoed wrong");
        }
    }
    drop(clients);
    server.kill().unwrap();
    server.wait().unwrap();
}
