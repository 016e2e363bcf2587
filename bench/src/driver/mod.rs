//! The driver behind `bench`: plans the measurements, runs them against
//! every server in turn, and writes the report.
//!
//! The same load runs against every implementation. Within each
//! repetition the servers take turns (round-robin), so slow drifts of a
//! shared, noisy machine hit them all alike; each figure reported is the
//! median over the repetitions.

mod accept;
pub mod clients;
mod cost;
mod error;
mod load;
mod report;
mod scaling;
mod scenarios;
mod server_proc;
mod stats;
mod stream;
mod svg;
mod syscalls;
mod udp;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use error::BenchError;
pub use scaling::{ScaleLoad, Setup};
pub use scenarios::{Case, Metrics};

use crate::procfs::Machine;
use crate::servers::{parse_spread, Impl};

/// Largest connection count of the concurrent scenario: 20k client
/// sockets plus the driver's own descriptors do not fit under a hard
/// `RLIMIT_NOFILE` of 20000, so the top point is 19k.
pub const MAX_CONNS: usize = 19_000;

/// Load threads of the accept-rate scenario, one per core of the
/// two-core machine it was tuned on (the `accept` module says why).
pub const ACCEPT_WORKERS: usize = 2;
/// Connections each of them keeps in flight.
pub const ACCEPT_IN_FLIGHT: usize = 16;

/// Scenarios left out of the default set, run only when `--scenarios`
/// names them: `udp` (its 2 cases × every server × every repetition add
/// about a minute to a quick run).
pub const OPT_IN_SCENARIOS: [&str; 1] = ["udp"];

/// Client sockets of the UDP scenario's cases.
pub const UDP_CLIENTS: [usize; 2] = [1, 16];

/// Command-line options of `bench`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The short run (3 repetitions, smaller volumes, fewer points).
    pub quick: bool,
    /// Where the report goes (default: `target/bench` next to the binary).
    pub out: Option<PathBuf>,
    /// Servers to measure (default: all).
    pub servers: Vec<Impl>,
    /// Scenarios to run, by short name (default: all but
    /// [`OPT_IN_SCENARIOS`]).
    pub scenarios: Vec<String>,
    /// Repetitions (default: 3 quick, 5 full).
    pub reps: Option<usize>,
    /// Thread counts of the scaling scenario (default: 1 to the CPUs
    /// this process may use: every count up to 16, then steps of about
    /// 1.5×; in the quick plan 1, 2, 4, ...).
    pub scaling_threads: Option<Vec<usize>>,
    /// The scaling scenario's server and load placement (`--spread`,
    /// default least-loaded; `--no-pin`; `--no-batch`; `--load-anywhere`).
    pub scaling: Setup,
}

