//! The Redis protocol (RESP2) for the example servers: commands as arrays
//! of bulk strings (what clients send) or as inline lines (what a person
//! types into `telnet`, split and unquoted as Redis does: `SET k "a b"`),
//! pipelined, against an in-memory [`Store`].
//!
//! Commands: `PING [message]`, `ECHO message`, `SET key value`,
//! `GET key`, `DEL key...`, `INCR key`, `EXISTS key...`, `QUIT`, and
//! `CONFIG GET` / `COMMAND` enough for `redis-benchmark` and `redis-cli`
//! to start. An unknown command or a wrong number of arguments gets an
//! `-ERR` reply and the connection goes on; a protocol error (a line that
//! is not RESP, a length out of range) gets `-ERR Protocol error` and the
//! connection closes, as with Redis.

use std::collections::HashMap;

use crate::Next;

/// The longest bulk string accepted (Redis's default `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most arguments a command may have.
pub const MAX_ARGS: usize = 1024 * 1024;
/// The longest command sent as an array, all its arguments together
/// (Redis's default `client-query-buffer-limit`): a client cannot make a
/// connection hold more for a command still arriving.
pub const MAX_COMMAND: usize = 1024 * 1024 * 1024;
/// The longest inline command line.
pub const MAX_INLINE: usize = 64 * 1024;
/// The replies one call of [`respond`] makes before it stops (it may go
/// past by one reply).
pub const MAX_REPLIES: usize = 64 * 1024;

/// The keys and values, and the scratch space parsing reuses (so a
/// steady stream of commands allocates only for new keys).
#[derive(Debug, Default)]
pub struct Store {
    values: HashMap<Vec<u8>, Vec<u8>>,
    args: Vec<(usize, usize)>,
    /// The arguments of an inline line with quotes, unquoted.
    unquoted: Vec<u8>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// How far [`respond`] has checked the command still arriving at the start
/// of one client's input: keep one per client and pass it to every call
/// for that client. A long command arriving in many pieces is then
/// scanned once, not once per piece (a client dripping the last bytes of
/// a command of a million arguments would otherwise make every read cost
/// a million steps).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress(Scan);

// `Scan` keeps offsets within a command in 32 bits.
const _: () = assert!(MAX_COMMAND <= u32::MAX as usize);
const _: () = assert!(MAX_INLINE <= u32::MAX as usize);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Nothing checked yet.
    #[default]
    Start,
    /// An array of `count` arguments whose header ends at `header`: the
    /// first `args` arguments are whole, and the next starts at `at`.
    /// (32 bits hold them all: `MAX_ARGS` and `MAX_COMMAND` are smaller,
    /// and a `Progress` rides in every pending read's context.)
    Array {
        count: u32,
        header: u32,
        args: u32,
        at: u32,
    },
    /// An inline line with no line feed in its first `scanned` bytes
    /// (at most `MAX_INLINE`).
    Inline { scanned: u32 },
}

/// Answers the whole commands at the start of `input`, appending the
/// replies to `out`. Returns how many bytes of `input` were used (drop
/// them from its front before the next call) and whether the connection
/// stays open after `out` is written. `progress` is the client's
/// [`Progress`].
///
/// It stops once `out` holds [`MAX_REPLIES`] bytes or more, so a few bytes
/// of commands (`GET` of a large value, pipelined) cannot make replies
/// without bound. Whole commands may then remain in the rest of `input`:
/// after writing `out`, call it again on the rest, and read more only once
/// it uses nothing (the rest is the start of a command still arriving).
///
/// ```
/// use gaio_protocols::{resp, Next};
///
/// let mut store = resp::Store::new();
/// let (mut out, mut progress) = (Vec::new(), resp::Progress::default());
/// let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nhi\r\nGET k\r\n*2\r\n$3\r\nGET";
/// let (used, next) = resp::respond(input, &mut out, &mut store, &mut progress);
/// assert_eq!((used, next), (35, Next::Read)); // the last command is not whole yet
/// assert_eq!(out, b"+OK\r\n$2\r\nhi\r\n");
/// ```
pub fn respond(input: &[u8], out: &mut Vec<u8>, store: &mut Store, progress: &mut Progress) -> (usize, Next) {
    let mut used = 0;
    let full = out.len().saturating_add(MAX_REPLIES);
    while out.len() < full {
        let mut args = std::mem::take(&mut store.args);
        let mut unquoted = std::mem::take(&mut store.unquoted);
        args.clear();
        unquoted.clear();
        // The progress kept is that of the command at the start of the
        // input; parsing a whole command resets it, so a later one starts
        // afresh.
        let parsed = parse(
            &input[used..],
            &mut args,
            &mut unquoted,
            MAX_COMMAND,
            &mut progress.0,
        );
        let step = match parsed {
            Ok(Some(n)) => {
                // Offsets are relative to the command's start, or to the
                // unquoted arguments of an inline line with quotes.
                let cmd = if unquoted.is_empty() {
                    &input[used..used + n]
                } else {
                    &unquoted[..]
                };
                let next = if args.is_empty() {
                    Next::Read
                } else {
                    execute(cmd, &args, out, store)
                };
                Some((n, next))
            }
            Ok(None) => None,
            Err(why) => {
                out.extend_from_slice(b"-ERR Protocol error: ");
                out.extend_from_slice(why.as_bytes());
                out.extend_from_slice(b"\r\n");
                Some((0, Next::Close))
            }
        };
        store.args = args;
        store.unquoted = unquoted;
        match step {
            Some((n, Next::Read)) => used += n,
            Some((n, Next::Close)) => return (used + n, Next::Close),
            None => return (used, Next::Read),
        }
    }
    (used, Next::Read)
}

