#!/usr/bin/env bash
# Run `cargo bench --bench limits` and put the table it prints into README.md, between the
# `<!-- limits:begin -->` and `<!-- limits:end -->` lines. As root, on an idle machine
# (takes about 5 minutes): BENCH_RUNS=5 scripts/bench-readme.sh
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(mktemp)
trap 'rm -f "$table"' EXIT
cargo bench --locked --bench limits | sed -n '/<!-- limits:begin -->/,/<!-- limits:end -->/p' >"$table"
grep -q 'limits:end' "$table" || { echo "bench-readme.sh: the bench printed no table" >&2; exit 1; }
python3 - "$table" <<'PY'
import re, sys
table = open(sys.argv[1]).read().strip()
readme = open("README.md").read()
pattern = re.compile(r"<!-- limits:begin -->.*?<!-- limits:end -->", re.S)
if not pattern.search(readme):
    sys.exit("bench-readme.sh: README.md has no limits:begin/limits:end block")
open("README.md", "w").write(pattern.sub(lambda _: table, readme))
PY
echo "README.md: limits table updated"
