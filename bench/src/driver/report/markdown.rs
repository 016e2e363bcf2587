//! The Markdown report: one table per scenario, with ratios against the
//! reference servers and the range over repetitions.

use std::fmt::Write;
use std::time::Duration;

use super::{fmt_num, has, med, range, ratio, REFS};
use crate::driver::accept::{Failure, ACCEPT_MSG, CONN_TIMEOUT};
use crate::driver::scenarios::{CONCURRENT_MSG, PING_MSG};
use crate::driver::stats::least_squares;
use crate::driver::udp::{LOSS_TIMEOUT, UDP_MSG};
use crate::driver::{Case, Plan, Record, MAX_CONNS};
use crate::procfs::Machine;
use crate::servers::{Impl, UDP_PENDING_RECEIVES};

/// A column of a scenario table.
struct Col {
    head: &'static str,
    key: &'static str,
    /// Also show this figure divided by mio's and tokio-mt's, and its
    /// range over the repetitions.
    ratios: bool,
}

const fn col(head: &'static str, key: &'static str, ratios: bool) -> Col {
    Col { head, key, ratios }
}

/// One table: a row per case of `scenario` and server.
fn table(out: &mut String, plan: &Plan, records: &[Record], scenario: &str, case_head: &str, cols: &[Col]) {
    let refs: Vec<Impl> = REFS.into_iter().filter(|r| plan.servers.contains(r)).collect();
    let mut head = format!("| {case_head} | server |");
    let mut rule = String::from("|---|---|");
    for c in cols {
        let _ = write!(head, " {} |", c.head);
        rule.push_str("---:|");
        if c.ratios {
            head.push_str(" min–max |");
            rule.push_str("---:|");
            for r in &refs {
                let _ = write!(head, " ÷ {r} |");
                rule.push_str("---:|");
            }
        }
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for case in plan.cases.iter().filter(|c| c.scenario() == scenario) {
        for imp in plan.servers_for(case) {
            let _ = write!(out, "| {} | {imp} |", case.label());
            let failed = !records
                .iter()
                .any(|r| r.case == *case && r.imp == imp && r.result.is_ok());
            for c in cols {
                let v = med(records, case, imp, c.key);
                let cell = if failed {
                    "failed".into()
                } else {
                    v.map_or("–".into(), fmt_num)
                };
                let _ = write!(out, " {cell} |");
                if c.ratios {
                    let spread = range(records, case, imp, c.key).map_or("–".into(), |(lo, hi)| {
                        format!("{}–{}", fmt_num(lo), fmt_num(hi))
                    });
                    let _ = write!(out, " {spread} |");
                    for &r in &refs {
                        let _ = write!(out, " {} |", ratio(v, med(records, case, r, c.key)));
                    }
                }
            }
            out.push('\n');
        }
    }
    out.push('\n');
}

/// Least-squares fit of median figure `key` against connection count for
/// the concurrent scenario: `(intercept, slope per connection)`.
fn concurrent_fit(plan: &Plan, records: &[Record], imp: Impl, key: &str) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> = plan
        .cases
        .iter()
        .filter_map(|c| match c {
            Case::Concurrent { conns } => med(records, c, imp, key).map(|v| (*conns as f64, v)),
            _ => None,
        })
        .collect();
    least_squares(&points)
}

