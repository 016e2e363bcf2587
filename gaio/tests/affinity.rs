//! CPU affinity of the thread that runs the I/O (Linux: the only target
//! where `set_affinity` is supported; elsewhere it reports `Unsupported`).
#![cfg(target_os = "linux")]

mod util;

use gaio::{Error, Mode, Watcher};
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet, Pid};

/// The id of this process's background watcher thread.
fn watcher_tid() -> Pid {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let entry = entry.unwrap();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "gaio-watcher" {
            found.push(entry.file_name().to_str().unwrap().parse::<i32>().unwrap());
        }
    }
    assert_eq!(found.len(), 1, "expected one gaio-watcher thread");
    Pid::from_raw(found[0]).unwrap()
}

fn only(set: &CpuSet, cpu: usize) -> bool {
    set.count() == 1 && set.is_set(cpu)
}

fn allowed_cpus(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

#[test]
fn set_affinity_pins_the_io_thread_and_refuses_bad_cpus() {
    let fds = util::FdCheck::new();
    let original = sched_getaffinity(None).unwrap();
    let allowed = allowed_cpus(&original);
    // CPU 0 is the usual case; if this process may not run on it, the first
    // CPU it may run on plays that part.
    let good = if original.is_set(0) { 0 } else { allowed[0] };
    // A CPU id the process may not use (ids beyond the mask, or holes in it).
    let bad = (0..CpuSet::MAX_CPU).find(|&c| !original.is_set(c));
    for mode in util::MODES {
        let w: Watcher = util::watcher(mode);
        w.set_affinity(good)
            .unwrap_or_else(|e| panic!("{mode:?}: set_affinity({good}): {e}"));
        let pinned = if mode == Mode::Inline {
            sched_getaffinity(None).unwrap()
        } else {
            sched_getaffinity(Some(watcher_tid())).unwrap()
        };
        assert!(
            only(&pinned, good),
            "{mode:?}: not pinned to {good}: {:?}",
            allowed_cpus(&pinned)
        );

        match w.set_affinity(100_000) {
            Err(Error::InvalidCpu { cpu: 100_000 }) => {}
            other => panic!("{mode:?}: expected InvalidCpu {{ cpu: 100000 }}, got {other:?}"),
        }
        match bad {
            Some(bad) => match w.set_affinity(bad) {
                Err(Error::InvalidCpu { cpu }) => assert_eq!(cpu, bad),
                other => panic!("{mode:?}: expected InvalidCpu for {bad}, got {other:?}"),
            },
            // Every one of the CpuSet::MAX_CPU ids is allowed: there is no
            // CPU outside the mask to try.
            None => eprintln!(
                "every CPU id below {} is allowed; sub-case skipped",
                CpuSet::MAX_CPU
            ),
        }
        // A refused call changed nothing.
        let after = if mode == Mode::Inline {
            sched_getaffinity(None).unwrap()
        } else {
            sched_getaffinity(Some(watcher_tid())).unwrap()
        };
        assert!(only(&after, good), "{mode:?}: mask changed by a refused call");
        // Undo the inline pin of this thread.
        sched_setaffinity(None, &original).unwrap();
        drop(w);
    }
    fds.check();
}

#[test]
fn set_affinity_can_move_to_another_allowed_cpu() {
    let fds = util::FdCheck::new();
    let original = sched_getaffinity(None).unwrap();
    let allowed = allowed_cpus(&original);
    if allowed.len() < 2 {
        eprintln!("only one CPU available: nothing to move to; test skipped");
        return;
    }
    let (first, second) = (allowed[0], allowed[1]);
    for mode in util::MODES {
        let w: Watcher = util::watcher(mode);
        // Inline: the calling thread is the I/O thread. Background: the
        // calling thread is pinned first, which must not restrict where the
        // watcher's own thread may go.
        if mode == Mode::Inline {
            w.set_affinity(first).unwrap();
        } else {
            let mut set = CpuSet::new();
            set.set(first);
            sched_setaffinity(None, &set).unwrap();
        }
        w.set_affinity(second)
            .unwrap_or_else(|e| panic!("{mode:?}: moving to allowed cpu {second} refused: {e}"));
        let pinned = if mode == Mode::Inline {
            sched_getaffinity(None).unwrap()
        } else {
            sched_getaffinity(Some(watcher_tid())).unwrap()
        };
        assert!(only(&pinned, second), "{mode:?}: {:?}", allowed_cpus(&pinned));
        sched_setaffinity(None, &original).unwrap();
        drop(w);
    }
    fds.check();
}
