//! The report of `bench --clients`: Markdown tables and raw JSON.

use std::fmt::Write;

use serde_json::{json, Value};

use super::servers::{Proto, Role, Server};
use super::{Measured, Outcome, Results, Workload};
use crate::driver::report::fmt_num;
use crate::driver::stats::median;

/// Target for the gaio example's server CPU per request ÷ its tokio twin's.
pub const TARGET_VS_TOKIO: f64 = 0.9;
/// Target for the same ÷ nginx's or redis-server's.
pub const TARGET_VS_REFERENCE: f64 = 0.8;

/// The measurements of workload `w` against `server`.
fn done<'a>(r: &'a Results, w: usize, server: Server) -> impl Iterator<Item = &'a Measured> + 'a {
    r.runs
        .iter()
        .filter(move |x| x.workload == w && x.server == server)
        .filter_map(|x| match &x.outcome {
            Outcome::Done(m) => Some(m),
            _ => None,
        })
}

/// Median of `f` over the measurements of `w` against `server`.
fn med(r: &Results, w: usize, server: Server, f: impl Fn(&Measured) -> Option<f64>) -> Option<f64> {
    median(&done(r, w, server).filter_map(f).collect::<Vec<_>>())
}

/// Smallest and largest of `f` over the same.
fn range(r: &Results, w: usize, server: Server, f: impl Fn(&Measured) -> Option<f64>) -> Option<(f64, f64)> {
    done(r, w, server).filter_map(f).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
    })
}

fn rps(m: &Measured) -> Option<f64> {
    Some(m.out.rps)
}

fn cpu(m: &Measured) -> Option<f64> {
    m.cpu_per_100k()
}

fn user(m: &Measured) -> Option<f64> {
    m.user_per_100k()
}

/// Where the CPU goes: the user-space part of each server's CPU per
/// request (its own code: I/O layer and protocol) and the kernel's share of
/// the total, medians, with gaio ÷ tokio on the user-space part.
fn user_space_table(r: &Results) -> String {
    let mut o = String::from(
        "### Where the CPU goes\n\n\
         User-space CPU (`utime`) per 100k requests: the server's own code, the I/O layer and the \
         protocol; the rest of the CPU above is the kernel's work for the server's system calls. \
         Kernel % = the kernel's share of each server's CPU. Medians; tick resolution (10 ms per \
         run), so small figures are coarse.\n\n\
         | protocol | workload | gaio user s/100k | tokio twin | gaio ÷ tokio | nginx / redis-server | \
         kernel % gaio / tokio / it |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for (w, workload) in r.workloads.iter().enumerate() {
        let p = workload.proto();
        if client_missing(r, p).is_some() {
            continue;
        }
        let [g, t, x] = Role::ALL.map(|role| Server { proto: p, role });
        let kernel = |s: Server| match (med(r, w, s, user), med(r, w, s, cpu)) {
            (Some(u), Some(c)) if c > 0.0 => format!("{:.0}", 100.0 * (1.0 - u / c)),
            _ => "–".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            p.name(),
            workload.label(),
            opt(med(r, w, g, user)),
            opt(med(r, w, t, user)),
            ratio(med(r, w, g, user), med(r, w, t, user), None),
            opt(med(r, w, x, user)),
            kernel(g),
            kernel(t),
            kernel(x),
        );
    }
    o.push('\n');
    o
}

/// How a (workload, server) pair went over all repetitions.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Every run was measured and answered correctly.
    Ok,
    /// Measured, but wrk saw socket errors in some runs.
    SocketErrors(u64),
    /// A run failed or got non-2xx responses: why.
    Failed(String),
    /// Never ran: why.
    NotRun(String),
}

