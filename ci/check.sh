#!/usr/bin/env bash
# The checks every commit on main must pass, in the order they fail fastest.
# Installs what it needs itself, so it runs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! cargo nextest --version >/dev/null 2>&1; then
    # `cargo xtask test` falls back to one-at-a-time `cargo test` without
    # nextest, so a failed install is not fatal.
    cargo install cargo-nextest --locked >/dev/null 2>&1 || echo "ci: cargo-nextest unavailable; using cargo test"
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo xtask test (the README's test command)"
cargo xtask test
