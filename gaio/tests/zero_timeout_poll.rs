//! A watcher polled with a zero timeout (a caller that checks for
//! completions between other work and never blocks in `wait_io`) still
//! gets its completions.

mod util;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use gaio::{Buffer, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(5);

fn polled_without_waiting(mode: gaio::Mode) {
    let _lock = util::shared();
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
    let (mut peer, ours) = UnixStream::pair().unwrap();
    util::peer::unix_timeouts(&peer);
    let conn = w.watch(ours).expect("watch");
    w.read(conn, 7, vec![0u8; 16]).expect("read");
    let mut out = Vec::new();
    // The read is handed to the kernel and finds nothing yet.
    assert_eq!(w.wait_io_timeout(&mut out, Duration::ZERO).expect("wait_io"), 0);
    peer.write_all(b"ping").unwrap();
    let end = Instant::now() + LIMIT;
    let mut polls = 0u32;
    while out.is_empty() {
        assert!(
            Instant::now() < end,
            "no completion after {polls} polls with a zero timeout over {LIMIT:?} on {:?}",
            w.backend()
        );
        polls += 1;
        w.wait_io_timeout(&mut out, Duration::ZERO).expect("wait_io");
        if out.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let c = &out[0];
    assert!(c.error.is_none(), "{:?}", c.error);
    assert_eq!((c.context, c.bytes), (7, 4));
    let Buffer::User(buf) = &c.buffer else {
        panic!("the buffer did not come back")
    };
    assert_eq!(&buf[..4], b"ping");
    drop(out);
    drop((w, peer));
}

#[test]
fn a_watcher_polled_with_a_zero_timeout_gets_its_completions_inline() {
    polled_without_waiting(gaio::Mode::Inline);
}

#[test]
fn a_watcher_polled_with_a_zero_timeout_gets_its_completions_background() {
    polled_without_waiting(gaio::Mode::Background);
}
