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
    partition) declare -F cmd_partition >/dev/null || usage; [ $# = 1 ] || usage; cmd_partition "$1" ;;
    restore) [ $# = 1 ] || usage; cmd_restore "$1" ;;
    status) cmd_status "$ENV_PORT" ;;
    env) cmd_env "$ENV_PORT" ;;
    *) usage ;;
  esac
}