/// The whole report as Markdown.
pub fn markdown(machine: &Machine, plan: &Plan, records: &[Record], elapsed: Duration) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# gaio benchmark ({} run)\n", plan.name);
    let _ = writeln!(
        o,
        "Machine: {} CPUs, {}; Linux {}; {}. Server and load generator run on the same \
         machine and share its CPUs; loopback (127.0.0.1) only.\n",
        machine.cpus, machine.model, machine.kernel, machine.rustc
    );
    let _ = writeln!(
        o,
        "Medians of {} repetitions; within each repetition the servers take turns (round-robin), \
         each measurement against a fresh server process. `÷ mio` / `÷ tokio-mt`: this server's \
         figure divided by that server's (for rates higher is better, for CPU, time, memory lower \
         is better). Server CPU is the server process's run time over the measurement: the sum \
         of /proc/PID/task/*/schedstat (ns resolution; no server thread exits during a measurement \
         of sections 1–6 and 9). utime + stime from /proc/PID/stat (CLK_TCK = {}, so ±{} ms per reading) \
         is kept in results.json as `cpu_s_stat` to cross-check; section 7, where threads do exit, \
         uses it instead. The run took {:.0} s.\n",
        plan.reps,
        machine.clk_tck,
        1000 / machine.clk_tck.max(1),
        elapsed.as_secs_f64()
    );
    if has(plan, "throughput") {
        o.push_str(
            "## 1. Throughput: one connection\n\nThe client writes the pattern continuously in writes \
             of the given size (one thread) and reads the echo back (another thread), checking every \
             byte. MB/s = bytes sent ÷ time from the first write to the last echoed byte (1 MB = 10^6 B); \
             CPU s/GB = server CPU seconds per 10^9 bytes echoed.\n\n",
        );
        table(
            &mut o,
            plan,
            records,
            "throughput",
            "write size",
            &[
                col("MB/s", "mb_per_s", true),
                col("server CPU s/GB", "cpu_s_per_gb", true),
            ],
        );
    }
    if has(plan, "concurrent") {
        let _ = write!(
            o,
            "## 2. Concurrent: N connections, one {CONCURRENT_MSG}-byte echo each\n\nAll connections \
             are open (and accepted) before timing starts; seconds from the first write to the last \
             echo received. The top point is {MAX_CONNS} rather than 20k: the hard RLIMIT_NOFILE \
             is 20000 per process, and the driver needs a few descriptors besides its {MAX_CONNS} \
             sockets.\n\n"
        );
        table(
            &mut o,
            plan,
            records,
            "concurrent",
            "conns",
            &[
                col("seconds", "seconds", true),
                col("server CPU s", "cpu_s", true),
            ],
        );
        o.push_str(
            "Least-squares fit of the medians against N (seconds = a + b·N), b per 1k connections:\n\n",
        );
        let refs: Vec<Impl> = REFS.into_iter().filter(|r| plan.servers.contains(r)).collect();
        let mut head = String::from("| server | s per 1k conns |");
        let mut rule = String::from("|---|---:|");
        for r in &refs {
            let _ = write!(head, " ÷ {r} |");
            rule.push_str("---:|");
        }
        head.push_str(" CPU s per 1k conns | intercept s |");
        rule.push_str("---:|---:|");
        let _ = writeln!(o, "{head}\n{rule}");
        let slope = |imp| concurrent_fit(plan, records, imp, "seconds");
        for &imp in &plan.servers {
            let fit = slope(imp);
            let b = fit.map(|f| f.1 * 1000.0);
            let _ = write!(o, "| {imp} | {} |", b.map_or("–".into(), fmt_num));
            for &r in &refs {
                let _ = write!(o, " {} |", ratio(b, slope(r).map(|f| f.1 * 1000.0)));
            }
            let cpu = concurrent_fit(plan, records, imp, "cpu_s").map(|f| f.1 * 1000.0);
            let _ = writeln!(
                o,
                " {} | {} |",
                cpu.map_or("–".into(), fmt_num),
                fit.map_or("–".into(), |f| fmt_num(f.0))
            );
        }
        o.push('\n');
    }
    if has(plan, "ping-pong") {
        let secs = plan.cases.iter().find_map(|c| match c {
            Case::PingPong { secs, .. } => Some(*secs),
            _ => None,
        });
        let _ = write!(
            o,
            "## 3. Ping-pong: {PING_MSG}-byte request/response\n\nEach connection sends a request, \
             waits for its whole echo, checks it, and sends the next, for {} s. Latency is per round \
             trip, client side (exact percentiles of every round trip). Server system calls per round \
             trip are counted by the kernel (`perf stat -e raw_syscalls:sys_enter`, when perf can \
             read tracepoints; else –), and so are its socket receives (`sock:sock_recv_length`: \
             every attempt, by system call or by the ring, found bytes or not; one per round trip \
             is the least).\n\n",
            secs.unwrap_or(0.0)
        );
        table(
            &mut o,
            plan,
            records,
            "ping-pong",
            "conns",
            &[
                col("round trips/s", "rps", true),
                col("p50 µs", "p50_us", false),
                col("p99 µs", "p99_us", false),
                col("p99.9 µs", "p999_us", false),
                col("server CPU µs/rt", "cpu_us_per_rt", true),
                col("syscalls/rt", "syscalls_per_rt", true),
                col("receives/rt", "receives_per_rt", true),
            ],
        );
    }
    if has(plan, "idle") {
        o.push_str(
            "## 4. Idle memory: connections with a buffer-less read pending\n\nWhat each connection \
             adds to the server's RSS (VmRSS): the server first takes 1,000 connections and settles, \
             then N − 1,000 more; the growth between the two readings divided by N − 1,000 is the \
             cost per connection. Costs paid once per process (a thread's malloc arena, stack \
             pages, first table chunks) fall before the first reading. The growth from the empty \
             server divided by N, which does include them, is shown too. User-space memory only: \
             kernel socket memory is not in RSS. \
             100k idle connections are not possible here: the hard RLIMIT_NOFILE is 20000 per process, \
             so neither the server nor the driver can hold 100k sockets. Idle CPU: the server's \
             CPU time (user + system, every thread) while the first 1,000 connections sit silent, \
             as a share of one core.\n\n",
        );
        table(
            &mut o,
            plan,
            records,
            "idle",
            "conns",
            &[
                col("RSS growth B/conn", "rss_per_conn_b", true),
                col("from empty B/conn", "rss_per_conn_from_empty_b", false),
                col("RSS empty MiB", "rss_empty_mib", false),
                col("RSS after MiB", "rss_after_mib", false),
                col("idle CPU % of a core", "idle_cpu_pct", false),
            ],
        );
        o.push_str("What one idle connection holds:\n\n");
        for &imp in &plan.servers {
            let _ = writeln!(o, "* {imp}: {}", imp.idle_description());
        }
        o.push('\n');
    }
    if has(plan, "allocs") {
        o.push_str(
            "## 5. Heap allocations per request in a steady echo loop\n\nA counting global allocator \
             in the server counts alloc/alloc_zeroed/realloc calls. After a warm-up, the count is read \
             before and after K ping-pong round trips; the cost of the read itself (measured with no \
             load) is subtracted. The target for gaio is 0.\n\n",
        );
        table(
            &mut o,
            plan,
            records,
            "allocs",
            "conns",
            &[
                col("allocs per request", "allocs_per_req", false),
                col("allocs counted", "allocs", false),
                col("requests", "requests", false),
            ],
        );
    }
    if has(plan, "cost") {
        o.push_str(
            "## 6. Counted cost per round trip (callgrind)\n\nThe server runs under valgrind's \
             callgrind; after a warm-up the counters are zeroed and each connection does a fixed \
             number of 64-byte round trips. Instructions are the server's user-space instructions \
             (every thread); system calls are counted, not their kernel work. These counts move by \
             a few percent between runs (batch sizes vary), against ±10 % for CPU time on a shared \
             machine. Under valgrind the server \
             is tens of times slower than the load generator, so its batches are larger than in the \
             timed runs. One repetition.\n\n",
        );
        if plan.servers.iter().any(|i| !i.runs_under_valgrind()) {
            o.push_str(
                "gaio-uring is not measured here: valgrind has no io_uring system calls, so a \
                 server on a ring cannot run under it.\n\n",
            );
        }
        table(
            &mut o,
            plan,
            records,
            "cost",
            "conns",
            &[
                col("instructions/rt", "instr_per_rt", true),
                col("system calls/rt", "syscalls_per_rt", true),
                col("round trips", "round_trips", false),
            ],
        );
    }
    if has(plan, "accept-rate") {
        accept_rate(&mut o, machine, plan, records);
    }
    if has(plan, "scaling") {
        super::scaling::section(&mut o, machine, plan, records);
    }
    if has(plan, "udp") {
        udp(&mut o, plan, records);
    }
    let failures: Vec<&Record> = records.iter().filter(|r| r.result.is_err()).collect();
    if !failures.is_empty() {
        o.push_str("## Failed measurements\n\n");
        for r in failures {
            if let Err(e) = &r.result {
                let _ = writeln!(
                    o,
                    "* {} {} {} rep {}: {e}",
                    r.case.scenario(),
                    r.case.label(),
                    r.imp,
                    r.rep
                );
            }
        }
        o.push('\n');
    }
    o
}

