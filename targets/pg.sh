# What the PostgreSQL targets share (sourced after lib.sh): running the tools as the postgres user, each region's
# data directory and socket, starting a region and waiting until it is ready, and `xregion wan` on the replication
# links (DELAY_MS), and what xregion is told (`db_url`, `env_extra`). A script sets REGIONS and NET.

# The caller's libpq variables (for example from `eval "$(ctl.sh env DIR)"`) must not steer this script's own tools.
unset PGPASSWORD PGUSER PGDATABASE PGHOST PGPORT PGSSLMODE PGPASSFILE PGSERVICE PGOPTIONS
PORT=${PGPORT_TARGET:-5432}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
USER_NAME=xregion
DB_NAME=xregion
if [ "$(id -u)" = 0 ]; then SUPER=postgres; else SUPER=$(id -un); fi
[ -x "$BIN/postgres" ] || die "no PostgreSQL 15 at $BIN: install postgresql-15 (or set PG_BIN)"

db_url() { echo "postgres://$USER_NAME@$(addr_of "$1"):$PORT/$DB_NAME?sslmode=disable"; }
env_extra() { echo "export PGUSER=$USER_NAME PGDATABASE=$DB_NAME PGSSLMODE=disable PGPASSFILE=$DIR/xregion.pgpass"; }

