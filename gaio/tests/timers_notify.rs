//! Requests on no connection: `sleep_until` / `sleep` and `cancel_timer`
//! (timers as requests), and `notify` (a context sent to a watcher), in
//! both modes.
//!
//! * Timers fire in deadline order, equal deadlines in submission order,
//!   never before their deadline; a deadline already past completes in the
//!   next batch.
//! * `cancel_timer` completes a pending sleep once with `Cancelled` and its
//!   context; after the sleep fired, on another watcher's timer, or a
//!   second time it does nothing; it works through a `Submitter` from
//!   another thread.
//! * Sleeps pending at `close()` complete with `WatcherClosed` and their
//!   contexts; sleeps and notifications after the close are refused with
//!   the context handed back; the owning thread's submissions racing a
//!   close from elsewhere complete with `WatcherClosed` instead.
//! * An idle timeout written as a sleep beside a read: traffic cancels and
//!   re-arms it, silence fires it; one `wait_io` loop, no side loop.
//! * Notifications from 64 threads arrive exactly once each and in order
//!   per thread; a notification wakes a watcher sleeping in `wait_io`
//!   promptly.
//!
//! Every test holds the test lock through an `FdCheck` (watchers open
//! descriptors and background threads): nothing may be left open.

mod util;
// Each completion with the instant the wait that handed it out returned.
use util::wait_for_stamped as stamped;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use gaio::{Buffer, Completion, Error, Mode, Op, Submit, Watcher};

type Rng = gaio_testkit::rng::XorShift64Star;

/// Longest wait for the completions a step expects.
const LIMIT: Duration = Duration::from_secs(10);
/// How late a timer may complete on a loaded two-core machine (it may never
/// be early: that bound is exact).
const LATE: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ----- helpers ---------------------------------------------------------------

/// Everything the watcher hands out until `next_batch` says it is closed
/// (bounded by `limit`).
fn drain_closed<C, B: gaio::IoBuf>(w: &mut Watcher<C, B>, limit: Duration) -> Vec<Completion<C, B>> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    let mut batch = Vec::new();
    loop {
        assert!(
            Instant::now() < end,
            "the closed watcher kept handing out completions for {limit:?}"
        );
        let more = w.next_batch(&mut batch).expect("next_batch");
        out.append(&mut batch);
        if !more {
            return out;
        }
    }
}

/// Asserts `c` is a sleep's completion with `error` (by kind): no
/// connection, no bytes, no buffer.
fn assert_sleep<C: std::fmt::Debug, B>(c: &Completion<C, B>, what: &str) {
    assert_eq!(c.op, Op::Sleep, "{what}: context {:?}", c.context);
    assert_eq!(c.bytes, 0, "{what}");
    assert!(
        matches!(c.buffer, Buffer::None),
        "{what}: a sleep carries no buffer"
    );
    assert!(c.peer.is_none() && c.detached.is_none(), "{what}");
}

/// A fired sleep: no error, and handed out at or after its deadline (and
/// not absurdly late).
fn assert_fired<C: std::fmt::Debug, B>(c: &Completion<C, B>, at: Instant, deadline: Instant, what: &str) {
    assert_sleep(c, what);
    assert!(c.error.is_none(), "{what}: fired with {:?}", c.error);
    assert!(
        at >= deadline,
        "{what}: completed {:?} before its deadline",
        deadline - at
    );
    assert!(
        at < deadline + LATE,
        "{what}: completed {:?} after its deadline",
        at - deadline
    );
}

/// Shuffles `v` (Fisher-Yates).
fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

// ----- 1. deadline order, never early ---------------------------------------

