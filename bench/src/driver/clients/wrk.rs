//! wrk: the HTTP load, its pipelining script and its output.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::procs::{self, Pinning};
use super::ClientOutput;

/// Requests a pipelined connection keeps in flight.
pub const PIPELINE: usize = 16;

/// TechEmpower's `pipeline.lua`: each write carries 16 requests.
pub fn pipeline_lua(depth: usize) -> String {
    format!(
        "-- Written by `cargo xtask bench --clients`: {depth} requests per write\n\
         -- (TechEmpower's pipeline.lua).\n\
         init = function(args)\n\
         \x20  local r = {{}}\n\
         \x20  for i = 1, {depth} do\n\
         \x20     r[i] = wrk.format(nil, \"/plaintext\")\n\
         \x20  end\n\
         \x20  req = table.concat(r)\n\
         end\n\
         \n\
         request = function()\n\
         \x20  return req\n\
         end\n"
    )
}

/// Runs `wrk -t1 -c conns -d secs [-s script] --latency` against
/// `http://addr/plaintext` on the client CPU.
pub fn run(
    wrk: &Path,
    pin: &Pinning,
    addr: SocketAddr,
    conns: usize,
    secs: u64,
    script: Option<&Path>,
) -> Result<ClientOutput, String> {
    let mut cmd = pin.client(wrk);
    cmd.args([
        "-t1",
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(format!("http://{addr}/plaintext"));
    let timeout = Duration::from_secs(secs + 30);
    let (status, out, err) = procs::run_captured(cmd, "wrk", timeout)?;
    if !status.success() {
        return Err(format!(
            "wrk {}: {}",
            procs::describe(status),
            first_lines(&format!("{err}{out}"), 3)
        ));
    }
    let mut o = parse(&out).ok_or_else(|| format!("cannot read wrk's output: {}", first_lines(&out, 12)))?;
    if !err.trim().is_empty() {
        o.notes.push(format!("wrk stderr: {}", first_lines(&err, 2)));
    }
    Ok(o)
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Reads wrk's report: requests, requests/s, latency percentiles,
/// "Socket errors: connect A, read B, write C, timeout D" and
/// "Non-2xx or 3xx responses: N" (printed only when not zero).
pub fn parse(out: &str) -> Option<ClientOutput> {
    let mut o = ClientOutput::default();
    let mut have_requests = false;
    let mut have_rps = false;
    let mut in_dist = false;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            o.rps = v.trim().parse().ok()?;
            have_rps = true;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            o.non_2xx = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            for part in v.split(',') {
                let mut kv = part.split_whitespace();
                let (Some(k), Some(n)) = (kv.next(), kv.next().and_then(|n| n.parse::<u64>().ok())) else {
                    return None;
                };
                match k {
                    "connect" => o.errors.connect = n,
                    "read" => o.errors.read = n,
                    "write" => o.errors.write = n,
                    "timeout" => o.errors.timeout = n,
                    _ => return None,
                }
            }
        } else if line.starts_with("Latency Distribution") {
            in_dist = true;
        } else if in_dist && line.starts_with("50%") {
            o.p50_ms = percentile(line);
        } else if in_dist && line.starts_with("99%") {
            o.p99_ms = percentile(line);
            in_dist = false;
        } else if line.contains(" requests in ") {
            // "123456 requests in 2.00s, 15.07MB read"
            o.requests = line.split_whitespace().next()?.parse().ok()?;
            have_requests = true;
        }
    }
    (have_requests && have_rps).then_some(o)
}

/// The latency of a "Latency Distribution" line (`99%    1.10ms`). wrk
/// 4.1 prints `0.00us` for some percentiles of pipelined runs (seen for
/// the 99th against nginx at 512 connections): a zero is no reading.
fn percentile(line: &str) -> Option<f64> {
    line.split_whitespace()
        .nth(1)
        .and_then(parse_duration_ms)
        .filter(|&ms| ms > 0.0)
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.50m`, in ms.
pub fn parse_duration_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "Running 2s test @ http://127.0.0.1:40123/plaintext
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.53us  150.21us   5.12ms   90.10%
    Req/Sec   100.57k     4.12k  106.78k    70.00%
  Latency Distribution
     50%  590.00us
     75%  650.00us
     90%  720.00us
     99%    1.10ms
  200142 requests in 2.00s, 24.62MB read
Requests/sec: 100061.23
Transfer/sec:     12.31MB
";

    #[test]
    fn a_clean_report_parses() {
        let o = parse(CLEAN).unwrap();
        assert_eq!(o.requests, 200_142);
        assert!((o.rps - 100_061.23).abs() < 1e-6);
        assert_eq!(o.non_2xx, 0);
        assert_eq!(o.errors.total(), 0);
        assert!((o.p50_ms.unwrap() - 0.59).abs() < 1e-9);
        assert!((o.p99_ms.unwrap() - 1.10).abs() < 1e-9);
    }

    #[test]
    fn errors_and_non_2xx_are_read() {
        let out = CLEAN.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 12, write 3, timeout 45\n  Non-2xx or 3xx responses: 678\nRequests/sec:",
        );
        let o = parse(&out).unwrap();
        assert_eq!(o.non_2xx, 678);
        assert_eq!(
            (o.errors.connect, o.errors.read, o.errors.write, o.errors.timeout),
            (0, 12, 3, 45)
        );
        assert_eq!(o.errors.total(), 60);
    }

    #[test]
    fn a_zero_percentile_is_no_reading() {
        let o = parse(&CLEAN.replace("99%    1.10ms", "99%    0.00us")).unwrap();
        assert_eq!(o.p99_ms, None);
        assert!(o.p50_ms.is_some());
    }

    #[test]
    fn truncated_output_does_not_parse() {
        assert!(parse("Running 2s test @ http://x/\n").is_none());
        assert!(parse(&CLEAN.replace("Requests/sec: 100061.23", "")).is_none());
    }

    #[test]
    fn durations_convert_to_ms() {
        assert_eq!(parse_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_duration_ms("1.5ms"), Some(1.5));
        assert_eq!(parse_duration_ms("500.00us"), Some(0.5));
        assert_eq!(parse_duration_ms("1.00m"), Some(60_000.0));
        assert_eq!(parse_duration_ms("7"), None);
    }

    #[test]
    fn the_script_pipelines_sixteen() {
        let lua = pipeline_lua(PIPELINE);
        assert!(lua.contains("for i = 1, 16 do"));
        assert!(lua.contains("wrk.format(nil, \"/plaintext\")"));
        assert!(lua.contains("request = function()"));
    }
}
