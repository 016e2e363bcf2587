//! Section 8 and `scaling.svg`: the scaling scenario's figures per thread
//! count, their efficiency against one thread, and the target on the CPU
//! per round trip at two threads.

use std::fmt::Write;

use super::{fmt_num, med, range};
use crate::driver::scaling::{EVERY_COUNT_UP_TO, PING_CONNS_PER_THREAD};
use crate::driver::stats::median;
use crate::driver::svg::{self, Series, COLORS};
use crate::driver::{Case, Plan, Record, ScaleLoad};
use crate::procfs::Machine;
use crate::servers::{spread_name, Impl};

/// The target: server CPU per round trip at two threads at most this
/// many times that at one.
pub const TARGET_CPU_RATIO_2_TO_1: f64 = 1.05;

/// The server every scaling case runs against.
const IMP: Impl = Impl::GaioCores;

/// The scaling cases of one load, in thread-count order.
struct LoadCases {
    load: ScaleLoad,
    /// `(threads, case)`.
    cases: Vec<(usize, Case)>,
}

impl LoadCases {
    /// The load's rate and CPU-per-request medians at `threads`.
    fn at(&self, records: &[Record], threads: usize) -> (Option<f64>, Option<f64>) {
        let (rate, cpu) = self.load.keys();
        self.cases
            .iter()
            .find(|(n, _)| *n == threads)
            .map_or((None, None), |(_, c)| {
                (med(records, c, IMP, rate), med(records, c, IMP, cpu))
            })
    }

    fn case(&self, threads: usize) -> Option<&Case> {
        self.cases.iter().find(|(n, _)| *n == threads).map(|(_, c)| c)
    }
}

/// The plan's scaling cases, by load (ping-pong first).
fn loads(plan: &Plan) -> Vec<LoadCases> {
    let mut out: Vec<LoadCases> = Vec::new();
    for c in &plan.cases {
        let Case::Scaling { threads, load, .. } = *c else {
            continue;
        };
        match out.iter_mut().find(|l| l.load.same_kind(&load)) {
            Some(l) => l.cases.push((threads, *c)),
            None => out.push(LoadCases {
                load,
                cases: vec![(threads, *c)],
            }),
        }
    }
    for l in &mut out {
        l.cases.sort_by_key(|(n, _)| *n);
    }
    out
}

/// `a ÷ b` when both are there.
fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn two(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), fmt_num)
}

fn spread_cell(records: &[Record], case: &Case, key: &str) -> String {
    range(records, case, IMP, key).map_or("–".into(), |(lo, hi)| {
        format!("{}–{}", fmt_num(lo), fmt_num(hi))
    })
}

/// CPU per request at two threads ÷ at one, per repetition (the two
/// measured a moment apart): the median and range of those ratios.
fn paired_ratios(l: &LoadCases, records: &[Record]) -> Option<(f64, f64, f64)> {
    let (one, two) = (l.case(1)?, l.case(2)?);
    let (_, key) = l.load.keys();
    let value = |case: &Case, rep: usize| {
        records
            .iter()
            .find(|r| r.case == *case && r.imp == IMP && r.rep == rep)
            .and_then(|r| r.result.as_ref().ok())
            .and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    };
    let reps = records.iter().map(|r| r.rep).max().unwrap_or(0);
    let ratios: Vec<f64> = (1..=reps)
        .filter_map(|rep| div(value(two, rep), value(one, rep)))
        .collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(&ratios)?, lo, hi))
}

