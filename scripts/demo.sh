#!/usr/bin/env bash
# The main job on the shipped example (README): build examples/supermin.d (bash + coreutils)
# as a chroot and run a command inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
out=${1:-/var/tmp/supermin-example}
./target/x86_64-unknown-linux-gnu/release/supermin -v --build -f chroot examples/supermin.d -o "$out"
echo "--- inside the appliance:"
chroot "$out" /bin/bash -c 'echo "hello from $(ls /usr/bin | wc -l) programs"; ls -l /bin /etc/debian_version'
echo "--- appliance in $out ($(du -sh "$out" | cut -f1))"
