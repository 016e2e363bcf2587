//! The scenarios: what each measurement does and which figures it yields.
//!
//! Every measurement starts a fresh server process, so no run inherits
//! another's connections, memory or warm caches.

use std::path::Path;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::accept::{Churn, Failure};
use super::error::BenchError;
use super::load::{Clients, Outcome, Stop};
use super::scaling::{ScaleLoad, Setup};
use super::server_proc::{ServerProc, Variant};
use super::stats::percentile;
use super::stream;
use super::syscalls::SyscallCount;
use crate::procfs::{self, CpuTime};
use crate::servers::Impl;

/// Named figures of one measurement, in display order.
pub type Metrics = Vec<(&'static str, f64)>;

/// One measured case of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Case {
    /// One connection streams `volume` bytes in writes of `size` bytes.
    Throughput {
        /// Bytes per write.
        size: usize,
        /// Bytes sent (and echoed) in all.
        volume: u64,
    },
    /// `conns` connections each echo one 1 KiB message at once.
    Concurrent {
        /// Connections.
        conns: usize,
    },
    /// `conns` connections do 64-byte request/response for `secs` seconds.
    PingPong {
        /// Connections.
        conns: usize,
        /// Duration of the run.
        secs: f64,
    },
    /// `conns` idle connections, each with a buffer-less read pending.
    Idle {
        /// Connections.
        conns: usize,
        /// Time left for the server to settle before RSS is read.
        settle_ms: u64,
        /// How long the server's CPU time is watched with the first 1,000
        /// connections open and silent.
        cpu_secs: f64,
    },
    /// User-space instructions and system calls per 64-byte round trip,
    /// counted under callgrind.
    Cost {
        /// Connections.
        conns: usize,
        /// Round trips counted per connection.
        rounds: u64,
    },
    /// New connections per second, each doing one 64-byte echo and
    /// closing (client first), and the server's CPU per connection.
    AcceptRate {
        /// Load worker threads.
        workers: usize,
        /// Connections each worker keeps in flight.
        in_flight: usize,
        /// Measured window.
        secs: f64,
        /// Load before the window opens.
        warmup_ms: u64,
    },
    /// Allocation calls per request in a steady echo loop.
    Allocs {
        /// Connections.
        conns: usize,
        /// Round trips before counting starts.
        warmup: u64,
        /// Round trips counted.
        requests: u64,
    },
    /// `clients` UDP sockets each echo 64-byte datagrams, one in flight,
    /// for `secs` seconds (the `udp` module).
    Udp {
        /// Client sockets.
        clients: usize,
        /// Duration of the run.
        secs: f64,
    },
    /// The ping-pong or the accept-rate load against the gaio-cores
    /// server on `threads` threads (the `scaling` module).
    Scaling {
        /// Threads (watchers) of the server.
        threads: usize,
        /// How the server is set up and where the load runs.
        setup: Setup,
        /// The load.
        load: ScaleLoad,
    },
}

/// Message size of the concurrent scenario.
pub const CONCURRENT_MSG: usize = 1024;
/// Message size of the ping-pong and allocation scenarios.
pub const PING_MSG: usize = 64;

impl Case {
    /// The scenario's short name.
    pub fn scenario(&self) -> &'static str {
        match self {
            Case::Throughput { .. } => "throughput",
            Case::Concurrent { .. } => "concurrent",
            Case::PingPong { .. } => "ping-pong",
            Case::Idle { .. } => "idle",
            Case::Allocs { .. } => "allocs",
            Case::Cost { .. } => "cost",
            Case::AcceptRate { .. } => "accept-rate",
            Case::Scaling { .. } => "scaling",
            Case::Udp { .. } => "udp",
        }
    }

    /// A label for progress lines and tables, such as `64 KiB` or `1024 conns`.
    pub fn label(&self) -> String {
        match *self {
            Case::Throughput { size, .. } => size_label(size),
            Case::AcceptRate {
                workers, in_flight, ..
            } => format!("{} in flight", workers * in_flight),
            Case::Scaling { threads, load, .. } => format!(
                "{} {}, {threads} thread{}",
                load.name(),
                load.label(),
                if threads == 1 { "" } else { "s" }
            ),
            Case::Udp { clients: 1, .. } => "1 client".into(),
            Case::Udp { clients, .. } => format!("{clients} clients"),
            Case::Concurrent { conns }
            | Case::PingPong { conns, .. }
            | Case::Idle { conns, .. }
            | Case::Cost { conns, .. }
            | Case::Allocs { conns, .. } => match conns {
                1 => "1 conn".into(),
                n => format!("{n} conns"),
            },
        }
    }
}

