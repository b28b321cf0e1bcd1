#!/usr/bin/env bash
# Verdicts and figures on the real databases of targets/: for each of postgres-streaming (asynchronous), etcd and
# galera, brings the target up (as root: etcd and galera in network namespaces, for partitions), then runs N rounds
# (default 5) of the consistency checks from DB_ENDPOINT_* alone and of the fault checks from the target's own
# config (aimed at the region that writes or leads at that moment), and prints every round's verdicts with the write-replicate worst-pair P99 and the failover figures, then
# the median P99. Needs postgresql-15, etcd-server, mariadb-server and galera-4. Run on an otherwise idle machine:
# `bash bench/db-targets.sh 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release >/dev/null 2>&1
bin=$PWD/target/release/xregion
work=$(mktemp -d)
chmod 755 "$work" # the postgres and mysql users run the servers in it
trap 'for t in postgres-streaming etcd galera; do [ -d "$work/$t" ] && bash targets/$t/ctl.sh down "$work/$t" >/dev/null 2>&1; done; true' EXIT

checks_faults=(--check cross-region.failover.complete-region --check cross-region.failover.network-partition
  --check disaster-recovery.rpo)
for t in postgres-streaming etcd galera; do
  case $t in
    postgres-streaming) envs=(XREGION_PG_NET=127.0.20 DELAY_MS=35 XREGION_BIN="$bin") ;;
    etcd) envs=(NETNS=1 XREGION_ETCD_NET=198.18.21) ;;
    galera) envs=(NETNS=1 XREGION_GALERA_NET=198.18.22) ;;
  esac
  env "${envs[@]}" bash "targets/$t/ctl.sh" up "$work/$t" >/dev/null
  (
    # shellcheck disable=SC1090
    eval "$(bash "targets/$t/ctl.sh" env "$work/$t")"
    "$bin" db init >/dev/null
    for i in $(seq 1 "$rounds"); do
      "$bin" run -q --suite cross-region --out "$work/$t-c$i" >/dev/null 2>&1 || true
      # Each round fails the region that writes or leads now (a previous round moved it), else the first one.
      victim=$(bash "targets/$t/ctl.sh" status "$work/$t" | awk '/ up (primary|leader)/ && v == "" {v = $1} END {print v}')
      cp "$work/$t/xregion.toml" "$work/$t/round.toml"
      if [ -n "$victim" ]; then printf '\n[checks.failover]\nregion = "%s"\n' "$victim" >> "$work/$t/round.toml"; fi
      PGPASSFILE=${PGPASSFILE:-} "$bin" run -q --config "$work/$t/round.toml" "${checks_faults[@]}" \
        --out "$work/$t-f$i" >/dev/null 2>&1 || true
    done
  )
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
for t in ["postgres-streaming", "etcd", "galera"]:
    p99s = []
    for i in range(1, n + 1):
        row = []
        for kind in ("c", "f"):
            r = json.load(open(f"{d}/{t}-{kind}{i}/report.json"))
            for c in r["checks"]:
                if c["verdict"] == "skipped":
                    continue
                m = c.get("metrics", {})
                short = c["id"].split(".")[-1]
                extra = ""
                if short == "write-replicate":
                    p99s.append(m["p99_ms"])
                    extra = f" P99 {m['p99_ms']:.1f} ms"
                elif short == "complete-region":
                    extra = f" RTO {m.get('rto_ms', -1) / 1000:.1f} s avail {m.get('availability_pct', -1):.2f}%"
                elif short == "rpo":
                    extra = f" RPO {m.get('rpo_ms', -1):.0f} ms, missing at failover {m.get('missing_at_failover', -1):.0f}"
                elif short == "network-partition":
                    extra = f" minority acks after fence {m.get('minority_acks_after_fence', -1):.0f}"
                if c["verdict"] == "fail" and short in ("rpo", "complete-region"):
                    extra += f" [{c['summary'][:90]}]"
                row.append(f"{short} {c['verdict']}{extra}")
        print(f"{t} round {i}: " + "; ".join(row))
    if p99s:
        print(f"{t}: write-replicate worst-pair P99 median {statistics.median(p99s):.1f} ms over {len(p99s)} rounds")
PY
