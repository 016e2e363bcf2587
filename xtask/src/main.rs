//! `cargo xtask <command>`: developer commands for the gaio workspace.
fn main() {}
