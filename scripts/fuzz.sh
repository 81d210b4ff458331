#!/bin/bash
# Run every cargo-fuzz target of fuzz/ for SECONDS each (default 30), one after another, and
# exit non-zero if any of them found a crash, a panic, a timeout or an out-of-memory input.
#
#   scripts/fuzz.sh [SECONDS [TARGET...]]
#
# With TARGETs, only those (the names of fuzz/fuzz_targets/*.rs) are run.
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if it is
# missing. Each target starts from its committed seed corpus, fuzz/corpus/<target>/, which it
# only reads: what it finds goes to fuzz/target/corpus-new/<target>/ (to fold it into the seeds:
# cargo +nightly fuzz cmin <target> after copying it over). Crash reproducers land in
# fuzz/artifacts/<target>/; `cargo +nightly fuzz run <target> <file>` replays one.
#
# One libFuzzer process (one job, one worker) at a time, at the lowest CPU priority. No
# sanitizer: the parsers are safe Rust, where a bug is a panic (overflow checks are on), and
# AddressSanitizer would halve the executions per second for nothing to find.
set -uo pipefail

secs="${1:-30}"
case "$secs" in '' | *[!0-9]*)
    echo "usage: $0 [SECONDS [TARGET...]]" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/../fuzz" || exit 1

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi

flags=(--sanitizer none)
nice -n 19 cargo +nightly fuzz build "${flags[@]}" || exit 1

targets=("${@:2}")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=()
for target in "${targets[@]}"; do
    new="target/corpus-new/$target"
    log="target/fuzz-$target.log"
    mkdir -p "$new" "corpus/$target"
    echo "== $target: ${secs}s"
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GB is an out-of-memory.
    nice -n 19 cargo +nightly fuzz run "${flags[@]}" "$target" "$new" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units|^Done [0-9]+ runs' "$log"
    if [ "$status" -ne 0 ]; then
        grep -E -A1 'panicked at|^SUMMARY|^==[0-9]+== ERROR|Test unit written' "$log" | cut -c1-300 | head -20
        echo "== $target: FAILED (exit $status, full log in fuzz/$log)"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz.sh: failing targets: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: every target ran ${secs}s without a failure"