impl Case {
    /// Repetitions of this case: counted costs do not vary, so one.
    pub fn reps(&self, default: usize) -> usize {
        match self {
            Case::Cost { .. } => 1,
            _ => default,
        }
    }

    /// Whether `next` takes turns with this case within each repetition
    /// (the driver runs consecutive cases that do as one round-robin
    /// group): the scaling cases of one load, whose thread counts play
    /// the part the servers play elsewhere. Every other case is a group of
    /// its own, its servers taking turns.
    pub fn interleaves_with(&self, next: &Case) -> bool {
        match (self, next) {
            (
                Case::Scaling { setup, load, .. },
                Case::Scaling {
                    setup: s2, load: l2, ..
                },
            ) => setup == s2 && load.same_kind(l2),
            _ => false,
        }
    }
}

/// `128 B`, `4 KiB`, ...
pub fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Runs one measurement of `case` against a fresh `imp` server started
/// from `exe`.
pub fn measure(exe: &Path, case: &Case, imp: Impl) -> Result<Metrics, BenchError> {
    match *case {
        Case::Throughput { size, volume } => throughput(exe, imp, size, volume),
        Case::Concurrent { conns } => concurrent(exe, imp, conns),
        Case::PingPong { conns, secs } => ping_pong(exe, imp, conns, secs),
        Case::Idle {
            conns,
            settle_ms,
            cpu_secs,
        } => idle(exe, imp, conns, settle_ms, cpu_secs),
        Case::Allocs {
            conns,
            warmup,
            requests,
        } => allocs(exe, imp, conns, warmup, requests),
        Case::Cost { conns, rounds } => super::cost::measure(exe, imp, conns, rounds),
        Case::AcceptRate {
            workers,
            in_flight,
            secs,
            warmup_ms,
        } => accept_rate(exe, imp, workers, in_flight, secs, warmup_ms),
        Case::Scaling { threads, setup, load } => super::scaling::measure(exe, threads, setup, load),
        Case::Udp { clients, secs } => super::udp::measure(exe, imp, clients, secs),
    }
}

fn throughput(exe: &Path, imp: Impl, size: usize, volume: u64) -> Result<Metrics, BenchError> {
    let server = ServerProc::start(exe, imp, Variant::Echo)?;
    let cpu0 = server.cpu()?;
    let (elapsed, conn) = stream::throughput(server.addr, size, volume, Duration::from_secs(120))?;
    let (cpu, cpu_stat) = server.cpu()?.since(&cpu0);
    drop(conn);
    let secs = elapsed.as_secs_f64();
    Ok(vec![
        ("mb_per_s", volume as f64 / 1e6 / secs),
        ("cpu_s_per_gb", cpu / (volume as f64 / 1e9)),
        ("seconds", secs),
        ("cpu_s", cpu),
        ("cpu_s_stat", cpu_stat),
    ])
}

/// Connects `conns` clients and waits until the server has them all.
pub(super) fn connect(server: &mut ServerProc, conns: usize) -> Result<Clients, BenchError> {
    connect_more(server, conns, 0)
}

