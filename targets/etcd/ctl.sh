#!/usr/bin/env bash
# A 3-member etcd cluster on loopback, one member per region: every region takes writes (a member forwards them to
# the Raft leader), reads are linearizable, and a write is acknowledged once a majority has it.
#
#   ctl.sh up DIR                 start three new members (<= 60 s)
#   ctl.sh down DIR               stop every member (the data stays in DIR)
#   ctl.sh fail DIR REGION        kill -9 REGION's member (if it led, the other two elect a new leader)
#   ctl.sh partition DIR REGION   (NETNS=1 only) cut REGION's member off from the other members; its own clients
#                                 still reach it, so they see what a member without a quorum answers
#   ctl.sh restore DIR REGION     heal REGION's partition, or restart its member from its data (it catches up)
#   ctl.sh status DIR             each region's member: up or down, and which one leads
#   ctl.sh env DIR                the DB_ENDPOINT_* variables that describe the target to xregion
#
# `up` also writes DIR/xregion.toml: the regions' members and these fail/restore commands (and with NETNS=1 the
# partition command), for the failover checks.
#
# Regions and addresses: us-east-1 on 127.0.4.1, us-west-2 on 127.0.4.2, eu-west-1 on 127.0.4.3, clients on port
# ${ETCD_CLIENT_PORT:-2379}, peers on ${ETCD_PEER_PORT:-2380}; XREGION_ETCD_NET=127.0.9 moves them to 127.0.9.1-3.
# Each member listens on its own loopback address only. Members advertise one peer address to every other member,
# so a proxy cannot cut one link; NETNS=1 (root) instead puts each member in a network namespace of its own, on
# XREGION_ETCD_NET (default 198.18.4).1-3 behind a bridge that has .254 in this namespace, and a partition is a
# blackhole route between members. Needs the etcd-server package (and iproute2 for NETNS=1).
set -euo pipefail
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
unset ETCDCTL_API ETCDCTL_ENDPOINTS ETCDCTL_USER ETCDCTL_PASSWORD

REGIONS=(us-east-1 us-west-2 eu-west-1)
NS_TAG=e
if [ "${NETNS:-0}" = 1 ]; then NET=${XREGION_ETCD_NET:-198.18.4}; else NET=${XREGION_ETCD_NET:-127.0.4}; fi
CPORT=${ETCD_CLIENT_PORT:-2379}
PPORT=${ETCD_PEER_PORT:-2380}
ETCD=${ETCD_BIN:-etcd}

command -v "$ETCD" >/dev/null || die "no etcd on PATH: install etcd-server (or set ETCD_BIN)"

client_url() { echo "http://$(addr_of "$1"):$CPORT"; }

healthy() { curl -fsS -m 2 "$(client_url "$1")/health" 2>/dev/null | grep -q '"health":"true"'; }

start_member() { # region: start it (new or from its data) in the background, detached from this shell
  local r=$1 cluster="" s cmd
  for s in "${REGIONS[@]}"; do cluster+="${cluster:+,}$s=http://$(addr_of "$s"):$PPORT"; done
  mkdir -p "$DIR/$r"
  cmd=(setsid "$ETCD" --name "$r" --data-dir "$DIR/$r/data"
    --listen-client-urls "$(client_url "$r")" --advertise-client-urls "$(client_url "$r")"
    --listen-peer-urls "http://$(addr_of "$r"):$PPORT" --initial-advertise-peer-urls "http://$(addr_of "$r"):$PPORT"
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "xregion-$NET"
    --heartbeat-interval 100 --election-timeout 1000 --logger zap --log-outputs stderr)
  # `ip netns exec` and setsid exec what they run, so $! is etcd's own pid.
  if netns_on; then cmd=(ip netns exec "$(ns_of "$r")" "${cmd[@]}"); fi
  "${cmd[@]}" >> "$DIR/$r/log" 2>&1 < /dev/null &
  echo $! > "$DIR/$r/pid"
}

wait_ready() { # regions...: until each answers /health with a leader (bounded: 30 s)
  local r
  for r in "$@"; do
    for _ in $(seq 1 300); do
      healthy "$r" && continue 2
      running "$r" || die "$r exited while starting; see $DIR/$r/log"
      sleep 0.1
    done
    die "$r was not healthy within 30 s; see $DIR/$r/log"
  done
}

db_url() { echo "etcd://$(addr_of "$1"):$CPORT"; }

write_config() {
  local r self run
  self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  run="XREGION_ETCD_NET=$NET ETCD_CLIENT_PORT=$CPORT ETCD_PEER_PORT=$PPORT bash $self"
  {
    echo "# Written by ctl.sh up: this target as xregion sees it."
    toml_regions
    echo ""
    echo "[faults.command]"
    echo "# A complete failure kills the region's member; a restore restarts it from its data."
    echo "fail_complete = \"$run fail $DIR \\\"\$XREGION_REGION\\\"\""
    echo "restore = \"$run restore $DIR \\\"\$XREGION_REGION\\\"\""
    if netns_on; then
      echo "# A network partition cuts the region's member off from the others; its clients still reach it."
      echo "fail_network = \"$run partition $DIR \\\"\$XREGION_REGION\\\"\""
    fi
  } > "$DIR/xregion.toml"
}

cmd_up() {
  local r
  for r in "${REGIONS[@]}"; do running "$r" && die "$r is already running in $DIR (ctl.sh down $DIR first)"; done
  rm -rf "${DIR:?}"/*
  remember_net
  if [ "${NETNS:-0}" = 1 ]; then echo netns > "$DIR/mode"; netns_up; else echo loopback > "$DIR/mode"; fi
  for r in "${REGIONS[@]}"; do start_member "$r"; done
  wait_ready "${REGIONS[@]}"
  write_config
  cmd_status "$CPORT"
}

role_of() { # region: leader or follower
  local status leader
  status=$(curl -fsS -m 2 -X POST -d '{}' "$(client_url "$1")/v3/maintenance/status" 2>/dev/null || true)
  leader=$(echo "$status" | sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p')
  if [ -n "$leader" ] && echo "$status" | grep -q "\"member_id\":\"$leader\""; then echo leader; else echo follower; fi
}

env_extra() { echo "export XREGION_DB_KIND=etcd"; }

ENV_PORT=$CPORT
target_main "$@"
