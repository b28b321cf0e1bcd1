#!/usr/bin/env bash
# What write-replicate's observers cost, by scan and by read: ROUNDS (default 5) runs of the check alone against
# the lab in each mode, alternating; prints each run's CPU seconds of the whole process tree (xregion and the lab it
# starts, user + system), the worst pair's P99 and the measuring resolution, then each mode's medians. Run it on an
# otherwise idle machine: `bash bench/observe-cost.sh`. XREGION picks the binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
if [ -z "${XREGION:-}" ]; then
  cargo build --release >/dev/null 2>&1
  XREGION=target/release/xregion
fi
python3 - "$XREGION" "$rounds" <<'PY'
import json, resource, statistics, subprocess, sys, tempfile
exe, n = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
rows = {"scan": [], "read": []}
for i in range(1, n + 1):
    for mode in rows:
        cfg = f"{d}/{mode}.toml"
        open(cfg, "w").write(f'[checks.write-replicate]\nobserve = "{mode}"\n')
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([exe, "run", "--config", cfg, "--check", "cross-region.consistency.write-replicate",
                        "--out", f"{d}/{mode}-{i}", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        c = json.load(open(f"{d}/{mode}-{i}/report.json"))["checks"][0]
        m = c["metrics"]
        rows[mode].append((cpu, m["p99_ms"], m["resolution_ms_p99"]))
        print(f"{mode} round {i}: {c['verdict']}, CPU {cpu:.2f} s, worst pair P99 {m['p99_ms']:.1f} ms, "
              f"resolution P99 {m['resolution_ms_p99']:.1f} ms", flush=True)
for mode, r in rows.items():
    med = [statistics.median(x[k] for x in r) for k in range(3)]
    print(f"{mode}: median CPU {med[0]:.2f} s, worst pair P99 {med[1]:.1f} ms, resolution P99 {med[2]:.1f} ms")
PY