/// Section 7: connections per second and server CPU per connection, then
/// every measurement that had failed connections.
fn accept_rate(o: &mut String, machine: &Machine, plan: &Plan, records: &[Record]) {
    let Some(&Case::AcceptRate {
        workers,
        in_flight,
        secs,
        warmup_ms,
    }) = plan.cases.iter().find(|c| c.scenario() == "accept-rate")
    else {
        return;
    };
    let ports = match machine.ephemeral_ports {
        Some((lo, hi)) => format!("{lo}–{hi} ({} ports)", hi - lo + 1),
        None => "unknown".into(),
    };
    let reuse = machine.tcp_tw_reuse.map_or("unknown".into(), |r| r.to_string());
    let _ = write!(
        o,
        "## 7. Accept rate: a new connection per {ACCEPT_MSG}-byte echo\n\n{workers} load threads \
         (non-blocking loops on mio) keep {in_flight} connections in flight each. A connection \
         connects, sets TCP_NODELAY, sends {ACCEPT_MSG} bytes (different from the previous \
         connection's), reads the echo back and checks it, and closes, client first, with a \
         reset (SO_LINGER 0): the server's read fails with ECONNRESET instead of seeing end of \
         stream, and it frees the connection. Its slot opens the next connection at once. After \
         {warmup_ms} ms of load, the connections completed in a {secs} s window are counted. \
         Server CPU here is utime + stime from /proc/PID/stat over the window (±{} ms per \
         reading), because it includes exited threads: std-threads' connection threads end \
         inside the window, which the schedstat sum of the other sections would miss (it is in \
         results.json as `cpu_s_sched`). Client CPU is the load generator's, per connection. \
         Why a reset: with a normal close the client's sockets wait in TIME_WAIT, and above \
         about 14k connections/s the kernel's search for a free ephemeral port (here {ports}, \
         tcp_tw_reuse = {reuse}) tripled the client's CPU per connection whenever the \
         system-wide TIME_WAIT table was not full, so the rate depended on what else had run in \
         the last minute. A reset leaves no TIME_WAIT; it spares every server its FIN and \
         LAST_ACK, about 9 µs per connection measured here, so these figures are lower than a \
         graceful close would give. A connection refused, reset before its echo, closed early, \
         without its echo after {} s, or failing otherwise (out of ports: EADDRNOTAVAIL) is \
         counted in `failed` (over warm-up and window) and listed below; a wrong echo aborts \
         the run.\n\n",
        1000 / machine.clk_tck.max(1),
        CONN_TIMEOUT.as_secs()
    );
    table(
        o,
        plan,
        records,
        "accept-rate",
        "load",
        &[
            col("conns/s", "conns_per_s", true),
            col("server CPU µs/conn", "cpu_us_per_conn", true),
            col("client CPU µs/conn", "client_cpu_us_per_conn", false),
            col("failed", "failed_conns", false),
        ],
    );
    let failed: Vec<(&Record, &Vec<(&str, f64)>)> = records
        .iter()
        .filter(|r| r.case.scenario() == "accept-rate")
        .filter_map(|r| r.result.as_ref().ok().map(|m| (r, m)))
        .filter(|(_, m)| m.iter().any(|(k, v)| *k == "failed_conns" && *v > 0.0))
        .collect();
    if !failed.is_empty() {
        o.push_str("Failed connections:\n\n");
        for (r, m) in failed {
            let kinds: Vec<String> = Failure::ALL
                .iter()
                .filter_map(|k| {
                    m.iter()
                        .find(|(key, v)| *key == k.key() && *v > 0.0)
                        .map(|(key, v)| format!("{key} {v}"))
                })
                .collect();
            let _ = writeln!(o, "* {} rep {}: {}", r.imp, r.rep, kinds.join(", "));
        }
        o.push('\n');
    }
}

