#!/usr/bin/env bash
# Verdicts and figures on the real databases of targets/: for each of postgres-streaming (asynchronous),
# postgres-mesh (pglogical), etcd and galera, brings the target up (as root: etcd and galera in network namespaces,
# for partitions; the Postgres ones with 35 ms of WAN through `xregion wan`), then runs N rounds (default 5) of the
# consistency checks and the database suite from DB_ENDPOINT_* alone, and of the fault checks from the target's own
# config (aimed at the region that writes or leads at that moment). For the mesh it then runs N rounds of
# lww-realtime under a clock fault that the check injects through the target's fail_clock command (us-west-2's clock
# 400 ms ahead, under libfaketime). It prints every round's verdicts and figures, then the medians.
# Needs postgresql-15, postgresql-15-pglogical, libfaketime, etcd-server, mariadb-server and galera-4. Run on an
# otherwise idle machine: `bash bench/db-targets.sh 5`. FAULTS=0 skips the fault rounds; TARGETS="etcd galera"
# benches only those.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release >/dev/null 2>&1
bin=$PWD/target/release/xregion
work=$(mktemp -d)
chmod 755 "$work" # the postgres and mysql users run the servers in it
read -r -a targets <<< "${TARGETS:-postgres-streaming postgres-mesh etcd galera}"
trap 'for t in "${targets[@]}"; do [ -d "$work/$t" ] && bash targets/$t/ctl.sh down "$work/$t" >/dev/null 2>&1; done; true' EXIT

checks_faults=(--check cross-region.failover.complete-region --check cross-region.failover.network-partition
  --check disaster-recovery.rpo)
for t in "${targets[@]}"; do
  case $t in
    postgres-streaming) envs=(XREGION_PG_NET=127.0.20 DELAY_MS=35 XREGION_BIN="$bin") ;;
    postgres-mesh) envs=(XREGION_PG_NET=127.0.23 DELAY_MS=35 XREGION_BIN="$bin") ;;
    etcd) envs=(NETNS=1 XREGION_ETCD_NET=198.18.21) ;;
    galera) envs=(NETNS=1 XREGION_GALERA_NET=198.18.22) ;;
  esac
  env "${envs[@]}" bash "targets/$t/ctl.sh" up "$work/$t" >/dev/null
  (
    # shellcheck disable=SC1090
    eval "$(bash "targets/$t/ctl.sh" env "$work/$t")"
    "$bin" db init >/dev/null
    for i in $(seq 1 "$rounds"); do
      "$bin" run -q --check cross-region --check performance.database --out "$work/$t-c$i" >/dev/null 2>&1 || true
      [ "${FAULTS:-1}" = 0 ] && continue
      # Each round fails the region that writes or leads now (a previous round moved it), else the first one (in
      # the mesh every node writes).
      victim=$(bash "targets/$t/ctl.sh" status "$work/$t" | awk '/ up (primary|leader)/ && v == "" {v = $1} END {print v}')
      cp "$work/$t/xregion.toml" "$work/$t/round.toml"
      if [ -n "$victim" ]; then printf '\n[checks.failover]\nregion = "%s"\n' "$victim" >> "$work/$t/round.toml"; fi
      PGPASSFILE=${PGPASSFILE:-} "$bin" run -q --config "$work/$t/round.toml" "${checks_faults[@]}" \
        --out "$work/$t-f$i" >/dev/null 2>&1 || true
    done
    if [ "$t" = postgres-mesh ]; then
      cp "$work/$t/xregion.toml" "$work/$t/skew.toml"
      printf '\n[checks.lww-realtime]\nclock_fault_ms = 400\nclock_fault_region = "us-west-2"\n' >> "$work/$t/skew.toml"
      for i in $(seq 1 "$rounds"); do
        PGPASSFILE=${PGPASSFILE:-} "$bin" run -q --config "$work/$t/skew.toml" \
          --check cross-region.consistency.lww-realtime --out "$work/$t-s$i" >/dev/null 2>&1 || true
      done
    fi
  )
done
python3 - "$work" "$rounds" "${targets[*]}" <<'PY'
import json, os, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
for t in sys.argv[3].split():
    figures = {}
    def keep(name, v):
        figures.setdefault(name, []).append(v)
    for i in range(1, n + 1):
        row = []
        for kind in ("c", "f", "s"):
            path = f"{d}/{t}-{kind}{i}/report.json"
            if not os.path.exists(path):
                continue
            r = json.load(open(path))
            for c in r["checks"]:
                m = c.get("metrics", {})
                short = c["id"].split(".")[-1] + (" (skewed)" if kind == "s" else "")
                if c["verdict"] == "skipped" and short != "session-guarantees":
                    continue
                extra = ""
                if c["id"] == "cross-region.consistency.write-replicate":
                    keep("write-replicate P99 ms", m["p99_ms"])
                    extra = f" P99 {m['p99_ms']:.1f} ms"
                elif short == "session-guarantees":
                    ryw, mr = m.get("read_your_writes_violated_pct", -1), m.get("monotonic_reads_violated_pct", -1)
                    keep("read-your-writes broken %", ryw)
                    keep("monotonic reads broken %", mr)
                    extra = f" RYW broken {ryw:.1f}% MR broken {mr:.1f}%"
                elif short in ("read", "write-replicate") and c["id"].startswith("performance."):
                    keep(f"db {short} P95 ms", m.get("p95_ms", -1))
                    extra = f" P95 {m.get('p95_ms', -1):.1f} ms"
                    if short == "write-replicate":
                        keep("replication under load P99 ms", m.get("replication_p99_ms", -1))
                        extra += f", replication P99 {m.get('replication_p99_ms', -1):.1f} ms"
                elif short == "pool":
                    extra = f" acquire P95 {m.get('acquire_ms_p95', -1):.2f} ms reuse {m.get('reuse_pct_min', -1):.1f}%"
                elif short == "complete-region":
                    keep("RTO s", m.get("rto_ms", -1) / 1000)
                    keep("availability %", m.get("availability_pct", -1))
                    extra = f" RTO {m.get('rto_ms', -1) / 1000:.1f} s avail {m.get('availability_pct', -1):.2f}%"
                elif short == "rpo":
                    keep("RPO ms", m.get("rpo_ms", -1))
                    keep("missing at failover", m.get("missing_at_failover", -1))
                    keep("lost for good", m.get("lost_for_good", -1))
                    extra = f" RPO {m.get('rpo_ms', -1):.0f} ms, missing at failover {m.get('missing_at_failover', -1):.0f}, lost for good {m.get('lost_for_good', -1):.0f}"
                elif short == "network-partition":
                    extra = f" minority acks after fence {m.get('minority_acks_after_fence', -1):.0f}"
                elif short.startswith("lww-realtime") or short == "conflict-lww":
                    extra = f" lost {m.get('lost_in_real_time', m.get('wrong_winners', 0)):.0f} divergent {m.get('divergent_keys', -1):.0f}"
                if c["verdict"] in ("fail", "error") and not short.startswith("session"):
                    extra += f" [{c['summary'][:90]}]"
                row.append(f"{short} {c['verdict']}{extra}")
        print(f"{t} round {i}: " + "; ".join(row))
    for name, vs in figures.items():
        print(f"{t}: {name} median {statistics.median(vs):.1f} over {len(vs)} rounds: " + ", ".join(f"{v:.1f}" for v in vs))
PY