/// The usage line.
pub const USAGE: &str = "usage: bench [--quick] [--reps N] [--out DIR] [--servers a,b,...] \
                         [--scenarios throughput,concurrent,ping-pong,idle,allocs,cost,accept-rate,scaling,udp] \
                         [--scaling-threads 1,2,...] [--spread least-loaded|round-robin|reuseport] [--no-pin] [--no-batch] [--load-anywhere]\n\
                         \x20  (the scaling scenario measures gaio-cores whatever --servers says; \
                         --servers gaio-cores adds it to the others but udp; \
                         --servers uring-floor adds the ring's floor (Linux) to the others but udp and cost; \
                         udp runs only when --scenarios names it)\n\
                         \x20  or: bench --clients [--reps N] [--duration SECS] [--out DIR] [--examples DIR] \
                         [--only http|resp] [--resp-requests N_P1,N_P16]";

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            quick: false,
            out: None,
            servers: Impl::ALL.to_vec(),
            scenarios: Vec::new(),
            reps: None,
            scaling_threads: None,
            scaling: Setup::default(),
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value; {USAGE}"));
            match arg.as_str() {
                "--quick" => o.quick = true,
                "--no-pin" => o.scaling.pin = false,
                "--no-batch" => o.scaling.batch = false,
                "--load-anywhere" => o.scaling.place_load = false,
                "--out" => o.out = Some(PathBuf::from(value()?)),
                "--servers" => {
                    o.servers = value()?
                        .split(',')
                        .map(|s| Impl::parse(s).ok_or_else(|| format!("unknown server {s:?}")))
                        .collect::<Result<_, _>>()?;
                }
                "--scenarios" => o.scenarios = value()?.split(',').map(str::to_string).collect(),
                "--reps" => {
                    let v = value()?;
                    o.reps = Some(
                        v.parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or(format!("bad --reps {v:?}"))?,
                    );
                }
                "--scaling-threads" => {
                    let v = value()?;
                    let counts: Option<Vec<usize>> = v
                        .split(',')
                        .map(|n| n.parse().ok().filter(|n| (1..=gaio::MAX_CORES).contains(n)))
                        .collect();
                    o.scaling_threads = Some(counts.ok_or(format!("bad --scaling-threads {v:?}"))?);
                }
                "--spread" => {
                    let v = value()?;
                    o.scaling.spread = parse_spread(&v).ok_or(format!("unknown spread {v:?}"))?;
                }
                _ => return Err(format!("unknown argument {arg:?}; {USAGE}")),
            }
        }
        Ok(o)
    }
}

/// What one run measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// "quick" or "full".
    pub name: &'static str,
    /// Repetitions of every case.
    pub reps: usize,
    /// The cases, in run order.
    pub cases: Vec<Case>,
    /// The servers, in turn order.
    pub servers: Vec<Impl>,
}

impl Plan {
    /// The plan for `opts`.
    pub fn new(opts: &Options) -> Plan {
        const MIB: u64 = 1 << 20;
        let (name, reps, volumes, conns, secs, settle_ms, requests) = if opts.quick {
            let volumes = [192 * MIB, 96 * MIB, 32 * MIB, 4 * MIB];
            ("quick", 3, volumes, vec![1_000, 4_000, 8_000], 1.0, 200, 10_000)
        } else {
            let volumes = [2048 * MIB, 1024 * MIB, 768 * MIB, 128 * MIB];
            let conns = vec![1_000, 2_000, 4_000, 8_000, 12_000, MAX_CONNS];
            ("full", 5, volumes, conns, 5.0, 1_000, 200_000)
        };
        let mut cases = Vec::new();
        for (size, volume) in [65_536, 4_096, 1_024, 128].into_iter().zip(volumes) {
            cases.push(Case::Throughput { size, volume });
        }
        cases.extend(conns.into_iter().map(|conns| Case::Concurrent { conns }));
        cases.extend([1, 16, 64, 1_024].map(|conns| Case::PingPong { conns, secs }));
        cases.extend(UDP_CLIENTS.map(|clients| Case::Udp { clients, secs }));
        cases.push(Case::Idle {
            conns: 10_000,
            settle_ms,
            cpu_secs: if opts.quick { 2.0 } else { 10.0 },
        });
        let (cost_conns, cost_rounds): (&[usize], u64) = if opts.quick {
            (&[64], 50)
        } else {
            (&[64, 1_024], 100)
        };
        cases.extend(cost_conns.iter().map(|&conns| Case::Cost {
            conns,
            rounds: cost_rounds,
        }));
        // Few connections (small batches) and many (batches of hundreds of
        // completions per turn, where growing work vectors would show).
        cases.extend([16, 1_024].map(|conns| Case::Allocs {
            conns,
            warmup: requests / 10,
            requests,
        }));
        // New connections per second: a fixed window after a warm-up.
        let (accept_secs, warmup_ms) = if opts.quick { (2.0, 500) } else { (5.0, 1_000) };
        cases.push(Case::AcceptRate {
            workers: ACCEPT_WORKERS,
            in_flight: ACCEPT_IN_FLIGHT,
            secs: accept_secs,
            warmup_ms,
        });
        // gaio-cores on 1..N threads under the ping-pong and accept loads.
        let cpus = scaling::available_cpus();
        let threads = opts
            .scaling_threads
            .clone()
            .unwrap_or_else(|| scaling::thread_counts(cpus, opts.quick));
        cases.extend(scaling::cases(&threads, opts.scaling, cpus, opts.quick));
        if opts.scenarios.is_empty() {
            cases.retain(|c| !OPT_IN_SCENARIOS.contains(&c.scenario()));
        } else {
            cases.retain(|c| opts.scenarios.iter().any(|s| s == c.scenario()));
        }
        Plan {
            name,
            reps: opts.reps.unwrap_or(reps),
            cases,
            servers: opts.servers.clone(),
        }
    }