/// 200 sleeps with deadlines within 300 ms, submitted in random order: 150
/// at random instants, 50 sharing ten deadlines five apiece. They complete
/// in deadline order, equal deadlines in submission order, each at or
/// after its deadline, each once.
fn deadline_order(mode: Mode, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut w: Watcher<usize> = util::watcher(mode);
    let base = Instant::now() + ms(30);
    let mut at = || base + Duration::from_micros(rng.below(300_000));
    let mut deadlines: Vec<Instant> = (0..150).map(|_| at()).collect();
    for _ in 0..10 {
        let shared = at();
        deadlines.extend([shared; 5]);
    }
    shuffle(&mut deadlines, &mut rng);
    // Sleep `i` is submitted i-th, with deadline `deadlines[i]`.
    for (i, &d) in deadlines.iter().enumerate() {
        w.sleep_until(d, i).expect("sleep_until");
    }
    let mut expected: Vec<usize> = (0..deadlines.len()).collect();
    expected.sort_by_key(|&i| (deadlines[i], i));

    let got = stamped(&mut w, deadlines.len(), LIMIT);
    assert_eq!(
        got.len(),
        deadlines.len(),
        "{mode:?}: more completions than sleeps"
    );
    for (c, at) in &got {
        assert_fired(
            c,
            *at,
            deadlines[c.context],
            &format!("{mode:?} sleep {}", c.context),
        );
    }
    let order: Vec<usize> = got.iter().map(|(c, _)| c.context).collect();
    if let Some(k) = order.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!(
            "{mode:?} seed {seed}: completion {k} is sleep {} (deadline +{:?}), expected sleep {} \
             (deadline +{:?})",
            order[k],
            deadlines[order[k]] - base,
            expected[k],
            deadlines[expected[k]] - base
        );
    }
    util::expect_quiet(&mut w, ms(100));
}

#[test]
fn timers_fire_in_deadline_order_and_never_early() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        for seed in [1, 2] {
            deadline_order(mode, seed);
        }
    }
    fds.check();
}

/// Equal deadlines in submission order, on their own: 100 sleeps on one
/// instant complete in the order they were submitted.
#[test]
fn equal_deadlines_complete_in_submission_order() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<usize> = util::watcher(mode);
        let deadline = Instant::now() + ms(50);
        for i in 0..100 {
            w.sleep_until(deadline, i).expect("sleep_until");
        }
        let got = stamped(&mut w, 100, LIMIT);
        for (k, (c, at)) in got.iter().enumerate() {
            assert_fired(c, *at, deadline, &format!("{mode:?} sleep {}", c.context));
            assert_eq!(c.context, k, "{mode:?}: equal deadlines out of submission order");
        }
        util::expect_quiet(&mut w, ms(50));
    }
    fds.check();
}

// ----- 2. cancel -------------------------------------------------------------

/// What a sleep of the cancel test was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sl {
    /// Short sleep `i`, which may or may not be cancelled.
    Short(usize),
    /// Long sleep `i` (30 s), always cancelled.
    Long(usize),
}

/// 600 short sleeps (300 to 700 ms) and 50 long ones (30 s); a random half
/// of the short ones and every long one are cancelled right away. Each
/// cancelled sleep completes once with `Cancelled` and its context (the
/// long ones long before their deadline), each other one fires once at or
/// after its deadline, in deadline order; nothing more comes, not even
/// after cancelling everything again.
fn cancel_half(mode: Mode, seed: u64) {
    const SHORT: usize = 600;
    const LONG: usize = 50;
    let mut rng = Rng::new(seed);
    let mut w: Watcher<Sl> = util::watcher(mode);
    let start = Instant::now();
    let deadlines: Vec<Instant> = (0..SHORT)
        .map(|_| start + ms(300) + Duration::from_micros(rng.below(400_000)))
        .collect();
    let mut timers = Vec::with_capacity(SHORT);
    for (i, &d) in deadlines.iter().enumerate() {
        timers.push(w.sleep_until(d, Sl::Short(i)).expect("sleep_until"));
    }
    let long_deadline = start + Duration::from_secs(30);
    let long: Vec<_> = (0..LONG)
        .map(|i| w.sleep_until(long_deadline, Sl::Long(i)).expect("sleep_until"))
        .collect();
    // cancelled[i]: when short sleep i's cancel was submitted, if it was.
    let mut cancelled: Vec<Option<Instant>> = vec![None; SHORT];
    for (i, &t) in timers.iter().enumerate() {
        if rng.chance(1, 2) {
            w.cancel_timer(t).expect("cancel_timer");
            cancelled[i] = Some(Instant::now());
        }
    }
    for &t in &long {
        w.cancel_timer(t).expect("cancel_timer");
    }

    let got = stamped(&mut w, SHORT + LONG, LIMIT);
    let mut seen: HashMap<Sl, usize> = HashMap::new();
    let mut last_fired: Option<(Instant, usize)> = None;
    // Cancels that raced their own deadline (background mode only).
    let mut raced = 0;
    for (c, at) in &got {
        *seen.entry(c.context).or_default() += 1;
        let what = format!("{mode:?} {:?}", c.context);
        assert_sleep(c, &what);
        match c.context {
            Sl::Long(_) => {
                assert!(matches!(c.error, Some(Error::Cancelled)), "{what}: {:?}", c.error);
                assert!(*at < long_deadline, "{what}: cancelled only at its deadline");
            }
            Sl::Short(i) => {
                let mut fired = || {
                    assert_fired(c, *at, deadlines[i], &what);
                    let key = (deadlines[i], i);
                    if let Some(last) = last_fired {
                        assert!(last < key, "{what}: fired out of deadline order");
                    }
                    last_fired = Some(key);
                };
                match (cancelled[i], &c.error) {
                    (Some(_), Some(Error::Cancelled)) => {}
                    (None, _) => fired(),
                    // A cancel submitted well before the deadline must win:
                    // always from the owning thread in inline mode (the
                    // cancel is applied at once), and in background mode
                    // when the I/O thread had 100 ms to take it in first.
                    (Some(when), None) if mode == Mode::Background && when + ms(100) > deadlines[i] => {
                        raced += 1;
                        fired();
                    }
                    (Some(when), e) => panic!(
                        "{what}: cancelled {:?} before its deadline, completed with {e:?}",
                        deadlines[i].saturating_duration_since(when)
                    ),
                }
            }
        }
    }
    assert_eq!(seen.len(), SHORT + LONG, "{mode:?}: some sleep completed twice");
    assert!(seen.values().all(|&n| n == 1));
    if raced > 0 {
        eprintln!("{mode:?}: {raced} cancels raced their deadline on a slow machine");
    }
    // Cancel after the end (fired or cancelled): nothing happens.
    for &t in timers.iter().chain(&long) {
        w.cancel_timer(t).expect("cancel_timer");
    }
    util::expect_quiet(&mut w, ms(150));
}

