//! `bench --clients`: the example servers against real load generators.
//!
//! HTTP: wrk against the gaio example `http_server`, its tokio twin
//! `tokio_http_server` and nginx (one process, one worker), `GET
//! /plaintext`, plain and 16-deep pipelined, at 64 and 512 connections.
//! RESP: redis-benchmark against `resp_server`, `tokio_resp_server` and
//! redis-server: `PING` (as an array), `SET`, `GET`, unpipelined and 16
//! deep, 50 connections.
//!
//! In each repetition the three servers of a protocol are started fresh
//! once, each checked with one request of every kind the load will send,
//! and then measured on every workload of the protocol; within a workload
//! they take turns, in an order that rotates with the repetition and the
//! workload, so drifts of a shared, noisy machine hit them alike. Each
//! figure reported is the median over the repetitions. Servers run on one
//! CPU and the load generators on another (`taskset`) when two are
//! available. A missing tool (wrk, nginx, redis-benchmark, redis-server) or
//! example binary skips what needs it, and the report says so; nothing is
//! installed.

mod procs;
mod redis;
mod report;
mod servers;
mod wrk;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::procs::{find_tool, Pinning};
use self::redis::Test;
use self::servers::{Launch, Proto, Role, Running, Server};
use crate::procfs::{CpuTime, Machine};

/// Command-line options of `bench --clients`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repetitions (`--reps`, default 5).
    pub reps: usize,
    /// Seconds of each wrk run (`--duration`, default 2); also scales the
    /// redis-benchmark request counts.
    pub duration: u64,
    /// Where the report goes (`--out`, default `target/bench/clients`).
    pub out: Option<PathBuf>,
    /// Where the example binaries are (`--examples`, default
    /// `target/release/examples`).
    pub examples: Option<PathBuf>,
    /// Protocols to run (`--only http|resp`, default both).
    pub protos: Vec<Proto>,
    /// redis-benchmark `-n` for `-P 1` and `-P 16` (`--resp-requests A,B`;
    /// default 75,000 and 1,000,000 per second of `--duration`:
    /// redis-server here serves 70–90k requests/s unpipelined and about
    /// 1.4M pipelined with 50 connections, so a run takes 1.5–2 s at the
    /// default, and the whole default run about 6 minutes).
    pub resp_requests: (u64, u64),
}

/// The usage line.
pub const USAGE: &str = "usage: bench --clients [--reps N] [--duration SECS] [--out DIR] \
                         [--examples DIR] [--only http|resp] [--resp-requests N_P1,N_P16]";

impl Options {
    /// Parses the arguments after `--clients` (which may appear among them).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            reps: 5,
            duration: 2,
            out: None,
            examples: None,
            protos: vec![Proto::Http, Proto::Resp],
            resp_requests: (0, 0),
        };
        let mut requests = None;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value; {USAGE}"));
            let positive = |v: String, what: &str| -> Result<u64, String> {
                match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{what} must be a positive integer, not {v:?}")),
                }
            };
            match arg.as_str() {
                "--clients" => {}
                "--reps" => o.reps = positive(value()?, "--reps")? as usize,
                "--duration" => o.duration = positive(value()?, "--duration")?,
                "--out" => o.out = Some(PathBuf::from(value()?)),
                "--examples" => o.examples = Some(PathBuf::from(value()?)),
                "--only" => {
                    o.protos = match value()?.as_str() {
                        "http" => vec![Proto::Http],
                        "resp" => vec![Proto::Resp],
                        v => return Err(format!("--only takes http or resp, not {v:?}")),
                    }
                }
                "--resp-requests" => {
                    let v = value()?;
                    let (a, b) = v
                        .split_once(',')
                        .ok_or_else(|| format!("--resp-requests takes two counts, N_P1,N_P16, not {v:?}"))?;
                    requests = Some((
                        positive(a.to_string(), "--resp-requests")?,
                        positive(b.to_string(), "--resp-requests")?,
                    ));
                }
                _ => return Err(format!("unknown argument {arg:?}; {USAGE}")),
            }
        }
        o.resp_requests = requests.unwrap_or((75_000 * o.duration, 1_000_000 * o.duration));
        Ok(o)
    }
}

