#!/usr/bin/env bash
# Wall time of the main job (`bakeoff run`, the default local lineup) after install, on this machine.
# Target (issue 3): <= 5 minutes on 2 cores. Run from the repository root after `make install`.
# Model variants are made on first use; pass --cold to remove them first and time that too.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
db=$(mktemp -d)/bench.db
if [ "${1:-}" = "--cold" ]; then "$BIN/bakeoff" local clean; fi
start=$(date +%s.%N)
"$BIN/bakeoff" run --db "$db" --no-cache --quiet > /dev/null
end=$(date +%s.%N)
python3 - "$start" "$end" <<'PY'
import sys
s, e = map(float, sys.argv[1:])
print(f"bakeoff run (default local lineup, --no-cache): {e - s:.1f} s wall (target <= 300 s)")
PY
rm -rf "$(dirname "$db")"
