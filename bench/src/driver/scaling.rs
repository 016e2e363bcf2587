//! The scaling scenario: the ping-pong and accept-rate loads against the
//! gaio-cores server (`gaio::CoresBuilder`) on 1, 2, ... N threads, N the
//! CPUs this process may use.
//!
//! The loads are the existing generators, the same at every thread count:
//! the ping-pong load of the ping-pong scenario ([`Clients`], 64
//! connections per load thread) and the accept-rate load ([`Churn`], 16
//! connections in flight per worker). One load thread per two CPUs (at
//! least one; at least [`ACCEPT_WORKERS`] accept workers), so on the
//! two-core machine the harness was tuned on both loads are exactly those
//! of their own scenarios, and on a larger one the load grows with the
//! machine rather than with the thread count under test.
//!
//! Where the load runs: the server's thread i is pinned to the i-th CPU of
//! the affinity mask, and while it runs the load generator's threads are
//! kept on the CPUs after the first N ([`LoadPlacement`]), when there are
//! any. Left to the scheduler, the load thread of the ping-pong load was
//! woken onto the pinned server's CPU about half of the time (its wake-up
//! comes from the server's send there), with the other CPU idle: measured
//! at one thread on the two-core machine, 60k round trips/s when it did
//! and 128k when it did not, so one figure had two values. With N equal
//! to the CPUs there is no CPU to spare, and the load shares them all.
//!
//! Each figure is the median over the repetitions; within a repetition
//! the thread counts take turns (round-robin), one fresh server process
//! each, so a slow drift of a shared machine hits every thread count
//! alike. Server CPU is the schedstat sum over the server's threads (no
//! thread of gaio-cores exits during a measurement), for both loads.
//!
//! [`Clients`]: super::load::Clients
//! [`Churn`]: super::accept::Churn

use std::io;
use std::path::Path;

use gaio::Spread;
#[cfg(any(target_os = "linux", target_os = "android"))]
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// A thread's CPU mask, where threads have one (Linux); elsewhere the
/// load runs anywhere and there is nothing to put back.
#[cfg(any(target_os = "linux", target_os = "android"))]
type CpuMask = CpuSet;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
type CpuMask = ();

use super::error::BenchError;
use super::scenarios::{accept_rate_on, ping_pong_on, Case, Metrics};
use super::server_proc::ServerProc;
use super::{ACCEPT_IN_FLIGHT, ACCEPT_WORKERS};

/// Ping-pong connections per load thread: the ping-pong scenario's
/// middle point.
pub const PING_CONNS_PER_THREAD: usize = 64;

/// Every thread count up to this one is measured in the full plan; above
/// it, a ladder of steps of about 1.5× ([`thread_counts`]).
pub const EVERY_COUNT_UP_TO: usize = 16;

/// How the server of the scaling scenario is set up, and where the load
/// runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setup {
    /// How connections spread over the server's threads.
    pub spread: Spread,
    /// Whether the server pins its threads (`--no-pin`: no).
    pub pin: bool,
    /// Whether the server's threads run under the batch scheduling
    /// policy, `CoresBuilder`'s default (`--no-batch`: no).
    pub batch: bool,
    /// Whether the load is kept off the CPUs the server's threads are
    /// pinned to, where CPUs are left (`LoadPlacement`;
    /// `--load-anywhere`: no).
    pub place_load: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            spread: Spread::LeastLoaded,
            pin: true,
            batch: true,
            place_load: true,
        }
    }
}

/// The load of a scaling case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleLoad {
    /// The ping-pong load: `conns` connections, 64-byte round trips, for
    /// `secs`, driven by `load_threads` generators.
    PingPong {
        /// Load threads, each with its share of the connections.
        load_threads: usize,
        /// Connections in all.
        conns: usize,
        /// Duration of the run.
        secs: f64,
    },
    /// The accept-rate load: a new connection per 64-byte echo.
    Accept {
        /// Load worker threads.
        workers: usize,
        /// Connections each worker keeps in flight.
        in_flight: usize,
        /// Measured window.
        secs: f64,
        /// Load before the window opens.
        warmup_ms: u64,
    },
}