/// Parses the first command of `input` into `args` (start and end of each
/// argument). `Ok(None)`: not whole yet; `Ok(Some(n))`: `n` bytes long
/// (an empty inline line leaves `args` empty; an inline line with quotes
/// leaves its arguments, unquoted, in `unquoted`, and `args` indexes
/// that instead of `input`). A command that would be
/// longer than `max` bytes is an error as soon as a length says so.
/// `scan` says how far an earlier call got with this command, and is left
/// saying how far this one got (`Start` once the command is whole or in
/// error).
fn parse(
    input: &[u8],
    args: &mut Vec<(usize, usize)>,
    unquoted: &mut Vec<u8>,
    max: usize,
    scan: &mut Scan,
) -> Result<Option<usize>, &'static str> {
    let resumed = std::mem::take(scan);
    if input.is_empty() {
        return Ok(None);
    }
    if input[0] != b'*' {
        let from = match resumed {
            Scan::Inline { scanned } if scanned as usize <= input.len() => scanned as usize,
            _ => 0,
        };
        let parsed = parse_inline(input, from, args, unquoted);
        if parsed == Ok(None) {
            // Within MAX_INLINE, or the line would have been refused.
            *scan = Scan::Inline {
                scanned: input.len() as u32,
            };
        }
        return parsed;
    }
    let Some((count, header)) = number(input, 1, "invalid multibulk length")? else {
        return Ok(None);
    };
    if count > MAX_ARGS as i64 {
        return Err("invalid multibulk length");
    }
    if count <= 0 {
        // An empty or null array (`*0`, `*-1`) is no command: Redis skips
        // it and reads on.
        return Ok(Some(header));
    }
    let count = count as usize;
    // Where an earlier call stopped, if it was on this very command (the
    // same header; the caller dropped what it used before the call).
    let (first, mut at) = match resumed {
        Scan::Array {
            count: c,
            header: h,
            args,
            at,
        } if (c as usize, h as usize) == (count, header) && at as usize <= input.len() => {
            (args as usize, at as usize)
        }
        _ => (0, header),
    };
    for arg in first..count {
        #[cfg(test)]
        tests::SCANNED.with(|n| n.set(n.get() + 1));
        // Each fits: `count` is within MAX_ARGS, `header` a short line,
        // and `at` within `max` (checked for the argument before).
        let waiting = Scan::Array {
            count: count as u32,
            header: header as u32,
            args: arg as u32,
            at: at as u32,
        };
        match input.get(at) {
            None => {
                *scan = waiting;
                return Ok(None);
            }
            Some(b'$') => {}
            Some(_) => return Err("expected '$'"),
        }
        let Some((len, start)) = number(input, at + 1, "invalid bulk length")? else {
            *scan = waiting;
            return Ok(None);
        };
        if !(0..=MAX_BULK as i64).contains(&len) {
            return Err("invalid bulk length");
        }
        let end = start + len as usize;
        if end + 2 > max {
            return Err("command too long");
        }
        match input.get(end..end + 2) {
            None => {
                *scan = waiting;
                return Ok(None);
            }
            Some(b"\r\n") => {}
            Some(_) => return Err("bulk string not followed by CRLF"),
        }
        args.push((start, end));
        at = end + 2;
    }
    if first > 0 {
        // The arguments checked by earlier calls are not in `args`: one
        // more pass, now that the command is whole, collects them all.
        args.clear();
        return parse(input, args, unquoted, max, scan);
    }
    Ok(Some(at))
}

