//! `bench [--quick] [--out DIR] [--servers a,b] [--scenarios x,y]`: runs
//! the benchmark (see the `gaio_bench::driver` module) and writes
//! `target/bench/report.md`, `results.json` and SVG plots.
//!
//! `bench --clients [--reps N] [--duration SECS] [--out DIR]`: the example
//! servers against wrk and redis-benchmark instead (the
//! `gaio_bench::driver::clients` module); report in `target/bench/clients/`.

use std::process::ExitCode;

use gaio_bench::driver::{self, clients, Options};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", driver::USAGE);
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--clients") {
        let opts = match clients::Options::parse(args) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("bench: {e}");
                return ExitCode::from(2);
            }
        };
        return match clients::run(&opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    match driver::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