/// The status of workload `w` against `server`.
pub fn status(r: &Results, w: usize, server: Server) -> Status {
    let runs: Vec<&Outcome> = r
        .runs
        .iter()
        .filter(|x| x.workload == w && x.server == server)
        .map(|x| &x.outcome)
        .collect();
    let n = runs.len();
    let failed: Vec<&String> = runs
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    if let Some(first) = failed.first() {
        return Status::Failed(format!("{first} ({} of {n} runs)", failed.len()));
    }
    let measured: Vec<&Measured> = done(r, w, server).collect();
    if measured.is_empty() {
        let why = runs.iter().find_map(|o| match o {
            Outcome::NotRun(e) => Some(e.clone()),
            _ => None,
        });
        return Status::NotRun(why.unwrap_or_else(|| "no runs".into()));
    }
    let bad: Vec<u64> = measured
        .iter()
        .map(|m| m.out.non_2xx)
        .filter(|&v| v > 0)
        .collect();
    if !bad.is_empty() {
        return Status::Failed(format!(
            "{} non-2xx responses in {} of {} runs",
            bad.iter().sum::<u64>(),
            bad.len(),
            measured.len()
        ));
    }
    match measured.iter().map(|m| m.out.errors.total()).sum::<u64>() {
        0 => Status::Ok,
        e => Status::SocketErrors(e),
    }
}

impl Status {
    fn cell(&self) -> String {
        match self {
            Status::Ok => "ok".into(),
            Status::SocketErrors(n) => format!("ok, {n} socket errors"),
            Status::Failed(e) => format!("**FAILED**: {}", e.replace('|', "/")),
            Status::NotRun(e) => format!("not run: {e}"),
        }
    }
}

/// "server, workload: why" for every failed pair; the workloads of a
/// server that failed alike (a server that did not start) on one line.
pub fn failures(r: &Results) -> Vec<String> {
    let mut groups: Vec<(Server, String, Vec<String>)> = Vec::new();
    for (w, workload) in r.workloads.iter().enumerate() {
        for role in Role::ALL {
            let server = Server {
                proto: workload.proto(),
                role,
            };
            if let Status::Failed(e) = status(r, w, server) {
                match groups.iter_mut().find(|(s, x, _)| *s == server && *x == e) {
                    Some(g) => g.2.push(workload.label()),
                    None => groups.push((server, e, vec![workload.label()])),
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(server, e, labels)| format!("{} {}: {e}", server.name(), labels.join("; ")))
        .collect()
}

/// "wrk missing (apt-get install wrk)" when the load generator of
/// `proto` is missing.
fn client_missing(r: &Results, proto: Proto) -> Option<String> {
    let name = match proto {
        Proto::Http => "wrk",
        Proto::Resp => "redis-benchmark",
    };
    r.tool(name).filter(|t| t.path.is_none()).map(|t| t.missing())
}

fn reference(proto: Proto) -> &'static str {
    Server {
        proto,
        role: Role::Reference,
    }
    .name()
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".into(), fmt_num)
}

fn spread(v: Option<(f64, f64)>) -> String {
    v.map_or("–".into(), |(lo, hi)| {
        format!("{}–{}", fmt_num(lo), fmt_num(hi))
    })
}

/// `a ÷ b`, marked against `target` (lower is better) when given.
fn ratio(a: Option<f64>, b: Option<f64>, target: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let q = a / b;
            match target {
                Some(t) if q <= t => format!("{q:.2} ✓"),
                Some(_) => format!("{q:.2} ✗"),
                None => format!("{q:.2}"),
            }
        }
        _ => "–".into(),
    }
}

fn mib(b: f64) -> String {
    fmt_num(b / (1024.0 * 1024.0))
}