/// Parses the decimal number starting at `at` and ending in CRLF; returns
/// it and where the next line starts. A number Redis would not take (a
/// sign `+`, a leading zero, a space) is the error `invalid`.
fn number(input: &[u8], at: usize, invalid: &'static str) -> Result<Option<(i64, usize)>, &'static str> {
    let rest = &input[at.min(input.len())..];
    let Some(eol) = rest.iter().position(|&b| b == b'\r') else {
        return if rest.len() > 20 {
            Err("length too long")
        } else {
            Ok(None)
        };
    };
    match rest.get(eol + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err("expected LF"),
    }
    let n = integer_value(&rest[..eol]).ok_or(invalid)?;
    Ok(Some((n, at + eol + 2)))
}

/// An inline command: words separated by blanks, ending in LF or CRLF,
/// split as Redis splits them (`sdssplitargs`): a word may be quoted, in
/// `"..."` with escapes (`\n`, `\r`, `\t`, `\b`, `\a`, `\xHH`, `\` and
/// any other character taken as itself) or in `'...'` (`\'` only), and a
/// closing quote must end the word. A line with quotes has its words
/// copied, unquoted, into `unquoted`. The first `from` bytes are known to
/// hold no LF.
fn parse_inline(
    input: &[u8],
    from: usize,
    args: &mut Vec<(usize, usize)>,
    unquoted: &mut Vec<u8>,
) -> Result<Option<usize>, &'static str> {
    let Some(eol) = input[from..].iter().position(|&b| b == b'\n').map(|i| from + i) else {
        return if input.len() > MAX_INLINE {
            Err("too big inline request")
        } else {
            Ok(None)
        };
    };
    let line = &input[..eol];
    if !line.iter().any(|&b| b == b'"' || b == b'\'') {
        let mut i = 0;
        while i < line.len() {
            if blank(line[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < line.len() && !blank(line[i]) {
                i += 1;
            }
            args.push((start, i));
        }
        return Ok(Some(eol + 1));
    }
    let mut i = 0;
    while i < line.len() {
        if blank(line[i]) {
            i += 1;
            continue;
        }
        let start = unquoted.len();
        // One word: plain bytes, up to a blank or a quoted part (which
        // must end it).
        while let Some(&b) = line.get(i).filter(|&&b| !blank(b)) {
            if b == b'"' || b == b'\'' {
                i = unquote(line, i, unquoted)?;
                break;
            }
            unquoted.push(b);
            i += 1;
        }
        args.push((start, unquoted.len()));
    }
    Ok(Some(eol + 1))
}

/// What separates the words of an inline line, as for Redis.
fn blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0)
}

/// Appends the quoted part of an inline word that opens at `line[open]`,
/// unquoted, to `out`, and returns where it ends: past its closing quote,
/// which must end the word. In double quotes `\n`, `\r`, `\t`, `\b`,
/// `\a` and `\xHH` are escapes and `\` takes any other byte as it is; in
/// single quotes only `\'` is.
fn unquote(line: &[u8], open: usize, out: &mut Vec<u8>) -> Result<usize, &'static str> {
    const UNBALANCED: &str = "unbalanced quotes in request";
    let quote = line[open];
    let double = quote == b'"';
    let hex = |at: usize| line.get(at).and_then(|&h| char::from(h).to_digit(16));
    let mut i = open + 1;
    loop {
        let (byte, len) = match (line.get(i), line.get(i + 1)) {
            (None, _) => return Err(UNBALANCED),
            (Some(&b), next) if b == quote => {
                return match next {
                    Some(&after) if !blank(after) => Err(UNBALANCED),
                    _ => Ok(i + 1),
                };
            }
            (Some(b'\\'), Some(b'x')) if double => match (hex(i + 2), hex(i + 3)) {
                (Some(high), Some(low)) => ((high * 16 + low) as u8, 4),
                _ => (b'x', 2),
            },
            (Some(b'\\'), Some(&c)) if double => {
                let byte = match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                };
                (byte, 2)
            }
            (Some(b'\\'), Some(b'\'')) => (b'\'', 2),
            (Some(&b), _) => (b, 1),
        };
        out.push(byte);
        i += len;
    }
}

