#!/usr/bin/env bash
# A multi-writer PostgreSQL 15 mesh on loopback: three independent databases that all take writes and replicate every
# row to each other with pglogical (a subscription per ordered pair, forward_origins '{}' so nothing loops back). A
# conflict is resolved by the later commit timestamp (pglogical.conflict_resolution = last_update_wins,
# track_commit_timestamp = on): last-write-wins by the writing node's clock.
#
#   ctl.sh up DIR                  initdb three nodes, create xregion's table on each (from `xregion db schema`), and
#                                  join them in a mesh (<= 60 s)
#   ctl.sh down DIR                stop every node (the data stays in DIR)
#   ctl.sh fail DIR REGION         kill -9 REGION's postmaster; the other nodes keep taking writes
#   ctl.sh partition DIR REGION    cut REGION's replication links (needs DELAY_MS); it keeps taking writes alone
#   ctl.sh restore DIR REGION      heal REGION's links, or restart it (its subscriptions resume where they stopped),
#                                  on the real clock if it was skewed
#   ctl.sh skew DIR REGION OFFSET  restart REGION under libfaketime with its clock OFFSET seconds off (+0.4, -1.5);
#                                  0 ends the skew
#   ctl.sh status DIR              each region's state
#   ctl.sh env DIR                 the DB_ENDPOINT_* and PG* variables that describe the target to xregion
#
# `up` also writes DIR/xregion.toml (the regions' databases and the fault commands) and DIR/xregion.pgpass (the
# password, for PGPASSFILE). XREGION_BIN names the xregion binary (default `xregion`); `up` takes the table's DDL from
# it. DELAY_MS=35 routes every subscription through `xregion wan` with that one-way delay, as between real regions.
#
# Regions and addresses: us-east-1 on 127.0.8.1, us-west-2 on 127.0.8.2, eu-west-1 on 127.0.8.3, all on port
# ${PGPORT_TARGET:-5432}; XREGION_PG_NET=127.0.9 moves them. As root the nodes run as the `postgres` user. Needs the
# postgresql-15 and postgresql-15-pglogical packages (and libfaketime for skew).
set -euo pipefail
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../pg.sh
. "$(dirname "$0")/../pg.sh"

REGIONS=(us-east-1 us-west-2 eu-west-1)
NET=${XREGION_PG_NET:-127.0.8}

[ -f "$BIN/../lib/pglogical.so" ] || die "no pglogical for PostgreSQL 15: install postgresql-15-pglogical"

node_of() { echo "${1//-/_}"; }

dsn() { # provider region, subscriber region -> the provider's DSN as the subscriber reaches it (through the WAN proxy
  # when there is one)
  local host port
  if wan_on && [ "$1" != "$2" ]; then host=$(addr_of "$2") port=$(wan_port "$1"); else host=$(addr_of "$1") port=$PORT; fi
  echo "host=$host port=$port dbname=$DB_NAME user=replicator passfile=$DIR/pgpass"
}

mesh_node() { # region: a new node with logical decoding, pglogical, and conflicts resolved by commit timestamp
  init_node "$1"
  cat >> "$(pgdata "$1")/postgresql.auto.conf" <<EOF
wal_level = logical
max_worker_processes = 16
shared_preload_libraries = 'pglogical'
pglogical.conflict_resolution = 'last_update_wins'
EOF
}

subscriptions_replicating() { # region: how many of its subscriptions replicate
  psql_at "$1" "SELECT count(*) FROM pglogical.show_subscription_status() WHERE status = 'replicating'" "$DB_NAME"
}

mesh_ready() { # until every running node's subscriptions to the other running nodes replicate (bounded: 60 s)
  local r p want ready end=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$end" ]; do
    ready=1
    for r in "${REGIONS[@]}"; do
      running "$r" || continue
      want=0
      for p in "${REGIONS[@]}"; do [ "$p" != "$r" ] && running "$p" && want=$((want + 1)); done
      [ "$(subscriptions_replicating "$r" 2>/dev/null || echo -1)" -ge "$want" ] || ready=0
    done
    [ "$ready" = 1 ] && return 0
    sleep 0.2
  done
  die "the subscriptions did not all replicate within 60 s; see $DIR/*/log"
}

restart_sub() { # node subscription: restart the subscription's apply worker now
  psql_at "$1" "SELECT pglogical.alter_subscription_disable('$2', true)" "$DB_NAME" >/dev/null
  psql_at "$1" "SELECT pglogical.alter_subscription_enable('$2', true)" "$DB_NAME" >/dev/null
}

relink() { # region: restart the subscriptions between it and every other running node, both ways, now. pglogical's
  # manager restarts an apply worker that lost its provider only when it next wakes, which can take minutes, and an
  # apply worker whose connection ran through a partition may wait on it until wal_receiver_timeout.
  local r=$1 p
  for p in "${REGIONS[@]}"; do
    [ "$p" = "$r" ] || ! running "$p" && continue
    restart_sub "$p" "$(node_of "$r")_to_$(node_of "$p")"
    running "$r" && restart_sub "$r" "$(node_of "$p")_to_$(node_of "$r")"
  done
}

