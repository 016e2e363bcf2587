//! `&Submitter` submits: threads share one submitter behind an `Arc`, in
//! both modes; every request arrives, each thread's in its order.

mod util;
use util::peer::timeouts;

use std::io::Read;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use gaio::{Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn four_threads_write_through_one_shared_submitter() {
    const THREADS: u8 = 4;
    const WRITES: u8 = 100;
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<u32, Vec<u8>> = util::watcher(mode);
        let submitter = Arc::new(w.submitter());
        // A hand-over through the shared reference too.
        let conn = (&*submitter).watch(server).unwrap();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let submitter = Arc::clone(&submitter);
                thread::spawn(move || {
                    let mut s = &*submitter;
                    for i in 0..WRITES {
                        s.write(conn, u32::from(t) << 8 | u32::from(i), vec![t, i])
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total = usize::from(THREADS) * usize::from(WRITES);
        let done = util::wait_for(&mut w, total, LIMIT);
        assert_eq!(done.len(), total, "{mode:?}");
        assert!(done
            .iter()
            .all(|c| c.op == Op::Write && c.error.is_none() && c.bytes == 2));
        let mut got = vec![0; total * 2];
        client.read_exact(&mut got).unwrap();
        // Each thread's writes arrive in the order it made them.
        for t in 0..THREADS {
            let mine: Vec<u8> = got.chunks(2).filter(|p| p[0] == t).map(|p| p[1]).collect();
            assert_eq!(mine, (0..WRITES).collect::<Vec<_>>(), "{mode:?}: thread {t}");
        }
        (&*submitter).free(conn).unwrap();
        // In inline mode the free is applied when the watcher next turns.
        util::expect_quiet(&mut w, Duration::from_millis(50));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    fds.check();
}