as_pg() { # run a command as the postgres user when root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pgdata() { echo "$DIR/$1/data"; }
running() { # region: its postmaster is alive (a killed one may linger as a zombie for a moment)
  local f pid state
  f="$(pgdata "$1")/postmaster.pid"
  [ -f "$f" ] || return 1
  pid=$(head -1 "$f")
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

psql_at() { # region sql [database]: run as the superuser over the region's socket (default database: postgres)
  as_pg "$BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$DIR/$1/run" -p "$PORT" -U "$SUPER" -d "${3:-postgres}" -c "$2"
}

wait_ready() { # region: until it accepts connections (bounded: 30 s)
  local i
  for i in $(seq 1 300); do
    as_pg "$BIN/pg_isready" -q -h "$DIR/$1/run" -p "$PORT" && return 0
    running "$1" || die "$1 exited while starting; see $DIR/$1/log"
    sleep 0.1
  done
  die "$1 did not accept connections within 30 s; see $DIR/$1/log"
}

start_region() {
  local r=$1
  mkdir -p "$DIR/$r/run"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/$r" "$DIR/$r/run"
  # A killed postmaster leaves its socket lock behind; its pid may still be taken (a zombie not yet reaped).
  rm -f "$DIR/$r/run"/.s.PGSQL.*
  # A region whose clock is skewed (DIR/REGION/faketime, written by `ctl.sh skew`) runs under libfaketime.
  local skewed=()
  if [ -s "$DIR/$r/faketime" ]; then
    [ -f "$FAKETIME_LIB" ] || die "no libfaketime at $FAKETIME_LIB: install the libfaketime package"
    skewed=(env "LD_PRELOAD=$FAKETIME_LIB" "FAKETIME=$(cat "$DIR/$r/faketime")" FAKETIME_NO_CACHE=1 DONT_FAKE_MONOTONIC=1)
  fi
  as_pg "${skewed[@]}" "$BIN/pg_ctl" -D "$(pgdata "$r")" -l "$DIR/$r/log" -w -t 30 start >/dev/null
  wait_ready "$r"
}

FAKETIME_LIB=${FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1}

wan_on() { [ -f "$DIR/wan.toml" ]; }
wan_port() { echo $((PORT + 100 + $(index_of "$1"))); } # the port on a standby's address that reaches region $1

conninfo() { # primary region, standby region -> primary_conninfo (through the WAN proxy when there is one)
  local host port
  if wan_on; then host=$(addr_of "$2") port=$(wan_port "$1"); else host=$(addr_of "$1") port=$PORT; fi
  echo "host=$host port=$port user=replicator passfile=$DIR/pgpass application_name=$(slot_of "$2")"
}

wan_start() { # DIR/wan.toml: a link from every region to every other; start the proxy, note its admin URL
  local a b
  {
    echo "jitter_ms = 1"
    for a in "${REGIONS[@]}"; do
      for b in "${REGIONS[@]}"; do
        [ "$a" = "$b" ] && continue
        printf '[[link]]\nfrom = "%s"\nto = "%s"\nlisten = "%s:%s"\nupstream = "%s:%s"\none_way_ms = %s\n' \
          "$a" "$b" "$(addr_of "$a")" "$(wan_port "$b")" "$(addr_of "$b")" "$PORT" "$DELAY_MS"
      done
    done
  } > "$DIR/wan.toml"
  setsid "${XREGION_BIN:-xregion}" wan --links "$DIR/wan.toml" > "$DIR/wan.log" 2>&1 < /dev/null &
  echo $! > "$DIR/wan.pid"
  for _ in $(seq 1 100); do
    grep -q '^admin http' "$DIR/wan.log" 2>/dev/null && break
    kill -0 "$(cat "$DIR/wan.pid")" 2>/dev/null || die "the WAN proxy exited: $(cat "$DIR/wan.log")"
    sleep 0.1
  done
  grep -m1 '^admin http' "$DIR/wan.log" | cut -d' ' -f2 > "$DIR/wan.admin"
  [ -s "$DIR/wan.admin" ] || die "the WAN proxy did not start within 10 s: $(cat "$DIR/wan.log")"
}

wan_rule() { # region rule: set rule (refuse|pass) on every link from or to the region
  local r=$1 other
  wan_on || return 0
  for other in "${REGIONS[@]}"; do
    [ "$other" = "$r" ] && continue
    curl -fsS -X PUT -d "{\"rule\":\"$2\"}" "$(cat "$DIR/wan.admin")/links/$r/$other" >/dev/null
    curl -fsS -X PUT -d "{\"rule\":\"$2\"}" "$(cat "$DIR/wan.admin")/links/$other/$r" >/dev/null
  done
}


write_config() { # DIR/xregion.toml: the regions' databases and the fault commands; DIR/xregion.pgpass: the password.
  # A script that can partition a region behind `xregion wan` sets PARTITIONS=1; one that can skew a region's clock
  # (`ctl.sh skew`) sets CLOCK_FAULTS=1.
  local self run
  self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  run="XREGION_PG_NET=$NET PGPORT_TARGET=$PORT bash $self"
  echo "*:*:*:$USER_NAME:$(cat "$DIR/xregion.password")" > "$DIR/xregion.pgpass"
  chmod 600 "$DIR/xregion.pgpass"
  {
    echo "# Written by ctl.sh up: this target as xregion sees it. Run with PGPASSFILE=$DIR/xregion.pgpass."
    toml_regions
    echo ""
    echo "[faults.command]"
    echo "fail_complete = \"$run fail $DIR \\\"\$XREGION_REGION\\\"\""
    echo "restore = \"$run restore $DIR \\\"\$XREGION_REGION\\\"\""
    if [ "${PARTITIONS:-0}" = 1 ] && wan_on; then
      echo "fail_network = \"$run partition $DIR \\\"\$XREGION_REGION\\\"\""
    fi
    if [ "${CLOCK_FAULTS:-0}" = 1 ]; then
      echo "fail_clock = \"$run skew $DIR \\\"\$XREGION_REGION\\\" \\\"\$XREGION_FAULT_CLOCK_OFFSET_S\\\"\""
    fi
  } > "$DIR/xregion.toml"
}

stop_node() { # region mode: stop its postmaster (smart, fast or immediate) if it runs
  running "$1" && as_pg "$BIN/pg_ctl" -D "$(pgdata "$1")" -m "$2" -w -t 30 stop >/dev/null || true
}

cmd_down() {
  local r
  for r in "${REGIONS[@]}"; do stop_node "$r" fast; done
  if [ -f "$DIR/wan.pid" ]; then kill "$(cat "$DIR/wan.pid")" 2>/dev/null || true; rm -f "$DIR/wan.pid"; fi
}

fresh_dir() { # an empty DIR for a new target: its network, the passwords of xregion and replicator, replicator's pgpass
  rm -rf "${DIR:?}"/*
  remember_net
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/xregion.password"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/replicator.password"
  echo "*:*:*:replicator:$(cat "$DIR/replicator.password")" > "$DIR/pgpass"
  chmod 600 "$DIR"/*.password "$DIR/pgpass"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR" "$DIR"/*.password "$DIR/pgpass"
  return 0
}

init_node() { # region: initdb, the region's address, port and socket, and who may connect: local connections by peer
  # (the postgres user over the socket), TCP by password, replication included. The caller appends its replication
  # settings to the node's postgresql.auto.conf.
  local r=$1
  mkdir -p "$DIR/$r"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/$r"
  as_pg "$BIN/initdb" -D "$(pgdata "$r")" -U "$SUPER" --auth-local=peer --auth-host=scram-sha-256 \
    --data-checksums -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$(pgdata "$r")/postgresql.auto.conf" <<EOF
listen_addresses = '$(addr_of "$r")'
port = $PORT
unix_socket_directories = '$DIR/$r/run'
max_wal_senders = 10
max_replication_slots = 10
track_commit_timestamp = on
shared_buffers = '64MB'
EOF
  cat > "$(pgdata "$r")/pg_hba.conf" <<EOF
local all $SUPER peer
host all all 127.0.0.0/8 scram-sha-256
host replication replicator 127.0.0.0/8 scram-sha-256
EOF
}
