#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 12 §3): the console's Overview, Certificates, one
# country's (AA: the empty side has none, the loaded one 100) and Passports pages
# on a loaded platform against an empty one, both running at once in this run (release build;
# each with its own PostgreSQL cluster, nats-server, `marty serve all` and console).
#   empty:  one CSCA (UT), one Document Signer, one passport verified once;
#   loaded: the same, then 10,000 certificates over 100 countries and 1,000,000 passports
#           added by SQL (scripts/fixtures/*.sql: copies of the real rows).
# Each round measures both sides, alternating which goes first: time to first byte with curl
# (COUNT requests, median) and, in Chromium, time to first byte and to the load event
# (Navigation Timing, COUNT loads, median). Prints per page and measure the median of each
# side and the median ratio loaded/empty with its range (goal: within 2×).
#   scripts/bench-console.sh [ROUNDS] [COUNT] [CERTIFICATES] [PASSPORTS]
set -euo pipefail
# A failed measurement inside $(…) stops the run instead of leaving an empty figure.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
rounds=${1:-5}; count=${2:-20}; certificates=${3:-10000}; passports=${4:-1000000}
cargo build -q --release -p marty-cli
marty=$PWD/target/release/marty
export NODE_PATH=$PWD/.venv/node/node_modules
[ -d "$NODE_PATH/playwright-core" ] || make -s oracle
root=$(mktemp -d /tmp/marty-bench-console-XXXXXX)
chmod 755 "$root"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A console serve
cleanup() {
  for side in empty loaded; do
    [ -n "${serve[$side]:-}" ] && kill -TERM "${serve[$side]}" 2>/dev/null && wait "${serve[$side]}" 2>/dev/null || true
    [ -f "$root/$side/env" ] && (. "$root/$side/env"; $marty dev nats stop; $marty dev postgres stop) >/dev/null 2>&1 || true
  done
  rm -rf "$root"
}
trap cleanup EXIT

start_side() { # $1: empty|loaded — a platform of its own, with one CSCA, DSC and passport
  local side=$1 dir=$root/$1
  mkdir -p "$dir"; chmod 755 "$dir"
  {
    echo "unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD MARTY_NATS_URL RUST_LOG"
    echo "export MARTY_STATE_DIR=$dir MARTY_ENV=development MARTY_CONFIG_DIR=$PWD/config"
    for s in CSCA DOCUMENT_SIGNER PASSPORT_ENGINE PKD; do
      echo "export MARTY_${s}_GRPC_PORT=$(free_port) MARTY_${s}_HTTP_PORT=$(free_port)"
    done
    console[$side]=$(free_port)
    echo "export MARTY_CONSOLE_LISTEN=127.0.0.1:${console[$side]}"
  } >"$dir/env"
  (
    . "$dir/env"
    $marty dev postgres start >/dev/null
    $marty dev nats start >/dev/null
    $marty db setup >/dev/null
    $marty db migrate >/dev/null
    $marty db verify --json-file "$dir/isolation.json" >/dev/null
  )
  (. "$dir/env"; exec $marty serve all --log-format json 2>"$dir/serve.log") &
  serve[$side]=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:${console[$side]}/healthz" >/dev/null && break; sleep 0.2; done
  (
    . "$dir/env"
    for _ in $(seq 150); do $marty csca list >/dev/null 2>&1 && break; sleep 0.2; done
    $marty csca create --country UT --key ec:P-256:named >/dev/null
    $marty signer activate --key ec:P-256:named >/dev/null
    printf '{"primary_identifier":"ERIKSSON","secondary_identifier":"ANNA MARIA","nationality":"UTO","date_of_birth":"1974-08-12","date_of_expiry":"2031-04-15","sex":"F","document_type":"P"}' >"$dir/holder.json"
    $marty passport issue --holder "$dir/holder.json" --photo samples/face.jpg --out "$dir/passport" >/dev/null
    verified=
    for _ in $(seq 60); do $marty passport verify "$dir/passport" >/dev/null 2>&1 && verified=1 && break; sleep 0.5; done
    [ -n "$verified" ] || { echo "$side: the passport never verified" >&2; exit 1; }
  )
}
psql_side() { # $1: side, $2: database, rest: psql arguments, as that platform's administrator
  local side=$1 db=$2; shift 2
  (
    eval "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print("export PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s" % (c["host"], c["port"], c["admin_user"], c["admin_password"]))' "$root/$side/postgres/cluster.json")"
    psql -q -v ON_ERROR_STOP=1 -d "$db" "$@"
  )
}