#[test]
fn cancelling_half_of_many_sleeps_completes_each_once() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        cancel_half(mode, 7);
    }
    fds.check();
}

/// A cancel after the sleep fired does nothing (no second completion); a
/// second cancel of a pending sleep completes it only once. In background
/// mode a sleep that fired but is not handed out yet (it waits in the
/// batch for `wait_io`) is not cancelled either; in inline mode a sleep
/// whose deadline passed but that nobody waited for has not fired, so the
/// cancel takes it.
#[test]
fn cancel_after_firing_or_twice_does_nothing() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32> = util::watcher(mode);
        // Fired and handed out, then cancelled.
        let deadline = Instant::now() + ms(20);
        let t = w.sleep_until(deadline, 1).unwrap();
        let (c, at) = stamped(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, 1);
        assert_fired(&c, at, deadline, &format!("{mode:?}"));
        w.cancel_timer(t).expect("cancel after firing");
        w.submitter()
            .cancel_timer(t)
            .expect("cancel after firing, through a submitter");
        util::expect_quiet(&mut w, ms(150));

        // Cancelled twice while pending: one completion.
        let t = w.sleep(Duration::from_secs(30), 2).unwrap();
        w.cancel_timer(t).unwrap();
        w.cancel_timer(t).unwrap();
        let c = util::one(&mut w, LIMIT);
        assert_eq!(c.context, 2);
        assert_sleep(&c, &format!("{mode:?}"));
        assert!(
            matches!(c.error, Some(Error::Cancelled)),
            "{mode:?}: {:?}",
            c.error
        );
        util::expect_quiet(&mut w, ms(150));

        // Deadline passed, nobody waiting yet, then cancelled.
        let deadline = Instant::now() + ms(10);
        let t = w.sleep_until(deadline, 3).unwrap();
        // Long enough for the background I/O thread to fire it.
        thread::sleep(ms(300));
        w.cancel_timer(t).unwrap();
        let c = util::one(&mut w, LIMIT);
        assert_eq!(c.context, 3);
        assert_sleep(&c, &format!("{mode:?}"));
        match mode {
            // The I/O thread fired it at its deadline; the batch waited.
            Mode::Background => assert!(c.error.is_none(), "fired, then cancelled: {:?}", c.error),
            // Nothing ran the engine between the deadline and the cancel.
            _ => assert!(
                matches!(c.error, Some(Error::Cancelled)),
                "{mode:?}: still pending when cancelled: {:?}",
                c.error
            ),
        }
        util::expect_quiet(&mut w, ms(150));
    }
    fds.check();
}

