#!/usr/bin/env bash
# Installs the system packages the tests and benches need on a fresh Debian 12 machine (as root).
#
# qemu-system-x86 must come from bookworm-backports, because the machine's preinstalled
# qemu-utils already does: mixing suites otherwise makes apt report a conflict when
# libguestfs0 pulls in qemu. The backports stanza is derived from the machine's own first
# sources stanza so no mirror host name is written here.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: must run as root (apt-get)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

sources=/etc/apt/sources.list.d/debian.sources
backports=/etc/apt/sources.list.d/supermin-rs-backports.sources
# Skipped when some sources file already names bookworm-backports (never the same suite twice).
if [ -f "$sources" ] && [ ! -f "$backports" ] \
    && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # First stanza only (up to the first blank line), with its Suites: line replaced.
    awk 'BEGIN{RS=""; ORS="\n"} NR==1{print; exit}' "$sources" \
        | sed -E 's/^Suites:.*/Suites: bookworm-backports/' > "$backports"
fi

apt-get update -q
# Order matters: qemu from backports first, then what depends on it. busybox-static is the
# initramfs of the fuse crate's own virtio-fs VM test (fuse/tests/virtio_vm.rs).
apt-get install -y -q -t bookworm-backports qemu-system-x86
apt-get install -y -q \
    supermin fuse3 attr e2fsprogs erofs-utils cpio xz-utils zstd \
    linux-image-amd64 libguestfs0 libguestfs-tools \
    rpm libarchive-tools hyperfine \
    rpm2cpio libsqlite3-dev pacman-package-manager makepkg fakeroot mmdebstrap sqlite3 \
    podman runc zsh fish man-db busybox-static

# fuse3's udev rule makes /dev/fuse usable by all (0666), but only when the device appears: on
# a machine where the module was loaded before fuse3 was installed it stays 0600, and the
# tests' non-root mounts (fusermount3) fail with EACCES. Apply the rule's mode now.
if [ -c /dev/fuse ]; then
    chmod 0666 /dev/fuse
fi