/// Connects `conns` more clients to a server that has accepted `already`,
/// and waits until it has them all.
fn connect_more(server: &mut ServerProc, conns: usize, already: u64) -> Result<Clients, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = server.addr;
    let clients = Clients::connect(addr, conns, deadline, || {
        Ok(server.stats()?.1.saturating_sub(already))
    })?;
    server.wait_accepted(already + conns as u64, deadline)?;
    Ok(clients)
}

/// Kills the server and closes the clients (one set or several) at the
/// same time, then waits for the server to be gone.
pub(super) fn teardown<T>(mut server: ServerProc, clients: T) {
    server.kill();
    drop(clients);
    drop(server);
}

fn concurrent(exe: &Path, imp: Impl, conns: usize) -> Result<Metrics, BenchError> {
    let mut server = ServerProc::start(exe, imp, Variant::Echo)?;
    let mut clients = connect(&mut server, conns)?;
    std::thread::sleep(Duration::from_millis(5));
    let cpu0 = server.cpu()?;
    let limit = Instant::now() + Duration::from_secs(60);
    let out = clients.run(CONCURRENT_MSG, Stop::Rounds(1), false, limit)?;
    let (cpu, cpu_stat) = server.cpu()?.since(&cpu0);
    teardown(server, clients);
    Ok(vec![
        ("seconds", out.elapsed.as_secs_f64()),
        ("cpu_s", cpu),
        ("cpu_s_stat", cpu_stat),
    ])
}

fn ping_pong(exe: &Path, imp: Impl, conns: usize, secs: f64) -> Result<Metrics, BenchError> {
    let server = ServerProc::start(exe, imp, Variant::Echo)?;
    ping_pong_on(server, conns, 1, secs)
}

/// What the rest of the machine was doing: busy CPU time of the whole
/// machine and of this driver (the load generator), read at the start and
/// at the end of a measured window.
#[derive(Debug, Clone, Copy)]
struct Bystanders {
    at: Instant,
    machine: f64,
    driver: f64,
}

impl Bystanders {
    fn read() -> Result<Bystanders, BenchError> {
        Ok(Bystanders {
            at: Instant::now(),
            machine: procfs::machine_busy_seconds()?,
            driver: procfs::cpu_seconds(std::process::id())?,
        })
    }

    /// CPUs kept busy from `self` to `later` by neither the server (which
    /// used `server_cpu` seconds meanwhile) nor this driver: other
    /// processes, and the kernel's interrupt work charged to no process.
    /// Tick resolution, so ±0.02 CPUs over a 1 s window.
    fn others(&self, later: &Bystanders, server_cpu: f64) -> f64 {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let other = self.machine(later) - (later.driver - self.driver) - server_cpu;
        other / secs
    }

    /// Busy CPU seconds of the whole machine from `self` to `later`:
    /// server, load generator, the kernel's work charged to no process
    /// (softirqs run while a CPU is idle), and anything else running.
    fn machine(&self, later: &Bystanders) -> f64 {
        later.machine - self.machine
    }
}

/// Warm-up of a ping-pong run, so connection set-up does not count.
pub(super) const PING_WARMUP: Duration = Duration::from_millis(20);

/// The ping-pong measurement against a started `server`: `conns`
/// connections for `secs` seconds, driven by `load_threads` instances of
/// the load generator ([`Clients`]) on threads of their own, each with its
/// share of the connections (one: the driver's own thread, as the
/// ping-pong scenario has it).
pub(super) fn ping_pong_on(
    mut server: ServerProc,
    conns: usize,
    load_threads: usize,
    secs: f64,
) -> Result<Metrics, BenchError> {
    if load_threads > 1 {
        return ping_pong_threads(server, conns, load_threads, secs);
    }
    let mut clients = connect(&mut server, conns)?;
    let warm = Instant::now() + PING_WARMUP;
    clients.run(PING_MSG, Stop::Until(warm), false, warm + Duration::from_secs(30))?;
    let window = ServerWindow::open(&server)?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let out = clients.run(PING_MSG, Stop::Until(end), true, end + Duration::from_secs(30))?;
    let m = window.close(&server, out)?;
    teardown(server, clients);
    Ok(m)
}