/// One load: what a client does to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// wrk, `-t1 -c conns`, `pipeline` requests per write (1 or 16).
    Http {
        /// Connections.
        conns: usize,
        /// Requests per write.
        pipeline: usize,
    },
    /// redis-benchmark `-c 50 -P pipeline -n requests -t test`.
    Resp {
        /// The command.
        test: Test,
        /// Requests in flight per connection.
        pipeline: usize,
        /// Requests in all.
        requests: u64,
    },
}

impl Workload {
    /// The protocol it speaks.
    pub fn proto(&self) -> Proto {
        match self {
            Workload::Http { .. } => Proto::Http,
            Workload::Resp { .. } => Proto::Resp,
        }
    }

    /// The name in tables.
    pub fn label(&self) -> String {
        match *self {
            Workload::Http { conns, pipeline: 1 } => format!("plain, {conns} conns"),
            Workload::Http { conns, pipeline } => format!("pipelined ×{pipeline}, {conns} conns"),
            Workload::Resp { test, pipeline, .. } => format!("{} -P {pipeline}", test.csv_name()),
        }
    }

    /// Every workload of the plan, in run order.
    pub fn plan(opts: &Options) -> Vec<Workload> {
        let mut w = Vec::new();
        for proto in &opts.protos {
            match proto {
                Proto::Http => {
                    for pipeline in [1, wrk::PIPELINE] {
                        for conns in [64, 512] {
                            w.push(Workload::Http { conns, pipeline });
                        }
                    }
                }
                Proto::Resp => {
                    for (pipeline, requests) in [(1, opts.resp_requests.0), (16, opts.resp_requests.1)] {
                        for test in Test::ALL {
                            w.push(Workload::Resp {
                                test,
                                pipeline,
                                requests,
                            });
                        }
                    }
                }
            }
        }
        w
    }
}

/// What a load generator reported.
#[derive(Debug, Clone, Default)]
pub struct ClientOutput {
    /// Requests completed (responses received).
    pub requests: u64,
    /// Requests per second, as the client computed it.
    pub rps: f64,
    /// Median latency in ms (wrk: per request, or per batch of 16 when
    /// pipelined; redis-benchmark: per request).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in ms.
    pub p99_ms: Option<f64>,
    /// Responses with a status other than 2xx or 3xx (wrk).
    pub non_2xx: u64,
    /// wrk's socket errors.
    pub errors: SocketErrors,
    /// Anything else the client said worth keeping (warnings).
    pub notes: Vec<String>,
}

/// wrk's "Socket errors" line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketErrors {
    /// Failed connects.
    pub connect: u64,
    /// Failed reads (connections closed by the server count here).
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Requests that got no answer within wrk's timeout (2 s).
    pub timeout: u64,
}

impl SocketErrors {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The client's figures.
    pub out: ClientOutput,
    /// Wall time of the client process, in seconds.
    pub wall_s: f64,
    /// Server CPU seconds over the client's run (`utime + stime`).
    pub cpu_s: f64,
    /// The same from `/proc/PID/task/*/schedstat` (live threads only).
    pub cpu_s_sched: Option<f64>,
    /// The user-space part of `cpu_s` (`utime`): the server's own code
    /// (I/O layer and protocol), without the kernel's work for it.
    pub user_s: f64,
    /// The server's peak RSS (`VmHWM`) right after the run.
    pub peak_rss: Option<u64>,
}

impl Measured {
    /// Server CPU seconds per 100,000 requests.
    pub fn cpu_per_100k(&self) -> Option<f64> {
        (self.out.requests > 0).then(|| self.cpu_s / self.out.requests as f64 * 1e5)
    }

    /// Server user-space CPU seconds per 100,000 requests.
    pub fn user_per_100k(&self) -> Option<f64> {
        (self.out.requests > 0).then(|| self.user_s / self.out.requests as f64 * 1e5)
    }
}

/// How a measurement went.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A tool or binary is missing: the reason.
    NotRun(String),
    /// The server or the client failed: why.
    Failed(String),
    /// Figures.
    Done(Measured),
}

/// One measurement's record.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Repetition, from 1.
    pub rep: usize,
    /// Index into the plan's workloads.
    pub workload: usize,
    /// Against which server.
    pub server: Server,
    /// The result.
    pub outcome: Outcome,
}

/// A server's life over one repetition.
#[derive(Debug, Clone)]
pub struct ServerRecord {
    /// Repetition, from 1.
    pub rep: usize,
    /// Which.
    pub server: Server,
    /// Peak RSS (`VmHWM`) before it was stopped.
    pub peak_rss: Option<u64>,
    /// How it stopped (or why it did not start).
    pub stop: String,
}

