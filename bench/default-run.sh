#!/usr/bin/env bash
# The default run's wall time, N rounds (default 5): the README's main command, `cargo run --release -- run`, after
# one build that is not timed; prints every round, the median, and each suite's median time from report.json.
# Run it on an otherwise idle machine: `bash bench/default-run.sh 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release >/dev/null 2>&1
dir=$(mktemp -d)
for i in $(seq 1 "$rounds"); do
  rm -rf xregion-out
  s=$(date +%s.%N)
  code=0
  cargo run --release -q -- run -q >"$dir/$i.log" 2>&1 || code=$?
  # 0 and 1 are verdicts (a failed check is still a timed run); anything else means the run could not be done, and
  # its time would measure nothing.
  if [ "$code" -gt 1 ]; then
    echo "error: round $i: xregion run exited $code, so its time is void; its output:" >&2
    tail -20 "$dir/$i.log" >&2
    exit 1
  fi
  [ "$code" -eq 1 ] && echo "round $i: a check failed (exit 1); timed anyway"
  e=$(date +%s.%N)
  cp xregion-out/report.json "$dir/$i.json"
  echo "round $i: $(echo "$e - $s" | bc) s"
done
python3 - "$dir" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
reps = [json.load(open(f"{d}/{i}.json")) for i in range(1, n + 1)]
print(f"median run: {statistics.median(r['duration_s'] for r in reps):.1f} s (report duration_s)")
suites = {}
for r in reps:
    for s in {c['suite'] for c in r['checks']}:
        suites.setdefault(s, []).append(sum(c['duration_s'] for c in r['checks'] if c['suite'] == s))
for s, v in suites.items():
    print(f"  {s:18} median {statistics.median(v):6.1f} s  rounds {[round(x, 1) for x in v]}")
PY