/// A timer handle given to another watcher names none of its sleeps: the
/// cancel does nothing there (directly or through a submitter), and the
/// sleep still fires on its own watcher.
#[test]
fn cancelling_another_watchers_timer_does_nothing() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut a: Watcher<&'static str> = util::watcher(mode);
        let mut b: Watcher<&'static str> = util::watcher(mode);
        let deadline = Instant::now() + ms(150);
        let ta = a.sleep_until(deadline, "a").unwrap();
        let tb = b.sleep_until(deadline, "b").unwrap();
        b.cancel_timer(ta).expect("cancel of a's timer on b");
        a.cancel_timer(tb).expect("cancel of b's timer on a");
        b.submitter().cancel_timer(ta).unwrap();
        a.submitter().cancel_timer(tb).unwrap();
        for (w, name) in [(&mut a, "a"), (&mut b, "b")] {
            let (c, at) = stamped(w, 1, LIMIT).pop().unwrap();
            assert_eq!(c.context, name);
            assert_fired(&c, at, deadline, &format!("{mode:?} watcher {name}"));
            util::expect_quiet(w, ms(100));
        }
    }
    fds.check();
}

/// A cancel through a `Submitter` from another thread reaches a watcher
/// sleeping in `wait_io` (until a 30 s deadline): the sleep completes with
/// `Cancelled` long before its deadline; ten times, through a clone and
/// through a shared `&Submitter`.
#[test]
fn cancel_through_a_submitter_from_another_thread() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32> = util::watcher(mode);
        let shared = Arc::new(w.submitter());
        for round in 0..10u32 {
            let deadline = Instant::now() + Duration::from_secs(30);
            let timer = w.sleep_until(deadline, round).unwrap();
            let own = w.submitter();
            let shared = Arc::clone(&shared);
            let canceller = thread::spawn(move || {
                thread::sleep(ms(20));
                if round % 2 == 0 {
                    let mut s = own;
                    s.cancel_timer(timer).unwrap();
                } else {
                    let mut s = &*shared;
                    s.cancel_timer(timer).unwrap();
                }
                Instant::now()
            });
            let (c, at) = stamped(&mut w, 1, LIMIT).pop().unwrap();
            let sent = canceller.join().unwrap();
            assert_eq!(c.context, round);
            assert_sleep(&c, &format!("{mode:?} round {round}"));
            assert!(
                matches!(c.error, Some(Error::Cancelled)),
                "{mode:?} round {round}: {:?}",
                c.error
            );
            assert!(
                at.saturating_duration_since(sent) < LATE,
                "{mode:?} round {round}: the cancel took {:?} to arrive",
                at - sent
            );
        }
        util::expect_quiet(&mut w, ms(100));
    }
    fds.check();
}

/// The owning thread cancels a sleep another thread submitted through a
/// `Submitter` (its `Timer` passed over): the sleep was accepted before the
/// cancel, so it completes at once with `Cancelled`, not at its deadline.
/// Inline mode's `cancel_timer` looked only at the engine's sleeps, not at
/// the command queue the sleep still waited in, and did nothing (found by
/// review).
#[test]
fn the_owner_cancels_a_sleep_a_submitter_queued() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32> = util::watcher(mode);
        let mut s = w.submitter();
        let deadline = Instant::now() + Duration::from_secs(3);
        let timer = thread::spawn(move || s.sleep_until(deadline, 7).unwrap())
            .join()
            .unwrap();
        let sent = Instant::now();
        w.cancel_timer(timer).unwrap();
        let (c, at) = stamped(&mut w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.context, 7);
        assert_sleep(&c, &format!("{mode:?}"));
        assert!(
            matches!(c.error, Some(Error::Cancelled)),
            "{mode:?}: a sleep pending when cancelled completed with {:?} after {:?}",
            c.error,
            at - sent
        );
        util::expect_quiet(&mut w, ms(100));
    }
    fds.check();
}

// ----- 3. past deadlines, close ----------------------------------------------

