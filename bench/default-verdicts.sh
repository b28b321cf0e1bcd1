#!/usr/bin/env bash
# The default run's verdicts over N consecutive runs (default 10): the README's main command, `cargo run --release
# -- run`, after one build; prints each run's exit code, its counts by verdict, every check that did not pass with
# its summary, and each run's duration, then the checks that did not pass in any run. A stable run passes every
# check every time. Run it on an otherwise idle machine: `bash bench/default-verdicts.sh 10`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
cargo build --release >/dev/null 2>&1
dir=$(mktemp -d)
for i in $(seq 1 "$rounds"); do
  rm -rf xregion-out
  code=0
  cargo run --release -q -- run -q >"$dir/$i.log" 2>&1 || code=$?
  if [ ! -s xregion-out/report.json ]; then
    echo "error: round $i: xregion run exited $code and wrote no report; its output:" >&2
    tail -20 "$dir/$i.log" >&2
    exit 1
  fi
  cp xregion-out/report.json "$dir/$i.json"
  echo "$code" >"$dir/$i.code"
done
python3 - "$dir" "$rounds" <<'PY'
import collections, json, sys
d, n = sys.argv[1], int(sys.argv[2])
bad = collections.Counter()
for i in range(1, n + 1):
    r = json.load(open(f"{d}/{i}.json"))
    code = open(f"{d}/{i}.code").read().strip()
    counts = collections.Counter(c["verdict"] for c in r["checks"])
    print(f"run {i}: exit {code}, {r['duration_s']:.1f} s, " + ", ".join(f"{v} {counts[v]}" for v in sorted(counts)))
    for c in r["checks"]:
        if c["verdict"] != "pass":
            bad[c["id"]] += 1
            print(f"    {c['verdict'].upper()} {c['id']}: {c['summary']}")
print(f"{n} runs; checks that did not pass: " + (", ".join(f"{k} ({v})" for k, v in bad.items()) or "none"))
PY
