#!/usr/bin/env bash
# Load engine speed: xregion load against wrk and oha on the same nginx, then a long xregion run sampling its RSS.
#
# Setup (DESIGN-NOTES "Load engine speed"): nginx with 1 worker pinned to CPU 0, `return 200`, default
# keepalive_requests (1000, so every client must reconnect); each client pinned to CPU 1 with the same connection
# count for the same duration, ROUNDS rounds in one run; requests/s per tool and the ratios xregion/wrk and
# xregion/oha (median of rounds). Then one xregion run of SOAK_S seconds, its RSS sampled every 10 s from /proc.
#
# Knobs (environment): DURATION_S=8 CONNECTIONS=64 ROUNDS=3 SOAK_S=300 SOAK_RATE=20000 (0: closed model)
#                      XREGION=path/to/xregion (default: builds target/release/xregion)
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION_S=${DURATION_S:-8}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
SOAK_S=${SOAK_S:-300}
SOAK_RATE=${SOAK_RATE:-20000}

need_apt() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
need_apt
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if [ ! -x "$OHA" ]; then
  echo "installing oha (cargo install oha)"
  if ! cargo install oha --locked >/tmp/oha-install.log 2>&1; then
    echo "oha could not be installed (see /tmp/oha-install.log); skipping oha"
    OHA=""
  fi
fi

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
for _ in $(seq 50); do
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
  sleep 0.1
done
URL="http://127.0.0.1:$PORT/"
echo "nginx on $URL (pid $NGINX_PID, CPU 0); clients on CPU 1; $CONNECTIONS connections, ${DURATION_S}s x $ROUNDS rounds"

# Client CPU seconds (user + system) of the last run, when GNU time is there: on a shared machine the server is
# often the bottleneck, and requests per client CPU-second then compares the clients' efficiency.
TIMED=()
if [ -x /usr/bin/time ]; then TIMED=(/usr/bin/time -f '%U %S' -o "$WORK/cpu"); fi
cpu_s() { if [ -s "$WORK/cpu" ]; then awk '{printf "%.2f", $1 + $2}' "$WORK/cpu"; else echo "-"; fi; }

run_xregion() {
  "${TIMED[@]}" taskset -c 1 "$XREGION" load "$URL" --connections "$CONNECTIONS" --duration "${DURATION_S}s" --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); rps=r["requests"]/r["duration_s"]; print("  xregion: errors %s, reconnects %d" % (r["errors"], r["reconnects"]), file=sys.stderr); print("%.0f" % rps)'
}
run_wrk() {
  "${TIMED[@]}" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION_S}s" "$URL" | awk '/Requests\/sec/ {printf "%.0f\n", $2}'
}
run_oha() {
  "${TIMED[@]}" taskset -c 1 "$OHA" --no-tui -c "$CONNECTIONS" -z "${DURATION_S}s" --output-format json "$URL" 2>/dev/null \
    | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["summary"]["requestsPerSec"])'
}

declare -a XR WR OR
for round in $(seq "$ROUNDS"); do
  x=$(run_xregion); xc=$(cpu_s); w=$(run_wrk); wc=$(cpu_s)
  o="-"; oc="-"; if [ -n "$OHA" ]; then o=$(run_oha || echo "-"); oc=$(cpu_s); fi
  XR+=("$x"); WR+=("$w"); OR+=("$o")
  printf 'round %d: xregion %s req/s (client CPU %s s), wrk %s req/s (%s s), oha %s req/s (%s s)\n' \
    "$round" "$x" "$xc" "$w" "$wc" "$o" "$oc"
done
median() { printf '%s\n' "$@" | grep -v '^-$' | sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else print a[int((NR+1)/2)]}'; }
MX=$(median "${XR[@]}"); MW=$(median "${WR[@]}"); MO=$(median "${OR[@]}")
echo "median req/s: xregion $MX, wrk $MW, oha $MO"
python3 - "$MX" "$MW" "$MO" <<'PY'
import sys
x, w, o = sys.argv[1:4]
print(f"xregion/wrk = {float(x)/float(w):.2f}")
print(f"xregion/oha = {float(x)/float(o):.2f}" if o != "-" else "xregion/oha = - (oha not available)")
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
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  soak: %d requests, %.0f req/s, errors %s, reconnects %d, late %d, dropped %d, windows %d" % (r["requests"], r["requests"]/r["duration_s"], r["errors"], r["reconnects"], r["late"], r["dropped"], len(r["windows"])))' "$WORK/soak.json"
fi
