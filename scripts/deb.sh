#!/usr/bin/env bash
# Builds the Debian package supermin-rs (README, "Install as the system supermin"): the
# release binary, the man pages and completions of dist/, and the maintainer scripts of
# dist/deb/ that divert Debian's /usr/bin/supermin and its man page. Prints the .deb's path
# on its last line: TARGET_DIR/x86_64-unknown-linux-gnu/debian/supermin-rs_VERSION_amd64.deb.
# Needs only cargo, dpkg-deb and gzip (cargo-deb took 7 minutes to install here).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
cargo=${CARGO:-cargo}
triple=x86_64-unknown-linux-gnu

"$cargo" build --release --locked --package supermin --bin supermin
target_dir=$("$cargo" metadata --format-version 1 --no-deps | sed -E 's/.*"target_directory":"([^"]*)".*/\1/')
bin=$target_dir/$triple/release/supermin
# The package version is the one the binary reports: `supermin 5.2.2 (supermin-rs X.Y.Z)`.
version=$("$bin" --version | sed -nE 's/.*\(supermin-rs ([^)]+)\)$/\1/p')
[ -n "$version" ] || { echo "deb.sh: cannot read the version from '$bin --version'" >&2; exit 1; }

out=$target_dir/$triple/debian
root=$out/supermin-rs
rm -rf "$root"
install -D -m 0755 "$bin" "$root/usr/bin/supermin"
for page in dist/man/*.1; do
    install -d "$root/usr/share/man/man1"
    gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 dist/completions/supermin.bash "$root/usr/share/bash-completion/completions/supermin"
install -D -m 0644 dist/completions/_supermin "$root/usr/share/zsh/vendor-completions/_supermin"
install -D -m 0644 dist/completions/supermin.fish "$root/usr/share/fish/vendor_completions.d/supermin.fish"
install -D -m 0644 dist/deb/copyright "$root/usr/share/doc/supermin-rs/copyright"
chmod 0644 "$root"/usr/share/man/man1/*.gz

install -d "$root/DEBIAN"
install -m 0755 dist/deb/preinst dist/deb/postrm "$root/DEBIAN/"
size=$(du -s --apparent-size --block-size=1024 --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" dist/deb/control > "$root/DEBIAN/control"

# The same commit gives the same .deb: file times are the commit's (dpkg-deb clamps to it).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
deb=$out/supermin-rs_${version}_amd64.deb
dpkg-deb --build --root-owner-group "$root" "$deb" >&2
echo "$deb"
