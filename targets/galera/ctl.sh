#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster, one node per region: every region takes writes, a transaction is certified by
# every node of the primary component before it commits (a conflicting write is refused at commit, not overwritten),
# and a node cut off from the majority leaves the primary component and refuses reads and writes.
#
#   ctl.sh up DIR                 bootstrap the first node, join the other two (state transfer by rsync) (<= 60 s)
#   ctl.sh down DIR               stop every node (the data stays in DIR)
#   ctl.sh fail DIR REGION        kill -9 REGION's node; the other two keep the quorum
#   ctl.sh partition DIR REGION   (NETNS=1 only) cut REGION's node off from the other nodes; its clients still
#                                 reach it, so they see what a node outside the primary component answers
#   ctl.sh restore DIR REGION     heal REGION's partition, or restart its node (it rejoins by state transfer)
#   ctl.sh status DIR             each region's node: up or down, and its wsrep state
#   ctl.sh env DIR                the DB_ENDPOINT_* variables that describe the target to xregion
#
# `up` also writes DIR/xregion.toml (the regions' databases and these fault commands) and DIR/xregion.password.
#
# Regions and addresses: us-east-1 on 127.0.5.1, us-west-2 on 127.0.5.2, eu-west-1 on 127.0.5.3, SQL on port
# ${GALERA_PORT:-3306}; XREGION_GALERA_NET moves them. With NETNS=1 (root) each node runs in a network namespace of
# its own on XREGION_GALERA_NET (default 198.18.5).1-3 behind a bridge with .254 here, as Galera nodes advertise one
# address to all peers. The nodes run as the `mysql` user. Needs mariadb-server, galera-4 and rsync.
set -euo pipefail
# shellcheck source=../lib.sh
. "$(dirname "$0")/../lib.sh"
unset MYSQL_PWD MYSQL_HOST MYSQL_TCP_PORT

REGIONS=(us-east-1 us-west-2 eu-west-1)
NS_TAG=g
if [ "${NETNS:-0}" = 1 ]; then NET=${XREGION_GALERA_NET:-198.18.5}; else NET=${XREGION_GALERA_NET:-127.0.5}; fi
PORT=${GALERA_PORT:-3306}
MARIADBD=${MARIADBD:-/usr/sbin/mariadbd}
PROVIDER=${GALERA_PROVIDER:-/usr/lib/galera/libgalera_smm.so}
USER_NAME=xregion
DB_NAME=xregion

[ -x "$MARIADBD" ] || die "no mariadbd at $MARIADBD: install mariadb-server (or set MARIADBD)"
[ -f "$PROVIDER" ] || die "no Galera provider at $PROVIDER: install galera-4"
command -v rsync >/dev/null || die "no rsync: install rsync (Galera's state transfer)"

socket() { echo "$DIR/$1/run/mysqld.sock"; }
sql_at() { # region sql: as the server's root over the region's socket
  mariadb --no-defaults -uroot --socket="$(socket "$1")" -N -B -e "$2"
}
wsrep() { sql_at "$1" "SHOW STATUS LIKE '$2'" 2>/dev/null | cut -f2; }

write_cnf() { # region: its my.cnf
  local r=$1 a cluster="" s
  a=$(addr_of "$r")
  for s in "${REGIONS[@]}"; do cluster+="${cluster:+,}$(addr_of "$s")"; done
  cat > "$DIR/$r/my.cnf" <<CNF
[mysqld]
user = mysql
datadir = $DIR/$r/data
socket = $(socket "$r")
pid-file = $DIR/$r/run/mysqld.pid
log-error = $DIR/$r/server.log
bind-address = $a
port = $PORT
skip-name-resolve
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 1
wsrep_on = ON
wsrep_provider = $PROVIDER
wsrep_cluster_name = xregion
wsrep_cluster_address = gcomm://$cluster
wsrep_node_address = $a
wsrep_node_name = $r
wsrep_sst_method = rsync
wsrep_sst_receive_address = $a:4444
wsrep_provider_options = "gmcast.listen_addr=tcp://$a:4567;ist.recv_addr=$a:4568;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT4S"
CNF
}