/// Runs one command and appends its reply.
fn execute(cmd: &[u8], args: &[(usize, usize)], out: &mut Vec<u8>, store: &mut Store) -> Next {
    let arg = |i: usize| &cmd[args[i].0..args[i].1];
    let name = arg(0);
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    let n = args.len() - 1;
    let arity_ok = match () {
        _ if is("PING") => n <= 1,
        _ if is("ECHO") || is("GET") || is("INCR") => n == 1,
        _ if is("SET") => n == 2,
        _ if is("DEL") || is("EXISTS") => n >= 1,
        _ if is("QUIT") => n == 0,
        _ if is("CONFIG") => n >= 1,
        _ => true,
    };
    if !arity_ok {
        out.extend_from_slice(b"-ERR wrong number of arguments for '");
        out.extend_from_slice(&name.to_ascii_lowercase());
        out.extend_from_slice(b"' command\r\n");
        return Next::Read;
    }
    match () {
        _ if is("PING") && n == 0 => out.extend_from_slice(b"+PONG\r\n"),
        _ if is("PING") || is("ECHO") => bulk(out, Some(arg(1))),
        _ if is("SET") => {
            match store.values.get_mut(arg(1)) {
                Some(value) => {
                    value.clear();
                    value.extend_from_slice(arg(2));
                }
                None => {
                    store.values.insert(arg(1).to_vec(), arg(2).to_vec());
                }
            }
            out.extend_from_slice(b"+OK\r\n");
        }
        _ if is("GET") => bulk(out, store.values.get(arg(1)).map(Vec::as_slice)),
        _ if is("DEL") => integer(
            out,
            (1..=n).filter(|&i| store.values.remove(arg(i)).is_some()).count() as i64,
        ),
        _ if is("EXISTS") => integer(
            out,
            (1..=n).filter(|&i| store.values.contains_key(arg(i))).count() as i64,
        ),
        _ if is("INCR") => {
            let value = store
                .values
                .entry(arg(1).to_vec())
                .or_insert_with(|| b"0".to_vec());
            match integer_value(value).map(|v| v.checked_add(1)) {
                Some(Some(new)) => {
                    value.clear();
                    value.extend_from_slice(new.to_string().as_bytes());
                    integer(out, new);
                }
                Some(None) => out.extend_from_slice(b"-ERR increment or decrement would overflow\r\n"),
                None => out.extend_from_slice(b"-ERR value is not an integer or out of range\r\n"),
            }
        }
        _ if is("QUIT") => {
            out.extend_from_slice(b"+OK\r\n");
            return Next::Close;
        }
        _ if is("CONFIG") && n == 2 && arg(1).eq_ignore_ascii_case(b"GET") => {
            // What redis-benchmark asks for; nothing is saved to disk.
            let value: Option<&[u8]> = match arg(2) {
                b"save" => Some(b""),
                b"appendonly" => Some(b"no"),
                _ => None,
            };
            match value {
                Some(v) => {
                    out.extend_from_slice(b"*2\r\n");
                    bulk(out, Some(arg(2)));
                    bulk(out, Some(v));
                }
                None => out.extend_from_slice(b"*0\r\n"),
            }
        }
        _ if is("COMMAND") => out.extend_from_slice(b"*0\r\n"),
        _ => {
            out.extend_from_slice(b"-ERR unknown command '");
            out.extend(
                name.iter()
                    .take(128)
                    .map(|&b| if b.is_ascii_graphic() { b } else { b'?' }),
            );
            out.extend_from_slice(b"'\r\n");
        }
    }
    Next::Read
}