/// The readings around a measured window of round trips: the server's
/// system calls and socket receives (counted by perf, when it can run),
/// its CPU time, and the busy time of the rest of the machine.
pub(super) struct ServerWindow {
    counting: Option<SyscallCount>,
    others: Bystanders,
    cpu: CpuTime,
}

impl ServerWindow {
    /// Starts counting and takes the first readings: the window opens
    /// when this returns.
    pub(super) fn open(server: &ServerProc) -> Result<ServerWindow, BenchError> {
        let counting = SyscallCount::start(server.pid());
        let others = Bystanders::read()?;
        let cpu = server.cpu()?;
        Ok(ServerWindow {
            counting,
            others,
            cpu,
        })
    }

    /// Takes the last readings; the ping-pong figures of `out`, the round
    /// trips completed in the window, with the server's system calls and
    /// receives per round trip when they were counted.
    pub(super) fn close(self, server: &ServerProc, out: Outcome) -> Result<Metrics, BenchError> {
        let (cpu, cpu_stat) = server.cpu()?.since(&self.cpu);
        let others1 = Bystanders::read()?;
        let syscalls = self.counting.and_then(SyscallCount::finish);
        let trips = out.completed as f64;
        let mut m = ping_pong_metrics(out, cpu, cpu_stat);
        if let Some(n) = syscalls {
            // Counted from the window's start to perf's stop, a moment
            // after the round trips counted end: a slight overcount.
            m.push(("syscalls_per_rt", n.syscalls as f64 / trips));
            if let Some(receives) = n.receives {
                m.push(("receives_per_rt", receives as f64 / trips));
            }
        }
        m.push(("other_cpus_busy", self.others.others(&others1, cpu_stat)));
        m.push((
            "machine_cpu_us_per_rt",
            self.others.machine(&others1) * 1e6 / trips,
        ));
        Ok(m)
    }
}

/// [`ping_pong_on`] with several load threads: every set of connections
/// warms up, then the server's CPU is read, then all run until the same
/// instant; the rate is all round trips over the longest run.
fn ping_pong_threads(
    mut server: ServerProc,
    conns: usize,
    load_threads: usize,
    secs: f64,
) -> Result<Metrics, BenchError> {
    let mut sets = Vec::with_capacity(load_threads);
    let mut connected = 0;
    for k in 0..load_threads {
        let n = conns / load_threads + usize::from(k < conns % load_threads);
        sets.push(connect_more(&mut server, n, connected as u64)?);
        connected += n;
    }
    let warmed = Barrier::new(load_threads + 1);
    let started = Barrier::new(load_threads + 1);
    let end = Mutex::new(None::<Instant>);
    let mut cpu0 = None;
    let mut others0 = None;
    let outcomes: Vec<Result<Outcome, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = sets
            .iter_mut()
            .map(|clients| {
                let (warmed, started, end) = (&warmed, &started, &end);
                s.spawn(move || {
                    let warm = Instant::now() + PING_WARMUP;
                    let limit = warm + Duration::from_secs(30);
                    let warm_up = clients.run(PING_MSG, Stop::Until(warm), false, limit);
                    warmed.wait();
                    started.wait();
                    warm_up?;
                    let end = end
                        .lock()
                        .ok()
                        .and_then(|e| *e)
                        .ok_or_else(|| BenchError::other("no end set"))?;
                    clients.run(PING_MSG, Stop::Until(end), true, end + Duration::from_secs(30))
                })
            })
            .collect();
        warmed.wait();
        others0 = Some(Bystanders::read());
        cpu0 = Some(server.cpu());
        if let Ok(mut e) = end.lock() {
            *e = Some(Instant::now() + Duration::from_secs_f64(secs));
        }
        started.wait();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::other("load thread panicked")))
            })
            .collect()
    });
    let cpu1 = server.cpu();
    let others1 = Bystanders::read();
    teardown(server, sets);
    let (cpu0, cpu1) = (cpu0.ok_or_else(|| BenchError::other("no CPU reading"))??, cpu1?);
    let (cpu, cpu_stat) = cpu1.since(&cpu0);
    let others0 = others0.ok_or_else(|| BenchError::other("no CPU reading"))??;
    let others1 = others1?;
    let mut all = Outcome {
        elapsed: Duration::ZERO,
        completed: 0,
        latencies_ns: Vec::new(),
    };
    for out in outcomes {
        let out = out?;
        all.elapsed = all.elapsed.max(out.elapsed);
        all.completed += out.completed;
        all.latencies_ns.extend(out.latencies_ns);
    }
    let trips = all.completed as f64;
    let mut m = ping_pong_metrics(all, cpu, cpu_stat);
    m.push(("other_cpus_busy", others0.others(&others1, cpu_stat)));
    m.push(("machine_cpu_us_per_rt", others0.machine(&others1) * 1e6 / trips));
    Ok(m)
}