/// The whole report as Markdown.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# gaio's example servers against wrk and redis-benchmark\n");
    let _ = writeln!(
        o,
        "Machine: {} CPUs, {}; Linux {}; {}. Loopback (127.0.0.1) only; {}.\n",
        m.cpus, m.model, m.kernel, m.rustc, r.pinning.note
    );
    let (n1, n16) = r.opts.resp_requests;
    let _ = writeln!(
        o,
        "Medians of {reps} repetition{plural}. In each repetition the three servers of a protocol are \
         started fresh, once each, checked with one request of every kind the load sends, then \
         measured on every workload of that protocol in turn; within a workload the three take \
         turns, in an order that rotates with the repetition and the workload. wrk: one thread \
         (`-t1`), {d} s per run; pipelined = 16 requests per write (TechEmpower's pipeline.lua, \
         `pipeline.lua` next to this report), and its latency is per batch of 16. redis-benchmark: \
         `-c 50`, `-n {n1}` at `-P 1` and `-n {n16}` at `-P 16`, one command per run \
         (`PING_MBULK` = `PING` sent as an array). Server CPU = utime + stime of the server process \
         (/proc/PID/stat, all its threads; CLK_TCK {tck}) from just before the client starts to \
         just after it exits, divided by the requests the client completed, per 100,000 requests. \
         nginx runs as one process (`master_process off`, one worker), `/plaintext` answered from \
         its configuration; redis-server without persistence. The run took {t:.0} s.\n",
        reps = r.opts.reps,
        plural = if r.opts.reps == 1 { "" } else { "s" },
        d = r.opts.duration,
        tck = m.clk_tck,
        t = r.elapsed.as_secs_f64(),
    );
    o.push_str("Tools: ");
    let tools: Vec<String> = r
        .tools
        .iter()
        .map(|t| match &t.path {
            Some(p) => format!("{} ({}, {})", t.name, t.version, p.display()),
            None => format!("**{}**", t.missing()),
        })
        .collect();
    let _ = writeln!(o, "{}.\n", tools.join("; "));
    let missing: Vec<String> = r
        .tools
        .iter()
        .filter(|t| t.path.is_none())
        .map(|t| t.missing())
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            o,
            "**Not run:** {}: the comparisons that need them are marked \"not run\". \
             `apt-get install wrk nginx-light redis-tools redis-server` installs all four.\n",
            missing.join(", ")
        );
    }

    o.push_str("## Summary\n\n");
    let failed = failures(r);
    if failed.is_empty() {
        o.push_str(
            "No failures: every measured run completed, with no non-2xx responses and no client errors.\n\n",
        );
    } else {
        for f in &failed {
            let _ = writeln!(o, "- **FAILED** {}", f.replace('|', "/"));
        }
        o.push('\n');
    }

    let _ = writeln!(
        o,
        "## Targets: server CPU per request, gaio example ÷ peer\n\n\
         Lower is better; targets ≤ {TARGET_VS_TOKIO:.2}× the tokio twin, ≤ {TARGET_VS_REFERENCE:.2}× \
         nginx / redis-server. Medians of server CPU s per 100k requests; the requests/s ratios \
         (higher is better) are for reference.\n"
    );
    let mut rows = String::new();
    for (w, workload) in r.workloads.iter().enumerate() {
        let p = workload.proto();
        if client_missing(r, p).is_some() {
            continue;
        }
        let [g, t, x] = Role::ALL.map(|role| Server { proto: p, role });
        let (cg, ct, cx) = (med(r, w, g, cpu), med(r, w, t, cpu), med(r, w, x, cpu));
        let (rg, rt, rx) = (med(r, w, g, rps), med(r, w, t, rps), med(r, w, x, rps));
        // A figure of a pair that failed somewhere is marked so.
        let fig = |s: Server, v: Option<f64>| match status(r, w, s) {
            Status::Failed(_) => format!("{} (FAILED)", opt(v)),
            _ => opt(v),
        };
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            p.name(),
            workload.label(),
            fig(g, cg),
            fig(t, ct),
            ratio(cg, ct, Some(TARGET_VS_TOKIO)),
            fig(x, cx),
            reference(p),
            ratio(cg, cx, Some(TARGET_VS_REFERENCE)),
            ratio(rg, rt, None),
            ratio(rg, rx, None),
        );
    }
    if rows.is_empty() {
        o.push_str("Nothing measured: no load generator.\n\n");
    } else {
        o.push_str(
            "| protocol | workload | gaio CPU s/100k | tokio twin | gaio ÷ tokio | nginx / redis-server | gaio ÷ it | req/s ÷ tokio | req/s ÷ it |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        o.push_str(&rows);
        o.push('\n');
        o.push_str(&user_space_table(r));
    }

    for proto in [Proto::Http, Proto::Resp] {
        if !r.workloads.iter().any(|w| w.proto() == proto) {
            continue;
        }
        match proto {
            Proto::Http => o.push_str(
                "## HTTP: wrk, `GET /plaintext`\n\nnon-2xx: responses with another status, summed over \
                 the runs (any makes the pair FAILED). Socket errors (connect, read, write, timeout) \
                 summed over the runs.\n\n",
            ),
            Proto::Resp => o.push_str(
                "## RESP: redis-benchmark\n\nredis-benchmark stops at the first error reply and \
                 exits non-zero, which fails the run.\n\n",
            ),
        }
        if let Some(why) = client_missing(r, proto) {
            let _ = writeln!(o, "Not run: {why}.\n");
            continue;
        }
        let http = proto == Proto::Http;
        o.push_str("| workload | server | requests/s | min–max | server CPU s/100k req | min–max | p50 ms | p99 ms | requests |");
        if http {
            o.push_str(" non-2xx | socket errors |");
        }
        o.push_str(" status |\n|---|---|---:|---:|---:|---:|---:|---:|---:|");
        if http {
            o.push_str("---:|---:|");
        }
        o.push_str("---|\n");
        for (w, workload) in r.workloads.iter().enumerate().filter(|(_, w)| w.proto() == proto) {
            for role in Role::ALL {
                let s = Server { proto, role };
                let _ = write!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    workload.label(),
                    s.name(),
                    opt(med(r, w, s, rps)),
                    spread(range(r, w, s, rps)),
                    opt(med(r, w, s, cpu)),
                    spread(range(r, w, s, cpu)),
                    opt(med(r, w, s, |m| m.out.p50_ms)),
                    opt(med(r, w, s, |m| m.out.p99_ms)),
                    opt(med(r, w, s, |m| Some(m.out.requests as f64))),
                );
                if http && done(r, w, s).next().is_none() {
                    o.push_str(" – | – |");
                } else if http {
                    let non2xx: u64 = done(r, w, s).map(|m| m.out.non_2xx).sum();
                    let e = done(r, w, s).fold([0u64; 4], |mut a, m| {
                        let x = m.out.errors;
                        a[0] += x.connect;
                        a[1] += x.read;
                        a[2] += x.write;
                        a[3] += x.timeout;
                        a
                    });
                    let errors = if e.iter().sum::<u64>() == 0 {
                        "0".to_string()
                    } else {
                        format!(
                            "connect {}, read {}, write {}, timeout {}",
                            e[0], e[1], e[2], e[3]
                        )
                    };
                    let _ = write!(o, " {non2xx} | {errors} |");
                }
                let _ = writeln!(o, " {} |", status(r, w, s).cell());
            }
        }
        o.push('\n');
    }

    o.push_str(
        "## Server memory and shutdown\n\nPeak RSS (VmHWM) of each server process over a repetition \
         (all its workloads), median over the repetitions; how it stopped on SIGTERM (SIGKILL after \
         5 s).\n\n",
    );
    if r.servers.is_empty() {
        o.push_str("No server was started.\n");
    } else {
        o.push_str("| server | peak RSS MiB | min–max | stopped |\n|---|---:|---:|---|\n");
    }
    for &proto in &r.opts.protos {
        for role in Role::ALL {
            let s = Server { proto, role };
            let recs: Vec<_> = r.servers.iter().filter(|x| x.server == s).collect();
            if recs.is_empty() {
                continue;
            }
            let peaks: Vec<f64> = recs.iter().filter_map(|x| x.peak_rss.map(|b| b as f64)).collect();
            let lo_hi = peaks.iter().fold(None, |acc: Option<(f64, f64)>, &v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            });
            let clean = recs
                .iter()
                .filter(|x| x.stop.starts_with("exit 0 after SIGTERM"))
                .count();
            let mut stopped = format!("exit 0 on SIGTERM in {clean} of {}", recs.len());
            if let Some(other) = recs.iter().find(|x| !x.stop.starts_with("exit 0 after SIGTERM")) {
                let _ = write!(stopped, "; rep {}: {}", other.rep, other.stop.replace('|', "/"));
            }
            let _ = writeln!(
                o,
                "| {} | {} | {} | {stopped} |",
                s.name(),
                median(&peaks).map_or("–".into(), mib),
                lo_hi.map_or("–".into(), |(lo, hi)| format!("{}–{}", mib(lo), mib(hi))),
            );
        }
    }
    o.push('\n');

    o.push_str(
        "## Lines of code\n\nNon-blank, non-comment lines of each example's source, without a \
         trailing `#[cfg(test)]` module (`gaio_bench::loc`). Shared protocol code is not counted.\n\n\
         | protocol | gaio example | lines | tokio twin | lines | gaio ÷ tokio |\n|---|---|---:|---|---:|---:|\n",
    );
    for &proto in &r.opts.protos {
        let find = |role| {
            r.loc
                .iter()
                .find(|l| l.server.proto == proto && l.server.role == role)
        };
        let (Some(g), Some(t)) = (find(Role::Gaio), find(Role::Tokio)) else {
            continue;
        };
        let cell = |l: &super::Loc| match &l.lines {
            Ok(n) => n.to_string(),
            Err(_) => "missing".to_string(),
        };
        let q = match (&g.lines, &t.lines) {
            (Ok(a), Ok(b)) => ratio(Some(*a as f64), Some(*b as f64), None),
            _ => "–".into(),
        };
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | `{}` | {} | {q} |",
            proto.name(),
            g.path,
            cell(g),
            t.path,
            cell(t)
        );
    }
    for l in r.loc.iter().filter(|l| l.lines.is_err()) {
        if let Err(e) = &l.lines {
            let _ = writeln!(o, "\n{}: {e}", l.path);
        }
    }
    o.push('\n');
    o
}