/// Section 8: what was measured, the target line, and a table per load.
pub fn section(o: &mut String, machine: &Machine, plan: &Plan, records: &[Record]) {
    let loads = loads(plan);
    let Some(&Case::Scaling { setup, .. }) = plan.cases.iter().find(|c| c.scenario() == "scaling") else {
        return;
    };
    let pinned = if setup.pin {
        "pinned to a CPU of its own (thread i to the i-th CPU of the affinity mask)"
    } else {
        "not pinned (`--no-pin`: the scheduler places the threads)"
    };
    let policy = if setup.batch {
        "under the batch scheduling policy (`SCHED_BATCH`, `CoresBuilder::batch_scheduling`'s \
         default: a woken server thread does not preempt the load generator on its CPU but runs \
         once that blocks or its slice ends)"
    } else {
        "under the normal scheduling policy (`--no-batch`)"
    };
    let placement = if setup.pin && setup.place_load {
        "The load generator's threads run on the CPUs the server's threads are not pinned to \
         (the CPUs after the first N) while there are any: left to the scheduler, the ping-pong \
         load thread was woken onto the pinned server's CPU about half of the time, the other CPU \
         idle, and the rate at N = 1 had two values (60k and 128k round trips/s here). At N = all \
         CPUs none is left and the load shares every CPU with the server: on a small machine it \
         then competes with the server threads, so the rate cannot grow in proportion to N there \
         and the CPU per request is the figure to watch."
    } else {
        "The load generator's threads are not placed (`--no-pin` or `--load-anywhere`): the \
         scheduler puts them where it likes, on the server's CPUs too."
    };
    let counts: Vec<String> = loads
        .first()
        .map(|l| l.cases.iter().map(|(n, _)| n.to_string()).collect())
        .unwrap_or_default();
    let describe: Vec<String> = loads
        .iter()
        .map(|l| match l.load {
            ScaleLoad::PingPong {
                load_threads,
                conns,
                secs,
            } => format!(
                "ping-pong (section 3): {conns} connections ({PING_CONNS_PER_THREAD} per load thread, \
                 {load_threads} load thread{}), 64-byte round trips for {secs} s",
                if load_threads == 1 { "" } else { "s" }
            ),
            ScaleLoad::Accept {
                workers,
                in_flight,
                secs,
                warmup_ms,
            } => format!(
                "accept-rate (section 7): {workers} workers × {in_flight} connections in flight, \
                 each connecting, echoing 64 bytes and resetting; a {secs} s window after {warmup_ms} ms"
            ),
        })
        .collect();
    let _ = write!(
        o,
        "## 8. Scaling: gaio::Cores on 1 to {cpus} threads\n\n\
         The gaio-cores server: `gaio::CoresBuilder` with N threads, each owning a watcher (inline \
         mode) and {pinned}, {policy}, all listening on one loopback address with `Spread::{spread}`; every thread runs gaio-inline's \
         echo loop (a multishot accept where it holds a listener, swap reads written straight back). \
         The loads are the same at every N: {loads}. The load threads are one per two CPUs, so on a \
         2-CPU machine both loads are exactly those of their own sections. N = {counts} ({cpus} CPUs \
         available to this process: every count up to {EVERY_COUNT_UP_TO}, then steps of about 1.5×). \
         {placement} Within each repetition the thread counts take \
         turns (round-robin), each against a fresh server process; medians of {reps} repetitions. \
         Server CPU is the schedstat sum over the server's threads for both loads (no gaio-cores \
         thread exits during a measurement). Speed-up = rate ÷ rate at N = 1; per-thread efficiency \
         = speed-up ÷ N (1.00: every thread adds as much as the first); CPU efficiency = server CPU \
         per request at N = 1 ÷ at N (1.00: spreading over more cores costs no CPU per request); \
         CPUs busy = server CPU seconds per second; other CPUs busy = what the rest of the machine \
         kept busy meanwhile (/proc/stat busy time minus the server's and the load generator's, per \
         second). On a quiet machine it stays near 0 except where the CPUs go idle often: the \
         kernel's network work (softirqs) done while a CPU is in its idle task is charged to no \
         process and lands here (about 0.25 CPUs for ping-pong at N = 2 on the 2-CPU machine this \
         was written on, with nothing else running). A figure well above that, or above 0 for a \
         load whose CPUs do not idle, means the repetition shared the machine with something \
         else. Machine CPU = the whole machine's busy time per request (server, load \
         generator and kernel): the kernel's share of the network work is charged to whichever \
         thread was running, and to no thread when a CPU was idle, so as the server threads idle \
         more, less of it lands in the server's figure; this one does not depend on where it \
         lands.\n\n",
        cpus = machine.cpus,
        spread = spread_label(setup.spread),
        loads = describe.join("; "),
        counts = counts.join(", "),
        reps = plan.reps,
    );
    target_line(o, &loads, records);
    for l in &loads {
        table(o, l, records);
    }
}

