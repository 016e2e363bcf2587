//! What an idle watcher costs: 1,000 connections with reads pending and no
//! traffic, in inline and in background mode, on the default backend.
//!
//! The promise is that it sleeps: it neither spins nor wakes to look
//! around. Both are counted for the whole process over a 1.5 s quiet wait:
//!
//! * **wake-ups**, as the kernel counts them (voluntary context switches:
//!   each time a thread of this process blocked). A watcher that sleeps
//!   through the wait blocks a handful of times (the wait itself, the
//!   background thread's hand-over and its one trim of idle memory); one
//!   that looks around every 10 ms blocks 150 times, every millisecond
//!   1,500 times.
//! * **CPU time**, at most a tenth of a core: a watcher that spins uses
//!   all of it without blocking. The bound is that loose because some
//!   hosts charge a thread CPU in proportion to the time it spends asleep,
//!   more for some ways of sleeping than for others (measured on a KVM
//!   guest over 1.5 s: a plain sleep 1.5 to 14 ms, a bare epoll wait 4 to
//!   7 ms, an io_uring wait 9 to 12 ms, a poll(2) over 1,000 idle sockets
//!   9 to 18 ms, all in a process with nothing else to do). Wake-ups are
//!   counted exactly on every host; this second check is only there for
//!   the spin.
//!
//! This test has a file of its own so that its process runs nothing else
//! while it counts (the test harness runs a file's tests side by side, as
//! threads of one process).

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use gaio::{Op, Submit, Watcher};

/// Longest any step may take.
const LIMIT: Duration = Duration::from_secs(20);

/// How long the watched wait lasts.
const QUIET: Duration = Duration::from_millis(1_500);

/// Most times the process may block during the quiet wait.
const MOST_WAKE_UPS: i64 = 12;

/// What this process has used so far: CPU time (every thread, user and
/// system) and the times its threads blocked.
fn usage() -> (Duration, i64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64)
    };
    (
        micros(usage.user_time()) + micros(usage.system_time()),
        usage.voluntary_context_switches(),
    )
}

#[test]
fn an_idle_watcher_sleeps_through_a_quiet_wait() {
    const CONNS: usize = 1_000;
    let fds = util::FdCheck::new();
    util::raise_nofile(4 * CONNS as u64 + 256);
    for mode in util::MODES {
        let mut w: Watcher<u64, Vec<u8>> = util::watcher(mode);
        let pairs = util::tcp_pairs(CONNS);
        let mut peers = Vec::with_capacity(CONNS);
        for (i, (client, server)) in pairs.into_iter().enumerate() {
            let conn = w.watch(server).expect("watch");
            util::ok(w.read_swap(conn, i as u64));
            peers.push(client);
        }
        // A first wait settles whatever setting up left to do; the second,
        // watched, is a watcher with nothing to do but wait.
        util::expect_quiet(&mut w, Duration::from_millis(200));
        let ((cpu, blocked), started) = (usage(), Instant::now());
        util::expect_quiet(&mut w, QUIET);
        let ((cpu_after, blocked_after), took) = (usage(), started.elapsed());
        let (used, wake_ups) = (cpu_after - cpu, blocked_after - blocked);
        let backend = w.backend();
        assert!(
            wake_ups <= MOST_WAKE_UPS,
            "{mode:?} on {backend:?}: an idle watcher blocked {wake_ups} times in {took:?} \
             (at most {MOST_WAKE_UPS}): it wakes to look around"
        );
        assert!(
            used < took / 10,
            "{mode:?} on {backend:?}: an idle watcher used {used:?} of CPU in {took:?} \
             while blocking only {wake_ups} times: it spins"
        );
        // Still serving: one byte wakes its read.
        (&peers[CONNS / 2]).write_all(b"x").expect("peer write");
        let c = util::one(&mut w, LIMIT);
        assert_eq!((c.op, c.context, c.bytes), (Op::Read, (CONNS / 2) as u64, 1));
        assert!(c.error.is_none(), "{:?}", c.error);
        drop((w, peers));
    }
    fds.check();
}
