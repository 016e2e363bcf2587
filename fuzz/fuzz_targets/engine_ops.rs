//! libFuzzer entry point: every input is an op sequence for the engine
//! (see `gaio_fuzz::run`); a broken invariant panics, which libFuzzer
//! reports as a crash with the input saved under `artifacts/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gaio_fuzz::run(data, gaio_fuzz::Checks::ALL);
});