impl ScaleLoad {
    /// The load's name: the scenario it comes from.
    pub fn name(&self) -> &'static str {
        match self {
            ScaleLoad::PingPong { .. } => "ping-pong",
            ScaleLoad::Accept { .. } => "accept-rate",
        }
    }

    /// `64 conns` or `32 in flight`.
    pub fn label(&self) -> String {
        match *self {
            ScaleLoad::PingPong { conns, .. } => format!("{conns} conns"),
            ScaleLoad::Accept {
                workers, in_flight, ..
            } => format!("{} in flight", workers * in_flight),
        }
    }

    /// Whether `other` is the same load (at another thread count).
    pub fn same_kind(&self, other: &ScaleLoad) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// What the load counts: `round trip` or `connection`.
    pub fn unit(&self) -> &'static str {
        match self {
            ScaleLoad::PingPong { .. } => "round trip",
            ScaleLoad::Accept { .. } => "connection",
        }
    }

    /// The keys of its rate and of its server CPU per request (µs).
    pub fn keys(&self) -> (&'static str, &'static str) {
        match self {
            ScaleLoad::PingPong { .. } => ("rps", "cpu_us_per_rt"),
            ScaleLoad::Accept { .. } => ("conns_per_s", "cpu_us_per_conn_sched"),
        }
    }
}

/// CPUs this process may use: its affinity mask (and any cgroup CPU
/// quota), as `std::thread::available_parallelism` reads them.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread counts measured on `cpus` CPUs. Full plan: every count up
/// to [`EVERY_COUNT_UP_TO`], then about 1.5× apart (24, 32, 48, 64, ...)
/// and `cpus` itself, so a 64-CPU machine takes 20 counts, not 64. Quick
/// plan: 1, 2, 4, 8, ... and `cpus`.
pub fn thread_counts(cpus: usize, quick: bool) -> Vec<usize> {
    let cpus = cpus.max(1);
    let mut counts: Vec<usize> = if quick {
        std::iter::successors(Some(1usize), |&n| n.checked_mul(2))
            .take_while(|&n| n <= cpus)
            .collect()
    } else {
        let mut v: Vec<usize> = (1..=cpus.min(EVERY_COUNT_UP_TO)).collect();
        let mut n = EVERY_COUNT_UP_TO;
        loop {
            // 16, 24, 32, 48, 64, 96, ...: alternately ×1.5 and ×4/3.
            n = if n.is_power_of_two() { n + n / 2 } else { n / 3 * 4 };
            if n > cpus {
                break;
            }
            v.push(n);
        }
        v
    };
    if counts.last() != Some(&cpus) {
        counts.push(cpus);
    }
    counts
}

/// Load threads for `cpus` CPUs: one per two CPUs, at least one.
pub fn load_threads(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

/// The scaling cases: the ping-pong load at every count of `threads`,
/// then the accept-rate load at every count (each load one round-robin
/// group, [`Case::interleaves_with`]).
pub fn cases(threads: &[usize], setup: Setup, cpus: usize, quick: bool) -> Vec<Case> {
    let (ping_secs, accept_secs, warmup_ms) = if quick { (1.0, 2.0, 500) } else { (5.0, 5.0, 1_000) };
    let lt = load_threads(cpus);
    let loads = [
        ScaleLoad::PingPong {
            load_threads: lt,
            conns: PING_CONNS_PER_THREAD * lt,
            secs: ping_secs,
        },
        ScaleLoad::Accept {
            workers: lt.max(ACCEPT_WORKERS),
            in_flight: ACCEPT_IN_FLIGHT,
            secs: accept_secs,
            warmup_ms,
        },
    ];
    loads
        .into_iter()
        .flat_map(|load| {
            threads
                .iter()
                .map(move |&threads| Case::Scaling { threads, setup, load })
        })
        .collect()
}

/// One measurement: a fresh gaio-cores server on `threads` threads set
/// up as `setup` says, under `load`. Adds `cpus_busy` (server CPU seconds per
/// second) and `threads` to the load's own figures.
pub fn measure(exe: &Path, threads: usize, setup: Setup, load: ScaleLoad) -> Result<Metrics, BenchError> {
    let server = ServerProc::start_cores(exe, threads, setup)?;
    // After the server started, which must inherit the whole mask.
    let placement = if setup.pin && setup.place_load {
        LoadPlacement::off_first(threads)?
    } else {
        LoadPlacement::anywhere()
    };
    let mut m = match load {
        ScaleLoad::PingPong {
            load_threads,
            conns,
            secs,
        } => ping_pong_on(server, conns, load_threads, secs)?,
        ScaleLoad::Accept {
            workers,
            in_flight,
            secs,
            warmup_ms,
        } => accept_rate_on(server, workers, in_flight, secs, warmup_ms)?,
    };
    let get = |key: &str| m.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let (rate, cpu_per) = load.keys();
    if let (Some(rate), Some(cpu_per)) = (get(rate), get(cpu_per)) {
        // CPU per request × requests per second = CPU seconds per second.
        m.push(("cpus_busy", rate * cpu_per / 1e6));
    }
    m.push(("threads", threads as f64));
    m.push(("load_cpus", placement.cpus as f64));
    drop(placement);
    Ok(m)
}

/// Keeps the calling thread, and the threads it starts meanwhile, off the
/// first CPUs of its affinity mask while it lives; puts the mask back on
/// drop.
#[derive(Debug)]
struct LoadPlacement {
    /// The mask to put back, if it was changed.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    previous: Option<CpuMask>,
    /// CPUs the load is confined to; 0 when it may run anywhere.
    cpus: usize,
}

impl LoadPlacement {
    /// Leaves the mask as it is.
    fn anywhere() -> LoadPlacement {
        LoadPlacement {
            previous: None,
            cpus: 0,
        }
    }

    /// Moves the calling thread off the first `n` CPUs of its mask (the
    /// ones gaio-cores pins its `n` threads to), unless no CPU would be
    /// left.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn off_first(n: usize) -> io::Result<LoadPlacement> {
        let mask = sched_getaffinity(None)?;
        let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| mask.is_set(c)).collect();
        if n >= cpus.len() {
            return Ok(LoadPlacement::anywhere());
        }
        let mut load = CpuSet::new();
        for &c in &cpus[n..] {
            load.set(c);
        }
        sched_setaffinity(None, &load)?;
        Ok(LoadPlacement {
            previous: Some(mask),
            cpus: cpus.len() - n,
        })
    }
}

