//! The servers `bench --clients` measures: the gaio example, its tokio
//! twin and a production server (nginx, redis-server) for each protocol.
//! Starting them, checking one answer of each, stopping them.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::procs::{self, free_port, wait_listening, Pinning, Proc};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The two protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1, `GET /plaintext`, measured with wrk.
    Http,
    /// The Redis protocol (RESP), measured with redis-benchmark.
    Resp,
}

impl Proto {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Resp => "resp",
        }
    }
}

/// Which of the three servers of a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gaio example.
    Gaio,
    /// Its tokio twin.
    Tokio,
    /// nginx or redis-server.
    Reference,
}

impl Role {
    /// In table order.
    pub const ALL: [Role; 3] = [Role::Gaio, Role::Tokio, Role::Reference];
}

/// One server: a protocol and a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// Its protocol.
    pub proto: Proto,
    /// Its role.
    pub role: Role,
}

impl Server {
    /// The name in tables: the example's binary name, or the program's.
    pub fn name(self) -> &'static str {
        match (self.proto, self.role) {
            (Proto::Http, Role::Gaio) => "http_server",
            (Proto::Http, Role::Tokio) => "tokio_http_server",
            (Proto::Http, Role::Reference) => "nginx",
            (Proto::Resp, Role::Gaio) => "resp_server",
            (Proto::Resp, Role::Tokio) => "tokio_resp_server",
            (Proto::Resp, Role::Reference) => "redis-server",
        }
    }

    /// The source files whose lines of code the report compares
    /// (relative to the workspace root), for the examples.
    pub fn source(self) -> Option<&'static str> {
        match (self.proto, self.role) {
            (Proto::Http, Role::Gaio) => Some("gaio/examples/http_server.rs"),
            (Proto::Http, Role::Tokio) => Some("twins/examples/tokio_http_server.rs"),
            (Proto::Resp, Role::Gaio) => Some("gaio/examples/resp_server.rs"),
            (Proto::Resp, Role::Tokio) => Some("twins/examples/tokio_resp_server.rs"),
            (_, Role::Reference) => None,
        }
    }
}

/// How to start a server, or why it cannot be.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A gaio example or tokio twin: `exe --addr 127.0.0.1:0`.
    Example(PathBuf),
    /// `nginx` at this path.
    Nginx {
        /// The binary.
        exe: PathBuf,
        /// Whether it takes `-e` (error log path, nginx ≥ 1.19.5).
        has_e: bool,
        /// Its `nginx -V` output (the modules built in).
        configure: String,
    },
    /// `redis-server` at this path.
    Redis(PathBuf),
    /// Not available; the reason.
    Missing(String),
}

/// A started server; stopped with SIGTERM (killed if need be) on
/// [`stop`](Running::stop) or drop.
#[derive(Debug)]
pub struct Running {
    proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Running {
    /// Its process id (the one `/proc` is read for).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<String> {
        self.proc.exited().map(procs::describe)
    }

    /// SIGTERM, then SIGKILL after 5 s; how it went.
    pub fn stop(mut self) -> String {
        self.proc.stop()
    }
}

