#!/usr/bin/env bash
# A PostgreSQL 15 primary with two streaming standbys on loopback, Aurora Global Database style: one region takes
# writes, the others serve reads and can be promoted. Asynchronous by default; SYNC=1 makes every commit wait until
# both standbys have applied it (synchronous_standby_names = 'ANY 2 (...)', synchronous_commit = remote_apply).
#
#   ctl.sh up DIR                 initdb the primary, clone two standbys, start all three (<= 60 s)
#   ctl.sh down DIR               stop every instance (the data stays in DIR)
#   ctl.sh fail DIR REGION        kill -9 REGION's postmaster; if it was the primary, promote the next region
#                                 at once (a forced promotion: whatever it had not received is gone)
#   ctl.sh restore DIR REGION     bring REGION back: a killed standby restarts; a former primary is cloned again
#                                 from the current primary and follows it
#   ctl.sh status DIR             each region's state and role
#   ctl.sh env DIR                the DB_ENDPOINT_* and PG* variables that describe the target to xregion
#
# `up` also writes DIR/xregion.toml (the regions' databases and these fail/restore commands, for the failover
# checks) and DIR/xregion.pgpass (the password, for PGPASSFILE).
#
# DELAY_MS=35 puts `xregion wan` (the lab's WAN emulator as a proxy; XREGION_BIN names the binary, default
# `xregion`) on every replication link with that one-way delay, as between real regions; a complete failure then
# also cuts the region's links at once, so what was still on the wire never arrives, as when a region dies.
#
# Regions and addresses: us-east-1 on 127.0.2.1, us-west-2 on 127.0.2.2, eu-west-1 on 127.0.2.3, all on port
# ${PGPORT_TARGET:-5432}; XREGION_PG_NET=127.0.9 moves them to 127.0.9.1-3. Each instance listens on its own loopback
# address only, with scram-sha-256 passwords. Postgres refuses to run as root, so as root the instances run as the
# `postgres` user (runuser) and DIR is given to it. Needs the postgresql-15 package.
set -euo pipefail
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../pg.sh
. "$(dirname "$0")/../pg.sh"

REGIONS=(us-east-1 us-west-2 eu-west-1)
NET=${XREGION_PG_NET:-127.0.2}

slot_of() { echo "${1//-/_}"; }

clone_standby() { # primary region, standby region: a fresh standby of the primary
  local p=$1 s=$2
  rm -rf "$(pgdata "$s")"
  mkdir -p "$DIR/$s/run"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/$s" "$DIR/$s/run"
  psql_at "$p" "SELECT pg_drop_replication_slot('$(slot_of "$s")') FROM pg_replication_slots WHERE slot_name = '$(slot_of "$s")' AND NOT active" >/dev/null
  as_pg "$BIN/pg_basebackup" -D "$(pgdata "$s")" -c fast -X stream \
    -C -S "$(slot_of "$s")" -R -d "$(conninfo "$p" "$s")" >/dev/null
  cat >> "$(pgdata "$s")/postgresql.auto.conf" <<EOF
listen_addresses = '$(addr_of "$s")'
unix_socket_directories = '$DIR/$s/run'
primary_slot_name = '$(slot_of "$s")'
EOF
}

