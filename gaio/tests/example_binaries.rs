//! The example binaries, run as users run them. Their command lines:
//! `--help` prints the usage on standard output and exits with status 0; an
//! unknown argument fails with status 1 and the usage in the error; the
//! demo, asked for more connections than the descriptor limit allows, says
//! how many it can run. The echo server at its descriptor limit keeps
//! serving and accepts again as clients leave.
//!
//! The examples are built first, by `cargo build --examples` into this
//! test's own target directory and profile (with the same rustflags, from
//! the environment): `cargo test` and nextest build the examples that carry
//! tests only as test harnesses, and a binary left from an earlier build
//! could be stale. When everything is fresh that build takes a moment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod util;

/// Every example, with the start of its usage text.
const EXAMPLES: [(&str, &str); 7] = [
    ("demo", "usage: demo [--conns N]"),
    ("echo_server", "usage: echo_server [--addr HOST:PORT]"),
    ("http_server", "usage: http_server [--addr HOST:PORT]"),
    ("resp_server", "usage: resp_server [--addr HOST:PORT]"),
    ("proxy", "usage: proxy --upstream HOST:PORT"),
    ("push_server", "usage: push_server [--addr HOST:PORT]"),
    ("udp_echo", "usage: udp_echo [--addr HOST:PORT]"),
];

/// The path of example `name`, built (once per process) with the others.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // This test runs from <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("<target>/<profile>");
        let target_dir = profile_dir.parent().expect("<target>");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", "gaio", "--examples", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let out = cargo.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building the examples failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn run(name: &str, arg: &str) -> std::process::Output {
    Command::new(example(name))
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .expect("the example runs")
}

#[test]
fn every_example_prints_its_usage_on_help_and_exits_with_success() {
    let _guard = util::shared();
    for (name, usage) in EXAMPLES {
        for flag in ["--help", "-h"] {
            let out = run(name, flag);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{name} {flag}: {out:?}");
            assert!(stdout.starts_with(usage), "{name} {flag} printed {stdout:?}");
            assert_eq!(stdout.lines().count(), 1, "{name} {flag} printed {stdout:?}");
            assert!(out.stderr.is_empty(), "{name} {flag}: {out:?}");
        }
    }
}

#[test]
fn every_example_refuses_an_unknown_argument_with_its_usage() {
    let _guard = util::shared();
    for (name, usage) in EXAMPLES {
        let out = run(name, "--no-such-flag");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        assert!(stderr.contains("--no-such-flag"), "{name}: {stderr:?}");
        assert!(stderr.contains(usage), "{name}: {stderr:?}");
        assert!(out.stdout.is_empty(), "{name} started: {out:?}");
    }
}

#[test]
fn the_demo_says_how_many_connections_the_descriptor_limit_allows() {
    let _guard = util::shared();
    // `ulimit -n` in the shell lowers both limits, so the demo cannot
    // raise its own: 100 descriptors hold (100 - 64) / 2 = 18 connections.
    let demo = example("demo");
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 100 && exec \"$0\" --conns 100 --rounds 1")
        .arg(&demo)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("--conns 100 needs 264 descriptors and this process may open 100")
            && stderr.contains("use --conns 18 or fewer"),
        "{stderr:?}"
    );
    assert!(out.stdout.is_empty(), "the demo started: {out:?}");
}

/// Sends `msg` on `client` and checks that it comes back, within 5 s.
fn echoes(client: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.write_all(msg).map_err(|e| e.to_string())?;
    let mut back = vec![0; msg.len()];
    client.read_exact(&mut back).map_err(|e| e.to_string())?;
    if back == msg {
        Ok(())
    } else {
        Err(format!("echoed {back:?}"))
    }
}

/// How many of `clients` echo `msg`, all sent first and all answered
/// within `within`: a client its server never accepted costs the wait once,
/// not once per client.
#[cfg(target_os = "linux")]
fn echoed_by_all(clients: &mut [TcpStream], msg: &[u8], within: Duration) -> usize {
    let sent: Vec<bool> = clients.iter_mut().map(|c| c.write_all(msg).is_ok()).collect();
    let deadline = Instant::now() + within;
    let mut echoed = 0;
    for (client, sent) in clients.iter_mut().zip(sent) {
        let left = deadline.saturating_duration_since(Instant::now());
        client
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut back = vec![0; msg.len()];
        if sent && client.read_exact(&mut back).is_ok() && back == msg {
            echoed += 1;
        }
    }
    echoed
}