/// `LeastLoaded` for the report.
fn spread_label(spread: gaio::Spread) -> &'static str {
    match spread_name(spread) {
        "reuseport" => "ReusePort",
        "round-robin" => "RoundRobin",
        "least-loaded" => "LeastLoaded",
        _ => "?",
    }
}

/// The CPU-per-request ratio of two threads to one, per load, with the
/// target beside the ping-pong one.
fn target_line(o: &mut String, loads: &[LoadCases], records: &[Record]) {
    for l in loads {
        let (_, cpu1) = l.at(records, 1);
        let (_, cpu2) = l.at(records, 2);
        let ratio = div(cpu2, cpu1);
        let paired = paired_ratios(l, records).map_or(String::new(), |(m, lo, hi)| {
            format!("; the same ratio taken within each repetition: median {m:.3}, range {lo:.3}–{hi:.3}")
        });
        let unit = l.load.unit();
        match (l.load, ratio) {
            (ScaleLoad::PingPong { .. }, Some(r)) => {
                let verdict = if r <= TARGET_CPU_RATIO_2_TO_1 {
                    "PASS"
                } else {
                    "MISS"
                };
                let _ = writeln!(
                    o,
                    "**Server CPU per {unit} at N = 2 ÷ N = 1 (ping-pong): {r:.3}** ({} µs ÷ {} µs{paired}). \
                     Target ≤ {TARGET_CPU_RATIO_2_TO_1:.2}: **{verdict}** (on the ratio of the medians).\n",
                    cell(cpu2),
                    cell(cpu1),
                );
            }
            (ScaleLoad::PingPong { .. }, None) => {
                let _ = writeln!(
                    o,
                    "Server CPU per {unit} at N = 2 ÷ N = 1 (ping-pong): not measured (needs N = 1 and \
                     N = 2). Target ≤ {TARGET_CPU_RATIO_2_TO_1:.2}: **not measured**.\n"
                );
            }
            (ScaleLoad::Accept { .. }, Some(r)) => {
                let _ = writeln!(
                    o,
                    "Server CPU per {unit} at N = 2 ÷ N = 1 (accept-rate): {r:.3} ({} µs ÷ {} µs{paired}); \
                     no target.\n",
                    cell(cpu2),
                    cell(cpu1),
                );
            }
            (ScaleLoad::Accept { .. }, None) => {}
        }
    }
}

