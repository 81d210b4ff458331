#!/usr/bin/env bash
# The test command (README, .ci/run): install what the tests need, then run them all.
# Run as root on Debian 12: the tests compare against the real supermin, mount filesystems and
# set file owners.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
cargo test --release --locked
