//! Push server: sends a numbered line to every connected client ten times a
//! second, and notices disconnects through a pending read.
//!
//! `cargo run --release -p gaio --example push_server -- --addr 127.0.0.1:7879`
//! prints the bound address on its first line; try `nc 127.0.0.1 7879`.

use std::collections::HashSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use gaio::{Submit, Watcher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:0"))?;
    println!("{}", listener.local_addr()?);

    // The context tells reads (which only watch for a disconnect) from pushes.
    let mut w: Watcher<bool> = Watcher::new()?;
    let mut submitter = w.submitter();
    let (joined, new_clients) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let conn = submitter.watch(stream).expect("watch");
            submitter.read_swap(conn, true).expect("read");
            let _ = joined.send(conn);
        }
    });

    let mut clients = HashSet::new();
    let (mut batch, mut tick, mut next) = (Vec::new(), 0u64, Instant::now());
    loop {
        w.wait_io_timeout(&mut batch, next.saturating_duration_since(Instant::now()))?;
        for c in batch.drain(..) {
            let is_read = c.context;
            if c.error.is_some() {
                clients.remove(&c.conn);
                w.free(c.conn)?; // freeing twice is harmless
            } else if is_read {
                w.read_swap(c.conn, true)?; // data from the client is ignored
            }
        }
        clients.extend(new_clients.try_iter());
        if Instant::now() >= next {
            tick += 1;
            for &conn in &clients {
                w.write(conn, false, format!("tick {tick}\n").into_bytes())?;
            }
            next += Duration::from_millis(100);
        }
    }
}