/// One load's table: a row per thread count.
fn table(o: &mut String, l: &LoadCases, records: &[Record]) {
    let (rate_key, cpu_key) = l.load.keys();
    let (rate_head, cpu_head, extra): (&str, &str, &[(&str, &str)]) = match l.load {
        ScaleLoad::PingPong { .. } => (
            "round trips/s",
            "server CPU µs/rt",
            &[
                ("machine CPU µs/rt", "machine_cpu_us_per_rt"),
                ("p50 µs", "p50_us"),
                ("p99 µs", "p99_us"),
            ],
        ),
        ScaleLoad::Accept { .. } => (
            "conns/s",
            "server CPU µs/conn",
            &[
                ("machine CPU µs/conn", "machine_cpu_us_per_conn"),
                ("client CPU µs/conn", "client_cpu_us_per_conn"),
                ("failed", "failed_conns"),
            ],
        ),
    };
    let _ = writeln!(o, "{} {}:\n", l.load.name(), l.load.label());
    let mut head = format!(
        "| threads | {rate_head} | min–max | speed-up | per-thread eff. | {cpu_head} | min–max | CPU eff. \
         | CPUs busy | other CPUs busy (max) |"
    );
    for (h, _) in extra {
        let _ = write!(head, " {h} |");
    }
    let columns = 10 + extra.len();
    let _ = writeln!(o, "{head}\n|{}", "---:|".repeat(columns));
    let (rate1, cpu1) = l.at(records, 1);
    for &(n, case) in &l.cases {
        let failed = !records
            .iter()
            .any(|r| r.case == case && r.imp == IMP && r.result.is_ok());
        if failed {
            let _ = writeln!(o, "| {n} | failed |{}", " |".repeat(columns - 2));
            continue;
        }
        let (rate, cpu) = l.at(records, n);
        let speedup = div(rate, rate1);
        let _ = write!(
            o,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) |",
            cell(rate),
            spread_cell(records, &case, rate_key),
            two(speedup),
            two(speedup.map(|s| s / n as f64)),
            cell(cpu),
            spread_cell(records, &case, cpu_key),
            two(div(cpu1, cpu)),
            two(med(records, &case, IMP, "cpus_busy")),
            two(med(records, &case, IMP, "other_cpus_busy")),
            two(range(records, &case, IMP, "other_cpus_busy").map(|r| r.1)),
        );
        for (_, key) in extra {
            let _ = write!(o, " {} |", cell(med(records, &case, IMP, key)));
        }
        o.push('\n');
    }
    o.push('\n');
}

