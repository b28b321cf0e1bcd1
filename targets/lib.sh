# What every targets/*/ctl.sh shares: messages, region addresses, status, the environment it describes, and the
# command dispatch. A script sets REGIONS and NET, defines cmd_up, cmd_down, cmd_fail, cmd_restore, running REGION
# and role_of REGION (and may define env_extra to print more variables), then calls `target_main "$@"`.

die() { echo "ctl.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

addr_of() { # region -> its loopback address
  local i
  for i in "${!REGIONS[@]}"; do [ "${REGIONS[$i]}" = "$1" ] && { echo "$NET.$((i + 1))"; return; }; done
  die "unknown region $1 (regions: ${REGIONS[*]})"
}

toml_regions() { # the config's [deployment]: every region with its database, `db_url REGION` (defined by the script)
  local r
  echo "[deployment]"
  echo "kind = \"http\""
  for r in "${REGIONS[@]}"; do
    printf '\n[[deployment.regions]]\nname = "%s"\ndatabase = "%s"\n' "$r" "$(db_url "$r")"
  done
}

cmd_status() { # each region: address, up or down, and its role when up ($1: the port)
  local r
  for r in "${REGIONS[@]}"; do
    if running "$r"; then echo "$r $(addr_of "$r"):$1 up $(role_of "$r")"; else echo "$r $(addr_of "$r"):$1 down"; fi
  done
}

# Processes started in the background with their pid in DIR/REGION/pid (a script may define its own `running`).
pid_of() { cat "$DIR/$1/pid" 2>/dev/null; }
running() { # region: its member is alive (a killed one may linger as a zombie for a moment)
  local pid state
  pid=$(pid_of "$1") || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

stop_member() { # region signal
  local pid
  pid=$(pid_of "$1") || return 0
  kill "-$2" "$pid" 2>/dev/null || true
  # Wait until it is gone, reaped too, so that its addresses are free for a restart (bounded: 20 s; after 10 s
  # a graceful stop becomes a kill).
  for i in $(seq 1 400); do
    running "$1" || break
    [ "$i" = 200 ] && kill -KILL "$pid" 2>/dev/null
    sleep 0.05
  done
  rm -f "$DIR/$1/pid"
}

# Members (etcd, Galera): the script defines start_member REGION (in the background, its pid in DIR/REGION/pid)
# and wait_ready REGION; these commands then stop, kill and bring back a region's member.
cmd_down() {
  local r
  for r in "${REGIONS[@]}"; do stop_member "$r" TERM; done
  if netns_on; then netns_down; fi
}

cmd_fail() {
  addr_of "$1" >/dev/null
  running "$1" || die "$1 is not running"
  stop_member "$1" KILL
  echo "$1 killed"
}

cmd_restore() { # heal the region's partition, or restart its member and wait until it is ready
  local r=$1
  addr_of "$r" >/dev/null
  if netns_on; then blackholes "$r" del; fi
  running "$r" && { echo "$r is running, connected"; return; }
  start_member "$r"
  wait_ready "$r"
  echo "$r restored"
}

# Network namespaces (NETNS=1, root): members that advertise one address to all their peers (etcd, Galera) cannot
# be partitioned by a proxy, so each runs in a namespace of its own on $NET.i (in 198.18.0.0/15, the range reserved
# for network tests) behind a bridge that has $NET.254 here; traffic to $NET goes only into these namespaces,
# and a partition is a pair of blackhole routes. The script sets NS_TAG (one letter) for its interface names, and
# its cmd_up writes "netns" to DIR/mode before calling netns_up.
netns_on() { [ "$(cat "$DIR/mode" 2>/dev/null)" = netns ]; }
tag() { echo "x${NS_TAG}${NET##*.}"; } # interface names: at most 15 characters
ns_of() { echo "xregion-$(tag)-$(index_of "$1")"; }
index_of() { local i; for i in "${!REGIONS[@]}"; do [ "${REGIONS[$i]}" = "$1" ] && echo "$((i + 1))"; done; return 0; }

netns_up() { # a bridge here with $NET.254, and a namespace per region with $NET.i on a veth to it
  local r i br
  [ "$(id -u)" = 0 ] || die "NETNS=1 needs root (network namespaces)"
  [[ $NET != 127.* ]] || die "NETNS=1 needs a network outside 127.0.0.0/8, for example 198.18.4"
  # The bridge's /24 is routed here: it must not shadow a network this machine already reaches (the default route
  # aside), or traffic meant for that network would go into the namespaces. 198.18.0.0/15 is reserved for tests.
  if ip -4 route show to match "$NET.1" | grep -qv '^default'; then
    die "$NET.0/24 is already routed on this machine ($(ip -4 route show to match "$NET.1" | grep -m1 -v '^default')); choose another network"
  fi
  br="$(tag)br"
  ip link add "$br" type bridge 2>/dev/null || die "network $NET is in use ($br exists): ctl.sh down its DIR first"
  ip addr add "$NET.254/24" dev "$br"
  ip link set "$br" up
  for r in "${REGIONS[@]}"; do
    i=$(index_of "$r")
    ip netns add "$(ns_of "$r")"
    ip link add "$(tag)v$i" type veth peer name eth0 netns "$(ns_of "$r")"
    ip link set "$(tag)v$i" master "$br" up
    ip -n "$(ns_of "$r")" addr add "$NET.$i/24" dev eth0
    ip -n "$(ns_of "$r")" link set eth0 up
    ip -n "$(ns_of "$r")" link set lo up
  done
}

netns_down() {
  local r
  # Deleting a veth's end here deletes both ends at once; a namespace's own teardown can lag behind.
  for r in "${REGIONS[@]}"; do
    ip link del "$(tag)v$(index_of "$r")" 2>/dev/null || true
    ip netns del "$(ns_of "$r")" 2>/dev/null || true
  done
  ip link del "$(tag)br" 2>/dev/null || true
}

blackholes() { # region add|del: routes that drop everything between the region's member and the other members
  local r=$1 s
  for s in "${REGIONS[@]}"; do
    [ "$s" = "$r" ] && continue
    ip -n "$(ns_of "$r")" route "$2" blackhole "$(addr_of "$s")/32" 2>/dev/null || true
    ip -n "$(ns_of "$s")" route "$2" blackhole "$(addr_of "$r")/32" 2>/dev/null || true
  done
}

cmd_partition() { # region: cut its member off from the other members; its clients (here, on the bridge) still reach it
  addr_of "$1" >/dev/null
  netns_on || die "a partition needs the members in namespaces: ctl.sh up with NETNS=1"
  blackholes "$1" add
  echo "$1 cut off from the other members"
}

remember_net() { echo "$NET" > "$DIR/net"; } # cmd_up calls it once DIR is empty

cmd_env() { # the seed's variables: DB_ENDPOINT_<REGION>=host:port for each region ($1: the port), and the regions
  local r
  for r in "${REGIONS[@]}"; do
    echo "export DB_ENDPOINT_$(echo "$r" | tr 'a-z-' 'A-Z_')=$(addr_of "$r"):$1"
  done
  echo "export AWS_REGION=${REGIONS[0]} AWS_SECONDARY_REGIONS=$(IFS=,; echo "${REGIONS[*]:1}")"
  if declare -F env_extra >/dev/null; then env_extra; fi
}

target_main() { # ctl.sh COMMAND DIR [REGION]; ENV_PORT names the port that status and env print
  [ $# -ge 2 ] || usage
  local cmd=$1
  DIR=$2
  shift 2
  if [ "$cmd" = up ]; then mkdir -p "$DIR"; fi
  [ -d "$DIR" ] || die "no directory $DIR"
  DIR=$(cd "$DIR" && pwd)
  # The network a target was started on is its own from then on, whatever this caller's variables say.
  if [ "$cmd" != up ] && [ -f "$DIR/net" ]; then NET=$(cat "$DIR/net"); fi
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    fail) [ $# = 1 ] || usage; cmd_fail "$1" ;;
    partition) [ $# = 1 ] || usage; cmd_partition "$1" ;;
    restore) [ $# = 1 ] || usage; cmd_restore "$1" ;;
    skew) [ $# = 2 ] || usage; declare -F cmd_skew >/dev/null || die "this target has no clock skew"; cmd_skew "$1" "$2" ;;
    status) cmd_status "$ENV_PORT" ;;
    env) cmd_env "$ENV_PORT" ;;
    *) usage ;;
  esac
}
