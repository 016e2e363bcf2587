//! The fuzz target's checks over fixed inputs, without libFuzzer: a few
//! hand-written op sequences plus a few hundred pseudo-random ones, so
//! `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`
//! exercises the model on stable Rust.

use gaio_fuzz::{run_each, Checks};

/// SplitMix64, for reproducible inputs.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hand-written sequences: two set-up bytes (swap size, events per
/// wait), then each op byte followed by its arguments (see
/// `Harness::step`).
const HAND: &[&[u8]] = &[
    &[],
    // watch; read 8 bytes; the peer sends 5 with an event; wait.
    &[0, 0, 0, 2, 0, 0, 7, 0, 9, 0, 4, 1, 16],
    // watch; no room; write 9 bytes; wait; room with an event; wait.
    &[0, 0, 0, 12, 0, 0, 0, 2, 0, 3, 8, 0, 16, 12, 0, 3, 1, 16],
    // watch; read_full 16; the peer sends 3, then hangs up.
    &[0, 0, 0, 2, 0, 2, 15, 0, 9, 0, 2, 1, 14, 0, 6, 16, 16],
    // two watches through the submitter; free the first through it; a
    // write through the stale handle.
    &[0, 0, 1, 1, 16, 8, 0, 1, 2, 0, 3, 4, 0, 16, 16],
    // watch; a read with a past deadline, one with a far one; close.
    &[0, 0, 0, 2, 0, 0, 3, 5, 2, 0, 0, 3, 7, 22, 0, 16, 16],
    // watch; ENOBUFS scripted for the next read; read; the peer sends.
    &[0, 0, 0, 10, 0, 2, 0, 2, 0, 1, 0, 0, 9, 0, 9, 1, 16, 16, 16],
    // Op bytes from 240 on (`Harness::step_more`): a stream socket; write
    // 9 bytes; shutdown; wait; a write after it (EPIPE); wait.
    &[0, 0, 240, 3, 0, 3, 8, 0, 242, 0, 16, 3, 0, 3, 4, 0, 16],
    // Two notifications (watcher, submitter); a sleep already due, one an
    // hour off (submitter); cancel the second; wait.
    &[0, 0, 244, 245, 246, 0, 247, 5, 248, 1, 16, 16],
    // watch a pipe; the peer sends 6 bytes; read 4; detach; wait (the
    // other 2 stay in the socket handed back).
    &[0, 0, 0, 9, 0, 5, 0, 2, 0, 0, 3, 0, 250, 0, 16, 16],
    // Found by libFuzzer: watch; the peer sends 53 bytes (no event); a
    // read_full of 59 takes the 53 and waits; detach. The read completes
    // after the detach with ConnClosed and the 53 bytes: the oracle must
    // count them before calling any byte lost.
    &[250, 250, 0, 33, 52, 52, 52, 52, 250, 250, 250, 52, 250],
];

#[test]
fn hand_written_and_pseudo_random_inputs_hold_every_invariant() {
    // One test function, so nothing else in this process opens
    // descriptors meanwhile and the descriptor check is exact.
    // Per engine: the readiness poller, then the completion ring.
    let mut totals = [gaio_fuzz::Summary::default(); 2];
    let mut add = |each: [gaio_fuzz::Summary; 2]| {
        for (total, s) in totals.iter_mut().zip(&each) {
            total.add(s);
        }
    };
    for (i, input) in HAND.iter().enumerate() {
        eprintln!("hand-written input {i}");
        add(run_each(input, Checks::ALL));
    }
    let mut state = 0x6a10_f022;
    for i in 0..400 {
        let len = (next(&mut state) % 300) as usize;
        let input: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
        match std::panic::catch_unwind(|| run_each(&input, Checks::ALL)) {
            Ok(each) => add(each),
            Err(_) => panic!("pseudo-random input {i} broke an invariant: {input:?}"),
        }
    }
    eprintln!("{totals:#?}");
    // On each engine the inputs reach every kind of ending, move bytes
    // both ways, and reach every newer operation's completion.
    for (engine, t) in ["readiness", "ring"].into_iter().zip(totals) {
        reaches_everything(engine, t);
    }
}

fn reaches_everything(engine: &str, t: gaio_fuzz::Summary) {
    for (what, n) in [
        ("successes", t.ok),
        ("Eof", t.eof),
        ("Deadline", t.deadline),
        ("ConnClosed", t.conn_closed),
        ("WatcherClosed", t.watcher_closed),
        ("OS errors", t.io_error),
        ("refusals", t.refused),
        ("bytes read", t.read_bytes),
        ("bytes written", t.write_bytes),
        ("liveness checks", t.settles),
        ("successful shutdowns", t.shutdowns),
        ("writes after a shutdown", t.writes_after_shutdown),
        ("detaches", t.detaches),
        ("requests after a detach", t.after_detach),
        ("notifications", t.notifies),
        ("fired sleeps", t.sleeps_fired),
        ("cancelled sleeps", t.sleeps_cancelled),
    ] {
        assert!(n > 0, "no input exercised {what} on the {engine} engine: {t:?}");
    }
}
