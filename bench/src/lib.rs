//! The benchmark harness behind `cargo xtask bench`.
//!
//! Two binaries share this library:
//!
//! * `bench-server --impl NAME [--idle | --udp] [--count-allocs]`: an echo
//!   server on one of seven implementations ([`servers::Impl`]; `--udp`:
//!   a UDP echo on one socket instead of TCP), or on gaio's
//!   thread-per-core `CoresBuilder` (`--impl gaio-cores [--threads N]
//!   [--spread S] [--no-pin]`). It binds `127.0.0.1:0`, prints the bound
//!   address as its first line of stdout, and echoes until killed or until
//!   its stdin closes. A line `stats` on its stdin is answered by a line
//!   `allocs=N accepted=M live=B` ([`control`]).
//! * `bench [--quick]`: the load generator and driver ([`driver`]). It
//!   starts a fresh server process for every measurement, runs the same
//!   load against each implementation in turn, and writes a Markdown
//!   report, raw JSON and SVG plots to `target/bench/`. Its `scaling`
//!   scenario runs the ping-pong and accept-rate loads against gaio-cores
//!   on 1 to N threads (N = the CPUs available). Its `udp` scenario,
//!   run only when `--scenarios` names it, echoes 64-byte datagrams
//!   against each server's UDP echo.
//! * `bench --clients`: the gaio example servers (HTTP, RESP) against
//!   their tokio twins, nginx and redis-server, loaded by wrk and
//!   redis-benchmark ([`driver::clients`]); report and JSON in
//!   `target/bench/clients/`, with the examples' lines of code ([`loc`]).
//!
//! Everything runs on loopback (127.0.0.1) only.

pub mod alloc_count;
pub mod control;
pub mod driver;
pub mod limits;
pub mod loc;
pub mod pattern;
pub mod procfs;
pub mod servers;
