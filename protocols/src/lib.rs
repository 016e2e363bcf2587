//! The protocol half of the example servers, with no I/O: HTTP/1.1
//! ([`http`]) and the Redis protocol ([`resp`]), each a function from the
//! bytes a client sent to the bytes to send back. gaio's examples
//! (`gaio/examples/http_server.rs`, `resp_server.rs`) and their tokio twins
//! (`twins/examples/`) share this crate, so the lines each server spends
//! on I/O can be compared, and [`check`] holds the behaviour both must
//! show (pipelining, requests in pieces, back-pressure, large values,
//! half-close, garbage).

#![deny(missing_debug_implementations)]

pub mod check;
pub mod http;
pub mod resp;

mod date;

/// Appends `n` in decimal, without allocating.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// What a connection does after the responses just produced are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read more requests.
    Read,
    /// Close the connection: the client asked for it, or sent something
    /// that cannot be answered (the last response says why).
    Close,
}

/// The room a read needs: makes sure `input` can take at least 4 KiB more,
/// or as much again as it holds (so a large message is read in a number
/// of reads logarithmic in its size), and gives back the memory of a
/// buffer that grew for a large message once it is empty again.
///
/// ```
/// let mut input = Vec::new();
/// gaio_protocols::prepare_read(&mut input);
/// assert!(input.capacity() >= 4096);
/// ```
pub fn prepare_read(input: &mut Vec<u8>) {
    const ROOM: usize = 4096;
    const KEEP: usize = 64 * 1024;
    if input.is_empty() && input.capacity() > KEEP {
        *input = Vec::with_capacity(ROOM);
    }
    let want = input.len().max(ROOM);
    if input.capacity() - input.len() < want / 2 {
        input.reserve(want);
    }
}

/// [`prepare_read`], for a buffer passed by value: `w.read_append(conn,
/// ctx, with_room(input))`.
pub fn with_room(mut input: Vec<u8>) -> Vec<u8> {
    prepare_read(&mut input);
    input
}

/// The address to listen on: `--addr HOST:PORT`, `127.0.0.1:0` (any free
/// port) by default. `program` names the program in the usage text.
///
/// `--help` (or `-h`) prints the usage to standard output and ends the
/// process with status 0, as command-line programs do; an unknown argument
/// is an error that carries the usage. [`parse_addr_args`] is the same
/// without printing or exiting.
///
/// ```
/// let args = ["--addr".to_string(), "127.0.0.1:8080".to_string()];
/// assert_eq!(gaio_protocols::addr_arg(args, "server").unwrap(), "127.0.0.1:8080");
/// ```
pub fn addr_arg(args: impl IntoIterator<Item = String>, program: &str) -> Result<String, String> {
    match parse_addr_args(args, program)? {
        AddrArgs::Listen(addr) => Ok(addr),
        AddrArgs::Help(usage) => {
            println!("{usage}");
            std::process::exit(0)
        }
    }
}

/// What a server's command line asks for ([`parse_addr_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrArgs {
    /// Listen on this address.
    Listen(String),
    /// Print this usage text and stop (`--help` or `-h`).
    Help(String),
}

/// Parses `[--addr HOST:PORT] [--help]`; the address defaults to
/// `127.0.0.1:0`.
///
/// ```
/// use gaio_protocols::{parse_addr_args, AddrArgs};
/// let help = parse_addr_args(["--help".to_string()], "server").unwrap();
/// assert_eq!(help, AddrArgs::Help("usage: server [--addr HOST:PORT]".into()));
/// let bad = parse_addr_args(["--port".to_string()], "server").unwrap_err();
/// assert_eq!(bad, "unexpected \"--port\"; usage: server [--addr HOST:PORT]");
/// ```
pub fn parse_addr_args(args: impl IntoIterator<Item = String>, program: &str) -> Result<AddrArgs, String> {
    let usage = format!("usage: {program} [--addr HOST:PORT]");
    let mut args = args.into_iter();
    let mut addr = "127.0.0.1:0".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(AddrArgs::Help(usage)),
            "--addr" => match args.next() {
                Some(a) => addr = a,
                None => return Err(format!("--addr needs HOST:PORT; {usage}")),
            },
            _ => return Err(format!("unexpected {arg:?}; {usage}")),
        }
    }
    Ok(AddrArgs::Listen(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_read_leaves_room_and_doubles_for_a_large_message() {
        let mut input = Vec::new();
        prepare_read(&mut input);
        assert!(input.capacity() >= 4096);
        input.resize(100_000, 7);
        prepare_read(&mut input);
        assert!(input.capacity() - input.len() >= 50_000);
        input.clear();
        prepare_read(&mut input);
        assert!(
            input.capacity() < 64 * 1024,
            "an empty buffer kept {}",
            input.capacity()
        );
    }

    #[test]
    fn prepare_read_does_not_grow_a_buffer_with_room() {
        let mut input = Vec::with_capacity(8192);
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let at = input.as_ptr();
        prepare_read(&mut input);
        assert_eq!(input.as_ptr(), at);
    }

    #[test]
    fn push_decimal_writes_every_digit() {
        for n in [0, 7, 10, 13, 1_048_576, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn addr_args_default_help_and_refuse_unknown_arguments() {
        let parse = |args: &[&str]| parse_addr_args(args.iter().map(|a| a.to_string()), "s");
        assert_eq!(parse(&[]), Ok(AddrArgs::Listen("127.0.0.1:0".into())));
        assert_eq!(
            parse(&["--addr", "[::1]:7"]),
            Ok(AddrArgs::Listen("[::1]:7".into()))
        );
        let usage = "usage: s [--addr HOST:PORT]".to_string();
        assert_eq!(parse(&["--help"]), Ok(AddrArgs::Help(usage.clone())));
        assert_eq!(parse(&["--addr", "x:1", "-h"]), Ok(AddrArgs::Help(usage.clone())));
        assert_eq!(parse(&["--port"]), Err(format!("unexpected \"--port\"; {usage}")));
        assert_eq!(
            parse(&["--addr"]),
            Err(format!("--addr needs HOST:PORT; {usage}"))
        );
    }
}
