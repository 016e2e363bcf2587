//! Checks for a Redis-protocol server answering as [`crate::resp`] says.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

use super::{
    byte_by_byte, connect, expect_close, line, pattern, pipelined_then_half_close, show, stalled_reader,
};

/// `words` as a RESP array of bulk strings, the way clients send commands.
pub fn command(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply, whole, as the bytes that carried it.
pub fn read_reply(r: &mut impl BufRead) -> Vec<u8> {
    let mut reply = line(r);
    let len: i64 = match reply.first() {
        Some(b'+' | b'-' | b':') => 0,
        Some(b'$' | b'*') => std::str::from_utf8(&reply[1..]).unwrap().parse().unwrap(),
        _ => panic!("not a reply: {:?}", show(&reply)),
    };
    reply.extend_from_slice(b"\r\n");
    if reply[0] == b'$' && len >= 0 {
        let mut data = vec![0; len as usize + 2];
        r.read_exact(&mut data).unwrap();
        assert!(data.ends_with(b"\r\n"), "bulk string not ended by CRLF");
        reply.extend_from_slice(&data);
    } else if reply[0] == b'*' {
        for _ in 0..len {
            reply.extend(read_reply(r));
        }
    }
    reply
}

fn expect(r: &mut impl BufRead, want: &[u8]) {
    let got = read_reply(r);
    assert!(got == want, "reply {:?}, expected {:?}", show(&got), show(want));
}

/// Every command, as arrays and inline, with its exact reply.
pub fn replies(addr: SocketAddr) {
    let mut s = connect(addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let script: [(&[&[u8]], &[u8]); 14] = [
        (&[b"PING"], b"+PONG\r\n"),
        (&[b"PING", b"hi there"], b"$8\r\nhi there\r\n"),
        (&[b"ECHO", b"\r\n\x00"], b"$3\r\n\r\n\x00\r\n"),
        (&[b"GET", b"check:k"], b"$-1\r\n"),
        (&[b"SET", b"check:k", b"v1"], b"+OK\r\n"),
        (&[b"GET", b"check:k"], b"$2\r\nv1\r\n"),
        (&[b"EXISTS", b"check:k", b"check:none", b"check:k"], b":2\r\n"),
        (&[b"INCR", b"check:n"], b":1\r\n"),
        (&[b"incr", b"check:n"], b":2\r\n"),
        (
            &[b"INCR", b"check:k"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (&[b"DEL", b"check:k", b"check:n", b"check:none"], b":2\r\n"),
        (&[b"EXISTS", b"check:k"], b":0\r\n"),
        (
            &[b"SET", b"check:k"],
            b"-ERR wrong number of arguments for 'set' command\r\n",
        ),
        (&[b"NOSUCH", b"x"], b"-ERR unknown command 'NOSUCH'\r\n"),
    ];
    for (words, reply) in script {
        s.write_all(&command(words)).unwrap();
        expect(&mut r, reply);
    }
    s.write_all(b"SET check:inline  42\r\nINCR check:inline\nGET check:inline\r\nDEL check:inline\r\n")
        .unwrap();
    for reply in [&b"+OK\r\n"[..], b":43\r\n", b"$2\r\n43\r\n", b":1\r\n"] {
        expect(&mut r, reply);
    }
    s.write_all(b"QUIT\r\nPING\r\n").unwrap();
    expect(&mut r, b"+OK\r\n");
    expect_close(&mut r, "after QUIT");
}

/// 4 MiB of pipelined `PING`s (about 300,000), then a half-close: every
/// one answered, then the server closes.
pub fn pipelined_burst(addr: SocketAddr) {
    let ping = command(&[b"PING"]);
    pipelined_then_half_close(addr, &ping, (4 << 20) / ping.len(), |r, _| {
        expect(r, b"+PONG\r\n")
    });
}

/// A `SET` as an array and a `GET` inline, one byte per write.
pub fn byte_by_byte_commands(addr: SocketAddr) {
    let input = [
        command(&[b"SET", b"check:bytes", b"one by one"]),
        b"GET check:bytes\r\n".to_vec(),
    ]
    .concat();
    let replies = byte_by_byte(addr, &input, 2, read_reply);
    assert_eq!(replies, [b"+OK\r\n".to_vec(), b"$10\r\none by one\r\n".to_vec()]);
}

/// A client that sends `INCR`s and reads nothing: the server stops
/// reading; later every command is answered, with the counts in order.
/// Returns the bytes the server took meanwhile.
pub fn stalled_reader_is_held_back(addr: SocketAddr) -> usize {
    let key = format!("check:stalled:{}", std::process::id());
    let incr = command(&[b"INCR", key.as_bytes()]);
    stalled_reader(addr, &incr, |r, i| {
        expect(r, format!(":{}\r\n", i + 1).as_bytes())
    })
}

/// `SET` of a 1 MiB value and a `GET` of it, in one write.
pub fn one_mib_value(addr: SocketAddr) {
    let value = pattern(1 << 20);
    let input = [
        command(&[b"SET", b"check:big", &value]),
        command(&[b"GET", b"check:big"]),
    ]
    .concat();
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&input).unwrap());
    let mut r = BufReader::new(&mut s);
    expect(&mut r, b"+OK\r\n");
    let got = read_reply(&mut r);
    let want = [format!("${}\r\n", value.len()).as_bytes(), &value, b"\r\n"].concat();
    assert!(got == want, "the 1 MiB value came back different");
    writer.join().unwrap();
}

/// `GET`s of a 256 KiB value, 64 of them in one write and a `PING`
/// after: far more replies than one call of [`crate::resp::respond`]
/// makes, so the server must answer the commands left before it reads
/// again. Every reply comes back whole, in order.
pub fn large_replies_pipelined(addr: SocketAddr) {
    let value = pattern(256 << 10);
    let mut s = connect(addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    s.write_all(&command(&[b"SET", b"check:large", &value])).unwrap();
    expect(&mut r, b"+OK\r\n");
    let get = command(&[b"GET", b"check:large"]);
    s.write_all(&[get.repeat(64), command(&[b"PING"])].concat())
        .unwrap();
    let want = [format!("${}\r\n", value.len()).as_bytes(), &value, b"\r\n"].concat();
    for i in 0..64 {
        let got = read_reply(&mut r);
        assert!(got == want, "reply {i} to GET differs ({} bytes)", got.len());
    }
    expect(&mut r, b"+PONG\r\n");
    s.write_all(&command(&[b"DEL", b"check:large"])).unwrap();
    expect(&mut r, b":1\r\n");
}

/// A command, then bytes that are not RESP: the command is answered, the
/// garbage gets `-ERR Protocol error`, and the server closes.
pub fn garbage_gets_error_and_close(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(b"PING\r\n*1\r\n+nonsense\r\n").unwrap();
    let mut r = BufReader::new(s);
    expect(&mut r, b"+PONG\r\n");
    let err = read_reply(&mut r);
    assert!(err.starts_with(b"-ERR Protocol error"), "{:?}", show(&err));
    expect_close(&mut r, "after a protocol error");
}

/// Commands pipelined after `QUIT`, or after a protocol error, never run
/// (as in Redis): the client gets the replies up to it, then the close,
/// and another client finds the store as it was.
pub fn nothing_runs_after_quit_or_an_error(addr: SocketAddr) {
    for (burst, replies) in [
        (
            &b"SET quit 0\r\nQUIT\r\nINCR quit\r\nSET after-quit yes\r\n"[..],
            2,
        ),
        (
            b"SET error 0\r\n*1\r\n+nonsense\r\nINCR error\r\nSET after-error yes\r\n",
            2,
        ),
    ] {
        let mut s = connect(addr);
        s.write_all(burst).unwrap();
        let mut r = BufReader::new(s);
        expect(&mut r, b"+OK\r\n");
        for _ in 1..replies {
            let reply = read_reply(&mut r);
            assert!(
                reply == b"+OK\r\n" || reply.starts_with(b"-ERR Protocol error"),
                "{:?}",
                show(&reply)
            );
        }
        expect_close(&mut r, "after QUIT or an error");
    }
    let mut s = connect(addr);
    s.write_all(&command(&[b"GET", b"quit"])).unwrap();
    s.write_all(&command(&[b"GET", b"error"])).unwrap();
    s.write_all(&command(&[b"EXISTS", b"after-quit", b"after-error"]))
        .unwrap();
    let mut r = BufReader::new(s);
    expect(&mut r, b"$1\r\n0\r\n");
    expect(&mut r, b"$1\r\n0\r\n");
    expect(&mut r, b":0\r\n");
}
