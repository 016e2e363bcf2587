//! Checks for an HTTP server answering as [`crate::http`] says.

use std::io::{BufRead, Write};
use std::net::SocketAddr;

use super::{
    byte_by_byte, connect, expect_close, line, pattern, pipelined_then_half_close, show, stalled_reader,
};

/// A response as read from the wire.
#[derive(Debug)]
pub struct Response {
    /// `200 OK`, `400 Bad Request`, ...
    pub status: String,
    /// Headers in order, except `Date` (checked for its shape).
    pub headers: Vec<(String, String)>,
    /// The body, `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response to a request made with `method`; checks the parts
/// every response has (`HTTP/1.1`, `Server`, a well-formed `Date`,
/// `Content-Type`, a `Content-Length` the body has).
pub fn read_response(r: &mut impl BufRead, method: &str) -> Response {
    let status_line = String::from_utf8(line(r)).unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let mut headers = Vec::new();
    let mut date = None;
    loop {
        let l = String::from_utf8(line(r)).unwrap();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(": ").unwrap_or_else(|| panic!("header {l:?}"));
        if name == "Date" {
            date = Some(value.to_string());
        } else {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let date = date.expect("no Date header");
    assert!(
        date.len() == 29 && date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "Date: {date}"
    );
    let mut response = Response {
        status: status.to_string(),
        headers,
        body: Vec::new(),
    };
    assert_eq!(response.header("Server"), Some("example"));
    assert!(response.header("Content-Type").is_some(), "no Content-Type");
    let len: usize = response
        .header("Content-Length")
        .expect("no Content-Length")
        .parse()
        .unwrap();
    if method != "HEAD" {
        response.body = vec![0; len];
        r.read_exact(&mut response.body)
            .unwrap_or_else(|e| panic!("body of {len} bytes: {e}"));
    }
    response
}

/// Checks a `Hello, World!` response.
pub fn assert_hello(response: &Response) {
    assert_eq!(response.status, "200 OK");
    assert_eq!(response.header("Content-Type"), Some("text/plain"));
    assert_eq!(response.header("Content-Length"), Some("13"));
    assert_eq!(response.body, b"Hello, World!", "{}", show(&response.body));
}

/// The plaintext request of the benchmarks.
pub const PLAINTEXT: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Keep-alive, `HEAD`, `404`, `405`, `Connection: close` and HTTP/1.0.
pub fn responses(addr: SocketAddr) {
    let mut s = connect(addr);
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    for _ in 0..3 {
        s.write_all(PLAINTEXT).unwrap();
        assert_hello(&read_response(&mut r, "GET"));
    }
    s.write_all(b"HEAD /plaintext HTTP/1.1\r\n\r\n").unwrap();
    let head = read_response(&mut r, "HEAD");
    assert_eq!(
        (head.status.as_str(), head.header("Content-Length")),
        ("200 OK", Some("13"))
    );
    s.write_all(b"GET /missing HTTP/1.1\r\n\r\nDELETE /plaintext HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, "GET").status, "404 Not Found");
    assert_eq!(read_response(&mut r, "DELETE").status, "405 Method Not Allowed");
    s.write_all(b"GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = read_response(&mut r, "GET");
    assert_hello(&last);
    assert_eq!(last.header("Connection"), Some("close"));
    expect_close(&mut r, "after Connection: close");

    let mut s = connect(addr);
    s.write_all(b"GET /plaintext HTTP/1.0\r\n\r\n").unwrap();
    let mut r = std::io::BufReader::new(s);
    assert_hello(&read_response(&mut r, "GET"));
    expect_close(&mut r, "after an HTTP/1.0 request");
}

/// 4 MiB of pipelined requests (about 95,000), then a half-close: every
/// one answered in order, then the server closes.
pub fn pipelined_burst(addr: SocketAddr) {
    let count = (4 << 20) / PLAINTEXT.len();
    pipelined_then_half_close(addr, PLAINTEXT, count, |r, _| {
        assert_hello(&read_response(r, "GET"))
    });
}

/// Three requests (one with a body) sent one byte per write.
pub fn byte_by_byte_requests(addr: SocketAddr) {
    let echo = b"POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello there";
    let input = [PLAINTEXT, echo, PLAINTEXT].concat();
    let responses = byte_by_byte(addr, &input, 3, |r| read_response(r, "GET"));
    assert_hello(&responses[0]);
    assert_eq!(
        (responses[1].status.as_str(), responses[1].body.as_slice()),
        ("200 OK", &b"hello there"[..])
    );
    assert_hello(&responses[2]);
}

/// A client that sends requests and reads nothing: the server stops
/// reading; later every request is answered. Returns the bytes the server
/// took meanwhile.
pub fn stalled_reader_is_held_back(addr: SocketAddr) -> usize {
    stalled_reader(addr, PLAINTEXT, |r, _| assert_hello(&read_response(r, "GET")))
}

/// `POST /echo` with a 1 MiB body, between two plaintext requests, all in
/// one write.
pub fn one_mib_body(addr: SocketAddr) {
    let body = pattern(1 << 20);
    let mut input = PLAINTEXT.to_vec();
    input.extend_from_slice(
        format!("POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
    );
    input.extend_from_slice(&body);
    input.extend_from_slice(PLAINTEXT);
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&input).unwrap());
    let mut r = std::io::BufReader::new(&mut s);
    assert_hello(&read_response(&mut r, "GET"));
    let echo = read_response(&mut r, "POST");
    assert_eq!(echo.status, "200 OK");
    assert!(echo.body == body, "the 1 MiB body came back different");
    assert_hello(&read_response(&mut r, "GET"));
    writer.join().unwrap();
}

/// `Expect: 100-continue`: the server asks for the body (`100 Continue`)
/// once the head is in, then answers the request when the body follows.
pub fn expect_100_continue(addr: SocketAddr) {
    let body = pattern(3000);
    let mut s = connect(addr);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    assert_eq!(line(&mut r), b"HTTP/1.1 100 Continue");
    assert_eq!(line(&mut r), b"");
    s.write_all(&body).unwrap();
    let echo = read_response(&mut r, "POST");
    assert_eq!(echo.status, "200 OK");
    assert!(echo.body == body, "the body came back different");
    // Sent with its head, a body is not asked for: the answer comes at once.
    let mut whole = head.into_bytes();
    whole.extend_from_slice(&body);
    s.write_all(&whole).unwrap();
    let echo = read_response(&mut r, "POST");
    assert_eq!(echo.status, "200 OK", "a 100 Continue nobody waited for");
    assert!(echo.body == body, "the body came back different");
}

/// A request, then bytes that are not HTTP: the request is answered, the
/// garbage gets `400 Bad Request`, and the server closes.
pub fn garbage_gets_400_and_close(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(PLAINTEXT).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        .unwrap();
    let mut r = std::io::BufReader::new(s);
    assert_hello(&read_response(&mut r, "GET"));
    let bad = read_response(&mut r, "GET");
    assert_eq!(
        (bad.status.as_str(), bad.header("Connection")),
        ("400 Bad Request", Some("close"))
    );
    expect_close(&mut r, "after 400 Bad Request");
}
