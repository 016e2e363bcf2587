//! `bench [--quick] [--out DIR] [--servers a,b] [--scenarios x,y]`: runs
//! the benchmark (see the `gaio_bench::driver` module) and writes
//! `target/bench/report.md`, `results.json` and SVG plots.

use std::process::ExitCode;

use gaio_bench::driver::{self, Options};

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
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