impl LoadPlacement {
    /// No thread masks here: the load runs anywhere.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn off_first(_n: usize) -> io::Result<LoadPlacement> {
        Ok(LoadPlacement::anywhere())
    }
}

impl Drop for LoadPlacement {
    fn drop(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(mask) = &self.previous {
            if let Err(e) = sched_setaffinity(None, mask) {
                eprintln!("bench: cannot restore the CPU mask: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_cover_every_count_then_a_ladder() {
        assert_eq!(thread_counts(1, false), [1]);
        assert_eq!(thread_counts(2, false), [1, 2]);
        assert_eq!(thread_counts(2, true), [1, 2]);
        assert_eq!(thread_counts(6, true), [1, 2, 4, 6]);
        assert_eq!(thread_counts(16, false), (1..=16).collect::<Vec<_>>());
        let big = thread_counts(64, false);
        assert_eq!(&big[15..], [16, 24, 32, 48, 64]);
        assert_eq!(thread_counts(40, false)[16..], [24, 32, 40]);
        assert_eq!(thread_counts(0, false), [1]);
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn the_load_moves_off_the_first_cpus_and_back() {
        let before = sched_getaffinity(None).unwrap();
        let count = (0..CpuSet::MAX_CPU).filter(|&c| before.is_set(c)).count();
        {
            let p = LoadPlacement::off_first(count).unwrap();
            assert_eq!(p.cpus, 0);
            assert_eq!(sched_getaffinity(None).unwrap(), before);
        }
        if count >= 2 {
            let p = LoadPlacement::off_first(1).unwrap();
            let now = sched_getaffinity(None).unwrap();
            assert_eq!(p.cpus, count - 1);
            assert_eq!((0..CpuSet::MAX_CPU).filter(|&c| now.is_set(c)).count(), count - 1);
            let first = (0..CpuSet::MAX_CPU).find(|&c| before.is_set(c)).unwrap();
            assert!(!now.is_set(first));
            drop(p);
        }
        assert_eq!(sched_getaffinity(None).unwrap(), before);
    }

    #[test]
    fn loads_match_their_scenarios_on_two_cpus() {
        let cases = cases(&[1, 2], Setup::default(), 2, false);
        assert_eq!(cases.len(), 4);
        let Case::Scaling { load, threads, .. } = cases[1] else {
            panic!("{:?}", cases[1])
        };
        assert_eq!(threads, 2);
        assert_eq!(
            load,
            ScaleLoad::PingPong {
                load_threads: 1,
                conns: 64,
                secs: 5.0
            }
        );
        assert_eq!(cases[1].label(), "ping-pong 64 conns, 2 threads");
        let Case::Scaling { load, .. } = cases[2] else {
            panic!("{:?}", cases[2])
        };
        assert_eq!(load.label(), "32 in flight");
        assert!(cases[0].interleaves_with(&cases[1]));
        assert!(!cases[1].interleaves_with(&cases[2]));
        // A bigger machine gets more load threads, the same at every count.
        let Case::Scaling { load, .. } = super::cases(&[1], Setup::default(), 16, true)[0] else {
            unreachable!()
        };
        assert_eq!(load.label(), "512 conns");
    }
}