start_member() { # region [--wsrep-new-cluster]: start it in the background, detached from this shell
  local r=$1 cmd
  shift
  mkdir -p "$DIR/$r/run"
  chown mysql: "$DIR/$r" "$DIR/$r/run"
  rm -f "$(socket "$r")"
  cmd=(setsid "$MARIADBD" --defaults-file="$DIR/$r/my.cnf" "$@")
  # `ip netns exec` and setsid exec what they run, so $! is the server's own pid.
  if netns_on; then cmd=(ip netns exec "$(ns_of "$r")" "${cmd[@]}"); fi
  "${cmd[@]}" >> "$DIR/$r/stdout" 2>&1 < /dev/null &
  echo $! > "$DIR/$r/pid"
}

wait_ready() { # regions...: until each is Synced in the primary component (bounded: 60 s each)
  local r
  for r in "$@"; do
    for _ in $(seq 1 600); do
      [ "$(wsrep "$r" wsrep_local_state_comment)" = Synced ] && [ "$(wsrep "$r" wsrep_ready)" = ON ] && continue 2
      running "$r" || die "$r exited while starting; see $DIR/$r/server.log"
      sleep 0.1
    done
    die "$r was not synced within 60 s; see $DIR/$r/server.log"
  done
}

db_url() { echo "mysql://$USER_NAME@$(addr_of "$1"):$PORT/$DB_NAME"; }

write_config() {
  local self run
  self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  run="XREGION_GALERA_NET=$NET GALERA_PORT=$PORT bash $self"
  {
    echo "# Written by ctl.sh up: this target as xregion sees it. Run with MYSQL_PWD=\$(cat $DIR/xregion.password)."
    toml_regions
    echo ""
    echo "[faults.command]"
    echo "# A complete failure kills the region's node; a restore restarts it (it rejoins by state transfer)."
    echo "fail_complete = \"$run fail $DIR \\\"\$XREGION_REGION\\\"\""
    echo "restore = \"$run restore $DIR \\\"\$XREGION_REGION\\\"\""
    if netns_on; then
      echo "# A network partition cuts the region's node off from the others; its clients still reach it."
      echo "fail_network = \"$run partition $DIR \\\"\$XREGION_REGION\\\"\""
    fi
  } > "$DIR/xregion.toml"
}

cmd_up() {
  local r first=${REGIONS[0]}
  for r in "${REGIONS[@]}"; do running "$r" && die "$r is already running in $DIR (ctl.sh down $DIR first)"; done
  [ "$(id -u)" = 0 ] || die "run as root: the nodes run as the mysql user"
  rm -rf "${DIR:?}"/*
  remember_net
  chmod 755 "$DIR"
  if [ "${NETNS:-0}" = 1 ]; then echo netns > "$DIR/mode"; netns_up; else echo loopback > "$DIR/mode"; fi
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/xregion.password"
  chmod 600 "$DIR/xregion.password"
  for r in "${REGIONS[@]}"; do
    mkdir -p "$DIR/$r/data"
    write_cnf "$r"
    chown -R mysql: "$DIR/$r"
  done
  mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/$first/data" --auth-root-authentication-method=socket \
    --skip-test-db > "$DIR/$first/install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/$first/install.log"
  start_member "$first" --wsrep-new-cluster
  wait_ready "$first"
  sql_at "$first" "CREATE DATABASE $DB_NAME; CREATE USER '$USER_NAME'@'%' IDENTIFIED BY '$(cat "$DIR/xregion.password")';
    GRANT ALL ON $DB_NAME.* TO '$USER_NAME'@'%';"
  # The others join one at a time: each gets the first node's state by rsync.
  for r in "${REGIONS[@]:1}"; do start_member "$r"; wait_ready "$r"; done
  write_config
  cmd_status "$PORT"
}

role_of() { # region: its wsrep state and whether it is in the primary component
  echo "$(wsrep "$1" wsrep_local_state_comment) $(wsrep "$1" wsrep_cluster_status)"
}

env_extra() { echo "export XREGION_DB_KIND=mysql MYSQL_PWD=$(cat "$DIR/xregion.password" 2>/dev/null) PGUSER=$USER_NAME PGDATABASE=$DB_NAME"; }

ENV_PORT=$PORT
target_main "$@"