/// Section 9: the UDP echo, then every measurement that lost datagrams
/// or had late echoes.
fn udp(o: &mut String, plan: &Plan, records: &[Record]) {
    let Some(&Case::Udp { secs, .. }) = plan.cases.iter().find(|c| c.scenario() == "udp") else {
        return;
    };
    let _ = write!(
        o,
        "## 9. UDP echo: {UDP_MSG}-byte datagrams\n\nEach server echoes every datagram from one UDP \
         socket: gaio keeps {UDP_PENDING_RECEIVES} swap receives pending and sends each datagram back from the swap \
         memory it arrived in (inline on epoll, inline on io_uring, background on epoll); mio runs an \
         edge-triggered loop of recv_from and send_to (a reply that would block is dropped); tokio \
         (either runtime) one task looping recv_from and send_to; std one thread blocking in \
         recv_from. The load is one thread (mio) driving K client sockets, each connected to the \
         server's address with one datagram in flight: it sends {UDP_MSG} bytes (its index, a \
         sequence number, and pattern bytes derived from both), waits for the echo, checks every \
         byte, and sends the next, for {secs} s. A datagram not echoed within {} ms is counted lost \
         and the next one sent; an echo arriving after that is counted late and otherwise ignored; \
         any other echo aborts the run. Latency is per datagram, from its send to its echo. Server \
         CPU, system calls and receives as in section 3 (unpinned, as there). `lost` is the median \
         over the repetitions; every repetition that lost a datagram is listed below.\n\n",
        LOSS_TIMEOUT.as_millis()
    );
    if plan.servers.iter().any(|i| !i.has_udp()) {
        o.push_str(
            "gaio-cores has no UDP echo (its `CoresBuilder` spreads TCP connections): not measured here.\n\n",
        );
    }
    table(
        o,
        plan,
        records,
        "udp",
        "clients",
        &[
            col("round trips/s", "rps", true),
            col("p50 µs", "p50_us", false),
            col("p99 µs", "p99_us", false),
            col("server CPU µs/rt", "cpu_us_per_rt", true),
            col("syscalls/rt", "syscalls_per_rt", true),
            col("receives/rt", "receives_per_rt", true),
            col("lost", "lost", false),
        ],
    );
    let figure = |m: &[(&str, f64)], key: &str| m.iter().find(|(k, _)| *k == key).map_or(0.0, |(_, v)| *v);
    let lossy: Vec<String> = records
        .iter()
        .filter(|r| r.case.scenario() == "udp")
        .filter_map(|r| {
            r.result
                .as_ref()
                .ok()
                .map(|m| (r, figure(m, "lost"), figure(m, "late")))
        })
        .filter(|(_, lost, late)| *lost > 0.0 || *late > 0.0)
        .map(|(r, lost, late)| {
            format!(
                "* {} {} rep {}: lost {lost}, late {late}",
                r.case.label(),
                r.imp,
                r.rep
            )
        })
        .collect();
    if lossy.is_empty() {
        o.push_str("No datagram was lost in any repetition.\n\n");
    } else {
        let _ = writeln!(o, "Lost datagrams:\n\n{}\n", lossy.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Options, Plan};

    #[test]
    fn accept_rate_table_has_ratios_and_lists_failed_connections() {
        let opts = Options::parse(["--quick", "--scenarios", "accept-rate"].map(String::from)).unwrap();
        let plan = Plan::new(&opts);
        let case = plan.cases[0];
        let records: Vec<Record> = Impl::ALL
            .iter()
            .enumerate()
            .map(|(i, &imp)| {
                let mut m = vec![
                    ("conns_per_s", 10_000.0 + i as f64),
                    ("cpu_us_per_conn", if imp == Impl::Mio { 20.0 } else { 30.0 }),
                    ("client_cpu_us_per_conn", 35.0),
                    ("failed_conns", 0.0),
                ];
                m.extend(Failure::ALL.iter().map(|k| (k.key(), 0.0)));
                if imp == Impl::TokioCt {
                    for (k, v) in m.iter_mut() {
                        if *k == "failed_conns" || *k == "reset" {
                            *v = 3.0;
                        }
                    }
                }
                Record {
                    case,
                    imp,
                    rep: 1,
                    result: Ok(m),
                }
            })
            .collect();
        let machine = Machine {
            ephemeral_ports: Some((32768, 60999)),
            tcp_tw_reuse: Some(2),
            ..Machine::for_tests()
        };
        let md = markdown(&machine, &plan, &records, Duration::from_secs(1));
        assert!(md.contains("## 7. Accept rate"), "{md}");
        assert!(md.contains("32768–60999 (28232 ports)"), "{md}");
        assert!(
            md.contains("| 32 in flight | gaio-inline | 10000 | 10000–10000 | 1.00 | 1.00 | 30.0 | 30.0–30.0 | 1.50 | 1.00 | 35.0 | 0 |"),
            "{md}"
        );
        assert!(md.contains("* tokio-ct rep 1: reset 3"), "{md}");
    }

    #[test]
    fn udp_table_skips_gaio_cores_and_lists_lost_datagrams() {
        let args = [
            "--quick",
            "--scenarios",
            "udp",
            "--servers",
            "gaio-uring,mio,gaio-cores",
        ];
        let plan = Plan::new(&Options::parse(args.map(String::from)).unwrap());
        let records: Vec<Record> = plan
            .cases
            .iter()
            .flat_map(|&case| plan.servers_for(&case).into_iter().map(move |imp| (case, imp)))
            .map(|(case, imp)| {
                let lost = if imp == Impl::GaioUring { 2.0 } else { 0.0 };
                Record {
                    case,
                    imp,
                    rep: 1,
                    result: Ok(vec![
                        ("rps", if imp == Impl::Mio { 20_000.0 } else { 10_000.0 }),
                        ("p50_us", 50.0),
                        ("p99_us", 70.0),
                        ("cpu_us_per_rt", 20.0),
                        ("syscalls_per_rt", 2.0),
                        ("receives_per_rt", 1.0),
                        ("lost", lost),
                        ("late", 0.0),
                    ]),
                }
            })
            .collect();
        let machine = Machine::for_tests();
        let md = markdown(&machine, &plan, &records, Duration::from_secs(1));
        assert!(md.contains("## 9. UDP echo: 64-byte datagrams"), "{md}");
        assert!(md.contains("gaio-cores has no UDP echo"), "{md}");
        assert!(!md.contains("| gaio-cores |"), "{md}");
        assert!(
            md.contains("| 16 clients | gaio-uring | 10000 | 10000–10000 | 0.50 | 50.0 | 70.0 | 20.0 | 20.0–20.0 | 1.00 | 2.00 | 2.00–2.00 | 1.00 | 1.00 | 1.00–1.00 | 1.00 | 2.00 |"),
            "{md}"
        );
        assert!(md.contains("* 1 client gaio-uring rep 1: lost 2, late 0"), "{md}");
        assert!(!md.contains("mio rep 1: lost"), "{md}");
    }
}