#[test]
fn the_echo_server_at_its_descriptor_limit_keeps_serving_and_accepts_as_clients_leave() {
    let _guard = util::exclusive();
    // 64 descriptors: the server holds about 55 clients at once. The 100
    // clients connect as soon as it listens, so its accepts reach the
    // limit while it is still starting.
    let mut server = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --until-stdin-closes")
        .arg(example("echo_server"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = lines.next().expect("the address line").unwrap();
    let mut clients: Vec<Option<TcpStream>> = (0..100)
        .map(|_| Some(TcpStream::connect(&addr).expect("the listener's queue takes it")))
        .collect();
    let backend = lines.next().expect("the backend line").unwrap();
    assert!(backend.starts_with("backend: "), "{backend:?}");
    for (i, client) in clients.iter_mut().enumerate().take(40) {
        let msg = format!("first {i}");
        echoes(client.as_mut().unwrap(), msg.as_bytes()).unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    // The first 40 leave; their descriptors go to clients waiting in the
    // accept queue, past the 64th.
    for client in clients.iter_mut().take(40) {
        drop(client.take());
    }
    for (i, client) in clients.iter_mut().enumerate().take(85).skip(40) {
        let msg = format!("later {i}");
        echoes(client.as_mut().unwrap(), msg.as_bytes()).unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    drop(clients);
    drop(server.stdin.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    server.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

/// Waits (bounded) for `child` to exit and returns its status and stderr.
#[cfg(target_os = "linux")]
fn exit_of(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "it did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

/// The proxy at its descriptor limit: a client it cannot dial the upstream
/// for (the dial is refused at once, out of descriptors) is dropped, and
/// the proxy goes on relaying the others and takes new clients once
/// descriptors are free again. It used to end with the error, dropping
/// every relay (found by an outside audit).
///
/// The limit leaves room for an odd number of descriptors beyond what the
/// proxy holds once it listens, so that once the relayed pairs (two
/// descriptors each) fill it one is left: an accept takes it and the dial
/// is refused. A fixed `ulimit -n 64` left that to the parity of the
/// descriptors the proxy inherited from the test harness, and with one more
/// inherited the accepts waited instead, every later client sat in the
/// listen queue and the test outlived its 120 s (CI, session 14). So a
/// first proxy, with no limit, is asked what it holds; the second, started
/// the same way, gets the limit. (Setting the limit on the running proxy
/// would not do: the ring's multishot accept keeps the limit it was armed
/// under.)
#[cfg(target_os = "linux")]
#[test]
fn the_proxy_out_of_descriptors_drops_the_new_client_and_keeps_relaying() {
    let _guard = util::exclusive();
    let spawn = |cmd: String, args: &[&str]| {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        // Its standard output stays open (kept with the child): it prints
        // more, and a closed pipe would fail it.
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = out.next().expect("the address line").unwrap();
        ((child, out), addr)
    };
    let echo = example("echo_server");
    let ((mut upstream, _upstream_out), up_addr) = spawn(
        "exec \"$0\" --until-stdin-closes".into(),
        &[echo.to_str().unwrap()],
    );
    let proxy = example("proxy");
    let proxy_args = [proxy.to_str().unwrap(), &up_addr];
    // The proxy prints its address once its watcher and listener are made
    // (`sh` exec'd it: same process) and opens nothing more until a client
    // comes.
    let ((mut measured, _measured_out), _) = spawn(
        "exec \"$0\" --upstream \"$1\" --until-stdin-closes".into(),
        &proxy_args,
    );
    let held: Vec<u64> = std::fs::read_dir(format!("/proc/{}/fd", measured.id()))
        .expect("the proxy's descriptors")
        .map(|fd| fd.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    drop(measured.stdin.take());
    let (status, stderr) = exit_of(&mut measured);
    assert_eq!(status.code(), Some(0), "proxy stderr: {stderr}");
    // Room for this many pairs and one descriptor more, below the limit.
    const PAIRS: usize = 28;
    let limit = (0..)
        .find(|&limit| limit - held.iter().filter(|&&fd| fd < limit).count() as u64 == 2 * PAIRS as u64 + 1)
        .unwrap();
    let ((mut relay, _relay_out), addr) = spawn(
        format!("ulimit -n {limit} && exec \"$0\" --upstream \"$1\" --until-stdin-closes"),
        &proxy_args,
    );
    let mut first = TcpStream::connect(&addr).unwrap();
    echoes(&mut first, b"before the crowd").unwrap();
    let mut crowd: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let served = echoed_by_all(&mut crowd, b"crowd", Duration::from_secs(10));
    assert!(
        (10..PAIRS).contains(&served),
        "{served} of 60 relayed with room for {PAIRS} pairs, the first client's among them"
    );
    assert!(relay.try_wait().unwrap().is_none(), "the proxy ended");
    echoes(&mut first, b"during the crowd").unwrap();
    drop(crowd);
    // Descriptors come back as the crowd's pairs end.
    let mut later = None;
    let started = Instant::now();
    while later.is_none() && started.elapsed() < Duration::from_secs(10) {
        let mut client = [TcpStream::connect(&addr).unwrap()];
        if echoed_by_all(&mut client, b"after the crowd", Duration::from_secs(1)) == 1 {
            later = Some(client);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(later.is_some(), "no new client relayed once the crowd left");
    echoes(&mut first, b"still here").unwrap();
    drop((first, later));
    drop(relay.stdin.take());
    let (status, stderr) = exit_of(&mut relay);
    assert_eq!(status.code(), Some(0), "proxy stderr: {stderr}");
    assert!(
        stderr.contains("proxy: cannot dial"),
        "no client was refused: {stderr}"
    );
    drop(upstream.stdin.take());
    let (status, stderr) = exit_of(&mut upstream);
    assert_eq!(status.code(), Some(0), "echo_server stderr: {stderr}");
}
