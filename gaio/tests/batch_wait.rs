//! A lone message after a burst of them is handed out at once, not held
//! until a batch that never comes fills up. (The io_uring engine waited
//! for batches of completions with hundreds of requests in flight, up to
//! 50 µs for twice the last turn's, until session 14; it waits for one
//! now, and this keeps any batching to come honest.) Every backend runs
//! the same steps.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use gaio::{Error, Op, Submit, Watcher};

/// Connections with a read pending: above the threshold the ring's
/// batched waits had (256 requests in flight).
const CONNS: usize = 300;
/// How long the watcher is given for a lone message: a wait that held it
/// for a batch would take all of it.
const GIVEN: Duration = Duration::from_secs(2);
/// The median wait for a lone message must stay under this, and the
/// longest under [`WORST`] (a batched wait would add at most 50 µs; the
/// rest is this machine's noise). A wait held for a batch lasts until the
/// engine's own wake-up, 50 ms, or [`GIVEN`].
const PROMPT: Duration = Duration::from_millis(20);
const WORST: Duration = Duration::from_millis(400);

#[test]
fn a_lone_message_after_a_burst_is_handed_out_at_once() {
    let _lock = util::exclusive();
    let fds = util::FdCheck::new();
    let (mut clients, servers): (Vec<_>, Vec<_>) = util::tcp_pairs(CONNS).into_iter().unzip();
    let mut w: Watcher<usize> = util::watcher(gaio::Mode::Inline);
    let conns: Vec<_> = servers.into_iter().map(|s| w.watch(s).unwrap()).collect();
    for (i, &c) in conns.iter().enumerate() {
        w.read_swap(c, i).unwrap();
    }
    let mut waits = Vec::new();
    for round in 0..20u8 {
        // A burst: every connection gets a byte, so turns take many
        // completions and the next wait asks for a batch.
        for c in &mut clients {
            c.write_all(&[round]).unwrap();
        }
        // Every byte is in before the watcher looks: its next turn takes
        // them all at once.
        std::thread::sleep(Duration::from_millis(20));
        let mut seen = 0;
        let end = Instant::now() + Duration::from_secs(20);
        while seen < CONNS {
            assert!(Instant::now() < end, "round {round}: {seen} of {CONNS} reads");
            for c in util::wait_for(&mut w, 1, Duration::from_secs(20)) {
                assert_eq!((c.op, c.data()), (Op::Read, &[round][..]), "conn {}", c.context);
                w.read_swap(c.conn, c.context).unwrap();
                seen += 1;
            }
        }
        // Then one message alone.
        let lone = usize::from(round) * 7 % CONNS;
        let sent = Instant::now();
        clients[lone].write_all(b"!").unwrap();
        let mut got = Vec::new();
        w.wait_io_timeout(&mut got, GIVEN).unwrap();
        let waited = sent.elapsed();
        assert_eq!(got.len(), 1, "round {round}: the lone read did not come");
        assert_eq!((got[0].context, got[0].data()), (lone, &b"!"[..]));
        waits.push(waited);
        w.read_swap(got[0].conn, lone).unwrap();
    }
    waits.sort();
    let (median, worst) = (waits[waits.len() / 2], waits[waits.len() - 1]);
    assert!(
        median < PROMPT && worst < WORST,
        "lone reads waited {median:?} (median), {worst:?} (longest) for a batch"
    );
    for &c in &conns {
        w.free(c).unwrap();
    }
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    let mut closed = 0;
    while closed < CONNS && Instant::now() < end {
        out.clear();
        w.wait_io_timeout(&mut out, Duration::from_millis(50)).unwrap();
        closed += out
            .iter()
            .filter(|c| matches!(c.error, Some(Error::ConnClosed)))
            .count();
    }
    assert_eq!(closed, CONNS, "every pending read ends with ConnClosed at free");
    drop((w, clients));
    fds.check();
}