echo "starting the empty and the loaded platform…" >&2
start_side empty
start_side loaded
echo "loading $certificates certificates and $passports passports into one of them…" >&2
t0=$(date +%s)
psql_side loaded marty_csca -v certificates="$certificates" -v countries=100 -f scripts/fixtures/certificates.sql
psql_side loaded marty_passport_engine -v passports="$passports" -f scripts/fixtures/passports.sql
# What autovacuum does to a table after inserts, done now: the visibility map that lets the
# CSCA's summary read only its covering index.
psql_side loaded marty_csca -c 'vacuum analyze certificates'
echo "loaded in $(( $(date +%s) - t0 )) s" >&2
for side in empty loaded; do
  echo "$side: $(psql_side $side marty_csca -Atc 'select count(*) from certificates') certificates, $(psql_side $side marty_passport_engine -Atc 'select count(*) from passports') passports" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s–%s", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
curl_ttfb() { # $1: URL → median time to first byte in ms over COUNT requests
  for _ in $(seq "$count"); do
    curl -fsS -o /dev/null -w '%{time_starttransfer}\n' "$1"
  done | awk '{print $1 * 1000}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
pages=(overview=/ certificates=/certificates country=/certificates/AA passports=/passports)
measure() { # $1: side → "name:curl_ttfb:browser_ttfb:browser_load ..."
  local base=http://127.0.0.1:${console[$1]} args=() json
  for p in "${pages[@]}"; do args+=("${p%%=*}=$base${p#*=}"); done
  json=$(node scripts/console_load.js "$count" "${args[@]}")
  for p in "${pages[@]}"; do
    local name=${p%%=*}
    printf '%s:%s:%s ' "$name" "$(curl_ttfb "$base${p#*=}")" \
      "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1])[sys.argv[2]]; print("%.1f:%.1f:%d" % (r["ttfb_ms"], r["load_ms"], r["bytes"]))' "$json" "$name")"
  done
  echo
}
declare -A fig
for i in $(seq "$rounds"); do
  if (( i % 2 )); then order=(empty loaded); else order=(loaded empty); fi
  declare -A got=()
  for side in "${order[@]}"; do got[$side]=$(measure "$side"); done
  echo "round $i: empty ${got[empty]}| loaded ${got[loaded]}" >&2
  for side in empty loaded; do
    for entry in ${got[$side]}; do
      IFS=: read -r name curl_ms browser_ttfb browser_load bytes <<<"$entry"
      fig[$side.$name.curl]+="$curl_ms "; fig[$side.$name.ttfb]+="$browser_ttfb "
      fig[$side.$name.load]+="$browser_load "; fig[$side.$name.bytes]=$bytes
    done
  done
  for p in "${pages[@]}"; do
    name=${p%%=*}
    for m in curl ttfb load; do
      e=$(echo "${fig[empty.$name.$m]}" | awk '{print $NF}'); l=$(echo "${fig[loaded.$name.$m]}" | awk '{print $NF}')
      fig[ratio.$name.$m]+="$(ratio "$l" "$e") "
    done
  done
done

echo
echo "| page, measure ($rounds rounds × $count loads, sides alternating) | empty (ms) | loaded (ms) | loaded / empty: median | range | goal |"
echo "|---|---|---|---|---|---|"
for p in "${pages[@]}"; do
  name=${p%%=*}
  for m in curl ttfb load; do
    case $m in curl) what="time to first byte (curl)";; ttfb) what="time to first byte (Chromium)";; *) what="full load (Chromium load event)";; esac
    echo "| $name, $what | $(echo "${fig[empty.$name.$m]}" | median) | $(echo "${fig[loaded.$name.$m]}" | median) | $(echo "${fig[ratio.$name.$m]}" | median) | $(echo "${fig[ratio.$name.$m]}" | range) | ≤ 2 |"
  done
done
for p in "${pages[@]}"; do
  name=${p%%=*}
  echo "$name page size: empty ${fig[empty.$name.bytes]} B, loaded ${fig[loaded.$name.bytes]} B (transferred)"
done