fn workload_json(w: &Workload) -> Value {
    match *w {
        Workload::Http { conns, pipeline } => json!({
            "protocol": "http",
            "client": "wrk",
            "label": w.label(),
            "conns": conns,
            "pipeline": pipeline,
            "threads": 1,
        }),
        Workload::Resp {
            test,
            pipeline,
            requests,
        } => json!({
            "protocol": "resp",
            "client": "redis-benchmark",
            "label": w.label(),
            "test": test.csv_name(),
            "pipeline": pipeline,
            "requests": requests,
            "clients": super::redis::CLIENTS,
        }),
    }
}

fn measured_json(m: &Measured) -> Value {
    json!({
        "requests": m.out.requests,
        "rps": m.out.rps,
        "p50_ms": m.out.p50_ms,
        "p99_ms": m.out.p99_ms,
        "non_2xx": m.out.non_2xx,
        "socket_errors": {
            "connect": m.out.errors.connect,
            "read": m.out.errors.read,
            "write": m.out.errors.write,
            "timeout": m.out.errors.timeout,
        },
        "wall_s": m.wall_s,
        "server_cpu_s": m.cpu_s,
        "server_user_s": m.user_s,
        "server_cpu_s_schedstat": m.cpu_s_sched,
        "server_cpu_s_per_100k": m.cpu_per_100k(),
        "server_peak_rss_bytes": m.peak_rss,
        "notes": m.out.notes,
    })
}