/// Deadlines already past complete in the next batch, even with a sleep of
/// a minute pending beside them; in inline mode all three come in that one
/// batch, in deadline order (the I/O thread of background mode may take
/// them in one by one). The deadlines lie after the watcher's creation:
/// see `bug_past_deadlines_before_the_watcher_was_created_lose_their_order`
/// for those before.
#[test]
fn a_past_deadline_completes_promptly() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32> = util::watcher(mode);
        let far = w.sleep(Duration::from_secs(60), 99).unwrap();
        thread::sleep(ms(150));
        let now = Instant::now();
        let start = Instant::now();
        w.sleep_until(now - ms(50), 1).unwrap();
        w.sleep(Duration::ZERO, 2).unwrap();
        w.sleep_until(now - ms(100), 0).unwrap();
        let mut batch = Vec::new();
        let n = w.wait_io_timeout(&mut batch, LIMIT).unwrap();
        assert!(n >= 1, "{mode:?}: nothing completed within {LIMIT:?}");
        if mode == Mode::Inline {
            let got: Vec<u32> = batch.iter().map(|c| c.context).collect();
            assert_eq!(got, [0, 1, 2], "{mode:?}: one batch, in deadline order");
        }
        while batch.len() < 3 {
            w.wait_io_timeout(&mut batch, LIMIT).unwrap();
            assert!(start.elapsed() < LIMIT);
        }
        let elapsed = start.elapsed();
        assert!(elapsed < ms(500), "{mode:?}: past deadlines took {elapsed:?}");
        let mut got: Vec<u32> = batch.iter().map(|c| c.context).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2], "{mode:?}");
        for c in &batch {
            assert_sleep(c, &format!("{mode:?}"));
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        }
        util::expect_quiet(&mut w, ms(50));
        w.cancel_timer(far).unwrap();
        let c = util::one(&mut w, LIMIT);
        assert_eq!(c.context, 99);
        assert!(matches!(c.error, Some(Error::Cancelled)));
    }
    fds.check();
}

/// Deadlines in the recent past keep their order, even before the
/// watcher was created: a watcher built a moment ago gets a deadline 50 ms
/// ago, then one 100 ms ago, and they complete 100 ms first. (The engine's
/// clock once started at the watcher's creation, and every deadline
/// before it counted as the same instant.)
#[test]
fn past_deadlines_from_before_the_watcher_keep_their_order() {
    let fds = util::FdCheck::new();
    let now = Instant::now();
    // Inline: both sleeps are pending when the engine first runs, so they
    // come out of the heap in one batch, whose only allowed order is the
    // deadlines'. (Background mode's I/O thread may take them in one by
    // one, which allows any order.)
    let mut w: Watcher<&'static str> = util::watcher(Mode::Inline);
    w.sleep_until(now - ms(50), "50 ms ago").unwrap();
    w.sleep_until(now - ms(100), "100 ms ago").unwrap();
    let got: Vec<&str> = util::wait_for(&mut w, 2, LIMIT)
        .iter()
        .map(|c| c.context)
        .collect();
    assert_eq!(got, ["100 ms ago", "50 ms ago"], "not in deadline order");
    drop(w);
    fds.check();
}

/// Sleeps pending when the watcher closes complete with `WatcherClosed`
/// and their contexts, each once; afterwards sleeps and notifications are
/// refused, the context handed back. Closed by the owner, and closed from
/// another thread while the owner sleeps in `next_batch`.
#[test]
fn sleeps_pending_at_close_complete_with_watcher_closed() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        for from_elsewhere in [false, true] {
            let what = format!("{mode:?}, closed from another thread: {from_elsewhere}");
            let mut w: Watcher<u32> = util::watcher(mode);
            let submitter = w.submitter();
            for i in 0..50 {
                w.sleep(Duration::from_secs(30 + u64::from(i)), i).unwrap();
            }
            // One that fires before the close: not among the closed ones.
            let deadline = Instant::now() + ms(10);
            w.sleep_until(deadline, 1000).unwrap();
            let (c, at) = stamped(&mut w, 1, LIMIT).pop().unwrap();
            assert_eq!(c.context, 1000);
            assert_fired(&c, at, deadline, &what);
            let closer = if from_elsewhere {
                let mut s = submitter.clone();
                Some(thread::spawn(move || {
                    thread::sleep(ms(30));
                    s.close();
                }))
            } else {
                w.close();
                None
            };
            let got = drain_closed(&mut w, LIMIT);
            if let Some(t) = closer {
                t.join().unwrap();
            }
            let mut contexts: Vec<u32> = got.iter().map(|c| c.context).collect();
            contexts.sort_unstable();
            assert_eq!(contexts, (0..50).collect::<Vec<_>>(), "{what}: each sleep once");
            for c in &got {
                assert_sleep(c, &what);
                assert!(
                    matches!(c.error, Some(Error::WatcherClosed)),
                    "{what}: {:?}",
                    c.error
                );
            }
            // Refused from now on, the context handed back.
            match w.sleep(ms(1), 77) {
                Err(r) => {
                    assert!(matches!(r.error, Error::WatcherClosed), "{what}: {:?}", r.error);
                    assert_eq!(r.context, 77);
                    assert!(r.buffer.is_none());
                }
                Ok(_) => panic!("{what}: a sleep after the close was accepted"),
            }
            let mut s = submitter.clone();
            match s.sleep(ms(1), 78) {
                Err(r) => assert!(matches!(r.error, Error::WatcherClosed) && r.context == 78),
                Ok(_) => panic!("{what}: a sleep through a submitter after the close was accepted"),
            }
            let mut batch = Vec::new();
            assert!(!w.next_batch(&mut batch).unwrap(), "{what}");
            assert!(batch.is_empty());
        }
    }
    fds.check();
}

