#!/usr/bin/env bash
# Load engine speed: xregion load against wrk on the same nginx, ROUNDS alternating rounds, then optionally a long
# xregion run sampling its RSS.
#
# Setup (DESIGN-NOTES "Load engine speed"): nginx with 1 worker pinned to CPU 0, `return 200`, default
# keepalive_requests (1000, so every client must reconnect); each client pinned to CPU 1 with the same connection
# count for the same duration. Rounds alternate which client runs first (odd rounds xregion first, even rounds wrk
# first), because other work on a shared machine drifts. Both clients record every latency (wrk 4 keeps a histogram
# of every response; xregion load one HdrHistogram per worker).
#
# Counted: successful responses only. xregion's `requests_per_s.ok`; wrk's Requests/sec, and the round stops with
# an error when wrk reports a non-2xx/3xx response or a socket error, or xregion reports any failed request.
#
# Per round: requests/s of each client, client CPU seconds (user + system, GNU time), requests per client
# CPU-second, nginx worker CPU use during each run (from /proc), and the ratios xregion/wrk of both. Then the median
# of every column. When nginx is near 100 % of its CPU for both clients, it is the ceiling and requests per client
# CPU-second is the figure that compares the clients.
#
# Knobs (environment): DURATION_S=8 CONNECTIONS=64 ROUNDS=5 SOAK_S=0 SOAK_RATE=20000 (0: closed model)
#                      XREGION=path/to/xregion (default: builds target/release/xregion)
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION_S=${DURATION_S:-8}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-5}
SOAK_S=${SOAK_S:-0}
SOAK_RATE=${SOAK_RATE:-20000}

need_apt() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  [ -x /usr/bin/time ] || missing+=(time)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (services are not started: policy-rc.d exits 101)"
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need_apt
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${XREGION:-}" ]; then
  cargo build --release -p xregion >/dev/null
  XREGION=target/release/xregion
fi

WORK=$(mktemp -d)
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/logs"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 1;
worker_rlimit_nofile 16384;
daemon off;
master_process on;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 12000; }
http {
  access_log off;
  client_body_temp_path $WORK/body;
  proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fastcgi;
  uwsgi_temp_path $WORK/uwsgi;
  scgi_temp_path $WORK/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200; }
  }
}
CONF
taskset -c 0 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
ready=""
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "error: nginx did not listen on 127.0.0.1:$PORT within 10 s; see $WORK/logs/error.log" >&2; exit 2; }
WORKER_PID=$(pgrep -P "$NGINX_PID" | sed -n 1p)
[ -n "$WORKER_PID" ] || { echo "error: no nginx worker process under pid $NGINX_PID" >&2; exit 2; }
URL="http://127.0.0.1:$PORT/"
echo "nginx on $URL (worker pid $WORKER_PID, CPU 0); clients on CPU 1; $CONNECTIONS connections, ${DURATION_S}s x $ROUNDS rounds"

TICKS=$(getconf CLK_TCK)
nginx_ticks() { awk '{print $14 + $15}' "/proc/$WORKER_PID/stat"; }
TIMED=(/usr/bin/time -f '%U %S' -o "$WORK/cpu")
cpu_s() { awk '{printf "%.2f", $1 + $2}' "$WORK/cpu"; }

