//! HTTP/1.1 for the example servers: keep-alive, pipelining, and three
//! routes.
//!
//! - `GET /plaintext` (and `HEAD`): `Hello, World!`, with the headers the
//!   TechEmpower plaintext test asks for (`Server`, `Date`, `Content-Type`,
//!   `Content-Length`).
//! - `POST /echo` (and `PUT`): the request's body back, up to
//!   [`MAX_BODY`]; a longer one gets `413` and the connection closes.
//! - Anything else: `404`, or `405` for `/plaintext` with another method.
//!
//! Bodies are sized by `Content-Length`; a request with
//! `Transfer-Encoding` gets `501` and a close. A request that does not
//! parse, or whose head passes [`MAX_HEAD`] bytes, gets `400` and a close.
//! A head with more than 64 headers gets `431` and a close. HTTP/1.1 keeps
//! the connection unless the client's `Connection` header lists `close`;
//! HTTP/1.0 closes it unless it lists `keep-alive` (and not `close`).
//! An HTTP/1.1 client that sends `Expect: 100-continue` and waits before
//! sending its body is told `100 Continue` (curl waits a second otherwise,
//! for bodies over 1 MiB).

use crate::Next;

/// The longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// The longest body `POST /echo` accepts.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Headers a request may have; more get `431` and a close.
const MAX_HEADERS: usize = 64;

/// Answers every whole request at the start of `input`, appending the
/// responses to `out`. Returns how many bytes of `input` were used (drop
/// them; the rest is the start of a request still arriving) and whether
/// the connection stays open after `out` is written. Write `out` even
/// when nothing was used: it may hold a `100 Continue` for a request whose
/// body has yet to come (asked for once, when none of the body is in).
///
/// ```
/// use gaio_protocols::{http, Next};
///
/// let mut out = Vec::new();
/// let input = b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /plain";
/// let (used, next) = http::respond(input, &mut out);
/// assert_eq!((used, next), (36, Next::Read)); // the second request is not whole yet
/// assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// assert!(out.ends_with(b"\r\n\r\nHello, World!"));
/// ```
pub fn respond(input: &[u8], out: &mut Vec<u8>) -> (usize, Next) {
    let date = crate::date::now();
    let mut used = 0;
    loop {
        match respond_one(&input[used..], out, &date) {
            Some((n, Next::Read)) => used += n,
            Some((n, Next::Close)) => return (used + n, Next::Close),
            None => return (used, Next::Read),
        }
    }
}