// ----- 4. an idle timeout: a sleep beside a read -------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    Read,
    /// The idle timer armed `n`-th.
    Timer(u32),
}

/// A connection with a read pending and an idle timer beside it, in one
/// `wait_io` loop: every read cancels the timer and arms a new one; the
/// peer sends eight messages 20 ms apart, then falls silent; only the
/// timer armed after the last message fires, at least IDLE after that
/// message, and the loop frees the connection (the peer sees end of
/// stream). Every earlier timer completed once, with `Cancelled`.
fn idle_timeout(mode: Mode) {
    const IDLE: Duration = Duration::from_millis(400);
    const MESSAGES: usize = 8;
    const GAP: Duration = Duration::from_millis(20);
    let (mut peer, server) = util::tcp_pair();
    util::peer::timeouts(&peer);
    let mut w: Watcher<Idle> = util::watcher(mode);
    let conn = w.watch(server).unwrap();
    let sent: Vec<u8> = util::pattern(0x1D1E, 100 * MESSAGES);
    let to_send = sent.clone();
    let peer_thread = thread::spawn(move || {
        for chunk in to_send.chunks(100) {
            thread::sleep(GAP);
            peer.write_all(chunk).expect("peer write");
        }
        // The server closes the connection when it times out.
        util::peer::read_to_eof(&mut peer)
    });

    w.read_swap(conn, Idle::Read).unwrap();
    let (mut armed, mut deadline) = (0u32, Instant::now() + IDLE);
    let mut timer = w.sleep_until(deadline, Idle::Timer(armed)).unwrap();
    let mut last_traffic = Instant::now();
    let (mut received, mut cancelled, mut fired, mut read_ended) = (Vec::new(), 0u32, false, false);
    let end = Instant::now() + LIMIT;
    let mut batch = Vec::new();
    while !(fired && read_ended && cancelled == armed) {
        let now = Instant::now();
        assert!(
            now < end,
            "{mode:?}: fired {fired}, read ended {read_ended}, {cancelled} of {armed} timers cancelled"
        );
        w.wait_io_timeout(&mut batch, end - now).unwrap();
        let at = Instant::now();
        for c in batch.drain(..) {
            match (c.context, &c.error) {
                (Idle::Read, None) => {
                    assert!(!fired, "{mode:?}: data after the idle timeout");
                    received.extend_from_slice(c.data());
                    last_traffic = at;
                    // Traffic: the idle timeout starts over.
                    w.cancel_timer(timer).unwrap();
                    armed += 1;
                    deadline = at + IDLE;
                    timer = w.sleep_until(deadline, Idle::Timer(armed)).unwrap();
                    w.read_swap(conn, Idle::Read).unwrap();
                }
                (Idle::Read, Some(Error::ConnClosed)) => {
                    assert!(fired, "{mode:?}: the read ended before the timeout freed it");
                    read_ended = true;
                }
                (Idle::Read, Some(e)) => panic!("{mode:?}: read failed: {e:?}"),
                (Idle::Timer(n), Some(Error::Cancelled)) => {
                    assert!(n < armed, "{mode:?}: the live timer {n} was cancelled");
                    cancelled += 1;
                }
                (Idle::Timer(n), None) => {
                    assert_eq!(n, armed, "{mode:?}: timer {n} fired, but {armed} replaced it");
                    assert_fired(&c, at, deadline, &format!("{mode:?} idle timer {n}"));
                    assert!(at.duration_since(last_traffic) >= IDLE);
                    assert_eq!(received, sent, "{mode:?}: timed out before all traffic arrived");
                    fired = true;
                    w.free(conn).unwrap();
                }
                (Idle::Timer(n), Some(e)) => panic!("{mode:?}: timer {n}: {e:?}"),
            }
        }
    }
    assert!(armed >= 1, "{mode:?}: no read re-armed the timer");
    let rest = peer_thread.join().expect("peer thread");
    assert!(
        rest.is_empty(),
        "{mode:?}: the peer received {} bytes",
        rest.len()
    );
    util::expect_quiet(&mut w, ms(100));
}

