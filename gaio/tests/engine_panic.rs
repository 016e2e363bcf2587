//! A panic inside the watcher: user code (here a buffer whose
//! `as_bytes_mut` panics) runs on the thread that does the I/O. The watcher
//! must not hang its waiter or leak its sockets:
//!
//! * background mode: the panic is caught on the thread that ran the I/O
//!   (the owning thread inside `wait_io` or a submission, or the
//!   background thread while the owner is busy) and closes the watcher; a
//!   blocked `wait_io` wakes, the pending requests come back with
//!   `WatcherClosed`, then `wait_io` fails with `Panicked` (with the
//!   message) on every call; submitters are refused; sockets are closed;
//! * inline mode: the panic unwinds into the caller; the next call finds
//!   the watcher poisoned and it closes the same way.

mod util;
use util::peer::{read_to_eof, timeouts};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Error, IoBuf, IoBufMut, Mode, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);
const BOOM: &str = "boom: as_bytes_mut of a booby-trapped buffer";

/// A read buffer that panics when the watcher asks for its bytes to fill,
/// if armed.
#[derive(Debug, PartialEq)]
struct Trapped {
    bytes: Vec<u8>,
    armed: bool,
}

impl Trapped {
    fn safe() -> Self {
        Trapped {
            bytes: vec![0; 16],
            armed: false,
        }
    }
    fn armed() -> Self {
        Trapped {
            bytes: vec![0; 16],
            armed: true,
        }
    }
}

impl IoBuf for Trapped {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl IoBufMut for Trapped {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        assert!(!self.armed, "{BOOM}");
        &mut self.bytes
    }
}

/// A watcher in `mode` with two connections and their peers: a safe read
/// pending on the first (`quiet`, context 1), nothing yet on the second
/// (`trapped`, for the booby-trapped read).
fn two_connections(
    mode: Mode,
) -> (
    Watcher<u32, Trapped>,
    std::net::TcpStream,
    std::net::TcpStream,
    gaio::Conn,
    gaio::Conn,
) {
    let mut w: Watcher<u32, Trapped> = util::watcher(mode);
    let (c1, s1) = util::tcp_pair();
    let (c2, s2) = util::tcp_pair();
    timeouts(&c1);
    timeouts(&c2);
    let quiet = w.watch(s1).expect("watch");
    let trapped = w.watch(s2).expect("watch");
    w.read(quiet, 1, Trapped::safe()).expect("read");
    (w, c1, c2, quiet, trapped)
}

/// Checks what a closed-by-panic watcher does from here on: `wait_io`
/// hands out the safe read (with `WatcherClosed`), then fails with
/// `Panicked` on every call; submissions are refused with everything handed
/// back; both peers see end of stream.
fn after_the_panic(
    w: &mut Watcher<u32, Trapped>,
    peers: &mut [std::net::TcpStream],
    conn: gaio::Conn,
    message: &str,
) {
    let end = Instant::now() + LIMIT;
    let mut out = Vec::new();
    let error = loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "wait_io never failed after the panic");
        match w.wait_io_timeout(&mut out, left) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    match &error {
        Error::Panicked { message: got } => assert!(got.contains(message), "message {got:?}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(
        error.to_string().starts_with("the watcher's engine panicked: "),
        "{error}"
    );
    // The pending safe read came back, with its context and buffer. On
    // io_uring the trapped read was stored before its I/O was tried (the
    // kernel needs its buffer to stay put), so it is pending when the
    // watcher closes and comes back too, first; on a readiness backend it
    // was tried before it was stored, and the panic took it.
    let trapped_too = w.backend() == gaio::Backend::Uring;
    let contexts: Vec<u32> = out.iter().map(|c| c.context).collect();
    assert_eq!(
        contexts,
        if trapped_too { vec![2, 1] } else { vec![1] },
        "completions"
    );
    if trapped_too {
        assert!(
            matches!(out[0].error, Some(Error::WatcherClosed)),
            "{:?}",
            out[0].error
        );
        out.remove(0);
    }
    assert_eq!(out[0].context, 1);
    assert!(
        matches!(out[0].error, Some(Error::WatcherClosed)),
        "{:?}",
        out[0].error
    );
    assert_eq!(out[0].buffer, gaio::Buffer::User(Trapped::safe()));
    // Every later wait fails the same way, at once.
    for _ in 0..3 {
        match w.wait_io_timeout(&mut out, LIMIT) {
            Err(Error::Panicked { message: got }) => assert!(got.contains(message)),
            other => panic!("a later wait_io returned {other:?}"),
        }
    }
    assert!(w.is_closed());
    // Submissions are refused, handing back what they carried.
    let refused = w
        .read(conn, 3, Trapped::safe())
        .expect_err("accepted after the panic");
    assert!(
        matches!(refused.error, Error::WatcherClosed),
        "{:?}",
        refused.error
    );
    assert_eq!((refused.context, refused.buffer), (3, Some(Trapped::safe())));
    let mut sub = w.submitter();
    assert!(sub.is_closed());
    let refused = sub
        .read(conn, 4, Trapped::safe())
        .expect_err("accepted after the panic");
    assert!(
        matches!(refused.error, Error::WatcherClosed),
        "{:?}",
        refused.error
    );
    // Every socket is closed: the peers see end of stream.
    for peer in peers {
        assert!(read_to_eof(peer).is_empty());
    }
}