/// The ping-pong figures of a run's outcome and the server CPU it cost.
fn ping_pong_metrics(mut out: Outcome, cpu: f64, cpu_stat: f64) -> Metrics {
    let lat = &mut out.latencies_ns;
    lat.sort_unstable();
    let us = |p: f64| percentile(lat, p) as f64 / 1e3;
    let trips = out.completed as f64;
    vec![
        ("rps", trips / out.elapsed.as_secs_f64()),
        ("p50_us", us(0.50)),
        ("p99_us", us(0.99)),
        ("p999_us", us(0.999)),
        ("cpu_us_per_rt", cpu * 1e6 / trips),
        ("round_trips", trips),
        ("cpu_s", cpu),
        ("cpu_s_stat", cpu_stat),
    ]
}

/// Connections opened before the idle scenario's first RSS reading, so
/// costs paid once per process (a thread's malloc arena, stack pages,
/// the first chunk of each table) are not charged to connections.
const IDLE_BASE_CONNS: usize = 1_000;

fn idle(exe: &Path, imp: Impl, conns: usize, settle_ms: u64, cpu_secs: f64) -> Result<Metrics, BenchError> {
    let mut server = ServerProc::start(exe, imp, Variant::Idle)?;
    server.stats()?; // warms the control channel up
    std::thread::sleep(Duration::from_millis(settle_ms / 2));
    let empty = server.rss_bytes()?;
    let base_conns = IDLE_BASE_CONNS.min(conns / 2);
    let base = connect(&mut server, base_conns)?;
    std::thread::sleep(Duration::from_millis(settle_ms / 2));
    let before = server.rss_bytes()?;
    // What the server spends doing nothing: every connection has a read
    // pending and no byte arrives.
    let cpu_start = server.cpu()?;
    let watched = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(cpu_secs));
    let (idle_cpu, _) = server.cpu()?.since(&cpu_start);
    let idle_cpu_pct = idle_cpu * 100.0 / watched.elapsed().as_secs_f64();
    let more = connect_more(&mut server, conns - base_conns, base_conns as u64)?;
    std::thread::sleep(Duration::from_millis(settle_ms));
    let after = server.rss_bytes()?;
    teardown(server, (base, more));
    let mib = |b: u64| b as f64 / 1048576.0;
    let per = |from: u64, n: usize| (after as f64 - from as f64) / n as f64;
    Ok(vec![
        ("rss_per_conn_b", per(before, conns - base_conns)),
        ("rss_per_conn_from_empty_b", per(empty, conns)),
        ("rss_empty_mib", mib(empty)),
        ("rss_after_mib", mib(after)),
        ("idle_cpu_pct", idle_cpu_pct),
    ])
}