#[test]
fn idle_timeout_is_a_sleep_beside_a_read() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        idle_timeout(mode);
    }
    fds.check();
}

// ----- 5. notify ---------------------------------------------------------------

/// A notification from the owning thread completes in the next batch with
/// its context, on no connection: `Op::Notify`, no error, no bytes, no
/// buffer; a request on that connection handle is refused with
/// `ForeignConn`, and a sleep's completion names the same none.
#[test]
fn notify_completes_in_the_next_batch_on_no_connection() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32> = util::watcher(mode);
        w.notify(5).unwrap();
        let mut batch = Vec::new();
        assert_eq!(w.wait_io_timeout(&mut batch, LIMIT).unwrap(), 1, "{mode:?}");
        let c = batch.pop().unwrap();
        assert_eq!((c.op, c.context, c.bytes), (Op::Notify, 5, 0), "{mode:?}");
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        assert!(matches!(c.buffer, Buffer::None) && c.peer.is_none() && c.detached.is_none());
        match w.read(c.conn, 6, vec![0; 16]) {
            Err(r) => {
                assert!(matches!(r.error, Error::ForeignConn), "{mode:?}: {:?}", r.error);
                assert_eq!((r.context, r.buffer.map(|b| b.len())), (6, Some(16)));
            }
            Ok(()) => panic!("{mode:?}: a read on a notification's connection was accepted"),
        }
        w.sleep(Duration::ZERO, 7).unwrap();
        let s = util::one(&mut w, LIMIT);
        assert_eq!((s.op, s.context), (Op::Sleep, 7));
        assert_eq!(
            s.conn, c.conn,
            "{mode:?}: a sleep and a notification name the same none"
        );
        util::expect_quiet(&mut w, ms(50));
    }
    fds.check();
}

/// 64 threads each send 500 notifications `(thread, seq)` through
/// submitters (clones and a shared `&Submitter`), all at once: the watcher
/// gets every one exactly once, and each thread's in the order sent.
fn notify_from_many_threads(mode: Mode) {
    const THREADS: usize = 64;
    const EACH: usize = 500;
    let mut w: Watcher<(usize, usize)> = util::watcher(mode);
    let shared = Arc::new(w.submitter());
    let barrier = Arc::new(Barrier::new(THREADS));
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let own = w.submitter();
            let shared = Arc::clone(&shared);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut own = own;
                barrier.wait();
                for seq in 0..EACH {
                    let sent = if t % 2 == 0 {
                        own.notify((t, seq))
                    } else {
                        let mut s = &*shared;
                        s.notify((t, seq))
                    };
                    if let Err(r) = sent {
                        panic!("thread {t} notification {seq} refused: {:?}", r.error);
                    }
                }
            })
        })
        .collect();
    let mut next = [0usize; THREADS];
    let mut total = 0;
    let end = Instant::now() + Duration::from_secs(20);
    let mut batch = Vec::new();
    while total < THREADS * EACH {
        let now = Instant::now();
        assert!(now < end, "{mode:?}: {total} of {} notifications", THREADS * EACH);
        w.wait_io_timeout(&mut batch, end - now).unwrap();
        for c in batch.drain(..) {
            assert_eq!(c.op, Op::Notify);
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            let (t, seq) = c.context;
            assert_eq!(
                seq, next[t],
                "{mode:?}: thread {t}: notification {seq} where {} was due",
                next[t]
            );
            next[t] += 1;
            total += 1;
        }
    }
    for s in senders {
        s.join().expect("sender thread");
    }
    assert!(next.iter().all(|&n| n == EACH));
    util::expect_quiet(&mut w, ms(100));
}

#[test]
fn notify_from_64_threads_delivers_each_once_in_order_per_thread() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        notify_from_many_threads(mode);
    }
    fds.check();
}

