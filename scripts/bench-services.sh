#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 8): SignLdsSecurityObject over gRPC, audited,
# against in-process signing with the same kind of key, in alternating rounds (P-256 and
# RSA-2048 signers); gRPC latency p50/p99; resident memory of each service idle and under
# that load. Release build, private PostgreSQL and nats-server, `marty serve all`.
# Usage: scripts/bench-services.sh [rounds] [seconds per side] [calls in flight]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; seconds=${2:-5}; concurrency=${3:-16}
cargo build -q --release -p marty-cli
marty=$PWD/target/release/marty
state=$(mktemp -d /tmp/marty-bench-services-XXXXXX)
chmod 755 "$state"
export MARTY_STATE_DIR=$state MARTY_ENV=development MARTY_CONFIG_DIR=$PWD/config
unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD MARTY_NATS_URL RUST_LOG
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A http
for s in CSCA DOCUMENT_SIGNER PASSPORT_ENGINE PKD; do
  export "MARTY_${s}_GRPC_PORT=$(free_port)"
  http[$s]=$(free_port); export "MARTY_${s}_HTTP_PORT=${http[$s]}"
done
export MARTY_CSCA_URL=http://127.0.0.1:$MARTY_CSCA_GRPC_PORT MARTY_DOCUMENT_SIGNER_URL=http://127.0.0.1:$MARTY_DOCUMENT_SIGNER_GRPC_PORT
serve=
cleanup() {
  [ -n "$serve" ] && kill -TERM "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  $marty dev nats stop >/dev/null 2>&1 || true
  $marty dev postgres stop >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
$marty dev postgres start >/dev/null
$marty dev nats start >/dev/null
$marty db setup >/dev/null
$marty db migrate >/dev/null
$marty serve all --log-format json 2>"$state/serve.log" &
serve=$!
for s in "${!http[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${http[$s]}/readyz" >/dev/null && break; sleep 0.2; done
done
# Resident memory (MB) of each service process.
rss() {
  for pid in $(pgrep -P "$serve"); do
    name=$(tr '\0' ' ' </proc/"$pid"/cmdline | awk '{print $3}')
    printf '%s=%s ' "$name" "$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/"$pid"/status)"
  done
  echo
}
sleep 2
echo "idle RSS (MB): $(rss)"
$marty csca create --country UT --key ec:P-256:named >/dev/null
$marty signer activate --key ec:P-256:named >/dev/null
peak() { # samples RSS until the file $1 exists; prints the largest value per service
  declare -A max
  while [ ! -e "$1" ]; do
    for kv in $(rss); do
      n=${kv%%=*}; v=${kv##*=}
      if awk -v a="$v" -v b="${max[$n]:-0}" 'BEGIN {exit !(a > b)}'; then max[$n]=$v; fi
    done
    sleep 0.5
  done
  for n in "${!max[@]}"; do printf '%s=%s ' "$n" "${max[$n]}"; done; echo
}
for key in ec:P-256:named rsa:2048; do
  [ "$key" = rsa:2048 ] && $marty signer rotate --key rsa:2048 >/dev/null
  done_flag=$state/done-$key
  peak "$done_flag" >"$state/peak-$key" &
  $marty signer bench --rounds "$rounds" --seconds "$seconds" --concurrency "$concurrency" --json >"$state/bench-$key.json"
  touch "$done_flag"; wait $!
  python3 - "$state/bench-$key.json" "$key" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rates = [(x["in_process_per_sec"], x["grpc_per_sec"]) for x in r["rounds"]]
print(f'{sys.argv[2]}: median ratio {r["median_ratio"]:.2f} (range {r["min_ratio"]:.2f}-{r["max_ratio"]:.2f}), '
      f'gRPC p50 {r["grpc_p50_ms"]:.1f} ms p99 {r["grpc_p99_ms"]:.1f} ms, failures {r["grpc_failures"]}, '
      f'rounds (in-process/s, gRPC/s): ' + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in rates))
PY
  echo "loaded RSS peak (MB): $(cat "$state/peak-$key")"
done
