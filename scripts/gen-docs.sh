#!/usr/bin/env bash
# Regenerate the manual pages and shell completions shipped in dist/ from the clap definitions
# (`supermin manpage`, `supermin completions`). tests/docs.rs fails when dist/ is out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin=target/x86_64-unknown-linux-gnu/release/supermin
rm -rf dist/man dist/completions
mkdir -p dist/man dist/completions
"$bin" manpage dist/man
"$bin" completions bash > dist/completions/supermin.bash
"$bin" completions zsh > dist/completions/_supermin
"$bin" completions fish > dist/completions/supermin.fish
echo "dist/ regenerated"