# Each run prints "requests_per_s client_cpu_s nginx_cpu_pct" or stops the script with an error.
run_xregion() {
  local t0 t1 rps
  t0=$(nginx_ticks)
  "${TIMED[@]}" taskset -c 1 "$XREGION" load "$URL" --connections "$CONNECTIONS" --duration "${DURATION_S}s" --json \
    >"$WORK/x.json"
  t1=$(nginx_ticks)
  rps=$(python3 - "$WORK/x.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
e = r["errors"]
failed = sum(e.values())
if failed:
    sys.exit(f"error: xregion load had {failed} failed requests ({e}); only successful responses count, so this round is void")
# Older binaries lack requests_per_s; with no failed request every request is a success.
print("%.0f" % (r["requests_per_s"]["ok"] if "requests_per_s" in r else r["requests"] / r["duration_s"]))
PY
)
  echo "$rps $(cpu_s) $(( (t1 - t0) * 100 / TICKS / DURATION_S ))"
}
run_wrk() {
  local t0 t1 rps
  t0=$(nginx_ticks)
  "${TIMED[@]}" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION_S}s" "$URL" >"$WORK/w.txt"
  t1=$(nginx_ticks)
  if grep -Eq 'Non-2xx|Socket errors' "$WORK/w.txt"; then
    echo "error: wrk reported failed requests; only successful responses count, so this round is void:" >&2
    grep -E 'Non-2xx|Socket errors' "$WORK/w.txt" >&2
    exit 1
  fi
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/w.txt")
  [ -n "$rps" ] || { echo "error: no Requests/sec in wrk's output" >&2; cat "$WORK/w.txt" >&2; exit 1; }
  echo "$rps $(cpu_s) $(( (t1 - t0) * 100 / TICKS / DURATION_S ))"
}

: >"$WORK/rounds"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then x=$(run_xregion); w=$(run_wrk); order="xregion first"
  else w=$(run_wrk); x=$(run_xregion); order="wrk first"; fi
  echo "$round $x $w" >>"$WORK/rounds"
  python3 - "$round" "$order" $x $w <<'PY'
import sys
rnd, order = sys.argv[1], sys.argv[2]
xr, xc, xn, wr, wc, wn = map(float, sys.argv[3:9])
print(f"round {rnd} ({order}): xregion {xr:.0f} req/s (client {xc:.2f} CPU-s, nginx {xn:.0f}% CPU) | "
      f"wrk {wr:.0f} req/s (client {wc:.2f} CPU-s, nginx {wn:.0f}% CPU) | "
      f"req/s ratio {xr/wr:.3f}, req per client CPU-s ratio {(xr/xc)/(wr/wc):.3f}")
PY
done
python3 - "$WORK/rounds" "$DURATION_S" <<'PY'
import statistics, sys
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[1])]
d = float(sys.argv[2])
med = lambda xs: statistics.median(xs)
x_rps = [r[0] for r in rows]; w_rps = [r[3] for r in rows]
x_eff = [r[0] * d / r[1] for r in rows]; w_eff = [r[3] * d / r[4] for r in rows]
ratio = [a / b for a, b in zip(x_rps, w_rps)]
eff = [a / b for a, b in zip(x_eff, w_eff)]
print(f"median req/s: xregion {med(x_rps):.0f}, wrk {med(w_rps):.0f}")
print(f"median req per client CPU-s: xregion {med(x_eff):.0f}, wrk {med(w_eff):.0f}")
print(f"median nginx CPU: during xregion {med([r[2] for r in rows]):.0f}%, during wrk {med([r[5] for r in rows]):.0f}%")
print(f"median of per-round ratios: req/s xregion/wrk = {med(ratio):.3f}, req per client CPU-s xregion/wrk = {med(eff):.3f}")
PY

if [ "$SOAK_S" -gt 0 ]; then
  if [ "$SOAK_RATE" -gt 0 ]; then
    MODE=(--rate "$SOAK_RATE" --connections "$CONNECTIONS"); desc="open model at $SOAK_RATE req/s"
  else
    MODE=(--connections "$CONNECTIONS"); desc="closed model, $CONNECTIONS VUs"
  fi
  echo "soak: xregion load for ${SOAK_S}s ($desc), RSS every 10 s"
  taskset -c 1 "$XREGION" load "$URL" "${MODE[@]}" --duration "${SOAK_S}s" --json >"$WORK/soak.json" &
  PID=$!
  t=0
  while kill -0 "$PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status" 2>/dev/null || true)
    [ -n "$rss" ] && printf '  t=%4ss RSS %6d KiB\n' "$t" "$rss"
    sleep 10; t=$((t + 10))
  done
  wait "$PID"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  soak: %d requests, %.0f ok req/s, errors %s, reconnects %d, late %d, dropped %d, windows %d" % (r["requests"], r["requests_per_s"]["ok"], r["errors"], r["reconnects"], r["late"], r["dropped"], len(r["windows"])))' "$WORK/soak.json"
fi
