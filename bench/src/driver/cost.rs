//! The counted-cost scenario: user-space instructions and system calls
//! per round trip, counted by valgrind's callgrind in the server.
//!
//! Wall-clock CPU time on a shared two-core machine moves by ±10 % from
//! run to run; instruction and system-call counts move by a few percent
//! (batch sizes vary with timing). The server runs
//! under `valgrind --tool=callgrind --collect-systime=nsec`; after a
//! warm-up the driver zeroes the counters (`callgrind_control -z`), runs a
//! fixed number of 64-byte round trips, and dumps them
//! (`callgrind_control -d`). Kernel work is not counted as instructions,
//! only as the number of system calls. Under valgrind the server runs
//! tens of times slower than the load generator, so its batches are larger
//! than in the timed scenarios: read these counts as each library's own
//! cost per request, not as a forecast of CPU time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::error::BenchError;
use super::load::Stop;
use super::scenarios::{connect, teardown, Metrics, PING_MSG};
use super::server_proc::{ServerProc, Variant};
use crate::servers::Impl;

/// Round trips per connection before the counters are zeroed.
const WARMUP_ROUNDS: u64 = 20;

/// True if `valgrind` and `callgrind_control` can be run.
pub fn available() -> bool {
    let runs = |prog: &str, arg: &str| {
        Command::new(prog)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    runs("valgrind", "--version") && runs("callgrind_control", "--version")
}

/// Measures `imp` at `conns` connections doing `rounds` round trips each.
pub fn measure(exe: &Path, imp: Impl, conns: usize, rounds: u64) -> Result<Metrics, BenchError> {
    if !available() {
        return Err(BenchError::other(
            "valgrind (with callgrind_control) is not installed",
        ));
    }
    // GAIO_BENCH_CALLGRIND_DIR keeps the dumps there, for
    // `callgrind_annotate` (where the instructions went).
    if let Some(keep) = std::env::var_os("GAIO_BENCH_CALLGRIND_DIR") {
        let dir = PathBuf::from(keep).join(format!("{imp}-{conns}"));
        fs::create_dir_all(&dir)?;
        return measure_in(&dir, exe, imp, conns, rounds);
    }
    let dir = std::env::temp_dir().join(format!("gaio-bench-callgrind-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = measure_in(&dir, exe, imp, conns, rounds);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn measure_in(dir: &Path, exe: &Path, imp: Impl, conns: usize, rounds: u64) -> Result<Metrics, BenchError> {
    let out_file = format!("--callgrind-out-file={}/cg.%p", dir.display());
    let wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--collect-systime=nsec",
        "--quiet",
        // std-threads runs a thread per connection; valgrind's default
        // limit is 500.
        "--max-threads=4096",
        out_file.as_str(),
    ];
    let mut server = ServerProc::start_wrapped(&wrapper, exe, imp, Variant::Echo)?;
    let mut clients = connect(&mut server, conns)?;
    let limit = || Instant::now() + Duration::from_secs(120);
    clients.run(PING_MSG, Stop::Rounds(WARMUP_ROUNDS), false, limit())?;
    let pid = server.pid().to_string();
    callgrind_control("-z", &pid)?;
    let out = clients.run(PING_MSG, Stop::Rounds(rounds), false, limit())?;
    callgrind_control("-d", &pid)?;
    let dump = newest_dump(dir, &pid)?;
    teardown(server, clients);
    let (instructions, syscalls) = totals(&dump)?;
    let trips = out.completed as f64;
    Ok(vec![
        ("instr_per_rt", instructions as f64 / trips),
        ("syscalls_per_rt", syscalls as f64 / trips),
        ("round_trips", trips),
    ])
}

fn callgrind_control(flag: &str, pid: &str) -> Result<(), BenchError> {
    let out = Command::new("callgrind_control").args([flag, pid]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::other(format!(
            "callgrind_control {flag} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The dump `callgrind_control -d` just wrote: `cg.PID.N` with the
/// highest `N`.
fn newest_dump(dir: &Path, pid: &str) -> Result<PathBuf, BenchError> {
    let prefix = format!("cg.{pid}.");
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let part = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(part) = part {
            match &best {
                Some((b, _)) if *b >= part => {}
                _ => best = Some((part, path)),
            }
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| BenchError::other(format!("no callgrind dump for pid {pid} in {}", dir.display())))
}

/// `(instructions, system calls)` from a dump's `totals:` line, whose
/// order the `events:` line gives.
fn totals(dump: &Path) -> Result<(u64, u64), BenchError> {
    let text = fs::read_to_string(dump)?;
    parse_totals(&text).ok_or_else(|| BenchError::other(format!("{}: no Ir/sysCount totals", dump.display())))
}

fn parse_totals(text: &str) -> Option<(u64, u64)> {
    let events: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))?
        .split_whitespace()
        .collect();
    let totals: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("totals:"))?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let at = |name: &str| {
        events
            .iter()
            .position(|e| *e == name)
            .and_then(|i| totals.get(i).copied())
    };
    Some((at("Ir")?, at("sysCount")?))
}

#[cfg(test)]
mod tests {
    use super::parse_totals;

    #[test]
    fn totals_follow_the_events_line() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\npid: 7\n\
                    events: Ir sysCount sysTime sysCpuTime\n\
                    summary: 14815890 21452 138554668 134057733\n\
                    fn=(1) main\n3 5\n\
                    totals: 14815890 21452 138554668 134057733\n";
        assert_eq!(parse_totals(dump), Some((14_815_890, 21_452)));
        let reordered = "events: sysCount Ir\ntotals: 9 1000\n";
        assert_eq!(parse_totals(reordered), Some((1000, 9)));
        assert_eq!(parse_totals("events: Ir\ntotals: 5\n"), None, "no sysCount");
        assert_eq!(parse_totals("events: Ir sysCount\n"), None, "no totals");
    }
}
