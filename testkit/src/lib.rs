//! Test support shared by gaio's integration tests (`gaio/tests/util`), the
//! benchmark harness (`bench/`) and the stress tools (`stress/`): the
//! helpers each of them used to carry a copy of. Not published.
//!
//! One module per job:
//!
//! * [`nofile`]: reading and changing this process's descriptor limit
//!   (`RLIMIT_NOFILE`).
//! * [`memory`]: a process's resident memory (`VmRSS`, `VmHWM`) from
//!   `/proc/PID/status` (Linux; an `Unsupported` error elsewhere).
//! * [`pattern`]: byte streams a receiver can check knowing only where in
//!   the stream the bytes belong.
//! * [`rng`]: small seeded generators, so a run is replayed from its seed.
//!
//! Nothing here needs `unsafe`: the descriptor limit goes through `rustix`.

#![forbid(unsafe_code)]

pub mod memory;
#[cfg(unix)]
pub mod nofile;
pub mod pattern;
pub mod rng;