    /// The servers `case` is measured against: the plan's, but only
    /// gaio-cores for the scaling scenario, those with a UDP echo
    /// ([`Impl::has_udp`]) for the UDP scenario, and those valgrind can
    /// run ([`Impl::runs_under_valgrind`]) for the callgrind one.
    pub fn servers_for(&self, case: &Case) -> Vec<Impl> {
        match case {
            Case::Scaling { .. } => vec![Impl::GaioCores],
            Case::Udp { .. } => self.servers.iter().copied().filter(|i| i.has_udp()).collect(),
            Case::Cost { .. } => self
                .servers
                .iter()
                .copied()
                .filter(|i| i.runs_under_valgrind())
                .collect(),
            _ => self.servers.clone(),
        }
    }

    /// The cases in round-robin groups ([`Case::interleaves_with`]), in
    /// run order: within each repetition of a group, every case of it is
    /// measured against each of its servers in turn.
    pub fn groups(&self) -> impl Iterator<Item = &[Case]> {
        self.cases.chunk_by(|a, b| a.interleaves_with(b))
    }

    /// Number of measurements.
    pub fn jobs(&self) -> usize {
        self.cases
            .iter()
            .map(|c| c.reps(self.reps) * self.servers_for(c).len())
            .sum()
    }
}

/// One measurement's outcome.
#[derive(Debug, Clone)]
pub struct Record {
    /// What was measured.
    pub case: Case,
    /// Against which server.
    pub imp: Impl,
    /// Repetition, from 1.
    pub rep: usize,
    /// The figures, or why there are none.
    pub result: Result<Metrics, String>,
}

