//! First end-to-end check: echo through the watcher over loopback.

mod util;

use gaio::{Buffer, Submit, Watcher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[test]
fn echo_roundtrip() {
    // A few descriptors, nothing counted process-wide.
    let _lock = util::shared();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    let mut w: Watcher<u32> = Watcher::new().unwrap();
    let conn = w.watch(server).unwrap();
    w.read(conn, 1, vec![0; 64]).unwrap();
    client.write_all(b"hello").unwrap();
    let mut batch = Vec::new();
    w.wait_io_timeout(&mut batch, Duration::from_secs(5)).unwrap();
    assert_eq!(batch.len(), 1);
    let c = batch.pop().unwrap();
    assert_eq!(c.context, 1);
    assert_eq!(c.data(), b"hello");
    let mut buf = c.buffer.into_user().unwrap();
    buf.truncate(5);
    w.write(conn, 2, buf).unwrap();
    w.read_swap(conn, 3).unwrap();
    w.wait_io_timeout(&mut batch, Duration::from_secs(5)).unwrap();
    assert_eq!(batch[0].context, 2);
    assert!(batch[0].error.is_none());
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    client.write_all(b"swap!").unwrap();
    batch.clear();
    w.wait_io_timeout(&mut batch, Duration::from_secs(5)).unwrap();
    assert_eq!(batch[0].context, 3);
    assert!(matches!(&batch[0].buffer, Buffer::Swap(b) if &b[..] == b"swap!"));
}