/// A tool the run uses, and where it was found.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Program name.
    pub name: &'static str,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// Its path, if found.
    pub path: Option<PathBuf>,
    /// Its version line.
    pub version: String,
}

impl Tool {
    fn find(name: &'static str, package: &'static str, version_args: &[&str]) -> Tool {
        let path = find_tool(name);
        let version = path
            .as_ref()
            .map(|p| procs::version_line(p, version_args))
            .unwrap_or_default();
        Tool {
            name,
            package,
            path,
            version,
        }
    }

    /// "wrk missing (apt-get install wrk)".
    pub fn missing(&self) -> String {
        format!("{} missing (apt-get install {})", self.name, self.package)
    }
}

/// Lines of code of one example.
#[derive(Debug, Clone)]
pub struct Loc {
    /// Which server.
    pub server: Server,
    /// Its source, relative to the workspace root.
    pub path: &'static str,
    /// Its count, or why there is none.
    pub lines: Result<usize, String>,
}

/// Everything the report is made from.
#[derive(Debug)]
pub struct Results {
    /// The options.
    pub opts: Options,
    /// This machine.
    pub machine: Machine,
    /// Where servers and clients ran.
    pub pinning: Pinning,
    /// wrk, nginx, redis-benchmark, redis-server.
    pub tools: Vec<Tool>,
    /// The workloads, in run order.
    pub workloads: Vec<Workload>,
    /// Every measurement.
    pub runs: Vec<RunRecord>,
    /// Every server start and stop.
    pub servers: Vec<ServerRecord>,
    /// Lines of code of the examples.
    pub loc: Vec<Loc>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Results {
    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// The workspace root (for the examples' sources).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The three servers of `proto`.
fn servers_of(proto: Proto) -> [Server; 3] {
    Role::ALL.map(|role| Server { proto, role })
}

/// Runs the whole comparison. `Err` when a setup step fails, or when
/// some server answered wrongly or failed (the report is written first).
pub fn run(opts: &Options) -> Result<(), String> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let release = exe
        .parent()
        .ok_or("no directory above the bench binary")?
        .to_path_buf();
    let examples = opts.examples.clone().unwrap_or_else(|| release.join("examples"));
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => release
            .parent()
            .map(|t| t.join("bench").join("clients"))
            .ok_or("cannot place target/bench/clients")?,
    };
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    // Servers and clients inherit it: nginx's 4096 worker connections.
    gaio_testkit::nofile::raise_soft_limit_to_hard();