/// Starts `server` as `launch` says, on the server CPU, with its logs in
/// `dir`.
pub fn start(server: Server, launch: &Launch, pin: &Pinning, dir: &Path) -> Result<Running, String> {
    let log_path = dir.join(format!("{}.log", server.name()));
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    match launch {
        Launch::Missing(why) => Err(why.clone()),
        Launch::Example(exe) => {
            let mut cmd = pin.server(exe);
            cmd.args(["--addr", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log);
            let mut proc = Proc::spawn(cmd, &exe.display().to_string())?;
            let stdout = proc.child_mut().stdout.take().ok_or("no stdout pipe")?;
            let (tx, rx) = mpsc::channel();
            // The first line names the address; later ones go to the log.
            std::thread::spawn(move || {
                let mut log = log2;
                let mut first = true;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if first {
                        first = false;
                        let _ = tx.send(line.clone());
                    }
                    let _ = writeln!(log, "{line}");
                }
            });
            let first = match rx.recv_timeout(START_TIMEOUT) {
                Ok(l) => l,
                Err(_) => {
                    let status = proc.exited().map_or("no output".into(), procs::describe);
                    return Err(format!(
                        "{}: no address line within {} s ({status}); log: {}",
                        server.name(),
                        START_TIMEOUT.as_secs(),
                        procs::tail(&log_path, 3)
                    ));
                }
            };
            let addr = parse_addr_line(&first)
                .ok_or_else(|| format!("{}: first line names no address: {first:?}", server.name()))?;
            wait_listening(&mut proc, addr, START_TIMEOUT).map_err(|e| format!("{}: {e}", server.name()))?;
            Ok(Running { proc, addr })
        }
        Launch::Nginx {
            exe,
            has_e,
            configure,
        } => {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let prefix = dir.join("nginx");
            fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
            let prefix = prefix.canonicalize().map_err(|e| e.to_string())?;
            let conf = prefix.join("nginx.conf");
            fs::write(&conf, nginx_conf(&prefix, port, configure))
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            let mut cmd = pin.server(exe);
            cmd.arg("-c").arg(&conf).arg("-p").arg(&prefix);
            if *has_e {
                cmd.arg("-e").arg(prefix.join("error.log"));
            }
            cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
            let mut proc = Proc::spawn(cmd, "nginx")?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_listening(&mut proc, addr, START_TIMEOUT).map_err(|e| {
                format!(
                    "nginx: {e}; {} | {}",
                    procs::tail(&log_path, 3),
                    procs::tail(&prefix.join("error.log"), 3)
                )
            })?;
            Ok(Running { proc, addr })
        }
        Launch::Redis(exe) => {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let rdir = dir.canonicalize().map_err(|e| e.to_string())?;
            let mut cmd = pin.server(exe);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--protected-mode", "no", "--dir"])
                .arg(&rdir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            let mut proc = Proc::spawn(cmd, "redis-server")?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_listening(&mut proc, addr, START_TIMEOUT)
                .map_err(|e| format!("redis-server: {e}; log: {}", procs::tail(&log_path, 3)))?;
            Ok(Running { proc, addr })
        }
    }
}

/// The address in an example's first line: its last whitespace-separated
/// token (`listening on 127.0.0.1:40123`).
pub fn parse_addr_line(line: &str) -> Option<SocketAddr> {
    line.split_whitespace().last()?.parse().ok()
}

/// The nginx configuration: one process, one worker, everything it writes
/// under `prefix` (so it runs as any user), `/plaintext` answered from the
/// configuration. `configure` is `nginx -V`'s output: temp-path directives
/// of modules built out are left out, or nginx would reject them.
pub fn nginx_conf(prefix: &Path, port: u16, configure: &str) -> String {
    let p = prefix.display();
    let mut temp = format!("    client_body_temp_path {p}/client_body_temp;\n");
    for module in ["proxy", "fastcgi", "uwsgi", "scgi"] {
        if !configure.contains(&format!("--without-http_{module}_module")) {
            let _ = writeln!(temp, "    {module}_temp_path {p}/{module}_temp;");
        }
    }
    format!(
        "# Written by `cargo xtask bench --clients`.\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         error_log {p}/error.log;\n\
         pid {p}/nginx.pid;\n\
         events {{\n    worker_connections 4096;\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   keepalive_timeout 120s;\n\
         {temp}\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port} backlog=4096;\n\
         \x20       location = /plaintext {{\n\
         \x20           default_type text/plain;\n\
         \x20           return 200 \"Hello, World!\";\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// The body every HTTP server must answer `GET /plaintext` with.
pub const PLAINTEXT: &str = "Hello, World!";

/// One request of each kind the load will make, answers checked:
/// `GET /plaintext` (status 200, body "Hello, World!") for HTTP; `PING`,
/// `SET key:__rand_int__ xxx`, `GET key:__rand_int__` for RESP (the
/// commands redis-benchmark sends, without `-r`).
pub fn probe(proto: Proto, addr: SocketAddr) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    match proto {
        Proto::Http => {
            s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let (status, body) = read_http_response(&mut s)?;
            if !status.starts_with("HTTP/1.1 200") || body != PLAINTEXT.as_bytes() {
                return Err(format!(
                    "GET /plaintext answered {:?} with body {:?}",
                    shorten(&status),
                    shorten(&String::from_utf8_lossy(&body))
                ));
            }
            Ok(())
        }
        Proto::Resp => {
            let checks: [(&[u8], &[u8]); 3] = [
                (b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
                (
                    b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n",
                    b"+OK\r\n",
                ),
                (
                    b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",
                    b"$3\r\nxxx\r\n",
                ),
            ];
            for (req, want) in checks {
                s.write_all(req).map_err(|e| format!("write: {e}"))?;
                let got = read_expected(&mut s, want)?;
                if got != want {
                    return Err(format!(
                        "{} answered {:?}, expected {:?}",
                        String::from_utf8_lossy(req)
                            .split("\r\n")
                            .filter(|w| !w.starts_with(['*', '$']))
                            .collect::<Vec<_>>()
                            .join(" ")
                            .trim(),
                        shorten(&String::from_utf8_lossy(&got)),
                        String::from_utf8_lossy(want)
                    ));
                }
            }
            Ok(())
        }
    }
}

/// `s` cut to 40 characters, for messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A read error in words: the socket's timeout reads as `EAGAIN`.
fn read_error(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "no answer within 5 s".into(),
        _ => format!("read: {e}"),
    }
}

/// Reads until `want.len()` bytes arrived or what came differs from
/// `want` and ends a line.
fn read_expected(s: &mut TcpStream, want: &[u8]) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.len() < want.len() {
        if !want.starts_with(&got) && got.ends_with(b"\r\n") {
            break;
        }
        let n = s.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            return Err(format!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// Reads one response with a `Content-Length`: `(status line, body)`.
fn read_http_response(s: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let status = head.lines().next().unwrap_or("").to_string();
            let len = head
                .lines()
                .skip(1)
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
            let body_start = end + 4;
            while got.len() < body_start + len {
                let n = s.read(&mut buf).map_err(read_error)?;
                if n == 0 {
                    return Err("connection closed in the body".into());
                }
                got.extend_from_slice(&buf[..n]);
            }
            return Ok((status, got[body_start..body_start + len].to_vec()));
        }
        let n = s.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            return Err(format!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines_parse() {
        assert_eq!(
            parse_addr_line("http_server listening on 127.0.0.1:40123"),
            Some(SocketAddr::from(([127, 0, 0, 1], 40123)))
        );
        assert_eq!(
            parse_addr_line("127.0.0.1:8080\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert_eq!(parse_addr_line("listening"), None);
        assert_eq!(parse_addr_line(""), None);
    }

    #[test]
    fn nginx_conf_has_the_essentials() {
        let conf = nginx_conf(Path::new("/tmp/x"), 8080, "--without-http_scgi_module");
        for want in [
            "daemon off;",
            "master_process off;",
            "worker_processes 1;",
            "error_log /tmp/x/error.log;",
            "pid /tmp/x/nginx.pid;",
            "worker_connections 4096;",
            "access_log off;",
            "keepalive_requests 100000000;",
            "keepalive_timeout 120s;",
            "listen 127.0.0.1:8080 backlog=4096;",
            "location = /plaintext {",
            "return 200 \"Hello, World!\";",
            "client_body_temp_path /tmp/x/client_body_temp;",
            "uwsgi_temp_path /tmp/x/uwsgi_temp;",
        ] {
            assert!(conf.contains(want), "{want} missing from\n{conf}");
        }
        assert!(!conf.contains("scgi_temp_path /tmp/x/scgi_temp"), "{conf}");
    }
}
