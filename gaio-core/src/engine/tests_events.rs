//! Engine unit tests of the requests on no connection (notifications,
//! sleeps) and of the group's choice of watcher, against the fake poller.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spread::Group;
use super::tests::{collect, setup, W};
use crate::fake::dummy_fd;
use crate::{Error, Op, Request, Submit};

/// A watcher on the fake poller (its handle is not needed here).
fn watcher() -> W {
    setup::<Vec<u8>>().0
}

#[test]
fn sleeps_and_request_deadlines_share_one_clock_and_fire_in_deadline_order() {
    let mut w = watcher();
    let conn = w.watch(dummy_fd()).expect("watch");
    let t0 = Instant::now();
    w.sleep_until(t0 + Duration::from_millis(60), 3).unwrap();
    w.read_timeout(conn, 2, vec![0; 8], t0 + Duration::from_millis(40))
        .unwrap();
    w.sleep_until(t0 + Duration::from_millis(20), 1).unwrap();
    let done = collect(&mut w, 3, Duration::from_secs(2));
    let seen: Vec<_> = done.iter().map(|c| (c.context, c.op)).collect();
    assert_eq!(seen, [(1, Op::Sleep), (2, Op::Read), (3, Op::Sleep)]);
    assert!(done[0].error.is_none() && done[2].error.is_none());
    assert!(matches!(done[1].error, Some(Error::Deadline)));
    assert!(t0.elapsed() >= Duration::from_millis(60), "fired early");
}

/// Found by the fuzz target (`fuzz/`, two sleeps built first and
/// submitted in the other order): `Submit::sleep_until` promises equal
/// deadlines in submission order, and requests may be built ahead of
/// their submission (`Submit::submit`).
#[test]
fn equal_deadlines_fire_in_submission_order_even_when_built_in_the_other() {
    let mut w = watcher();
    let at = Instant::now() + Duration::from_millis(5);
    let built_first = Request::sleep_until(at, 2);
    let built_second = Request::sleep_until(at, 1);
    w.submit(built_second).unwrap();
    w.submit(built_first).unwrap();
    let done = collect(&mut w, 2, Duration::from_secs(2));
    let seen: Vec<(u32, Op)> = done.iter().map(|c| (c.context, c.op)).collect();
    assert_eq!(seen, [(1, Op::Sleep), (2, Op::Sleep)], "submitted 1, then 2");
}

/// A sleep submitted through a `Submitter` waits in the command queue
/// until the engine next turns; a cancel from the owning thread must
/// still find it ("if it is still pending, it completes in the next batch
/// with `Error::Cancelled`"), as it does in background mode.
#[test]
fn a_cancel_from_the_watcher_reaches_a_sleep_a_submitter_queued() {
    let mut w = watcher();
    let mut s = w.submitter();
    let timer = s
        .sleep_until(Instant::now() + Duration::from_secs(3600), 1)
        .unwrap();
    w.cancel_timer(timer).unwrap();
    let done = collect(&mut w, 1, Duration::from_millis(100));
    assert_eq!(done.len(), 1, "the cancelled sleep did not complete");
    assert_eq!((done[0].context, done[0].op), (1, Op::Sleep));
    assert!(
        matches!(done[0].error, Some(Error::Cancelled)),
        "{:?}",
        done[0].error
    );
}

#[test]
fn thousands_of_cancels_complete_each_sleep_once_and_the_live_one_still_fires() {
    let mut w = watcher();
    let far = Instant::now() + Duration::from_secs(3600);
    let timers: Vec<_> = (0..3000).map(|i| w.sleep_until(far, i).unwrap()).collect();
    let soon = Instant::now() + Duration::from_millis(10);
    w.sleep_until(soon, 9999).unwrap();
    for &t in &timers {
        w.cancel_timer(t).unwrap();
    }
    let done = collect(&mut w, 3001, Duration::from_secs(2));
    assert_eq!(done.len(), 3001);
    // Every cancelled one once, with its context, then the live one.
    let cancelled: Vec<u32> = done
        .iter()
        .filter(|c| matches!(c.error, Some(Error::Cancelled)))
        .map(|c| c.context)
        .collect();
    assert_eq!(cancelled, (0..3000).collect::<Vec<_>>());
    assert_eq!((done[3000].context, done[3000].op), (9999, Op::Sleep));
    assert!(done[3000].error.is_none());
    // A second cancel finds nothing.
    w.cancel_timer(timers[0]).unwrap();
    let mut more = Vec::new();
    w.wait_io_timeout(&mut more, Duration::from_millis(20)).unwrap();
    assert!(more.is_empty(), "a cancelled timer completed twice");
}

#[test]
fn notifications_complete_in_submission_order_on_no_connection() {
    let mut w = watcher();
    let mut other = w.submitter();
    for i in 0..5 {
        w.notify(i).unwrap();
        other.notify(100 + i).unwrap();
    }
    let done = collect(&mut w, 10, Duration::from_secs(1));
    let own: Vec<u32> = done.iter().map(|c| c.context).filter(|&c| c < 100).collect();
    let theirs: Vec<u32> = done.iter().map(|c| c.context).filter(|&c| c >= 100).collect();
    assert_eq!(own, [0, 1, 2, 3, 4]);
    assert_eq!(theirs, [100, 101, 102, 103, 104]);
    assert!(done.iter().all(|c| c.op == Op::Notify && c.error.is_none()));
    // A request on the connection a notification names is refused.
    let refused = w.read(done[0].conn, 0, vec![0; 4]).unwrap_err();
    assert!(matches!(refused.error, Error::ForeignConn));
}

#[test]
fn least_loaded_picks_the_emptiest_watcher_and_breaks_ties_in_turn() {
    let watchers: Vec<W> = (0..3).map(|_| watcher()).collect();
    let members = watchers.iter().map(|w| Arc::clone(w.shared())).collect();
    let group = Group::new(members, true);
    let load = |i: usize, conns: usize, adopting: usize| {
        watchers[i].shared().conns.store(conns, Ordering::Relaxed);
        watchers[i].shared().adopting.store(adopting, Ordering::Relaxed);
    };
    load(0, 5, 0);
    load(1, 2, 2); // 4, counting those on their way
    load(2, 3, 0);
    assert_eq!(group.pick(), 2);
    load(2, 9, 0);
    assert_eq!(group.pick(), 1);
    // Equal loads: each in turn.
    for i in 0..3 {
        load(i, 1, 0);
    }
    let picks: Vec<usize> = (0..6).map(|_| group.pick()).collect();
    let mut counts = [0; 3];
    picks.iter().for_each(|&p| counts[p] += 1);
    assert_eq!(counts, [2, 2, 2], "ties not spread: {picks:?}");
}

#[test]
fn round_robin_ignores_load() {
    let watchers: Vec<W> = (0..3).map(|_| watcher()).collect();
    let members = watchers.iter().map(|w| Arc::clone(w.shared())).collect();
    let group = Group::new(members, false);
    watchers[1].shared().conns.store(1000, Ordering::Relaxed);
    let picks: Vec<usize> = (0..6).map(|_| group.pick()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
}