/// Every measurement, every median and ratio, as JSON.
pub fn json(r: &Results) -> Value {
    let runs: Vec<Value> = r
        .runs
        .iter()
        .map(|x| {
            let mut v = json!({
                "rep": x.rep,
                "workload": workload_json(&r.workloads[x.workload]),
                "server": x.server.name(),
            });
            match &x.outcome {
                Outcome::Done(m) => v["result"] = measured_json(m),
                Outcome::Failed(e) => v["failed"] = json!(e),
                Outcome::NotRun(e) => v["not_run"] = json!(e),
            }
            v
        })
        .collect();
    let mut medians = Vec::new();
    for (w, workload) in r.workloads.iter().enumerate() {
        let p = workload.proto();
        let [g, t, x] = Role::ALL.map(|role| Server { proto: p, role });
        let ratio_of = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let servers: Vec<Value> = [g, t, x]
            .into_iter()
            .map(|s| {
                let st = status(r, w, s);
                json!({
                    "server": s.name(),
                    "rps": med(r, w, s, rps),
                    "server_cpu_s_per_100k": med(r, w, s, cpu),
                    "p50_ms": med(r, w, s, |m| m.out.p50_ms),
                    "p99_ms": med(r, w, s, |m| m.out.p99_ms),
                    "requests": med(r, w, s, |m| Some(m.out.requests as f64)),
                    "server_peak_rss_bytes": med(r, w, s, |m| m.peak_rss.map(|b| b as f64)),
                    "non_2xx_total": done(r, w, s).map(|m| m.out.non_2xx).sum::<u64>(),
                    "socket_errors_total": done(r, w, s).map(|m| m.out.errors.total()).sum::<u64>(),
                    "status": match &st {
                        Status::Ok => "ok".to_string(),
                        Status::SocketErrors(n) => format!("ok, {n} socket errors"),
                        Status::Failed(e) => format!("FAILED: {e}"),
                        Status::NotRun(e) => format!("not run: {e}"),
                    },
                })
            })
            .collect();
        let (cg, ct, cx) = (med(r, w, g, cpu), med(r, w, t, cpu), med(r, w, x, cpu));
        medians.push(json!({
            "workload": workload_json(workload),
            "servers": servers,
            "gaio_cpu_per_request_vs_tokio": ratio_of(cg, ct),
            "gaio_cpu_per_request_vs_reference": ratio_of(cg, cx),
            "reference": reference(p),
            "gaio_rps_vs_tokio": ratio_of(med(r, w, g, rps), med(r, w, t, rps)),
            "gaio_rps_vs_reference": ratio_of(med(r, w, g, rps), med(r, w, x, rps)),
        }));
    }
    let m = &r.machine;
    json!({
        "kind": "clients",
        "repetitions": r.opts.reps,
        "duration_s": r.opts.duration,
        "resp_requests": {"p1": r.opts.resp_requests.0, "p16": r.opts.resp_requests.1},
        "elapsed_s": r.elapsed.as_secs_f64(),
        "targets": {"cpu_vs_tokio": TARGET_VS_TOKIO, "cpu_vs_reference": TARGET_VS_REFERENCE},
        "machine": {
            "cpus": m.cpus,
            "model": m.model,
            "kernel": m.kernel,
            "rustc": m.rustc,
            "clk_tck": m.clk_tck,
        },
        "pinning": {
            "server_cpu": r.pinning.pinned.as_ref().map(|p| p.1),
            "client_cpu": r.pinning.pinned.as_ref().map(|p| p.2),
            "note": r.pinning.note,
        },
        "tools": r.tools.iter().map(|t| json!({
            "name": t.name,
            "package": t.package,
            "path": t.path.as_ref().map(|p| p.display().to_string()),
            "version": t.version,
        })).collect::<Vec<_>>(),
        "servers": r.servers.iter().map(|s| json!({
            "rep": s.rep,
            "server": s.server.name(),
            "peak_rss_bytes": s.peak_rss,
            "stop": s.stop,
        })).collect::<Vec<_>>(),
        "loc": r.loc.iter().map(|l| json!({
            "server": l.server.name(),
            "path": l.path,
            "lines": l.lines.as_ref().ok(),
            "error": l.lines.as_ref().err(),
        })).collect::<Vec<_>>(),
        "failures": failures(r),
        "runs": runs,
        "medians": medians,
    })
}