fn allocs(exe: &Path, imp: Impl, conns: usize, warmup: u64, requests: u64) -> Result<Metrics, BenchError> {
    let mut server = ServerProc::start(exe, imp, Variant::CountAllocs)?;
    let mut clients = connect(&mut server, conns)?;
    let per_conn = |total: u64| total.div_ceil(conns as u64);
    let limit = || Instant::now() + Duration::from_secs(60);
    clients.run(PING_MSG, Stop::Rounds(per_conn(warmup)), false, limit())?;
    // Two snapshots with no load in between: what answering costs.
    let (a0, _) = server.stats()?;
    let (a1, _) = server.stats()?;
    let out = clients.run(PING_MSG, Stop::Rounds(per_conn(requests)), false, limit())?;
    let (a2, _) = server.stats()?;
    let control = a1.saturating_sub(a0);
    let counted = a2.saturating_sub(a1).saturating_sub(control) as f64;
    Ok(vec![
        ("allocs_per_req", counted / out.completed as f64),
        ("allocs", counted),
        ("requests", out.completed as f64),
        ("control_allocs", control as f64),
    ])
}

fn accept_rate(
    exe: &Path,
    imp: Impl,
    workers: usize,
    in_flight: usize,
    secs: f64,
    warmup_ms: u64,
) -> Result<Metrics, BenchError> {
    let server = ServerProc::start(exe, imp, Variant::Echo)?;
    accept_rate_on(server, workers, in_flight, secs, warmup_ms)
}

/// The accept-rate measurement against a started `server`.
pub(super) fn accept_rate_on(
    mut server: ServerProc,
    workers: usize,
    in_flight: usize,
    secs: f64,
    warmup_ms: u64,
) -> Result<Metrics, BenchError> {
    let churn = Churn::start(server.addr, workers, in_flight)?;
    std::thread::sleep(Duration::from_millis(warmup_ms));
    let (_, accepted0) = server.stats()?;
    let me = std::process::id();
    let others0 = Bystanders::read()?;
    let client0 = procfs::cpu_seconds(me)?;
    let cpu0 = server.cpu()?;
    let tally0 = churn.tally();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let window = churn.tally().since(&tally0);
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu_sched, cpu) = server.cpu()?.since(&cpu0);
    let client = procfs::cpu_seconds(me)? - client0;
    let others1 = Bystanders::read()?;
    let (_, accepted1) = server.stats()?;
    // Stopped before the server is, so its end is not counted as failures.
    let (whole, errors) = churn.stop()?;
    teardown(server, ());
    if whole.failures(Failure::Mismatch) > 0 {
        return Err(BenchError::Mismatch(format!(
            "{} connections echoed wrong bytes; first errors: {}",
            whole.failures(Failure::Mismatch),
            errors.join("; ")
        )));
    }
    if whole.total_failed() > 0 {
        eprint!(
            " [{} failed connections ({}); first: {}]",
            whole.total_failed(),
            whole.failure_summary(),
            errors.join("; ")
        );
    }
    let conns = window.completed as f64;
    if window.completed == 0 {
        return Err(BenchError::other(format!(
            "no connection completed in {secs} s ({} failed: {})",
            window.total_failed(),
            errors.join("; ")
        )));
    }
    let mut m = vec![
        ("conns_per_s", conns / elapsed),
        ("cpu_us_per_conn", cpu * 1e6 / conns),
        ("failed_conns", whole.total_failed() as f64),
        ("client_cpu_us_per_conn", client * 1e6 / conns),
        ("cpu_us_per_conn_sched", cpu_sched * 1e6 / conns),
        ("conns", conns),
        ("server_accepted", accepted1.saturating_sub(accepted0) as f64),
        ("seconds", elapsed),
        ("cpu_s", cpu),
        ("cpu_s_sched", cpu_sched),
        ("other_cpus_busy", others0.others(&others1, cpu)),
        ("machine_cpu_us_per_conn", others0.machine(&others1) * 1e6 / conns),
    ];
    m.extend(Failure::ALL.iter().map(|&k| (k.key(), whole.failures(k) as f64)));
    Ok(m)
}