    let tools = vec![
        Tool::find("wrk", "wrk", &["-v"]),
        Tool::find("nginx", "nginx-light", &["-v"]),
        Tool::find("redis-benchmark", "redis-tools", &["--version"]),
        Tool::find("redis-server", "redis-server", &["--version"]),
    ];
    for t in tools.iter().filter(|t| t.path.is_none()) {
        eprintln!("bench: {}: its comparisons are skipped", t.missing());
    }
    let tool = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or("unknown tool")
    };
    let launch_of = |s: Server| -> Result<Launch, String> {
        Ok(match s.role {
            Role::Gaio | Role::Tokio => {
                let p = examples.join(s.name());
                if p.exists() {
                    Launch::Example(p)
                } else {
                    Launch::Missing(format!(
                        "{} missing (cargo xtask bench --clients builds it)",
                        p.display()
                    ))
                }
            }
            Role::Reference => {
                let t = tool(s.name())?;
                match (&t.path, s.proto) {
                    (None, _) => Launch::Missing(t.missing()),
                    (Some(p), Proto::Http) => Launch::Nginx {
                        exe: p.clone(),
                        has_e: procs::output_text(p, &["-h"]).contains("-e filename"),
                        configure: procs::output_text(p, &["-V"]),
                    },
                    (Some(p), Proto::Resp) => Launch::Redis(p.clone()),
                }
            }
        })
    };
    // How to start each server, found once.
    let mut launches = Vec::new();
    for &proto in &opts.protos {
        for server in servers_of(proto) {
            launches.push((server, launch_of(server)?));
        }
    }
    let launch = |s: Server| {
        launches
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, l)| l.clone())
            .ok_or("no launch for server")
    };
    let pin = Pinning::detect();
    eprintln!("bench: {}", pin.note);
    let machine = Machine::describe();
    let workloads = Workload::plan(opts);
    let script = out_dir.join("pipeline.lua");
    fs::write(&script, wrk::pipeline_lua(wrk::PIPELINE)).map_err(|e| format!("{}: {e}", script.display()))?;
    let script = script.canonicalize().map_err(|e| e.to_string())?;

    let client_of = |proto: Proto| match proto {
        Proto::Http => tool("wrk"),
        Proto::Resp => tool("redis-benchmark"),
    };
    let total = opts.reps * workloads.len() * 3;
    let mut k = 0;
    let mut runs = Vec::with_capacity(total);
    let mut server_records = Vec::new();
    for rep in 1..=opts.reps {
        for &proto in &opts.protos {
            let mine: Vec<usize> = (0..workloads.len())
                .filter(|&i| workloads[i].proto() == proto)
                .collect();
            let client = client_of(proto)?;
            let Some(client_path) = client.path.clone() else {
                for &w in &mine {
                    for server in servers_of(proto) {
                        k += 1;
                        runs.push(RunRecord {
                            rep,
                            workload: w,
                            server,
                            outcome: Outcome::NotRun(client.missing()),
                        });
                    }
                }
                continue;
            };
            // Start all three; a failed start or check fails its runs.
            let mut live: Vec<(Server, Result<Running, Outcome>)> = Vec::new();
            for server in servers_of(proto) {
                let started = match launch(server)? {
                    Launch::Missing(why) => Err(Outcome::NotRun(why)),
                    l => match servers::start(server, &l, &pin, &out_dir) {
                        Err(e) => Err(Outcome::Failed(format!("start: {e}"))),
                        Ok(r) => match servers::probe(proto, r.addr) {
                            Ok(()) => Ok(r),
                            Err(e) => {
                                let stop = r.stop();
                                eprintln!("bench: {} failed its check: {e} (stopped: {stop})", server.name());
                                Err(Outcome::Failed(format!("check: {e}")))
                            }
                        },
                    },
                };
                if let Err(Outcome::Failed(e)) = &started {
                    eprintln!("bench: rep {rep}: {}: {e}", server.name());
                    server_records.push(ServerRecord {
                        rep,
                        server,
                        peak_rss: None,
                        stop: format!("not started: {e}"),
                    });
                }
                live.push((server, started));
            }
            for (j, &w) in mine.iter().enumerate() {
                let workload = workloads[w];
                let turn = (rep - 1 + j) % 3;
                for i in 0..3 {
                    let (server, slot) = &mut live[(turn + i) % 3];
                    let server = *server;
                    k += 1;
                    let t = Instant::now();
                    eprint!(
                        "[{k}/{total}] rep {rep}/{} {} {} → {}",
                        opts.reps,
                        proto.name(),
                        workload.label(),
                        server.name()
                    );
                    let outcome = match slot {
                        Err(o) => o.clone(),
                        Ok(r) => match measure(r, &workload, &client_path, &pin, opts.duration, &script) {
                            Ok(m) => Outcome::Done(m),
                            Err(e) => Outcome::Failed(e),
                        },
                    };
                    match &outcome {
                        Outcome::Done(m) => eprintln!(
                            ": {:.0} req/s, server CPU {} s/100k{}{} ({:.1} s)",
                            m.out.rps,
                            m.cpu_per_100k().map_or("–".into(), |c| format!("{c:.3}")),
                            if m.out.non_2xx > 0 {
                                format!(", {} non-2xx: FAILED", m.out.non_2xx)
                            } else {
                                String::new()
                            },
                            if m.out.errors.total() > 0 {
                                format!(", {} socket errors", m.out.errors.total())
                            } else {
                                String::new()
                            },
                            t.elapsed().as_secs_f64()
                        ),
                        Outcome::Failed(e) => eprintln!(": FAILED: {e}"),
                        Outcome::NotRun(e) => eprintln!(": not run: {e}"),
                    }
                    runs.push(RunRecord {
                        rep,
                        workload: w,
                        server,
                        outcome,
                    });
                    // Lets the kernel finish closing the last load's sockets.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            for (server, slot) in live {
                if let Ok(r) = slot {
                    let peak_rss = gaio_testkit::memory::peak_rss_bytes(Some(r.pid())).ok();
                    let stop = r.stop();
                    if !stop.starts_with("exit 0") {
                        eprintln!("bench: {}: {stop}", server.name());
                    }
                    server_records.push(ServerRecord {
                        rep,
                        server,
                        peak_rss,
                        stop,
                    });
                }
            }
        }
    }
    let root = workspace_root();
    let loc = opts
        .protos
        .iter()
        .flat_map(|&p| servers_of(p))
        .filter_map(|server| {
            let path = server.source()?;
            let lines = crate::loc::count_file(&root.join(path)).map_err(|e| format!("{path}: {e}"));
            Some(Loc { server, path, lines })
        })
        .collect();
    let results = Results {
        opts: opts.clone(),
        machine,
        pinning: pin,
        tools,
        workloads,
        runs,
        servers: server_records,
        loc,
        elapsed: started.elapsed(),
    };
    let md = report::markdown(&results);
    print!("{md}");
    let write = |name: &str, text: String| {
        let path = out_dir.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("report.md", md)?;
    let json = report::json(&results);
    write(
        "results.json",
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n",
    )?;
    eprintln!(
        "bench: {} measurements in {:.0} s; report.md and results.json in {}",
        results.runs.len(),
        results.elapsed.as_secs_f64(),
        out_dir.display()
    );
    let failed = report::failures(&results);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("FAILED: {}", failed.join("; ")))
    }
}