#[test]
fn a_panic_on_the_engine_thread_closes_the_watcher_and_wakes_the_waiter() {
    let fds = util::FdCheck::new();
    let (mut w, mut c1, mut c2, _quiet, trapped) = two_connections(Mode::Background);
    // The trapped read is submitted from another thread while this one is
    // blocked in wait_io.
    let mut sub = w.submitter();
    let submitted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&submitted);
    let submitting = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        sub.read(trapped, 2, Trapped::armed()).expect("read");
        flag.store(true, Ordering::SeqCst);
    });
    let mut out = Vec::new();
    let first = w.wait_io_timeout(&mut out, LIMIT);
    assert!(
        submitted.load(Ordering::SeqCst),
        "wait_io returned before the trap was set"
    );
    assert!(
        !matches!(first, Ok(0)),
        "wait_io slept through the engine's panic until its timeout"
    );
    submitting.join().expect("submitting thread");
    // The blocked wait woke with the pending read, closed; the next one
    // reports the panic. On io_uring (asked for: background mode is on
    // epoll by default) the trapped read was stored before its I/O was
    // tried, so it comes back too, first (as in inline mode, above).
    let trapped_too = w.backend() == gaio::Backend::Uring;
    let woke = first.expect("the first wait_io after the panic");
    assert_eq!(woke, 1 + usize::from(trapped_too));
    if trapped_too {
        assert_eq!(out[0].context, 2);
        assert!(
            matches!(out[0].error, Some(Error::WatcherClosed)),
            "{:?}",
            out[0].error
        );
        out.remove(0);
    }
    assert_eq!(out[0].context, 1);
    assert!(
        matches!(out[0].error, Some(Error::WatcherClosed)),
        "{:?}",
        out[0].error
    );
    match w.wait_io_timeout(&mut out, LIMIT) {
        Err(Error::Panicked { message }) => assert!(message.contains(BOOM), "{message:?}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    for peer in [&mut c1, &mut c2] {
        assert!(read_to_eof(peer).is_empty());
    }
    drop((w, c1, c2));
    fds.check();
}

#[test]
fn after_a_panic_on_the_engine_thread_wait_io_keeps_failing_and_submitters_are_refused() {
    let fds = util::FdCheck::new();
    let (mut w, c1, c2, quiet, trapped) = two_connections(Mode::Background);
    w.read(trapped, 2, Trapped::armed()).expect("read");
    after_the_panic(&mut w, &mut [c1, c2], quiet, BOOM);
    drop(w);
    fds.check();
}

#[test]
fn a_panic_on_the_background_thread_while_the_owner_is_busy_closes_the_watcher() {
    let fds = util::FdCheck::new();
    let (mut w, mut c1, mut c2, quiet, trapped) = two_connections(Mode::Background);
    // The owner leaves `wait_io` and stays away: the background thread
    // takes the engine. The trapped read arrives from another thread.
    util::expect_quiet(&mut w, Duration::from_millis(10));
    let mut sub = w.submitter();
    thread::spawn(move || sub.read(trapped, 2, Trapped::armed()).expect("read"))
        .join()
        .expect("submitting thread");
    // With no call from the owner, the background thread runs the read,
    // panics and closes the watcher: both peers see their socket close.
    for peer in [&mut c1, &mut c2] {
        assert!(read_to_eof(peer).is_empty());
    }
    after_the_panic(&mut w, &mut [], quiet, BOOM);
    drop((w, c1, c2));
    fds.check();
}

#[test]
fn a_panic_in_inline_mode_unwinds_to_the_caller_and_poisons_the_watcher() {
    let fds = util::FdCheck::new();
    let (mut w, c1, c2, quiet, trapped) = two_connections(Mode::Inline);
    // Inline submission tries the read at once, on this thread: the panic
    // comes straight back to the caller.
    let caught = catch_unwind(AssertUnwindSafe(|| w.read(trapped, 2, Trapped::armed())));
    let payload = caught.expect_err("the trapped read did not panic");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains(BOOM), "{message:?}");
    after_the_panic(
        &mut w,
        &mut [c1, c2],
        quiet,
        "an earlier call into this watcher panicked",
    );
    drop(w);
    fds.check();
}

#[test]
fn a_watcher_dropped_while_a_panic_unwinds_closes_its_sockets() {
    let fds = util::FdCheck::new();
    let (c1, s1) = util::tcp_pair();
    let (c2, s2) = util::tcp_pair();
    timeouts(&c1);
    timeouts(&c2);
    let caught = catch_unwind(AssertUnwindSafe(move || {
        let mut w: Watcher<u32, Trapped> = util::watcher(Mode::Inline);
        let quiet = w.watch(s1).expect("watch");
        let trapped = w.watch(s2).expect("watch");
        w.read(quiet, 1, Trapped::safe()).expect("read");
        let _ = w.read(trapped, 2, Trapped::armed());
    }));
    assert!(caught.is_err(), "the trapped read did not panic");
    for mut peer in [c1, c2] {
        assert!(read_to_eof(&mut peer).is_empty());
    }
    fds.check();
}
