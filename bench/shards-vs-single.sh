#!/usr/bin/env bash
# Four shards merged against one run of the same total load, on this machine: starts `xregion lab up`, describes
# it as an http deployment, then ROUNDS (default 5) times runs (a) the load checks once with USERS users (default
# 400), and (b) four `--shard I/4` processes of USERS/4 users each, started together with --start-at, merged
# with `xregion merge`. Prints every run's sustained-phase figures (requests, requests/s, P50/P95/P99, users
# reached, verdict) and each side's median and range. Run it on an otherwise idle machine:
# `bash bench/shards-vs-single.sh`. XREGION picks the binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
users=${USERS:-400}
if [ -z "${XREGION:-}" ]; then
  cargo build --release >/dev/null 2>&1
  XREGION=target/release/xregion
fi
XREGION=$(realpath "$XREGION")
work=$(mktemp -d)
"$XREGION" lab up --dir "$work/lab" >"$work/lab.log" 2>&1 &
lab_pid=$!
trap '"$XREGION" lab down --dir "$work/lab" >/dev/null 2>&1 || true; wait $lab_pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$work/lab/lab.json" ] && "$XREGION" lab status --dir "$work/lab" >/dev/null 2>&1 && break; sleep 0.1; done
python3 - "$work" "$users" <<'PY'
import json, sys
work, users = sys.argv[1], int(sys.argv[2])
lab = json.load(open(f"{work}/lab/lab.json"))
tokens = json.load(open(f"{work}/lab/tokens.json"))
tok = {p["name"]: p["token"] for p in tokens["principals"]}
q = json.dumps
out = ['[deployment]', 'kind = "http"']
for r in lab["regions"]:
    out += ['[[deployment.regions]]', f'name = {q(r["name"])}', f'endpoint = {q(r["endpoint"])}']
out += ['[deployment.tls]', f'ca_file = {q(work + "/lab/pki/ca.pem")}']
out += ['[deployment.auth]', f'read_token = {q(tok["reader"])}', f'write_token = {q(tok["writer"])}',
        f'admin_token = {q(tok["admin"])}']
t = lab["traffic"]
inline = lambda d: "{ " + ", ".join(f"{q(k)} = {q(v)}" for k, v in d.items()) + " }"
out += ['[deployment.traffic]', f'records = {inline(t["records"])}', f'cdn = {q(t["cdn"])}',
        f'nearest = {inline(t["nearest"])}', f'geolocation = {inline(t["geolocation"])}',
        f'weights = {inline(t["weights"])}', f'capacity = {inline(t["capacity"])}',
        f'failover_order = {q(t["failover_order"])}']
out += ['[checks.load]', f'users = {users}', 'time_scale = 0.3']
open(f"{work}/http.toml", "w").write("\n".join(out) + "\n")
PY
run_single() { "$XREGION" run --config "$work/http.toml" --profile quick --check performance.load --out "$1" -q >/dev/null 2>&1 || true; }
run_shards() {
  local at; at=$(date -u -d '+4 seconds' +%Y-%m-%dT%H:%M:%SZ)
  local pids=()
  for i in 0 1 2 3; do
    "$XREGION" run --config "$work/http.toml" --profile quick --check performance.load --shard "$i/4" \
      --start-at "$at" --out "$1/s$i" -q >/dev/null 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  "$XREGION" merge "$1/s0" "$1/s1" "$1/s2" "$1/s3" --out "$1/merged" >/dev/null 2>&1 || true
}
for i in $(seq 1 "$rounds"); do
  run_single "$work/single-$i"
  run_shards "$work/sharded-$i"
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
def figures(path):
    c = next(c for c in json.load(open(path))["checks"] if c["id"] == "performance.load.sustained")
    m = c["metrics"]
    return c["verdict"], m["requests"], m["rps"], m["p50_ms"], m["p95_ms"], m["p99_ms"], m["users_max"]
for side, path in [("single", "single-{i}/report.json"), ("4 shards merged", "sharded-{i}/merged/report.json")]:
    rows = [figures(f"{work}/" + path.format(i=i)) for i in range(1, n + 1)]
    for i, r in enumerate(rows, 1):
        print(f"{side} round {i}: {r[0]}, {r[1]:.0f} requests, {r[2]:.1f} req/s, P50 {r[3]:.1f} ms, "
              f"P95 {r[4]:.1f} ms, P99 {r[5]:.1f} ms, {r[6]:.0f} users")
    for k, name in [(1, "requests"), (2, "req/s"), (4, "P95 ms"), (5, "P99 ms")]:
        v = [r[k] for r in rows]
        print(f"{side}: {name} median {statistics.median(v):.1f} (range {min(v):.1f} to {max(v):.1f})")
PY