/// Runs the whole benchmark; `Err` on a content mismatch or a setup failure.
pub fn run(opts: &Options) -> Result<(), String> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let server_exe = exe.with_file_name("bench-server");
    if !server_exe.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p gaio-bench --bins`",
            server_exe.display()
        ));
    }
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => exe
            .parent()
            .and_then(|p| p.parent())
            .map(|t| t.join("bench"))
            .ok_or("cannot place target/bench")?,
    };
    let fd_limit = gaio_testkit::nofile::raise_soft_limit_to_hard();
    let machine = Machine::describe();
    let plan = Plan::new(opts);
    let total = plan.jobs();
    let mut records = Vec::with_capacity(total);
    let mut k = 0;
    for group in plan.groups() {
        let reps = group[0].reps(plan.reps);
        for rep in 1..=reps {
            for (case, imp) in group
                .iter()
                .flat_map(|c| plan.servers_for(c).into_iter().map(move |imp| (c, imp)))
            {
                k += 1;
                eprint!(
                    "[{k}/{total}] {} {} {imp} rep {rep}/{reps}",
                    case.scenario(),
                    case.label()
                );
                let t = Instant::now();
                let result = match needed_fds(case) {
                    Some(n) if n > fd_limit => Err(BenchError::other(format!(
                        "needs {n} descriptors, RLIMIT_NOFILE is {fd_limit}"
                    ))),
                    _ => scenarios::measure(&server_exe, case, imp),
                };
                match &result {
                    Ok(m) => eprintln!(": {} ({:.1} s)", headline(m), t.elapsed().as_secs_f64()),
                    Err(e) => eprintln!(": FAILED: {e}"),
                }
                let result = match result {
                    Err(BenchError::Mismatch(m)) => {
                        return Err(format!(
                            "{} {} against {imp}: echo mismatch: {m}",
                            case.scenario(),
                            case.label()
                        ))
                    }
                    other => other.map_err(|e| e.to_string()),
                };
                records.push(Record {
                    case: *case,
                    imp,
                    rep,
                    result,
                });
                // Lets the kernel finish tearing the last server's sockets down.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let elapsed = started.elapsed();
    let md = report::markdown(&machine, &plan, &records, elapsed);
    print!("{md}");
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let write = |name: &str, text: String| {
        let path = out_dir.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("report.md", md.clone())?;
    let json = report::json(&machine, &plan, &records, elapsed);
    write(
        "results.json",
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n",
    )?;
    for (name, svg) in report::plots(&plan, &records) {
        write(&name, svg)?;
    }
    eprintln!(
        "bench: {} measurements in {:.0} s; report, results.json and plots in {}",
        records.len(),
        elapsed.as_secs_f64(),
        out_dir.display()
    );
    Ok(())
}

/// Descriptors a case needs in the driver (its connections plus slack).
fn needed_fds(case: &Case) -> Option<u64> {
    match *case {
        Case::Concurrent { conns } | Case::Idle { conns, .. } => Some(conns as u64 + 64),
        Case::AcceptRate {
            workers, in_flight, ..
        }
        | Case::Scaling {
            load: ScaleLoad::Accept {
                workers, in_flight, ..
            },
            ..
        } => Some((workers * in_flight) as u64 + 64),
        Case::Scaling {
            load: ScaleLoad::PingPong { conns, .. },
            ..
        } => Some(conns as u64 + 64),
        _ => None,
    }
}

/// The first figure of a measurement, for the progress line, and the
/// count of failed connections when there were any.
fn headline(m: &Metrics) -> String {
    let mut line = m
        .first()
        .map(|(k, v)| format!("{k}={}", report::fmt_num(*v)))
        .unwrap_or_default();
    if let Some((k, v)) = m.iter().find(|(k, v)| *k == "failed_conns" && *v > 0.0) {
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use gaio::Spread;

    use super::*;

    fn plan(args: &[&str]) -> Plan {
        Plan::new(&Options::parse(args.iter().map(|a| a.to_string())).unwrap())
    }

    #[test]
    fn accept_rate_is_in_both_plans_and_selectable() {
        for (args, secs) in [(&["--quick"][..], 2.0), (&[][..], 5.0)] {
            assert!(plan(args).cases.iter().any(|c| c.scenario() == "accept-rate"));
            let mut only = args.to_vec();
            only.extend(["--scenarios", "accept-rate"]);
            let p = plan(&only);
            assert_eq!(p.cases.len(), 1);
            let Case::AcceptRate {
                workers,
                in_flight,
                secs: s,
                ..
            } = p.cases[0]
            else {
                panic!("{:?}", p.cases[0]);
            };
            assert_eq!((workers, in_flight, s), (ACCEPT_WORKERS, ACCEPT_IN_FLIGHT, secs));
            assert_eq!(p.cases[0].label(), "32 in flight");
            assert_eq!(p.jobs(), p.reps * Impl::ALL.len());
        }
        assert!(USAGE.contains("accept-rate"));
    }

    #[test]
    fn udp_runs_only_when_named_and_without_gaio_cores() {
        for args in [&["--quick"][..], &[][..]] {
            assert!(plan(args).cases.iter().all(|c| c.scenario() != "udp"), "{args:?}");
        }
        let p = plan(&["--quick", "--scenarios", "udp,ping-pong"]);
        let udp: Vec<&Case> = p.cases.iter().filter(|c| c.scenario() == "udp").collect();
        assert_eq!(udp.len(), UDP_CLIENTS.len());
        assert!(p.cases.iter().any(|c| c.scenario() == "ping-pong"));
        assert_eq!(
            *udp[0],
            Case::Udp {
                clients: 1,
                secs: 1.0
            }
        );
        assert_eq!(udp[0].label(), "1 client");
        assert_eq!(udp[1].label(), "16 clients");
        assert_eq!(
            plan(&["--scenarios", "udp"]).cases[0],
            Case::Udp {
                clients: 1,
                secs: 5.0
            }
        );
        let p = plan(&["--scenarios", "udp", "--servers", "mio,gaio-cores,gaio-uring"]);
        assert_eq!(p.servers_for(&p.cases[0]), [Impl::Mio, Impl::GaioUring]);
        assert_eq!(p.jobs(), p.reps * UDP_CLIENTS.len() * 2);
        assert!(USAGE.contains("udp"));
    }

    #[test]
    fn the_callgrind_scenario_leaves_out_the_ring_which_valgrind_cannot_run() {
        let p = plan(&[
            "--quick",
            "--scenarios",
            "cost",
            "--servers",
            "gaio-uring,mio,gaio-inline",
        ]);
        assert!(!p.cases.is_empty());
        for case in &p.cases {
            assert_eq!(p.servers_for(case), [Impl::Mio, Impl::GaioInline], "{case:?}");
        }
    }

    #[test]
    fn scaling_is_in_both_plans_and_runs_its_thread_counts_in_turn() {
        let cpus = scaling::available_cpus();
        for (args, counts) in [
            (&["--quick"][..], scaling::thread_counts(cpus, true)),
            (&[][..], scaling::thread_counts(cpus, false)),
        ] {
            let p = plan(args);
            let n = p.cases.iter().filter(|c| c.scenario() == "scaling").count();
            assert_eq!(n, 2 * counts.len());
        }
        let p = plan(&[
            "--scenarios",
            "scaling",
            "--scaling-threads",
            "1,2,3",
            "--reps",
            "2",
        ]);
        assert_eq!(p.reps, 2);
        assert_eq!(p.jobs(), 2 * 6);
        let groups: Vec<&[Case]> = p.groups().collect();
        assert_eq!(groups.len(), 2, "one round-robin group per load");
        assert!(groups.iter().all(|g| g.len() == 3));
        assert!(p.cases.iter().all(|c| p.servers_for(c) == [Impl::GaioCores]));
        let Case::Scaling { setup, .. } = p.cases[0] else {
            panic!("{:?}", p.cases[0]);
        };
        assert_eq!(setup, Setup::default());
        assert_eq!(setup.spread, Spread::LeastLoaded);
        assert!(setup.pin && setup.batch && setup.place_load);
        let o = Options::parse(
            [
                "--spread",
                "reuseport",
                "--no-pin",
                "--no-batch",
                "--load-anywhere",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(o.scaling.spread, Spread::ReusePort);
        assert!(!o.scaling.pin && !o.scaling.batch && !o.scaling.place_load);
        for bad in [
            &["--reps", "0"][..],
            &["--scaling-threads", "1,x"],
            &["--spread", "hash"],
        ] {
            assert!(
                Options::parse(bad.iter().map(|a| a.to_string())).is_err(),
                "{bad:?}"
            );
        }
        // The other scenarios keep their servers and their groups.
        let p = plan(&["--scenarios", "ping-pong", "--servers", "mio,gaio-cores"]);
        assert_eq!(p.groups().count(), p.cases.len());
        assert_eq!(p.jobs(), p.reps * p.cases.len() * 2);
        assert!(USAGE.contains("scaling") && USAGE.contains("--scaling-threads"));
    }
}
