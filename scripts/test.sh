#!/usr/bin/env bash
# The test command (README, .ci/run): install what the tests need, check formatting, lints and
# docs, then run every test. Run as root on Debian 12: the tests compare against the real
# supermin, mount filesystems and set file owners.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
for tool in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$tool" || rustup component add "$tool"
done
cargo fmt --all --check
cargo clippy --release --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --release --locked --no-deps --document-private-items
cargo build --release --locked
cargo test --release --locked
# Thirty seconds of each fuzz target (issue 10; SECURITY.md has the 10-minute figures), after
# the tests rather than beside them: a loaded machine would make libFuzzer report slow inputs
# as hangs.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
bash scripts/fuzz.sh 30
