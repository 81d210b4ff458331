#!/usr/bin/env bash
# Run `cargo bench --bench limits`, `views` and `vm` and put the tables they print
# into README.md, each between its `<!-- NAME:begin -->` and `<!-- NAME:end -->` lines. As
# root, on an idle machine (takes about 10 minutes): BENCH_RUNS=5 scripts/bench-readme.sh
# Only some: scripts/bench-readme.sh vm
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(mktemp)
trap 'rm -f "$table"' EXIT
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(limits views vm)
for name in "${benches[@]}"; do
    cargo bench --locked --bench "$name" | sed -n "/<!-- $name:begin -->/,/<!-- $name:end -->/p" >"$table"
    grep -q "$name:end" "$table" || { echo "bench-readme.sh: the $name bench printed no table" >&2; exit 1; }
    python3 - "$table" "$name" <<'PY'
import re, sys
table, name = open(sys.argv[1]).read().strip(), sys.argv[2]
readme = open("README.md").read()
pattern = re.compile(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", re.S)
if not pattern.search(readme):
    sys.exit(f"bench-readme.sh: README.md has no {name}:begin/{name}:end block")
open("README.md", "w").write(pattern.sub(lambda _: table, readme))
PY
    echo "README.md: $name table updated"
done
