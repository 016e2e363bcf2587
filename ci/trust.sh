#!/usr/bin/env bash
# Trust checks beyond the test suite, sized for a CI budget (about 5 to 7
# minutes on 2 cores once the tools are installed and the builds cached):
#
#   1. Miri over the engine's data structures (slab, timers, command
#      queue) and its swap memory;
#   2. the fuzz target's fixed inputs on stable, then libFuzzer for
#      $FUZZ_SECS seconds on nightly (cargo-fuzz is installed if missing);
#   3. valgrind (memcheck, leaks) over the gaio-core unit tests and the
#      $VALGRIND_TESTS integration tests of gaio, if valgrind is installed
#      (`echo` passes too but takes some 13 minutes under valgrind, and its
#      one-byte-buffer test can hit its own 60 s bound there);
#   4. cargo xtask soak --secs $SOAK_SECS;
#   5. cargo xtask abuse --secs $ABUSE_SECS.
#
# Every step runs even if an earlier one failed; a table of durations and
# results closes the run, and the exit status is non-zero if any step
# failed. Steps whose tools are unavailable (no nightly toolchain, no
# valgrind, cargo-fuzz not installable) are reported as skipped.
# .ci/run (ci/check.sh) runs it with shorter durations.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECS=${FUZZ_SECS:-45}
SOAK_SECS=${SOAK_SECS:-30}
ABUSE_SECS=${ABUSE_SECS:-15}
VALGRIND_TESTS=${VALGRIND_TESTS:-"lifecycle faults"}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
SUPP=$PWD/ci/valgrind.supp

results=()
failed=0
started_all=$(date +%s)

# step NAME COMMAND...: runs, times and records one step.
step() {
    local name=$1
    shift
    echo "== $name"
    local t0 rc
    t0=$(date +%s)
    "$@"
    rc=$?
    local secs=$(($(date +%s) - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("$(printf '%-28s %5ss  ok' "$name" "$secs")")
    else
        results+=("$(printf '%-28s %5ss  FAILED (exit %s)' "$name" "$secs" "$rc")")
        failed=1
    fi
}

skip() {
    echo "== $1: skipped ($2)"
    results+=("$(printf '%-28s %6s  skipped: %s' "$1" "-" "$2")")
}

has_nightly() {
    rustup toolchain list 2>/dev/null | grep -q '^nightly'
}

miri() {
    rustup component add miri --toolchain nightly >/dev/null 2>&1 || return 1
    # The data structures and the swap memory (its unsafe set_len, read
    # through the fake poller's pipe descriptors), and the engine on the
    # fake completion ring, whose kernel writes into the engine's buffers
    # later, as io_uring does: a buffer given back while its request was in
    # flight would be a use after free here. The engine's other tests wait
    # on wall-clock time and take too long interpreted.
    MIRIFLAGS=-Zmiri-disable-isolation cargo +nightly miri test -p gaio-core --lib -- \
        engine::slab engine::timers engine::swap engine::chunked command_queue engine::tests_ring
}

fuzz_fixed() {
    cargo test --manifest-path fuzz/Cargo.toml --no-default-features
}

fuzz_run() {
    (cd fuzz && cargo +nightly fuzz run engine_ops --target-dir "$TARGET_DIR/fuzz" \
        -- -max_total_time="$FUZZ_SECS" -max_len=512 -print_final_stats=1)
}

# valgrind_one BINARY: runs one test binary under memcheck; any leak
# (definite, indirect, possible) or memory error fails it.
valgrind_one() {
    valgrind --tool=memcheck --leak-check=full \
        --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible \
        --error-exitcode=99 --max-threads=1500 \
        --suppressions="$SUPP" "$1" --test-threads=1
}

# test_binary ARGS...: the path of the test executable cargo builds.
test_binary() {
    cargo test "$@" --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*"' | tail -1 | sed 's/"executable":"\(.*\)"/\1/'
}

valgrind_all() {
    local bin rc=0
    bin=$(test_binary -p gaio-core --lib) && [ -n "$bin" ] || return 1
    valgrind_one "$bin" || rc=1
    for t in $VALGRIND_TESTS; do
        bin=$(test_binary -p gaio --test "$t") && [ -n "$bin" ] || return 1
        # Integration tests count descriptors and hand sockets around: run
        # them from the crate's directory, one at a time. On epoll: memcheck
        # cannot see what the kernel writes through an io_uring ring (the
        # ring's own memory safety rests on the engine's cancel-before-free
        # rule and the conformance suite).
        (cd gaio && GAIO_BACKEND=epoll valgrind_one "$bin") || rc=1
    done
    return $rc
}

if has_nightly; then
    step "miri (slab, timers, swap, chunked tables, queue, engine on the fake ring)" miri
else
    skip "miri (slab, timers, swap, chunked tables, queue, engine on the fake ring)" "no nightly toolchain"
fi

step "fuzz: fixed inputs" fuzz_fixed
if ! has_nightly; then
    skip "fuzz: libFuzzer ${FUZZ_SECS}s" "no nightly toolchain"
elif cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked; then
    step "fuzz: libFuzzer ${FUZZ_SECS}s" fuzz_run
else
    skip "fuzz: libFuzzer ${FUZZ_SECS}s" "cargo-fuzz could not be installed"
fi

if command -v valgrind >/dev/null 2>&1; then
    step "valgrind (core, $VALGRIND_TESTS)" valgrind_all
else
    skip "valgrind" "valgrind not installed"
fi

step "soak ${SOAK_SECS}s" cargo xtask soak --secs "$SOAK_SECS"
step "abuse ${ABUSE_SECS}s" cargo xtask abuse --secs "$ABUSE_SECS"

echo "== trust checks: $(($(date +%s) - started_all)) s in all"
printf '   %s\n' "${results[@]}"
exit $failed