/// `scaling.svg`: rate, CPU per request and efficiency against N.
pub fn plot(plan: &Plan, records: &[Record]) -> Option<(String, String)> {
    let loads = loads(plan);
    if loads.is_empty() {
        return None;
    }
    let color = |l: &LoadCases, alt: bool| match (l.load, alt) {
        (ScaleLoad::PingPong { .. }, false) => COLORS[0],
        (ScaleLoad::PingPong { .. }, true) => COLORS[1],
        (ScaleLoad::Accept { .. }, false) => COLORS[4],
        (ScaleLoad::Accept { .. }, true) => COLORS[2],
    };
    let points = |l: &LoadCases, f: &dyn Fn(usize, Option<f64>, Option<f64>) -> Option<f64>| {
        l.cases
            .iter()
            .filter_map(|&(n, _)| {
                let (rate, cpu) = l.at(records, n);
                f(n, rate, cpu).map(|v| (n as f64, v))
            })
            .collect::<Vec<_>>()
    };
    let name = |l: &LoadCases, what: &str| {
        let short = match l.load {
            ScaleLoad::PingPong { .. } => "ping-pong",
            ScaleLoad::Accept { .. } => "accept",
        };
        format!("{short} {what}")
    };
    let per = |l: &LoadCases, ping: &'static str, accept: &'static str| match l.load {
        ScaleLoad::PingPong { .. } => ping,
        ScaleLoad::Accept { .. } => accept,
    };
    let rates: Vec<Series> = loads
        .iter()
        .map(|l| Series {
            name: name(l, per(l, "rt/s", "conns/s")),
            color: color(l, false),
            points: points(l, &|_, rate, _| rate),
        })
        .collect();
    let cpus: Vec<Series> = loads
        .iter()
        .map(|l| Series {
            name: name(l, per(l, "µs/rt", "µs/conn")),
            color: color(l, false),
            points: points(l, &|_, _, cpu| cpu),
        })
        .collect();
    let mut effs = Vec::new();
    for l in &loads {
        let (rate1, cpu1) = l.at(records, 1);
        effs.push(Series {
            name: name(l, "rate"),
            color: color(l, false),
            points: points(l, &|n, rate, _| div(rate, rate1).map(|s| s / n as f64)),
        });
        effs.push(Series {
            name: name(l, "CPU"),
            color: color(l, true),
            points: points(l, &|_, _, cpu| div(cpu1, cpu)),
        });
    }
    let charts = [
        svg::line_chart("Requests per second", "server threads (N)", "per second", &rates),
        svg::line_chart(
            "Server CPU per request",
            "server threads (N)",
            "µs per round trip / connection",
            &cpus,
        ),
        svg::line_chart(
            "Efficiency against N = 1",
            "server threads (N)",
            "rate ÷ N ÷ rate at 1; CPU at 1 ÷ CPU (1 = ideal)",
            &effs,
        ),
    ];
    let title = "Scaling: gaio::Cores on N threads, ping-pong (64 B) and accept-rate loads";
    Some(("scaling.svg".into(), svg::side_by_side(title, &charts)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::driver::Options;

    /// Records of a quick plan on N = 1, 2 with ping-pong CPU per round
    /// trip `cpu1`, `cpu2` (µs).
    fn records(plan: &Plan, cpu1: f64, cpu2: f64) -> Vec<Record> {
        let mut out = Vec::new();
        for rep in 1..=plan.reps {
            for case in &plan.cases {
                let Case::Scaling { threads, load, .. } = *case else {
                    continue;
                };
                let m = match load {
                    ScaleLoad::PingPong { .. } => vec![
                        ("rps", 200_000.0 + threads as f64 * 10_000.0),
                        ("cpu_us_per_rt", if threads == 1 { cpu1 } else { cpu2 }),
                        ("p50_us", 250.0),
                        ("p99_us", 400.0),
                        ("cpus_busy", 0.9 * threads as f64),
                        ("other_cpus_busy", 0.05),
                        ("machine_cpu_us_per_rt", 9.0),
                    ],
                    ScaleLoad::Accept { .. } => vec![
                        ("conns_per_s", 20_000.0),
                        ("cpu_us_per_conn_sched", 17.0 + threads as f64),
                        ("client_cpu_us_per_conn", 30.0),
                        ("failed_conns", 0.0),
                    ],
                };
                out.push(Record {
                    case: *case,
                    imp: IMP,
                    rep,
                    result: Ok(m),
                });
            }
        }
        out
    }

    fn plan() -> Plan {
        let args = ["--quick", "--scenarios", "scaling", "--scaling-threads", "1,2"];
        Plan::new(&Options::parse(args.map(String::from)).unwrap())
    }

    #[test]
    fn section_reports_efficiency_and_the_target() {
        let plan = plan();
        assert_eq!(plan.jobs(), plan.reps * 4);
        let md = crate::driver::report::markdown(
            &Machine::for_tests(),
            &plan,
            &records(&plan, 4.0, 4.1),
            Duration::ZERO,
        );
        assert!(md.contains("## 8. Scaling"), "{md}");
        assert!(md.contains("N = 2 ÷ N = 1 (ping-pong): 1.025**"), "{md}");
        assert!(md.contains("**PASS**"), "{md}");
        assert!(
            md.contains(
                "| 2 | 220000 | 220000–220000 | 1.05 | 0.52 | 4.10 | 4.10–4.10 | 0.98 | 1.80 | 0.05 (0.05) | 9.00 | 250 | 400 |"
            ),
            "{md}"
        );
        assert!(md.contains("(accept-rate): 1.056"), "{md}");
        let md = crate::driver::report::markdown(
            &Machine::for_tests(),
            &plan,
            &records(&plan, 4.0, 4.4),
            Duration::ZERO,
        );
        assert!(md.contains("**MISS**"), "{md}");
    }

    #[test]
    fn plot_has_three_charts() {
        let plan = plan();
        let (name, svg) = plot(&plan, &records(&plan, 4.0, 4.1)).unwrap();
        assert_eq!(name, "scaling.svg");
        assert_eq!(svg.matches("<polyline").count(), 8);
    }
}