/// Answers the first request of `input`, or returns `None` if it is not
/// whole yet.
fn respond_one(input: &[u8], out: &mut Vec<u8>, date: &[u8; 29]) -> Option<(usize, Next)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => return None,
        Ok(httparse::Status::Partial) => {
            return Some(error(out, date, "431 Request Header Fields Too Large"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Some(error(out, date, "431 Request Header Fields Too Large"))
        }
        Err(_) => return Some(error(out, date, "400 Bad Request")),
    };
    let (mut keep_alive, mut closes, mut expects_continue) = (req.version == Some(1), false, false);
    let mut body_len = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: a length that is not digits, or several that
            // differ, leave the message's end unknown: an error, never a
            // guess (the body would be read as the next request).
            match (content_length(h.value), body_len) {
                (Some(n), None) => body_len = Some(n),
                (Some(n), Some(before)) if n == before => {}
                _ => return Some(error(out, date, "400 Bad Request")),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Some(error(out, date, "501 Not Implemented"));
        } else if h.name.eq_ignore_ascii_case("expect") {
            expects_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            // A list of options (RFC 9110 §7.6.1), over one header or
            // several: `close` anywhere wins.
            for option in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if option.eq_ignore_ascii_case(b"close") {
                    closes = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let keep_alive = keep_alive && !closes;
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY {
        return Some(error(out, date, "413 Content Too Large"));
    }
    let Some(body) = input.get(head_len..head_len + body_len) else {
        // The body is still arriving. A client waiting to be asked for it
        // (none of it sent yet) is asked, once: the next call has some.
        if expects_continue && req.version == Some(1) && input.len() == head_len {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        return None;
    };
    let method = req.method.unwrap_or_default();
    let (status, content_type, content, head_only): (_, _, &[u8], _) = match (method, req.path) {
        ("GET" | "HEAD", Some("/plaintext")) => ("200 OK", "text/plain", b"Hello, World!", method == "HEAD"),
        (_, Some("/plaintext")) => (
            "405 Method Not Allowed",
            "text/plain",
            b"Method Not Allowed",
            false,
        ),
        ("POST" | "PUT", Some("/echo")) => ("200 OK", "application/octet-stream", body, false),
        _ => ("404 Not Found", "text/plain", b"Not Found", method == "HEAD"),
    };
    let connection = match (keep_alive, req.version) {
        (false, _) => "Connection: close\r\n",
        (true, Some(0)) => "Connection: keep-alive\r\n",
        (true, _) => "",
    };
    head(out, date, status, content_type, content.len(), connection);
    if !head_only {
        out.extend_from_slice(content);
    }
    let next = if keep_alive { Next::Read } else { Next::Close };
    Some((head_len + body_len, next))
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), with the
/// white space around a field value left out.
fn content_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Appends a status line and the headers every response has.
fn head(out: &mut Vec<u8>, date: &[u8; 29], status: &str, content_type: &str, len: usize, extra: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\nServer: example\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    crate::push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends an error response that closes the connection; the rest of the
/// input is not read.
fn error(out: &mut Vec<u8>, date: &[u8; 29], status: &str) -> (usize, Next) {
    let body = &status[4..];
    head(
        out,
        date,
        status,
        "text/plain",
        body.len(),
        "Connection: close\r\n",
    );
    out.extend_from_slice(body.as_bytes());
    (0, Next::Close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(input: &[u8]) -> (usize, Next, String) {
        let mut out = Vec::new();
        let (used, next) = respond(input, &mut out);
        (used, next, String::from_utf8(out).unwrap())
    }

    /// `out` with the `Date` header's value blanked.
    fn undated(out: &str) -> String {
        let mut s = String::new();
        for line in out.split_inclusive("\r\n") {
            if line.starts_with("Date: ") {
                assert_eq!(line.len(), 6 + 29 + 2, "{line:?}");
                s.push_str("Date: X\r\n");
            } else {
                s.push_str(line);
            }
        }
        s
    }

    const HELLO: &str = "HTTP/1.1 200 OK\r\nServer: example\r\nDate: X\r\nContent-Type: text/plain\r\n\
                         Content-Length: 13\r\n\r\nHello, World!";

    #[test]
    fn plaintext_pipelined_with_a_partial_tail() {
        let req = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = format!("{req}{req}GET /pla");
        let (used, next, out) = answer(input.as_bytes());
        assert_eq!((used, next), (2 * req.len(), Next::Read));
        assert_eq!(undated(&out), format!("{HELLO}{HELLO}"));
    }

    #[test]
    fn head_has_the_length_but_no_body() {
        let (_, next, out) = answer(b"HEAD /plaintext HTTP/1.1\r\n\r\n");
        assert_eq!(next, Next::Read);
        assert_eq!(undated(&out), HELLO.trim_end_matches("Hello, World!"));
    }

    #[test]
    fn echo_waits_for_the_whole_body() {
        let input = b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(answer(input), (0, Next::Read, String::new()));
        let input = b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let (used, next, out) = answer(input);
        assert_eq!((used, next), (input.len(), Next::Read));
        assert!(out.ends_with("Content-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello"));
    }

    #[test]
    fn connection_rules_of_1_0_and_1_1() {
        let (_, next, out) =
            answer(b"GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\nGET /plaintext HTTP/1.1\r\n\r\n");
        assert_eq!(next, Next::Close);
        assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "answered past the close");
        assert!(out.contains("\r\nConnection: close\r\n"));
        let (_, next, out) = answer(b"GET /plaintext HTTP/1.0\r\n\r\n");
        assert_eq!(next, Next::Close);
        assert!(out.contains("\r\nConnection: close\r\n"));
        let (_, next, out) = answer(b"GET /plaintext HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(next, Next::Read);
        assert!(out.contains("\r\nConnection: keep-alive\r\n"));
        // A list of options: `close` anywhere, in any of several headers,
        // closes; in 1.0, `keep-alive` beside others keeps.
        for head in [
            "HTTP/1.1\r\nConnection: keep-alive, close",
            "HTTP/1.1\r\nConnection: Upgrade,Close",
            "HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close",
            "HTTP/1.0\r\nConnection: close, keep-alive",
        ] {
            let (_, next, out) = answer(format!("GET /plaintext {head}\r\n\r\n").as_bytes());
            assert_eq!(next, Next::Close, "{head:?}");
            assert!(out.contains("\r\nConnection: close\r\n"), "{head:?}");
        }
        let (_, next, out) = answer(b"GET /plaintext HTTP/1.0\r\nConnection: TE, keep-alive\r\n\r\n");
        assert_eq!(next, Next::Read);
        assert!(out.contains("\r\nConnection: keep-alive\r\n"));
    }

    #[test]
    fn up_to_64_headers_are_taken_and_more_get_431_and_close() {
        let with = |n: usize| {
            let headers: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
            format!("GET /plaintext HTTP/1.1\r\n{headers}\r\n")
        };
        let (used, next, out) = answer(with(64).as_bytes());
        assert_eq!((used, next), (with(64).len(), Next::Read));
        assert_eq!(undated(&out), HELLO);
        let (_, next, out) = answer(with(65).as_bytes());
        assert_eq!(next, Next::Close);
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
    }

    #[test]
    fn errors_answer_then_close() {
        let cases: [(&[u8], &str); 6] = [
            (b"\x00\x01garbage\r\n\r\n", "400 Bad Request"),
            (
                b"GET /plaintext HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "501 Not Implemented",
            ),
            (
                b"POST /echo HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                "413 Content Too Large",
            ),
            (&[b'a'; MAX_HEAD + 1], "431 Request Header Fields Too Large"),
            (b"GET /nothing HTTP/1.1\r\n\r\n", "404 Not Found"),
        ];
        for (input, status) in cases {
            let (_, next, out) = answer(input);
            assert!(out.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{out}");
            let close = !status.starts_with("404");
            assert_eq!(next == Next::Close, close, "{status}");
            assert_eq!(out.contains("Connection: close"), close, "{status}");
        }
        let (used, next, out) = answer(b"DELETE /plaintext HTTP/1.1\r\n\r\n");
        assert_eq!((used, next), (30, Next::Read));
        assert!(out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    }

    /// A body whose length is unclear is refused, not guessed: whichever
    /// of two different lengths were taken, a client (or a proxy) taking
    /// the other would see the requests split elsewhere.
    #[test]
    fn an_unclear_content_length_gets_400_and_close() {
        let cases: [&[u8]; 5] = [
            b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 0\r\n\r\nabcGET /plaintext HTTP/1.1\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 3\r\n\r\nabc",
            b"POST /echo HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            b"POST /echo HTTP/1.1\r\nContent-Length: -0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nContent-Length:\r\n\r\n",
        ];
        for input in cases {
            let (used, next, out) = answer(input);
            assert_eq!(
                (used, next),
                (0, Next::Close),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert!(
                out.starts_with("HTTP/1.1 400 Bad Request\r\n") && out.matches("HTTP/1.1").count() == 1,
                "{out}"
            );
        }
        // The same length twice is one length.
        let input = b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length:  3 \r\n\r\nabc";
        let (used, next, out) = answer(input);
        assert_eq!((used, next), (input.len(), Next::Read));
        assert!(out.ends_with("Content-Length: 3\r\n\r\nabc"), "{out}");
    }

    #[test]
    fn a_valid_request_before_garbage_is_answered_first() {
        let (_, next, out) = answer(b"GET /plaintext HTTP/1.1\r\n\r\n\x16\x03\x01garbage\r\n\r\n");
        assert_eq!(next, Next::Close);
        let statuses: Vec<_> = out
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &out[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, ["200", "400"]);
    }
}
