#!/usr/bin/env bash
# The main job on the shipped example (README): build examples/supermin.d (bash + coreutils)
# as a chroot and run a command inside it; then present the same appliance lazily with
# `supermin mount --fuse` and run the same command inside the view, without building anything;
# once more with the view in the kernel (`mount`'s default as root); and last in a VM booted
# straight from the view (`run --vm`, about 10 s under emulation).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
bin=./target/x86_64-unknown-linux-gnu/release/supermin
out=${1:-/var/tmp/supermin-example}
inside='echo "hello from $(ls /usr/bin | wc -l) programs"; ls -l /bin /etc/debian_version'

$bin -v --build -f chroot examples/supermin.d -o "$out"
echo "--- inside the built appliance:"
chroot "$out" /bin/bash -c "$inside"
echo "--- appliance in $out ($(du -sh "$out" | cut -f1))"

mnt=$out.mnt
mkdir -p "$mnt"
mountpoint -q "$mnt" && $bin umount "$mnt"   # left by an interrupted run
start=$(date +%s%N)
$bin mount --fuse --daemon examples/supermin.d "$mnt"
echo "--- the same appliance served lazily over FUSE at $mnt in $(( ($(date +%s%N) - start) / 1000000 )) ms; inside it:"
trap '$bin umount "$mnt"' EXIT
chroot "$mnt" /bin/bash -c "$inside"

# The same view in the kernel (as root): an EROFS image of the metadata under a read-only
# overlay whose data layer is the host, with no daemon.
kmnt=$out.kernel
mkdir -p "$kmnt"
mountpoint -q "$kmnt" && $bin umount "$kmnt"
start=$(date +%s%N)
$bin mount examples/supermin.d "$kmnt"
echo "--- and in the kernel (mount's default as root) at $kmnt in $(( ($(date +%s%N) - start) / 1000000 )) ms; inside it:"
chroot "$kmnt" /bin/bash -c "$inside"
$bin umount "$kmnt"

echo "--- and in a VM whose root is the view (run --vm, nothing built):"
$bin run --vm examples/supermin.d -- /bin/bash -c "$inside"