/// One client run against `server`, with the server's CPU time read just
/// before the client starts and just after it exits.
fn measure(
    server: &mut Running,
    workload: &Workload,
    client: &Path,
    pin: &Pinning,
    secs: u64,
    script: &Path,
) -> Result<Measured, String> {
    let pid = server.pid();
    let before = CpuTime::read(pid).map_err(|e| format!("/proc/{pid}: {e}"))?;
    let t = Instant::now();
    let out = match *workload {
        Workload::Http { conns, pipeline } => {
            let script = (pipeline > 1).then_some(script);
            wrk::run(client, pin, server.addr, conns, secs, script)
        }
        Workload::Resp {
            test,
            pipeline,
            requests,
        } => redis::run(client, pin, server.addr, test, pipeline, requests),
    };
    let wall_s = t.elapsed().as_secs_f64();
    if let Some(how) = server.exited() {
        return Err(format!("server exited during the run ({how})"));
    }
    let after = CpuTime::read(pid).map_err(|e| format!("/proc/{pid}: {e}"))?;
    let out = out?;
    let (_, cpu_s) = after.since(&before);
    let cpu_s_sched = match (after.sched, before.sched) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    Ok(Measured {
        out,
        wall_s,
        cpu_s,
        cpu_s_sched,
        user_s: after.user - before.user,
        peak_rss: gaio_testkit::memory::peak_rss_bytes(Some(pid)).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn defaults_and_options() {
        let o = opts(&["--clients"]).unwrap();
        assert_eq!(
            (o.reps, o.duration, o.resp_requests),
            (5, 2, (150_000, 2_000_000))
        );
        assert_eq!(o.protos, [Proto::Http, Proto::Resp]);
        let o = opts(&[
            "--reps",
            "1",
            "--duration",
            "1",
            "--out",
            "/tmp/x",
            "--only",
            "resp",
        ])
        .unwrap();
        assert_eq!((o.reps, o.duration, o.resp_requests), (1, 1, (75_000, 1_000_000)));
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
        assert_eq!(o.protos, [Proto::Resp]);
        let o = opts(&["--resp-requests", "10,20"]).unwrap();
        assert_eq!(o.resp_requests, (10, 20));
        assert!(opts(&["--reps", "0"]).is_err());
        assert!(opts(&["--reps"]).is_err());
        assert!(opts(&["--only", "smtp"]).is_err());
        assert!(opts(&["--quick"]).is_err());
    }

    #[test]
    fn the_plan_has_every_workload_once() {
        let w = Workload::plan(&opts(&[]).unwrap());
        let labels: Vec<String> = w.iter().map(Workload::label).collect();
        assert_eq!(
            labels,
            [
                "plain, 64 conns",
                "plain, 512 conns",
                "pipelined ×16, 64 conns",
                "pipelined ×16, 512 conns",
                "PING_MBULK -P 1",
                "SET -P 1",
                "GET -P 1",
                "PING_MBULK -P 16",
                "SET -P 16",
                "GET -P 16",
            ]
        );
        assert!(w[..4].iter().all(|w| w.proto() == Proto::Http));
        assert!(w[4..].iter().all(|w| w.proto() == Proto::Resp));
    }
}
