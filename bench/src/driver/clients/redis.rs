//! redis-benchmark: the RESP load and its CSV output.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::procs::{self, Pinning};
use super::ClientOutput;

/// Connections redis-benchmark opens (`-c`).
pub const CLIENTS: usize = 50;

/// The commands measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `PING` sent as an array (`-t ping_mbulk`).
    Ping,
    /// `SET key:__rand_int__ xxx`.
    Set,
    /// `GET key:__rand_int__`.
    Get,
}

impl Test {
    /// In run order.
    pub const ALL: [Test; 3] = [Test::Ping, Test::Set, Test::Get];

    /// The `-t` argument.
    pub fn arg(self) -> &'static str {
        match self {
            Test::Ping => "ping_mbulk",
            Test::Set => "set",
            Test::Get => "get",
        }
    }

    /// The name in redis-benchmark's CSV (and in the report).
    pub fn csv_name(self) -> &'static str {
        match self {
            Test::Ping => "PING_MBULK",
            Test::Set => "SET",
            Test::Get => "GET",
        }
    }
}

/// Runs `redis-benchmark -c 50 -n requests -P pipeline -t test --csv`
/// against `addr` on the client CPU. redis-benchmark (since 6.2) stops at
/// the first error reply, exiting non-zero: that is a failed run.
pub fn run(
    exe: &Path,
    pin: &Pinning,
    addr: SocketAddr,
    test: Test,
    pipeline: usize,
    requests: u64,
) -> Result<ClientOutput, String> {
    let mut cmd = pin.client(exe);
    cmd.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-c", &CLIENTS.to_string(), "-n", &requests.to_string()])
        .args(["-P", &pipeline.to_string(), "-t", test.arg(), "--csv"]);
    // A rate of 10k requests/s at least, or it counts as hung.
    let timeout = Duration::from_secs(30 + requests / 10_000);
    let (status, out, err) = procs::run_captured(cmd, "redis-benchmark", timeout)?;
    let text = format!("{out}\n{err}");
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Error") || l.contains("Error from server"))
        .collect();
    if !status.success() || !errors.is_empty() {
        let detail = if errors.is_empty() {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        } else {
            errors.iter().take(3).copied().collect::<Vec<_>>().join(" | ")
        };
        return Err(format!("redis-benchmark {}: {detail}", procs::describe(status)));
    }
    let mut o = parse_csv(&out, test.csv_name())
        .ok_or_else(|| format!("no {} line in redis-benchmark's output: {out:?}", test.csv_name()))?;
    o.requests = requests;
    for l in text.lines().map(str::trim).filter(|l| l.starts_with("WARNING")) {
        o.notes.push(l.to_string());
    }
    Ok(o)
}

/// Reads the line of `test` from redis-benchmark's `--csv` output:
/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
/// "p95_latency_ms","p99_latency_ms","max_latency_ms"` (the header names
/// the columns; only `rps` is required). `requests` is left 0.
pub fn parse_csv(out: &str, test: &str) -> Option<ClientOutput> {
    let fields = |l: &str| -> Vec<String> {
        l.trim()
            .split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let mut header: Option<Vec<String>> = None;
    for line in out.lines() {
        let f = fields(line);
        if f.first().map(String::as_str) == Some("test") {
            header = Some(f);
        } else if f.first().map(String::as_str) == Some(test) {
            let col = |name: &str, default: usize| {
                let i = header
                    .as_ref()
                    .and_then(|h| h.iter().position(|c| c == name))
                    .unwrap_or(default);
                f.get(i).and_then(|v| v.parse::<f64>().ok())
            };
            return Some(ClientOutput {
                rps: col("rps", 1)?,
                p50_ms: col("p50_latency_ms", 4),
                p99_ms: col("p99_latency_ms", 6),
                ..ClientOutput::default()
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_parse() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"PING_MBULK\",\"71199.71\",\"0.364\",\"0.072\",\"0.311\",\"0.759\",\"1.135\",\"4.687\"\n";
        let o = parse_csv(out, "PING_MBULK").unwrap();
        assert!((o.rps - 71_199.71).abs() < 1e-6);
        assert_eq!(o.p50_ms, Some(0.311));
        assert_eq!(o.p99_ms, Some(1.135));
        assert!(parse_csv(out, "SET").is_none());
        // Older redis-benchmark: no header, two columns.
        let o = parse_csv("\"SET\",\"81234.50\"\n", "SET").unwrap();
        assert!((o.rps - 81_234.5).abs() < 1e-6);
        assert_eq!(o.p50_ms, None);
    }

    #[test]
    fn test_names() {
        assert_eq!(Test::ALL.map(Test::arg), ["ping_mbulk", "set", "get"]);
        assert_eq!(Test::ALL.map(Test::csv_name), ["PING_MBULK", "SET", "GET"]);
    }
}