current_primary() {
  local r
  for r in "${REGIONS[@]}"; do
    running "$r" && [ "$(psql_at "$r" 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && { echo "$r"; return; }
  done
  return 1
}

sync_names() { # primary -> synchronous_standby_names for the others
  local r names=()
  for r in "${REGIONS[@]}"; do [ "$r" != "$1" ] && names+=("$(slot_of "$r")"); done
  local IFS=,
  echo "ANY ${#names[@]} (${names[*]})"
}

cmd_up() {
  local p=${REGIONS[0]} r
  for r in "${REGIONS[@]}"; do running "$r" && die "$r is already running in $DIR (ctl.sh down $DIR first)"; done
  fresh_dir
  init_node "$p"
  if [ "${SYNC:-0}" = 1 ]; then echo sync > "$DIR/mode"; else echo async > "$DIR/mode"; fi
  cat >> "$(pgdata "$p")/postgresql.auto.conf" <<EOF
wal_level = replica
hot_standby = on
hot_standby_feedback = on
wal_keep_size = '256MB'
fsync = on
EOF
  start_region "$p"
  if [ "${DELAY_MS:-0}" != 0 ]; then wan_start; fi
  psql_at "$p" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$(cat "$DIR/xregion.password")'" >/dev/null
  psql_at "$p" "CREATE ROLE replicator LOGIN REPLICATION PASSWORD '$(cat "$DIR/replicator.password")'" >/dev/null
  psql_at "$p" "CREATE DATABASE $DB_NAME OWNER $USER_NAME" >/dev/null
  for r in "${REGIONS[@]:1}"; do clone_standby "$p" "$r"; done
  for r in "${REGIONS[@]:1}"; do start_region "$r"; done
  write_config
  if [ "$(cat "$DIR/mode")" = sync ]; then
    # Only once both standbys stream: before that, a commit would wait for them forever.
    psql_at "$p" "ALTER SYSTEM SET synchronous_standby_names = '$(sync_names "$p")'" >/dev/null
    psql_at "$p" "ALTER SYSTEM SET synchronous_commit = 'remote_apply'" >/dev/null
    psql_at "$p" "SELECT pg_reload_conf()" >/dev/null
  fi
  cmd_status "$PORT"
}

cmd_fail() {
  local r=$1 was_primary=0 pid next
  addr_of "$r" >/dev/null
  running "$r" || die "$r is not running"
  [ "$(current_primary || true)" = "$r" ] && was_primary=1
  pid=$(head -1 "$(pgdata "$r")/postmaster.pid")
  # A region dies with its network: what is still on the wire to or from it never arrives.
  wan_rule "$r" refuse
  kill -9 "$pid"
  # The postmaster's children end when they notice it is gone; wait for them so the address is free.
  # Until the pid is gone, reaped too: a new postmaster refuses to start while the old pid exists.
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if [ "$was_primary" = 1 ]; then
    # Promote the standby that received the most WAL, as a careful operator (or Patroni) would: the other one
    # then holds a prefix of its history and can follow it.
    local s lsn best=-1
    next=$r
    for s in "${REGIONS[@]}"; do
      [ "$s" != "$r" ] && running "$s" || continue
      lsn=$(psql_at "$s" "SELECT coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")
      lsn=$(( (16#${lsn%/*} << 32) + 16#${lsn#*/} ))
      if [ "$lsn" -gt "$best" ]; then best=$lsn next=$s; fi
    done
    [ "$next" != "$r" ] || die "no standby left to promote"
    as_pg "$BIN/pg_ctl" -D "$(pgdata "$next")" -w -t 30 promote >/dev/null
    if [ "$(cat "$DIR/mode")" = sync ]; then
      # The new primary waits for every standby still alive (ANY 1 of the survivors).
      local s names=()
      for s in "${REGIONS[@]}"; do [ "$s" != "$next" ] && [ "$s" != "$r" ] && names+=("$(slot_of "$s")"); done
      local IFS=,
      psql_at "$next" "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (${names[*]})'" >/dev/null
      psql_at "$next" "ALTER SYSTEM SET synchronous_commit = 'remote_apply'" >/dev/null
      unset IFS
    fi
    # The other standbys follow the new primary (primary_conninfo reloads without a restart since 13).
    local s
    for s in "${REGIONS[@]}"; do
      [ "$s" = "$r" ] || [ "$s" = "$next" ] || ! running "$s" && continue
      psql_at "$next" "SELECT pg_create_physical_replication_slot('$(slot_of "$s")') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$(slot_of "$s")')" >/dev/null
      psql_at "$s" "ALTER SYSTEM SET primary_conninfo = '$(conninfo "$next" "$s")'" >/dev/null
      psql_at "$s" "SELECT pg_reload_conf()" >/dev/null
    done
    psql_at "$next" "SELECT pg_reload_conf()" >/dev/null
    echo "$r killed; $next promoted"
  else
    echo "$r killed"
  fi
}

cmd_restore() {
  local r=$1 p
  addr_of "$r" >/dev/null
  running "$r" && { echo "$r is running"; return; }
  p=$(current_primary) || die "no primary is running to restore $r from"
  wan_rule "$r" pass
  if [ -f "$(pgdata "$r")/standby.signal" ] && [ "$p" != "$r" ] \
    && grep -qF "$(conninfo "$p" "$r")" "$(pgdata "$r")/postgresql.auto.conf"; then
    start_region "$r"
  else
    # A former primary (or a standby of a former primary): its history diverged, so clone it afresh.
    clone_standby "$p" "$r"
    start_region "$r"
  fi
  if [ "$(cat "$DIR/mode")" = sync ]; then
    psql_at "$p" "ALTER SYSTEM SET synchronous_standby_names = '$(sync_names "$p")'" >/dev/null
    psql_at "$p" "SELECT pg_reload_conf()" >/dev/null
  fi
  echo "$r restored, following $p"
}

role_of() { # region: primary or standby
  psql_at "$1" 'SELECT CASE WHEN pg_is_in_recovery() THEN '"'standby'"' ELSE '"'primary'"' END' 2>/dev/null || echo unknown
}

cmd_partition() { die "no partition command here: with DELAY_MS, fail cuts a region's replication links with it"; }

ENV_PORT=$PORT
target_main "$@"
