//! Child processes of `bench --clients`: servers and load generators that
//! are always stopped, CPU pinning with `taskset`, tools found on the
//! `PATH` and free ports.

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// How long a server gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process that is killed and reaped when dropped, on every path
/// (errors and panics included) unless it was [`stop`](Proc::stop)ped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    done: bool,
}

impl Proc {
    /// Spawns `cmd`.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Proc, String> {
        let child = cmd.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Proc { child, done: false })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (for its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until the process ends or `deadline` passes; `None` on timeout.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.exited() {
                self.done = true;
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL. Says how it went.
    pub fn stop(&mut self) -> String {
        if let Some(s) = self.exited() {
            self.done = true;
            return format!("had already exited ({})", describe(s));
        }
        if let Some(pid) = i32::try_from(self.pid()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let t = Instant::now();
        match self.wait_until(t + STOP_GRACE) {
            Some(s) => format!(
                "{} after SIGTERM ({:.2} s)",
                describe(s),
                t.elapsed().as_secs_f64()
            ),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.done = true;
                format!("still running {} s after SIGTERM: killed", STOP_GRACE.as_secs())
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// "exit 0", "exit 3", or "signal 15".
pub fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => s.to_string(),
    }
}

/// Runs a load generator to completion (or kills it after `timeout`):
/// `(status, stdout, stderr)`.
pub fn run_captured(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(cmd, what)?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(p.child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err = drain(p.child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>));
    let status = p.wait_until(Instant::now() + timeout);
    let Some(status) = status else {
        drop(p); // kills it, which closes the pipes the threads read
        let _ = (out.join(), err.join());
        return Err(format!(
            "{what} still running after {} s: killed",
            timeout.as_secs()
        ));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    Ok((status, out, err))
}

/// Where servers and clients run: one CPU each, or wherever the scheduler
/// puts them.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// `(taskset, server CPU, client CPU)` when pinned.
    pub pinned: Option<(PathBuf, usize, usize)>,
    /// The sentence for the report.
    pub note: String,
}

impl Pinning {
    /// Pins to the first two CPUs this process may use (server on the
    /// second, clients on the first), if there are two and `taskset` exists.
    pub fn detect() -> Pinning {
        let cpus = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(parse_cpu_list)
            })
            .unwrap_or_default();
        let taskset = find_tool("taskset");
        match (cpus.as_slice(), taskset) {
            ([client, server, ..], Some(t)) => Pinning {
                note: format!("servers pinned to CPU {server}, load generators to CPU {client} (taskset -c)"),
                pinned: Some((t, *server, *client)),
            },
            ([_, _, ..], None) => Pinning {
                pinned: None,
                note: "not pinned: taskset (package util-linux) is missing; servers and load generators share the CPUs".into(),
            },
            _ => Pinning {
                pinned: None,
                note: format!(
                    "not pinned: only {} CPU available ({:?}); server and load generator share it",
                    cpus.len(),
                    cpus
                ),
            },
        }
    }

    fn command(&self, cpu: Option<usize>, program: &Path) -> Command {
        match (&self.pinned, cpu) {
            (Some((taskset, _, _)), Some(cpu)) => {
                let mut c = Command::new(taskset);
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    /// A command running `program` on the server CPU. `taskset` execs it,
    /// so the child's process id is the program's.
    pub fn server(&self, program: &Path) -> Command {
        self.command(self.pinned.as_ref().map(|p| p.1), program)
    }

    /// A command running `program` on the client CPU.
    pub fn client(&self, program: &Path) -> Command {
        self.command(self.pinned.as_ref().map(|p| p.2), program)
    }
}

/// Parses a CPU list such as `0-1` or `0,2-3` in ascending order.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.trim().parse::<usize>().ok()),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// `name` on the `PATH`, or in the sbin directories a non-root `PATH`
/// often lacks (`nginx` lives in `/usr/sbin`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Everything `program args` prints, stdout then stderr (`nginx -V`
/// writes to stderr); empty when it cannot run.
pub fn output_text(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).stdin(Stdio::null()).output() {
        Ok(o) => String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).into_owned(),
        Err(_) => String::new(),
    }
}

/// The first line `program args` prints, for the version column.
pub fn version_line(program: &Path, args: &[&str]) -> String {
    output_text(program, args)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A loopback port nothing listens on right now: bound with port 0, then
/// released (another process could take it in between; unlikely here).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `addr` accepts a connection, giving up when `proc` exits or
/// after `timeout`.
pub fn wait_listening(proc: &mut Proc, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(s) = proc.exited() {
            return Err(format!("exited before listening on {addr} ({})", describe(s)));
        }
        if Instant::now() >= deadline {
            return Err(format!("not listening on {addr} after {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of the file at `path`, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-1\n"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-3"), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("5"), vec![5]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
    }

    #[test]
    fn a_stuck_client_is_killed_and_a_server_stopped() {
        let Some(sleep) = find_tool("sleep") else { return };
        let mut cmd = Command::new(&sleep);
        cmd.arg("30");
        let t = Instant::now();
        let r = run_captured(cmd, "sleep", Duration::from_millis(200));
        assert!(r.is_err() && t.elapsed() < Duration::from_secs(5), "{r:?}");
        let mut cmd = Command::new(&sleep);
        cmd.arg("30");
        let mut p = Proc::spawn(cmd, "sleep").unwrap();
        let how = p.stop();
        assert!(how.starts_with("signal 15 after SIGTERM"), "{how}");
        assert!(p.stop().starts_with("had already exited"));
    }
}
