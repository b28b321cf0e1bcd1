#!/usr/bin/env bash
# Durable writes per second that one lab region acknowledges, at several client concurrencies.
# Starts a lab with `xregion lab up`, drives PUTs at us-east-1 with `hey` (Debian package), prints writes/s,
# and stops the lab. Traffic goes only to the lab's loopback address. Each load step is bounded by -z.
# Usage: bash bench/node-writes.sh [SECONDS_PER_STEP]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
command -v hey >/dev/null || { apt-get update -qq && apt-get install -y -qq hey >/dev/null; }
cargo build --release -q
dir=$(mktemp -d)
./target/release/xregion lab up --dir "$dir" >"$dir/up.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do [ -f "$dir/lab.json" ] && break; sleep 0.1; done
url=$(python3 -c "import json,sys; s=json.load(open('$dir/lab.json')); print([r for r in s['regions'] if r['name']=='us-east-1'][0]['endpoint'])")
echo "region us-east-1 at $url; $secs s per step"
for c in 1 16 64 256; do
  rps=$(hey -z "${secs}s" -c "$c" -m PUT -T application/json -d '{"value":"bench"}' "$url/v1/kv/bench/c$c" \
        | awk '/Requests\/sec/ {print $2}')
  printf 'concurrency %4d: %10s durable writes/s\n' "$c" "$rps"
done