/// `bytes` as a 64-bit integer, written the one way Redis writes it
/// (its `string2ll`): an optional `-`, then `0` alone or digits without a
/// leading zero. No `+`, no spaces, no `-0`: such a value is not an
/// integer to `INCR`.
fn integer_value(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [b'0'] => digits.len() == bytes.len(),
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    // Only ASCII digits and a sign: valid UTF-8, and `parse` checks the
    // range.
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Appends a bulk string, or the null bulk string for `None`.
fn bulk(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            out.push(b'$');
            crate::push_decimal(out, v.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

/// Appends an integer reply.
fn integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    if n < 0 {
        out.push(b'-');
    }
    crate::push_decimal(out, n.unsigned_abs());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Arguments `parse` has checked on this thread (each test runs on
        /// a thread of its own).
        pub(super) static SCANNED: Cell<usize> = const { Cell::new(0) };
    }

    /// One call of `respond`, for a client with no command pending.
    fn run(store: &mut Store, input: &[u8]) -> (usize, Next, String) {
        let mut out = Vec::new();
        let (used, next) = respond(input, &mut out, store, &mut Progress::default());
        (used, next, String::from_utf8(out).unwrap())
    }

    /// `input` arriving `piece` bytes at a time, answered as the RESP
    /// servers answer it (one call per arrival, used bytes dropped);
    /// returns every reply and the arguments `parse` checked.
    fn arriving(input: &[u8], piece: usize) -> (String, usize) {
        let (mut store, mut progress) = (Store::new(), Progress::default());
        let (mut pending, mut replies) = (Vec::new(), Vec::new());
        SCANNED.with(|n| n.set(0));
        for chunk in input.chunks(piece) {
            pending.extend_from_slice(chunk);
            loop {
                let (used, next) = respond(&pending, &mut replies, &mut store, &mut progress);
                pending.drain(..used);
                assert_eq!(next, Next::Read);
                if used == 0 {
                    break;
                }
            }
        }
        assert!(pending.is_empty(), "{} bytes left", pending.len());
        (String::from_utf8(replies).unwrap(), SCANNED.with(Cell::get))
    }

    /// A long command arriving in pieces is scanned once, not once per
    /// piece: 100,000 keys to `EXISTS` in 1 KiB pieces (about 1,100 calls)
    /// check each argument at most twice (once as it arrives, once more
    /// to collect them when the command is whole). Without the kept
    /// progress every call rescans from the start: about 55 million.
    #[test]
    fn a_long_command_arriving_in_pieces_is_scanned_once() {
        let keys: Vec<String> = (0..100_000).map(|i| format!("k{i}")).collect();
        let mut words = vec!["EXISTS"];
        words.extend(keys.iter().map(String::as_str));
        let command = array(&words);
        let (replies, scanned) = arriving(command.as_bytes(), 1024);
        assert_eq!(replies, ":0\r\n");
        // Each call also looks once at the argument it stops in.
        let calls = command.len().div_ceil(1024);
        assert!(scanned <= 2 * words.len() + calls, "{scanned} arguments checked");
        // The same for an inline line dripping in byte by byte, with a
        // whole command before and after it.
        let line = format!("PING\r\nECHO {}\r\nPING\r\n", "x".repeat(5000));
        let (replies, _) = arriving(line.as_bytes(), 1);
        assert_eq!(
            replies,
            format!("+PONG\r\n$5000\r\n{}\r\n+PONG\r\n", "x".repeat(5000))
        );
    }

    /// Whatever sizes the pieces come in, the replies are those of the
    /// whole input at once.
    #[test]
    fn pieces_of_any_size_get_the_replies_of_the_whole() {
        let input = [
            array(&["SET", "k", "some value"]),
            "GET k\r\n".to_string(),
            array(&["DEL", "a", "k", "b"]),
            array(&["ECHO", &"y".repeat(300)]),
            "EXISTS k a\r\n".to_string(),
            array(&["INCR", "n"]),
            array(&["PING"]),
        ]
        .concat();
        let (whole, _) = arriving(input.as_bytes(), input.len());
        assert!(
            whole.starts_with("+OK\r\n$10\r\nsome value\r\n:1\r\n$300\r\n"),
            "{whole}"
        );
        for piece in [1, 2, 3, 7, 16, 100] {
            assert_eq!(arriving(input.as_bytes(), piece).0, whole, "pieces of {piece}");
        }
    }

    /// Progress kept for one command and given with another (a caller that
    /// did not drop what it used) is not trusted: the other is parsed from
    /// its start.
    #[test]
    fn progress_of_another_command_is_not_trusted() {
        let mut store = Store::new();
        let mut progress = Progress::default();
        let mut out = Vec::new();
        let first = array(&["ECHO", "abcdef"]);
        let partial = &first.as_bytes()[..first.len() - 5];
        assert_eq!(
            respond(partial, &mut out, &mut store, &mut progress),
            (0, Next::Read)
        );
        assert_ne!(progress, Progress::default());
        let other = array(&["SET", "k", "v"]);
        assert_eq!(
            respond(other.as_bytes(), &mut out, &mut store, &mut progress),
            (other.len(), Next::Read)
        );
        assert_eq!(out, b"+OK\r\n");
        assert_eq!(progress, Progress::default());
    }

    /// `words` as a RESP array of bulk strings.
    fn array(words: &[&str]) -> String {
        let mut s = format!("*{}\r\n", words.len());
        for w in words {
            s += &format!("${}\r\n{w}\r\n", w.len());
        }
        s
    }

    #[test]
    fn every_command_as_array_and_inline() {
        let script: [(&[&str], &str); 16] = [
            (&["PING"], "+PONG\r\n"),
            (&["ping", "hi there"], "$8\r\nhi there\r\n"),
            (&["ECHO", ""], "$0\r\n\r\n"),
            (&["GET", "k"], "$-1\r\n"),
            (&["SET", "k", "v1"], "+OK\r\n"),
            (&["SET", "k", "value_two"], "+OK\r\n"),
            (&["GET", "k"], "$9\r\nvalue_two\r\n"),
            (&["EXISTS", "k", "nope", "k"], ":2\r\n"),
            (&["INCR", "n"], ":1\r\n"),
            (&["INCR", "n"], ":2\r\n"),
            (&["INCR", "k"], "-ERR value is not an integer or out of range\r\n"),
            (&["DEL", "k", "n", "nope"], ":2\r\n"),
            (&["EXISTS", "k"], ":0\r\n"),
            (&["GET"], "-ERR wrong number of arguments for 'get' command\r\n"),
            (&["FLUSHALL"], "-ERR unknown command 'FLUSHALL'\r\n"),
            (&["CONFIG", "GET", "save"], "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
        ];
        for inline in [false, true] {
            let mut store = Store::new();
            for (words, reply) in script {
                if inline && words.iter().any(|w| w.is_empty() || w.contains(' ')) {
                    continue;
                }
                let input = if inline {
                    format!("{}\r\n", words.join(" "))
                } else {
                    array(words)
                };
                let (used, next, out) = run(&mut store, input.as_bytes());
                assert_eq!(
                    (used, next, out.as_str()),
                    (input.len(), Next::Read, reply),
                    "{input:?}"
                );
            }
        }
    }

    #[test]
    fn inline_accepts_lf_tabs_and_empty_lines() {
        let mut store = Store::new();
        let (used, next, out) = run(&mut store, b"\r\n\n  SET\ta  b \nGET a\n");
        assert_eq!((used, next, out.as_str()), (21, Next::Read, "+OK\r\n$1\r\nb\r\n"));
    }

    #[test]
    fn a_command_in_pieces_waits_for_its_end() {
        let input = array(&["SET", "key", "a value"]);
        let mut store = Store::new();
        for cut in 0..input.len() {
            assert_eq!(
                run(&mut store, &input.as_bytes()[..cut]),
                (0, Next::Read, String::new()),
                "{cut}"
            );
        }
        assert_eq!(
            run(&mut store, input.as_bytes()),
            (input.len(), Next::Read, "+OK\r\n".into())
        );
    }

    /// Inline lines are split as redis-server 7.0 splits them (each case
    /// checked against it): quotes, escapes, a lone CR as a blank, and
    /// quotes that do not end a word or do not close are a protocol error.
    #[test]
    fn inline_quotes_and_escapes_are_taken_as_redis_takes_them() {
        let cases: [(&[u8], &[u8]); 11] = [
            (b"ECHO \"a b\"\r\n", b"$3\r\na b\r\n"),
            (b"ECHO 'a\\x41\\n'\r\n", b"$7\r\na\\x41\\n\r\n"),
            (b"ECHO 'a b'\r\n", b"$3\r\na b\r\n"),
            (b"ECHO \"x\\x41\\n\\\"y\"\r\n", b"$5\r\nxA\n\"y\r\n"),
            (b"ECHO 'it\\'s'\r\n", b"$4\r\nit's\r\n"),
            (b"ECHO \"\"\r\n", b"$0\r\n\r\n"),
            (b"ECHO\ra\r\n", b"$1\r\na\r\n"),
            (
                b"SET k \"hello world\"\r\nGET k\r\n",
                b"+OK\r\n$11\r\nhello world\r\n",
            ),
            (b"ECHO \"\\q\"\r\n", b"$1\r\nq\r\n"),
            (b"ECHO \"\\x4\"\r\n", b"$2\r\nx4\r\n"),
            (
                b"ECHO \"a\"\tb\r\n",
                b"-ERR wrong number of arguments for 'echo' command\r\n",
            ),
        ];
        for (input, reply) in cases {
            let mut out = Vec::new();
            let got = respond(input, &mut out, &mut Store::new(), &mut Progress::default());
            assert_eq!(
                got,
                (input.len(), Next::Read),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(out, reply, "{:?}", String::from_utf8_lossy(input));
        }
        for input in [
            &b"ECHO a\"b c\"d\r\n"[..],
            b"ECHO \"ab\"c\r\n",
            b"ECHO \"abc\r\n",
            b"ECHO 'abc\r\n",
        ] {
            let (_, next, out) = run(&mut Store::new(), input);
            assert_eq!(next, Next::Close, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(out, "-ERR Protocol error: unbalanced quotes in request\r\n");
        }
    }

    /// An empty or negative count is an empty command, skipped without a
    /// reply, as redis-server 7.0 does (`*-5`, `*-1`, `*0` then `PING`:
    /// `+PONG` alone).
    #[test]
    fn an_empty_or_negative_count_is_skipped() {
        for input in [&b"*-5\r\nPING\r\n"[..], b"*-1\r\nPING\r\n", b"*0\r\nPING\r\n"] {
            let (used, next, out) = run(&mut Store::new(), input);
            assert_eq!((used, next, out.as_str()), (input.len(), Next::Read, "+PONG\r\n"));
        }
    }

    #[test]
    fn protocol_errors_answer_then_close() {
        let cases: [&[u8]; 6] = [
            b"*x\r\n",
            b"*1\r\n+PING\r\n",
            b"*1\r\n$4\r\nPINGxx",
            b"*1048577\r\n",
            b"*1\r\n$99999999999\r\n",
            b"*1\r\n$12345678901234567890123456\r\n",
        ];
        for input in cases {
            let (_, next, out) = run(&mut Store::new(), input);
            assert_eq!(next, Next::Close, "{input:?}");
            assert!(out.starts_with("-ERR Protocol error: "), "{out}");
        }
        let (_, next, out) = run(&mut Store::new(), &[b'x'; MAX_INLINE + 1]);
        assert_eq!(
            (next, out.as_str()),
            (Next::Close, "-ERR Protocol error: too big inline request\r\n")
        );
        // Commands before the error are answered first.
        let (_, next, out) = run(&mut Store::new(), b"PING\r\n*x\r\n");
        assert_eq!(next, Next::Close);
        assert!(out.starts_with("+PONG\r\n-ERR Protocol error"), "{out}");
    }

    /// What `INCR` takes for an integer, and its answers, are Redis's
    /// (checked against redis-server 7.0): a value with a sign, a leading
    /// zero or a space is not an integer, and the largest one cannot grow.
    #[test]
    fn incr_takes_only_what_redis_takes_for_an_integer() {
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        let cases: [(&str, &str, &str); 10] = [
            ("+5", not_integer, "+5"),
            ("007", not_integer, "007"),
            ("-0", not_integer, "-0"),
            (" 12", not_integer, " 12"),
            ("12 ", not_integer, "12 "),
            ("", not_integer, ""),
            ("-", not_integer, "-"),
            ("-12", ":-11\r\n", "-11"),
            ("0", ":1\r\n", "1"),
            (
                "9223372036854775807",
                "-ERR increment or decrement would overflow\r\n",
                "9223372036854775807",
            ),
        ];
        for (value, reply, after) in cases {
            let mut store = Store::new();
            run(&mut store, array(&["SET", "k", value]).as_bytes());
            let (_, next, out) = run(&mut store, array(&["INCR", "k"]).as_bytes());
            assert_eq!((next, out.as_str()), (Next::Read, reply), "INCR of {value:?}");
            assert_eq!(store.values[b"k".as_slice()], after.as_bytes(), "{value:?}");
        }
        let mut store = Store::new();
        run(
            &mut store,
            array(&["SET", "k", "-9223372036854775808"]).as_bytes(),
        );
        let (_, _, out) = run(&mut store, array(&["INCR", "k"]).as_bytes());
        assert_eq!(out, ":-9223372036854775807\r\n");
    }

    /// Lengths are written as Redis takes them: no sign `+`, no leading
    /// zero, no space; anything else is a protocol error naming the length
    /// (checked against redis-server 7.0).
    #[test]
    fn lengths_are_taken_as_redis_takes_them() {
        let cases: [(&[u8], &str); 8] = [
            (b"*+1\r\n$4\r\nPING\r\n", "invalid multibulk length"),
            (b"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"),
            (b"* 1\r\n$4\r\nPING\r\n", "invalid multibulk length"),
            (b"*\r\n", "invalid multibulk length"),
            (b"*1\r\n$+4\r\nPING\r\n", "invalid bulk length"),
            (b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
            (b"*1\r\n$4 \r\nPING\r\n", "invalid bulk length"),
            (b"*1\r\n$9223372036854775808\r\n", "invalid bulk length"),
        ];
        for (input, why) in cases {
            let (used, next, out) = run(&mut Store::new(), input);
            assert_eq!(
                (used, next, out),
                (0, Next::Close, format!("-ERR Protocol error: {why}\r\n")),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let (_, next, out) = run(&mut Store::new(), b"*1\r\n$0\r\n\r\n*0\r\n");
        assert_eq!((next, out.as_str()), (Next::Read, "-ERR unknown command ''\r\n"));
    }

    /// Pipelined `GET`s of a large value: one call answers as many as
    /// fill [`MAX_REPLIES`] (here one), not all 100 (100 MiB of replies
    /// for 2 KB of commands); the next calls answer the rest.
    #[test]
    fn replies_are_bounded_per_call() {
        let mut store = Store::new();
        let value = "v".repeat(1 << 20);
        run(&mut store, array(&["SET", "k", &value]).as_bytes());
        let get = array(&["GET", "k"]);
        let reply = format!("${}\r\n{value}\r\n", value.len());
        let input = get.repeat(100);
        let (mut at, mut calls) = (0, 0);
        while at < input.len() {
            let (used, next, out) = run(&mut store, &input.as_bytes()[at..]);
            assert_eq!((used, next), (get.len(), Next::Read), "call {calls}");
            assert!(out == reply, "call {calls}: {} bytes of replies", out.len());
            at += used;
            calls += 1;
            assert!(calls <= 100);
        }
        // Small replies: a call stops just past MAX_REPLIES, having used
        // only the commands it answered.
        let ping = array(&["PING"]);
        let input = ping.repeat(100_000);
        let (used, next, out) = run(&mut store, input.as_bytes());
        let answered = out.len() / "+PONG\r\n".len();
        assert_eq!((used, next), (answered * ping.len(), Next::Read));
        assert!(
            (MAX_REPLIES..MAX_REPLIES + 7).contains(&out.len()),
            "{}",
            out.len()
        );
    }

    /// A command is refused as soon as its lengths add up to more than
    /// the limit, before the bytes arrive: bulk strings each within
    /// [`MAX_BULK`], as many as [`MAX_ARGS`], would let one command still
    /// arriving take terabytes ([`MAX_COMMAND`] is the limit `respond`
    /// gives; small ones here).
    #[test]
    fn a_command_longer_than_the_limit_is_refused() {
        let head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\n";
        let mut args = Vec::new();
        let scan = &mut Scan::Start;
        // 25 + 20 + 2 = 47 bytes: within 47, not within 46.
        assert_eq!(parse(head, &mut args, &mut Vec::new(), 47, scan), Ok(None));
        assert_eq!(
            parse(head, &mut args, &mut Vec::new(), 46, &mut Scan::Start),
            Err("command too long")
        );
        let whole = [&head[..], &[b'v'; 20], b"\r\n"].concat();
        args.clear();
        assert_eq!(parse(&whole, &mut args, &mut Vec::new(), 47, scan), Ok(Some(47)));
        assert_eq!(args, [(8, 11), (17, 18), (25, 45)]);
    }

    #[test]
    fn quit_answers_then_closes() {
        let (_, next, out) = run(&mut Store::new(), b"QUIT\r\nPING\r\n");
        assert_eq!((next, out.as_str()), (Next::Close, "+OK\r\n"));
    }

    #[test]
    fn set_reuses_the_value_memory() {
        let mut store = Store::new();
        run(&mut store, array(&["SET", "k", "0123456789"]).as_bytes());
        let at = store.values[b"k".as_slice()].as_ptr();
        run(&mut store, array(&["SET", "k", "abc"]).as_bytes());
        assert_eq!(store.values[b"k".as_slice()].as_ptr(), at);
    }
}
