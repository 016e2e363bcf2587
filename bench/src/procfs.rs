//! What the driver reads about a server process from `/proc`: CPU time,
//! plus the description of this machine. (Its resident memory is read by
//! `gaio_testkit::memory`.)
//!
//! CPU time is read two ways. `utime + stime` from `/proc/PID/stat` covers
//! every thread, exited ones included, but comes in clock ticks (10 ms at
//! 100 Hz), too coarse for runs of a fraction of a second. The sum of the
//! run times in `/proc/PID/task/*/schedstat` has nanosecond resolution but
//! covers live threads only; no server thread exits during a measurement
//! (connection threads of the std server end only when their connection
//! closes, after the measurement), so over a measurement both agree up to
//! the tick rounding, and the report uses the precise one.

use std::fs;
use std::io;

/// Clock ticks per second, the unit of `/proc/PID/stat` times
/// (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// User plus system CPU time of process `pid` (all its threads, live and
/// exited), in seconds. The kernel reports it in clock ticks, so the
/// resolution is one tick (10 ms at 100 Hz).
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let (user, system) = user_and_system_seconds(pid)?;
    Ok(user + system)
}

/// User and system CPU time of process `pid` apart (see [`cpu_seconds`]):
/// what its own code spent, and what the kernel spent for it.
pub fn user_and_system_seconds(pid: u32) -> io::Result<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after the last ')'. Field 3 (state) is then index 0,
    // utime (field 14) index 11 and stime (field 15) index 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| bad_data("no ')' in /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad_data("short /proc/PID/stat"))
    };
    let hz = clock_ticks_per_second() as f64;
    Ok((tick(11)? as f64 / hz, tick(12)? as f64 / hz))
}

/// Run time of the live threads of process `pid`, in seconds: the sum of
/// the first field (nanoseconds on a CPU) of each
/// `/proc/PID/task/TID/schedstat`. `None` when the kernel has no schedstat.
pub fn thread_cpu_seconds(pid: u32) -> io::Result<Option<f64>> {
    let mut ns: u64 = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            // A thread that exited between listing and reading.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return Ok(None),
        };
        match text.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()) {
            Some(v) => ns += v,
            None => return Ok(None),
        }
    }
    Ok(Some(ns as f64 / 1e9))
}

/// One reading of a process's CPU time, both ways.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    /// `utime + stime` from `/proc/PID/stat`, in seconds (tick resolution).
    pub stat: f64,
    /// `utime` alone: the process's own code, not the kernel's.
    pub user: f64,
    /// Sum over live threads from `schedstat`, in seconds, if available.
    pub sched: Option<f64>,
}

impl CpuTime {
    /// Reads both figures for process `pid`.
    pub fn read(pid: u32) -> io::Result<CpuTime> {
        let (user, system) = user_and_system_seconds(pid)?;
        Ok(CpuTime {
            stat: user + system,
            user,
            sched: thread_cpu_seconds(pid)?,
        })
    }

    /// CPU seconds from `earlier` to `self`: `(precise, from stat)`, where
    /// precise is the schedstat difference when both readings have one and
    /// the stat difference otherwise.
    pub fn since(&self, earlier: &CpuTime) -> (f64, f64) {
        let stat = self.stat - earlier.stat;
        match (self.sched, earlier.sched) {
            (Some(a), Some(b)) => (a - b, stat),
            _ => (stat, stat),
        }
    }
}

/// CPU time the whole machine has spent busy since boot, over every CPU,
/// in seconds: user, nice, system, irq and softirq of the first line of
/// `/proc/stat` (idle, iowait and steal left out). Tick resolution.
pub fn machine_busy_seconds() -> io::Result<f64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| bad_data("no cpu line in /proc/stat"))?;
    parse_busy_ticks(line)
        .map(|ticks| ticks as f64 / clock_ticks_per_second() as f64)
        .ok_or_else(|| bad_data("short cpu line in /proc/stat"))
}

/// user + nice + system + irq + softirq of a `/proc/stat` `cpu` line.
fn parse_busy_ticks(line: &str) -> Option<u64> {
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?)
}

fn bad_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// This machine, for the report.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub model: String,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Clock ticks per second used to read CPU times.
    pub clk_tck: u64,
    /// The ephemeral port range (`net.ipv4.ip_local_port_range`), which
    /// bounds how many connections per second the accept-rate load can
    /// open to one server address.
    pub ephemeral_ports: Option<(u32, u32)>,
    /// `net.ipv4.tcp_tw_reuse` (2: ports in TIME_WAIT are reused for
    /// loopback connects).
    pub tcp_tw_reuse: Option<u32>,
}

impl Machine {
    /// A made-up machine for the report's tests: 2 CPUs, nothing known of
    /// its ports.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Machine {
        Machine {
            cpus: 2,
            model: "test".into(),
            kernel: "6".into(),
            rustc: "rustc".into(),
            clk_tck: 100,
            ephemeral_ports: None,
            tcp_tw_reuse: None,
        }
    }

    /// Reads the description; unknown parts read `"unknown"`.
    pub fn describe() -> Machine {
        let unknown = || "unknown".to_string();
        let model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(unknown);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|_| unknown());
        let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(unknown);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model,
            kernel,
            rustc,
            clk_tck: clock_ticks_per_second(),
            ephemeral_ports: fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .ok()
                .and_then(|t| parse_port_range(&t)),
            tcp_tw_reuse: fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse")
                .ok()
                .and_then(|t| t.trim().parse().ok()),
        }
    }
}

/// Parses `ip_local_port_range` (`"32768\t60999\n"`) into `(low, high)`.
pub fn parse_port_range(text: &str) -> Option<(u32, u32)> {
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi)), None) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_ticks_leave_idle_iowait_and_steal_out() {
        assert_eq!(parse_busy_ticks("cpu  10 1 5 1000 7 2 3 50 0 0"), Some(21));
        assert_eq!(parse_busy_ticks("cpu  10 1"), None);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("32768"), None);
        assert_eq!(parse_port_range("a b"), None);
        assert_eq!(parse_port_range("1 2 3"), None);
    }
}
