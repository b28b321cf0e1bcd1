#!/usr/bin/env bash
# Durable writes per second that one lab region acknowledges, at client concurrency 1, 16, 64 and 256, and where
# the time goes.
#
# Starts a lab with `xregion lab up`, then per concurrency: resets the region's store timings
# (`GET /v1/stats/store?reset=true`), drives PUTs at us-east-1 with `xregion load` (TLS 1.3, the lab's CA
# DIR/pki/ca.pem, the writer token from DIR/tokens.json), reads the store timings, then drives GETs of the same key
# at the same concurrency as a reference (same TLS, HTTP and token check, no write path).
#
# Counted: successful responses only (`requests_per_s.ok`); a step with any failed request stops the script with an
# error, as a failure is not a durable write.
#
# Printed per concurrency: writes/s, the writes' client latency P50/P99, the store's acquire wait (time queued for
# the writer thread) and group-commit time (fsync included) P50, writes per commit, and reads/s with their P50.
# The client latency minus acquire and commit is the request's time outside the store (TLS, HTTP, token check,
# encryption of the value, audit entry); the read at the same concurrency shows the part TLS/HTTP/auth alone take.
#
# Traffic goes only to the lab's loopback address. Each load step is bounded by --duration.
# Usage: bash bench/node-writes.sh [SECONDS_PER_STEP]   (XREGION=path/to/xregion to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
if [ -z "${XREGION:-}" ]; then
  cargo build --release -q -p xregion
  XREGION=target/release/xregion
fi
dir=$(mktemp -d)
"$XREGION" lab up --dir "$dir" >"$dir/up.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do [ -f "$dir/lab.json" ] && break; sleep 0.1; done
[ -f "$dir/lab.json" ] || { echo "error: the lab did not write $dir/lab.json within 30 s; see $dir/up.log" >&2; cat "$dir/up.log" >&2; exit 2; }
url=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print([r for r in s['regions'] if r['name']=='us-east-1'][0]['endpoint'])" "$dir/lab.json")
ca="$dir/pki/ca.pem"
token=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print([p for p in t['principals'] if p['name']=='writer'][0]['token'])" "$dir/tokens.json")
# Wait for the region to answer over TLS.
for _ in $(seq 1 100); do
  curl -sf --cacert "$ca" "$url/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --cacert "$ca" "$url/healthz" >/dev/null || { echo "error: $url/healthz did not answer within 10 s; see $dir/up.log" >&2; exit 2; }
echo "region us-east-1 at $url; $secs s per step; successful responses only"

stats() { curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$url/v1/stats/store$1"; }
# Runs xregion load with the given flags, writes its JSON to $2, fails on any failed request.
load() {
  local label=$1 out=$2
  shift 2
  "$XREGION" load "$@" --ca "$ca" -H "Authorization: Bearer $token" --duration "${secs}s" --timeout 10s --json >"$out"
  python3 - "$label" "$out" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
e = r["errors"]
failed = sum(e.values())
if failed or r["requests"] == 0:
    codes = {k: v for k, v in r["statuses"].items() if not k.startswith("2")}
    sys.exit(f"error: {label}: {failed} of {r['requests']} requests failed ({e}, statuses {codes}); "
             "a failed request is not a durable write, so this measurement is void")
PY
}

printf '%5s %11s %9s %9s %11s %10s %8s %10s %9s\n' conc writes/s "p50 ms" "p99 ms" "acquire ms" "commit ms" w/commit reads/s "read p50"
for c in 1 16 64 256; do
  stats "?reset=true" >/dev/null
  load "PUT at concurrency $c" "$dir/w$c.json" "$url/v1/kv/bench/c$c" -m PUT -H "Content-Type: application/json" \
    -d '{"value":"bench"}' --vus "$c"
  stats "" >"$dir/s$c.json"
  load "GET at concurrency $c" "$dir/r$c.json" "$url/v1/kv/bench/c$c" --vus "$c"
  python3 - "$c" "$dir/w$c.json" "$dir/s$c.json" "$dir/r$c.json" <<'PY'
import json, sys
c = sys.argv[1]
w, s, r = (json.load(open(p)) for p in sys.argv[2:5])
def pct(res, q):
    counts = [pair for st in res["per_request"].values() for pair in st["latency"]["counts"]]
    counts.sort()
    n = sum(k for _, k in counts)
    seen = 0
    for v, k in counts:
        seen += k
        if seen >= q * n:
            return v / 1000.0
    return 0.0
acq, com = s["acquire_ms"], s["commit_ms"]
per_commit = w["requests"] / com["count"] if com["count"] else float("nan")
print(f"{c:>5} {w['requests_per_s']['ok']:>11.0f} {pct(w, 0.5):>9.2f} {pct(w, 0.99):>9.2f} {acq['p50']:>11.2f} "
      f"{com['p50']:>10.2f} {per_commit:>8.1f} {r['requests_per_s']['ok']:>10.0f} {pct(r, 0.5):>9.2f}")
PY
done
