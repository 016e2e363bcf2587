//! Echo server: every byte a client sends comes back.
//!
//! `cargo run --release -p gaio --example echo_server -- --addr 127.0.0.1:7878`
//! prints the bound address on its first line, then echoes until killed.
//! Reads use the watcher's swap memory, so an idle client holds no buffer,
//! and the bytes read are written back as they are, without a copy.

use std::net::TcpListener;

use gaio::{Buffer, Bytes, Submit, Watcher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = parse_addr()?;
    let listener = TcpListener::bind(&addr)?;
    println!("{}", listener.local_addr()?);

    let mut w: Watcher<(), Bytes> = Watcher::new()?;
    let mut submitter = w.submitter();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let conn = submitter.watch(stream).expect("watch");
            submitter.read_swap(conn, ()).expect("read");
        }
    });

    let mut batch = Vec::new();
    loop {
        w.wait_io(&mut batch)?;
        for c in batch.drain(..) {
            match (c.error, c.buffer) {
                (Some(_), _) => w.free(c.conn)?,
                (None, Buffer::Swap(data)) => w.write(c.conn, (), data)?,
                (None, Buffer::User(_)) => w.read_swap(c.conn, ())?,
            }
        }
    }
}

/// `--addr HOST:PORT`, default `127.0.0.1:0`.
fn parse_addr() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:0".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: echo_server [--addr HOST:PORT]"
                ))
            }
        }
    }
    Ok(addr)
}