cmd_up() {
  local r p ddl
  for r in "${REGIONS[@]}"; do running "$r" && die "$r is already running in $DIR (ctl.sh down $DIR first)"; done
  ddl=$("${XREGION_BIN:-xregion}" db schema --kind postgres) || die "cannot get the table's DDL from ${XREGION_BIN:-xregion}"
  fresh_dir
  echo mesh > "$DIR/mode"
  if [ "${DELAY_MS:-0}" != 0 ]; then wan_start; fi
  for r in "${REGIONS[@]}"; do mesh_node "$r"; done
  for r in "${REGIONS[@]}"; do start_region "$r"; done
  for r in "${REGIONS[@]}"; do
    # This build names the logical decoding plugins a replication user may load; pglogical's must be one of them.
    if [ -n "$(psql_at "$r" "SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries'")" ]; then
      psql_at "$r" "ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, pglogical_output" >/dev/null
      psql_at "$r" "SELECT pg_reload_conf()" >/dev/null
    fi
    psql_at "$r" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$(cat "$DIR/xregion.password")'" >/dev/null
    # pglogical's apply and its provider functions need a superuser on both ends.
    psql_at "$r" "CREATE ROLE replicator SUPERUSER LOGIN REPLICATION PASSWORD '$(cat "$DIR/replicator.password")'" >/dev/null
    psql_at "$r" "CREATE DATABASE $DB_NAME OWNER $USER_NAME" >/dev/null
    psql_at "$r" "CREATE EXTENSION pglogical" "$DB_NAME" >/dev/null
    psql_at "$r" "$ddl" "$DB_NAME" >/dev/null
    psql_at "$r" "ALTER TABLE xregion_kv OWNER TO $USER_NAME" "$DB_NAME" >/dev/null
    psql_at "$r" "SELECT pglogical.create_node(node_name := '$(node_of "$r")', dsn := '$(dsn "$r" "$r")')" "$DB_NAME" >/dev/null
    psql_at "$r" "SELECT pglogical.replication_set_add_table('default', 'xregion_kv', false)" "$DB_NAME" >/dev/null
  done
  # A subscription's slot on its provider is named after the provider and the subscription, so every subscription
  # names both ends.
  for r in "${REGIONS[@]}"; do
    for p in "${REGIONS[@]}"; do
      [ "$p" = "$r" ] && continue
      psql_at "$r" "SELECT pglogical.create_subscription(subscription_name := '$(node_of "$p")_to_$(node_of "$r")', \
        provider_dsn := '$(dsn "$p" "$r")', replication_sets := ARRAY['default'], synchronize_structure := false, \
        synchronize_data := false, forward_origins := '{}')" "$DB_NAME" >/dev/null
    done
  done
  mesh_ready
  write_config
  cmd_status "$PORT"
}

cmd_fail() {
  local r=$1 pid
  addr_of "$r" >/dev/null
  running "$r" || die "$r is not running"
  pid=$(head -1 "$(pgdata "$r")/postmaster.pid")
  # A region dies with its network: what is still on the wire to or from it never arrives.
  wan_rule "$r" refuse
  kill -9 "$pid"
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  echo "$r killed"
}

cmd_partition() {
  addr_of "$1" >/dev/null
  wan_on || die "a partition needs the replication links in \`xregion wan\`: ctl.sh up with DELAY_MS"
  wan_rule "$1" refuse
  echo "$1 cut off from the other nodes (it still takes writes)"
}

cmd_restore() {
  local r=$1
  addr_of "$r" >/dev/null
  wan_rule "$r" pass
  if [ -s "$DIR/$r/faketime" ]; then
    # A skewed clock: back to the real one.
    rm -f "$DIR/$r/faketime"
    stop_node "$r" fast
  fi
  if running "$r"; then
    relink "$r"
    mesh_ready
    echo "$r is running, connected"
    return
  fi
  start_region "$r"
  relink "$r"
  mesh_ready
  echo "$r restored"
}

cmd_skew() { # region offset: restart the region with its clock that many seconds off (0: not skewed)
  local r=$1 off=$2
  addr_of "$r" >/dev/null
  [[ $off =~ ^[+-]?[0-9]+(\.[0-9]+)?$ ]] || die "offset $off is not a number of seconds, such as +0.4 or -1.5"
  # libfaketime reads a relative offset with an explicit sign.
  case $off in [+-]*) ;; *) off="+$off" ;; esac
  if [[ $off =~ ^[+-]0+(\.0+)?$ ]]; then rm -f "$DIR/$r/faketime"; else echo "$off" > "$DIR/$r/faketime"; fi
  stop_node "$r" fast
  start_region "$r"
  relink "$r"
  mesh_ready
  echo "$r restarted with its clock ${off} s off"
}

role_of() { echo "writer"; }

# A node cut off from the others is a fault the config can name (with DELAY_MS).
PARTITIONS=1
CLOCK_FAULTS=1

ENV_PORT=$PORT
target_main "$@"