/// A watcher asleep in `wait_io` (with only a sleep of a minute pending)
/// wakes promptly for a notification from another thread: 20 times, each
/// notification carrying the instant it was sent.
#[test]
fn notify_wakes_a_watcher_sleeping_in_wait_io() {
    const ROUNDS: usize = 20;
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let start = Instant::now();
        let mut w: Watcher<Instant> = util::watcher(mode);
        let far = w.sleep(Duration::from_secs(60), start).unwrap();
        let mut s = w.submitter();
        let notifier = thread::spawn(move || {
            for _ in 0..ROUNDS {
                // Time for the watcher to fall asleep.
                thread::sleep(ms(20));
                s.notify(Instant::now()).unwrap();
            }
        });
        let mut worst = Duration::ZERO;
        for round in 0..ROUNDS {
            let mut batch = Vec::new();
            let n = w.wait_io_timeout(&mut batch, LIMIT).unwrap();
            let at = Instant::now();
            assert_eq!(n, 1, "{mode:?} round {round}: no wake-up within {LIMIT:?}");
            let c = batch.pop().unwrap();
            assert_eq!(c.op, Op::Notify, "{mode:?} round {round}");
            assert!(c.error.is_none());
            worst = worst.max(at.duration_since(c.context));
        }
        notifier.join().unwrap();
        eprintln!("{mode:?}: slowest wake-up by notify: {worst:?}");
        assert!(
            worst < ms(500),
            "{mode:?}: a notification took {worst:?} to wake the watcher"
        );
        w.cancel_timer(far).unwrap();
        let c = util::one(&mut w, LIMIT);
        assert_eq!((c.op, c.context), (Op::Sleep, start));
        assert!(matches!(c.error, Some(Error::Cancelled)));
    }
    fds.check();
}

/// Around a close:
/// * a notification accepted through a submitter just before a close
///   completes exactly once (with `WatcherClosed` in inline mode, where
///   nothing took it in before the close; possibly delivered in
///   background mode, where the I/O thread may have);
/// * the owning thread's notifications and sleeps after a close from
///   another thread, before `next_batch` told it, are not refused: they
///   complete with `WatcherClosed` and their contexts;
/// * once told, and through a submitter, they are refused with
///   `WatcherClosed`, the context handed back.
#[test]
fn notify_around_close() {
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<u32> = util::watcher(mode);
        let mut s = w.submitter();
        s.notify(1).unwrap();
        let mut closer = w.submitter();
        thread::spawn(move || closer.close()).join().unwrap();
        assert!(w.is_closed());
        // The owner was not told yet: accepted, completes with WatcherClosed.
        w.notify(2)
            .expect("the owner's notify after a close from elsewhere");
        w.sleep(Duration::from_secs(30), 3)
            .expect("the owner's sleep after a close from elsewhere");
        match s.notify(4) {
            Err(r) => {
                assert!(matches!(r.error, Error::WatcherClosed), "{mode:?}: {:?}", r.error);
                assert_eq!(r.context, 4);
            }
            Ok(()) => panic!("{mode:?}: a submitter's notify after close was accepted"),
        }
        let got = drain_closed(&mut w, LIMIT);
        let mut by_context: HashMap<u32, &Completion<u32, Vec<u8>>> = HashMap::new();
        for c in &got {
            assert!(
                by_context.insert(c.context, c).is_none(),
                "{mode:?}: context {} completed twice",
                c.context
            );
        }
        let mut contexts: Vec<u32> = by_context.keys().copied().collect();
        contexts.sort_unstable();
        assert_eq!(contexts, [1, 2, 3], "{mode:?}");
        assert_eq!(by_context[&1].op, Op::Notify);
        match (mode, &by_context[&1].error) {
            (_, Some(Error::WatcherClosed)) => {}
            (Mode::Background, None) => {}
            (_, e) => panic!("{mode:?}: notification accepted before the close: {e:?}"),
        }
        assert_eq!(by_context[&2].op, Op::Notify);
        assert!(matches!(by_context[&2].error, Some(Error::WatcherClosed)));
        assert_eq!(by_context[&3].op, Op::Sleep);
        assert!(matches!(by_context[&3].error, Some(Error::WatcherClosed)));

        // Told now (next_batch returned false): refused.
        match w.notify(5) {
            Err(r) => {
                assert!(matches!(r.error, Error::WatcherClosed), "{mode:?}: {:?}", r.error);
                assert_eq!((r.context, r.buffer.is_none()), (5, true));
            }
            Ok(()) => panic!("{mode:?}: the owner's notify after next_batch ended was accepted"),
        }
        match w.sleep(ms(1), 6) {
            Err(r) => assert!(matches!(r.error, Error::WatcherClosed) && r.context == 6),
            Ok(_) => panic!("{mode:?}: the owner's sleep after next_batch ended was accepted"),
        }
        let mut batch = Vec::new();
        assert!(!w.next_batch(&mut batch).unwrap());
        assert!(batch.is_empty(), "{mode:?}: refused requests completed too");
    }
    fds.check();
}
